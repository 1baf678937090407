// Who is connected where, as one process knows its cluster: every stream's facts (StreamFacts),
// by the node that holds it: a `--workers` primary's workers, or the nodes of a Redis cluster,
// this one included. It answers what one process answers from its own streams: how many streams
// a target reaches (the `delivered` of a publish), whether a user or a client is connected
// anywhere (404 `offline`), the count per channel, and which node holds a stream; and it tells a
// channel's or a user's 0↔1 edges for the whole cluster (watch()). Whatever comes is applied as a
// difference: a node's snapshot read again, or a stream whose facts changed, leaves what stayed
// untouched, so a user who stays connected never goes offline in between. No sockets.

import { Counts, type EdgeListener } from '../fanout/counts.js'
import { matches, type WireTarget } from '../fanout/target.js'
import { sameFacts, type StreamFacts } from './wire.js'

interface Held<N> {
  node: N
  facts: StreamFacts
}

export class Presence<N> {
  private readonly byId = new Map<number, Held<N>>()
  private readonly byNode = new Map<N, Set<number>>()
  private readonly counts = new Counts()

  get size(): number {
    return this.byId.size
  }

  /** Be told each time a channel or a user goes from no stream in the cluster to one, or back. */
  watch(fn: EdgeListener): void {
    this.counts.onEdge = fn
  }

  /** Stream `s` is on `node`: it opened there, or (known already) its facts changed. */
  set(node: N, s: StreamFacts): void {
    const held = this.byId.get(s.id)
    if (held === undefined) {
      this.byId.set(s.id, { node, facts: s })
      this.idsOf(node).add(s.id)
      this.counts.add(s)
      return
    }
    if (held.node !== node) {
      this.byNode.get(held.node)?.delete(s.id)
      this.idsOf(node).add(s.id)
      held.node = node
    }
    if (sameFacts(held.facts, s)) return
    // The new facts counted before the old are taken away: what it keeps never touches 0.
    this.counts.add(s)
    this.counts.remove(held.facts)
    held.facts = s
  }

  /** Stream `id` closed. */
  delete(id: number): void {
    const held = this.byId.get(id)
    if (held === undefined) return
    this.byId.delete(id)
    this.byNode.get(held.node)?.delete(id)
    this.counts.remove(held.facts)
  }

  /**
   * Each node named holds exactly its streams now (its snapshot), and the nodes in `gone` none:
   * every new and changed stream is applied first, then the ones no longer held go, so a user
   * who closed a stream and opened another in between (on any of these nodes) stays connected
   * throughout.
   */
  replace(snapshots: ReadonlyMap<N, readonly StreamFacts[]>, gone: Iterable<N> = []): void {
    for (const [node, streams] of snapshots) for (const s of streams) this.set(node, s)
    for (const [node, streams] of snapshots) {
      const now = new Set(streams.map((s) => s.id))
      for (const id of [...this.idsOf(node)]) if (!now.has(id)) this.delete(id)
    }
    for (const node of gone) this.nodeGone(node)
  }

  /** A node is gone: so are its streams. */
  nodeGone(node: N): void {
    for (const id of [...(this.byNode.get(node) ?? [])]) this.delete(id)
    this.byNode.delete(node)
  }

  /** The node holding stream `id`, or undefined. */
  nodeOf(id: number): N | undefined {
    return this.byId.get(id)?.node
  }

  /** The facts of every stream `node` holds. */
  streamsOf(node: N): StreamFacts[] {
    const out: StreamFacts[] = []
    for (const id of this.byNode.get(node) ?? []) out.push(this.byId.get(id)!.facts)
    return out
  }

  userOnline(user: string): boolean {
    return this.counts.hasUser(user)
  }

  /** Channel → streams in the cluster. */
  channels(): Record<string, number> {
    return this.counts.channels()
  }

  /** Streams a target reaches, from the counts when they say it (as Streams.countMatches does). */
  count(t: WireTarget): number {
    if (t.client !== undefined) {
      const held = this.byId.get(t.client)
      return held !== undefined && matches(held.facts, t) ? 1 : 0
    }
    let n = this.counts.reach(t, this.byId.size)
    if (n >= 0) return n
    n = 0
    for (const held of this.byId.values()) if (matches(held.facts, t)) n++
    return n
  }

  private idsOf(node: N): Set<number> {
    let ids = this.byNode.get(node)
    if (ids === undefined) this.byNode.set(node, (ids = new Set()))
    return ids
  }
}

/**
 * What one turn says of its process's streams, each id once with its last word: its facts
 * (opened, or changed) or closed. So a stream closed and opened again under one id, or opened and
 * closed, in one turn is told as it ends up, whatever order the far end applies the two lists in.
 */
export class StreamNews {
  private last = new Map<number, StreamFacts | null>()

  get size(): number {
    return this.last.size
  }

  opened(s: StreamFacts): void {
    this.last.set(s.id, s)
  }

  closed(id: number): void {
    this.last.set(id, null)
  }

  /** The turn's news, and a fresh start. */
  take(): { opened: StreamFacts[]; closed: number[] } {
    const opened: StreamFacts[] = []
    const closed: number[] = []
    for (const [id, facts] of this.last) {
      if (facts === null) closed.push(id)
      else opened.push(facts)
    }
    this.last = new Map()
    return { opened, closed }
  }
}
