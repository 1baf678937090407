// One fan-out: a set of up to SET_MAX events (one backlog generation) written to every stream that matches, a
// slice of streams per event-loop turn. A write to a socket costs ~10 µs of kernel time, so one
// event to 10 000 streams held the loop for ~100 ms, and accepts, `ready`, publish answers and
// /healthz queued behind it; between slices they run. Each stream still gets the set in one write,
// in order: a stream the fan-out has not reached yet and that must be written meanwhile (it blocks,
// gets an event of its own, or ends) first takes the set from the backlog (Stream.catchUp), and
// the fan-out then passes it by, since its `gen` says it has had the set. No sockets of its own.

import type { Frame } from './sse-encode.js'
import type { Stream } from './stream.js'
import { matches, type Target } from './target.js'

/**
 * Events of one set are told apart by the bits of a 31-bit positive int: a longer burst is several
 * sets, each its own fan-out (a stream blocked by one owes the next from the backlog), still one
 * write per stream per set.
 */
export const SET_MAX = 30

export class FanOutJob {
  /** list[0, cursor) have been visited: Streams keeps it so when it removes a stream meanwhile. */
  cursor = 0
  /**
   * The Buffer each distinct share of the events makes, built once: by framing (Frame.bytesFor),
   * then by mask. A map per framing rather than one key for both, so that a key stays a small
   * integer (30 bits of mask) and looking it up allocates nothing.
   */
  private readonly shared: Array<Map<number, Buffer> | undefined> = [undefined, undefined, undefined, undefined]

  constructor(
    /** The backlog generation of these events. */
    readonly gen: number,
    private readonly frames: readonly Frame[],
    private readonly targets: readonly Target[],
  ) {}

  get done(): boolean {
    return this.cursor === -1
  }

  /**
   * Visit streams from the cursor until `budget` writes are made or the list ends; returns the
   * writes made and the bytes. Streams over `maxBufferBytes` unsent go in `slow`, to be dropped
   * after the slice (never while the loop that writes to them runs).
   */
  run(list: readonly Stream[], budget: number, maxBufferBytes: number, out: { bytes: number; slow: Stream[] | null }): number {
    const frames = this.frames
    const targets = this.targets
    const gen = this.gen
    let writes = 0
    let i = this.cursor
    for (; i < list.length && writes < budget; i++) {
      const c = list[i]!
      // Passed by: doomed (dropped in a later slice), gone, or it has had this set already.
      if (c.gen >= gen || c.doomed || c.socket.destroyed) continue
      // Marked first: a write that blocks the stream then makes it owe only the sets after this one.
      c.gen = gen
      let mask = 0
      for (let k = 0; k < frames.length; k++) if (matches(c, targets[k]!)) mask |= 1 << k
      if (mask === 0) continue
      let buf: Buffer | undefined
      const framing = c.framing
      if (frames.length === 1) {
        buf = frames[0]!.bytesFor(framing)
      } else {
        const byMask = (this.shared[framing] ??= new Map<number, Buffer>())
        buf = byMask.get(mask)
        if (buf === undefined) {
          const parts: Buffer[] = []
          for (let k = 0; k < frames.length; k++) if ((mask & (1 << k)) !== 0) parts.push(frames[k]!.bytesFor(framing))
          buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
          byMask.set(mask, buf)
        }
      }
      c.send(buf, bitCount(mask))
      out.bytes += buf.length
      writes++
      if (c.unsent > maxBufferBytes) (out.slow ??= []).push(c)
    }
    this.cursor = i < list.length ? i : -1
    return writes
  }
}

/** Set bits of a batch mask: the events of the batch one stream got. */
function bitCount(mask: number): number {
  let n = 0
  for (let m = mask; m !== 0; m &= m - 1) n++
  return n
}
