// The one reader of event streams in rawsse: bytes in, events out. WHATWG HTML §9.2.5 "Parsing an
// event stream" and §9.2.6 "Interpreting an event stream":
// https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
// Pure: no sockets, no timers. SseClient and `rawsse bench` both feed it.
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

import { COLON, CR, DEFAULT_EVENT, LF, SP } from '../wire.js'
import { equalBytes, Held, Scratch } from './held-bytes.js'
import { DEFAULT_MAX_EVENT_BYTES } from './limits.js'

const NUL = 0
const DIGIT_0 = 48
const DIGIT_9 = 57

/** The UTF-8 byte order mark: the UTF-8 decode the spec runs the stream through strips one at the very start. */
const BOM = Buffer.from([0xef, 0xbb, 0xbf])
/** `bomMatched` once the start of the stream is decided: the BOM was stripped, or there was none. */
const BOM_DONE = -1

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
  /** The longest line or event data in bytes; default 16 MiB (client/limits.ts DEFAULT_MAX_EVENT_BYTES). */
  maxEventBytes?: number
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
  /** The data: its first line as a view of the chunk being fed, more lines joined in a copy. */
  private readonly data = new Held()
  private readonly type = new Held()
  private readonly typeCache: Array<{ bytes: Buffer; text: string }> = []
  private typeCacheNext = 0

  // --- ids (§9.2.6: the last event ID buffer, and the event source's last event ID string) ---
  // Both are views of the current chunk while it is fed, copied once when feed() returns: with an
  // id on every event, only the last one of a read is ever copied.
  /** The last event ID buffer: set by an `id` field, committed by the next blank line (idDirty: not yet). */
  private idDirty = false
  private readonly id = new Held()
  /** The last event ID string, committed. */
  private readonly last = new Held()
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
    this.last.set(bytes, 0, bytes.length, Number.MAX_SAFE_INTEGER)
    this.lastIdText = initial
  }

  /**
   * The last event ID string: the value of the last `id` field (without NUL) that a blank line
   * has committed, '' when none. It persists across events, and across reset(), so a reconnection
   * sends it as `Last-Event-ID` and later events without an `id` still carry it.
   */
  get lastEventId(): string {
    this.lastIdText ??= this.last.toString()
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
    // (An id not yet committed is kept; one that was is in `last`, and its buffer is done.)
    if (!this.data.keep(this.max) || !this.type.keep(this.max)) return this.fail()
    if (!this.idDirty) this.id.clear()
    else if (!this.id.keep(this.max)) return this.fail()
    this.last.keep(Number.MAX_SAFE_INTEGER)
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
    this.last.keep(Number.MAX_SAFE_INTEGER)
    // The uncommitted id goes: the next stream starts from the last event ID string.
    this.idDirty = false
    this.id.clear()
    this.clearBlock()
  }

  /** The data and event type buffers, emptied after each blank line. */
  private clearBlock(): void {
    this.dataLines = 0
    this.data.clear()
    this.type.clear()
  }

  /** One line without its line end, in `buf[s, e)`. `inChunk`: `buf` is the chunk being fed. */
  private processLine(buf: Buffer, s: number, e: number, inChunk: boolean): void {
    if (s === e) return this.dispatch()
    if (buf[s] === COLON) {
      // A comment: ignored by the spec; heartbeats are comments.
      if (this.handler.onComment !== undefined) this.handler.onComment(buf, buf[s + 1] === SP ? s + 2 : s + 1, e)
      return
    }
    // The field name runs to the first colon; a line without one is a name with an empty value.
    let colon = s
    while (colon < e && buf[colon] !== COLON) colon++
    let vs = colon
    if (colon < e) {
      vs = colon + 1
      if (vs < e && buf[vs] === SP) vs++ // one space after the colon is removed, only one
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
      this.data.view(buf, vs, e)
      this.dataLines = 1
      return
    }
    if (!this.data.keep(this.max)) return this.fail()
    // The spec appends the value and an LF, and removes the last LF at dispatch: the same as
    // joining the lines with LF.
    if (this.dataLines > 0 && !this.data.copy.appendByte(LF, this.max)) return this.fail()
    if (!this.data.copy.append(buf, vs, e, this.max)) return this.fail()
    this.dataLines++
  }

  private setType(buf: Buffer, vs: number, e: number, inChunk: boolean): void {
    if (inChunk) this.type.view(buf, vs, e)
    else if (!this.type.set(buf, vs, e, this.max)) this.fail()
  }

  private setId(buf: Buffer, vs: number, e: number, inChunk: boolean): void {
    // "If the field value does not contain U+0000 NULL, then set the last event ID buffer to the
    // field value. Otherwise, ignore the field." (A NUL byte in UTF-8 is only ever U+0000.)
    for (let i = vs; i < e; i++) if (buf[i] === NUL) return
    this.idDirty = true
    if (inChunk) this.id.view(buf, vs, e)
    else if (!this.id.set(buf, vs, e, this.max)) this.fail()
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
      this.last.assign(this.id, Number.MAX_SAFE_INTEGER)
    }
    if (this.dataLines === 0) {
      // "If the data buffer is an empty string, set the data buffer and the event type buffer to
      // the empty string and return." A block of only `event:` or `id:` dispatches nothing.
      this.clearBlock()
      return
    }
    const type = this.eventType()
    const { buf, start, end } = this.data
    // Cleared before the call: a handler may feed or reset. (The scratch memory itself is only
    // overwritten by the next data line, so `buf` stays valid during the call.)
    this.clearBlock()
    this.handler.onEvent(type, buf, start, end)
  }

  /** The type as a string, made once per distinct type and reused after (TYPE_CACHE_SIZE of them). */
  private eventType(): string {
    const { buf, start: s, end: e } = this.type
    if (s === e) return DEFAULT_EVENT
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
