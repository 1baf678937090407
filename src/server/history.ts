// The last N published events, already encoded, for Last-Event-ID replay (WHATWG HTML §9.2.4:
// a reconnecting client sends the id of the last event it saw). No sockets.

import type { Target } from './streams.js'
import type { Frame } from './sse-encode.js'

export interface HistoryEntry {
  readonly id: string
  readonly frame: Frame
  /** Who it went to live, so a replay sends a stream only what it would have received. */
  readonly target: Target
}

/** A fixed ring: adding past capacity forgets the oldest. Positions are absolute sequence numbers. */
export class History {
  private readonly ring: Array<HistoryEntry | undefined>
  private next = 0 // sequence number the next entry gets
  private count = 0
  // id → sequence number of its newest entry. A publisher may repeat an id; the newest wins.
  private readonly seqById = new Map<string, number>()

  constructor(readonly capacity: number) {
    this.ring = new Array<HistoryEntry | undefined>(capacity)
  }

  get size(): number {
    return this.count
  }

  add(entry: HistoryEntry): void {
    if (this.capacity === 0) return
    const slot = this.next % this.capacity
    const old = this.ring[slot]
    if (old !== undefined && this.seqById.get(old.id) === this.next - this.capacity) this.seqById.delete(old.id)
    this.ring[slot] = entry
    this.seqById.set(entry.id, this.next)
    this.next++
    if (this.count < this.capacity) this.count++
  }

  /**
   * Visit every retained entry after `lastEventId`, oldest first. `0` means every retained
   * entry. Returns false, visiting nothing, when the id cannot be placed: older than what is
   * retained, newer than the newest, or never ours. The caller then says `reset`.
   */
  since(lastEventId: string, visit: (entry: HistoryEntry) => void): boolean {
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
}
