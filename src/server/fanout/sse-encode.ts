// The bytes of the stream: its response head, and an event in the text/event-stream format
// (WHATWG HTML §9.2, "Server-sent events") framed as one HTTP/1.1 chunk (RFC 9112 §7.1). Pure: no sockets.
//
// Every event is encoded once into one Buffer, `<hex size>\r\n<event text>\r\n`, and that same
// Buffer is written to every stream, kept in history and replayed as is. An HTTP/1.0 stream
// (no chunked coding) gets `body`, a view of the same memory without the framing.
//
// A stream that asked for `tag=channel` (docs/wire.md "Tagged streams") gets an event published to
// a channel with `channel: NAME\n` first: a second Buffer, made from the first by one copy the
// first time such a stream needs it, and kept with the frame. A process with no tagged stream
// never makes one.

import { CR, DEFAULT_EVENT, LF, TAG_FIELD } from '../../wire.js'

/** What a publisher sends: data (may hold line breaks), an optional event name and id. */
export interface SseMessage {
  data: string
  event?: string
  id?: string
}

/**
 * How a stream wants its events: chunked (HTTP/1.1) or close-delimited (HTTP/1.0), and tagged with
 * their channel or not. A number, so that the fan-out picks bytes with one compare.
 */
export type Framing = 0 | 1 | 2 | 3
export const CHUNKED = 0
export const CLOSE_DELIMITED = 1
/** A flag: TAGGED | CHUNKED or TAGGED | CLOSE_DELIMITED. */
export const TAGGED = 2

/** The framing of a stream: HTTP/1.1 or not, `tag=channel` or not. */
export function framingOf(chunked: boolean, tagged: boolean): Framing {
  return ((chunked ? CHUNKED : CLOSE_DELIMITED) | (tagged ? TAGGED : 0)) as Framing
}

/** One encoded piece of the stream, in every framing. */
export class Frame {
  /** `<text>` alone, a view into `chunk`, for close-delimited (HTTP/1.0) streams. */
  readonly body: Buffer
  /** The same event with `channel: NAME\n` first, made by tagged() the first time a tagged stream needs it. */
  private taggedFrame: Frame | null = null

  private constructor(
    /** `<hex size>\r\n<text>\r\n`, for chunked (HTTP/1.1) streams. */
    readonly chunk: Buffer,
    prefix: number,
    size: number,
    /** The channel its event was published to (Target.channel): what a tagged stream is told. */
    readonly channel: string | undefined,
  ) {
    this.body = chunk.subarray(prefix, prefix + size)
  }

  static of(text: string, channel?: string): Frame {
    const frame = Frame.alloc(Buffer.byteLength(text), channel)
    frame.body.write(text)
    return frame
  }

  /** A frame for a text of `size` bytes: size line and final CRLF written, `body` left to fill. */
  static alloc(size: number, channel?: string): Frame {
    const prefix = size.toString(16) + '\r\n'
    const chunk = Buffer.allocUnsafe(prefix.length + size + 2)
    chunk.write(prefix, 0, 'latin1')
    chunk[prefix.length + size] = CR
    chunk[prefix.length + size + 1] = LF
    return new Frame(chunk, prefix.length, size, channel)
  }

  /** The bytes for a stream of this framing. */
  bytesFor(framing: Framing): Buffer {
    if (framing === CHUNKED) return this.chunk
    if (framing === CLOSE_DELIMITED) return this.body
    // Tagged: an event published to no channel (broadcast, user, role, client; rawsse's own) goes as it is.
    if (this.channel === undefined) return framing === TAGGED ? this.chunk : this.body
    const t = this.tagged()
    return framing === TAGGED ? t.chunk : t.body
  }

  /**
   * `channel: NAME\n` then the event text, in one new chunk; made once. The name went through the
   * routes' name check on every stream it can match (no CR or LF), so it cannot end the line early.
   */
  private tagged(): Frame {
    if (this.taggedFrame !== null) return this.taggedFrame
    const line = `${TAG_FIELD}: ${this.channel!}\n`
    const lineBytes = Buffer.byteLength(line)
    const t = Frame.alloc(lineBytes + this.body.length)
    t.body.write(line, 0)
    this.body.copy(t.body, lineBytes)
    this.taggedFrame = t
    return t
  }
}

/** The chunk that ends a chunked body (RFC 9112 §7.1): size zero, no trailers. */
export const LAST_CHUNK = Buffer.from('0\r\n\r\n')

/** A comment line keeps proxies from timing the stream out; `:\n\n` rather than a bare newline,
 *  so that a client never sees half an event (nchan does the same). */
export const HEARTBEAT = Frame.of(':\n\n')

const DATA_FIELD = Buffer.from('data: ')
/** `data: ` and the LF after a line: what each line of data adds to the event text. */
const PER_LINE = DATA_FIELD.length + 1

/** The lines before the data: `retry:`, `id:`, `event:` (omitted for the default `message`). */
function fieldsText(msg: SseMessage, retryMs: number | undefined): string {
  let text = retryMs === undefined ? '' : `retry: ${retryMs}\n`
  if (msg.id !== undefined) text += `id: ${msg.id}\n`
  if (msg.event !== undefined && msg.event !== '' && msg.event !== DEFAULT_EVENT) text += `event: ${msg.event}\n`
  return text
}

function hasLineBreak(data: string): boolean {
  return data.indexOf('\n') !== -1 || data.indexOf('\r') !== -1
}

/**
 * The bytes of the event text encodeEvent() makes, counted without making it, so that a publish
 * over the limit is refused before anything is built. Linear in the data, whatever it holds.
 */
export function eventSize(msg: SseMessage, retryMs?: number): number {
  const data = msg.data
  const fixed = Buffer.byteLength(fieldsText(msg, retryMs)) + 1 // + the blank line
  if (!hasLineBreak(data)) return fixed + PER_LINE + Buffer.byteLength(data)
  // CR and LF are single UTF-16 units and single UTF-8 bytes, so they can be counted on the string.
  let lines = 1
  let breakBytes = 0
  for (let i = 0; i < data.length; i++) {
    const c = data.charCodeAt(i)
    if (c !== LF && c !== CR) continue
    lines++
    breakBytes++
    if (c === CR && data.charCodeAt(i + 1) === LF) {
      i++
      breakBytes++
    }
  }
  return fixed + lines * PER_LINE + Buffer.byteLength(data) - breakBytes
}

/**
 * The event as one frame: fields, one `data:` line per line of data (split on CRLF, CR and LF,
 * which the client joins back with LF), blank line. Written straight into the frame's Buffer:
 * one copy of the data, however many lines it has (a megabyte of line feeds included). `channel`:
 * the channel it is published to, for tagged streams (Frame.bytesFor).
 */
export function encodeEvent(msg: SseMessage, retryMs?: number, channel?: string): Frame {
  const fields = fieldsText(msg, retryMs)
  const data = msg.data
  if (!hasLineBreak(data)) return Frame.of(`${fields}data: ${data}\n\n`, channel)
  const src = Buffer.from(data)
  const frame = Frame.alloc(eventSize(msg, retryMs), channel)
  const out = frame.body
  let off = out.write(fields, 0)
  let lineStart = 0
  for (let i = 0; i <= src.length; i++) {
    const c = i === src.length ? LF : src[i]!
    if (c !== LF && c !== CR) continue
    // Byte by byte for the field name and short lines: a native copy call costs more than that.
    for (let k = 0; k < DATA_FIELD.length; k++) out[off++] = DATA_FIELD[k]!
    if (i - lineStart > 64) off += src.copy(out, off, lineStart, i)
    else for (let k = lineStart; k < i; k++) out[off++] = src[k]!
    out[off++] = LF
    if (c === CR && src[i + 1] === LF) i++
    lineStart = i + 1
  }
  out[off] = LF
  return frame
}

/** A chunk holding only `retry:`: it sets the reconnection time and dispatches no event. */
export function retryFrame(retryMs: number): Frame {
  return Frame.of(`retry: ${retryMs}\n\n`)
}

/** The stream's response head (docs/wire.md "The wire, byte by byte"). HTTP/1.0 gets no chunked coding. */
export function streamHead(chunked: boolean, corsOrigin: string, corsCredentials = false): Buffer {
  return Buffer.from(
    'HTTP/1.1 200 OK\r\n' +
      'Content-Type: text/event-stream; charset=utf-8\r\n' +
      (chunked ? 'Transfer-Encoding: chunked\r\n' : '') +
      'Cache-Control: no-cache, no-transform\r\n' +
      (chunked ? 'Connection: keep-alive\r\n' : 'Connection: close\r\n') +
      'X-Accel-Buffering: no\r\n' +
      `Access-Control-Allow-Origin: ${corsOrigin}\r\n` +
      (corsCredentials ? 'Access-Control-Allow-Credentials: true\r\n' : '') +
      '\r\n',
    'latin1',
  )
}
