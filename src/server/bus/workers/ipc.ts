// The messages between the primary of a `--workers` cluster and its workers, over Node's IPC
// channel (JSON). The primary sequences: every event reaches it, gets its id there, and goes to
// every worker in one message per event-loop turn (`batch`), never one message per event per
// stream. Questions about streams (../questions.ts) are asked and answered by number (`ask` /
// `answer`), in both directions. What a message says of a stream or an event is the cluster's
// one vocabulary (../wire.ts), which Redis carries too.

import type { AppIdentity } from '../../access/jwt.js'
import type { BusState } from '../bus.js'
import type { Question } from '../questions.js'
import type { IdBlock } from '../stream-ids.js'
import type { StreamFacts, WireEvent } from '../wire.js'

export type PublishItem = { n: number; strict: boolean } & WireEvent

export type PublishAnswer = { n: number; id: string; delivered: number } | { n: number; status: number; error: string }

/**
 * The primary's answer to a worker's `ticket`: what its ledger said (for `put`, null when kept;
 * for a `take`, the identity or null), or why it could not (the status and error to answer).
 */
export type TicketAnswer = { ok: AppIdentity | null } | { refused: { status: number; error: string; headers: Array<[string, string]> } }

export type ToWorker =
  /**
   * `marks`: the ids of events to one client among `history`, each with how many of its events
   * come before it. `bus`: whether the primary's bus answers (Redis), for the worker's /healthz and
   * /stats; then `bus` messages when that changes.
   */
  | { t: 'init'; node: string; token: string | null; history: WireEvent[]; marks: Array<[id: string, at: number]>; ids: IdBlock; bus: BusState }
  | { t: 'bus'; state: BusState }
  /** Every event of one turn of the primary, and this worker's publishes it answered in that turn (after the events: their publishers' streams have them first). */
  | { t: 'batch'; events: WireEvent[]; answers: PublishAnswer[] }
  | { t: 'ids'; ids: IdBlock }
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
  /** The streams of one turn that opened or changed, and that closed: each id once, in one of the two. */
  | { t: 'presence'; opened: StreamFacts[]; closed: number[] }
  | { t: 'ids' }
  /** A ticket made here, for the primary's ledger to keep (`put`), or presented here (no `put`: spend it); answered by number (`answer`, a TicketAnswer). */
  | { t: 'ticket'; n: number; digest: string; put?: { identity: AppIdentity; expiresAt: number } }
  | ({ t: 'ask'; n: number } & Question)
  | { t: 'answer'; n: number; value: unknown }
