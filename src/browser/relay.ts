// What travels between the tabs of one shared stream over BroadcastChannel, and what each tab
// remembers of it: the messages, the ring of relayed events, the ids a tab has dispatched.

import type { ReadyState } from './connection.js'
import { DEFAULT_CHANNEL } from '../wire.js'

/** The shared stream's name among a leader's streams (`In.g`, `Ev.g`). */
export const SHARED = 's'

/** The channels of a stream that names none; one array, since a tab asks for each event it takes. */
const DEFAULT_CHANNELS: readonly string[] = [DEFAULT_CHANNEL]

/** A tab's channels as the server has them: none is `default`. */
export function channelsOf(ch: readonly string[]): readonly string[] {
  return ch.length === 0 ? DEFAULT_CHANNELS : ch
}

/** A tab to the leader: "I am here, with these channels, and this is my place" ('' for none). */
export interface Hi {
  k: 'hi'
  tab: string
  ch: readonly string[]
  last: string
}
/** A tab is closing. */
export interface Bye {
  k: 'bye'
  tab: string
}
/** A new leader, from its first moment: every tab answers with `hi`. */
export interface Lead {
  k: 'lead'
  from: string
}
/**
 * The leader to one tab: from here on you get the events of stream `g` (the shared one, or one
 * catching you up), which is in state `s`, and of your channels those in `ch`: what the shared
 * stream carries now.
 */
export interface In {
  k: 'in'
  from: string
  to: string
  g: string
  s: ReadyState
  ch: readonly string[]
}
/** Stream `g` opened (1), is reconnecting (0) or ended for good (2). */
export interface State {
  k: 'st'
  from: string
  g: string
  s: ReadyState
}
/** One event of stream `g` (`id` '' when it has no `id:` of its own); with `to`, for that tab alone. */
export interface Ev extends Relayed {
  k: 'ev'
  from: string
  g: string
  to?: string
}
export type Message = Hi | Bye | Lead | In | State | Ev

/** An event as the shared stream had it: `c` is its channel ('' for an event sent to every channel). */
export interface Relayed {
  id: string
  type: string
  data: string
  c: string
}

/** Whether two channel lists hold the same channels. */
export function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((c) => b.includes(c))
}

/**
 * The last events with an id that the leader relayed on the shared stream (RING_EVENTS,
 * RING_CHARS), in its order. Every tab keeps one, so whichever tab leads next knows where each
 * tab is, and catches up a tab that fell behind without a stream of its own.
 */
export class Ring {
  readonly items: Relayed[] = []
  private readonly ids = new Set<string>()
  /** The data kept, in UTF-16 code units. */
  private chars = 0

  /** At most `capacity` events and `maxChars` of data (but always the newest). */
  constructor(
    private readonly capacity: number,
    private readonly maxChars: number,
  ) {}

  /** Keep `e`, unless it is kept already (a replay). */
  add(e: Relayed): void {
    if (this.ids.has(e.id)) return
    this.ids.add(e.id)
    this.items.push({ id: e.id, type: e.type, data: e.data, c: e.c })
    this.chars += e.data.length
    while (this.items.length > this.capacity || (this.chars > this.maxChars && this.items.length > 1)) {
      const old = this.items.shift()!
      this.chars -= old.data.length
      this.ids.delete(old.id)
    }
  }

  /** The place of `id`, or -1. */
  indexOf(id: string): number {
    return this.ids.has(id) ? this.items.findIndex((e) => e.id === id) : -1
  }

  /** The events after place `i`, oldest first. */
  after(i: number): Relayed[] {
    return this.items.slice(i + 1)
  }
}

/** The last `capacity` ids a tab dispatched: an event replayed across a handoff is one of them. */
export class RecentIds extends Set<string> {
  constructor(private readonly capacity: number) {
    super()
  }

  override add(id: string): this {
    super.add(id)
    // A Set iterates in insertion order: the first is the oldest.
    if (this.size > this.capacity) this.delete(this.values().next().value!)
    return this
  }
}
