// What travels between the tabs of one shared stream over BroadcastChannel, and what each tab
// remembers of it: the messages, the ring of relayed events, the ids a tab has dispatched.

import type { ReadyState } from './connection.js'

/** A tab to the leader: "I am here, with these channels, and the last id I have" ('' for none). */
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
/** The leader to one tab: from here on you get group `g`, whose stream is in state `s`. */
export interface In {
  k: 'in'
  from: string
  to: string
  g: string
  s: ReadyState
}
/** A group's stream opened (1), is reconnecting (0) or ended for good (2). */
export interface State {
  k: 'st'
  from: string
  g: string
  s: ReadyState
}
/** One event of group `g`'s stream (`id` '' when it has no `id:` of its own); with `to`, a catch-up for that tab alone. */
export interface Ev extends Relayed {
  k: 'ev'
  from: string
  to?: string
}
export type Message = Hi | Bye | Lead | In | State | Ev

export interface Relayed {
  g: string
  id: string
  type: string
  data: string
}

/** The group of a channel set: tabs with the same set share one stream. */
export function groupKey(channels: readonly string[]): string {
  return JSON.stringify([...new Set(channels)].sort())
}

/**
 * The last events with an id that the leader relayed (RING_EVENTS, RING_CHARS), of every group, in its order.
 * Every tab keeps one, so whichever tab leads next knows where each tab is in the sequence.
 */
export class Ring {
  readonly items: Relayed[] = []
  private readonly keys = new Set<string>()
  /** The data kept, in UTF-16 code units. */
  private chars = 0

  /** At most `capacity` events and `maxChars` of data (but always the newest). */
  constructor(
    private readonly capacity: number,
    private readonly maxChars: number,
  ) {}

  /** Keep `e`, unless this group's event with this id is kept already (a replay). */
  add(e: Relayed): void {
    const key = `${e.g}\n${e.id}`
    if (this.keys.has(key)) return
    this.keys.add(key)
    this.items.push({ g: e.g, id: e.id, type: e.type, data: e.data })
    this.chars += e.data.length
    while (this.items.length > this.capacity || (this.chars > this.maxChars && this.items.length > 1)) {
      const old = this.items.shift()!
      this.chars -= old.data.length
      this.keys.delete(`${old.g}\n${old.id}`)
    }
  }

  /** The newest place of `id` (in group `g` when given), or -1. */
  indexOf(id: string, g?: string): number {
    for (let i = this.items.length - 1; i >= 0; i--) if (this.items[i]!.id === id && (g === undefined || this.items[i]!.g === g)) return i
    return -1
  }

  /** Group `g`'s events after place `i`, oldest first. */
  after(i: number, g: string): Relayed[] {
    return this.items.slice(i + 1).filter((e) => e.g === g)
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
