// Redis's clock as this node knows it, so that a publish can carry a deadline that Redis itself
// checks (the append script in event-stream.ts compares it with Redis's own TIME).
//
// Why a deadline in Redis's time. A budget ("at most 1.5 s from now") cannot work: a command
// waits in the socket before Redis runs it (Redis stopped, swapping, a full pipe), and the
// script cannot know for how long. A deadline in this node's wall clock cannot work either:
// the two machines' clocks differ, often by seconds, and either may be stepped.
//
// So the node asks Redis `TIME`, on the connection it appends on, with every presence snapshot
// (twice a second) and again after each reconnection (another server may answer), and keeps the
// offset between Redis's clock and its own monotonic one (performance.now()). Redis read its
// clock somewhere in the round trip; the node takes the low end, as if Redis had read it when
// the answer arrived. A deadline converted with it then falls, in real time, no later than the
// node meant, whatever the round trip was. Not covered: Redis's clock stepped back (by an
// administrator or NTP) between two samples, for up to one sample period.

import type { RedisLink } from './client.js'

export class RedisClock {
  /** Redis's ms minus ours, at the low end; null until a sample after the last (re)connection. */
  private offset: number | null = null
  /** Bumped by reset(): a sample asked before it says nothing about the connection after it. */
  private generation = 0

  /** Forget the offset (a new connection, perhaps to another server): publishing waits for a new sample. */
  reset(): void {
    this.offset = null
    this.generation++
  }

  /** Ask Redis its time; resolves once it answered (rejects as the command does). */
  async sample(link: RedisLink): Promise<void> {
    const asked = this.generation
    const [seconds, micros] = (await link.send(['TIME'])) as [string, string]
    const answered = performance.now()
    if (asked === this.generation) this.offset = Number(seconds) * 1000 + Number(micros) / 1000 - answered
  }

  /** A moment of ours (performance.now() scale) in Redis's ms (TIME's scale), or null before a sample. */
  toRedis(ms: number): number | null {
    return this.offset === null ? null : ms + this.offset
  }
}
