// The client side of HTTP/1.1 for `SseClient` and `rawsse publish`: the request head we write,
// the response head we read (RFC 9112 §4 status line, §5 fields), how long the body is (§6.3),
// and a decoder of Content-Length, chunked (§7.1) and close-delimited bodies that hands out views
// of the received bytes. Bytes in, bytes out: no sockets here.

const HTAB = 9
const LF = 10
const CR = 13
const SP = 32
const SEMICOLON = 59

/** A response head longer than this is refused: no server of ours sends one near it. */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024
/** A chunk-size line (size and extensions) or a trailer line longer than this is refused. */
const MAX_CHUNK_LINE_BYTES = 4 * 1024
/** 12 hex digits: chunks up to 256 TiB, and the size stays an exact integer. */
const MAX_CHUNK_SIZE_DIGITS = 12

// tchar (RFC 9110 §5.6.2): a header name we write or read.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** The response is not HTTP/1.1 we can read: the connection is of no further use. */
export class ResponseError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ResponseError'
  }
}

export interface ResponseHead {
  status: number
  reason: string
  version: '1.0' | '1.1'
  /** Lower-case names; a repeated field joined with ", " (RFC 9110 §5.3). Values are latin1. */
  headers: Record<string, string>
}

/** Where the body ends (RFC 9112 §6.3): nothing, a byte count, the last chunk, or the connection's end. */
export type BodyFraming = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' }

/** The request head: request line, Host, then `fields` in order. Field values are written as UTF-8. */
export function requestHead(method: string, url: URL, fields: ReadonlyArray<readonly [string, string]>): Buffer {
  let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`
  for (const [name, value] of fields) head += `${name}: ${value}\r\n`
  // The spec sends Last-Event-ID as the id's UTF-8 bytes; other values are ASCII in practice.
  return Buffer.from(head + '\r\n', 'utf8')
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

/** Index just past the blank line ending the head (CRLF CRLF, or LF LF), or -1. */
function findHeadEnd(buf: Buffer): number {
  let i = 0
  for (;;) {
    i = buf.indexOf(LF, i)
    if (i === -1) return -1
    if (buf[i + 1] === LF) return i + 2
    if (buf[i + 1] === CR && buf[i + 2] === LF) return i + 3
    i++
  }
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

const enum Chunked {
  Size, // hex digits of the chunk size
  Ext, // chunk extensions, skipped to the line end
  SizeLF, // CR seen after the size line, LF expected
  Data, // `remaining` bytes of chunk data
  DataCR, // the CRLF after the data
  DataLF,
  Trailer, // trailer lines, until a blank one
  Done,
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  const l = c | 0x20
  if (l >= 97 && l <= 102) return l - 87
  return -1
}

/**
 * Hands out the body of one response as views `(buf, start, end)` of the bytes given to feed(),
 * whatever the framing, however the reads are split. No copies.
 */
export class BodyDecoder {
  /** The whole body has been read (for `close`, only end() knows). */
  done: boolean
  private state = Chunked.Size
  private remaining: number
  private digits = 0
  private lineBytes = 0

  constructor(readonly framing: BodyFraming) {
    this.remaining = framing.kind === 'length' ? framing.length : 0
    this.done = framing.kind === 'none' || (framing.kind === 'length' && framing.length === 0)
  }

  /**
   * Decode `buf[start, end)`. Returns how many bytes belong to this body (bytes after its end
   * would be another response). Throws ResponseError on broken chunk framing.
   */
  feed(buf: Buffer, start: number, end: number, onData: (buf: Buffer, start: number, end: number) => void): number {
    if (this.done || start === end) return 0
    switch (this.framing.kind) {
      case 'close':
        onData(buf, start, end)
        return end - start
      case 'length': {
        const n = Math.min(this.remaining, end - start)
        this.remaining -= n
        if (this.remaining === 0) this.done = true
        onData(buf, start, start + n)
        return n
      }
      case 'chunked':
        return this.chunked(buf, start, end, onData) - start
      case 'none':
        return 0
    }
  }

  /** The connection ended: whether the body was complete. A close-delimited body always is. */
  end(): boolean {
    if (this.framing.kind === 'close') this.done = true
    return this.done
  }

  private chunked(buf: Buffer, start: number, end: number, onData: (buf: Buffer, start: number, end: number) => void): number {
    let pos = start
    while (pos < end) {
      switch (this.state) {
        case Chunked.Size: {
          const c = buf[pos]!
          const v = hexValue(c)
          if (v !== -1) {
            if (++this.digits > MAX_CHUNK_SIZE_DIGITS) throw new ResponseError('chunk size too large')
            this.remaining = this.remaining * 16 + v
            pos++
          } else if (this.digits === 0) {
            throw new ResponseError('malformed chunk size')
          } else if (c === SEMICOLON || c === SP || c === HTAB) {
            this.state = Chunked.Ext // RFC 9112 §7.1.1: extensions are ignored (BWS before ';' tolerated)
          } else if (c === CR) {
            this.state = Chunked.SizeLF
            pos++
          } else if (c === LF) {
            pos++
            this.sizeLineDone()
          } else {
            throw new ResponseError('malformed chunk size')
          }
          break
        }
        case Chunked.Ext: {
          const c = buf[pos]!
          if (c === CR) this.state = Chunked.SizeLF
          else if (c === LF) this.sizeLineDone()
          else if (++this.lineBytes > MAX_CHUNK_LINE_BYTES) throw new ResponseError('chunk extensions too long')
          pos++
          break
        }
        case Chunked.SizeLF:
          if (buf[pos] !== LF) throw new ResponseError('CR without LF after a chunk size')
          pos++
          this.sizeLineDone()
          break
        case Chunked.Data: {
          const n = Math.min(this.remaining, end - pos)
          this.remaining -= n
          if (this.remaining === 0) this.state = Chunked.DataCR
          onData(buf, pos, pos + n)
          pos += n
          break
        }
        case Chunked.DataCR:
          if (buf[pos] === CR) this.state = Chunked.DataLF
          else if (buf[pos] === LF) this.nextChunk()
          else throw new ResponseError('chunk data longer than its size')
          pos++
          break
        case Chunked.DataLF:
          if (buf[pos] !== LF) throw new ResponseError('CR without LF after chunk data')
          pos++
          this.nextChunk()
          break
        case Chunked.Trailer: {
          // Trailer fields are read and dropped; a blank line ends the body.
          const c = buf[pos++]!
          if (c === LF) {
            if (this.lineBytes === 0) {
              this.state = Chunked.Done
              this.done = true
              return pos
            }
            this.lineBytes = 0
          } else if (c !== CR && ++this.lineBytes > MAX_CHUNK_LINE_BYTES) {
            throw new ResponseError('trailer line too long')
          }
          break
        }
        case Chunked.Done:
          return pos
      }
    }
    return pos
  }

  private sizeLineDone(): void {
    this.lineBytes = 0
    this.state = this.remaining === 0 ? Chunked.Trailer : Chunked.Data
  }

  private nextChunk(): void {
    this.state = Chunked.Size
    this.digits = 0
    this.remaining = 0
  }
}

/** RFC 9110 §8.3.1: the media type's essence, lower-cased, without parameters (`charset=utf-8`). */
export function mediaType(contentType: string | undefined): string {
  if (contentType === undefined) return ''
  const semi = contentType.indexOf(';')
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
}
