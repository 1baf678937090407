// What a run shows while it runs: the progress line on a terminal (standard error, rewritten in
// place, never wider than the terminal) and, with --out FILE, one JSON line per second from which
// runs can be compared and plotted. The coordinator (bench.ts) calls tick() once a second.

import { closeSync, openSync, writeSync } from 'node:fs'
import { PROGRESS_LINE_COLUMNS } from './limits.js'
import { Histogram } from './stats.js'
import type { GroupSample } from './messages.js'

/** The run's counts at a tick, as the coordinator has them. */
export interface LiveState {
  phase: string
  streams: number
  connected: number
  connectErrors: number
  /** Streams open now (connected less those that ended). */
  open: number
  published: number
  publishErrors: number
  /** Distinct deliveries so far. */
  received: number
}

/** One line of the --out file. */
export interface SecondLine {
  /** Seconds since the run started. */
  t: number
  phase: string
  open: number
  published: number
  /** Deliveries in the last second (the latencies below are theirs). */
  deliveries: number
  /** Deliveries of events published over a second ago that have not arrived (yet, or ever). */
  lost: number
  p50Ms: number | null
  p99Ms: number | null
  maxMs: number | null
  /** Connect, stream and publish errors so far. */
  errors: number
}

export class Live {
  private readonly hist = new Histogram()
  private readonly fd: number | null
  private readonly startedAt = Date.now()
  private lastReceived = 0
  private lastAt = Date.now()
  private publishedAtLastTick = 0

  constructor(
    outPath: string | null,
    private readonly terminal: NodeJS.WriteStream | null,
  ) {
    this.fd = outPath === null ? null : openSync(outPath, 'w')
  }

  /** A group's latencies since the last tick. */
  add(sample: GroupSample): void {
    this.hist.addSparse(sample.hist, sample.histMax)
  }

  tick(s: LiveState): void {
    const now = Date.now()
    const perSecond = now > this.lastAt ? Math.round(((s.received - this.lastReceived) * 1000) / (now - this.lastAt)) : 0
    if (this.terminal !== null) this.terminal.write(`\r\x1b[K${progressLine(s, perSecond, this.terminal.columns || PROGRESS_LINE_COLUMNS)}`)
    if (this.fd !== null) writeSync(this.fd, JSON.stringify(this.secondLine(s, now)) + '\n')
    this.hist.reset()
    this.lastReceived = s.received
    this.lastAt = now
    this.publishedAtLastTick = s.published
  }

  /** Clears the progress line (a notice or the report comes next) and closes the file. */
  close(): void {
    this.terminal?.write('\r\x1b[K')
    if (this.fd !== null) closeSync(this.fd)
  }

  /** Clears the progress line so that a notice does not get glued to it. */
  get clear(): string {
    return this.terminal === null ? '' : '\r\x1b[K'
  }

  private secondLine(s: LiveState, now: number): SecondLine {
    const h = this.hist
    const ms = (us: number): number | null => (h.count === 0 ? null : Math.round(us) / 1000)
    return {
      t: (now - this.startedAt) / 1000,
      phase: s.phase,
      open: s.open,
      published: s.published,
      deliveries: h.count,
      lost: Math.max(0, this.publishedAtLastTick * s.open - s.received),
      p50Ms: ms(h.quantile(0.5)),
      p99Ms: ms(h.quantile(0.99)),
      maxMs: ms(h.max),
      errors: s.connectErrors + (s.connected - s.open) + s.publishErrors,
    }
  }
}

/** e.g. `rawsse bench: publishing 10000 streams, 12.3k events, 1.02M/s, 3 errors` (cut to `columns` − 1). */
export function progressLine(s: LiveState, perSecond: number, columns: number): string {
  const errors = s.connectErrors + (s.connected - s.open) + s.publishErrors
  const streams = s.phase === 'connecting' ? `${s.connected}/${s.streams}` : String(s.open)
  let line = `rawsse bench: ${s.phase} ${streams} streams`
  if (s.phase !== 'connecting') line += `, ${short(s.published)} events, ${short(perSecond)}/s`
  if (errors > 0) line += `, ${short(errors)} errors`
  return line.length < columns ? line : `${line.slice(0, Math.max(0, columns - 2))}…`
}

/** 999, 12.3k, 1.02M: three significant digits, for a line that must stay short. */
function short(n: number): string {
  if (n < 1000) return String(n)
  const [v, unit] = n < 1e6 ? [n / 1e3, 'k'] : n < 1e9 ? [n / 1e6, 'M'] : [n / 1e9, 'G']
  return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)}${unit}`
}
