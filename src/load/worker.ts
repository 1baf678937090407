// `rawsse bench`'s subscribers: a group of SSE streams held by one process, counting what each
// receives. The coordinator (bench.ts) runs one group in its own process, or forks this module
// once per group when the streams need more file descriptors than one process may open; then
// the messages below go over the IPC channel.
//
// Hot path (one read of one stream): one monotonic clock reading, the response body decoded as
// views (ResponseReader), events found as views (SseParser), seq and ts read out of the bytes
// (BodyTemplate.extract). Nothing is allocated per event.

import type * as net from 'node:net'
import { dial } from '../client/dial.js'
import { mediaType, requestHead, ResponseError, ResponseReader, type ResponseHandler, type ResponseHead } from '../client/http.js'
import { SseParser } from '../client/sse-parse.js'
import { DEFAULT_EVENT } from '../wire.js'
import { CONNECT_TICK_MS, CONNECT_TIMEOUT_MS, MAX_CATCH_UP_TICKS, MAX_ERROR_TEXT, MIN_RING, PROGRESS_MS, READ_BUFFER_BYTES, STREAMS_PER_SOURCE_ADDRESS } from './limits.js'
import { BodyTemplate, Histogram, monotonicUs } from './stats.js'
import type { FromGroup, GroupConfig, Progress, ToGroup } from './messages.js'
import { WORKER_ENV } from './messages.js'
import { quoted } from './text.js'

const enum Phase {
  Head,
  Open,
  Done,
}

/** One stream: its socket, its readers, the last seq it received. */
class Stream implements ResponseHandler {
  phase = Phase.Head
  socket!: net.Socket
  readonly reader = new ResponseReader(this)
  readonly parser: SseParser
  last = 0
  readonly dialedAt = Date.now()
  error: Error | null = null
  /** Why the answer is not a stream (status or type), while its body is read to quote it. */
  refusal: string | null = null
  private refusalBody = ''

  constructor(private readonly group: StreamGroup) {
    this.parser = new SseParser({ onEvent: (type, data, start, end) => group.onEvent(this, type, data, start, end) })
  }

  onHead(head: ResponseHead): void {
    const type = head.headers['content-type']
    if (head.status !== 200) return this.refusing(`HTTP ${head.status} ${head.reason}`.trim())
    if (mediaType(type) !== 'text/event-stream') return this.refusing(`Content-Type ${type ?? 'none'}, not text/event-stream`)
    this.phase = Phase.Open
    this.group.opened()
  }

  onBody(buf: Buffer, start: number, end: number): void {
    if (this.refusal === null) return this.parser.feed(buf, start, end)
    // Not a stream: read the start of what the server said instead, to quote it.
    this.refusalBody += buf.toString('utf8', start, Math.min(end, start + MAX_ERROR_TEXT))
    if (this.refusalBody.length >= MAX_ERROR_TEXT) this.refuse(this.refusalText())
  }

  /** The server ended the stream (or its refusal): counted when the socket closes. */
  onEnd(): void {
    if (this.refusal !== null) this.refuse(this.refusalText())
    this.socket.destroy()
  }

  /** The answer is not an event stream: its body is read (a little) before the stream is refused. */
  private refusing(why: string): void {
    this.refusal = why
  }

  /** The refusal with the start of its body, on one line: the error a person sees. */
  refusalText(): string {
    return `${this.refusal}${quoted(this.refusalBody)}`
  }

  refuse(why: string): void {
    this.error ??= new Error(why)
    this.reader.stop()
    this.socket.destroy()
  }
}

/**
 * The source address of stream `index`: none for the first STREAMS_PER_SOURCE_ADDRESS streams
 * (the kernel picks 127.0.0.1 for a loopback target), then 127.0.0.2, 127.0.0.3, … for each next
 * block. The first block is left unbound on purpose: bind() with port 0 before connect() makes
 * the kernel search for a port no other socket has bound (Node cannot set
 * IP_BIND_ADDRESS_NO_PORT), which costs far more system time than connect()'s own choice.
 */
export function sourceAddress(index: number): string | null {
  const k = 1 + Math.floor(index / STREAMS_PER_SOURCE_ADDRESS)
  if (k === 1) return null
  return `127.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`
}

export class StreamGroup {
  private readonly config: GroupConfig
  private readonly url: URL
  private readonly emit: (msg: FromGroup) => void
  private readonly head: Buffer
  private readonly template: BodyTemplate
  private readonly streams: Stream[] = []
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES)
  private dialed = 0
  private connectStartedAt = 0
  private connectTimer: NodeJS.Timeout | null = null
  private timeoutTimer: NodeJS.Timeout | null = null
  private progressTimer: NodeJS.Timeout | null = null
  private connectReported = false
  private stopping = false

  private connected = 0
  private connectErrors = 0
  private streamErrors = 0
  private open = 0
  private received = 0
  private duplicates = 0
  private receivedMeasured = 0
  private lastReceiveUs = 0
  private firstError: string | null = null
  private readonly hist = new Histogram()
  private readonly histMeasured = new Histogram()
  /** Latencies since the coordinator's last 'sample' (its --out file). */
  private readonly histSecond = new Histogram()
  /** The clock read once per socket read; every event of that read is stamped with it. */
  private nowUs = 0
  private warmupEndUs = Number.POSITIVE_INFINITY

  // Window mode: ring[s & mask] counts the open streams that have received seq s (or skipped
  // past it). When that reaches the number of open streams, s is delivered everywhere and allUpTo
  // moves on: O(1) per delivery, whatever the number of streams.
  private readonly ring: Int32Array | null
  private readonly mask: number
  private allUpTo = 0
  private maxSeq = 0
  private progressQueued = false
  private lastSent: Progress | null = null

  constructor(config: GroupConfig, emit: (msg: FromGroup) => void) {
    this.config = config
    this.url = new URL(config.url)
    this.emit = emit
    this.head = requestHead('GET', this.url, config.fields) // one Buffer, written to every stream
    this.template = new BodyTemplate(config.template)
    if (config.window > 0) {
      let size = MIN_RING
      while (size < config.window * 4) size *= 2
      this.ring = new Int32Array(size)
      this.mask = size - 1
    } else {
      this.ring = null
      this.mask = 0
    }
  }

  handle(msg: ToGroup): void {
    if (msg.type === 'start') {
      this.warmupEndUs = msg.warmupEndUs
    } else if (msg.type === 'sample') {
      this.emit({ type: 'sample', hist: this.histSecond.sparse(), histMax: this.histSecond.max })
      this.histSecond.reset()
    } else if (msg.type === 'stop') {
      this.stop()
    }
  }

  /** Dial every stream at the configured rate; 'connected' is emitted when each has opened or failed. */
  connect(): void {
    this.connectStartedAt = Date.now()
    if (this.config.count === 0) return this.maybeConnected()
    this.connectTimer = setInterval(() => this.dialDue(), CONNECT_TICK_MS)
    this.timeoutTimer = setInterval(() => this.expireHeads(), 1000)
    this.progressTimer = setInterval(() => this.sendProgress(), PROGRESS_MS)
    this.dialDue()
  }

  private dialDue(): void {
    const due = Math.min(this.config.count, Math.max(1, Math.floor(((Date.now() - this.connectStartedAt) / 1000) * this.config.connectRate)))
    const most = this.dialed + Math.max(1, Math.ceil((this.config.connectRate * CONNECT_TICK_MS * MAX_CATCH_UP_TICKS) / 1000))
    while (this.dialed < due && this.dialed < most) this.dial(this.config.firstIndex + this.dialed++)
    if (this.dialed === this.config.count && this.connectTimer !== null) {
      clearInterval(this.connectTimer)
      this.connectTimer = null
    }
  }

  private dial(index: number): void {
    const source = this.config.rotateSources ? sourceAddress(index) : null
    const st = new Stream(this)
    const https = this.url.protocol === 'https:'
    // Every plain-TCP read lands in the group's one buffer: no Buffer is allocated per read. The
    // readers copy what they keep (an unfinished line or head) before the next read overwrites it.
    const socket = dial(this.url, {
      ...(source === null ? {} : { localAddress: source }),
      ...(https ? {} : { onread: { buffer: this.readBuffer, callback: (n: number) => (this.onData(st, this.readBuffer, n), true) } }),
    })
    if (https) socket.on('data', (d: Buffer) => this.onData(st, d, d.length))
    st.socket = socket
    this.streams.push(st)
    socket.setNoDelay(true)
    socket.on('error', (err) => (st.error ??= err))
    socket.on('close', () => this.onClose(st))
    socket.write(this.head)
  }

  private expireHeads(): void {
    const cutoff = Date.now() - CONNECT_TIMEOUT_MS
    for (const st of this.streams) {
      if (st.phase === Phase.Head && st.dialedAt < cutoff) {
        st.error ??= new Error(st.refusal !== null ? st.refusalText() : `no response head within ${CONNECT_TIMEOUT_MS / 1000} s`)
        st.socket.destroy()
      }
    }
  }

  /** `d[0, n)` was read from the stream (`d` may be the shared read buffer). */
  private onData(st: Stream, d: Buffer, n: number): void {
    if (st.phase === Phase.Done) return
    this.nowUs = monotonicUs()
    try {
      st.reader.feed(d, 0, n)
    } catch (err) {
      if (!(err instanceof ResponseError)) throw err
      st.refuse(err.message)
    }
  }

  /** A stream's response was a 200 text/event-stream. */
  opened(): void {
    this.connected++
    this.open++
    this.maybeConnected()
  }

  private onClose(st: Stream): void {
    if (this.stopping) return
    const was = st.phase
    st.phase = Phase.Done
    if (was === Phase.Head) {
      this.connectErrors++
      this.firstError ??= st.error?.message ?? (st.refusal !== null ? st.refusalText() : 'connection closed before a response')
      this.maybeConnected()
    } else if (was === Phase.Open) {
      this.streamErrors++
      this.firstError ??= `a stream ended: ${st.error?.message ?? 'closed by the server'}`
      this.open--
      this.forget()
    }
  }

  /** An open stream went away: the seqs it had counted toward stay counted, and the rest no longer wait for it. */
  private forget(): void {
    if (this.ring === null) return
    this.advance()
    this.queueProgress()
  }

  private maybeConnected(): void {
    if (this.connectReported || this.connected + this.connectErrors < this.config.count) return
    this.connectReported = true
    if (this.timeoutTimer !== null) clearInterval(this.timeoutTimer)
    this.timeoutTimer = null
    this.emit({ type: 'connected', connected: this.connected, connectErrors: this.connectErrors, firstError: this.firstError })
  }

  /** The parser's handler: one event of one stream, its data a view. */
  onEvent(st: Stream, type: string, data: Buffer, start: number, end: number): void {
    // `ready`, `time` and other events of the server are not ours.
    if (type !== DEFAULT_EVENT) return
    const t = this.template
    if (!t.extract(data, start, end)) return
    const seq = t.seq
    if (seq <= st.last) {
      this.duplicates++
      return
    }
    const prev = st.last
    st.last = seq
    this.received++
    const now = this.nowUs
    const latency = now > t.ts ? now - t.ts : 0
    this.hist.record(latency)
    this.histSecond.record(latency)
    if (now >= this.warmupEndUs) {
      this.histMeasured.record(latency)
      this.receivedMeasured++
    }
    this.lastReceiveUs = now
    if (this.ring !== null) {
      if (seq > this.maxSeq) this.maxSeq = seq
      // A skipped seq (lost) is counted as passed too, so that one loss does not close the window for good.
      const from = Math.max(prev, this.allUpTo) + 1
      for (let s = from; s <= seq; s++) {
        if (s - this.allUpTo <= this.mask) this.ring[s & this.mask] += 1
      }
      if (this.advance()) this.queueProgress()
    }
  }

  /** Move allUpTo past every seq all open streams have; true when it moved. */
  private advance(): boolean {
    const ring = this.ring!
    const before = this.allUpTo
    while (this.allUpTo < this.maxSeq && ring[(this.allUpTo + 1) & this.mask]! >= this.open) {
      this.allUpTo++
      ring[this.allUpTo & this.mask] = 0
    }
    return this.allUpTo !== before
  }

  /** One progress message per turn of the event loop, however many reads moved the window in it. */
  private queueProgress(): void {
    if (this.progressQueued) return
    this.progressQueued = true
    setImmediate(() => {
      this.progressQueued = false
      this.sendProgress()
    })
  }

  private sendProgress(): void {
    if (this.stopping) return
    const allUpTo = this.open === 0 ? -1 : this.ring === null ? 0 : this.allUpTo
    const p: Progress = { allUpTo, received: this.received, streamErrors: this.streamErrors, connected: this.connected, connectErrors: this.connectErrors }
    const s = this.lastSent
    if (s !== null && s.allUpTo === p.allUpTo && s.received === p.received && s.streamErrors === p.streamErrors && s.connected === p.connected && s.connectErrors === p.connectErrors) return
    this.lastSent = p
    this.emit({ type: 'progress', ...p })
  }

  /** Close every stream (not counted as errors) and report. */
  private stop(): void {
    if (this.stopping) return
    this.stopping = true
    for (const timer of [this.connectTimer, this.timeoutTimer, this.progressTimer]) if (timer !== null) clearInterval(timer)
    // A reset, not a FIN: the side that closes first keeps each port in TIME_WAIT for a minute,
    // and a run right after this one would then search through 20 000 of them for a free port.
    const tcp = this.url.protocol === 'http:'
    for (const st of this.streams) {
      if (tcp && !st.socket.destroyed) st.socket.resetAndDestroy()
      else st.socket.destroy()
    }
    const forked = process.env[WORKER_ENV] === '1'
    const cpu = process.cpuUsage()
    this.emit({
      type: 'final',
      final: {
        connected: this.connected,
        connectErrors: this.connectErrors,
        streamErrors: this.streamErrors,
        received: this.received,
        duplicates: this.duplicates,
        receivedMeasured: this.receivedMeasured,
        lastReceiveUs: this.lastReceiveUs,
        hist: Array.from(this.hist.counts),
        histCount: this.hist.count,
        histMax: this.hist.max,
        histMeasured: Array.from(this.histMeasured.counts),
        histMeasuredCount: this.histMeasured.count,
        histMeasuredMax: this.histMeasured.max,
        cpuUserUs: forked ? cpu.user : 0,
        cpuSystemUs: forked ? cpu.system : 0,
        firstError: this.firstError,
      },
    })
  }
}

// A forked worker: the coordinator's `init` starts the group; `stop` ends it and the process.
if (process.env[WORKER_ENV] === '1' && process.send !== undefined) {
  let group: StreamGroup | null = null
  const send = (msg: FromGroup): void => {
    if (msg.type === 'final') process.send!(msg, () => process.exit(0))
    else process.send!(msg)
  }
  process.on('message', (msg: ToGroup) => {
    if (msg.type === 'init') {
      group = new StreamGroup(msg.config, send)
      group.connect()
    } else {
      group?.handle(msg)
    }
  })
  // An ES module starts asynchronously: a message sent before this listener existed would be
  // lost, so the coordinator sends `init` only once it hears this.
  process.send({ type: 'hello' } satisfies FromGroup)
  // The coordinator died: nobody is left to report to.
  process.on('disconnect', () => process.exit(0))
  // Ctrl-C reaches the whole process group; the coordinator decides when to stop, then reports.
  process.on('SIGINT', () => {})
}
