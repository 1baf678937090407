// One connection attempt of SseClient (WHATWG HTML §9.2.3 "Processing model"): dial, send the
// request, read the response head, then either hand the stream's body to the client or say how
// the attempt ended and whether to try again. Owns the socket and the head deadline; knows no
// events and no reconnection policy (sse-client.ts has both).

import type * as net from 'node:net'
import { dial, type TlsOptions } from './dial.js'
import { mediaType, ResponseError, ResponseReader, type ResponseHandler, type ResponseHead } from './http.js'
import { HEAD_TIMEOUT_MS, KEEPALIVE_MS, MAX_ERROR_BODY_BYTES } from './limits.js'
import type { SseClientErrorKind } from './sse-client.js'

/** What an attempt tells the client that made it. */
export interface AttemptOwner {
  /** A 200 with Content-Type text/event-stream: the stream is open. */
  opened(a: Attempt): void
  /** Bytes of the open stream, for the event parser: a view valid only during the call. */
  streamBytes(buf: Buffer, start: number, end: number): void
  /**
   * The attempt is over, its socket closed. `retry`: reconnect after the wait (EventSource's
   * "reestablish the connection"); else stop for good ("fail the connection"), with no error
   * when `kind` is null (a 204).
   */
  ended(a: Attempt, kind: SseClientErrorKind | null, message: string, retry: boolean): void
}

const enum Phase {
  Head, // request sent, reading the response head
  Stream, // 200 text/event-stream: the body goes to the parser
  ErrorBody, // another status: a little of its body is kept for the message
}

export class Attempt implements ResponseHandler {
  /** The HTTP status, once a final response head was read. */
  status: number | null = null
  private phase = Phase.Head
  private reason = ''
  private readonly socket: net.Socket
  private readonly reader = new ResponseReader(this)
  private readonly errorBody: Buffer[] = []
  private errorBodyBytes = 0
  /** The socket's error, reported when it closes. */
  private error: Error | null = null
  /** The head deadline. */
  private timer: NodeJS.Timeout | null
  private done = false

  constructor(
    url: URL,
    tls: TlsOptions | undefined,
    request: Buffer,
    private readonly owner: AttemptOwner,
  ) {
    this.socket = dial(url, tls === undefined ? {} : { tls })
    this.timer = setTimeout(() => {
      // A refusal whose body never ends is still a refusal: report what arrived of it.
      if (this.phase === Phase.ErrorBody) this.failStatus()
      else this.end('timeout', `no response head within ${HEAD_TIMEOUT_MS / 1000} s`, true)
    }, HEAD_TIMEOUT_MS)
    this.socket.setNoDelay(true)
    this.socket.setKeepAlive(true, KEEPALIVE_MS)
    this.socket.on('data', (d: Buffer) => this.onData(d))
    // 'error' is always followed by 'close'; the outcome is decided there, once.
    this.socket.on('error', (err) => (this.error ??= err))
    this.socket.on('close', () => this.onClose())
    this.socket.write(request)
  }

  /** End the attempt with an error found above HTTP (the event parser's); it is retried. */
  fail(kind: SseClientErrorKind, message: string): void {
    this.end(kind, message, true)
  }

  /** The client is closing: drop the socket and report nothing. */
  cancel(): void {
    this.done = true
    this.release()
  }

  // ---------------------------------------------------------------- ResponseHandler

  onHead(head: ResponseHead): void {
    this.status = head.status
    this.reason = head.reason
    // 204 No Content is how a server says "do not come back".
    if (head.status === 204) return this.end(null, '', false)
    if (head.status !== 200) {
      this.phase = Phase.ErrorBody
      return
    }
    const type = head.headers['content-type']
    if (mediaType(type) !== 'text/event-stream') {
      return this.end('content-type', `expected Content-Type text/event-stream, got ${type === undefined ? 'none' : JSON.stringify(type)}`, false)
    }
    this.phase = Phase.Stream
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.owner.opened(this)
  }

  onBody(buf: Buffer, start: number, end: number): void {
    if (this.phase === Phase.Stream) return this.owner.streamBytes(buf, start, end)
    const n = Math.min(end - start, MAX_ERROR_BODY_BYTES - this.errorBodyBytes)
    if (n > 0) {
      this.errorBody.push(Buffer.from(buf.subarray(start, start + n)))
      this.errorBodyBytes += n
    }
    if (this.errorBodyBytes >= MAX_ERROR_BODY_BYTES) this.failStatus()
  }

  onEnd(): void {
    if (this.phase === Phase.Stream) this.end('ended', 'the server ended the stream', true)
    else this.failStatus()
  }

  // ---------------------------------------------------------------- socket

  private onData(d: Buffer): void {
    if (this.done) return
    try {
      this.reader.feed(d)
    } catch (err) {
      if (!(err instanceof ResponseError)) throw err
      this.end('protocol', err.message, true)
    }
  }

  private onClose(): void {
    if (this.done) return
    if (this.phase === Phase.ErrorBody) return this.failStatus()
    if (this.phase === Phase.Head) return this.end('network', this.error?.message ?? 'connection closed before a response', true)
    if (this.error !== null) return this.end('network', this.error.message, true)
    // A close-delimited stream ends here (onEnd); a chunked one cut short does not.
    if (!this.reader.end()) this.end('ended', 'the stream ended in the middle of a chunk', true)
  }

  /** A non-200 status: fail the connection, with the start of the body as the reason. */
  private failStatus(): void {
    const text = Buffer.concat(this.errorBody).toString('utf8').trim()
    const line = this.reason === '' ? `HTTP ${this.status}` : `HTTP ${this.status} ${this.reason}`
    this.end('status', text === '' ? line : `${line}: ${text}`, false)
  }

  private end(kind: SseClientErrorKind | null, message: string, retry: boolean): void {
    if (this.done) return
    this.done = true
    this.release()
    this.owner.ended(this, kind, message, retry)
  }

  private release(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.reader.stop()
    this.socket.destroy()
  }
}
