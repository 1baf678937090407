// The one way an event gets published, and the questions only the whole cluster can answer: a
// small interface, so that a bus between processes can replace the in-process one without
// touching the HTTP code. Modelled on nchan's `nchan_store_t`: one interface over a memory store
// and a shared one. The in-process bus answers at once; a cluster bus answers once the cluster
// has accepted the event (a Promise), so the one-process path keeps its synchronous speed.

import type { Stats } from '../metrics.js'
import type { SseMessage } from '../sse-encode.js'
import type { ClientView } from '../stream.js'
import type { Target } from '../target.js'

/** An event as every process delivers it: its final id, its target, whether history keeps it. */
export interface BusEvent {
  readonly message: SseMessage & { id?: string }
  readonly target: Target
  /** Keep it for Last-Event-ID replay (false for events to one client, and for the `time` tick). */
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
 * One process as the bus sees it: it delivers what the bus hands it, in the bus's order, and
 * answers for its own streams. The server is one.
 */
export interface BusNode {
  /** Write the event to the matching streams here (and keep it); returns how many it reached. */
  deliver(event: BusEvent): number
  /** The id for an event published in this process (a one-process bus's sequence). */
  nextEventId(): string
  closeClient(id: number): boolean
  closeAll(): number
  stats(): Stats
  clientExists(id: number): boolean
  userOnline(user: string): boolean
}

export interface Bus {
  /** Called once by the server that uses this bus. */
  attach(node: BusNode): void
  /** Give the event its id and hand it to every process, in the one order. Throws or rejects an HttpError (404, 409, 503). */
  publish(draft: BusDraft): Accepted | Promise<Accepted>
  /** A stream id unique in the cluster. */
  nextClientId(): number
  /** A stream opened or closed here (a cluster shares who is connected where). */
  opened(client: ClientView): void
  closed(id: number): void
  /** Close a stream wherever it is; false when there is none with that id. */
  closeClient(id: number): boolean | Promise<boolean>
  /** Close every stream of the cluster; returns how many. */
  closeAll(): number | Promise<number>
  /** The cluster's figures (one process: its own). */
  stats(): Stats | Promise<Stats>
  close(): void
}
