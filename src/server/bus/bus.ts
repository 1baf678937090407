// The one way an event gets published, and the questions only the whole cluster can answer
// (questions.ts): a small interface, so that a bus between processes can replace the in-process
// one without touching the HTTP code. Modelled on nchan's `nchan_store_t`: one interface over a
// memory store and a shared one. The in-process bus answers at once; a cluster bus answers once
// the cluster has accepted the event or answered the question (a Promise), so the one-process
// path keeps its synchronous speed.

import type { SseMessage } from '../fanout/sse-encode.js'
import type { Target } from '../fanout/target.js'
import type { TicketLedger } from '../access/tickets.js'
import type { Answer, Question } from './questions.js'
import type { IdBlock } from './stream-ids.js'
import type { StreamFacts } from './wire.js'
import type { PresenceFeed } from '../webhooks/presence-changes.js'

/** An event as every process delivers it: its final id, its target, whether history keeps it. */
export interface BusEvent {
  readonly message: SseMessage & { id?: string }
  readonly target: Target
  /** Keep it for Last-Event-ID replay (false for events to one client, and for the `time` tick: publish-rules.ts). */
  readonly keep: boolean
}

/** An event offered to the bus: the id is the bus's to give when the publisher gave none. */
export interface BusDraft extends BusEvent {
  /** A `user` or `client` target connected nowhere is refused (HTTP 404 `offline`) rather than sent. */
  readonly strict: boolean
}

export interface Accepted {
  id: string
  /** Streams it reached (in a cluster: from the counts the processes share, a moment old). */
  delivered: number
}

/**
 * One member of a cluster as the bus sees it: it delivers what the bus hands it, in the bus's
 * order, and answers for its own streams. The server is one; so is the primary of `--workers`,
 * for all of its workers together, when it is one node of a Redis cluster.
 */
export interface BusNode {
  /** Write the event to the matching streams here (and keep it); returns how many it reached. */
  deliver(event: BusEvent): number
  /**
   * An event to one client, delivered before this node joined, had this id: remember where it
   * fell (between the history events handed over with it), as deliver() does for one it delivers.
   */
  mark(id: string): void
  /**
   * The bus lost events this node never got (Redis lost its data, or trimmed what a node that
   * was cut off missed): forget the history, and tell every open stream with `reset`.
   */
  gap(): void
  /** The id for an event published in this process (a one-process bus's sequence). */
  nextEventId(): string
  /** Streams here a target reaches. */
  count(target: Target): number
  /** Answer a question about the streams here (questions.ts answerLocally; a primary asks its workers). */
  answer<Q extends Question>(q: Q): Answer<Q> | Promise<Answer<Q>>
  clientExists(id: number): boolean
  userOnline(user: string): boolean
}

/** Whether the bus answers: `down` while publishing cannot succeed (503 bus unavailable). */
export type BusState = 'up' | 'down'

export interface Bus {
  /**
   * publish() answers later, with a Promise (a bus between processes). The synchronous
   * publishEvent() then refuses before handing anything to the bus, rather than publish an event
   * whose answer nobody would wait for.
   */
  readonly answersLater?: boolean
  /** `down` while the bus does not answer (a bus between machines; /healthz and /stats say so). Absent: always up. */
  readonly state?: BusState
  /**
   * Where this process reads the cluster's presence to tell its changes (webhooks, the `presence`
   * event; webhooks/presence-changes.ts): absent, its own streams are the cluster's (one process);
   * 'elsewhere', another process tells them (a `--workers` worker: its primary); else this node's
   * view of the cluster, and how the nodes agree on who tells each change.
   */
  readonly presenceFeed?: PresenceFeed | 'elsewhere'
  /** Called once by the server that uses this bus. */
  attach(node: BusNode): void
  /** Join the cluster and load its retained history, before the node accepts streams (listen() waits for it). */
  start?(): Promise<void>
  /** Be told when the bus stops answering and when it answers again (a bus between machines). */
  watch?(fn: (state: BusState, detail: string) => void): void
  /** Give the event its id and hand it to every process, in the one order. Throws or rejects an HttpError (404, 409, 503). */
  publish(draft: BusDraft): Accepted | Promise<Accepted>
  /** A stream id unique in the cluster (stream-ids.ts); throws HttpError 503 when none is left for now. */
  nextClientId(): number
  /** A block of stream ids unique in the cluster, for a machine's primary to hand to one worker. */
  idBlock(): IdBlock | Promise<IdBlock>
  /** A stream opened here, or its facts changed; or it closed (a cluster shares who is connected where). */
  opened(stream: StreamFacts): void
  closed(id: number): void
  /**
   * Ask the cluster about its streams, wherever they are: close one (false when there is none
   * with that id), close all (how many), its figures (one process: its own).
   */
  ask<Q extends Question>(q: Q): Answer<Q> | Promise<Answer<Q>>
  /**
   * Where the cluster keeps tickets (POST /tickets), so that one is spent once in the whole
   * cluster: a worker's primary, or Redis. Absent: each process keeps its own.
   */
  readonly tickets?: TicketLedger
  /** Leave the cluster (a Redis node says goodbye, so the others stop counting its streams at once). */
  close(): void | Promise<void>
  /**
   * Resolves once this node has what the cluster has published so far (bounded): asked before a
   * `Last-Event-ID` this node cannot place is answered with `reset`, in case it is just behind.
   */
  catchUp?(): Promise<void>
}
