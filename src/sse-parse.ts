// The one reader of event streams in rawsse: bytes in, events out. WHATWG HTML §9.2.5 "Parsing an
// event stream" and §9.2.6 "Interpreting an event stream":
// https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
// Pure: no sockets, no timers. SseClient and (later) `rawsse bench` both feed it.
//
// A push parser over Buffers: feed() any slice of the body as it arrives, split anywhere, and the
// handler is called once per dispatched event. It keeps state between calls instead of waiting
// for whole lines or events, like ws's receiver: when the bytes run out it stops and remembers.
//
// Hot path: lines are found with Buffer#indexOf (native), and an event that arrives whole in one
// chunk with one `data:` line is handed to the handler as a view of that chunk: no copy, no
// string, no allocation. Only a line split across chunks is copied (into a scratch buffer that
// is reused), and strings are made only when asked for (`lastEventId`) or when the event type
// changes. So a bench scanning thousands of streams pays for bytes, not for objects.

const LF = 10
const CR = 13
const SPACE = 32
const COLON = 58
const NUL = 0
const DIGIT_0 = 48
const DIGIT_9 = 57

/** The UTF-8 byte order mark: the UTF-8 decode the spec runs the stream through strips one at the very start. */
const BOM = Buffer.from([0xef, 0xbb, 0xbf])
/** `bomMatched` once the start of the stream is decided: the BOM was stripped, or there was none. */
const BOM_DONE = -1
/** What a view points at when there is none, so that no chunk is kept alive by a stale view. */
const EMPTY = Buffer.alloc(0)

// The letters of the field names, compared byte by byte (§9.2.6 compares names literally: no
// case folding, no trimming). Cheaper than a compare call on the hottest line of all, `data:`.
const LC_A = 97
const LC_D = 100
const LC_E = 101
const LC_I = 105
const LC_N = 110
const LC_R = 114
const LC_T = 116
const LC_V = 118
const LC_Y = 121

/** The event type when the stream set none, or set it to the empty string. */
export const DEFAULT_EVENT_TYPE = 'message'

/**
 * The longest line, and the longest event data (its lines joined), in bytes. A server that never
 * ends a line or an event cannot make us buffer without bound: one byte more and the parser stops
 * with a `too-large` error, whatever the split of the reads. Far above anything rawsse sends
 * (publish bodies are at most 1 MiB).
 */
export const DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024

/** Scratch buffers start this small and double as needed, up to the limit above. */
const INITIAL_SCRATCH_BYTES = 256
/** Distinct event type strings remembered, so that a stream alternating a few types makes no new strings. */
const TYPE_CACHE_SIZE = 8

/** What can go wrong reading an event stream. A closed union: every parser error is one of these. */
export type SseParseErrorType = 'too-large'

export class SseParseError extends Error {
  readonly type: SseParseErrorType
  constructor(type: SseParseErrorType, message: string) {
    super(message)
    this.name = 'SseParseError'
    this.type = type
  }
}

export interface SseParserHandler {
  /**
   * An event was dispatched (a blank line ended a block holding at least one `data` field).
   * `type` is the event type, `'message'` by default; the string is reused while the type repeats.
   * The data is `data[start, end)`, UTF-8, its lines joined with LF: a view of the chunk given to
   * feed() when the event arrived whole with one data line, else of the parser's own scratch
   * memory. It is valid only during this call: decode it (`data.toString('utf8', start, end)`)
   * or copy it. The event's id is `parser.lastEventId`, read during the call.
   */
  onEvent(type: string, data: Buffer, start: number, end: number): void
  /** A `retry` field of ASCII digits only: the new reconnection time in milliseconds. */
  onRetry?(ms: number): void
  /** A comment line (`:` first): the text after the colon, one leading space removed. Same lifetime as onEvent's data. */
  onComment?(text: Buffer, start: number, end: number): void
  /** The parser gave up on this stream (see SseParseErrorType); it ignores input until reset(). */
  onError?(error: SseParseError): void
}

export interface SseParserOptions {
  /** The last event ID to start from, e.g. one saved from an earlier run. Default: '' (none). */
  lastEventId?: string
  /** See DEFAULT_MAX_EVENT_BYTES. */
  maxEventBytes?: number
}

/** One growable byte buffer, reused for the life of the parser. */
class Scratch {
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

function equalBytes(a: Buffer, as: number, ae: number, b: Buffer, bs: number, be: number): boolean {
  if (ae - as !== be - bs) return false
  for (let i = 0; i < ae - as; i++) if (a[as + i] !== b[bs + i]) return false
  return true
}

export class SseParser {
  private readonly handler: SseParserHandler
  private readonly max: number

  // --- the line being read ---
  /** The start of a line that began in an earlier chunk (copied: the caller may reuse its chunks). */
  private readonly line = new Scratch()
  /** The last chunk ended with CR. That CR already ended a line; an LF first in the next chunk is its other half. */
  private skipLF = false
  /** BOM bytes matched so far at the start of the stream, or BOM_DONE. */
  private bomMatched = 0

  // --- the event being built (§9.2.6: the data buffer and the event type buffer) ---
  /** `data` fields seen in this block. The data is dispatched when this is > 0, even if empty. */
  private dataLines = 0
  /** The first data line as a view of the chunk being fed (dataInView), else the data is in `data`. */
  private dataInView = false
  private viewBuf: Buffer = EMPTY
  private viewStart = 0
  private viewEnd = 0
  private readonly data = new Scratch()
  /** The event type, like the data: a view of the current chunk or a copy in `type`. */
  private typeInView = false
  private typeBuf: Buffer = EMPTY
  private typeStart = 0
  private typeEnd = 0
  private readonly type = new Scratch()
  private readonly typeCache: Array<{ bytes: Buffer; text: string }> = []
  private typeCacheNext = 0

  // --- ids (§9.2.6: the last event ID buffer, and the event source's last event ID string) ---
  // Both are views of the current chunk while it is fed, copied once when feed() returns: with an
  // id on every event, only the last one of a read is ever copied.
  /** The last event ID buffer: set by an `id` field, committed by the next blank line (idDirty: not yet). */
  private idDirty = false
  private idInView = false
  private idBuf: Buffer = EMPTY
  private idStart = 0
  private idEnd = 0
  private readonly idCopy = new Scratch()
  /** The last event ID string, committed. */
  private lastInView = false
  private lastBuf: Buffer = EMPTY
  private lastStart = 0
  private lastEnd = 0
  private readonly lastCopy = new Scratch()
  /** The last event ID decoded, made only when someone reads `lastEventId`. */
  private lastIdText: string | null

  /** Bumped by reset() and by a failure: a feed() in progress stops when a handler does either. */
  private epoch = 0
  private failed = false

  constructor(handler: SseParserHandler, options: SseParserOptions = {}) {
    this.handler = handler
    this.max = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES
    if (!(Number.isSafeInteger(this.max) && this.max > 0)) throw new RangeError('maxEventBytes must be a whole number > 0')
    const initial = options.lastEventId ?? ''
    if (initial.includes('\0') || /[\r\n]/.test(initial)) throw new RangeError('lastEventId must not contain NUL, CR or LF')
    const bytes = Buffer.from(initial)
    this.lastCopy.set(bytes, 0, bytes.length, Number.MAX_SAFE_INTEGER)
    this.lastIdText = initial
  }

  /**
   * The last event ID string: the value of the last `id` field (without NUL) that a blank line
   * has committed, '' when none. It persists across events, and across reset(), so a reconnection
   * sends it as `Last-Event-ID` and later events without an `id` still carry it.
   */
  get lastEventId(): string {
    this.lastIdText ??= this.lastInView ? this.lastBuf.toString('utf8', this.lastStart, this.lastEnd) : this.lastCopy.buf.toString('utf8', 0, this.lastCopy.length)
    return this.lastIdText
  }

  /** Parse `chunk[start, end)`, the next bytes of the stream. Never throws on any input. */
  feed(chunk: Buffer, start = 0, end = chunk.length): void {
    if (this.failed) return
    const epoch = this.epoch
    let pos = start
    if (this.skipLF && pos < end) {
      this.skipLF = false
      if (chunk[pos] === LF) pos++
    }
    if (this.bomMatched !== BOM_DONE) {
      while (pos < end && this.bomMatched < BOM.length && chunk[pos] === BOM[this.bomMatched]) {
        pos++
        this.bomMatched++
      }
      if (this.bomMatched === BOM.length) {
        this.bomMatched = BOM_DONE
      } else if (pos === end) {
        return // every byte so far could still be a BOM: wait for more
      } else {
        // Hard case: EF BB followed by anything but BF is not a BOM but text (EF BB 80 is U+FEC0),
        // and its first bytes may have come in an earlier chunk: they begin the first line.
        if (this.bomMatched > 0 && !this.line.append(BOM, 0, this.bomMatched, this.max)) return this.fail()
        this.bomMatched = BOM_DONE
      }
    }

    // The next CR and LF at or after `pos`, found once and reused while still ahead: searching
    // again for every line would rescan a long CR-free chunk once per line. -1: none left in this chunk.
    let cr = -2
    let lf = -2
    while (pos < end) {
      if (lf !== -1 && lf < pos) {
        lf = chunk.indexOf(LF, pos)
        if (lf >= end) lf = -1
      }
      if (cr !== -1 && cr < pos) {
        cr = chunk.indexOf(CR, pos)
        if (cr >= end) cr = -1
      }
      if (lf === -1 && cr === -1) break
      const eol = cr === -1 || (lf !== -1 && lf < cr) ? lf : cr

      if (this.line.length > 0) {
        // The line began in an earlier chunk: finish it in the scratch copy.
        if (!this.line.append(chunk, pos, eol, this.max)) return this.fail()
        const n = this.line.length
        this.line.length = 0
        this.processLine(this.line.buf, 0, n, false)
      } else {
        // The same limit whether a line arrives whole or in pieces.
        if (eol - pos > this.max) return this.fail()
        this.processLine(chunk, pos, eol, true)
      }
      if (this.epoch !== epoch) return // a handler called reset(), or the event grew too large

      pos = eol + 1
      if (eol === cr) {
        // CRLF is one line end, not a line end and an empty line (which would dispatch).
        if (pos < end) {
          if (chunk[pos] === LF) pos++
        } else {
          // Hard case: a CR that ends the chunk may be half a CRLF. The line is already done (a
          // lone CR is a line end too, and waiting would delay the event), so only remember to
          // drop an LF that comes first in the next chunk.
          this.skipLF = true
        }
      }
    }
    if (pos < end && !this.line.append(chunk, pos, end, this.max)) return this.fail()

    // Views of `chunk` must not outlive this call: the caller may reuse or free its memory.
    if (this.dataInView) {
      this.dataInView = false
      if (!this.data.set(this.viewBuf, this.viewStart, this.viewEnd, this.max)) return this.fail()
      this.viewBuf = EMPTY
    }
    if (this.typeInView) {
      this.typeInView = false
      if (!this.type.set(this.typeBuf, this.typeStart, this.typeEnd, this.max)) return this.fail()
      this.typeBuf = EMPTY
    }
    if (this.idInView) {
      this.idInView = false
      if (this.idDirty && !this.idCopy.set(this.idBuf, this.idStart, this.idEnd, this.max)) return this.fail()
      this.idBuf = EMPTY
    }
    this.keepLastId()
  }

  /** Copy the committed last event ID out of the chunk being fed, which may be reused after feed(). */
  private keepLastId(): void {
    if (!this.lastInView) return
    this.lastInView = false
    this.lastCopy.set(this.lastBuf, this.lastStart, this.lastEnd, Number.MAX_SAFE_INTEGER)
    this.lastBuf = EMPTY
  }

  /**
   * A new stream begins (a reconnection): forget a partial line and an event without its blank
   * line (§9.2.6: "If the file ends in the middle of an event, before the final empty line, the
   * incomplete event is not dispatched"), expect a BOM again. Called from a handler, it also
   * stops the feed() that called the handler.
   *
   * The last event ID is kept, and the new stream's last event ID buffer starts from it. (Read
   * literally, §9.2.6 starts each stream's buffer empty, so the first blank line after a
   * reconnection would clear the id it resumed from; Chromium seeds its parser with the last
   * event ID, the eventsource package never clears it, and neither do we.)
   */
  reset(): void {
    this.epoch++
    this.failed = false
    this.line.length = 0
    this.skipLF = false
    this.bomMatched = 0
    this.clearEvent()
  }

  private fail(): void {
    this.epoch++
    this.failed = true
    this.line.length = 0
    this.clearEvent()
    this.handler.onError?.(new SseParseError('too-large', `event stream line or event larger than ${this.max} bytes`))
  }

  /** Forget the event being built (a feed() in progress stops; its chunk is not looked at again). */
  private clearEvent(): void {
    this.keepLastId()
    // The uncommitted id goes: the next stream starts from the last event ID string.
    this.idDirty = false
    this.idInView = false
    this.idBuf = EMPTY
    this.clearBlock()
  }

  /** The data and event type buffers, emptied after each blank line. */
  private clearBlock(): void {
    this.dataLines = 0
    this.dataInView = false
    this.viewBuf = EMPTY
    this.data.length = 0
    this.typeInView = false
    this.typeBuf = EMPTY
    this.type.length = 0
  }

  /** One line without its line end, in `buf[s, e)`. `inChunk`: `buf` is the chunk being fed. */
  private processLine(buf: Buffer, s: number, e: number, inChunk: boolean): void {
    if (s === e) return this.dispatch()
    if (buf[s] === COLON) {
      // A comment: ignored by the spec; heartbeats are comments.
      if (this.handler.onComment !== undefined) this.handler.onComment(buf, buf[s + 1] === SPACE ? s + 2 : s + 1, e)
      return
    }
    // The field name runs to the first colon; a line without one is a name with an empty value.
    let colon = s
    while (colon < e && buf[colon] !== COLON) colon++
    let vs = colon
    if (colon < e) {
      vs = colon + 1
      if (vs < e && buf[vs] === SPACE) vs++ // one space after the colon is removed, only one
    }
    switch (colon - s) {
      case 4:
        if (buf[s] === LC_D && buf[s + 1] === LC_A && buf[s + 2] === LC_T && buf[s + 3] === LC_A) this.addData(buf, vs, e, inChunk)
        return
      case 5:
        if (buf[s] === LC_E && buf[s + 1] === LC_V && buf[s + 2] === LC_E && buf[s + 3] === LC_N && buf[s + 4] === LC_T) this.setType(buf, vs, e, inChunk)
        else if (buf[s] === LC_R && buf[s + 1] === LC_E && buf[s + 2] === LC_T && buf[s + 3] === LC_R && buf[s + 4] === LC_Y) this.setRetry(buf, vs, e)
        return
      case 2:
        if (buf[s] === LC_I && buf[s + 1] === LC_D) this.setId(buf, vs, e, inChunk)
        return
    }
    // Any other field is ignored.
  }

  private addData(buf: Buffer, vs: number, e: number, inChunk: boolean): void {
    if (this.dataLines === 0 && inChunk) {
      // The common case: keep a view; copied only if the event is still open when the chunk ends.
      this.dataInView = true
      this.viewBuf = buf
      this.viewStart = vs
      this.viewEnd = e
      this.dataLines = 1
      return
    }
    if (this.dataInView) {
      this.dataInView = false
      if (!this.data.set(this.viewBuf, this.viewStart, this.viewEnd, this.max)) return this.fail()
      this.viewBuf = EMPTY
    }
    // The spec appends the value and an LF, and removes the last LF at dispatch: the same as
    // joining the lines with LF.
    if (this.dataLines > 0 && !this.data.appendByte(LF, this.max)) return this.fail()
    if (!this.data.append(buf, vs, e, this.max)) return this.fail()
    this.dataLines++
  }

  private setType(buf: Buffer, vs: number, e: number, inChunk: boolean): void {
    if (inChunk) {
      this.typeInView = true
      this.typeBuf = buf
      this.typeStart = vs
      this.typeEnd = e
    } else {
      this.typeInView = false
      this.typeBuf = EMPTY
      if (!this.type.set(buf, vs, e, this.max)) this.fail()
    }
  }

  private setId(buf: Buffer, vs: number, e: number, inChunk: boolean): void {
    // "If the field value does not contain U+0000 NULL, then set the last event ID buffer to the
    // field value. Otherwise, ignore the field." (A NUL byte in UTF-8 is only ever U+0000.)
    for (let i = vs; i < e; i++) if (buf[i] === NUL) return
    this.idDirty = true
    if (inChunk) {
      this.idInView = true
      this.idBuf = buf
      this.idStart = vs
      this.idEnd = e
    } else {
      this.idInView = false
      this.idBuf = EMPTY
      if (!this.idCopy.set(buf, vs, e, this.max)) this.fail()
    }
  }

  private setRetry(buf: Buffer, vs: number, e: number): void {
    // "If the field value consists of only ASCII digits ... Otherwise, ignore the field." So
    // `retry: 12x`, `retry: -1`, `retry:  5` (a second space) and an empty value change nothing.
    if (vs === e) return
    let ms = 0
    for (let i = vs; i < e; i++) {
      const c = buf[i]!
      if (c < DIGIT_0 || c > DIGIT_9) return
      ms = ms * 10 + (c - DIGIT_0)
    }
    this.handler.onRetry?.(ms)
  }

  /** A blank line: §9.2.6 "dispatch the event". */
  private dispatch(): void {
    // The last event ID string is set at every blank line, even when no event follows, so an
    // `id` alone in a block still moves Last-Event-ID on.
    if (this.idDirty) {
      this.idDirty = false
      this.lastIdText = null
      if (this.idInView) {
        this.lastInView = true
        this.lastBuf = this.idBuf
        this.lastStart = this.idStart
        this.lastEnd = this.idEnd
      } else {
        this.lastInView = false
        this.lastBuf = EMPTY
        this.lastCopy.set(this.idCopy.buf, 0, this.idCopy.length, Number.MAX_SAFE_INTEGER)
      }
    }
    if (this.dataLines === 0) {
      // "If the data buffer is an empty string, set the data buffer and the event type buffer to
      // the empty string and return." A block of only `event:` or `id:` dispatches nothing.
      this.clearBlock()
      return
    }
    const type = this.eventType()
    let buf: Buffer
    let start: number
    let end: number
    if (this.dataInView) {
      buf = this.viewBuf
      start = this.viewStart
      end = this.viewEnd
    } else {
      buf = this.data.buf
      start = 0
      end = this.data.length
    }
    // Cleared before the call: a handler may feed or reset. (The scratch memory itself is only
    // overwritten by the next data line, so `buf` stays valid during the call.)
    this.clearBlock()
    this.handler.onEvent(type, buf, start, end)
  }

  /** The type as a string, made once per distinct type and reused after (TYPE_CACHE_SIZE of them). */
  private eventType(): string {
    let buf: Buffer
    let s: number
    let e: number
    if (this.typeInView) {
      buf = this.typeBuf
      s = this.typeStart
      e = this.typeEnd
    } else {
      buf = this.type.buf
      s = 0
      e = this.type.length
    }
    if (s === e) return DEFAULT_EVENT_TYPE
    for (const entry of this.typeCache) {
      if (equalBytes(entry.bytes, 0, entry.bytes.length, buf, s, e)) return entry.text
    }
    const bytes = Buffer.from(buf.subarray(s, e))
    const text = bytes.toString('utf8')
    if (this.typeCache.length < TYPE_CACHE_SIZE) {
      this.typeCache.push({ bytes, text })
    } else {
      // Round robin: a stream with more distinct types than this just decodes more often.
      this.typeCache[this.typeCacheNext] = { bytes, text }
      this.typeCacheNext = (this.typeCacheNext + 1) % TYPE_CACHE_SIZE
    }
    return text
  }
}
