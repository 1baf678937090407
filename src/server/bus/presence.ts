// Who is connected where, as the primary of a cluster knows it: every stream of every worker
// (its id, user, channels and roles), kept from the workers' `presence` messages. It answers
// what one process answers from its own streams: how many streams a target reaches (the
// `delivered` of a publish), whether a user or client is connected anywhere (404 `offline`),
// the count per channel, and which worker holds a stream. No sockets.

import type { WireStream, WireTarget } from './workers/ipc.js'

interface Entry {
  readonly node: number
  readonly user: string | null
  readonly channels: readonly string[]
  readonly roles: readonly string[]
}

export class Presence {
  private readonly byId = new Map<number, Entry>()
  private readonly byNode = new Map<number, Set<number>>()
  private readonly channelCounts = new Map<string, number>()
  private readonly userCounts = new Map<string, number>()

  get size(): number {
    return this.byId.size
  }

  opened(node: number, [id, user, channels, roles]: WireStream): void {
    if (this.byId.has(id)) return
    this.byId.set(id, { node, user, channels, roles })
    let ids = this.byNode.get(node)
    if (ids === undefined) this.byNode.set(node, (ids = new Set()))
    ids.add(id)
    for (const ch of channels) bump(this.channelCounts, ch, 1)
    if (user !== null) bump(this.userCounts, user, 1)
  }

  closed(id: number): void {
    const e = this.byId.get(id)
    if (e === undefined) return
    this.byId.delete(id)
    this.byNode.get(e.node)?.delete(id)
    for (const ch of e.channels) bump(this.channelCounts, ch, -1)
    if (e.user !== null) bump(this.userCounts, e.user, -1)
  }

  /** A worker is gone: so are its streams. */
  nodeGone(node: number): void {
    for (const id of [...(this.byNode.get(node) ?? [])]) this.closed(id)
    this.byNode.delete(node)
  }

  /** The worker holding stream `id`, or undefined. */
  nodeOf(id: number): number | undefined {
    return this.byId.get(id)?.node
  }

  userOnline(user: string): boolean {
    return this.userCounts.has(user)
  }

  channels(): Record<string, number> {
    return Object.fromEntries(this.channelCounts)
  }

  /** Streams a target reaches, from the counts when they say it (as Streams.countMatches does). */
  count(t: WireTarget): number {
    if (t.client !== undefined) {
      const e = this.byId.get(t.client)
      return e !== undefined && matches(e, t) ? 1 : 0
    }
    if (t.role === undefined) {
      if (t.channel === undefined && t.user === undefined) return this.byId.size
      if (t.user === undefined) return this.channelCounts.get(t.channel!) ?? 0
      if (t.channel === undefined) return this.userCounts.get(t.user) ?? 0
    }
    let n = 0
    for (const e of this.byId.values()) if (matches(e, t)) n++
    return n
  }
}

function matches(e: Entry, t: WireTarget): boolean {
  if (t.channel !== undefined && !e.channels.includes(t.channel)) return false
  if (t.user !== undefined && e.user !== t.user) return false
  if (t.role !== undefined && !e.roles.includes(t.role)) return false
  return true
}

function bump(counts: Map<string, number>, key: string, by: number): void {
  const n = (counts.get(key) ?? 0) + by
  if (n <= 0) counts.delete(key)
  else counts.set(key, n)
}
