// SseServer: the only owner of sockets, timers and stop. It reads requests off each connection
// (http-head.ts, http-body.ts), asks routes.ts what to answer, frames plain replies
// (response.ts), and turns a stream request into a Client of the registry (clients.ts).

import { EventEmitter } from 'node:events'
import { createReadStream } from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateToken, TokenTable, type Authenticate, type AuthRequest, type AuthUser, type UserEntry } from './auth.js'
import { LocalBus, type Bus, type BusEvent } from './bus.js'
import { Client, ClientRegistry, matches, type ClientView, type Target } from './clients.js'
import { errorResponse, HttpError } from './errors.js'
import { BodyReader } from './http-body.js'
import { parseHead, type RequestHead } from './http-head.js'
import { History } from './history.js'
import * as L from './limits.js'
import { Metrics, type DropReason, type Stats } from './metrics.js'
import { formatHead, formatResponse, type Reply } from './response.js'
import { route, type OpenStream, type Outcome, type RouteContext } from './routes.js'
import { encodeEvent, Frame, HEARTBEAT, messageProblem, retryFrame, type SseMessage } from './sse-encode.js'
import { StaticFiles } from './static.js'

export interface SseServerOptions {
  /** Default 6500; 0 picks a free port. */
  port?: number
  /** Default 127.0.0.1. */
  host?: string
  /** Tokens that may open streams. */
  tokens?: readonly string[]
  /** Tokens that may open streams, publish and administer. */
  publishTokens?: readonly string[]
  /** Named users with roles (the `--users` file). */
  users?: readonly UserEntry[]
  /** Asked for every token the token lists do not know. */
  authenticate?: Authenticate
  /** Static files beside the stream; default the package's `public/`; null serves none. */
  publicDir?: string | null
  /** `Access-Control-Allow-Origin`; default `*`. */
  corsOrigin?: string
  heartbeatMs?: number
  retryMs?: number
  /** Events kept for Last-Event-ID replay. */
  history?: number
  maxClients?: number
  maxBufferBytes?: number
  /** Period of the `time` event; 0 = off. */
  tickMs?: number
  /** Head deadline, and then body deadline (408); default 10 s. */
  headTimeoutMs?: number
  /** A stream with unsent bytes that the kernel takes none of for this long is dropped; default 30 s. */
  stallTimeoutMs?: number
  /**
   * The first server-assigned event id. Default: boot time in ms × 1000 + 1, so ids keep increasing
   * across restarts and a Last-Event-ID from before a restart is never mistaken for a new event
   * (it is not in the new ring, so the stream says `reset`). Set 1 for short ids.
   */
  firstEventId?: number
  /** Replace the in-process bus, e.g. with one shared between processes. */
  bus?: Bus
}

export interface SseServerEvents {
  connect: [client: ClientView]
  disconnect: [client: ClientView, reason: DropReason | 'closed']
}

const EMPTY = Buffer.alloc(0)
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n')
const PACKAGE_PUBLIC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'public')

const enum State {
  Head, // waiting for (the rest of) a request head
  Body, // reading a request body
  Busy, // a request is being answered; later pipelined bytes wait
  Stream, // an open event stream; bytes from the client are read and ignored
  Closing, // we have sent our last bytes; waiting for the client to close
}

/** One TCP connection, from accept to close. */
class Connection {
  state = State.Head
  /** Received bytes not parsed yet: the unfinished head, or pipelined requests. */
  buffered: Buffer | null = null
  /** How much of `buffered` the head parser has already said "need more" for. */
  seen = 0
  request: RequestHead | null = null
  body: BodyReader | null = null
  /** The head or body deadline. One per connection; Node keeps timers of one duration in one list. */
  timer: NodeJS.Timeout | null = null
  /** Keep-alive wait with nothing received yet: its timeout closes silently instead of 408. */
  idle = false
  /** The client sent FIN: answer what is pending, then close. */
  peerEnded = false
  client: Client | null = null

  constructor(
    readonly socket: net.Socket,
    readonly server: SseServer,
  ) {}
}

const CONN = Symbol('rawsse.connection')
type OwnedSocket = net.Socket & { [CONN]: Connection }

// They reach the server's private handlers by name: the listeners are part of the server, only
// hoisted out of it so that they are created once.
function onSocketData(this: OwnedSocket, data: Buffer): void {
  const conn = this[CONN]
  conn.server['onData'](conn, data)
}
function onSocketEnd(this: OwnedSocket): void {
  const conn = this[CONN]
  conn.server['onEnd'](conn)
}
function onSocketClose(this: OwnedSocket): void {
  const conn = this[CONN]
  conn.server['onClose'](conn)
}
// A reset or any other socket error is followed by 'close'; it must never throw here.
function ignoreError(): void {}

export class SseServer extends EventEmitter<SseServerEvents> {
  /** The token generated when no token, user or authenticate hook was given; it has every role. */
  readonly generatedToken: string | null
  private readonly opts: Required<Omit<SseServerOptions, 'authenticate' | 'bus' | 'publicDir' | 'tokens' | 'publishTokens' | 'users' | 'firstEventId'>>
  private readonly tokens: TokenTable
  private readonly authHook: Authenticate | undefined
  private readonly statics: StaticFiles | null
  private readonly bus: Bus
  private readonly metrics = new Metrics()
  private readonly registry: ClientRegistry
  private readonly history: History
  private readonly conns = new Set<Connection>()
  private readonly streamHeads: { chunked: Buffer; closeDelimited: Buffer }
  private server: net.Server | null = null
  private housekeeping: NodeJS.Timeout | null = null
  private heartbeat: NodeJS.Timeout | null = null
  private ticker: NodeJS.Timeout | null = null
  private lastClientId = 0
  private lastEventId: number
  private stopping: Promise<void> | null = null
  private readonly routes: RouteContext

  constructor(options: SseServerOptions = {}) {
    super()
    this.opts = {
      port: options.port ?? L.DEFAULT_PORT,
      host: options.host ?? L.DEFAULT_HOST,
      corsOrigin: options.corsOrigin ?? L.DEFAULT_CORS_ORIGIN,
      heartbeatMs: options.heartbeatMs ?? L.DEFAULT_HEARTBEAT_MS,
      retryMs: options.retryMs ?? L.DEFAULT_RETRY_MS,
      history: options.history ?? L.DEFAULT_HISTORY,
      maxClients: options.maxClients ?? L.DEFAULT_MAX_CLIENTS,
      maxBufferBytes: options.maxBufferBytes ?? L.DEFAULT_MAX_BUFFER_BYTES,
      tickMs: options.tickMs ?? L.DEFAULT_TICK_MS,
      headTimeoutMs: options.headTimeoutMs ?? L.HEAD_TIMEOUT_MS,
      stallTimeoutMs: options.stallTimeoutMs ?? L.STALL_TIMEOUT_MS,
    }
    for (const [name, v] of Object.entries(this.opts)) {
      if (typeof v === 'number' && !(Number.isInteger(v) && v >= 0)) throw new RangeError(`${name} must be a whole number >= 0`)
    }
    // RFC 9110 §5.5: a field value is visible ASCII, space and tab; CR or LF would inject headers.
    if (!/^[\x20-\x7e\t]*$/.test(this.opts.corsOrigin)) throw new RangeError('corsOrigin must be a valid header value (no CR, LF or control bytes)')
    // Any token list given, even an empty one, means the caller chose who may connect.
    const noAuth = !options.tokens?.length && !options.publishTokens?.length && options.users === undefined && !options.authenticate
    this.generatedToken = noAuth ? generateToken() : null
    this.tokens = new TokenTable({
      tokens: options.tokens ?? [],
      publishTokens: [...(options.publishTokens ?? []), ...(this.generatedToken === null ? [] : [this.generatedToken])],
      users: options.users ?? [],
    })
    this.lastEventId = (options.firstEventId ?? Date.now() * 1000 + 1) - 1
    if (!Number.isSafeInteger(this.lastEventId) || this.lastEventId < 0) throw new RangeError('firstEventId must be a whole number >= 1')
    this.authHook = options.authenticate
    const publicDir = options.publicDir === undefined ? PACKAGE_PUBLIC : options.publicDir
    this.statics = publicDir === null ? null : new StaticFiles(publicDir)
    this.history = new History(this.opts.history)
    this.registry = new ClientRegistry(this.metrics, this.opts.maxBufferBytes, (c, reason) => this.onRemove(c, reason))
    this.bus = options.bus ?? new LocalBus()
    this.bus.subscribe((e) => this.deliver(e))
    this.routes = this.makeRouteContext()
    this.streamHeads = { chunked: streamHead(true, this.opts.corsOrigin), closeDelimited: streamHead(false, this.opts.corsOrigin) }
  }

  // ---------------------------------------------------------------- public API

  /** Start accepting; resolves to the address really bound (the real port when `port` is 0). */
  async listen(): Promise<{ host: string; port: number }> {
    if (this.server !== null) throw new Error('listen() was called twice')
    // allowHalfOpen: a client's FIN must not close our side before we have answered it.
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.accept(s))
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    // After listening, an error such as EMFILE on accept must not end the process: the
    // connections already open keep being served.
    server.on('error', (err) => process.emitWarning(`rawsse: ${err.message}`))

    // Shared timers, never one per stream: the stall check, the heartbeat, the tick.
    const sweepMs = Math.max(1, Math.min(L.HOUSEKEEPING_MS, this.opts.stallTimeoutMs))
    this.housekeeping = setInterval(() => this.registry.dropStalled(Date.now(), this.opts.stallTimeoutMs), sweepMs)
    if (this.opts.heartbeatMs > 0) {
      this.heartbeat = setInterval(() => this.registry.fanOut(HEARTBEAT, {}), this.opts.heartbeatMs)
    }
    if (this.opts.tickMs > 0) {
      this.ticker = setInterval(() => this.broadcastNow({ event: 'time', data: new Date().toISOString() }), this.opts.tickMs)
    }
    const addr = server.address() as net.AddressInfo
    return { host: this.opts.host, port: addr.port }
  }

  /**
   * Stop: no new connections; every open stream gets a last jittered `retry:` and `0\r\n\r\n`;
   * other connections close once answered. Resolves when every socket is closed (at most
   * SHUTDOWN_GRACE_MS, after which the rest are destroyed).
   */
  stop(): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => {
      for (const timer of [this.housekeeping, this.heartbeat, this.ticker]) if (timer !== null) clearInterval(timer)
      const server = this.server
      if (server === null) return resolve()
      const grace = setTimeout(() => {
        for (const conn of this.conns) conn.socket.destroy()
      }, L.SHUTDOWN_GRACE_MS)
      server.close(() => {
        clearTimeout(grace)
        this.bus.close()
        resolve()
      })
      for (const c of [...this.registry.list]) this.registry.drop(c, 'shutdown', retryFrame(this.jitteredRetry()))
      for (const conn of this.conns) {
        if (conn.state === State.Head || conn.state === State.Body) this.closeConnection(conn)
      }
    })
    return this.stopping
  }

  /** Send to every stream (that `filter` accepts); returns the streams reached. */
  broadcast(msg: SseMessage, filter?: (client: ClientView) => boolean): number {
    return this.publishEvent(msg, filter === undefined ? {} : { filter }).delivered
  }

  /** Send to the streams subscribed to `channel`. */
  publish(channel: string, msg: SseMessage): number {
    return this.publishEvent(msg, { channel }).delivered
  }

  /** Send to one stream; its id does not survive a reconnect, so it is not kept for replay. */
  send(clientId: number, msg: SseMessage): number {
    return this.publishEvent(msg, { client: clientId }).delivered
  }

  /** Send to every stream of one user (from `--users` or `authenticate`). */
  sendToUser(user: string, msg: SseMessage): number {
    return this.publishEvent(msg, { user }).delivered
  }

  /** Publish to any combination of targets; returns the event id and the streams reached. */
  publishEvent(msg: SseMessage, target: Target): { id: string; delivered: number } {
    const problem = messageProblem(msg)
    if (problem !== null) throw new TypeError(problem)
    const id = msg.id ?? String(++this.lastEventId)
    const message: BusEvent['message'] = { data: msg.data, id }
    if (msg.event !== undefined) message.event = msg.event
    return { id, delivered: this.bus.publish({ message, target, keep: target.client === undefined }) }
  }

  get clientCount(): number {
    return this.registry.size
  }

  /** Open streams on a channel. */
  connections(channel: string): number {
    return this.registry.connections(channel)
  }

  /** Close one stream (it gets `0\r\n\r\n` first); false when there is no such stream. */
  closeClient(id: number): boolean {
    const c = this.registry.get(id)
    if (c === undefined) return false
    this.registry.drop(c, 'admin')
    return true
  }

  /** Close every stream; returns how many. */
  closeAll(): number {
    const all = [...this.registry.list]
    for (const c of all) this.registry.drop(c, 'admin')
    return all.length
  }

  /** The `/stats` figures. */
  stats(): Stats {
    return this.metrics.snapshot(this.registry.size, this.registry.channels())
  }

  // ---------------------------------------------------------------- publishing

  /** The bus's subscriber: encode once, keep for replay, queue for this turn's fan-out. */
  private deliver(e: BusEvent): number {
    const frame = encodeEvent(e.message)
    this.metrics.published++
    if (e.keep) this.history.add({ id: e.message.id, frame, target: e.target })
    let reached: number
    if (e.target.client !== undefined) {
      // One stream, found by id: write at once (after anything queued before it, to keep order)
      // rather than make every stream of the next batch test a target meant for one.
      this.registry.flush()
      reached = this.registry.fanOut(frame, e.target)
    } else {
      reached = this.enqueue(frame, e.target)
    }
    this.metrics.deliveries += reached
    return reached
  }

  private enqueue(frame: Frame, target: Target): number {
    if (!this.registry.hasQueued) setImmediate(this.flushQueued)
    return this.registry.queue(frame, target)
  }

  private readonly flushQueued = (): void => this.registry.flush()

  /**
   * The `time` tick: no id, not kept, and local to this process (each process has its own
   * clock and ticks its own streams), so it does not go through the bus.
   */
  private broadcastNow(msg: SseMessage): void {
    const reached = this.enqueue(encodeEvent(msg), {})
    this.metrics.published++
    this.metrics.deliveries += reached
  }

  private jitteredRetry(): number {
    return this.opts.retryMs + Math.floor(Math.random() * this.opts.retryMs * L.RETRY_JITTER)
  }

  // ---------------------------------------------------------------- connections

  private accept(socket: net.Socket): void {
    const conn = new Connection(socket, this)
    this.conns.add(conn)
    ;(socket as OwnedSocket)[CONN] = conn
    // Shared listeners (`this` is the socket), not four closures per connection: at 19 000
    // streams every byte per connection counts.
    socket.on('data', onSocketData)
    socket.on('end', onSocketEnd)
    socket.on('error', ignoreError)
    socket.on('close', onSocketClose)
    if (this.stopping !== null) return this.closeConnection(conn)
    this.arm(conn, this.opts.headTimeoutMs)
  }

  private onData(conn: Connection, data: Buffer): void {
    if (conn.state === State.Stream || conn.state === State.Closing) return // read and ignored
    if (conn.idle) {
      // The first byte of a new request starts its head deadline; later bytes never extend it.
      conn.idle = false
      this.arm(conn, this.opts.headTimeoutMs)
    }
    // Copy only when a head (or body) is split across reads; the parsers cap what this can hold.
    conn.buffered = conn.buffered === null ? data : Buffer.concat([conn.buffered, data])
    this.process(conn)
  }

  /** Parse and answer every complete request in `buffered`, in order, until one is pending. */
  private process(conn: Connection): void {
    try {
      while (conn.buffered !== null && (conn.state === State.Head || conn.state === State.Body)) {
        if (conn.state === State.Head) {
          const parsed = parseHead(conn.buffered, conn.seen)
          if (parsed === null) {
            conn.seen = conn.buffered.length
            break
          }
          conn.seen = 0
          const req = parsed.head
          conn.request = req
          conn.buffered = parsed.length < conn.buffered.length ? conn.buffered.subarray(parsed.length) : null
          if (req.chunked || req.contentLength > 0) {
            conn.body = new BodyReader(req.chunked, req.contentLength)
            conn.state = State.Body
            this.arm(conn, this.opts.headTimeoutMs) // the body gets as long again: trickling never extends it
            // curl and others wait for this before sending a body (RFC 9110 §10.1.1).
            if (req.expectContinue && conn.buffered === null) conn.socket.write(CONTINUE)
          } else {
            this.dispatch(conn, req, EMPTY)
          }
        } else {
          const used = conn.body!.feed(conn.buffered)
          conn.buffered = used < conn.buffered.length ? conn.buffered.subarray(used) : null
          if (conn.body!.done) {
            const body = conn.body!.body()
            conn.body = null
            this.dispatch(conn, conn.request!, body)
          }
        }
      }
    } catch (err) {
      this.refuse(conn, err)
      return
    }
    if (conn.peerEnded && conn.state === State.Head) this.closeConnection(conn)
  }

  private dispatch(conn: Connection, req: RequestHead, body: Buffer): void {
    this.disarm(conn)
    conn.state = State.Busy
    const outcome = route(req, body, this.routes, conn.socket)
    if (!(outcome instanceof Promise)) return this.answer(conn, req, outcome)
    // Answers go out in request order, so later pipelined requests wait, unread, meanwhile.
    conn.socket.pause()
    outcome.then(
      (o) => {
        if (conn.socket.destroyed) return
        this.answer(conn, req, o)
        this.process(conn)
      },
      (err: unknown) => this.refuse(conn, err),
    )
  }

  private answer(conn: Connection, req: RequestHead, outcome: Outcome): void {
    if (outcome.kind === 'stream') return this.openStream(conn, req, outcome)
    const opts = { head: req.method === 'HEAD', keepAlive: req.keepAlive && !conn.peerEnded && this.stopping === null, http10: req.version === '1.0', corsOrigin: this.opts.corsOrigin }
    if (outcome.kind === 'file' && !opts.head) {
      const { reply, file, size } = outcome
      conn.socket.write(formatHead(reply, size, opts), 'latin1')
      const stream = createReadStream(file, { start: 0, end: size - 1 })
      stream.on('error', () => conn.socket.destroy()) // the head is sent: no status can say it now
      stream.on('end', () => {
        this.replied(conn, opts.keepAlive)
        this.process(conn) // a request pipelined behind the file
      })
      // A client that goes away mid-file must not leave the file open.
      conn.socket.once('close', () => stream.destroy())
      stream.pipe(conn.socket, { end: false })
      return
    }
    const reply: Reply = outcome.reply
    conn.socket.write(formatResponse(reply, opts))
    this.replied(conn, opts.keepAlive && reply.close !== true)
  }

  /** A plain reply is written: wait for the next request, or close. */
  private replied(conn: Connection, keepAlive: boolean): void {
    if (!keepAlive) return this.closeConnection(conn)
    conn.request = null
    // A client that pipelines requests but reads no answers is not read from either (TCP backpressure).
    if (conn.socket.writableLength > this.opts.maxBufferBytes) {
      conn.socket.pause()
      conn.socket.once('drain', () => {
        this.replied(conn, true)
        this.process(conn)
      })
      return
    }
    conn.state = State.Head
    conn.socket.resume() // paused while an answer was pending
    conn.idle = conn.buffered === null
    this.arm(conn, conn.idle ? L.KEEP_ALIVE_IDLE_MS : this.opts.headTimeoutMs)
    if (conn.peerEnded && conn.buffered === null) this.closeConnection(conn)
  }

  private openStream(conn: Connection, req: RequestHead, o: OpenStream): void {
    if (this.stopping !== null) {
      return this.refuse(conn, new HttpError(503, 'shutting down', [['Retry-After', String(Math.ceil(this.jitteredRetry() / 1000))]]))
    }
    const socket = conn.socket
    const chunked = req.version === '1.1'
    const head = chunked ? this.streamHeads.chunked : this.streamHeads.closeDelimited
    if (req.method === 'HEAD') {
      socket.write(head)
      return this.replied(conn, req.keepAlive && chunked)
    }
    const client = new Client(++this.lastClientId, socket, o.who.user, o.who.roles, o.channels, chunked)
    const ready = encodeEvent({ event: 'ready', data: JSON.stringify({ client: client.id, user: client.user, channels: client.channels }) }, this.jitteredRetry())

    // Head, ready, reset or replay: corked into one write. Nothing can be published between
    // here and registry.add (one thread), so the replay and the live events meet with no gap.
    socket.cork()
    socket.write(head)
    let bytes = head.length + write(socket, ready, chunked)
    if (o.lastEventId !== null) {
      const placed = this.history.since(o.lastEventId, (e) => {
        if (matches(client, e.target)) bytes += write(socket, e.frame, chunked)
      })
      if (!placed) bytes += write(socket, encodeEvent({ event: 'reset', data: `{"reason":"${L.HISTORY_GAP_REASON}"}` }), chunked)
    }
    socket.uncork()
    this.metrics.bytesOut += bytes

    conn.state = State.Stream
    conn.client = client
    conn.request = null // the stream keeps what it needs in `client`; the parsed head can go
    conn.buffered = null // anything pipelined after a stream request can never be answered
    this.registry.add(client)
    this.emit('connect', client)
  }

  /** Answer a refused request with its status and close (no status once a stream has begun). */
  private refuse(conn: Connection, err: unknown): void {
    if (conn.state === State.Stream || conn.state === State.Closing || conn.socket.destroyed) return
    const httpErr = err instanceof HttpError ? err : new HttpError(500, 'internal error')
    if (!(err instanceof HttpError)) process.emitWarning(`rawsse: ${err instanceof Error ? err.stack : String(err)}`)
    conn.socket.resume()
    conn.socket.write(errorResponse(httpErr))
    this.closeConnection(conn)
  }

  /**
   * Send FIN and keep reading (discarding) until the client closes, at most LINGER_MS. Closing at
   * once could reset the connection while the client is still sending, and a reset can destroy
   * the error response before the client reads it (Go's closeWriteAndWait does the same).
   */
  private closeConnection(conn: Connection): void {
    if (conn.state === State.Closing) return
    conn.state = State.Closing
    conn.buffered = null
    conn.seen = 0
    conn.socket.resume()
    conn.socket.end()
    this.arm(conn, L.LINGER_MS)
  }

  private onEnd(conn: Connection): void {
    conn.peerEnded = true
    if (conn.state === State.Stream) {
      // An EventSource never half-closes: a FIN on a stream means the client is gone.
      if (conn.client !== null) this.registry.remove(conn.client, 'closed')
      conn.socket.destroy()
    } else if (conn.state === State.Closing) {
      conn.socket.destroy()
    } else if (conn.state === State.Body || (conn.state === State.Head && conn.buffered !== null)) {
      // The client will send no more, so this request can never complete: say so, like Node does.
      this.refuse(conn, new HttpError(400, conn.state === State.Body ? 'incomplete request body' : 'incomplete request head'))
    } else if (conn.state === State.Head) {
      this.closeConnection(conn)
    }
  }

  private onRemove(c: Client, reason: DropReason | 'closed'): void {
    if (reason === 'admin' || reason === 'shutdown') {
      // registry.drop() is about to write the last chunk and FIN. Once those bytes are with the
      // kernel the socket is done; a client that reads nothing is cut off after LINGER_MS.
      const s = c.socket
      s.once('finish', () => s.destroy())
      const t = setTimeout(() => s.destroy(), L.LINGER_MS).unref()
      s.once('close', () => clearTimeout(t))
    }
    this.emit('disconnect', c, reason)
  }

  private onClose(conn: Connection): void {
    this.disarm(conn)
    if (conn.client !== null) this.registry.remove(conn.client, 'closed')
    this.conns.delete(conn)
  }

  /** Set the connection's one deadline; on expiry: 408 while a request is coming in, else close. */
  private arm(conn: Connection, ms: number): void {
    this.disarm(conn)
    conn.timer = setTimeout(() => {
      conn.timer = null
      if (conn.state === State.Closing || (conn.idle && conn.state === State.Head)) conn.socket.destroy()
      else if (conn.state === State.Head || conn.state === State.Body) this.refuse(conn, new HttpError(408, 'request head or body not received in time'))
    }, ms)
    conn.timer.unref()
  }

  private disarm(conn: Connection): void {
    if (conn.timer !== null) {
      clearTimeout(conn.timer)
      conn.timer = null
    }
  }

  private makeRouteContext(): RouteContext {
    const registry = this.registry
    return {
      authenticate: (token, req, peer): AuthUser | null => {
        const known = this.tokens.lookup(token)
        if (known !== null || this.authHook === undefined) return known
        const request: AuthRequest = { method: req.method, path: req.path, headers: req.headers, remoteAddress: peer.remoteAddress }
        return this.authHook(token, request)
      },
      publish: (message, target) => this.publishEvent(message, target),
      clientExists: (id) => this.registry.get(id) !== undefined,
      userOnline: (user) => this.registry.userOnline(user),
      closeClient: (id) => this.closeClient(id),
      closeAll: () => this.closeAll(),
      stats: () => this.stats(),
      get clientCount() {
        return registry.size
      },
      maxClients: this.opts.maxClients,
      retryMs: this.opts.retryMs,
      statics: this.statics,
    }
  }

}

/** Write a frame in the stream's framing; returns the bytes written. */
function write(socket: net.Socket, frame: Frame, chunked: boolean): number {
  const buf = frame.bytesFor(chunked)
  socket.write(buf)
  return buf.length
}

/** The stream's response head (../CONTRACT.md, byte for byte). HTTP/1.0 gets no chunked coding. */
function streamHead(chunked: boolean, corsOrigin: string): Buffer {
  return Buffer.from(
    'HTTP/1.1 200 OK\r\n' +
      'Content-Type: text/event-stream; charset=utf-8\r\n' +
      (chunked ? 'Transfer-Encoding: chunked\r\n' : '') +
      'Cache-Control: no-cache, no-transform\r\n' +
      (chunked ? 'Connection: keep-alive\r\n' : 'Connection: close\r\n') +
      'X-Accel-Buffering: no\r\n' +
      `Access-Control-Allow-Origin: ${corsOrigin}\r\n` +
      '\r\n',
    'latin1',
  )
}
