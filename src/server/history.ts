// The last published events, already encoded, for Last-Event-ID replay (WHATWG HTML §9.2.4:
// a reconnecting client sends the id of the last event it saw). Bounded twice: at most
// `capacity` events and at most `maxBytes` of their frames (or the newest event alone, if it is
// bigger), the oldest forgotten first. No sockets.

import type { Frame } from './sse-encode.js'
import type { Target } from './target.js'

export interface HistoryEntry {
  readonly id: string
  readonly frame: Frame
  /** Who it went to live, so a replay sends a stream only what it would have received. */
  readonly target: Target
}

/** A fixed ring: adding past a bound forgets the oldest. Positions are absolute sequence numbers. */
export class History<E extends HistoryEntry = HistoryEntry> {
  private readonly ring: Array<E | undefined>
  private next = 0 // sequence number the next entry gets
  private count = 0
  private bytesHeld = 0
  // id → sequence number of its entry. Ids are unique while retained (the server refuses a repeat).
  private readonly seqById = new Map<string, number>()

  constructor(
    readonly capacity: number,
    readonly maxBytes: number,
  ) {
    this.ring = new Array<E | undefined>(capacity)
  }

  get size(): number {
    return this.count
  }

  /** Bytes of the retained frames (chunked form, as written to streams). */
  get bytes(): number {
    return this.bytesHeld
  }

  has(id: string): boolean {
    return this.seqById.has(id)
  }

  add(entry: E): void {
    const size = entry.frame.chunk.length
    if (this.capacity === 0) return
    // Never skipped, even when bigger than the whole byte bound (then it is kept alone): a
    // replay that silently left out one event would be a gap nobody is told about.
    while (this.count > 0 && (this.count === this.capacity || this.bytesHeld + size > this.maxBytes)) this.dropOldest()
    this.ring[this.next % this.capacity] = entry
    this.seqById.set(entry.id, this.next)
    this.next++
    this.count++
    this.bytesHeld += size
  }

  /**
   * Visit every retained entry after `lastEventId`, oldest first. `0` means every retained
   * entry. Returns false, visiting nothing, when the id cannot be placed: older than what is
   * retained, newer than the newest, or never ours. The caller then says `reset`.
   */
  since(lastEventId: string, visit: (entry: E) => void): boolean {
    let from: number
    if (lastEventId === '0') {
      from = this.next - this.count
    } else {
      const seq = this.seqById.get(lastEventId)
      if (seq === undefined) return false
      from = seq + 1
    }
    for (let seq = from; seq < this.next; seq++) visit(this.ring[seq % this.capacity]!)
    return true
  }

  /** Forget every entry (ids already handed out stay used: the sequence goes on). */
  clear(): void {
    while (this.count > 0) this.dropOldest()
  }

  private dropOldest(): void {
    const seq = this.next - this.count
    const slot = seq % this.capacity
    const old = this.ring[slot]!
    if (this.seqById.get(old.id) === seq) this.seqById.delete(old.id)
    this.ring[slot] = undefined
    this.bytesHeld -= old.frame.chunk.length
    this.count--
  }
}
