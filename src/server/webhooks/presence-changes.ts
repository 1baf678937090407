// Presence changes, told once for the whole cluster (CONTRACT "The server asks and tells the
// application"): a user's first stream and last (`user.online`, `user.offline`), a channel's
// (`channel.occupied`, `channel.vacated`), after the grace window (grace.ts), to the `presence`
// event and the webhook (sender.ts). Where they come from, and who tells them:
//
// - One process: its own streams' counts are the cluster's presence; it tells every change.
// - `--workers`: the primary's presence is the machine's (every worker's streams, told each
//   turn), so the primary tells; a worker tells nothing (its bus says 'elsewhere').
// - `--redis`: every node's presence is the cluster's (its own streams at once, the others'
//   snapshots twice a second, a node gone once its snapshot expires), so every node sees every
//   edge, a moment apart. Each key (a user, a channel) has one owner among the live nodes
//   (rendezvous hashing: the same answer on every node that lists the same nodes, and a node
//   that joins or leaves moves only its own keys), which tells the key's changes once they have
//   stood for the grace window; one owner per key keeps the order of its changes, retries
//   included, in one queue. The owner claims each change in Redis first (claims.ts): a claim is
//   won by one node only, and not at all when it is older than what was told, so two nodes that
//   disagree for a moment about who is alive never tell a change twice, nor an old one after a
//   newer. The other nodes claim it too, WEBHOOK_CLAIM_BACKSTOP_MS later, if it still stands
//   (the owner may have died before it could): the claim makes that a no-op when the owner did.
// - A node killed with -9 (no goodbye): the others drop its streams once its snapshot expires
//   (REDIS_PRESENCE_TTL_MS); a user it held who has no stream elsewhere by then is an `offline`
//   edge there, told by that key's owner among the survivors after the grace window, unless the
//   user has reconnected to one of them first (a stream anywhere keeps them online: no edge).
//   What the killed node still owed (its queue is in memory) is lost with it.
// - A node that starts reads what the cluster recorded as told present, so a user who went while
//   no node was up (the whole cluster restarted) is told `offline` after the grace window.
//
// In one process or under `--workers` nothing is recorded: after a restart, a user who comes back
// is told `online` again (an application treats `online` as "is online", not as a count).

import type { EdgeListener } from '../fanout/counts.js'
import * as L from '../limits.js'
import type { Claims } from './claims.js'
import { changeKey, makeChange, type PresenceChange } from './change.js'
import { Grace } from './grace.js'

/** Where a process reads the cluster's presence (a Presence, this process's Streams, a Redis node's view). */
export interface PresenceFeed {
  /** Be told each 0↔1 edge from now on (one watcher). */
  watch(fn: EdgeListener): void
  /** Each channel and user present now. */
  forEachPresent(fn: (kind: 'channel' | 'user', name: string) => void): void
  /** How the nodes that see the same edges agree on who tells each change; null: this process alone sees them. */
  claims(): Claims | null
}

/** A change to tell, of key `key` (changeKey). */
export type Tell = (key: string, change: PresenceChange) => void

interface Backstop {
  present: boolean
  atMs: number
  /** When to claim it (performance.now()). */
  due: number
}

export class PresenceTeller {
  private readonly grace: Grace
  private claims: Claims | null = null
  /** Changes this node claims later, if they still stand: by key (one each; a newer change of the key replaces it). */
  private readonly backstops = new Map<string, Backstop>()
  private sweeper: NodeJS.Timeout | null = null
  private stopped = false

  constructor(
    private readonly feed: PresenceFeed,
    graceMs: number,
    private readonly tell: Tell,
    /** A failure worth a log line (Redis not answering a claim is retried, and said once per outage). */
    private readonly warn: (why: string) => void,
  ) {
    this.grace = new Grace(graceMs, (key, present, since) => this.due(key, present, Date.now() - (performance.now() - since)))
  }

  /** Watch the feed; in a cluster, start from what it has told (read from Redis, tried again until it answers). */
  async start(): Promise<void> {
    this.claims = this.feed.claims()
    this.feed.watch((kind, name, present) => this.grace.edge(changeKey(kind, name), present))
    this.feed.forEachPresent((kind, name) => this.grace.edge(changeKey(kind, name), true))
    const claims = this.claims
    if (claims === null) return
    for (let warned = false; !this.stopped; ) {
      try {
        for (const key of await claims.told()) if (!this.stopped) this.grace.seedTold(key)
        return
      } catch (err) {
        if (!warned) this.warn(`reading what the cluster has told failed: ${(err as Error).message}; trying again`)
        warned = true
        await new Promise((resolve) => setTimeout(resolve, L.WEBHOOK_CLAIM_RETRY_MS).unref())
      }
    }
  }

  /** Tell nothing more (stop(): the streams about to close are not changes to tell). */
  stop(): void {
    this.stopped = true
    this.feed.watch(() => {})
    this.grace.stop()
    this.backstops.clear()
    if (this.sweeper !== null) clearInterval(this.sweeper)
  }

  /** A change that stood for the grace window. */
  private due(key: string, present: boolean, atMs: number): void {
    const claims = this.claims
    if (claims === null) return this.tell(key, makeChange(key, present, atMs))
    if (claims.owns(key)) this.claim(claims, key, present, atMs)
    else this.later(key, present, atMs, L.WEBHOOK_CLAIM_BACKSTOP_MS)
  }

  private claim(claims: Claims, key: string, present: boolean, atMs: number): void {
    claims.claim(key, present, atMs).then(
      (won) => {
        if (won && !this.stopped) this.tell(key, makeChange(key, present, atMs))
      },
      (err: Error) => {
        if (this.stopped) return
        if (this.backstops.size === 0) this.warn(`a presence change could not be claimed in Redis: ${err.message}; trying again`)
        this.later(key, present, atMs, L.WEBHOOK_CLAIM_RETRY_MS)
      },
    )
  }

  /** Claim it in `ms`, if it still stands then. */
  private later(key: string, present: boolean, atMs: number, ms: number): void {
    this.backstops.delete(key)
    this.backstops.set(key, { present, atMs, due: performance.now() + ms })
    this.sweeper ??= setInterval(this.sweep, L.WEBHOOK_SWEEP_MS).unref()
  }

  private readonly sweep = (): void => {
    const now = performance.now()
    for (const [key, b] of this.backstops) {
      if (b.due > now) continue
      this.backstops.delete(key)
      // Still what was last settled, with nothing newer under way: else a newer change is told in its place.
      if (this.claims !== null && this.grace.settledAs(key) === b.present && !this.grace.isPending(key)) this.claim(this.claims, key, b.present, b.atMs)
    }
    if (this.backstops.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper)
      this.sweeper = null
    }
  }
}
