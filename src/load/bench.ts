// `rawsse bench`: a load tool for any SSE server. It opens N streams (in this process, or spread
// over forked worker processes, worker.ts), optionally publishes numbered, timestamped events
// over one keep-alive connection, closed-loop with a window or at a fixed rate, and reports what
// arrived: counts, losses, duplicates, deliveries per second, latency percentiles, its own CPU.
// cli.ts hands over argv when its first word is `bench`; options.ts reads it. Exit: 0 with a
// report, 1 when no stream connected, publishing failed or a worker died, 2 on a bad command line.

import * as net from 'node:net'
import { forkedLink, localLink, processesFor, type GroupState } from './groups.js'
import { CHECK_MS, DRAIN_MAX_MS, DRAIN_QUIET_MS, PROGRESS_LINE_MS, RATE_TICK_MS, SAMPLE_WAIT_MS, STALL_MS, WINDOW_TIMEOUT_MS } from './limits.js'
import { benchOptions, HELP, type Options } from './options.js'
import { Publisher } from './publisher.js'
import { Live } from './live.js'
import { table, type BenchReport } from './report.js'
import { Histogram, monotonicUs } from './stats.js'
import type { FromGroup, GroupConfig, GroupFinal } from './messages.js'

/** Runs `rawsse bench ...` (argv without `bench`); resolves to the exit code. Throws UsageError for a bad command line. */
export async function runBench(argv: readonly string[]): Promise<number> {
  const opts = benchOptions(argv)
  if (opts === null) {
    process.stdout.write(HELP)
    return 0
  }
  return new Bench(opts).run()
}

// ---------------------------------------------------------------- the run

class Bench {
  private readonly opts: Options
  private readonly groups: GroupState[] = []
  private publisher: Publisher | null = null
  private publishing = false
  private startUs = 0
  private endUs = 0
  private readonly t0 = Date.now()
  private readonly cpu0 = process.cpuUsage()
  private tickTimer: NodeJS.Timeout | null = null
  private live: Live | null = null
  private phase = 'connecting'
  private wake: (() => void) | null = null
  /** The window's base as last seen, when it last moved, and how far timeouts have pushed it. */
  private lastBase = 0
  private baseMovedAt = Date.now()
  private forcedBase = 0
  private interrupted = false
  /** Why publishing stopped the run early (the target refused, or every publish failed). */
  private failure: string | null = null

  constructor(opts: Options) {
    this.opts = opts
  }

  private get allUpTo(): number {
    let min = Number.POSITIVE_INFINITY
    for (const g of this.groups) if (g.dead === null && g.progress.allUpTo >= 0 && g.progress.allUpTo < min) min = g.progress.allUpTo
    return min === Number.POSITIVE_INFINITY ? (this.publisher?.seq ?? 0) : min
  }

  private get received(): number {
    return this.groups.reduce((n, g) => n + (g.final?.received ?? g.progress.received), 0)
  }

  private get connected(): number {
    return this.groups.reduce((n, g) => n + (g.final?.connected ?? 0), 0)
  }

  private connectedCount = 0
  private connectErrorCount = 0

  async run(): Promise<number> {
    const o = this.opts
    const k = this.workerCount()
    const host = o.url.hostname
    const rotateSources = net.isIPv4(host) && host.startsWith('127.')
    let first = 0
    for (let i = 0; i < k; i++) {
      const count = Math.floor(o.streams / k) + (i < o.streams % k ? 1 : 0)
      const config: GroupConfig = {
        url: o.url.href,
        fields: o.fields,
        firstIndex: first,
        count,
        connectRate: o.connectRate / k,
        template: o.body,
        window: o.publish !== null && o.rate === null ? o.window : 0,
        rotateSources,
      }
      first += count
      const link = k === 1 ? localLink(config) : forkedLink(config)
      const progress = { allUpTo: 0, received: 0, streamErrors: 0, connected: 0, connectErrors: 0 }
      const g: GroupState = { link, count, connected: false, progress, final: null, dead: null }
      link.onMessage = (msg) => this.onMessage(g, msg)
      link.onDeath = (why) => {
        g.dead = why
        process.stderr.write(`rawsse bench: ${why}\n`)
        this.poke()
      }
      this.groups.push(g)
    }
    if (process.stderr.isTTY || o.out !== null) {
      this.live = new Live(o.out, process.stderr.isTTY ? process.stderr : null)
      this.tickTimer = setInterval(() => this.tick(), PROGRESS_LINE_MS)
    }

    // Ctrl-C ends the current phase early and still prints the report (workers ignore it).
    const onSigint = (): void => {
      this.interrupted = true
      this.poke()
    }
    process.on('SIGINT', onSigint)
    await this.until(() => this.interrupted || this.groups.every((g) => g.connected || g.dead !== null))
    const firstConnectError = this.firstConnectError
    // On a terminal, the notice first clears the progress line it would otherwise be glued to.
    if (firstConnectError !== null) process.stderr.write(`${this.live?.clear ?? ''}rawsse bench: ${this.connectErrorCount} streams failed to connect; first: ${firstConnectError}\n`)

    this.startUs = monotonicUs()
    const warmupEndUs = this.startUs + o.warmupS * 1e6
    for (const g of this.groups) g.link.send({ type: 'start', warmupEndUs })
    if (this.interrupted) {
      // Stopped while connecting: report what there is.
    } else if (o.publish === null || this.connectedCount === 0) {
      this.phase = 'holding'
      if (this.connectedCount > 0) await this.until(() => this.interrupted, o.durationS * 1000)
    } else {
      this.phase = 'publishing'
      await this.publish(o.publish)
      this.phase = 'draining'
      await this.drain()
    }
    this.endUs = this.endUs || monotonicUs()

    if (this.tickTimer !== null) {
      // The last second's line, before the groups close their streams.
      clearInterval(this.tickTimer)
      this.tick()
      if (!(await this.until(() => this.awaitingSamples === 0, SAMPLE_WAIT_MS))) this.writeLive()
    }
    for (const g of this.groups) g.link.send({ type: 'stop' })
    await this.until(() => this.groups.every((g) => g.final !== null || g.dead !== null))
    this.publisher?.close()
    process.off('SIGINT', onSigint)
    this.live?.close()
    if (this.failure !== null) process.stderr.write(`rawsse bench: publishing failed, run stopped: ${this.failure}\n`)
    else if (this.publisher?.firstError != null) process.stderr.write(`rawsse bench: ${this.publisher.errors} publish errors; first: ${this.publisher.firstError}\n`)
    const streamError = this.groups.find((g) => g.final?.firstError != null && g.final.streamErrors > 0)?.final?.firstError
    if (streamError !== undefined && streamError !== null) process.stderr.write(`rawsse bench: ${streamError}\n`)

    const report = this.report(warmupEndUs)
    process.stdout.write(o.json ? JSON.stringify(report) + '\n' : table(report))
    const nothingPublished = o.publish !== null && report.connected > 0 && report.published === 0 && !this.interrupted
    return report.connected === 0 || this.failure !== null || nothingPublished || this.groups.some((g) => g.dead !== null) ? 1 : 0
  }

  private firstConnectError: string | null = null

  private workerCount(): number {
    const o = this.opts
    return o.workers === 'auto' ? processesFor(o.streams) : o.workers
  }

  private onMessage(g: GroupState, msg: FromGroup): void {
    switch (msg.type) {
      case 'connected':
        g.connected = true
        this.connectedCount += msg.connected
        this.connectErrorCount += msg.connectErrors
        this.firstConnectError ??= msg.firstError
        break
      case 'progress':
        g.progress = msg
        break
      case 'final':
        g.final = msg.final
        break
      case 'sample':
        this.live?.add(msg)
        if (this.awaitingSamples > 0 && --this.awaitingSamples === 0) this.writeLive()
        break
    }
    this.poke()
  }

  /** Something changed: let a waiting phase look again. */
  private poke(): void {
    if (this.publishing) this.pump()
    const w = this.wake
    this.wake = null
    w?.()
  }

  /** Resolves when `done()` holds, checking after each message and every CHECK_MS. */
  private async until(done: () => boolean, ms = Number.POSITIVE_INFINITY): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!done()) {
      if (Date.now() >= deadline) return false
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(CHECK_MS, Math.max(0, deadline - Date.now())))
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
    return true
  }

  private async publish(target: URL): Promise<void> {
    const o = this.opts
    this.publisher = new Publisher(target, o.method, o.publishFields, o.body, () => this.poke())
    this.publishing = true
    const deadline = o.events === null || o.durationGiven ? Date.now() + o.durationS * 1000 : Number.POSITIVE_INFINITY
    const startMs = Date.now()
    let rateTimer: NodeJS.Timeout | null = null
    if (o.rate !== null) {
      const rate = o.rate
      rateTimer = setInterval(() => {
        const p = this.publisher!
        if (Date.now() < p.holdUntil) return
        let due = Math.floor(((Date.now() - startMs) / 1000) * rate) - p.seq
        if (o.events !== null) due = Math.min(due, o.events - p.seq)
        p.send(due)
      }, RATE_TICK_MS)
    } else {
      this.pump()
    }
    let moved = Date.now()
    let lastReceived = -1
    await this.until(() => {
      const p = this.publisher!
      this.pump() // also the window timeout's clock
      const received = this.received
      if (received !== lastReceived) {
        lastReceived = received
        moved = Date.now()
      }
      if (this.interrupted || Date.now() >= deadline) return true
      const giveUp = p.giveUp(Date.now())
      if (giveUp !== null) {
        this.failure = giveUp
        return true
      }
      if (o.events !== null && p.seq >= o.events) return true
      if (p.seq > 0 && Date.now() - moved > STALL_MS) {
        process.stderr.write(`rawsse bench: no delivery for ${STALL_MS / 1000} s; stopping\n`)
        return true
      }
      return false
    })
    this.publishing = false
    if (rateTimer !== null) clearInterval(rateTimer)
    this.endUs = monotonicUs()
  }

  /** Window mode: send while fewer than W events are short of a delivery somewhere, and fewer than W answers are awaited. */
  private pump(): void {
    const o = this.opts
    const p = this.publisher
    if (p === null || o.rate !== null || Date.now() < p.holdUntil) return
    const base = this.windowBase(p)
    while (p.failed.length > 0 && p.failed[0]! <= base) p.failed.shift()
    let n = 0
    for (;;) {
      const seq = p.seq + n
      if (o.events !== null && seq >= o.events) break
      if (seq - base - p.failed.length >= o.window || p.outstanding + n >= o.window) break
      n++
    }
    p.send(n)
  }

  /** The highest seq out of the window: delivered everywhere, or timed out (WINDOW_TIMEOUT_MS). */
  private windowBase(p: Publisher): number {
    const now = Date.now()
    const base = Math.max(this.allUpTo, this.forcedBase)
    if (base !== this.lastBase) {
      this.lastBase = base
      this.baseMovedAt = now
    } else if (p.seq > base && now - this.baseMovedAt >= WINDOW_TIMEOUT_MS) {
      this.forcedBase = base + 1
      this.lastBase = base + 1
      this.baseMovedAt = now
    }
    return this.lastBase
  }

  /** Wait for the answers and the deliveries still on their way; what has not come by then is lost. */
  private async drain(): Promise<void> {
    const p = this.publisher!
    const started = Date.now()
    let last = -1
    let quietSince = Date.now()
    await this.until(() => {
      const received = this.received
      if (received !== last || p.outstanding > 0) {
        last = received
        quietSince = Date.now()
      }
      const open = this.connectedCount - this.groups.reduce((n, g) => n + g.progress.streamErrors, 0)
      if (p.outstanding === 0 && received >= p.published * open) return true
      // Not cut short by Ctrl-C: events still on their way would be reported lost.
      return Date.now() - quietSince >= DRAIN_QUIET_MS || Date.now() - started >= DRAIN_MAX_MS
    })
  }

  /** Groups yet to answer this second's 'sample' (--out): the line is written when all have. */
  private awaitingSamples = 0

  /** Once a second: the progress line, and with --out the groups' latencies of the second, then its line. */
  private tick(): void {
    if (this.awaitingSamples > 0) this.writeLive() // a group did not answer within the second
    const alive = this.opts.out === null ? [] : this.groups.filter((g) => g.dead === null && g.final === null)
    this.awaitingSamples = alive.length
    for (const g of alive) g.link.send({ type: 'sample' })
    if (alive.length === 0) this.writeLive()
  }

  private writeLive(): void {
    this.awaitingSamples = 0
    const p = this.publisher
    const connected = this.groups.reduce((n, g) => n + g.progress.connected, 0)
    const ended = this.groups.reduce((n, g) => n + g.progress.streamErrors, 0)
    this.live!.tick({
      phase: this.phase,
      streams: this.opts.streams,
      connected,
      connectErrors: this.groups.reduce((n, g) => n + g.progress.connectErrors, 0),
      open: connected - ended,
      published: p?.published ?? 0,
      publishErrors: p?.errors ?? 0,
      received: this.received,
    })
  }

  private report(warmupEndUs: number): BenchReport {
    const o = this.opts
    const finals = this.groups.map((g) => g.final).filter((f): f is GroupFinal => f !== null)
    const sum = (f: (x: GroupFinal) => number): number => finals.reduce((n, x) => n + f(x), 0)
    const hist = new Histogram()
    const measured = new Histogram()
    for (const f of finals) {
      hist.add(f.hist, f.histCount, f.histMax)
      measured.add(f.histMeasured, f.histMeasuredCount, f.histMeasuredMax)
    }
    const connected = this.connected
    const published = this.publisher?.published ?? 0
    const expected = published * connected
    const received = sum((f) => f.received)
    const lastReceiveUs = finals.reduce((m, f) => Math.max(m, f.lastReceiveUs), 0)
    const receivedMeasured = sum((f) => f.receivedMeasured)
    // After the warmup when there was an after; else (a short --events run) the whole run.
    let rate = 0
    if (receivedMeasured > 0 && lastReceiveUs > warmupEndUs) rate = receivedMeasured / ((lastReceiveUs - warmupEndUs) / 1e6)
    else if (received > 0 && lastReceiveUs > this.startUs) rate = received / ((lastReceiveUs - this.startUs) / 1e6)
    const h = measured.count > 0 ? measured : hist
    const ms = (us: number): number | null => (h.count === 0 ? null : Math.round(us) / 1000)
    const cpu = process.cpuUsage(this.cpu0)
    const userUs = cpu.user + sum((f) => f.cpuUserUs)
    const systemUs = cpu.system + sum((f) => f.cpuSystemUs)
    const wallMs = Date.now() - this.t0
    return {
      streams: o.streams,
      connected,
      connectErrors: sum((f) => f.connectErrors) + this.groups.reduce((n, g) => n + (g.final === null ? g.count : 0), 0),
      streamErrors: sum((f) => f.streamErrors),
      published,
      publishErrors: this.publisher?.errors ?? 0,
      expectedDeliveries: expected,
      received,
      lost: Math.max(0, expected - received),
      duplicates: sum((f) => f.duplicates),
      deliveriesPerSecond: Math.round(rate),
      latencyMs: { p50: ms(h.quantile(0.5)), p90: ms(h.quantile(0.9)), p99: ms(h.quantile(0.99)), max: ms(h.max) },
      benchCpu: {
        userMs: Math.round(userUs / 1000),
        systemMs: Math.round(systemUs / 1000),
        percentOfOneCore: wallMs > 0 ? Math.round(((userUs + systemUs) / 1000 / wallMs) * 1000) / 10 : 0,
      },
      durationSeconds: Math.round((this.endUs - this.startUs) / 1000) / 1000,
      workers: this.groups.length,
    }
  }
}
