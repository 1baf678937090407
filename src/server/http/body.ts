// Request bodies: Content-Length and chunked (RFC 9112 §6–§7), capped at MAX_BODY_BYTES.
// Bytes in, "consumed N, done or not" out; throws HttpError(400 / 413). No sockets, no routing.

import { CR, LF } from '../../wire.js'
import { HttpError } from './errors.js'
import { MAX_BODY_BYTES, MAX_REQUEST_CHUNK_LINE_BYTES } from '../limits.js'

const enum State {
  Size, // reading `<hex>[;ext]\r\n`
  Data, // reading `remaining` bytes of chunk data
  DataEnd, // reading the CRLF after chunk data
  DataEndLf, // the CR after chunk data was read; the LF must follow
  Trailer, // reading trailer lines until the blank one
  Done,
}

export class BodyReader {
  private readonly parts: Buffer[] = []
  private total = 0
  private state: State
  private remaining: number
  private readonly chunked: boolean
  // The current chunk-size or trailer line, kept across reads; never longer than MAX_REQUEST_CHUNK_LINE_BYTES.
  private line = ''

  /** `contentLength` is ignored when `chunked`. */
  constructor(chunked: boolean, contentLength: number) {
    this.chunked = chunked
    if (chunked) {
      this.state = State.Size
      this.remaining = 0
    } else {
      if (contentLength > MAX_BODY_BYTES) throw new HttpError(413, 'request body too large')
      this.remaining = contentLength
      this.state = contentLength === 0 ? State.Done : State.Data
    }
  }

  get done(): boolean {
    return this.state === State.Done
  }

  /** Body bytes received so far (held in memory until the request is answered). */
  get received(): number {
    return this.total
  }

  /** The whole body, once done. One copy, only when it came in several reads. */
  body(): Buffer {
    return this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.total)
  }

  /** Feed received bytes; returns how many belong to this body (the rest is the next request). */
  feed(buf: Buffer): number {
    let pos = 0
    while (pos < buf.length && this.state !== State.Done) {
      switch (this.state) {
        case State.Data: {
          const n = Math.min(this.remaining, buf.length - pos)
          // A view, not a copy: the receive buffer is ours until the request is answered.
          this.parts.push(buf.subarray(pos, pos + n))
          this.total += n
          this.remaining -= n
          pos += n
          if (this.remaining === 0) this.state = this.chunked ? State.DataEnd : State.Done
          break
        }
        case State.DataEnd:
        case State.DataEndLf: {
          // CRLF, or a lone LF (RFC 9112 §2.2 lets a recipient accept it).
          const c = buf[pos++]
          if (c === CR && this.state === State.DataEnd) this.state = State.DataEndLf
          else if (c === LF) this.state = State.Size
          else throw new HttpError(400, 'malformed chunked body')
          break
        }
        case State.Size:
        case State.Trailer:
          pos = this.readLine(buf, pos)
          break
      }
    }
    return pos
  }

  private readLine(buf: Buffer, pos: number): number {
    const lf = buf.indexOf(LF, pos)
    const stop = lf === -1 ? buf.length : lf
    // +1: the CR of a CRLF is still in `line` until the LF arrives.
    if (this.line.length + (stop - pos) > MAX_REQUEST_CHUNK_LINE_BYTES + 1) throw new HttpError(400, 'chunk line too long')
    this.line += buf.toString('latin1', pos, stop)
    if (lf === -1) return buf.length
    let line = this.line
    this.line = ''
    if (line.endsWith('\r')) line = line.slice(0, -1)
    if (line.length > MAX_REQUEST_CHUNK_LINE_BYTES) throw new HttpError(400, 'chunk line too long')
    if (this.state === State.Size) this.onSizeLine(line)
    else if (line === '') this.state = State.Done // trailer fields are read and ignored
    return lf + 1
  }

  private onSizeLine(line: string): void {
    // chunk-size [ chunk-ext ]: hex digits, then optional `;name=value` extensions we ignore.
    const m = /^([0-9a-fA-F]+)[ \t]*(?:;.*)?$/.exec(line)
    if (m === null) throw new HttpError(400, 'malformed chunk size')
    const hex = m[1]!
    const size = parseInt(hex, 16) // a huge one is a huge float, still over the limit
    if (this.total + size > MAX_BODY_BYTES) throw new HttpError(413, 'request body too large')
    if (size === 0) {
      this.state = State.Trailer
    } else {
      this.remaining = size
      this.state = State.Data
    }
  }
}
