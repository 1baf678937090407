// `rawsse bench`: a load tool for any SSE server. It opens N streams (in this process, or spread
// over forked worker processes, load-worker.ts), optionally publishes numbered, timestamped events
// over one keep-alive connection, closed-loop with a window or at a fixed rate, and reports what
// arrived: counts, losses, duplicates, deliveries per second, latency percentiles, its own CPU.
// cli.ts hands over argv when its first word is `bench`. Exit: 0 with a report, 1 when no stream
// connected or a worker died, 2 on a bad command line.

import { fork, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import { BodyDecoder, bodyFraming, headerProblem, parseResponseHead, ResponseError } from './http-response.js'
import { BodyTemplate, digitCount, Histogram, monotonicUs, writeDigits } from './load-stats.js'
import { StreamGroup, WORKER_ENV, type FromGroup, type GroupConfig, type GroupFinal, type ToGroup } from './load-worker.js'
import { httpUrl } from './sse-client.js'

const DEFAULT_STREAMS = 100
const DEFAULT_CONNECT_RATE = 2000 // per second
const DEFAULT_DURATION_S = 10
const DEFAULT_WARMUP_S = 1
const DEFAULT_METHOD = 'POST'
const DEFAULT_BODY = '{seq} {ts}'
const DEFAULT_WINDOW = 1
/** File descriptors kept free in each process besides its streams (stdio, IPC, publisher, DNS, …). */
const FD_MARGIN = 500
/** When the open-file limit cannot be read (not Linux): the common default. */
const FALLBACK_FD_LIMIT = 1024
/** After publishing stops, wait this long without a new delivery before counting what is missing as lost. */
const DRAIN_QUIET_MS = 500
/** ... and never longer than this in all. */
const DRAIN_MAX_MS = 5_000
/**
 * Closed loop: an event not yet received by every stream after this long leaves the window
 * anyway. A server that drops one event for one stream would otherwise stop the run (with W = 1
 * the next event is never sent); the drop still counts as lost at the end.
 */
const WINDOW_TIMEOUT_MS = 1_000
/** While publishing, no new delivery for this long ends the run (the server stopped delivering). */
const STALL_MS = 10_000
/** Rate mode: events due are sent this often, all due ones in one write. */
const RATE_TICK_MS = 2
/** How often the end of the run is checked. */
const CHECK_MS = 10
/** The progress line's period. */
const PROGRESS_LINE_MS = 1000
/** A publish connection that closed is dialed again after this long. */
const REDIAL_MS = 100
/** Request bytes are written into slabs of this size (one write per burst, no Buffer per request). */
const SLAB_BYTES = 64 * 1024
/** How much of a failed publish answer is shown. */
const MAX_ERROR_TEXT = 200
const CRLF2 = Buffer.from('\r\n\r\n')

const HELP = `Usage: rawsse bench URL [flags]

Open N SSE streams to URL (any server), optionally publish numbered, timestamped events, and
report what arrived. URL is the stream, e.g. http://127.0.0.1:6500/events/TOKEN

  --streams N              streams to open (default: ${DEFAULT_STREAMS})
  --header 'K: V'          extra request header of every stream (repeatable)
  --connect-rate R         new connections per second (default: ${DEFAULT_CONNECT_RATE})
  --workers K              processes holding the streams (default: auto, one per
                           open-file limit − ${FD_MARGIN} streams)
  --duration S             seconds to publish, or to hold without --publish (default: ${DEFAULT_DURATION_S})
  --warmup S               first seconds not counted in deliveries/s and latency (default: ${DEFAULT_WARMUP_S})
  --publish URL            publish events to this URL (e.g. http://127.0.0.1:6500/publish)
  --publish-method M       (default: ${DEFAULT_METHOD})
  --publish-header 'K: V'  header of every publish request (repeatable)
  --body TEMPLATE          request body; {seq} is the event's number (1, 2, …), {ts} a
                           CLOCK_MONOTONIC timestamp in µs (default: '${DEFAULT_BODY}')
  --window W               closed loop: at most W events not yet received by every stream
                           (default: ${DEFAULT_WINDOW}); one still missing after ${WINDOW_TIMEOUT_MS / 1000} s leaves the window
  --rate R                 open loop: R events per second instead of a window
  --events N               stop after N events instead of --duration
  --json                   the report as one JSON object on standard output
  --help                   print this help and exit

Subscribers count events of type message whose data holds the body (the server may wrap it).
Streams to a 127.x address are bound to source addresses 127.0.0.1, 127.0.0.2, … (20 000 each).
Without --publish, streams are opened and held for --duration, then connected and errors reported.
A progress line goes to standard error when it is a terminal.
Exit: 0 with a report, 1 when no stream connected or a worker died, 2 bad usage.
`

/** A bad command line: one line on standard error, exit code 2. */
class UsageError extends Error {}

/** What `rawsse bench --json` prints: one object, these fields. */
export interface BenchReport {
  streams: number
  connected: number
  connectErrors: number
  /** Streams that ended or failed after they had connected (their missing events count as lost). */
  streamErrors: number
  published: number
  publishErrors: number
  /** published × connected. */
  expectedDeliveries: number
  /** Distinct deliveries: each stream counts an event once. */
  received: number
  lost: number
  duplicates: number
  /** Deliveries per second after the warmup (over the whole run when it ended within the warmup). */
  deliveriesPerSecond: number
  /** Milliseconds from {ts} to the read that held the event; null without deliveries. */
  latencyMs: { p50: number | null; p90: number | null; p99: number | null; max: number | null }
  /** All processes of the bench summed; percentOfOneCore may pass 100 with workers. */
  benchCpu: { userMs: number; systemMs: number; percentOfOneCore: number }
  /** Seconds of publishing (or holding, without --publish). */
  durationSeconds: number
  workers: number
}

interface Options {
  url: URL
  streams: number
  fields: Array<[string, string]>
  connectRate: number
  workers: number | 'auto'
  durationS: number
  durationGiven: boolean
  warmupS: number
  publish: URL | null
  method: string
  publishFields: Array<[string, string]>
  body: string
  window: number
  rate: number | null
  events: number | null
  json: boolean
}

// ---------------------------------------------------------------- command line

const VALUED = ['streams', 'header', 'connect-rate', 'workers', 'duration', 'warmup', 'publish', 'publish-method', 'publish-header', 'body', 'window', 'rate', 'events']
const REPEATABLE = ['header', 'publish-header']
const SWITCHES = ['json', 'help']

interface Args {
  positional: string[]
  values: Map<string, string[]>
  switches: Set<string>
}

/** `--name value`, `--name=value`, switches, positionals. Repeated: the last wins, except headers. */
function parseArgs(argv: readonly string[]): Args {
  const out: Args = { positional: [], values: new Map(), switches: new Set() }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith('--')) {
      out.positional.push(arg)
      continue
    }
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq === -1 ? undefined : eq)
    if (SWITCHES.includes(name)) {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`)
      out.switches.add(name)
    } else if (VALUED.includes(name)) {
      let value: string
      if (eq !== -1) value = arg.slice(eq + 1)
      else {
        if (i + 1 >= argv.length || argv[i + 1]!.startsWith('--')) throw new UsageError(`--${name} needs a value`)
        value = argv[++i]!
      }
      const list = REPEATABLE.includes(name) ? (out.values.get(name) ?? []) : []
      list.push(value)
      out.values.set(name, list)
    } else {
      throw new UsageError(`unknown flag: --${name} (see --help)`)
    }
  }
  return out
}

function one(a: Args, name: string): string | undefined {
  return a.values.get(name)?.[0]
}

function wholeNumber(a: Args, name: string, def: number, min = 1): number {
  const v = one(a, name)
  if (v === undefined) return def
  if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) throw new UsageError(`--${name} must be a whole number ≥ ${min}, not '${v}'`)
  return Number(v)
}

function positiveNumber(a: Args, name: string, def: number, allowZero: boolean): number {
  const v = one(a, name)
  if (v === undefined) return def
  const n = Number(v)
  if (v.trim() === '' || !Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) throw new UsageError(`--${name} must be a number ${allowZero ? '≥' : '>'} 0, not '${v}'`)
  return n
}

function headerList(a: Args, name: string): Array<[string, string]> {
  return (a.values.get(name) ?? []).map((h) => {
    const colon = h.indexOf(':')
    if (colon <= 0) throw new UsageError(`--${name} must be 'Name: value', not '${h}'`)
    const field: [string, string] = [h.slice(0, colon).trim(), h.slice(colon + 1).trim()]
    const problem = headerProblem(field[0], field[1])
    if (problem !== null) throw new UsageError(`--${name}: ${problem}`)
    return field
  })
}

function url(arg: string, what: string): URL {
  try {
    return httpUrl(arg)
  } catch (err) {
    throw new UsageError(`${what} ${arg}: ${err instanceof TypeError && err.message.startsWith('unsupported') ? err.message : 'not a valid URL'}`)
  }
}

/** Our defaults, then the user's fields; a user's field replaces a default of the same name. */
function withDefaults(defaults: Array<[string, string]>, own: Array<[string, string]>): Array<[string, string]> {
  const replaced = new Set(own.map(([n]) => n.toLowerCase()))
  return [...defaults.filter(([n]) => !replaced.has(n.toLowerCase())), ...own]
}

function options(a: Args): Options {
  if (a.positional.length === 0) throw new UsageError('missing URL (the stream, e.g. http://127.0.0.1:6500/events/TOKEN)')
  if (a.positional.length > 1) throw new UsageError(`unexpected argument: ${a.positional[1]}`)
  const publishArg = one(a, 'publish')
  if (publishArg === undefined) {
    for (const name of ['publish-method', 'publish-header', 'body', 'window', 'rate', 'events']) {
      if (a.values.has(name)) throw new UsageError(`--${name} needs --publish`)
    }
  }
  if (a.values.has('window') && a.values.has('rate')) throw new UsageError('--window and --rate exclude each other')
  const workersArg = one(a, 'workers')
  const streams = wholeNumber(a, 'streams', DEFAULT_STREAMS)
  let workers: number | 'auto' = 'auto'
  if (workersArg !== undefined && workersArg !== 'auto') {
    workers = wholeNumber(a, 'workers', 1)
    if (workers > streams) throw new UsageError(`--workers ${workers} is more than --streams ${streams}`)
  }
  const body = one(a, 'body') ?? DEFAULT_BODY
  const problem = new BodyTemplate(body).problem()
  if (problem !== null) throw new UsageError(`--body ${problem}`)
  const method = one(a, 'publish-method') ?? DEFAULT_METHOD
  if (!/^[A-Z]+$/i.test(method)) throw new UsageError(`--publish-method must be a method name, not '${method}'`)
  const publish = publishArg === undefined ? null : url(publishArg, '--publish')
  return {
    url: url(a.positional[0]!, 'URL'),
    streams,
    fields: withDefaults([['Accept', 'text/event-stream'], ['Cache-Control', 'no-cache']], headerList(a, 'header')),
    connectRate: positiveNumber(a, 'connect-rate', DEFAULT_CONNECT_RATE, false),
    workers,
    durationS: positiveNumber(a, 'duration', DEFAULT_DURATION_S, true),
    durationGiven: a.values.has('duration'),
    warmupS: positiveNumber(a, 'warmup', DEFAULT_WARMUP_S, true),
    publish,
    method: method.toUpperCase(),
    publishFields: headerList(a, 'publish-header'),
    body,
    window: wholeNumber(a, 'window', DEFAULT_WINDOW),
    rate: a.values.has('rate') ? positiveNumber(a, 'rate', 0, false) : null,
    events: a.values.has('events') ? wholeNumber(a, 'events', 0) : null,
    json: a.switches.has('json'),
  }
}

/** This process's soft limit on open files (Linux: /proc/self/limits). */
function openFileLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    if (m !== null) return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1])
  } catch {
    // not Linux
  }
  return FALLBACK_FD_LIMIT
}

/** Runs `rawsse bench ...` (argv[0] is `bench`); resolves to the exit code. */
export async function runBench(argv: readonly string[]): Promise<number> {
  let opts: Options
  try {
    const args = parseArgs(argv.slice(1))
    if (args.switches.has('help')) {
      process.stdout.write(HELP)
      return 0
    }
    opts = options(args)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`rawsse bench: ${err.message}\n`)
      return 2
    }
    throw err
  }
  return new Bench(opts).run()
}

// ---------------------------------------------------------------- groups

/** A group of streams, in this process or in a forked worker; the coordinator sees only messages. */
interface Link {
  send(msg: ToGroup): void
  /** Set by the coordinator. */
  onMessage: (msg: FromGroup) => void
  /** The worker is gone without a final report. */
  onDeath: (why: string) => void
}

function localLink(config: GroupConfig): Link {
  const link: Link = { send: (msg) => group.handle(msg), onMessage: () => {}, onDeath: () => {} }
  // Deferred a turn: the coordinator sets onMessage before the first report arrives.
  const group = new StreamGroup(config, (msg) => link.onMessage(msg))
  setImmediate(() => group.connect())
  return link
}

function forkedLink(config: GroupConfig): Link {
  const child: ChildProcess = fork(fileURLToPath(new URL('./load-worker.js', import.meta.url)), [], {
    // Workers never write to stdout: the report (and --json) must be alone there.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { ...process.env, [WORKER_ENV]: '1' },
  })
  let finished = false
  const link: Link = {
    send: (msg) => {
      if (child.connected) child.send(msg)
    },
    onMessage: () => {},
    onDeath: () => {},
  }
  child.on('message', (msg: FromGroup) => {
    if (msg.type === 'final') finished = true
    link.onMessage(msg)
  })
  child.on('error', (err) => {
    if (!finished) link.onDeath(`a worker failed: ${err.message}`)
    finished = true
  })
  child.on('exit', (code, signal) => {
    if (!finished) link.onDeath(`a worker exited (${signal ?? `code ${code}`}) before its report`)
  })
  child.send({ type: 'init', config } satisfies ToGroup)
  return link
}

interface GroupState {
  link: Link
  count: number
  connected: boolean
  allUpTo: number
  received: number
  streamErrors: number
  /** So far, for the progress line (the totals come with 'connected'). */
  connectedSoFar: number
  connectErrorsSoFar: number
  final: GroupFinal | null
  dead: string | null
}

// ---------------------------------------------------------------- publisher

/**
 * One keep-alive connection that publishes events, pipelined: the request head is prebuilt and
 * each request is written into a slab with its Content-Length, seq and ts; answers are read in
 * order with the response parser.
 */
class Publisher {
  /** Seqs sent whose answer has not come, oldest first. */
  private readonly waiting: number[] = []
  private waitingHead = 0
  private socket: net.Socket | null = null
  private pending: Buffer | null = null
  private decoder: BodyDecoder | null = null
  private status = 0
  private errorText = ''
  private slab = Buffer.allocUnsafe(SLAB_BYTES)
  private slabUsed = 0
  private readonly headPrefix: Buffer
  private readonly template: BodyTemplate
  private closed = false
  seq = 0
  published = 0
  errors = 0
  firstError: string | null = null
  /** Failed seqs above the window's base: they will never be delivered, so they do not hold a window slot. */
  readonly failed: number[] = []

  constructor(
    private readonly url: URL,
    method: string,
    fields: Array<[string, string]>,
    body: string,
    private readonly onAnswer: () => void,
  ) {
    this.template = new BodyTemplate(body)
    const all = withDefaults([['Content-Type', 'text/plain; charset=utf-8']], fields).filter(([n]) => n.toLowerCase() !== 'content-length')
    let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`
    for (const [n, v] of all) head += `${n}: ${v}\r\n`
    this.headPrefix = Buffer.from(head + 'Content-Length: ', 'utf8')
    this.dial()
  }

  get outstanding(): number {
    return this.waiting.length - this.waitingHead
  }

  private dial(): void {
    const host = this.url.hostname.startsWith('[') ? this.url.hostname.slice(1, -1) : this.url.hostname
    const https = this.url.protocol === 'https:'
    const port = this.url.port === '' ? (https ? 443 : 80) : Number(this.url.port)
    const socket = https
      ? tls.connect({ host, port, ...(net.isIP(host) === 0 ? { servername: host } : {}), ALPNProtocols: ['http/1.1'] })
      : net.connect({ host, port })
    socket.setNoDelay(true)
    this.socket = socket
    this.pending = null
    this.decoder = null
    let error: Error | null = null
    socket.on('data', (d: Buffer) => this.onData(d))
    socket.on('error', (err) => (error ??= err))
    socket.on('close', () => {
      if (this.socket !== socket) return
      this.socket = null
      // Requests without an answer: their fate is unknown, so they count as failed.
      while (this.outstanding > 0) this.fail(this.waiting[this.waitingHead++]!, `connection closed: ${error?.message ?? 'by the server'}`)
      this.compact()
      this.onAnswer()
      if (!this.closed) setTimeout(() => !this.closed && this.socket === null && this.dial(), REDIAL_MS)
    })
  }

  /** Send `n` more events, as one write. */
  send(n: number): void {
    if (n <= 0 || this.socket === null) return
    let start = this.slabUsed
    for (let i = 0; i < n; i++) {
      const seq = ++this.seq
      const ts = monotonicUs()
      const seqDigits = digitCount(seq)
      const tsDigits = digitCount(ts)
      const bodyLength = this.template.size(seqDigits, tsDigits)
      const lengthDigits = digitCount(bodyLength)
      const size = this.headPrefix.length + lengthDigits + CRLF2.length + bodyLength
      if (this.slabUsed + size > this.slab.length) {
        // The queued bytes of the old slab stay alive until written; a new slab takes the rest.
        if (this.slabUsed > start) this.socket.write(this.slab.subarray(start, this.slabUsed))
        this.slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, size))
        this.slabUsed = 0
        start = 0
      }
      let off = this.slabUsed
      off += this.headPrefix.copy(this.slab, off)
      off = writeDigits(this.slab, off, bodyLength, lengthDigits)
      off += CRLF2.copy(this.slab, off)
      off = this.template.write(this.slab, off, seq, seqDigits, ts, tsDigits)
      this.slabUsed = off
      this.waiting.push(seq)
    }
    this.socket.write(this.slab.subarray(start, this.slabUsed))
  }

  private onData(d: Buffer): void {
    const buf = this.pending === null ? d : Buffer.concat([this.pending, d])
    this.pending = null
    let pos = 0
    try {
      while (pos < buf.length) {
        if (this.decoder === null) {
          const parsed = parseResponseHead(buf.subarray(pos))
          if (parsed === null) {
            this.pending = buf.subarray(pos)
            return
          }
          pos += parsed.length
          if (parsed.head.status < 200) continue
          this.status = parsed.head.status
          this.errorText = ''
          this.decoder = new BodyDecoder(bodyFraming(parsed.head))
        }
        pos += this.decoder.feed(buf, pos, buf.length, (b, s, e) => {
          if ((this.status < 200 || this.status > 299) && this.errorText.length < MAX_ERROR_TEXT) this.errorText += b.toString('utf8', s, Math.min(e, s + MAX_ERROR_TEXT))
        })
        if (!this.decoder.done) return
        this.decoder = null
        this.answered()
      }
    } catch (err) {
      if (!(err instanceof ResponseError)) throw err
      this.firstError ??= `publish: ${err.message}`
      this.socket?.destroy()
    }
  }

  private answered(): void {
    const seq = this.outstanding > 0 ? this.waiting[this.waitingHead++]! : 0
    this.compact()
    if (this.status >= 200 && this.status <= 299) this.published++
    else this.fail(seq, `publish: HTTP ${this.status}: ${this.errorText.trim()}`)
    this.onAnswer()
  }

  private fail(seq: number, why: string): void {
    this.errors++
    this.firstError ??= why
    this.failed.push(seq)
  }

  private compact(): void {
    if (this.waitingHead > 1024 && this.waitingHead * 2 > this.waiting.length) {
      this.waiting.splice(0, this.waitingHead)
      this.waitingHead = 0
    }
  }

  close(): void {
    this.closed = true
    this.socket?.destroy()
  }
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
  private progressTimer: NodeJS.Timeout | null = null
  private phase = 'connecting'
  private wake: (() => void) | null = null
  /** The window's base as last seen, when it last moved, and how far timeouts have pushed it. */
  private lastBase = 0
  private baseMovedAt = Date.now()
  private forcedBase = 0
  private interrupted = false

  constructor(opts: Options) {
    this.opts = opts
  }

  private get allUpTo(): number {
    let min = Number.POSITIVE_INFINITY
    for (const g of this.groups) if (g.dead === null && g.allUpTo >= 0 && g.allUpTo < min) min = g.allUpTo
    return min === Number.POSITIVE_INFINITY ? (this.publisher?.seq ?? 0) : min
  }

  private get received(): number {
    return this.groups.reduce((n, g) => n + (g.final?.received ?? g.received), 0)
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
      const g: GroupState = { link, count, connected: false, allUpTo: 0, received: 0, streamErrors: 0, connectedSoFar: 0, connectErrorsSoFar: 0, final: null, dead: null }
      link.onMessage = (msg) => this.onMessage(g, msg)
      link.onDeath = (why) => {
        g.dead = why
        process.stderr.write(`rawsse bench: ${why}\n`)
        this.poke()
      }
      this.groups.push(g)
    }
    if (process.stderr.isTTY) this.progressTimer = setInterval(() => this.progressLine(), PROGRESS_LINE_MS)

    // Ctrl-C ends the current phase early and still prints the report (workers ignore it).
    const onSigint = (): void => {
      this.interrupted = true
      this.poke()
    }
    process.on('SIGINT', onSigint)
    await this.until(() => this.interrupted || this.groups.every((g) => g.connected || g.dead !== null))
    const firstConnectError = this.firstConnectError
    // On a terminal, the notice first clears the progress line it would otherwise be glued to.
    const clear = process.stderr.isTTY ? '\r\x1b[K' : ''
    if (firstConnectError !== null) process.stderr.write(`${clear}rawsse bench: ${this.connectErrorCount} streams failed to connect; first: ${firstConnectError}\n`)

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

    for (const g of this.groups) g.link.send({ type: 'stop' })
    await this.until(() => this.groups.every((g) => g.final !== null || g.dead !== null))
    this.publisher?.close()
    process.off('SIGINT', onSigint)
    if (this.progressTimer !== null) clearInterval(this.progressTimer)
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K')
    if (this.publisher?.firstError != null) process.stderr.write(`rawsse bench: ${this.publisher.errors} publish errors; first: ${this.publisher.firstError}\n`)
    const streamError = this.groups.find((g) => g.final?.firstError != null && g.final.streamErrors > 0)?.final?.firstError
    if (streamError !== undefined && streamError !== null) process.stderr.write(`rawsse bench: ${streamError}\n`)

    const report = this.report(warmupEndUs)
    process.stdout.write(o.json ? JSON.stringify(report) + '\n' : table(report))
    return report.connected === 0 || this.groups.some((g) => g.dead !== null) ? 1 : 0
  }

  private firstConnectError: string | null = null

  private workerCount(): number {
    const o = this.opts
    if (o.workers !== 'auto') return o.workers
    const perProcess = Math.max(1, openFileLimit() - FD_MARGIN)
    return Math.max(1, Math.ceil(o.streams / perProcess))
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
        g.allUpTo = msg.allUpTo
        g.received = msg.received
        g.streamErrors = msg.streamErrors
        g.connectedSoFar = msg.connected
        g.connectErrorsSoFar = msg.connectErrors
        break
      case 'final':
        g.final = msg.final
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
    if (p === null || o.rate !== null) return
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
      const open = this.connectedCount - this.groups.reduce((n, g) => n + g.streamErrors, 0)
      if (p.outstanding === 0 && received >= p.published * open) return true
      // Not cut short by Ctrl-C: events still on their way would be reported lost.
      return Date.now() - quietSince >= DRAIN_QUIET_MS || Date.now() - started >= DRAIN_MAX_MS
    })
  }

  private lastLineReceived = 0

  private progressLine(): void {
    const p = this.publisher
    const received = this.received
    const perSecond = Math.round(((received - this.lastLineReceived) * 1000) / PROGRESS_LINE_MS)
    this.lastLineReceived = received
    const connected = this.groups.reduce((n, g) => n + g.connectedSoFar, 0)
    const errors = this.groups.reduce((n, g) => n + g.connectErrorsSoFar, 0)
    const line =
      `rawsse bench: ${this.phase}  connected ${connected}/${this.opts.streams}  connect errors ${errors}` +
      (p === null ? '' : `  published ${p.published}  received ${received} (${perSecond}/s)  publish errors ${p.errors}`)
    process.stderr.write(`\r\x1b[K${line}`)
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

/** The report for a person: one row per field. */
function table(r: BenchReport): string {
  const lat = (v: number | null): string => (v === null ? '-' : v.toFixed(3))
  const rows: Array<[string, string]> = [
    ['streams', `${r.streams} (${r.workers} process${r.workers === 1 ? '' : 'es'})`],
    ['connected', String(r.connected)],
    ['connect errors', String(r.connectErrors)],
    ['stream errors', String(r.streamErrors)],
    ['published', String(r.published)],
    ['publish errors', String(r.publishErrors)],
    ['expected deliveries', String(r.expectedDeliveries)],
    ['received', String(r.received)],
    ['lost', String(r.lost)],
    ['duplicates', String(r.duplicates)],
    ['deliveries/s', String(r.deliveriesPerSecond)],
    ['latency ms', `p50 ${lat(r.latencyMs.p50)}  p90 ${lat(r.latencyMs.p90)}  p99 ${lat(r.latencyMs.p99)}  max ${lat(r.latencyMs.max)}`],
    ['bench CPU', `user ${r.benchCpu.userMs} ms  system ${r.benchCpu.systemMs} ms  ${r.benchCpu.percentOfOneCore}% of one core`],
    ['duration s', String(r.durationSeconds)],
  ]
  return rows.map(([k, v]) => `${k.padEnd(21)}${v}`).join('\n') + '\n'
}
