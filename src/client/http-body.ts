// The body of one HTTP/1.1 response, whatever its framing (RFC 9112 §6.3): nothing, a
// Content-Length, chunked (§7.1), or until the connection closes. Hands out views of the
// received bytes; bytes in, bytes out, no sockets.

import { CR, HTAB, LF, SEMICOLON, SP } from '../wire.js'
import { MAX_CHUNK_SIZE_DIGITS, MAX_RESPONSE_CHUNK_LINE_BYTES } from './limits.js'

/** The response is not HTTP/1.1 we can read: the connection is of no further use. */
export class ResponseError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ResponseError'
  }
}

/** Where the body ends (RFC 9112 §6.3): nothing, a byte count, the last chunk, or the connection's end. */
export type BodyFraming = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' }

/** Receives the body as views `buf[start, end)`, valid only during the call. */
export type OnBody = (buf: Buffer, start: number, end: number) => void

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
  feed(buf: Buffer, start: number, end: number, onData: OnBody): number {
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

  private chunked(buf: Buffer, start: number, end: number, onData: OnBody): number {
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
          else if (++this.lineBytes > MAX_RESPONSE_CHUNK_LINE_BYTES) throw new ResponseError('chunk extensions too long')
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
          } else if (c !== CR && ++this.lineBytes > MAX_RESPONSE_CHUNK_LINE_BYTES) {
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
