// SseClient: EventSource for Node, on node:net and node:tls (WHATWG HTML §9.2.3 "Processing
// model", §9.2.4 "The Last-Event-ID header"). It owns the timers and reconnection; attempt.ts
// owns each connection, sse-parse.ts reads the events, http.ts the HTTP around them.
//
// As in a browser: a 200 with Content-Type text/event-stream opens the stream; when it ends or
// fails, the client waits the reconnection time (`retry:`) and reconnects with Last-Event-ID.
// Any other status, or another Content-Type, fails the connection for good ("fail the
// connection": an `error` event, then `close`), and 204 No Content is how a server says "do not
// come back" (a `close` event only). Errors are reported, never thrown: a server that answers
// nonsense cannot crash the process.
//
// With rawsse, setChannels() changes what the open stream receives (live channels), with the
// key of its `ready` event; a reconnection then asks for the channels the stream last had.

import { EventEmitter } from 'node:events'
import { channelsPath, DEFAULT_RETRY_MS, EVENT_CHANNELS, EVENT_READY, jittered, QUERY_CHANNEL, type ChannelChange, type ChannelsData, type ReadyData } from '../wire.js'
import { Attempt, type AttemptOwner } from './attempt.js'
import { httpUrl, type TlsOptions } from './dial.js'
import { headerProblem, requestHead, withDefaults } from './http.js'
import { MAX_BACKOFF_MS, MAX_TIMER_MS, SET_CHANNELS_TIMEOUT_MS } from './limits.js'
import { request } from './request.js'
import { SseParser } from './sse-parse.js'

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
  tls?: TlsOptions
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

/** setChannels() was refused: the server's status (400, 401, 403, 404) and its `error`. */
export class SetChannelsError extends Error {
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.name = 'SetChannelsError'
    this.status = status
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
  /** The open stream as its `ready` event named it (rawsse): what setChannels() changes. */
  private stream: { client: number; key: string } | null = null

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
    // Last-Event-ID is ours to send: it is the stream's position, set on every reconnection.
    this.fields = withDefaults(defaults, own).filter(([n]) => n.toLowerCase() !== 'last-event-id')
    this.tlsOptions = options.tls
    this.parser = new SseParser(
      {
        onEvent: (type, buf, start, end) => this.dispatch(type, buf.toString('utf8', start, end)),
        onRetry: (ms) => (this.retry = ms),
        onError: (err) => this.attempt?.fail('protocol', err.message),
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
    this.stream = null
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.attempt?.cancel()
    this.attempt = null
    // Called from a message listener, this also stops the parser in the middle of its chunk.
    this.parser.reset()
    process.nextTick(() => this.emit('close'))
  }

  /**
   * rawsse's live channels: change what the open stream receives without reconnecting
   * (`POST /clients/ID/channels` with the key of its `ready` event). Resolves to its channels
   * after the change, which the stream shows as event `channels`; with `since`, the added
   * channels' retained events after that id follow it. A reconnection then asks for these
   * channels. Rejects with SetChannelsError for a refusal, or an Error when no rawsse stream is
   * open or the server does not answer.
   */
  async setChannels(change: ChannelChange): Promise<readonly string[]> {
    const s = this.stream
    if (s === null) throw new Error('setChannels: no stream is open (wait for its ready event)')
    // The route beside the stream's: /events/… under a prefix (a proxy's) has /clients/… under it.
    const at = this.target.pathname.lastIndexOf('/events')
    const url = new URL(this.target.origin + (at === -1 ? '' : this.target.pathname.slice(0, at)) + channelsPath(s.client))
    const body = Buffer.from(JSON.stringify(change))
    const fields: Array<[string, string]> = [
      ['Authorization', `Bearer ${s.key}`],
      ['Content-Type', 'application/json'],
      ['Content-Length', String(body.length)],
      ['Connection', 'close'],
    ]
    const res = await request(url, 'POST', fields, body, SET_CHANNELS_TIMEOUT_MS, this.tlsOptions)
    let answer: { channels?: unknown; error?: unknown } = {}
    try {
      answer = JSON.parse(res.body.toString('utf8')) as typeof answer
    } catch {
      // not JSON: the status says enough
    }
    if (res.status !== 200 || !Array.isArray(answer.channels)) {
      throw new SetChannelsError(res.status, `setChannels: ${res.status} ${typeof answer.error === 'string' ? answer.error : res.reason}`)
    }
    const channels = answer.channels as string[]
    this.keepChannels(channels)
    return channels
  }

  /** A reconnection asks for `channels`: the set the stream has now (its `channels` event, or the answer to a change). */
  private keepChannels(channels: readonly string[]): void {
    const q = this.target.searchParams
    q.delete(QUERY_CHANNEL)
    for (const ch of channels) q.append(QUERY_CHANNEL, ch)
  }

  // ---------------------------------------------------------------- attempts

  private connect(): void {
    this.timer = null
    this.stream = null
    this.parser.reset()
    const fields = [...this.fields]
    const id = this.parser.lastEventId
    // §9.2.4: sent when the last event ID string is not empty.
    if (id !== '') fields.push(['Last-Event-ID', id])
    this.attempt = new Attempt(this.target, this.tlsOptions, requestHead('GET', this.target, fields), this.owner)
  }

  /** What each Attempt tells this client; built once. */
  private readonly owner: AttemptOwner = {
    opened: (a) => {
      if (this.attempt !== a) return
      this.state = 'open'
      this.failures = 0
      this.emit('open')
    },
    streamBytes: (buf, start, end) => this.parser.feed(buf, start, end),
    ended: (a, kind, message, retry) => {
      if (this.attempt !== a) return
      this.attempt = null
      this.stream = null
      // An event without its blank line is not dispatched (§9.2.6).
      this.parser.reset()
      if (retry) this.reconnect(a, kind ?? 'ended', message)
      else this.stop(a, kind, message)
    },
  }

  private dispatch(type: string, data: string): void {
    if (type === EVENT_READY || type === EVENT_CHANNELS) this.rawsseEvent(type, data)
    const id = this.parser.lastEventId
    this.emit('message', { event: type, data, id: id === '' ? null : id })
  }

  /** rawsse's own events: `ready` names the stream and its key, `channels` says what it receives from here on. */
  private rawsseEvent(type: string, data: string): void {
    try {
      if (type === EVENT_READY) {
        const r = JSON.parse(data) as Partial<ReadyData>
        this.stream = typeof r.client === 'number' && typeof r.key === 'string' ? { client: r.client, key: r.key } : null
      } else {
        const c = JSON.parse(data) as Partial<ChannelsData>
        if (Array.isArray(c.channels) && c.channels.every((ch) => typeof ch === 'string')) this.keepChannels(c.channels)
      }
    } catch {
      // Not rawsse's JSON (another server may name its events so): only an event to hand out.
    }
  }

  /** Stop for good: an error (unless `kind` is null, a 204), then `close`. */
  private stop(a: Attempt, kind: SseClientErrorKind | null, message: string): void {
    this.state = 'closed'
    if (kind !== null) this.report(new SseClientError(kind, message, a.status, null))
    process.nextTick(() => this.emit('close'))
  }

  /** Reconnect after the reconnection time, with jitter and backoff. */
  private reconnect(a: Attempt, kind: SseClientErrorKind, message: string): void {
    if (this.state !== 'open') this.failures++
    // WHATWG lets a user agent wait longer after failures ("exponential backoff"); a stream that
    // opened resets the count, so the server's `retry:` is what a healthy stream waits.
    // (From 1 ms when the server said `retry: 0`, so that a server that is down is not dialed in a busy loop.)
    const backoff = this.failures <= 1 ? this.retry : Math.min(Math.max(this.retry, 1) * 2 ** (this.failures - 1), Math.max(this.retry, MAX_BACKOFF_MS))
    const delay = Math.min(jittered(backoff), MAX_TIMER_MS)
    this.state = 'connecting'
    this.timer = setTimeout(() => this.connect(), delay)
    this.report(new SseClientError(kind, message, a.status, delay))
  }

  private report(err: SseClientError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err)
  }
}
