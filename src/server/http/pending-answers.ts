// The answers one connection still owes for pipelined publishes whose outcome comes later (a
// cluster's bus accepts an event in its own time): HTTP/1.1 answers in request order (RFC 9112
// §9.3.2), so each keeps its place in line, a request refused behind them waits there for its
// turn too, and a request of another kind that arrives behind them waits until they are all out.
// The connection writes the answers; this keeps their order. No sockets.

import type { RequestHead } from './head.js'
import { MAX_PUBLISHES_IN_FLIGHT } from '../limits.js'
import type { Outcome } from '../routes.js'

/** What a request gets: the route's outcome, or the error that refuses it (and closes the connection). */
type Answer = { readonly outcome: Outcome } | { readonly error: unknown }

interface Slot {
  /** Null only for a refusal of bytes that were never a whole request head. */
  readonly req: RequestHead | null
  answer: Answer | null
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
   * Keep a place for `req`. `ready` is called whenever answers may go out: at once when the
   * outcome is already known, else when its promise settles, fulfilled or rejected (a rejection
   * is that request's refusal, in its turn). `ready` must not throw: it runs in a promise's
   * callback, where a throw would be an unhandled rejection.
   */
  add(req: RequestHead, outcome: Outcome | Promise<Outcome>, ready: () => void): void {
    const slot: Slot = { req, answer: null }
    this.line.push(slot)
    if (!(outcome instanceof Promise)) {
      slot.answer = { outcome }
      return ready()
    }
    outcome.then(
      (o) => {
        slot.answer = { outcome: o }
        ready()
      },
      (error: unknown) => {
        slot.answer = { error }
        ready()
      },
    )
  }

  /** A request refused behind answers still owed: its refusal goes out in its turn. */
  refuse(req: RequestHead | null, error: unknown): void {
    this.line.push({ req, answer: { error } })
  }

  /** The next answer, if it is its turn and it has come: an outcome for its request, or a refusal. */
  next(): { req: RequestHead; outcome: Outcome } | { req: RequestHead | null; error: unknown } | null {
    const first = this.line[0]
    if (first === undefined || first.answer === null) return null
    this.line.shift()
    const { req, answer } = first
    return 'error' in answer ? { req, error: answer.error } : { req: req!, outcome: answer.outcome }
  }
}
