// How many streams each channel and each user has, and when one goes from none to some or back
// (its 0↔1 edges): the one count that this process's streams (streams.ts) and a cluster's
// presence (bus/presence.ts) keep, so that what a target reaches is known without a pass over
// every stream.

import type { Target } from './target.js'

/** A channel or a user went from no stream to one (`present`), or from one to none. */
export type EdgeListener = (kind: 'channel' | 'user', name: string, present: boolean) => void

/** What the counts read of a stream. */
export interface Counted {
  readonly user: string | null
  readonly channels: readonly string[]
}

export class Counts {
  private readonly channelCounts = new Map<string, number>()
  private readonly userCounts = new Map<string, number>()
  /** Told each 0↔1 edge, as it happens. */
  onEdge: EdgeListener | null = null

  add(s: Counted): void {
    for (const ch of s.channels) this.bump(this.channelCounts, 'channel', ch, 1)
    if (s.user !== null) this.bump(this.userCounts, 'user', s.user, 1)
  }

  remove(s: Counted): void {
    for (const ch of s.channels) this.bump(this.channelCounts, 'channel', ch, -1)
    if (s.user !== null) this.bump(this.userCounts, 'user', s.user, -1)
  }

  /**
   * A stream's channels changed from `before` to `after` (live channels): the ones it joins
   * counted before the ones it left are taken away, and the ones it kept are not touched, so a
   * channel it stays on never passes through 0.
   */
  rechannel(before: readonly string[], after: readonly string[]): void {
    for (const ch of after) if (!before.includes(ch)) this.bump(this.channelCounts, 'channel', ch, 1)
    for (const ch of before) if (!after.includes(ch)) this.bump(this.channelCounts, 'channel', ch, -1)
  }

  /** Streams on a channel. */
  channel(name: string): number {
    return this.channelCounts.get(name) ?? 0
  }

  hasUser(name: string): boolean {
    return this.userCounts.has(name)
  }

  /** Channel → streams, for /stats and the console. */
  channels(): Record<string, number> {
    return Object.fromEntries(this.channelCounts)
  }

  /** Each channel and user with a stream now: where a late watcher of the edges starts from. */
  forEachPresent(fn: (kind: 'channel' | 'user', name: string) => void): void {
    for (const ch of this.channelCounts.keys()) fn('channel', ch)
    for (const user of this.userCounts.keys()) fn('user', user)
  }

  /**
   * Streams a target reaches when the counts alone say it (every stream, a channel, or a user;
   * `total` is every stream's count); -1 when they cannot (a client, a role, a filter, or a channel
   * and a user together): the caller then looks at the streams.
   */
  reach(t: Target, total: number): number {
    if (t.client !== undefined || t.role !== undefined || t.filter !== undefined) return -1
    if (t.channel === undefined) return t.user === undefined ? total : (this.userCounts.get(t.user) ?? 0)
    return t.user === undefined ? (this.channelCounts.get(t.channel) ?? 0) : -1
  }

  private bump(counts: Map<string, number>, kind: 'channel' | 'user', key: string, by: 1 | -1): void {
    const n = (counts.get(key) ?? 0) + by
    if (n <= 0) {
      if (!counts.delete(key)) return
    } else {
      counts.set(key, n)
      if (n !== 1 || by !== 1) return
    }
    this.onEdge?.(kind, key, n > 0)
  }
}
