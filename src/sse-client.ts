// SseClient: EventSource for Node, on node:net and node:tls (WHATWG HTML §9.2.3 "Processing
// model", §9.2.4 "The Last-Event-ID header"). It owns the socket, the timers and reconnection;
// sse-parse.ts reads the events, http-response.ts the HTTP around them.
//
// As in a browser: a 200 with Content-Type text/event-stream opens the stream; when it ends or
// fails, the client waits the reconnection time (`retry:`) and reconnects with Last-Event-ID.
// Any other status, or another Content-Type, fails the connection for good ("fail the
// connection": an `error` event, then `close`), and 204 No Content is how a server says "do not
// come back" (a `close` event only). Errors are reported, never thrown: a server that answers
// nonsense cannot crash the process.

import { EventEmitter } from 'node:events'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { BodyDecoder, bodyFraming, headerProblem, mediaType, parseResponseHead, requestHead, ResponseError } from './http-response.js'
import { SseParser } from './sse-parse.js'

/** Reconnection time until the server sends `retry:` (browsers use a few seconds; so does rawsse's server). */
const DEFAULT_RETRY_MS = 3_000
/** Each wait is drawn from [retry, retry × 1.5]: clients dropped together do not all return in the same millisecond. */
const RETRY_JITTER = 0.5
/** Attempts that fail before a stream opens double the wait, up to this (or the server's retry, if longer). */
const MAX_BACKOFF_MS = 30_000
/** From dialing to the end of the response head (or of a refusal's body). Trickled bytes do not extend it; past it the attempt is retried. */
const HEAD_TIMEOUT_MS = 30_000
/** TCP keep-alive probes start after this much silence, so a peer that vanished is noticed on a quiet stream. */
const KEEPALIVE_MS = 30_000
/** How much of a non-200 answer's body is kept for the error message. */
const MAX_ERROR_BODY_BYTES = 1024
/** setTimeout fires at once for longer delays; a huge `retry:` waits this long instead (~24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1

/** One event as the client hands it out. */
export interface SseEvent {
  /** The event type: the `event` field, or "message" when the stream set none. */
  event: string
  data: string
  /**
   * The last event ID at this event (WHATWG `lastEventId`): the last `id` the stream set, which
   * persists across later events and reconnections, so it is what a reconnection resumes from.
   * null when there is none: never set, or cleared by an empty `id` field.
   */
  id: string | null
}

export interface SseClientOptions {
  /** Extra request headers, e.g. `{ Authorization: 'Bearer …' }`. They replace our defaults of the same name. */
  headers?: Record<string, string>
  /** Resume after this event: sent as `Last-Event-ID` on the first request too. */
  lastEventId?: string
  /** Reconnection time (ms) until the server sends `retry:`. Default 3000. */
  retryMs?: number
  /** For https: a private CA (`ca`), a client certificate, or `rejectUnauthorized: false` for testing. */
  tls?: Pick<tls.ConnectionOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized' | 'servername' | 'checkServerIdentity'>
  /** Largest event (or line) accepted before the connection is dropped; default 16 MiB. */
  maxEventBytes?: number
}

/**
 * Why a connection ended. A closed union:
 * - `network`: could not connect, or the connection broke (reset, TLS failure);
 * - `timeout`: no complete response head within 30 s;
 * - `ended`: the server ended the stream (EventSource fires `error` here too, then reconnects);
 * - `protocol`: not HTTP/1.1 we can read, or an event over `maxEventBytes`;
 * - `status`: a status other than 200 or 204 (not retried);
 * - `content-type`: a 200 that is not `text/event-stream` (not retried).
 */
export type SseClientErrorKind = 'network' | 'timeout' | 'ended' | 'protocol' | 'status' | 'content-type'

export class SseClientError extends Error {
  readonly kind: SseClientErrorKind
  /** The HTTP status, when a response head was read. */
  readonly status: number | null
  /** Milliseconds until the next attempt; null when the client has stopped (a `close` event follows). */
  readonly retryInMs: number | null

  constructor(kind: SseClientErrorKind, message: string, status: number | null, retryInMs: number | null) {
    super(message)
    this.name = 'SseClientError'
    this.kind = kind
    this.status = status
    this.retryInMs = retryInMs
  }
}

export interface SseClientEvents {
  /** A stream opened (200, text/event-stream); again after each reconnection. */
  open: []
  message: [event: SseEvent]
  /** Not thrown when there is no listener: like EventSource, errors are notices. */
  error: [error: SseClientError]
  /** The client stopped for good: close(), 204, or a failed connection. Emitted once. */
  close: []
}

export type SseReadyState = 'connecting' | 'open' | 'closed'

const enum Phase {
  Head, // request sent, reading the response head
  Stream, // 200 text/event-stream: the body goes to the parser
  ErrorBody, // another status: a little of its body is kept for the message
}

/** One attempt: a socket from dial to close. */
interface Attempt {
  socket: net.Socket
  phase: Phase
  /** The unfinished response head (only until it is complete). */
  head: Buffer | null
  body: BodyDecoder | null
  status: number | null
  reason: string
  errorBody: Buffer[]
  errorBodyBytes: number
  /** The socket's error, reported when it closes. */
  error: Error | null
  /** The head deadline. */
  timer: NodeJS.Timeout | null
  /** The body decoder's callback, bound to this attempt so that bytes of a dropped attempt go nowhere. */
  onBody: (buf: Buffer, start: number, end: number) => void
}

/** Open a TCP (http:) or TLS (https:) connection to the URL's host and port. Writes may start at once. */
export function dial(url: URL, tlsOptions: SseClientOptions['tls'] = {}): net.Socket {
  // URL keeps the brackets of an IPv6 literal in hostname; connect() wants the bare address.
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  const https = url.protocol === 'https:'
  const port = url.port === '' ? (https ? 443 : 80) : Number(url.port)
  if (!https) return net.connect({ host, port })
  return tls.connect({
    host,
    port,
    // SNI takes a name, never an address (RFC 6066 §3).
    ...(net.isIP(host) === 0 ? { servername: host } : {}),
    // Only HTTP/1.1 is spoken here; say so, so that a server does not pick h2.
    ALPNProtocols: ['http/1.1'],
    ...tlsOptions,
  })
}

/** A URL we can dial, or a TypeError. */
export function httpUrl(url: string | URL): URL {
  const u = new URL(url)
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`unsupported protocol ${u.protocol} (http: or https: only)`)
  return u
}

export class SseClient extends EventEmitter<SseClientEvents> {
  readonly url: string
  private readonly target: URL
  private readonly fields: Array<[string, string]>
  private readonly tlsOptions: SseClientOptions['tls']
  private readonly parser: SseParser
  private state: SseReadyState = 'connecting'
  private attempt: Attempt | null = null
  /** The reconnection wait. */
  private timer: NodeJS.Timeout | null = null
  private retry: number
  /** Attempts in a row that ended before a stream opened: they back off. */
  private failures = 0

  constructor(url: string | URL, options: SseClientOptions = {}) {
    super()
    this.target = httpUrl(url)
    this.url = this.target.href
    this.retry = options.retryMs ?? DEFAULT_RETRY_MS
    if (!(Number.isSafeInteger(this.retry) && this.retry >= 0)) throw new RangeError('retryMs must be a whole number >= 0')
    const defaults: Array<[string, string]> = [
      ['Accept', 'text/event-stream'],
      // Fetch sends EventSource requests with cache mode no-store; this keeps caches between us and the server out of it.
      ['Cache-Control', 'no-cache'],
    ]
    const own = Object.entries(options.headers ?? {})
    for (const [name, value] of own) {
      const problem = headerProblem(name, value)
      if (problem !== null) throw new TypeError(problem)
    }
    const replaced = new Set(own.map(([n]) => n.toLowerCase()))
    this.fields = [...defaults.filter(([n]) => !replaced.has(n.toLowerCase())), ...own.filter(([n]) => n.toLowerCase() !== 'last-event-id')]
    this.tlsOptions = options.tls
    this.parser = new SseParser(
      {
        onEvent: (type, buf, start, end) => this.dispatch(type, buf.toString('utf8', start, end)),
        onRetry: (ms) => (this.retry = ms),
        onError: (err) => {
          if (this.attempt !== null) this.finish(this.attempt, 'protocol', err.message)
        },
      },
      {
        ...(options.lastEventId === undefined ? {} : { lastEventId: options.lastEventId }),
        ...(options.maxEventBytes === undefined ? {} : { maxEventBytes: options.maxEventBytes }),
      },
    )
    this.connect()
  }

  /** 'connecting' (also while waiting to reconnect), 'open', or 'closed' for good. */
  get readyState(): SseReadyState {
    return this.state
  }

  /** What the next request sends as Last-Event-ID; null when none. */
  get lastEventId(): string | null {
    const id = this.parser.lastEventId
    return id === '' ? null : id
  }

  /** The current reconnection time in ms (before jitter and backoff). */
  get retryMs(): number {
    return this.retry
  }

  /** Stop: close the stream or cancel the wait, never reconnect. A `close` event follows. */
  close(): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    const a = this.attempt
    this.attempt = null
    if (a !== null) {
      if (a.timer !== null) clearTimeout(a.timer)
      a.socket.destroy()
    }
    // Called from a message listener, this also stops the parser in the middle of its chunk.
    this.parser.reset()
    process.nextTick(() => this.emit('close'))
  }

  // ---------------------------------------------------------------- one attempt

  private connect(): void {
    this.timer = null
    this.parser.reset()
    const fields = [...this.fields]
    const id = this.parser.lastEventId
    // §9.2.4: sent when the last event ID string is not empty.
    if (id !== '') fields.push(['Last-Event-ID', id])
    const socket = dial(this.target, this.tlsOptions)
    const a: Attempt = {
      socket,
      phase: Phase.Head,
      head: null,
      body: null,
      status: null,
      reason: '',
      errorBody: [],
      errorBodyBytes: 0,
      error: null,
      timer: null,
      onBody: (buf, start, end) => {
        if (this.attempt === a) this.parser.feed(buf, start, end)
      },
    }
    this.attempt = a
    a.timer = setTimeout(() => {
      // A refusal whose body never ends is still a refusal: report what arrived of it.
      if (a.phase === Phase.ErrorBody) this.failStatus(a)
      else this.finish(a, 'timeout', `no response head within ${HEAD_TIMEOUT_MS / 1000} s`)
    }, HEAD_TIMEOUT_MS)
    socket.setNoDelay(true)
    socket.setKeepAlive(true, KEEPALIVE_MS)
    socket.on('data', (d: Buffer) => this.onData(a, d))
    // 'error' is always followed by 'close'; the outcome is decided there, once.
    socket.on('error', (err) => (a.error ??= err))
    socket.on('close', () => this.onClose(a))
    socket.write(requestHead('GET', this.target, fields))
  }

  private onData(a: Attempt, d: Buffer): void {
    if (this.attempt !== a) return
    let buf = d
    let pos = 0
    try {
      if (a.phase === Phase.Head) {
        // Copy only a head split across reads (the first read usually holds all of it).
        buf = a.head === null ? d : Buffer.concat([a.head, d])
        for (;;) {
          const parsed = parseResponseHead(buf.subarray(pos))
          if (parsed === null) {
            a.head = buf.subarray(pos)
            return
          }
          pos += parsed.length
          const { head } = parsed
          // 1xx (100 Continue, 103 Early Hints) are interim: the real answer follows.
          if (head.status < 200) {
            if (head.status === 101) return this.finish(a, 'protocol', 'unexpected 101 Switching Protocols')
            continue
          }
          a.head = null
          a.status = head.status
          a.reason = head.reason
          if (head.status === 204) return this.stop(a, null, '')
          a.body = new BodyDecoder(bodyFraming(head))
          if (head.status !== 200) {
            a.phase = Phase.ErrorBody
            break
          }
          const type = head.headers['content-type']
          if (mediaType(type) !== 'text/event-stream') {
            return this.stop(a, 'content-type', `expected Content-Type text/event-stream, got ${type === undefined ? 'none' : JSON.stringify(type)}`)
          }
          a.phase = Phase.Stream
          if (a.timer !== null) clearTimeout(a.timer)
          a.timer = null
          this.state = 'open'
          this.failures = 0
          this.emit('open')
          if (this.attempt !== a) return // an open listener called close()
          break
        }
      }
      const body = a.body!
      if (a.phase === Phase.Stream) {
        body.feed(buf, pos, buf.length, a.onBody)
        if (this.attempt === a && body.done) this.finish(a, 'ended', 'the server ended the stream')
      } else {
        body.feed(buf, pos, buf.length, (b, s, e) => {
          const n = Math.min(e - s, MAX_ERROR_BODY_BYTES - a.errorBodyBytes)
          if (n <= 0) return
          a.errorBody.push(Buffer.from(b.subarray(s, s + n)))
          a.errorBodyBytes += n
        })
        if (body.done || a.errorBodyBytes >= MAX_ERROR_BODY_BYTES) this.failStatus(a)
      }
    } catch (err) {
      if (!(err instanceof ResponseError)) throw err
      this.finish(a, 'protocol', err.message)
    }
  }

  private onClose(a: Attempt): void {
    if (this.attempt !== a) return
    if (a.phase === Phase.ErrorBody) return this.failStatus(a)
    if (a.phase === Phase.Head) {
      const why = a.error === null ? 'connection closed before a response' : a.error.message
      return this.finish(a, 'network', why)
    }
    if (a.error !== null) return this.finish(a, 'network', a.error.message)
    this.finish(a, 'ended', a.body!.end() ? 'the server ended the stream' : 'the stream ended in the middle of a chunk')
  }

  /** A non-200 status: fail the connection, with the start of the body as the reason. */
  private failStatus(a: Attempt): void {
    const text = Buffer.concat(a.errorBody).toString('utf8').trim()
    const line = a.reason === '' ? `HTTP ${a.status}` : `HTTP ${a.status} ${a.reason}`
    this.stop(a, 'status', text === '' ? line : `${line}: ${text}`)
  }

  private dispatch(type: string, data: string): void {
    const id = this.parser.lastEventId
    this.emit('message', { event: type, data, id: id === '' ? null : id })
  }

  /** End an attempt and stop for good: an error (unless `kind` is null, a 204), then `close`. */
  private stop(a: Attempt, kind: SseClientErrorKind | null, message: string): void {
    if (!this.end(a)) return
    this.state = 'closed'
    if (kind !== null) this.report(new SseClientError(kind, message, a.status, null))
    process.nextTick(() => this.emit('close'))
  }

  /** End an attempt and reconnect after the reconnection time, with jitter and backoff. */
  private finish(a: Attempt, kind: SseClientErrorKind, message: string): void {
    const wasOpen = this.state === 'open'
    if (!this.end(a)) return
    if (!wasOpen) this.failures++
    // WHATWG lets a user agent wait longer after failures ("exponential backoff"); a stream that
    // opened resets the count, so the server's `retry:` is what a healthy stream waits.
    // (From 1 ms when the server said `retry: 0`, so that a server that is down is not dialed in a busy loop.)
    const backoff = this.failures <= 1 ? this.retry : Math.min(Math.max(this.retry, 1) * 2 ** (this.failures - 1), Math.max(this.retry, MAX_BACKOFF_MS))
    const delay = Math.min(Math.round(backoff * (1 + Math.random() * RETRY_JITTER)), MAX_TIMER_MS)
    this.state = 'connecting'
    this.timer = setTimeout(() => this.connect(), delay)
    this.report(new SseClientError(kind, message, a.status, delay))
  }

  /** Drop the attempt's socket and timer; false when it had already ended (or close() was called). */
  private end(a: Attempt): boolean {
    if (this.attempt !== a) return false
    this.attempt = null
    if (a.timer !== null) clearTimeout(a.timer)
    a.timer = null
    a.socket.destroy()
    // An event without its blank line is not dispatched (§9.2.6).
    this.parser.reset()
    return true
  }

  private report(err: SseClientError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err)
  }
}
