// The client side of HTTP/1.1: the request head we write, the response head we read (RFC 9112
// §4 status line, §5 fields), how long its body is (§6.3), and ResponseReader, the one reader of
// responses that every client-side caller uses (SseClient, `rawsse publish`, the load tool's
// streams and publisher). Bytes in, bytes out: no sockets here.

import { findHeadEnd, HTAB, SP } from '../wire.js'
import { BodyDecoder, ResponseError, type BodyFraming, type OnBody } from './http-body.js'
import { MAX_RESPONSE_HEAD_BYTES } from './limits.js'

export { ResponseError } from './http-body.js'

// tchar (RFC 9110 §5.6.2): a header name we write or read.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

export interface ResponseHead {
  status: number
  reason: string
  version: '1.0' | '1.1'
  /** Lower-case names; a repeated field joined with ", " (RFC 9110 §5.3). Values are latin1. */
  headers: Record<string, string>
}

/** The request head: request line, Host, then `fields` in order. Field values are written as UTF-8. */
export function requestHead(method: string, url: URL, fields: ReadonlyArray<readonly [string, string]>): Buffer {
  let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`
  for (const [name, value] of fields) head += `${name}: ${value}\r\n`
  // The spec sends Last-Event-ID as the id's UTF-8 bytes; other values are ASCII in practice.
  return Buffer.from(head + '\r\n', 'utf8')
}

/** Our default fields, then the caller's; a caller's field replaces a default of the same name. */
export function withDefaults(defaults: ReadonlyArray<[string, string]>, own: ReadonlyArray<[string, string]>): Array<[string, string]> {
  const replaced = new Set(own.map(([n]) => n.toLowerCase()))
  return [...defaults.filter(([n]) => !replaced.has(n.toLowerCase())), ...own]
}

/** Why a header cannot be written as is, or null. CR, LF or NUL in a value would inject headers. */
export function headerProblem(name: string, value: string): string | null {
  if (!TOKEN.test(name)) return `invalid header name ${JSON.stringify(name)}`
  if (/[\r\n\0]/.test(value)) return `header ${name} contains CR, LF or NUL`
  return null
}

/**
 * Parse the response head at the start of `buf`: null while it is incomplete ("need more" is a
 * result, not an error); throws ResponseError for a head we cannot read.
 */
export function parseResponseHead(buf: Buffer): { head: ResponseHead; length: number } | null {
  const end = findHeadEnd(buf)
  if (end === -1) {
    if (buf.length > MAX_RESPONSE_HEAD_BYTES) throw new ResponseError(`response head over ${MAX_RESPONSE_HEAD_BYTES} bytes`)
    return null
  }
  if (end > MAX_RESPONSE_HEAD_BYTES) throw new ResponseError(`response head over ${MAX_RESPONSE_HEAD_BYTES} bytes`)
  // RFC 9112 §2.2: LF alone is accepted as a line end; CR is stripped from the line's end.
  const lines = buf.toString('latin1', 0, end).split('\n')
  lines.length -= 2 // the blank line and what follows its LF
  for (let i = 0; i < lines.length; i++) if (lines[i]!.endsWith('\r')) lines[i] = lines[i]!.slice(0, -1)

  const m = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\0-\x08\x0a-\x1f\x7f]*))?$/.exec(lines[0]!)
  if (m === null) throw new ResponseError(`not an HTTP/1.x status line: ${JSON.stringify(lines[0]!.slice(0, 80))}`)
  const headers: Record<string, string> = Object.create(null) as Record<string, string>
  let lastName = ''
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!
    const first = line.charCodeAt(0)
    if ((first === SP || first === HTAB) && lastName !== '') {
      // RFC 9112 §5.2: a user agent receiving obs-fold replaces it with a space.
      headers[lastName] += ' ' + line.trim()
      continue
    }
    const colon = line.indexOf(':')
    const name = colon === -1 ? '' : line.slice(0, colon)
    if (!TOKEN.test(name)) throw new ResponseError(`malformed header line: ${JSON.stringify(line.slice(0, 80))}`)
    const key = name.toLowerCase()
    const value = line.slice(colon + 1).trim()
    const prev = headers[key]
    headers[key] = prev === undefined ? value : `${prev}, ${value}`
    lastName = key
  }
  return { head: { status: Number(m[2]), reason: m[3] ?? '', version: m[1] === '1' ? '1.1' : '1.0', headers }, length: end }
}

/** RFC 9112 §6.3, in its order, for a response to GET or POST. Throws ResponseError when it cannot be known. */
export function bodyFraming(head: ResponseHead): BodyFraming {
  // (1) 1xx, 204 and 304 end at the head.
  if (head.status < 200 || head.status === 204 || head.status === 304) return { kind: 'none' }
  const te = head.headers['transfer-encoding']
  if (te !== undefined) {
    if (head.version === '1.0') throw new ResponseError('Transfer-Encoding in an HTTP/1.0 response')
    // (4) chunked last: read it; any other final coding: the body runs to the connection's end.
    const codings = te.toLowerCase().split(',').map((c) => c.trim())
    if (codings[codings.length - 1] !== 'chunked') return { kind: 'close' }
    if (codings.length > 1) throw new ResponseError(`unsupported transfer coding: ${te}`)
    return { kind: 'chunked' }
  }
  const cl = head.headers['content-length']
  if (cl !== undefined) {
    // (5) a list of identical values is one value; anything else is unrecoverable.
    const values = new Set(cl.split(',').map((v) => v.trim()))
    const only = values.size === 1 ? [...values][0]! : ''
    if (!/^\d{1,15}$/.test(only)) throw new ResponseError(`invalid Content-Length: ${cl}`)
    return { kind: 'length', length: Number(only) }
  }
  // (7) otherwise the body is everything until the server closes.
  return { kind: 'close' }
}

/** RFC 9110 §8.3.1: the media type's essence, lower-cased, without parameters (`charset=utf-8`). */
export function mediaType(contentType: string | undefined): string {
  if (contentType === undefined) return ''
  const semi = contentType.indexOf(';')
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
}

/** What a ResponseReader hands out, response after response. */
export interface ResponseHandler {
  /** A final (non-1xx) response head; its body follows in onBody calls. */
  onHead(head: ResponseHead): void
  /** A piece of the body: a view valid only during the call. */
  onBody(buf: Buffer, start: number, end: number): void
  /** The body is complete; bytes after it belong to the next response. */
  onEnd(): void
}

/**
 * Reads responses off one connection: heads (1xx skipped), then bodies in any framing, then the
 * next head, for as long as bytes come. Handlers may call stop() from any callback; the rest of
 * the bytes being fed are then ignored. Throws ResponseError for bytes we cannot read.
 */
export class ResponseReader {
  /** The unfinished response head: a copy, because callers may reuse the buffers they feed. */
  private head: Buffer | null = null
  private body: BodyDecoder | null = null
  private stopped = false
  private readonly onBody: OnBody

  constructor(private readonly handler: ResponseHandler) {
    this.onBody = handler.onBody.bind(handler)
  }

  /** Later bytes are ignored: the caller is done with this connection. */
  stop(): void {
    this.stopped = true
  }

  /** Read `buf[start, end)`, the next bytes of the connection. */
  feed(buf: Buffer, start = 0, end = buf.length): void {
    let pos = start
    while (pos < end && !this.stopped) {
      const body = this.body
      if (body !== null) {
        pos += body.feed(buf, pos, end, this.onBody)
        if (body.done && !this.stopped) this.ended()
        continue
      }
      if (this.head !== null) {
        // A head split across reads (the first read usually holds all of it).
        buf = Buffer.concat([this.head, buf.subarray(pos, end)])
        this.head = null
        pos = 0
        end = buf.length
      }
      const parsed = parseResponseHead(buf.subarray(pos, end))
      if (parsed === null) {
        this.head = Buffer.from(buf.subarray(pos, end))
        return
      }
      pos += parsed.length
      const head = parsed.head
      // 1xx (100 Continue, 103 Early Hints) are interim: the real answer follows. We never ask
      // to switch protocols, so a 101 is a server that does not speak to us.
      if (head.status < 200) {
        if (head.status === 101) throw new ResponseError('unexpected 101 Switching Protocols')
        continue
      }
      const next = new BodyDecoder(bodyFraming(head))
      this.body = next
      this.handler.onHead(head)
      if (next.done && !this.stopped) this.ended()
    }
  }

  /**
   * The connection closed. A body that runs to the close ends here (onEnd). False when a
   * response was cut short: an unfinished head, or a body short of its length or last chunk.
   */
  end(): boolean {
    if (this.stopped) return true
    if (this.body === null) return this.head === null
    if (!this.body.end()) return false
    this.ended()
    return true
  }

  private ended(): void {
    this.body = null
    this.handler.onEnd()
  }
}
