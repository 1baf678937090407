// The in-process bus: one process, no one to agree with, so publishing is a function call and
// every question is the node's own.

import type { Accepted, Bus, BusDraft, BusNode } from './bus.js'
import { CLIENT_ID_BLOCK } from '../limits.js'
import { offline } from '../publish-rules.js'
import type { Answer, Question } from './questions.js'
import { StreamIds, type IdBlock } from './stream-ids.js'

/**
 * Publish delivers synchronously, so `POST /publish` can answer with the exact number of streams
 * reached. A `filter` target is a function and can only ever be used here.
 */
export class LocalBus implements Bus {
  private node: BusNode | null = null
  /** The last stream id handed out, in a block. */
  private lastId = 0
  private readonly ids = new StreamIds(() => this.ids.give(this.idBlock()))

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
    return this.ids.take()
  }

  idBlock(): IdBlock {
    const first = this.lastId + 1
    this.lastId += CLIENT_ID_BLOCK
    return [first, this.lastId]
  }

  opened(): void {}

  closed(): void {}

  ask<Q extends Question>(q: Q): Answer<Q> | Promise<Answer<Q>> {
    return this.node!.answer(q)
  }

  close(): void {
    this.node = null
  }
}
