// The in-process bus: one process, no one to agree with, so publishing is a function call and
// every question is the node's own.

import type { Accepted, Bus, BusDraft, BusNode, NodeFigures } from './bus.js'
import { CLIENT_ID_BLOCK } from '../limits.js'
import { offline } from '../publish-rules.js'

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
    const refused = offline(draft, node)
    if (refused !== null) throw refused
    const id = message.id ?? node.nextEventId()
    const delivered = node.deliver({ message: { ...message, id }, target, keep: draft.keep })
    return { id, delivered }
  }

  nextClientId(): number {
    return ++this.lastClientId
  }

  idBlock(): [number, number] {
    const first = this.lastClientId + 1
    this.lastClientId += CLIENT_ID_BLOCK
    return [first, this.lastClientId]
  }

  opened(): void {}

  closed(): void {}

  closeClient(id: number): boolean | Promise<boolean> {
    return this.node!.closeClient(id)
  }

  closeAll(): number | Promise<number> {
    return this.node!.closeAll()
  }

  stats(): NodeFigures | Promise<NodeFigures> {
    return this.node!.stats()
  }

  close(): void {
    this.node = null
  }
}
