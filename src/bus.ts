// The one way an event gets published: a small interface, so that a cross-process bus (Redis,
// a socket between workers) can replace the in-process one without touching the HTTP code.
// Modelled on nchan's `nchan_store_t`: one interface over a memory store and a Redis store.

import type { Target } from './clients.js'
import type { SseMessage } from './sse-encode.js'

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

/**
 * The in-process bus: publish calls the subscribers synchronously, so `POST /publish` can answer
 * with the exact number of streams reached. A `filter` target is a function and stays in process;
 * a cross-process bus carries channel, user, role and client targets only.
 */
export class LocalBus implements Bus {
  private subscribers: BusSubscriber[] = []

  publish(event: BusEvent): number {
    let reached = 0
    for (const s of this.subscribers) reached += s(event)
    return reached
  }

  subscribe(subscriber: BusSubscriber): void {
    this.subscribers.push(subscriber)
  }

  close(): void {
    this.subscribers = []
  }
}
