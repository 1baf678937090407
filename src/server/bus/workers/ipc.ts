// The messages between the primary of a `--workers` cluster and its workers, over Node's IPC
// channel (JSON). The primary sequences: every event reaches it, gets its id there, and goes to
// every worker in one message per event-loop turn (`batch`), never one message per event per
// stream. Questions that need the whole cluster (stats, closing a stream elsewhere) are asked
// and answered by number (`ask` / `answer`), in both directions.

import type { Stats } from '../../metrics.js'
import type { SseMessage } from '../../fanout/sse-encode.js'
import type { Target } from '../../fanout/target.js'
import type { BusState } from '../bus.js'

/** A target that can cross a process boundary: plain fields, never a filter function. */
export interface WireTarget {
  channel?: string
  user?: string
  role?: string
  client?: number
}

/** A target as it crosses to another process; throws TypeError for a filter (a function cannot). */
export function wireTarget(t: Target): WireTarget {
  if (t.filter !== undefined) throw new TypeError('a filter is a function: it cannot cross to the other processes of a cluster')
  const w: WireTarget = {}
  if (t.channel !== undefined) w.channel = t.channel
  if (t.user !== undefined) w.user = t.user
  if (t.role !== undefined) w.role = t.role
  if (t.client !== undefined) w.client = t.client
  return w
}

export interface WireEvent {
  message: SseMessage
  target: WireTarget
  keep: boolean
}

export type PublishItem = { n: number; strict: boolean } & WireEvent

export type PublishAnswer = { n: number; id: string; delivered: number } | { n: number; status: number; error: string }

/** A stream as the cluster's presence knows it: enough to count a target's matches. */
export type WireStream = [id: number, user: string | null, channels: readonly string[], roles: readonly string[]]

/** Questions a worker asks the cluster, and the primary asks a worker. */
export type Question = { q: 'stats' } | { q: 'close-all' } | { q: 'close-client'; id: number }

/** One node's part of a cluster's /stats. */
export interface NodeStats extends Stats {
  node: string
  pid: number
  bus: BusState
}

export type ToWorker =
  /**
   * `marks`: the ids of events to one client among `history`, each with how many of its events
   * come before it. `bus`: whether the primary's bus answers (Redis), for the worker's /healthz and
   * /stats; then `bus` messages when that changes.
   */
  | { t: 'init'; node: string; token: string | null; history: WireEvent[]; marks: Array<[id: string, at: number]>; ids: [first: number, last: number]; bus: BusState }
  | { t: 'bus'; state: BusState }
  /** Every event of one turn of the primary, and this worker's publishes it answered in that turn (after the events: their publishers' streams have them first). */
  | { t: 'batch'; events: WireEvent[]; answers: PublishAnswer[] }
  | { t: 'ids'; ids: [first: number, last: number] }
  /** The cluster lost events (Redis lost its data): forget history, `reset` every stream. After the batches before it. */
  | { t: 'gap' }
  | ({ t: 'ask'; n: number } & Question)
  | { t: 'answer'; n: number; value: unknown }
  | { t: 'stop' }
  | { t: 'reload' }

export type FromWorker =
  /** The worker listens for messages now: an ES module starts asynchronously, and what the primary sent before this would be lost. */
  | { t: 'hello' }
  | { t: 'listening'; port: number }
  | { t: 'fatal'; error: string }
  /** The publishes of one turn of a worker, in order (pipelined ones travel together). */
  | { t: 'publish'; items: PublishItem[] }
  | { t: 'presence'; opened: WireStream[]; closed: number[] }
  | { t: 'ids' }
  | ({ t: 'ask'; n: number } & Question)
  | { t: 'answer'; n: number; value: unknown }
