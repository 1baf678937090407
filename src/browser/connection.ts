// One stream read with fetch() (WHATWG HTML §9.2.3 "Processing model", with fetch in place of
// EventSource): the token in `Authorization: Bearer`, reconnection after `retry:` with jitter,
// backoff while refused or unreachable, a new token after a 401 and on `expiring`, and channel
// changes through live channels or by reconnecting. It knows no tabs: a page's RawSse or a
// shared leader drives it.

import { MAX_BACKOFF_MS } from './limits.js'
import { eventStreamParser } from './parse.js'
import { DEFAULT_RETRY_MS, EVENT_CHANNELS, EVENT_EXPIRING, EVENT_READY, jittered, QUERY_CHANNEL, QUERY_TAG, TAG_CHANNEL } from '../wire.js'

/** A token, or a function the page gives that returns one (or a promise of one). */
export type TokenSource = string | (() => string | Promise<string>)

export const CONNECTING = 0
export const OPEN = 1
export const CLOSED = 2
export type ReadyState = typeof CONNECTING | typeof OPEN | typeof CLOSED

/** What a stream tells its owner. */
export interface StreamSink {
  /** OPEN: a 200 with an event stream, after not being open. CONNECTING: lost, it tries again. CLOSED: refused for good. */
  state(s: ReadyState): void
  /** An event, as the parser dispatched it (see MessageHandler). */
  event(type: string, data: string, lastEventId: string, ownId: boolean, channel: string): void
}

export interface StreamOptions {
  /** Absolute. */
  url: string
  channels: readonly string[]
  lastEventId: string
  token: TokenSource | undefined
  credentials: RequestCredentials | undefined
  /** Ask the server to tag each event with its channel (a shared leader's stream carries several tabs' channels). */
  tagged?: boolean
}

// Answers worth another try later: overload, a proxy's bad moment. Any other refusal (403, 404,
// 204, a body that is not an event stream) is final, as it is for EventSource.
const RETRY_STATUS = /^(408|429|5\d\d)$/
/** The longest base a backoff step may have, so that with its jitter it stays within MAX_BACKOFF_MS. */
const MAX_BACKOFF_BASE_MS = (MAX_BACKOFF_MS * 2) / 3
/** The stream route's path: a live channel change goes to /clients/ID/channels beside it. */
const EVENTS_PATH = /\/events(\/[^/]*)?$/

export class Stream {
  readyState: ReadyState = CONNECTING
  lastEventId: string
  channels: readonly string[]
  /** The server's `retry:`, else the default. */
  private retryMs = DEFAULT_RETRY_MS
  /** Attempts that failed in a row: the backoff's exponent. */
  private failures = 0
  /** Bumped by every new attempt and by close(): an older attempt that wakes up sees it and stops. */
  private gen = 0
  private abort: AbortController | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  /** From the last `ready`: the stream's id and key, which a live channel change needs. */
  private client: unknown
  private key: unknown
  /** The channels were changed by reconnecting: the next `ready` is also told as `channels`. */
  private announce?: boolean

  /** Connects at once. */
  constructor(
    private readonly o: StreamOptions,
    private readonly sink: StreamSink,
  ) {
    this.lastEventId = o.lastEventId
    this.channels = o.channels
    void this.connect()
  }

  close(): void {
    this.gen++
    this.readyState = CLOSED
    clearTimeout(this.timer)
    this.abort?.abort()
  }

  /**
   * Change the channels: through live channels when the server gave this stream a key (it then
   * sends `channels` in the stream where the change takes effect), else by reconnecting with the
   * new set and Last-Event-ID, and telling `channels` after the new stream's `ready`.
   */
  async setChannels(next: readonly string[]): Promise<void> {
    const add = next.filter((c) => !this.channels.includes(c))
    const remove = this.channels.filter((c) => !next.includes(c))
    this.channels = next
    if (add.length + remove.length === 0 || this.readyState === CLOSED) return
    const url = new URL(this.o.url)
    if (typeof this.key === 'string' && this.readyState === OPEN && EVENTS_PATH.test(url.pathname)) {
      url.pathname = url.pathname.replace(EVENTS_PATH, `/clients/${this.client}/channels`)
      const headers = { Authorization: `Bearer ${this.key}`, 'Content-Type': 'application/json' }
      const res = await fetch(url.origin + url.pathname, { method: 'POST', headers, body: JSON.stringify({ add, remove }), credentials: this.o.credentials }).catch(ignore)
      if (res?.ok === true) return
    }
    this.announce = true
    if ((this.readyState as ReadyState) !== CLOSED) void this.connect() // close() may have come during the POST
  }

  /** One attempt: token, fetch, then read until the stream ends; `given` is a token already fetched. */
  private async connect(given?: string): Promise<void> {
    clearTimeout(this.timer)
    this.abort?.abort()
    const abort = (this.abort = new AbortController())
    const gen = ++this.gen
    const url = new URL(this.o.url)
    for (const c of this.channels) url.searchParams.append(QUERY_CHANNEL, c)
    if (this.o.tagged === true) url.searchParams.set(QUERY_TAG, TAG_CHANNEL)
    const headers: Record<string, string> = { Accept: 'text/event-stream' }
    // A header value is bytes: the id goes as its UTF-8 bytes, which is how the server reads it.
    if (this.lastEventId !== '') headers['Last-Event-ID'] = String.fromCharCode(...new TextEncoder().encode(this.lastEventId))
    let res: Response
    try {
      const token = given ?? (typeof this.o.token === 'function' ? await this.o.token() : this.o.token)
      if (gen !== this.gen) return
      if (token) headers.Authorization = `Bearer ${token}`
      res = await fetch(url, { headers, credentials: this.o.credentials, cache: 'no-store', signal: abort.signal })
    } catch {
      // Refused, unreachable, aborted, or the token function failed: try again, later each time.
      if (gen === this.gen) this.retry(true)
      return
    }
    if (gen !== this.gen) return
    if (res.status !== 200 || !res.headers.get('content-type')?.startsWith('text/event-stream') || res.body === null) {
      void res.body?.cancel().catch(ignore)
      // A 401 with a token function: a new token at once (then as any failure). A 403 or 404: the end.
      if (res.status === 401 && typeof this.o.token === 'function') return this.retry(true, this.failures === 0 ? 0 : undefined)
      if (RETRY_STATUS.test(String(res.status))) return this.retry(true)
      this.close()
      return this.sink.state(CLOSED)
    }
    this.failures = 0
    if (this.readyState !== OPEN) this.sink.state((this.readyState = OPEN))
    await this.read(res.body, gen)
    if (gen === this.gen) this.retry(false)
  }

  private async read(body: ReadableStream<Uint8Array>, gen: number): Promise<void> {
    const parser = eventStreamParser(
      {
        event: (type, data, id, own, channel) => {
          if (gen === this.gen) this.onEvent(type, data, id, own, channel)
        },
        retry: (ms) => (this.retryMs = ms),
      },
      this.lastEventId,
    )
    const reader = body.getReader()
    try {
      for (let r = await reader.read(); !r.done && gen === this.gen; r = await reader.read()) parser.feed(r.value)
    } catch {
      // The connection broke, or close() aborted it: the caller looks at `gen`.
    }
  }

  private onEvent(type: string, data: string, id: string, own: boolean, channel: string): void {
    this.lastEventId = id
    if (type === EVENT_READY) {
      try {
        ;({ client: this.client, key: this.key } = JSON.parse(data) as { client?: unknown; key?: unknown })
      } catch {
        this.key = undefined
      }
    }
    this.sink.event(type, data, id, own, channel)
    if (type === EVENT_READY && this.announce) {
      this.announce = false
      this.sink.event(EVENT_CHANNELS, JSON.stringify({ channels: this.channels }), id, false, '')
    }
    // A new token, then a new stream from the last id while this one still runs (the server
    // replays what falls between them): the page misses nothing and sees no error. Should the
    // function fail, this stream runs on until `expired`, and the reconnection asks again.
    const renew = this.o.token
    if (type === EVENT_EXPIRING && typeof renew === 'function') {
      const gen = this.gen
      new Promise<string>((resolve) => resolve(renew())).then((token) => {
        if (gen === this.gen) void this.connect(token)
      }, ignore)
    }
  }

  /**
   * Try again after the server's `retry:` with jitter; after failed attempts, twice as long each
   * time up to MAX_BACKOFF_MS. (A 503's Retry-After is the server's `retry:` with jitter too.)
   */
  private retry(failed: boolean, waitMs?: number): void {
    if (failed) this.failures++
    const base = this.failures <= 1 ? this.retryMs : Math.min(this.retryMs * 2 ** (this.failures - 1), MAX_BACKOFF_BASE_MS)
    this.timer = setTimeout(() => void this.connect(), waitMs ?? jittered(base))
    this.sink.state((this.readyState = CONNECTING))
  }
}

/** For promises whose failure changes nothing. */
export function ignore(): void {}
