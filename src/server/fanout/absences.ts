// Live channels: where in history a stream was away from each channel it left, so that a `since`
// replay when it comes back gives it exactly the events it missed, each once, however many times
// it left and came back. Remembering only the last departure lost the events of every earlier
// absence; remembering none would replay what it had.
//
// Places are history sequence numbers (history.ts). An absence is [left, back): the events of
// the channel from `left` (included) to `back` (excluded) did not reach the stream; the last
// absence is open while the stream stays away. Bounded per stream: MAX_CHANNELS_LEFT channels and
// MAX_ABSENCES_PER_CHANNEL absences each. What is forgotten raises a floor, and a `since` before
// a floor gets `reset`: a loss is told, never guessed.

import { MAX_ABSENCES_PER_CHANNEL, MAX_CHANNELS_LEFT } from '../limits.js'

/**
 * A channel's record: [floor, left1, back1, left2, back2, …]. Before `floor`, the stream's
 * history with the channel is forgotten; then its absences, oldest first (an odd count of
 * bounds while it is away). Records are replaced, never grown: an array made by concat() or
 * slice() has no spare slots, where one grown by push() keeps 17 (a 10 000-stream page-flip
 * storm, 32 records a stream, held 70 MiB more that way; limits.ts says why 16).
 */
type Record = readonly number[]

export class Absences {
  /** In the order each channel was last left, or first joined (a Map keeps insertion order): the first is forgotten first. */
  private readonly records = new Map<string, Record>()
  /** Before this place, a channel whose record was forgotten cannot be vouched for. */
  private floor = 0

  /** The stream leaves `channel` at place `at`; `oldest` is the oldest place history still retains. */
  leave(channel: string, at: number, oldest: number): void {
    this.forgetBefore(oldest)
    let r = (this.records.get(channel) ?? [this.floor]).concat(at)
    this.records.delete(channel)
    if (r.length > 1 + 2 * MAX_ABSENCES_PER_CHANNEL) {
      // The oldest absence goes: before its end, nothing is vouched for.
      r = [Math.max(r[0]!, r[2]!)].concat(r.slice(3))
    }
    this.keep(channel, r)
  }

  /**
   * The stream comes back to `channel` at place `at` (it has its events live from there). With
   * `replayedFrom`, a `since` replay has just given it every event it missed from that place on.
   */
  join(channel: string, at: number, replayedFrom?: number): void {
    // A channel with no record: it had none of it since the floor.
    const known = this.records.get(channel)
    const old = known ?? [this.floor, this.floor]
    // Back where it left, with nothing published meanwhile: no absence at all.
    const b = old.at(-1) === at ? old.slice(0, -1) : old.concat(at)
    let r: Record = b
    if (replayedFrom !== undefined) {
      const cut: number[] = [b[0]!]
      for (let i = 1; i < b.length; i += 2) {
        const back = Math.min(b[i + 1]!, replayedFrom)
        if (b[i]! < back) cut.push(b[i]!, back)
      }
      r = cut.slice()
    }
    if (known === undefined) this.keep(channel, r)
    else this.records.set(channel, r)
  }

  /** The place before which a `since` for `channel` cannot be answered exactly (it gets `reset`). */
  knownFrom(channel: string): number {
    return this.records.get(channel)?.[0] ?? this.floor
  }

  /** Whether the stream missed `channel`'s event at place `seq` (it was away then), as far as known. */
  missed(channel: string, seq: number): boolean {
    const r = this.records.get(channel)
    if (r === undefined) return seq >= this.floor
    if (seq < r[0]!) return false
    for (let i = 1; i < r.length; i += 2) if (seq >= r[i]! && (i + 1 === r.length || seq < r[i + 1]!)) return true
    return false
  }

  /** Record `r` last; past MAX_CHANNELS_LEFT the oldest record is forgotten, and the floor rises. */
  private keep(channel: string, r: Record): void {
    this.records.set(channel, r)
    if (this.records.size <= MAX_CHANNELS_LEFT) return
    const [ch, old] = this.records.entries().next().value!
    this.records.delete(ch)
    // Its last bound: after a departure it had none; after a return, what came before is unknown.
    this.floor = Math.max(this.floor, old.at(-1)!)
  }

  /** Absences over before `oldest` can never be replayed: drop them, and a record that then says nothing. */
  private forgetBefore(oldest: number): void {
    for (const [ch, r] of this.records) {
      let drop = 0
      while (drop + 2 < r.length && r[drop + 2]! <= oldest) drop += 2
      if (drop === 0) continue
      if (r.length - drop === 1 && r[0]! <= Math.max(oldest, this.floor)) this.records.delete(ch)
      else this.records.set(ch, [r[0]!].concat(r.slice(1 + drop)))
    }
  }
}
