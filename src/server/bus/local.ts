// The in-process bus: one process, no one to agree with, so publishing is a function call and
// every question is the node's own.

import { HttpError } from '../errors.js'
import type { Accepted, Bus, BusDraft, BusNode } from './bus.js'
import type { Stats } from '../metrics.js'

/**
 * Publish delivers synchronously, so `POST /publish` can answer with the exact number of streams
 * reached. A `filter` target is a function and can only ever be used here.
 */
export class LocalBus implements Bus {
  private node: BusNode | null = null
  private lastClientId = 0

  attach(node: BusNode): void {
    this.node = node
  }

  publish(draft: BusDraft): Accepted {
    const node = this.node!
    const { message, target } = draft
    if (draft.strict && ((target.user !== undefined && !node.userOnline(target.user)) || (target.client !== undefined && !node.clientExists(target.client)))) {
      throw new HttpError(404, 'offline')
    }
    const id = message.id ?? node.nextEventId()
    const delivered = node.deliver({ message: { ...message, id }, target, keep: draft.keep })
    return { id, delivered }
  }

  nextClientId(): number {
    return ++this.lastClientId
  }

  opened(): void {}

  closed(): void {}

  closeClient(id: number): boolean {
    return this.node!.closeClient(id)
  }

  closeAll(): number {
    return this.node!.closeAll()
  }

  stats(): Stats {
    return this.node!.stats()
  }

  close(): void {
    this.node = null
  }
}
