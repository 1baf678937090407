// The leading tab of a shared stream. It holds one stream for every tab of the origin, asking for
// the union of their channels with each event tagged with its channel (`tag=channel`, docs/wire.md)
// and changing that union live as tabs come, go and change theirs; it relays the events over
// BroadcastChannel (each tab keeps those of its channels), resumes after a handoff from the
// earliest place a tab is at, and catches up a tab that is elsewhere on a stream of its own until
// that stream meets the shared one.

import { CLOSED, Stream, type StreamSink, type StreamOptions } from './connection.js'
import { COLLECT_MS, PRUNE_MS } from './limits.js'
import { channelsOf, SHARED, type Hi, type Message, type Ring } from './relay.js'
import { EVENT_CHANNELS, EVENT_READY, MAX_CHANNELS_PER_STREAM, type ChannelsData } from '../wire.js'

/** What the leader needs of the tab it runs in. */
export interface LeaderHost {
  /** Lock and channel name. */
  readonly name: string
  /** Post to every other tab and deliver to this one. */
  send(m: Message): void
  readonly ring: Ring
  /** This tab's RawSse's: its URL, token and credentials serve every stream. */
  readonly options: StreamOptions
}

/** A catch-up stream's key: this and its tab's id. It moves its tab to the shared stream once an event reaches both. */
const CATCH_UP = 'c'

interface Group {
  readonly key: string
  stream: Stream
  /** The last id relayed from it. */
  last: string
  /**
   * A catch-up's: once the shared stream carries all its tab's channels, the newest event in the
   * ring then. Only an event after it proves the shared stream has everything the tab needs next.
   */
  after?: string
}

interface Tab {
  /** Its channels (never none: a stream that names none has `default`). */
  ch: readonly string[]
  /** The key of the stream it gets its events from. */
  g: string
  /** The channels it was last told it gets (`in`). */
  eff: readonly string[]
}

export class Leader {
  readonly id = randomId()
  private readonly groups = new Map<string, Group>()
  private readonly tabs = new Map<string, Tab>()
  /** What the shared stream carries, as the server last said (`ready`, `channels`). */
  private carried: readonly string[] = []
  /** The `hi`s of the first moments, by tab, before any stream is opened; null once they are. */
  private collecting: Map<string, Hi> | null = new Map()
  private start: ReturnType<typeof setTimeout> | undefined
  private pruning: ReturnType<typeof setInterval> | undefined

  constructor(private readonly host: LeaderHost) {}

  /**
   * Say so to every tab (each answers `hi`, this one too), then open the streams. `alone`: no
   * tab has been heard from before, so there is nobody to wait for.
   */
  begin(alone: boolean): void {
    this.host.send({ k: 'lead', from: this.id })
    this.start = setTimeout(() => this.startGroups(), alone ? 0 : COLLECT_MS)
    this.pruning = setInterval(() => void this.prune(), PRUNE_MS)
  }

  receive(m: Message): void {
    if (m.k === 'hi') {
      if (this.collecting === null) this.join(m)
      else this.collecting.set(m.tab, m)
    } else if (m.k === 'bye') {
      if (this.collecting === null) this.leave(m.tab)
      else this.collecting.delete(m.tab)
    }
  }

  close(): void {
    clearTimeout(this.start)
    clearInterval(this.pruning)
    for (const g of this.groups.values()) g.stream.close()
    this.groups.clear()
    this.tabs.clear()
  }

  /**
   * After a handoff the shared stream resumes from the earliest place one of the tabs is at that
   * the ring (the order the last leader relayed in) holds; a tab ahead of it drops what it already
   * had. A tab whose place the ring does not hold is caught up on its own.
   */
  private startGroups(): void {
    const his = [...(this.collecting?.values() ?? [])]
    this.collecting = null
    const ring = this.host.ring
    const placed = his.filter((h) => ring.indexOf(h.last) !== -1).sort((a, b) => ring.indexOf(a.last) - ring.indexOf(b.last))
    // The earliest place the ring holds; else any tab's place, and the others catch up to it.
    const from = placed[0] ?? his.find((h) => h.last !== '')
    for (const h of his) {
      const ch = channelsOf(h.ch)
      const g = h === from || h.last === '' || placed.includes(h) ? SHARED : CATCH_UP + h.tab
      this.tabs.set(h.tab, { ch, g, eff: [] })
    }
    if (his.length === 0) return
    const shared = this.open(SHARED, this.union(), from?.last ?? '')
    for (const h of his) this.enter(h, this.tabs.get(h.tab)!, shared)
  }

  /** A tab that arrives or changes its channels while the streams are open. */
  private join(h: Hi): void {
    const ch = channelsOf(h.ch)
    const t = this.tabs.get(h.tab)
    // A change of channels: the shared stream changes live; the tab gets them once it carries them.
    if (t?.g === SHARED) {
      t.ch = ch
      return this.reshape()
    }
    if (t !== undefined) this.leave(h.tab)
    const shared = this.groups.get(SHARED)
    const i = h.last === '' ? -2 : this.host.ring.indexOf(h.last)
    // No place (it wants what comes from now on), or its place in the ring with all its channels
    // there: the ring catches it up. Else a stream from its place.
    const fromRing = i === -2 || (i !== -1 && ch.every((c) => this.carried.includes(c)))
    const g = shared === undefined || fromRing ? SHARED : CATCH_UP + h.tab
    const tab = { ch, g, eff: [] }
    this.tabs.set(h.tab, tab)
    if (shared === undefined) return this.admit(this.open(SHARED, this.union(), h.last), h.tab)
    this.enter(h, tab, shared)
    if (g === SHARED) this.replay(h.tab, i)
    this.reshape()
  }

  /** Into the shared stream, or onto a catch-up from its place. */
  private enter(h: Hi, t: Tab, shared: Group): void {
    this.admit(t.g === SHARED ? shared : this.open(t.g, t.ch, h.last), h.tab)
  }

  private admit(g: Group, tab: string): void {
    const t = this.tabs.get(tab)!
    t.g = g.key
    t.eff = g.key === SHARED ? t.ch.filter((c) => this.carried.includes(c)) : t.ch
    this.host.send({ k: 'in', from: this.id, to: tab, g: g.key, s: g.stream.readyState, ch: t.eff })
  }

  /** The ring's events after place `i`, to `tab` alone (it keeps those of its channels it has not had). */
  private replay(tab: string, i: number): void {
    if (i < -1) return
    for (const e of this.host.ring.after(i)) this.host.send({ k: 'ev', from: this.id, to: tab, g: SHARED, ...e })
  }

  /** The catch-up `c` met the shared stream: its tab moves there, and gets what the ring has after place `i`. */
  private merge(c: Group, i: number): void {
    const tab = c.key.slice(CATCH_UP.length)
    this.closeGroup(c.key)
    this.admit(this.groups.get(SHARED)!, tab)
    this.replay(tab, i)
  }

  private leave(tab: string): void {
    const t = this.tabs.get(tab)
    if (t === undefined) return
    this.tabs.delete(tab)
    if (t.g !== SHARED) this.closeGroup(t.g)
    if (this.tabs.size > 0) this.reshape()
    else this.closeGroup(SHARED)
  }

  private closeGroup(key: string): void {
    this.groups.get(key)?.stream.close()
    this.groups.delete(key)
  }

  /**
   * The channels of every tab (catch-ups included), the first tabs' first, up to the server's limit
   * for one stream: a tab whose channels are past it gets them once other tabs leave theirs.
   */
  private union(): string[] {
    const u = new Set<string>()
    for (const t of this.tabs.values()) for (const c of t.ch) u.add(c)
    return [...u].slice(0, MAX_CHANNELS_PER_STREAM)
  }

  /** The tabs' channels changed: the shared stream asks for their union, and each tab is told what it gets now. */
  private reshape(): void {
    void this.groups.get(SHARED)?.stream.setChannels(this.union())
    this.told()
  }

  /** After a change of what the shared stream carries: tell each tab what it gets, and let catch-ups meet it. */
  private told(): void {
    const shared = this.groups.get(SHARED)
    if (shared === undefined) return
    for (const [tab, t] of this.tabs) {
      const eff = t.ch.filter((c) => this.carried.includes(c))
      if (t.g === SHARED && eff.join() !== t.eff.join()) this.admit(shared, tab)
      const c = this.groups.get(t.g)
      if (c !== undefined && t.g.startsWith(CATCH_UP) && c.after === undefined && eff.length === t.ch.length) c.after = this.newest()
    }
  }

  /** The newest event in the ring ('' for none). */
  private newest(): string {
    const items = this.host.ring.items
    return items[items.length - 1]?.id ?? ''
  }

  private open(key: string, channels: readonly string[], from: string): Group {
    const g = { key, last: from } as Group
    g.stream = new Stream({ ...this.host.options, channels, lastEventId: from, tagged: true }, this.sink(g))
    this.groups.set(key, g)
    if (key === SHARED) this.carried = channels
    return g
  }

  private sink(g: Group): StreamSink {
    const shared = g.key === SHARED
    return {
      state: (s) => {
        this.host.send({ k: 'st', from: this.id, g: g.key, s })
        if (s !== CLOSED) return
        this.groups.delete(g.key)
        for (const [tab, t] of this.tabs) if (t.g === g.key) this.tabs.delete(tab)
      },
      event: (type, data, id, own, c) => {
        if (shared && (type === EVENT_READY || type === EVENT_CHANNELS)) {
          try {
            this.carried = (JSON.parse(data) as ChannelsData).channels
          } catch {
            // Not ours: nothing changes.
          }
          this.told()
        }
        // A tab hears of its own channels from `in`, not of the shared stream's.
        if (type === EVENT_CHANNELS) return
        const ring = this.host.ring
        if (!shared && own && g.after !== undefined) {
          // A catch-up's event that the shared stream relayed already: its tab moves there from that event.
          const i = ring.indexOf(id)
          if (i !== -1 && i > (g.after === '' ? -1 : ring.indexOf(g.after))) return this.merge(g, i - 1)
        }
        if (own) g.last = id
        const e = { k: 'ev', from: this.id, g: g.key, id: own ? id : '', type, data, c } as const
        this.host.send(shared ? e : { ...e, to: g.key.slice(1) })
        // Or the shared stream's event that a catch-up has relayed already: that tab moves here from now on.
        if (shared && own) for (const x of this.groups.values()) if (x.after !== undefined && x.last === id) this.merge(x, -2)
      },
    }
  }

  /** A crashed tab says no goodbye; its lock, which the browser frees, tells. */
  private async prune(): Promise<void> {
    if (this.tabs.size === 0) return
    const held = new Set((await navigator.locks.query()).held?.map((l) => l.name))
    for (const tab of [...this.tabs.keys()]) if (!held.has(`${this.host.name}#${tab}`)) this.leave(tab)
  }
}

/** A tab's or a leader's name among the others. */
export function randomId(): string {
  return Math.random().toString(36).slice(2)
}
