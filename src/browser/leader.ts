// The leading tab of a shared stream: it holds the connections for every tab of the origin, one
// stream per channel set, relays their events over BroadcastChannel, resumes after a handoff
// from the earliest place a tab is at, and catches up a tab that is elsewhere without a gap.
//
// Why one stream per channel set and not one stream for the union of every tab's channels: an
// event on the wire does not say which channel it was published to (docs/wire.md), so a leader
// reading the union could not tell which tab it is for, and "each tab sees only its own channels"
// would not hold. Tabs with the same channels (the common case: one page open several times)
// share one stream. Once the server can tag an event with its channel, groupKey() returns one key
// for every tab, the stream asks for the union, and a tab filters by the tag.

import { CLOSED, Stream, type StreamOptions, type StreamSink } from './connection.js'
import { COLLECT_MS, PRUNE_MS } from './limits.js'
import { groupKey, type Hi, type Message, type Ring } from './relay.js'

/** What the leader needs of the tab it runs in. */
export interface LeaderHost {
  /** Lock and channel name. */
  readonly name: string
  /** Post to every other tab and deliver to this one. */
  send(m: Message): void
  readonly ring: Ring
  /** This tab's RawSse's: its URL, token and credentials serve every group. */
  readonly options: StreamOptions
}

interface Group {
  readonly key: string
  stream: Stream
  readonly members: Set<string>
  /** The last id relayed on this group. */
  last: string
  /**
   * Set on a catch-up: one tab whose place is not in the ring (an old lastEventId, a long
   * freeze, or a step ahead of this leader at a handoff) reads from its place on a stream of its
   * own, so that the others see no replay and no `reset` meant for it, until an event reaches
   * both streams; then it moves to the group keyed `joins`.
   */
  joins?: string
}

export class Leader {
  readonly id = randomId()
  private readonly groups = new Map<string, Group>()
  /** Tab → its group's key. */
  private readonly tabs = new Map<string, string>()
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
   * After a handoff, each group resumes from the earliest place one of its tabs is at that the
   * ring (the order the last leader relayed in) holds; a tab ahead of it drops what it already
   * had. A tab whose place the ring does not hold is caught up on its own.
   */
  private startGroups(): void {
    const byKey = new Map<string, Hi[]>()
    for (const h of this.collecting?.values() ?? []) {
      const key = groupKey(h.ch)
      byKey.set(key, [...(byKey.get(key) ?? []), h])
    }
    this.collecting = null
    const ring = this.host.ring
    for (const [key, his] of byKey) {
      const placed = his.filter((h) => ring.indexOf(h.last, key) !== -1)
      placed.sort((a, b) => ring.indexOf(a.last, key) - ring.indexOf(b.last, key))
      // The earliest place the ring holds; else any tab's place, and the others catch up to it.
      const from = placed[0] ?? his.find((h) => h.last !== '')
      const g = this.open(key, his[0]!.ch, from?.last ?? '')
      for (const h of his) {
        if (h === from || h.last === '' || placed.includes(h)) this.admit(g, h.tab)
        else this.catchUp(g, h)
      }
    }
  }

  /** A tab that arrives or changes its channels while the streams are open. */
  private join(h: Hi): void {
    const key = groupKey(h.ch)
    const before = this.tabs.get(h.tab)
    if (before !== undefined && before !== key) this.drop(before, h.tab)
    const g = this.groups.get(key)
    // A set no tab has: a stream of its own, from this tab's place (the server replays).
    if (g === undefined) return this.admit(this.open(key, h.ch, h.last), h.tab)
    // Its place anywhere in the ring: after a change of channels it is another group's event.
    const i = h.last === '' ? -2 : this.host.ring.indexOf(h.last)
    if (i === -1) return this.catchUp(g, h)
    this.admit(g, h.tab)
    this.replay(h.tab, key, i)
  }

  private catchUp(g: Group, h: Hi): void {
    const c = this.open(`${g.key} ${h.tab}`, h.ch, h.last)
    c.joins = g.key
    this.admit(c, h.tab)
  }

  /** The catch-up `c` met its group `g`: its tab moves there, and gets what the ring has after place `i`. */
  private merge(c: Group, g: Group, i: number): void {
    const [tab] = c.members
    this.admit(g, tab!)
    this.drop(c.key, tab!)
    this.replay(tab!, g.key, i)
  }

  private admit(g: Group, tab: string): void {
    this.tabs.set(tab, g.key)
    g.members.add(tab)
    this.host.send({ k: 'in', from: this.id, to: tab, g: g.key, s: g.stream.readyState })
  }

  /** Group `key`'s events in the ring after place `i`, to `tab` alone (it drops those it has). */
  private replay(tab: string, key: string, i: number): void {
    if (i < -1) return
    for (const e of this.host.ring.after(i, key)) this.host.send({ k: 'ev', from: this.id, to: tab, g: key, id: e.id, type: e.type, data: e.data })
  }

  private leave(tab: string): void {
    const key = this.tabs.get(tab)
    this.tabs.delete(tab)
    if (key !== undefined) this.drop(key, tab)
  }

  /** Take `tab` out of group `key`; a group nobody is in any more closes its stream. */
  private drop(key: string, tab: string): void {
    const g = this.groups.get(key)
    if (g === undefined) return
    g.members.delete(tab)
    if (g.members.size > 0) return
    g.stream.close()
    this.groups.delete(key)
  }

  private open(key: string, channels: readonly string[], from: string): Group {
    const g = { key, members: new Set(), last: from } as Group
    g.stream = new Stream({ ...this.host.options, channels, lastEventId: from }, this.sink(g))
    this.groups.set(key, g)
    return g
  }

  private sink(g: Group): StreamSink {
    return {
      state: (s) => {
        this.host.send({ k: 'st', from: this.id, g: g.key, s })
        if (s !== CLOSED) return
        this.groups.delete(g.key)
        for (const tab of g.members) this.tabs.delete(tab)
      },
      event: (type, data, id, own) => {
        const main = g.joins === undefined ? undefined : this.groups.get(g.joins)
        // A catch-up whose event the group has relayed already: its tab moves there from that event.
        const i = own && main !== undefined ? this.host.ring.indexOf(id, main.key) : -1
        if (i !== -1) return this.merge(g, main!, i - 1)
        if (own) g.last = id
        this.host.send({ k: 'ev', from: this.id, g: g.key, id: own ? id : '', type, data })
        // Or the group's event that a catch-up has relayed already: that tab moves here from now on.
        if (own) for (const c of this.groups.values()) if (c.joins === g.key && c.last === id) this.merge(c, g, -2)
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
