// The one way an event gets published: a small interface, so that a cross-process bus (Redis,
// a socket between workers) can replace the in-process one without touching the HTTP code.
// Modelled on nchan's `nchan_store_t`: one interface over a memory store and a Redis store.

import type { SseMessage } from '../sse-encode.js'
import type { Target } from '../target.js'

export interface BusEvent {
  /** The message with its final id. */
  readonly message: SseMessage & { id: string }
  readonly target: Target
  /** Keep it for Last-Event-ID replay (false for events to one client: their ids do not survive a reconnect). */
  readonly keep: boolean
}

/** Receives every event published on the bus, in order; returns the streams it reached here. */
export type BusSubscriber = (event: BusEvent) => number

export interface Bus {
  /** Hand an event to every subscriber; returns the streams reached in this process. */
  publish(event: BusEvent): number
  subscribe(subscriber: BusSubscriber): void
  close(): void
}
