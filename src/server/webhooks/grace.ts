// The grace window of presence changes (CONTRACT `--webhook-grace`): a user's or a channel's 0↔1
// edge becomes a change to tell only once it has stood for the whole window; an edge undone
// within it (a reconnection) tells nothing. Kept as two sets of keys, never a timer per key:
// what was last told (`settled`), and what differs from it now, with since when (`pending`).
//
// Budget: 10 000 streams that drop and reconnect within the window cost 10 000 Map entries for
// a few seconds and no change at all; memory is bounded by the keys present plus those changed
// within the window (each key once, however often it flaps). No sockets.

/** A change of key `key` (presence-changes.ts's `u:NAME` / `c:NAME`) that stood for the whole window. */
export type DueListener = (key: string, present: boolean, sinceMs: number) => void

export class Grace {
  /** Keys told (or, in a cluster, known told) present. */
  private readonly settled = new Set<string>()
  /** Keys whose state differs from `settled`, by since when (performance.now()): oldest first, since each is set once and deleted when undone. */
  private readonly pending = new Map<string, number>()
  private timer: NodeJS.Timeout | null = null

  constructor(
    private readonly graceMs: number,
    /** A change that stood for the window: `present` is its new state; `sinceMs` when it happened (performance.now()). */
    private readonly due: DueListener,
  ) {}

  /** Key `key` is now present (or not). Idempotent: an edge told twice (a seed, then the live edge) counts once. */
  edge(key: string, present: boolean, now = performance.now()): void {
    if (present === this.settled.has(key)) {
      this.pending.delete(key) // back to what was told within the window: nothing to tell
      return
    }
    if (this.pending.has(key)) return
    this.pending.set(key, now)
    this.arm(now)
  }

  /**
   * Key `key` was told present by someone (a cluster's record, read at start): from now on it is
   * settled present, and if it is not present now its going is a change to tell.
   */
  seedTold(key: string, now = performance.now()): void {
    if (this.settled.has(key)) return
    const presentNow = this.pending.has(key) // not settled, so pending means present
    this.settled.add(key)
    this.pending.delete(key)
    if (!presentNow) {
      this.pending.set(key, now)
      this.arm(now)
    }
  }

  /** What was last told of `key` (settled), and whether it has changed since (pending). */
  settledAs(key: string): boolean {
    return this.settled.has(key)
  }

  isPending(key: string): boolean {
    return this.pending.has(key)
  }

  /** Forget everything: nothing more is told. */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.pending.clear()
    this.settled.clear()
  }

  /** The one timer, for the oldest pending key. */
  private arm(now: number): void {
    if (this.timer !== null) return
    const first = this.pending.values().next()
    if (first.done === true) return
    this.timer = setTimeout(this.sweep, Math.max(0, first.value + this.graceMs - now))
    this.timer.unref()
  }

  private readonly sweep = (): void => {
    this.timer = null
    const now = performance.now()
    for (const [key, since] of this.pending) {
      if (since + this.graceMs > now) break
      this.pending.delete(key)
      const present = !this.settled.has(key)
      if (present) this.settled.add(key)
      else this.settled.delete(key)
      this.due(key, present, since)
    }
    this.arm(now)
  }
}
