// The last published events, already encoded, for Last-Event-ID replay (WHATWG HTML §9.2.4:
// a reconnecting client sends the id of the last event it saw). Bounded twice: at most
// `capacity` events and at most `maxBytes` of their frames (or the newest event alone, if it is
// bigger), the oldest forgotten first. Events sent to one client are not kept, but where their
// ids fell is (marks), so that client resumes after them. No sockets.

import { MAX_HISTORY_MARKS } from '../limits.js'
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
  // Marks: the id of an event that went to one client → the sequence number the next kept entry
  // got after it, i.e. where a replay from that id starts. Oldest first (a Map keeps insertion
  // order), positions never decreasing, so both bounds forget from the front.
  private readonly marks = new Map<string, number>()

  constructor(
    readonly capacity: number,
    readonly maxBytes: number,
  ) {
    this.ring = new Array<E | undefined>(capacity)
  }

  get size(): number {
    return this.count
  }

  /**
   * Bytes of the retained frames (chunked form, as written to streams). A frame's tagged copy
   * (sse-encode.ts, `tag=channel`) is not counted: every history of a cluster must forget the same
   * events (the primary sizes each as its workers do), and whether a process has made the copy
   * depends on whether it holds a tagged stream on that channel. It is one more copy of an event
   * at most, so tagged streams can bring the memory of history up to about twice this.
   */
  get bytes(): number {
    return this.bytesHeld
  }

  /** An id a retained entry or a mark holds: a new event with it would make Last-Event-ID ambiguous. */
  has(id: string): boolean {
    return this.seqById.has(id) || this.marks.has(id)
  }

  add(entry: E): void {
    const size = entry.frame.chunk.length
    if (this.capacity === 0) return
    // Never skipped, even when bigger than the whole byte bound (then it is kept alone): a
    // replay that silently left out one event would be a gap nobody is told about.
    while (this.count > 0 && (this.count === this.capacity || this.bytesHeld + size > this.maxBytes)) this.dropOldest()
    this.ring[this.next % this.capacity] = entry
    this.marks.delete(entry.id)
    this.seqById.set(entry.id, this.next)
    this.next++
    this.count++
    this.bytesHeld += size
  }

  /**
   * An event sent to one client had this id: it is not kept (its data is that client's alone),
   * but the place it fell is, so that client, reconnecting with the id, resumes after it (CONTRACT
   * "Details"). Every node delivers the same events in one order, so each marks the same places.
   * At most MAX_HISTORY_MARKS, the oldest forgotten first; and forgotten with the entry right
   * after it, when a replay from there could no longer be whole. No history, no marks.
   */
  mark(id: string): void {
    if (this.capacity === 0) return
    // A repeated id (the buses refuse one; this is the case they could not see): the newest event
    // with it is the one its client saw last. An older entry with it stays, reachable by position.
    this.seqById.delete(id)
    this.marks.delete(id)
    this.marks.set(id, this.next)
    if (this.marks.size > MAX_HISTORY_MARKS) this.marks.delete(this.marks.keys().next().value!)
  }

  /**
   * Every mark as [id, how many retained entries come before it], oldest first: what a node that
   * joins late needs to mark the same places in the same entries (since('0') gives the entries).
   */
  marksByPlace(): Array<[id: string, at: number]> {
    const first = this.next - this.count
    return Array.from(this.marks, ([id, from]) => [id, from - first])
  }

  /**
   * Visit every retained entry after `lastEventId`, oldest first. `0` means every retained
   * entry; a mark, every retained entry published after its event. Returns false, visiting
   * nothing, when the id cannot be placed: older than what is retained, newer than the newest, or
   * never ours. The caller then says `reset`.
   */
  since(lastEventId: string, visit: (entry: E, seq: number) => void): boolean {
    const from = this.placeOf(lastEventId)
    if (from === null) return false
    for (let seq = from; seq < this.next; seq++) visit(this.ring[seq % this.capacity]!, seq)
    return true
  }

  /** The sequence number a replay after `lastEventId` starts at (see since()); null when it cannot be placed. */
  placeOf(lastEventId: string): number | null {
    if (lastEventId === '0') return this.next - this.count
    const seq = this.seqById.get(lastEventId)
    if (seq !== undefined) return seq + 1
    return this.marks.get(lastEventId) ?? null
  }

  /** The sequence number the next entry gets: entries added from now on come at or after it. */
  get end(): number {
    return this.next
  }

  /** The sequence number of the oldest entry retained (end when none). */
  get oldest(): number {
    return this.next - this.count
  }

  /** Forget every entry and mark (ids already handed out stay used: the sequence goes on). */
  clear(): void {
    while (this.count > 0) this.dropOldest()
    this.marks.clear()
  }

  private dropOldest(): void {
    const seq = this.next - this.count
    const slot = seq % this.capacity
    const old = this.ring[slot]!
    if (this.seqById.get(old.id) === seq) this.seqById.delete(old.id)
    // A mark whose replay would start at this entry (or before it) can no longer be whole.
    for (const [id, from] of this.marks) {
      if (from > seq) break
      this.marks.delete(id)
    }
    this.ring[slot] = undefined
    this.bytesHeld -= old.frame.chunk.length
    this.count--
  }
}
