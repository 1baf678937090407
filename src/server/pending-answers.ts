// The answers one connection still owes for pipelined publishes whose outcome comes later (a
// cluster's bus accepts an event in its own time): HTTP/1.1 answers in request order, so each
// keeps its place in line, and a request of another kind that arrives behind them waits here
// until they are all out. The connection writes the answers; this keeps their order. No sockets.

import type { RequestHead } from './http-head.js'
import { MAX_PUBLISHES_IN_FLIGHT } from './limits.js'
import type { Outcome } from './routes.js'

interface Slot {
  readonly req: RequestHead
  outcome: Outcome | null
}

export class PendingAnswers {
  private readonly line: Slot[] = []
  /** A request that is not a publish, behind them: dispatched once every answer is out. */
  waiting: { req: RequestHead; body: Buffer } | null = null

  get size(): number {
    return this.line.length
  }

  /** As many as one connection may have on their way: past it, the connection is not read. */
  get full(): boolean {
    return this.line.length >= MAX_PUBLISHES_IN_FLIGHT
  }

  /**
   * Keep a place for `req`. `ready` is called whenever answers may go out (at once when the
   * outcome is already known); `failed` when the outcome's promise rejects.
   */
  add(req: RequestHead, outcome: Outcome | Promise<Outcome>, ready: () => void, failed: (err: unknown) => void): void {
    const slot: Slot = { req, outcome: null }
    this.line.push(slot)
    const settle = (o: Outcome): void => {
      slot.outcome = o
      ready()
    }
    if (outcome instanceof Promise) outcome.then(settle, failed)
    else settle(outcome)
  }

  /** The next answer, if it is its turn and its outcome has come. */
  next(): { req: RequestHead; outcome: Outcome } | null {
    const first = this.line[0]
    if (first === undefined || first.outcome === null) return null
    this.line.shift()
    return { req: first.req, outcome: first.outcome }
  }
}
