// One stream read with fetch() (WHATWG HTML §9.2.3 "Processing model", with fetch in place of
// EventSource): the token in `Authorization: Bearer`, reconnection after `retry:` with jitter,
// backoff while refused or unreachable, a new token after a 401 and on `expiring`, and channel
// changes through live channels or by reconnecting. It knows no tabs: a page's RawSse or a
// shared leader drives it.

import { MAX_BACKOFF_MS } from './limits.js'
import { eventStreamParser } from './parse.js'
import { DEFAULT_RETRY_MS, EVENT_CHANNELS, EVENT_EXPIRING, EVENT_READY, jittered, QUERY_CHANNEL } from './protocol.js'

/** A token, or a function the page gives that returns one (or a promise of one). */
export type TokenSource = string | (() => string | Promise<string>)

export const CONNECTING = 0
export const OPEN = 1
export const CLOSED = 2
export type ReadyState = typeof CONNECTING | typeof OPEN | typeof CLOSED

/** What a stream tells its owner. */
export interface StreamSink {
  /** Open now, after not being open: a 200 with an event stream. */
  open(): void
  /** An event, as the parser dispatched it (see MessageHandler). */
  event(type: string, data: string, lastEventId: string, ownId: boolean): void
  /** The stream is lost: `fatal`, it ends here (CLOSED); otherwise it tries again (CONNECTING). */
  error(fatal: boolean): void
}

export interface StreamOptions {
  /** Absolute. */
  url: string
  channels: readonly string[]
  lastEventId: string
  token: TokenSource | undefined
  credentials: RequestCredentials | undefined
}

// Answers that are worth another try later: overload, a proxy's bad moment. Any other refusal
// (403, 404, 204, a body that is not an event stream) is final, as it is for EventSource.
const RETRY_STATUS = /^(408|429|5\d\d)$/
/** The longest base a backoff step may have, so that with its jitter it stays within MAX_BACKOFF_MS. */
const MAX_BACKOFF_BASE_MS = (MAX_BACKOFF_MS * 2) / 3

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
  private abort: AbortController | null = null
  private timer: ReturnType<typeof setTimeout> | undefined
  /** From the last `ready`: the stream's id and key, which live channel changes need. */
  private client: number | null = null
  private key: string | null = null
  /** The channels were changed by reconnecting: the next `ready` is also told as `channels`. */
  private announce = false

  private sink: StreamSink = { open: ignore, event: ignore, error: ignore }

  constructor(private readonly o: StreamOptions) {
    this.lastEventId = o.lastEventId
    this.channels = o.channels
  }

  start(sink: StreamSink): void {
    this.sink = sink
    void this.connect()
  }

  close(): void {
    this.gen++
    this.readyState = CLOSED
    clearTimeout(this.timer)
    this.abort?.abort()
    this.abort = null
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
    if (await this.changeLive(add, remove)) return
    this.announce = true
    if ((this.readyState as ReadyState) !== CLOSED) void this.connect() // close() may have come during the POST
  }

  private async changeLive(add: string[], remove: string[]): Promise<boolean> {
    const path = new URL(this.o.url)
    const events = /\/events(\/[^/]*)?$/
    if (this.key === null || this.client === null || this.readyState !== OPEN || !events.test(path.pathname)) return false
    path.pathname = path.pathname.replace(events, `/clients/${this.client}/channels`)
    path.search = ''
    try {
      const res = await fetch(path.href, {
        method: 'POST',
        headers: { Authorization: `Bearer ${this.key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ add, remove }),
        credentials: this.o.credentials,
      })
      return res.ok
    } catch {
      return false
    }
  }

  /** One attempt: token, fetch, then read until the stream ends; `given` is a token already fetched. */
  private async connect(given?: string): Promise<void> {
    clearTimeout(this.timer)
    this.abort?.abort()
    const abort = (this.abort = new AbortController())
    const gen = ++this.gen
    let res: Response
    try {
      const token = given ?? (typeof this.o.token === 'function' ? await this.o.token() : this.o.token)
      if (gen !== this.gen) return
      res = await fetch(this.url(), { headers: this.headers(token), credentials: this.o.credentials, cache: 'no-store', signal: abort.signal })
    } catch {
      // Refused, unreachable, aborted, or the token function failed: try again, later each time.
      if (gen === this.gen) this.retry(true)
      return
    }
    if (gen !== this.gen) return void res.body?.cancel().catch(ignore)
    if (res.status !== 200 || !(res.headers.get('content-type') ?? '').startsWith('text/event-stream') || res.body === null) {
      void res.body?.cancel().catch(ignore)
      return this.refused(res)
    }
    this.failures = 0
    if (this.readyState !== OPEN) {
      this.readyState = OPEN
      this.sink.open()
    }
    await this.read(res.body, gen)
    if (gen === this.gen) this.retry(false)
  }

  private async read(body: ReadableStream<Uint8Array>, gen: number): Promise<void> {
    const parser = eventStreamParser(
      {
        event: (type, data, id, own) => {
          if (gen === this.gen) this.onEvent(type, data, id, own)
        },
        retry: (ms) => {
          this.retryMs = ms
        },
      },
      this.lastEventId,
    )
    const reader = body.getReader()
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done || gen !== this.gen) break
        parser.feed(value)
      }
    } catch {
      // The connection broke, or close() aborted it: the caller looks at `gen`.
    }
    if (gen !== this.gen) void reader.cancel().catch(ignore)
  }

  private onEvent(type: string, data: string, id: string, own: boolean): void {
    this.lastEventId = id
    if (type === EVENT_READY) this.ready(data)
    this.sink.event(type, data, id, own)
    if (type === EVENT_READY && this.announce) {
      this.announce = false
      this.sink.event(EVENT_CHANNELS, JSON.stringify({ channels: this.channels }), id, false)
    }
    if (type === EVENT_EXPIRING) void this.renew()
  }

  private ready(data: string): void {
    try {
      const r = JSON.parse(data) as { client?: unknown; key?: unknown }
      this.client = typeof r.client === 'number' ? r.client : null
      this.key = typeof r.key === 'string' ? r.key : null
    } catch {
      this.client = this.key = null
    }
  }

  /**
   * `expiring`: a new token, then a new stream from the last id while this one still runs (the
   * server replays what falls between them), so the page misses nothing and sees no error.
   */
  private async renew(): Promise<void> {
    if (typeof this.o.token !== 'function') return
    const gen = this.gen
    let token: string
    try {
      token = await this.o.token()
    } catch {
      return // this stream runs on until `expired`; the reconnection then asks again
    }
    if (gen === this.gen) void this.connect(token)
  }

  private refused(res: Response): void {
    // A token that expired on its way: a new one at once (the first time; then as any failure).
    if (res.status === 401 && typeof this.o.token === 'function') return this.retry(true, this.failures === 0 ? 0 : undefined)
    if (RETRY_STATUS.test(String(res.status))) {
      const after = Number(res.headers.get('retry-after'))
      return this.retry(true, undefined, Number.isFinite(after) ? after * 1000 : 0)
    }
    this.close()
    this.sink.error(true)
  }

  /**
   * Try again after the server's `retry:` with jitter; after failed attempts, twice as long each
   * time up to MAX_BACKOFF_MS (and not before a `Retry-After`).
   */
  private retry(failed: boolean, waitMs?: number, floorMs = 0): void {
    if (failed) this.failures++
    const base = this.failures <= 1 ? this.retryMs : Math.min(this.retryMs * 2 ** (this.failures - 1), MAX_BACKOFF_BASE_MS)
    const wait = waitMs ?? Math.max(floorMs, jittered(base))
    this.timer = setTimeout(() => void this.connect(), wait)
    this.readyState = CONNECTING
    this.sink.error(false)
  }

  private url(): string {
    const u = new URL(this.o.url)
    for (const c of this.channels) u.searchParams.append(QUERY_CHANNEL, c)
    return u.href
  }

  private headers(token: string | undefined): Record<string, string> {
    const h: Record<string, string> = { Accept: 'text/event-stream' }
    if (token !== undefined && token !== '') h.Authorization = `Bearer ${token}`
    // A header value is bytes: the id goes as its UTF-8 bytes, which is how the server reads it.
    if (this.lastEventId !== '') h['Last-Event-ID'] = String.fromCharCode(...new TextEncoder().encode(this.lastEventId))
    return h
  }
}

/** For promises whose failure changes nothing, and sinks that want nothing. */
export function ignore(): void {}
