// RawSse, the browser client (served as /rawsse-client.js, exported as rawsse/browser; docs/client.md
// "In the browser"): an EventTarget shaped like EventSource that reads its stream with fetch(), or
// shares one connection among the tabs of the origin (`shared: true`).

import { CLOSED, CONNECTING, OPEN, Stream, type ReadyState, type StreamOptions, type TokenSource } from './connection.js'
import { SharedTab } from './shared.js'

export type { ReadyState, TokenSource }

export interface RawSseOptions {
  /** The channels to receive; none: the server's `default`. */
  channels?: readonly string[]
  /**
   * Sent as `Authorization: Bearer`, never in the URL. A function is called for each connection,
   * so after a 401 or an `expiring` event the page hands over a new token.
   */
  token?: TokenSource
  /** One connection for every tab of this origin that uses the same URL (and the same channels). */
  shared?: boolean
  /** Start after this event id, e.g. one the page kept from an earlier visit. */
  lastEventId?: string
  /** fetch()'s `credentials`, for a cookie: default `same-origin`. */
  credentials?: RequestCredentials
}

/** `alone`: this tab has its own connection; `leader`: it holds the shared one; `follower`: it gets the leader's events. */
export type Role = 'alone' | 'leader' | 'follower'

export interface RawSseEventMap {
  open: Event
  error: Event
  message: MessageEvent<string>
}

// Typed listeners, as lib.dom types EventSource's: named events are MessageEvents too.
export interface RawSse {
  addEventListener<K extends keyof RawSseEventMap>(type: K, listener: (this: RawSse, ev: RawSseEventMap[K]) => unknown, options?: boolean | AddEventListenerOptions): void
  addEventListener(type: string, listener: (this: RawSse, ev: MessageEvent<string>) => unknown, options?: boolean | AddEventListenerOptions): void
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void
  removeEventListener<K extends keyof RawSseEventMap>(type: K, listener: (this: RawSse, ev: RawSseEventMap[K]) => unknown, options?: boolean | EventListenerOptions): void
  removeEventListener(type: string, listener: (this: RawSse, ev: MessageEvent<string>) => unknown, options?: boolean | EventListenerOptions): void
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void
}

/** Said once per page, not once per tab or stream. */
let toldCannotShare = false

export class RawSse extends EventTarget {
  static readonly CONNECTING = CONNECTING
  static readonly OPEN = OPEN
  static readonly CLOSED = CLOSED
  /** The stream's URL, absolute, without the channels. */
  readonly url: string
  onopen: ((this: RawSse, ev: Event) => unknown) | null = null
  onmessage: ((this: RawSse, ev: MessageEvent<string>) => unknown) | null = null
  onerror: ((this: RawSse, ev: Event) => unknown) | null = null
  private readonly origin: string
  /** This tab's own stream, or its share of one. */
  private readonly src: Stream | SharedTab

  constructor(url: string | URL, options: RawSseOptions = {}) {
    super()
    // The on… handlers as listeners: what they throw is reported, as a listener's is, and stops nothing.
    for (const type of ['open', 'message', 'error'] as const) this.addEventListener(type, (e) => this[`on${type}`]?.call(this, e as MessageEvent<string>))
    const u = new URL(url, location.href)
    this.url = u.href
    this.origin = u.origin
    const o: StreamOptions = {
      url: this.url,
      channels: [...(options.channels ?? [])],
      lastEventId: options.lastEventId ?? '',
      token: options.token,
      credentials: options.credentials,
    }
    const sink = {
      state: (s: ReadyState) => this.dispatchEvent(new Event(s === OPEN ? 'open' : 'error')),
      event: (type: string, data: string, id: string) => this.dispatchEvent(new MessageEvent(type, { data, lastEventId: id, origin: this.origin })),
    }
    // Web Locks is there only in a secure context (https, or localhost).
    if (options.shared === true && typeof BroadcastChannel === 'function' && navigator.locks !== undefined) {
      this.src = new SharedTab(`rawsse ${this.url}`, o, sink)
    } else {
      if (options.shared === true && !toldCannotShare) {
        toldCannotShare = true
        console.info('rawsse: no Web Locks or BroadcastChannel (https?): each tab connects on its own')
      }
      this.src = new Stream(o, sink)
    }
  }

  /** CONNECTING (0), OPEN (1) or CLOSED (2), as EventSource's. */
  get readyState(): ReadyState {
    return this.src.readyState
  }

  /** The id of the last event with one; sent as Last-Event-ID when the stream resumes. */
  get lastEventId(): string {
    return this.src.lastEventId
  }

  get channels(): readonly string[] {
    return this.src.channels
  }

  get role(): Role {
    return this.src instanceof Stream ? 'alone' : this.src.leader ? 'leader' : 'follower'
  }

  /** Receive these channels too; the stream says `channels` where the change takes effect. */
  subscribe(...channels: string[]): void {
    void this.src.setChannels([...new Set([...this.channels, ...channels])])
  }

  unsubscribe(...channels: string[]): void {
    void this.src.setChannels(this.channels.filter((c) => !channels.includes(c)))
  }

  close(): void {
    this.src.close()
  }
}
