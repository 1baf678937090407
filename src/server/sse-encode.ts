// The bytes of the stream: its response head, and an event in the text/event-stream format
// (WHATWG HTML §9.2, "Server-sent events") framed as one HTTP/1.1 chunk (RFC 9112 §7.1). Pure: no sockets.
//
// Every event is encoded once into one Buffer, `<hex size>\r\n<event text>\r\n`, and that same
// Buffer is written to every stream, kept in history and replayed as is. An HTTP/1.0 stream
// (no chunked coding) gets `body`, a view of the same memory without the framing.

import { DEFAULT_EVENT } from '../wire.js'

/** What a publisher sends: data (may hold line breaks), an optional event name and id. */
export interface SseMessage {
  data: string
  event?: string
  id?: string
}

/** One encoded piece of the stream, in both framings. */
export class Frame {
  /** `<hex size>\r\n<text>\r\n`, for chunked (HTTP/1.1) streams. */
  readonly chunk: Buffer
  /** `<text>` alone, a view into `chunk`, for close-delimited (HTTP/1.0) streams. */
  readonly body: Buffer

  constructor(text: string) {
    const size = Buffer.byteLength(text)
    const prefix = size.toString(16) + '\r\n'
    this.chunk = Buffer.from(prefix + text + '\r\n')
    this.body = this.chunk.subarray(prefix.length, prefix.length + size)
  }

  /** The bytes for a stream of this framing. */
  bytesFor(chunked: boolean): Buffer {
    return chunked ? this.chunk : this.body
  }
}

/** The chunk that ends a chunked body (RFC 9112 §7.1): size zero, no trailers. */
export const LAST_CHUNK = Buffer.from('0\r\n\r\n')

/** A comment line keeps proxies from timing the stream out; `:\n\n` rather than a bare newline,
 *  so that a client never sees half an event (nchan does the same). */
export const HEARTBEAT = new Frame(':\n\n')

const LINE_BREAK = /\r\n|\r|\n/

/** Why a message cannot go on the wire, or null. Event names and ids are single lines. */
export function messageProblem(msg: SseMessage): string | null {
  if (typeof msg.data !== 'string') return 'data must be a string'
  if (msg.event !== undefined && /[\r\n]/.test(msg.event)) return 'event name contains CR or LF'
  // A NUL in an id makes a WHATWG client ignore the whole id field.
  if (msg.id !== undefined && /[\r\n\0]/.test(msg.id)) return 'id contains CR, LF or NUL'
  return null
}

/** The event text: `id:`, `event:` (omitted for the default `message`), one `data:` per line, blank line. */
export function eventText(msg: SseMessage, retryMs?: number): string {
  let text = retryMs === undefined ? '' : `retry: ${retryMs}\n`
  if (msg.id !== undefined) text += `id: ${msg.id}\n`
  if (msg.event !== undefined && msg.event !== '' && msg.event !== DEFAULT_EVENT) text += `event: ${msg.event}\n`
  const data = msg.data
  if (data.indexOf('\n') === -1 && data.indexOf('\r') === -1) {
    text += `data: ${data}\n`
  } else {
    // The client joins data lines with LF, so CRLF, CR and LF all come back as LF.
    for (const line of data.split(LINE_BREAK)) text += `data: ${line}\n`
  }
  return text + '\n'
}

export function encodeEvent(msg: SseMessage, retryMs?: number): Frame {
  return new Frame(eventText(msg, retryMs))
}

/** A chunk holding only `retry:`: it sets the reconnection time and dispatches no event. */
export function retryFrame(retryMs: number): Frame {
  return new Frame(`retry: ${retryMs}\n\n`)
}

/** The stream's response head (README "The wire, byte by byte"). HTTP/1.0 gets no chunked coding. */
export function streamHead(chunked: boolean, corsOrigin: string): Buffer {
  return Buffer.from(
    'HTTP/1.1 200 OK\r\n' +
      'Content-Type: text/event-stream; charset=utf-8\r\n' +
      (chunked ? 'Transfer-Encoding: chunked\r\n' : '') +
      'Cache-Control: no-cache, no-transform\r\n' +
      (chunked ? 'Connection: keep-alive\r\n' : 'Connection: close\r\n') +
      'X-Accel-Buffering: no\r\n' +
      `Access-Control-Allow-Origin: ${corsOrigin}\r\n` +
      '\r\n',
    'latin1',
  )
}
