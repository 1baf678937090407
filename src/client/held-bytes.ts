// The bytes SseParser keeps between feed() calls: a growable scratch buffer, and Held, a byte
// string that is a view of the chunk being fed for as long as that chunk is in hand, and a copy
// only once it must outlive it. No parsing here.

/** What a view points at when there is none, so that no chunk is kept alive by a stale view. */
const EMPTY = Buffer.alloc(0)
/** Scratch buffers start this small and double as needed, up to the caller's limit. */
const INITIAL_SCRATCH_BYTES = 256

/** One growable byte buffer, reused for the life of the parser. */
export class Scratch {
  buf: Buffer = Buffer.alloc(0)
  length = 0

  /** Append `src[start, end)`; false when that would pass `max` bytes. */
  append(src: Buffer, start: number, end: number, max: number): boolean {
    const need = this.length + (end - start)
    if (need > max) return false
    if (need > this.buf.length) {
      let size = Math.max(INITIAL_SCRATCH_BYTES, this.buf.length * 2)
      while (size < need) size *= 2
      const grown = Buffer.allocUnsafe(Math.min(size, max))
      this.buf.copy(grown, 0, 0, this.length)
      this.buf = grown
    }
    this.length += src.copy(this.buf, this.length, start, end)
    return true
  }

  appendByte(byte: number, max: number): boolean {
    if (this.length + 1 > max) return false
    if (this.length === this.buf.length) {
      const one = Buffer.of(byte)
      return this.append(one, 0, 1, max)
    }
    this.buf[this.length++] = byte
    return true
  }

  set(src: Buffer, start: number, end: number, max: number): boolean {
    this.length = 0
    return this.append(src, start, end, max)
  }
}

/**
 * Bytes the parser holds between lines (the data, the event type, an id): a view of the chunk
 * being fed while that chunk is in hand, so the common event costs no copy, or a copy in its
 * own scratch memory once it must outlive the chunk (keep()).
 */
export class Held {
  private inView = false
  private viewBuf: Buffer = EMPTY
  private viewStart = 0
  private viewEnd = 0
  /** The copy, when not a view; appending goes here. */
  readonly copy = new Scratch()

  get buf(): Buffer {
    return this.inView ? this.viewBuf : this.copy.buf
  }
  get start(): number {
    return this.inView ? this.viewStart : 0
  }
  get end(): number {
    return this.inView ? this.viewEnd : this.copy.length
  }

  /** Hold `buf[start, end)` as a view: valid until the chunk it is in is gone. */
  view(buf: Buffer, start: number, end: number): void {
    this.inView = true
    this.viewBuf = buf
    this.viewStart = start
    this.viewEnd = end
  }

  /** Hold a copy of `buf[start, end)`; false when that would pass `max` bytes. */
  set(buf: Buffer, start: number, end: number, max: number): boolean {
    this.dropView()
    return this.copy.set(buf, start, end, max)
  }

  /** Hold what `other` holds, as a view if it is one. */
  assign(other: Held, max: number): boolean {
    if (other.inView) {
      this.view(other.viewBuf, other.viewStart, other.viewEnd)
      return true
    }
    return this.set(other.copy.buf, 0, other.copy.length, max)
  }

  /** The chunk is about to go: copy a view into own memory. False when that would pass `max`. */
  keep(max: number): boolean {
    if (!this.inView) return true
    const ok = this.copy.set(this.viewBuf, this.viewStart, this.viewEnd, max)
    this.dropView()
    return ok
  }

  clear(): void {
    this.dropView()
    this.copy.length = 0
  }

  toString(): string {
    return this.buf.toString('utf8', this.start, this.end)
  }

  private dropView(): void {
    this.inView = false
    this.viewBuf = EMPTY
  }
}

export function equalBytes(a: Buffer, as: number, ae: number, b: Buffer, bs: number, be: number): boolean {
  if (ae - as !== be - bs) return false
  for (let i = 0; i < ae - as; i++) if (a[as + i] !== b[bs + i]) return false
  return true
}
