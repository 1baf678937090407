// What streams are still owed: the recent events in publish order, kept once however many
// streams are behind. A stream whose socket is not taking bytes (blocked) keeps only where it
// stopped (a sequence number) and how many bytes it is owed; when its socket drains it collects
// its events from here, matched against their targets again, and writes them as one Buffer. So a
// stream that stalls costs two numbers however long it stalls, and an event one entry however
// many streams are blocked. Every event is appended, because a fan-out to many streams is written
// a slice of streams per turn (fanout/job.ts): a stream that blocks, or must be written out of
// turn, before its slice comes finds the events it has not had here. The events of one fan-out
// are a set with a generation number (`gen`); a stream remembers the newest set it has had.
// Entries are forgotten once no stream is owed them. No sockets.

import { DRAIN_BYTES_PER_TURN } from '../limits.js'
import type { Frame, Framing } from './sse-encode.js'
import type { ClientView } from './stream.js'
import { matches, type Target } from './target.js'

interface Entry {
  readonly frame: Frame
  readonly target: Target
  /**
   * For a `filter` target: the blocked streams it matched when it was published. The filter is
   * user code and runs once per stream per event, so it is not asked again at collection.
   */
  members: Set<ClientView> | null
}

/** A stream that writes its next slice when its socket drains (Stream). */
export interface Drainable {
  drained(): void
}

export class Backlog {
  private entries: Entry[] = []
  /** Index in `entries` of the oldest entry kept (the array is compacted now and then). */
  private head = 0
  /** Sequence number of entries[head]. */
  private first = 0
  /** Bytes of the entries kept (chunked framing). */
  bytes = 0
  /** Streams blocked now. */
  blocked = 0
  /**
   * The newest set of events (a fan-out, or the events queued for the next one). A stream whose
   * `gen` is lower has not had all of them: it is behind.
   */
  gen = 0
  /** Where each set not yet written to every stream starts: setStarts[i] is set `firstOpenGen + i`'s. */
  private setStarts: number[] = []
  private firstOpenGen = 1

  // Draining streams share a budget of bytes per event-loop turn: a socket's 'drain' says only
  // that the kernel took the last slice, not that anyone read it, so thousands of stalled streams
  // whose kernel buffers still take bytes would copy hundreds of MiB into them in one turn
  // (measured: 640 ms for 3 000 streams of 536-byte segments). Past the budget, a stream writes
  // its slice in a later turn, in the order the drains came.
  private turnBytes = 0
  private later: Drainable[] = []
  private turnQueued = false

  /** May `s` write its next slice now? If not, its drained() is called again in a later turn. */
  mayWrite(s: Drainable): boolean {
    if (this.turnBytes < DRAIN_BYTES_PER_TURN) return true
    this.later.push(s)
    this.queueTurn()
    return false
  }

  /** A draining stream wrote `bytes` this turn. */
  spent(bytes: number): void {
    this.turnBytes += bytes
    this.queueTurn()
  }

  private queueTurn(): void {
    if (this.turnQueued) return
    this.turnQueued = true
    setImmediate(this.nextTurn)
  }

  private readonly nextTurn = (): void => {
    this.turnQueued = false
    this.turnBytes = 0
    const waiting = this.later
    this.later = []
    for (let i = 0; i < waiting.length; i++) {
      if (this.turnBytes >= DRAIN_BYTES_PER_TURN) {
        this.later = waiting.slice(i).concat(this.later)
        this.queueTurn()
        return
      }
      waiting[i]!.drained()
    }
  }

  /** The sequence number the next entry gets: where a stream that blocks now starts owing. */
  get end(): number {
    return this.first + this.entries.length - this.head
  }

  /** The events appended from now on until the next openSet() are set `gen`, a new one. */
  openSet(): void {
    if (this.setStarts.length === 0) this.firstOpenGen = this.gen + 1
    this.gen++
    this.setStarts.push(this.end)
  }

  /** Every stream has had set `g` (and those before it): where they start need not be kept. */
  setDone(g: number): void {
    while (this.setStarts.length > 0 && this.firstOpenGen <= g) {
      this.setStarts.shift()
      this.firstOpenGen++
    }
    if (this.blocked === 0) this.forget(this.end)
  }

  /** Where a stream that has had the sets up to `gen` is owed from: the next set's start, or the end. */
  owedAfter(gen: number): number {
    if (gen >= this.gen) return this.end
    return this.setStarts[Math.max(0, gen + 1 - this.firstOpenGen)] ?? this.end
  }

  /** Keep an event; returns its sequence number. */
  append(frame: Frame, target: Target): number {
    this.entries.push({ frame, target, members: null })
    this.bytes += frame.chunk.length
    return this.end - 1
  }

  /** A blocked stream matched entry `seq`'s filter when it was published. */
  member(seq: number, s: ClientView): void {
    const e = this.entries[this.head + seq - this.first]
    if (e !== undefined) (e.members ??= new Set()).add(s)
  }

  /** Where the last collect() stopped: the sequence number of the first entry it did not look at. */
  collectedTo = 0
  /** Bytes of the Buffers the last collect() returned. */
  collectedBytes = 0

  /**
   * The bytes owed to `s` from entry `from` on, in its framing, oldest first: as many entries as
   * make `maxBytes` (at least one), so that a stream owed a megabyte does not get a megabyte copy
   * of its own; collectedTo says where to go on from.
   */
  collect(s: ClientView, framing: Framing, from: number, maxBytes = Number.POSITIVE_INFINITY): Buffer[] {
    const out: Buffer[] = []
    let bytes = 0
    let i = this.head + Math.max(0, from - this.first)
    for (; i < this.entries.length && bytes < maxBytes; i++) {
      const e = this.entries[i]!
      if (e.members !== null ? e.members.has(s) : e.target.filter === undefined && matches(s, e.target)) {
        const b = e.frame.bytesFor(framing)
        out.push(b)
        bytes += b.length
      }
    }
    this.collectedTo = this.first + i - this.head
    this.collectedBytes = bytes
    return out
  }

  /** The oldest sequence number to keep so that the entries kept hold at most `maxBytes`. */
  keepingAtMost(maxBytes: number): number {
    let bytes = this.bytes
    let i = this.head
    while (bytes > maxBytes && i < this.entries.length) bytes -= this.entries[i++]!.frame.chunk.length
    return this.first + i - this.head
  }

  /** Forget every entry before `seq` (no blocked stream is owed them), and never a set some stream has not had. */
  forget(seq: number): void {
    if (this.setStarts.length > 0) seq = Math.min(seq, this.setStarts[0]!)
    const n = Math.min(seq - this.first, this.entries.length - this.head)
    if (n <= 0) return
    for (let i = this.head; i < this.head + n; i++) this.bytes -= this.entries[i]!.frame.chunk.length
    this.head += n
    this.first += n
    // Compact once the dead front is at least half the array: amortised O(1) per entry.
    if (this.head * 2 >= this.entries.length) {
      this.entries = this.entries.slice(this.head)
      this.head = 0
    }
  }
}
