// One tab of a shared stream (`shared: true`): it asks Web Locks to lead (and leads when the
// browser says so), follows otherwise, takes the shared stream's events from BroadcastChannel,
// keeps those of its channels (each event says its channel), drops those it already had, and
// tells each new leader where it is.
// The election is nchan.js's shared mode made with Web Locks instead of localStorage: the
// browser itself frees a closed or crashed tab's lock, so the next tab leads at once.

import { CLOSED, CONNECTING, ignore, type ReadyState, type StreamOptions, type StreamSink } from './connection.js'
import { Leader, randomId, type LeaderHost } from './leader.js'
import { RING_CHARS, RING_EVENTS, SEEN_IDS } from './limits.js'
import { EVENT_CHANNELS } from '../wire.js'
import { channelsOf, RecentIds, Ring, sameSet, type Ev, type Message } from './relay.js'

export class SharedTab implements LeaderHost {
  readonly id = randomId()
  readonly ring = new Ring(RING_EVENTS, RING_CHARS)
  channels: readonly string[]
  /** The last id this tab dispatched. */
  lastEventId: string
  /** Its place in the shared stream: the last id it had, of its channels or not (what a new leader resumes from). */
  private place: string
  /** Of its channels, those the leader says it gets now. */
  private eff: readonly string[] = []
  readyState: ReadyState = CONNECTING
  private readonly seen = new RecentIds(SEEN_IDS)
  private readonly bc: BroadcastChannel
  private leaderId?: string
  /** Set while this tab leads. */
  leader?: Leader | undefined
  /** The stream the leader gives this tab the events of; unset until it says (`in`). */
  private group?: string | undefined
  /** The channels changed: the next `in` for them is told to the page as `channels`. */
  private announce?: boolean
  private closed?: boolean
  private readonly stop = new AbortController()
  private release!: () => void

  constructor(
    readonly name: string,
    readonly options: StreamOptions,
    private readonly page: StreamSink,
  ) {
    this.channels = options.channels
    this.lastEventId = this.place = options.lastEventId
    if (this.lastEventId !== '') this.seen.add(this.lastEventId)
    this.bc = new BroadcastChannel(name)
    this.bc.onmessage = (e: MessageEvent<Message>) => this.receive(e.data)
    const held = new Promise<void>((resolve) => (this.release = resolve))
    const signal = this.stop.signal
    // This tab's own lock first: a leader drops the tabs whose lock the browser has freed.
    navigator.locks
      .request(`${name}#${this.id}`, { signal }, () => {
        this.hello()
        navigator.locks.request(name, { signal }, () => this.lead(held)).catch(ignore)
        return held
      })
      .catch(ignore)
  }

  setChannels(next: readonly string[]): void {
    if (sameSet(next, this.channels)) return
    this.channels = next
    this.announce = true
    this.hello()
  }

  close(): void {
    if (this.closed) return
    this.send({ k: 'bye', tab: this.id })
    this.closed = true
    this.readyState = CLOSED
    this.leader?.close()
    this.leader = undefined
    this.stop.abort()
    this.release()
    this.bc.close()
  }

  send(m: Message): void {
    this.bc.postMessage(m)
    this.receive(m)
  }

  private lead(held: Promise<void>): Promise<void> {
    if (this.closed) return Promise.resolve()
    const alone = this.leaderId === undefined
    this.leader = new Leader(this)
    this.leader.begin(alone)
    return held
  }

  private hello(): void {
    if (!this.closed) this.send({ k: 'hi', tab: this.id, ch: this.channels, last: this.place })
  }

  private receive(m: Message): void {
    if (this.closed) return
    switch (m.k) {
      case 'hi':
      case 'bye':
        this.leader?.receive(m)
        return
      case 'lead':
        // A new leader: its events start once it says where this tab is (`in`).
        this.leaderId = m.from
        this.group = undefined
        return this.hello()
      case 'in':
        if (m.to !== this.id || (this.leaderId !== undefined && m.from !== this.leaderId)) return
        this.leaderId = m.from
        this.group = m.g
        this.eff = m.ch
        if (this.announce && sameSet(m.ch, channelsOf(this.channels))) {
          this.announce = false
          this.page.event(EVENT_CHANNELS, JSON.stringify({ channels: this.channels }), this.lastEventId, false, '')
        }
        // A new leader's stream that is still opening is no news to a page that was open.
        if (m.s !== CONNECTING) this.setState(m.s)
        return
      case 'st':
        if (m.from === this.leaderId && m.g === this.group) this.setState(m.s)
        return
      case 'ev':
        if (m.from !== this.leaderId) return
        if (m.to === undefined) {
          if (m.id !== '') this.ring.add(m)
          if (m.g === this.group) this.take(m)
        } else if (m.to === this.id) {
          this.take(m)
        }
    }
  }

  private take(m: Ev): void {
    if (m.id !== '') {
      if (this.seen.has(m.id)) return // had it: a replay across a handoff, or a catch-up
      this.seen.add(m.id)
      this.place = m.id
    }
    // Another tab's channel, or one this tab has left or is not given yet.
    if (m.c !== '' && !(this.eff.includes(m.c) && channelsOf(this.channels).includes(m.c))) return
    if (m.id !== '') this.lastEventId = m.id
    this.page.event(m.type, m.data, this.lastEventId, m.id !== '', m.c)
  }

  private setState(s: ReadyState): void {
    if (s === this.readyState) return
    this.readyState = s
    if (s === CLOSED) this.close()
    this.page.state(s)
  }
}
