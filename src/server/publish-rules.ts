// The publish rules, once for every path that publishes (POST /publish, the library, the console
// and --stdin of one process or of a --workers primary, a Redis node): what a message may be
// (400), how big it may be encoded (413), an id history still holds (409), a user or client
// target connected nowhere (404 `offline`), and which events history keeps for Last-Event-ID
// replay (docs/wire.md "Routes"). A rule that needs state is given it by the caller that holds it.

import type { BusDraft } from './bus/bus.js'
import type { WireEvent } from './bus/wire.js'
import { eventSize, type SseMessage } from './fanout/sse-encode.js'
import type { Target } from './fanout/target.js'
import { HttpError } from './http/errors.js'

/**
 * Who publishes. A `request` (POST /publish) is answered: 400 for a message that cannot go on
 * the wire, 404 `offline` for a user or client connected nowhere. A `program` (the library, the
 * console, --stdin) gets a TypeError for the first, a bug in the calling code, and for the
 * second a count of 0 streams reached, as for an empty channel.
 */
export type Publisher = 'request' | 'program'

/** What the rules need of the process that applies them. */
export interface PublishLimits {
  /** The largest event, encoded (`maxEventBytes`). */
  readonly maxEventBytes: number
  /** The history here, which a publisher-given id must not repeat. */
  readonly history: { has(id: string): boolean }
}

/** A publish the rules let through: what the bus gets, and its size encoded (for the `publish` event). */
export interface Admitted extends BusDraft {
  readonly bytes: number
}

/** Who is connected: here, or as far as a cluster's sequencer can see. */
export interface Whereabouts {
  userOnline(user: string): boolean
  clientExists(id: number): boolean
}

/**
 * A message and target as the bus is to get them, or the refusal: 400 (a TypeError for a
 * program), 413, 409. Whether an offline target is refused is decided here (`strict`); the bus
 * applies it with offline(), since only the bus sees who is connected across the cluster.
 */
export function admit(msg: SseMessage, target: Target, from: Publisher, limits: PublishLimits): Admitted {
  const problem = messageProblem(msg)
  if (problem !== null) throw from === 'request' ? new HttpError(400, problem) : new TypeError(problem)
  const bytes = eventSize(msg)
  if (bytes > limits.maxEventBytes) throw new HttpError(413, `event is ${bytes} bytes encoded; the limit is ${limits.maxEventBytes}`)
  refuseHeld(msg.id, limits.history)
  // Only the fields that go on the wire: a caller's object may carry anything else.
  const message: SseMessage = { data: msg.data }
  if (msg.id !== undefined) message.id = msg.id
  if (msg.event !== undefined) message.event = msg.event
  // An event to one client is not kept: its id does not survive that stream's reconnection.
  return { message, target, keep: target.client === undefined, strict: from === 'request', bytes }
}

/** Why a message cannot go on the wire, or null. Event names and ids are single lines. */
function messageProblem(msg: SseMessage): string | null {
  if (typeof msg.data !== 'string') return 'data must be a string'
  if (msg.event !== undefined && /[\r\n]/.test(msg.event)) return 'event name contains CR or LF'
  if (msg.id !== undefined) {
    // A NUL in an id makes a WHATWG client ignore the whole id field.
    if (/[\r\n\0]/.test(msg.id)) return 'id contains CR, LF or NUL'
    // `0` is what a client sends to get every retained event, so an event with that id could
    // never be resumed after; and HTTP trims a Last-Event-ID header, so an id with space or tab
    // at either end could never be resumed through it.
    if (msg.id === '0') return 'id 0 is reserved (lastEventId=0 asks for every retained event)'
    if (/^[ \t]|[ \t]$/.test(msg.id)) return 'id starts or ends with a space or tab'
  }
  return null
}

/**
 * 409 for a publisher-given id that `history` still holds: a repeat would make Last-Event-ID
 * ambiguous, and a client resuming from it would skip or repeat events. Checked where each
 * publish enters, and again by a cluster's sequencer against the cluster's history (two workers
 * may be offered one id in the same moment).
 */
export function refuseHeld(id: string | undefined, history: { has(id: string): boolean }): void {
  if (id !== undefined && history.has(id)) throw heldId(id)
}

/** The 409 itself, also for Redis, whose append script finds the id held. */
export function heldId(id: string): HttpError {
  return new HttpError(409, `id ${id} is already in the history`)
}

/** 404 `offline` for a strict publish to a user or client connected nowhere `where` can see; else null. */
export function offline(draft: BusDraft, where: Whereabouts): HttpError | null {
  if (!draft.strict) return null
  const t = draft.target
  if ((t.user !== undefined && !where.userOnline(t.user)) || (t.client !== undefined && !where.clientExists(t.client))) return new HttpError(404, 'offline')
  return null
}

/** The `--tick` event: `time` with the ISO time, to every stream, no id, never kept (a clock is no news to replay). */
export function timeTick(): WireEvent {
  return { message: { event: 'time', data: new Date().toISOString() }, target: {}, keep: false }
}
