// The in-process bus: one process, no one to agree with, so publishing is a function call.

import type { Bus, BusEvent, BusSubscriber } from './bus.js'

/**
 * Publish calls the subscribers synchronously, so `POST /publish` can answer with the exact
 * number of streams reached. A `filter` target is a function and stays in process; a
 * cross-process bus carries channel, user, role and client targets only.
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
