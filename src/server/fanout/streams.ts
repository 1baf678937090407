// The open streams: one plain array, channel and user counts, the fan-out, and dropping slow or
// closed streams. This is the U++ example's `WriteChunk`: encode once, write the same Buffer to
// every recipient, prune the dead. Never parses.

import type { Backlog } from './backlog.js'
import { Counts, type EdgeListener } from './counts.js'
import { closeSocket, writeQueueSize } from '../http/close.js'
import { FanOutJob, SET_MAX } from './job.js'
import { DROP_SLICE, FANOUT_SLICE_WRITES, MAX_BACKLOG_BYTES } from '../limits.js'
import type { DropReason, Metrics } from '../metrics.js'
import { HEARTBEAT, type Frame } from './sse-encode.js'
import type { Stream } from './stream.js'
import { matches, type Target } from './target.js'

export type { Target } from './target.js'

export type RemoveListener = (client: Stream, reason: DropReason | 'closed') => void

export class Streams {
  /** Every open stream, in no particular order: removal swaps the last one into the hole. */
  readonly list: Stream[] = []
  private readonly byId = new Map<number, Stream>()
  private readonly counts = new Counts()
  // Events queued for the next flush(), in publish order.
  private pendingFrames: Frame[] = []
  private pendingTargets: Target[] = []
  /** Fan-outs not finished, in order; the first is being written a slice per turn. */
  private readonly jobs: FanOutJob[] = []
  /** Writes this turn may still make (FANOUT_SLICE_WRITES a turn). */
  private writesLeft = FANOUT_SLICE_WRITES
  private sliceQueued = false
  /** When dropStalled last ran (0: never). */
  private lastSweepAt = 0

  constructor(
    private readonly metrics: Metrics,
    private readonly maxBufferBytes: number,
    /** Unsent bytes of all streams together: past it, the streams with the most are dropped. */
    private readonly maxUnsentBytes: number,
    private readonly backlog: Backlog,
    private readonly onRemove: RemoveListener,
  ) {}

  get size(): number {
    return this.list.length
  }

  get(id: number): Stream | undefined {
    return this.byId.get(id)
  }

  add(c: Stream): void {
    // A new stream has had its replay (which already holds every queued event, from history),
    // or joins live from now on: either way, the fan-outs queued or under way belong to the
    // streams before it, and joined() says it has had them.
    c.joined()
    c.index = this.list.length
    this.list.push(c)
    this.byId.set(c.id, c)
    this.counts.add(c)
  }

  /** Take a stream out of the array; idempotent, so a drop and the socket's 'close' can both call it. */
  remove(c: Stream, reason: DropReason | 'closed'): void {
    if (c.index === -1) return
    let hole = c.index
    const job = this.jobs[0]
    if (job !== undefined && hole < job.cursor) {
      // A fan-out is under way and has passed this stream: the last stream it visited takes the
      // hole, so the last of the list, which it may not have visited, moves to where it goes next.
      const k = --job.cursor
      if (k !== hole) {
        const visited = this.list[k]!
        this.list[hole] = visited
        visited.index = hole
        this.list[k] = c
        hole = k
      }
    }
    const last = this.list.pop()!
    if (last !== c) {
      this.list[hole] = last
      last.index = hole
    }
    c.index = -1
    c.release()
    this.byId.delete(c.id)
    this.counts.remove(c)
    this.onRemove(c, reason)
  }

  /**
   * Stream `c` receives `channels` from here on (live channels): what it is owed so far is
   * settled under its old ones (Stream.rechannel), and the counts follow. Events queued this turn
   * go out first as a fan-out of their own, so that the next event queued opens a new set, one
   * this stream has not had.
   */
  rechannel(c: Stream, channels: readonly string[]): void {
    if (this.pendingFrames.length > 0) this.flush()
    if (c.index === -1) return // dropped by that flush (over its limit)
    const before = c.channels
    c.rechannel(channels)
    this.counts.rechannel(before, channels)
  }

  /** Bytes that come next on stream `c`, after what it has been owed so far (Stream.push). */
  push(c: Stream, bufs: readonly Buffer[]): void {
    for (const b of bufs) this.metrics.bytesOut += b.length
    c.push(bufs)
  }

  /** Open streams on a channel. */
  connections(channel: string): number {
    return this.counts.channel(channel)
  }

  /** Channel → open streams, for /stats and the console. */
  channels(): Record<string, number> {
    return this.counts.channels()
  }

  userOnline(user: string): boolean {
    return this.counts.hasUser(user)
  }

  /** Be told each 0↔1 edge of a channel or a user of these streams (one process: its presence is the cluster's). */
  watch(fn: EdgeListener): void {
    this.counts.onEdge = fn
  }

  /** Each channel and user with a stream here now. */
  forEachPresent(fn: (kind: 'channel' | 'user', name: string) => void): void {
    this.counts.forEachPresent(fn)
  }

  /**
   * Queue an event for the next flush() and return how many streams it is for. Events published
   * in one event-loop turn (pipelined publishes, a burst from the library, events that arrive
   * while a fan-out runs) then reach each stream in ONE write: on these machines a write costs
   * 8-10 µs of kernel time whatever its size, so fewer writes is the only way past that ceiling.
   * The caller schedules flush() once per turn (setImmediate), which adds no wait under light load.
   */
  queue(frame: Frame, target: Target): number {
    if (this.pendingFrames.length % SET_MAX === 0) this.backlog.openSet()
    this.backlog.append(frame, target)
    this.pendingFrames.push(frame)
    this.pendingTargets.push(target)
    return this.countMatches(target)
  }

  get hasQueued(): boolean {
    return this.pendingFrames.length > 0
  }

  /**
   * Write every queued event: one write per stream, one shared Buffer per set of (up to SET_MAX) events, at most
   * FANOUT_SLICE_WRITES writes in this turn; the rest in the next turns, in order.
   */
  flush(): void {
    const frames = this.pendingFrames
    if (frames.length > 0) {
      const targets = this.pendingTargets
      this.pendingFrames = []
      this.pendingTargets = []
      const sets = Math.ceil(frames.length / SET_MAX)
      const firstGen = this.backlog.gen - sets + 1
      if (sets === 1) this.jobs.push(new FanOutJob(firstGen, frames, targets))
      else for (let i = 0; i < sets; i++) this.jobs.push(new FanOutJob(firstGen + i, frames.slice(i * SET_MAX, (i + 1) * SET_MAX), targets.slice(i * SET_MAX, (i + 1) * SET_MAX)))
    }
    this.runJobs()
  }

  /** Write the fan-outs in order until this turn's share of writes is spent; the rest in a later turn. */
  private runJobs(): void {
    const out = { bytes: 0, slow: null as Stream[] | null }
    while (this.jobs.length > 0 && this.writesLeft > 0) {
      const job = this.jobs[0]!
      this.writesLeft -= job.run(this.list, this.writesLeft, this.maxBufferBytes, out)
      if (!job.done) break
      this.jobs.shift()
      this.backlog.setDone(job.gen)
    }
    this.metrics.bytesOut += out.bytes
    // Nothing left over: the next flush starts afresh. Else the rest goes after what waits now.
    if (this.jobs.length === 0) this.writesLeft = FANOUT_SLICE_WRITES
    else if (!this.sliceQueued) {
      this.sliceQueued = true
      setImmediate(this.nextSlice)
    }
    if (out.slow !== null) this.dropInSlices(out.slow, 'buffer')
  }

  private readonly nextSlice = (): void => {
    this.sliceQueued = false
    this.writesLeft = FANOUT_SLICE_WRITES
    this.runJobs()
  }

  /** How many streams a target matches now, without a pass over all streams when counts say it. */
  countMatches(target: Target): number {
    if (target.client !== undefined) {
      const c = this.byId.get(target.client)
      return c !== undefined && matches(c, target) ? 1 : 0
    }
    let n = this.counts.reach(target, this.list.length)
    if (n >= 0) return n
    n = 0
    for (let i = 0; i < this.list.length; i++) if (matches(this.list[i]!, target)) n++
    return n
  }

  /**
   * Write one frame to every matching stream now (an event to one client, or with a filter: user
   * code, asked once per stream); returns how many it reached. The same Buffer goes to everyone.
   * A stream a fan-out has not reached yet takes that first, from the backlog, so order holds. A
   * stream over its unsent-bytes limit is dropped after the loop (like Redis's freeClientAsync:
   * never free a client while the loop that queues to it is running).
   */
  fanOut(frame: Frame, target: Target): number {
    if (target.client !== undefined) {
      const c = this.byId.get(target.client)
      return c !== undefined && matches(c, target) ? this.writeEach([c], frame, target) : 0
    }
    return this.writeEach(this.list, frame, target)
  }

  private writeEach(list: readonly Stream[], frame: Frame, target: Target): number {
    const seq = this.backlog.append(frame, target)
    let reached = 0
    let bytes = 0
    let slow: Stream[] | null = null
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!
      if (c.doomed || !matches(c, target) || c.socket.destroyed) continue
      const behind = c.behind
      if (behind) c.catchUp()
      // A filter is user code: a blocked stream it matched is remembered, not asked again.
      if (target.filter !== undefined && c.blocked) this.backlog.member(seq, c)
      const buf = frame.bytesFor(c.framing)
      c.send(buf, 1)
      if (behind) c.drained()
      bytes += buf.length
      if (c.unsent > this.maxBufferBytes) (slow ??= []).push(c)
      else reached++
    }
    this.metrics.bytesOut += bytes
    if (slow !== null) this.dropInSlices(slow, 'buffer')
    return reached
  }

  /**
   * The keep-alive comment, to streams with nothing unsent only: one that is still sending has
   * bytes on the way already, and a stalled one would only queue more.
   */
  heartbeat(): void {
    let bytes = 0
    for (let i = 0; i < this.list.length; i++) {
      const c = this.list[i]!
      if (c.blocked || c.doomed || c.socket.destroyed) continue
      const buf = HEARTBEAT.bytesFor(c.framing)
      c.send(buf, 0)
      bytes += buf.length
    }
    this.metrics.bytesOut += bytes
  }

  /**
   * Close a stream on our side. A slow or stalled one is destroyed at once: its queued bytes
   * will never be read, and freeing them is the point. Otherwise it gets what is queued for it,
   * then `before` (e.g. a last `retry:`), `0\r\n\r\n` and a FIN.
   */
  drop(c: Stream, reason: DropReason, before?: Frame): void {
    if (c.index === -1) return
    // Events published before an admin close or shutdown still reach the stream, before its end.
    if (reason === 'admin' || reason === 'shutdown') this.flush()
    this.metrics.drops[reason]++
    // A revoked stream gets the end of its stream, like an admin close: it is told, not cut.
    // (Ended before it is removed: what it is owed is in the backlog until then.)
    if (reason === 'buffer' || reason === 'stall') closeSocket(c.socket, this.metrics)
    else c.end(before)
    this.remove(c, reason)
  }

  /**
   * The shared stall check (one sweep for all streams, never a timer each): a stream with unsent
   * bytes of which the kernel has taken none for `stallMs` is reading nothing, and a heartbeat
   * alone would never notice, because writes to a half-open socket succeed until buffers fill.
   * Reads two counters per stream: never a walk of a write queue. `everyMs`: the sweep's interval.
   */
  dropStalled(now: number, stallMs: number, everyMs: number): void {
    let stalled: Stream[] | null = null
    let unsent = 0
    // A sweep twice late found this process's event loop stopped (a long task, a starved CPU), and
    // libuv writing nothing meanwhile, not a peer reading nothing: it samples, and blames no one.
    const late = this.lastSweepAt !== 0 && now - this.lastSweepAt >= 2 * everyMs
    this.lastSweepAt = now
    for (let i = 0; i < this.list.length; i++) {
      const c = this.list[i]!
      if (!c.blocked || c.doomed) continue
      unsent += c.unsent
      // A big write in progress completes only when its last byte is taken; libuv's count of its
      // unsent bytes shows the kernel taking bytes in between.
      const queued = writeQueueSize(c.socket)
      if (queued !== c.queueSeen) {
        c.queueSeen = queued
        c.progressAt = now
      } else if (!late && now - c.progressAt >= stallMs) {
        ;(stalled ??= []).push(c)
      }
    }
    if (stalled !== null) this.dropInSlices(stalled, 'stall')
    if (unsent > this.maxUnsentBytes) this.dropLargest(unsent)
    this.trimBacklog()
  }

  /**
   * The budget of all streams together: each may hold `maxBufferBytes` unsent, but 20 000 of them
   * doing it at once would be 20 GiB. Streams whose peers read nothing while their kernel buffers
   * keep growing stay under their own limit and never stall; past the total, the ones holding the
   * most are dropped (`buffer`) until the total is back under three quarters of it.
   */
  private dropLargest(unsent: number): void {
    const blocked = this.list.filter((c) => c.blocked && !c.doomed).sort((a, b) => b.unsent - a.unsent)
    const goal = (this.maxUnsentBytes * 3) / 4
    const victims: Stream[] = []
    for (const c of blocked) {
      if (unsent <= goal) break
      unsent -= c.unsent
      victims.push(c)
    }
    this.dropInSlices(victims, 'buffer')
  }

  /**
   * Drop many streams a slice per event-loop turn: closing a socket, and telling the listeners
   * (a log line each), costs tens of microseconds, and 10 000 streams that cross --max-buffer in
   * the same fan-out would otherwise hold every other stream's events for a fraction of a second.
   * The ones waiting for their slice are passed by (`doomed`): they get nothing more.
   */
  private dropInSlices(list: Stream[], reason: DropReason): void {
    if (list.length <= DROP_SLICE) {
      for (const c of list) this.drop(c, reason)
      return
    }
    for (const c of list) c.doomed = true
    const next = (): void => {
      for (const c of list.splice(0, DROP_SLICE)) this.drop(c, reason)
      if (list.length > 0) setImmediate(next)
    }
    next()
  }

  /**
   * Forget what no blocked stream is owed any more; past MAX_BACKLOG_BYTES, the streams blocked
   * longest are dropped as slow (`buffer`): they would need more than the server keeps.
   */
  private trimBacklog(): void {
    if (this.backlog.blocked > 0 && this.backlog.bytes > MAX_BACKLOG_BYTES) {
      const keepFrom = this.backlog.keepingAtMost(MAX_BACKLOG_BYTES)
      const behind = this.list.filter((c) => c.blocked && c.owedFrom < keepFrom)
      for (const c of behind) this.drop(c, 'buffer')
    }
    let from = this.backlog.end
    if (this.backlog.blocked > 0) for (let i = 0; i < this.list.length; i++) if (this.list[i]!.blocked && this.list[i]!.owedFrom < from) from = this.list[i]!.owedFrom
    this.backlog.forget(from)
  }

  /** Unsent bytes of every blocked stream together: the server's byte budget counts answers beside them (unsent.ts). */
  unsentBytes(): number {
    let n = 0
    for (let i = 0; i < this.list.length; i++) if (this.list[i]!.blocked && !this.list[i]!.doomed) n += this.list[i]!.unsent
    return n
  }
}
