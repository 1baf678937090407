// `rawsse bench`'s arithmetic: the shared monotonic clock, the body template ({seq} and {ts} written
// into and read back out of bytes) and a log-scale latency histogram. No sockets, no timers.

const DIGIT_0 = 48
const DIGIT_9 = 57

/** The placeholders of a body template. */
export const SEQ_PLACEHOLDER = '{seq}'
export const TS_PLACEHOLDER = '{ts}'

/** Decimal digits written for a number at most: 2^53 has 16. */
const MAX_DIGITS = 16

/**
 * Histogram: values below 2^SUB_BITS µs get a bucket each; above, each power of two is split into
 * 2^SUB_BITS buckets, so a bucket is at most 1/128 (0.8 %) of its values wide: a quantile read off
 * it is within 0.8 % of the exact one, and the table's two decimals mean something.
 */
const SUB_BITS = 7
const SUB = 1 << SUB_BITS
/** Buckets for 0 µs to 2^32 µs (71 minutes), 3 328 of them; anything longer lands in the last one (max stays exact). */
export const HIST_BUCKETS = (32 - SUB_BITS + 1) * SUB
const MAX_HIST_VALUE = 2 ** 32 - 1

// ---------------------------------------------------------------- clock

// CLOCK_MONOTONIC is one clock for every process on a Linux host, so a worker process can subtract
// a timestamp the publishing process wrote. process.hrtime() reads it (uv_hrtime). It makes one
// small array per call, and it is called once per socket read, not per event. (performance.now()
// would allocate nothing, but on Node 20 it was measured drifting from hrtime by ~0.2 %: a
// millisecond per half second, more than the latencies measured here.)

/** CLOCK_MONOTONIC in microseconds: the same number as process.hrtime.bigint() / 1000n. */
export function monotonicUs(): number {
  const t = process.hrtime()
  return t[0] * 1e6 + Math.floor(t[1] / 1000)
}

// ---------------------------------------------------------------- digits

/** How many decimal digits a whole number ≥ 0 has. */
export function digitCount(n: number): number {
  let d = 1
  while (n >= 10 && d < MAX_DIGITS) {
    n = Math.floor(n / 10)
    d++
  }
  return d
}

/** Write whole number `n` as `digits` decimal digits at `buf[off]`; returns the offset after them. */
export function writeDigits(buf: Buffer, off: number, n: number, digits: number): number {
  for (let i = off + digits - 1; i >= off; i--) {
    buf[i] = DIGIT_0 + (n % 10)
    n = Math.floor(n / 10)
  }
  return off + digits
}

// ---------------------------------------------------------------- template

type Piece = { kind: 'text'; bytes: Buffer } | { kind: 'seq' } | { kind: 'ts' }

/**
 * The publish body with `{seq}` and `{ts}` in it. The publisher writes it into a byte buffer per
 * event; each subscriber reads both numbers back from the event's data without making a string.
 */
export class BodyTemplate {
  readonly source: string
  private readonly pieces: Piece[]
  private readonly textBytes: number
  /** For reading: the literal bytes just before each placeholder, in order (may be empty). */
  private readonly anchors: Buffer[]
  private readonly order: Array<'seq' | 'ts'>
  /** The numbers extract() found; fields, so that a read returns no object. */
  seq = 0
  ts = 0

  constructor(source: string) {
    this.source = source
    this.pieces = []
    this.anchors = []
    this.order = []
    let text = ''
    for (let i = 0; i < source.length; ) {
      const kind = source.startsWith(SEQ_PLACEHOLDER, i) ? 'seq' : source.startsWith(TS_PLACEHOLDER, i) ? 'ts' : null
      if (kind === null) {
        text += source[i++]
        continue
      }
      const bytes = Buffer.from(text, 'utf8')
      if (bytes.length > 0) this.pieces.push({ kind: 'text', bytes })
      this.anchors.push(bytes)
      this.order.push(kind)
      this.pieces.push({ kind })
      text = ''
      i += kind === 'seq' ? SEQ_PLACEHOLDER.length : TS_PLACEHOLDER.length
    }
    if (text !== '') this.pieces.push({ kind: 'text', bytes: Buffer.from(text, 'utf8') })
    this.textBytes = this.pieces.reduce((n, p) => n + (p.kind === 'text' ? p.bytes.length : 0), 0)
  }

  /** Why this template cannot be used, or null. */
  problem(): string | null {
    if (!this.order.includes('seq') || !this.order.includes('ts')) return `must contain ${SEQ_PLACEHOLDER} and ${TS_PLACEHOLDER}`
    for (let i = 1; i < this.order.length; i++) {
      // Two numbers with nothing between them cannot be told apart when read back.
      if (this.anchors[i]!.length === 0) return 'needs text between placeholders'
    }
    return null
  }

  /** The body's length for these numbers. */
  size(seqDigits: number, tsDigits: number): number {
    let n = this.textBytes
    for (const kind of this.order) n += kind === 'seq' ? seqDigits : tsDigits
    return n
  }

  /** Write the body at `buf[off]`; returns the offset after it. */
  write(buf: Buffer, off: number, seq: number, seqDigits: number, ts: number, tsDigits: number): number {
    for (const p of this.pieces) {
      if (p.kind === 'text') off += p.bytes.copy(buf, off)
      else if (p.kind === 'seq') off = writeDigits(buf, off, seq, seqDigits)
      else off = writeDigits(buf, off, ts, tsDigits)
    }
    return off
  }

  /**
   * Read `seq` and `ts` out of event data `buf[start, end)` into this.seq and this.ts; false when
   * there are none. The server may wrap the body (quotes, JSON): each number is looked for after
   * the template text that precedes it, or, when that text is absent, at the next digits.
   */
  extract(buf: Buffer, start: number, end: number): boolean {
    let pos = start
    for (let i = 0; i < this.order.length; i++) {
      const anchor = this.anchors[i]!
      if (anchor.length > 0) {
        // indexOf may look past `end` into the next event; a match there counts as none.
        const at = buf.indexOf(anchor, pos)
        if (at !== -1 && at + anchor.length <= end) pos = at + anchor.length
      }
      while (pos < end && (buf[pos]! < DIGIT_0 || buf[pos]! > DIGIT_9)) pos++
      if (pos === end) return false
      let n = 0
      let digits = 0
      while (pos < end && digits < MAX_DIGITS) {
        const c = buf[pos]!
        if (c < DIGIT_0 || c > DIGIT_9) break
        n = n * 10 + (c - DIGIT_0)
        pos++
        digits++
      }
      if (this.order[i] === 'seq') this.seq = n
      else this.ts = n
    }
    return true
  }
}

// ---------------------------------------------------------------- histogram

function bucketOf(us: number): number {
  if (us < SUB) return us < 0 ? 0 : Math.floor(us)
  const v = us > MAX_HIST_VALUE ? MAX_HIST_VALUE : us
  const e = 31 - Math.clz32(v)
  return (e - SUB_BITS + 1) * SUB + ((v >>> (e - SUB_BITS)) & (SUB - 1))
}

/** The largest value (µs) that falls in bucket `b`. */
function bucketTop(b: number): number {
  if (b < SUB) return b
  const e = Math.floor(b / SUB) + SUB_BITS - 1
  const width = 2 ** (e - SUB_BITS)
  return (SUB + (b % SUB)) * width + width - 1
}

/** Latencies in µs, counted in fixed log-scale buckets: memory does not grow with the samples. */
export class Histogram {
  readonly counts: Float64Array = new Float64Array(HIST_BUCKETS)
  count = 0
  max = 0

  record(us: number): void {
    this.counts[bucketOf(us)] += 1
    this.count++
    if (us > this.max) this.max = us
  }

  /** Add another histogram's buckets (another worker's, received as plain numbers). */
  add(counts: ArrayLike<number>, count: number, max: number): void {
    for (let i = 0; i < HIST_BUCKETS; i++) this.counts[i] += counts[i] ?? 0
    this.count += count
    if (max > this.max) this.max = max
  }

  /** The buckets in use as [bucket, count, bucket, count, …]: a second's worth crosses IPC small. */
  sparse(): number[] {
    const out: number[] = []
    for (let b = 0; b < HIST_BUCKETS; b++) if (this.counts[b] !== 0) out.push(b, this.counts[b]!)
    return out
  }

  addSparse(pairs: readonly number[], max: number): void {
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      this.counts[pairs[i]!]! += pairs[i + 1]!
      this.count += pairs[i + 1]!
    }
    if (max > this.max) this.max = max
  }

  reset(): void {
    this.counts.fill(0)
    this.count = 0
    this.max = 0
  }

  /** The value at quantile q (0..1), in µs: the top of its bucket, never above the true max. */
  quantile(q: number): number {
    if (this.count === 0) return 0
    const rank = Math.max(1, Math.ceil(q * this.count))
    let seen = 0
    for (let b = 0; b < HIST_BUCKETS; b++) {
      seen += this.counts[b]!
      if (seen >= rank) return Math.min(bucketTop(b), this.max)
    }
    return this.max
  }
}
