// Stream ids unique in a cluster, for one process: a block at a time from whoever hands blocks
// out (a counter in one process, the primary to its workers, Redis to its nodes), so that opening
// a stream never waits for another process. The next block is asked for at half of the one in
// use, so it has normally long come when it is needed; when it has not (Redis away), a stream is
// refused with 503 and Retry-After rather than kept waiting.

import { HttpError } from '../http/errors.js'

export type IdBlock = readonly [first: number, last: number]

export class StreamIds {
  /** The next id to give, and the first and last of the block in use (none yet: spent). */
  private next = 1
  private first = 1
  private last = 0
  /** The block to go on with once this one is spent. */
  private spare: IdBlock | null = null
  /** A block was asked for and has not come. */
  private asked = false

  /** `ask` asks for a block: it comes through give(), at once (a counter) or later. */
  constructor(private readonly ask: () => void) {}

  /** A stream id; throws HttpError 503 when none is left and the next block has not come. */
  take(): number {
    if (this.next > this.last) {
      if (this.spare !== null) this.use(this.spare)
      // Asked again though a request may be under way: the primary and Redis fetch one block
      // at a time, so it costs nothing, and it needs no promise here.
      else this.ask()
      if (this.next > this.last) throw new HttpError(503, 'no stream ids left; try again', [['Retry-After', '1']])
    }
    const id = this.next++
    if (!this.asked && this.spare === null && (id - this.first) * 2 >= this.last - this.first) {
      this.asked = true
      this.ask()
    }
    return id
  }

  /** A block came: used at once when the one in use is spent, else kept as the spare. */
  give(block: IdBlock): void {
    this.asked = false
    if (this.next > this.last) this.use(block)
    else if (this.spare === null) this.spare = block
  }

  /** The spare block, handed on whole (a machine's primary gives it to a worker); another is asked for. */
  takeSpare(): IdBlock | null {
    const block = this.spare
    this.spare = null
    if (!this.asked) {
      this.asked = true
      this.ask()
    }
    return block
  }

  private use(block: IdBlock): void {
    if (block === this.spare) this.spare = null
    ;[this.first, this.last] = block
    this.next = this.first
  }
}
