// SseServer: the owner of the listening socket, the timers and stop; the public API that sends
// events; publishing through the bus into history and the open streams. Each accepted socket
// becomes a Connection (http/connection.ts), which asks back through a ConnectionHost for routes
// (routes.ts) and for a stream to open (subscriptions.ts, a stream's life).

import { EventEmitter } from 'node:events'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { Access, type TokenLists } from './access/auth.js'
import type { SseServerEvents } from './events.js'
import type { Accepted, Bus, BusNode } from './bus/bus.js'
import { LocalBus } from './bus/local.js'
import { answerLocally, type StreamHolder } from './bus/questions.js'
import { RedisBus } from './bus/redis/redis-bus.js'
import { closeSocket } from './http/close.js'
import { Connection } from './http/connection.js'
import { listenOn } from './http/listener.js'
import { ByteBudget, makeRoom, type ConnectionHost, type HostedConnection } from './http/connection-host.js'
import { History } from './fanout/history.js'
import * as L from './limits.js'
import { Metrics, type Stats } from './metrics.js'
import { resolveSettings, type Settings, type SseServerOptions, type TlsFiles } from './options.js'
import { admit, timeTick, type PublishLimits, type Publisher } from './publish-rules.js'
import { beforeBody, route, type RouteContext } from './routes.js'
import type { SseMessage } from './fanout/sse-encode.js'
import { StaticFiles } from './http/static.js'
import type { ClientView } from './fanout/stream.js'
import { Backlog } from './fanout/backlog.js'
import { Delivery } from './fanout/delivery.js'
import { Streams } from './fanout/streams.js'
import { Subscriptions } from './subscriptions.js'
import { TurnGate } from './http/turn-gate.js'
import type { JwtConfig } from './access/jwt.js'
import { ledgerStore, MemoryTicketStore, ticketRequest, type TicketIssued, type TicketOptions, type TicketStore } from './access/tickets.js'
import { dropOldestAnswers } from './http/unsent.js'
import type { Target } from './fanout/target.js'
import { channelsOf, checkChange } from './live-channels.js'
import type { ChannelChange } from '../wire.js'
import { startWebhooks, type Webhooks } from './webhooks/webhooks.js'
import { requestIdentity } from './access/credentials.js'

export type { SseServerOptions } from './options.js'

export type { ErrorReply, PublishedEvent, SseServerEvents } from './events.js'

export class SseServer extends EventEmitter<SseServerEvents> {
  /** The token generated when no token, user or authenticate hook was given; it has every role. */
  readonly generatedToken: string | null
  private readonly access: Access
  /** Tickets until they are spent (POST /tickets, createTicket()). */
  private readonly tickets: TicketStore
  private readonly settings: Settings
  private readonly statics: StaticFiles | null
  private readonly bus: Bus
  private readonly metrics = new Metrics()
  private readonly streams: Streams
  private readonly history: History
  private readonly delivery: Delivery
  /** What the publish rules need of this process: its event size limit and its history. */
  private readonly limits: PublishLimits
  private readonly subscriptions: Subscriptions
  private readonly conns = new Set<HostedConnection>()
  private readonly routes: RouteContext
  private readonly host: ConnectionHost
  private server: net.Server | tls.Server | null = null
  private housekeeping: NodeJS.Timeout | null = null
  private heartbeat: NodeJS.Timeout | null = null
  private ticker: NodeJS.Timeout | null = null
  private lastEventId: number
  private stopping: Promise<void> | null = null
  private tlsFiles: TlsFiles | null
  /** Presence changes this process tells (webhooks, `presence`), stopped before the streams close: their going is no change; null: none. */
  private webhooks: Webhooks | null = null

  constructor(options: SseServerOptions = {}) {
    super()
    this.settings = resolveSettings(options)
    this.tlsFiles = options.tls === undefined ? null : { cert: options.tls.cert, key: options.tls.key }
    if (this.tlsFiles !== null) {
      try {
        tls.createSecureContext(this.tlsFiles)
      } catch (err) {
        throw new RangeError(`tls: ${(err as Error).message}`)
      }
    }
    this.lastEventId = this.settings.lastEventId
    this.statics = this.settings.publicDir === null ? null : new StaticFiles(this.settings.publicDir)
    this.history = new History(this.settings.history, this.settings.historyBytes)
    // What blocked streams are still owed, shared by all of them.
    const backlog = new Backlog()
    this.streams = new Streams(this.metrics, this.settings.maxBufferBytes, this.settings.maxUnsentBytes, backlog, (c, reason) => this.subscriptions.removed(c, reason))
    this.delivery = new Delivery(this.streams, this.history, this.metrics)
    this.limits = { maxEventBytes: this.settings.maxEventBytes, history: this.history }
    this.bus = options.bus ?? (options.redis === undefined ? new LocalBus() : new RedisBus({ url: options.redis, prefix: options.redisPrefix, history: this.settings.history, lastEventId: this.settings.lastEventId }))
    this.bus.attach(this.busNode())
    this.bus.watch?.((state, detail) => this.emit('bus', state, detail))
    // A cluster spends a ticket once in the whole cluster: its bus's ledger keeps them.
    this.tickets = this.bus.tickets === undefined ? new MemoryTicketStore() : ledgerStore(this.bus.tickets)
    this.access = new Access({ lists: options, hook: options.authenticate, jwt: options.jwt, tickets: this.tickets, retryMs: this.settings.retryMs, app: { url: this.settings.authUrl, events: this } })
    this.generatedToken = this.access.generatedToken
    const { streams, history, bus, metrics, settings } = this
    const stopping = (): boolean => this.stopping !== null
    const { retryMs, corsOrigin, corsCredentials } = settings
    this.subscriptions = new Subscriptions({ streams, history, bus, metrics, backlog, events: this, retryMs, corsOrigin, corsCredentials, stopping })
    this.routes = this.routeContext()
    this.host = this.connectionHost()
  }

  // ---------------------------------------------------------------- public API

  /** Start accepting; resolves to the address really bound (the real port when `port` is 0). */
  async listen(): Promise<{ host: string; port: number }> {
    if (this.server !== null) throw new Error('listen() was called twice')
    const { port, host, backlog, stallTimeoutMs, heartbeatMs, tickMs } = this.settings
    // A cluster's history first: a stream must never open on a node that has not got it yet.
    await this.bus.start?.()
    this.webhooks = startWebhooks({ bus: this.bus, streams: this.streams, settings: this.settings, metrics: this.metrics, events: this })
    const server = await listenOn({ port, host, backlog }, this.tlsFiles, this.settings.headTimeoutMs, (s) => this.accept(s))
    this.server = server

    // Shared timers, never one per stream: the byte budget and stall check, the heartbeat, the tick.
    // Answers' unsent bytes count in the budget with the streams'; past it, answers go first.
    const sweepMs = Math.max(1, Math.min(L.HOUSEKEEPING_MS, stallTimeoutMs))
    const sending = this.host.sending
    this.housekeeping = setInterval(() => {
      if (sending.size > 0) dropOldestAnswers(sending, this.streams.unsentBytes(), this.settings.maxUnsentBytes, this.metrics)
      this.streams.dropStalled(Date.now(), stallTimeoutMs, sweepMs)
    }, sweepMs)
    if (heartbeatMs > 0) this.heartbeat = setInterval(() => this.streams.heartbeat(), heartbeatMs)
    if (tickMs > 0) this.ticker = setInterval(() => this.delivery.tick(timeTick().message), tickMs)
    const addr = server.address() as net.AddressInfo
    return { host, port: addr.port }
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
        for (const conn of this.conns) closeSocket(conn.socket, this.metrics)
      }, L.SHUTDOWN_GRACE_MS)
      const told = this.webhooks?.stop() // what is owed is tried once more meanwhile
      server.close(() => {
        clearTimeout(grace)
        void Promise.all([this.bus.close(), told, this.access.close()]).then(() => resolve(), resolve)
      })
      this.subscriptions.shutdown()
      for (const conn of this.conns) conn.stop()
    })
    return this.stopping
  }

  /**
   * Send to every stream (that `filter` accepts); returns the streams reached. (On a cluster bus:
   * the streams of this process it will reach, the event being on its way through the cluster.)
   */
  broadcast(msg: SseMessage, filter?: (client: ClientView) => boolean): number {
    return this.reached(msg, filter === undefined ? {} : { filter })
  }

  /** Send to the streams subscribed to `channel`. */
  publish(channel: string, msg: SseMessage): number {
    return this.reached(msg, { channel })
  }

  /** Send to one stream. Not kept for replay; its id is placed, so that stream resumes after it. */
  send(clientId: number, msg: SseMessage): number {
    return this.reached(msg, { client: clientId })
  }

  /** Send to every stream of one user (from `--users` or `authenticate`). */
  sendToUser(user: string, msg: SseMessage): number {
    return this.reached(msg, { user })
  }

  /**
   * Publish to any combination of targets; returns the event id and the streams reached. Throws
   * TypeError for a message that cannot go on the wire, and an Error with `status` 413 (over
   * maxEventBytes encoded) or 409 (its id is one that history still holds). On a cluster bus,
   * whose answer comes later, use publishAsync(): this throws, and publishes nothing.
   */
  publishEvent(msg: SseMessage, target: Target): Accepted {
    // Refused before the bus sees it: an event handed over and then refused would be published
    // all the same, with nobody waiting for its answer.
    if (this.bus.answersLater === true) throw new Error(PUBLISH_ASYNC)
    const r = this.submit(msg, target, 'program')
    if (r instanceof Promise) {
      // A bus that answers later without saying so: the event is on its way; a failure is told, never left unhandled.
      r.catch((err: Error) => process.emitWarning(`rawsse: an event was not published: ${err.message}`))
      throw new Error(PUBLISH_ASYNC)
    }
    return r
  }

  /** publishEvent() that waits for the cluster's answer (resolves at once on the in-process bus). */
  async publishAsync(msg: SseMessage, target: Target): Promise<Accepted> {
    return this.submit(msg, target, 'program')
  }

  /** The sync sends' answer: on a cluster bus, the matching streams here (failures are warned, not thrown). */
  private reached(msg: SseMessage, target: Target): number {
    const r = this.submit(msg, target, 'program')
    if (!(r instanceof Promise)) return r.delivered
    r.catch((err: Error) => process.emitWarning(`rawsse: an event was not published: ${err.message}`))
    return this.streams.countMatches(target)
  }

  /** A publish by the rules (publish-rules.ts), handed to the bus. */
  private submit(msg: SseMessage, target: Target, from: Publisher): Accepted | Promise<Accepted> {
    const draft = admit(msg, target, from, this.limits)
    const r = this.bus.publish(draft)
    if (this.listenerCount('publish') === 0) return r
    const emit = (a: Accepted): Accepted => (this.emit('publish', { id: a.id, event: msg.event, target, delivered: a.delivered, bytes: draft.bytes }), a)
    return r instanceof Promise ? r.then(emit) : emit(r)
  }

  get clientCount(): number {
    return this.streams.size
  }

  /** Open streams on a channel. */
  connections(channel: string): number {
    return this.streams.connections(channel)
  }

  /**
   * Replace the token lists and users (e.g. a re-read `--users` file). Streams whose token is no
   * longer known, or lost a role or its user name, are closed at once (`revoked`); returns how
   * many. Streams admitted by the `authenticate` hook are left alone. The generated token, if
   * there is one, stays.
   */
  updateTokens(lists: TokenLists): number {
    return this.subscriptions.revoke(this.access.replace(lists))
  }

  /**
   * Replace the JWT secrets, keys, issuer and audience (e.g. on SIGHUP). Streams whose token no
   * longer verifies are closed (`revoked`); returns how many. Throws (keeping the old) when one is wrong.
   */
  updateJwt(jwt: JwtConfig): number {
    return this.subscriptions.revoke(this.access.replaceJwt(jwt))
  }

  /**
   * A single-use stream token that opens one stream within `ttlSeconds` (POST /tickets for the
   * program, which may hand on any role). Rejects with an Error whose `status` is 400 or 503.
   */
  async createTicket(request: TicketOptions = {}): Promise<TicketIssued> {
    return this.tickets.create(ticketRequest(request, { roles: request.roles ?? [], grants: null }))
  }

  /** JWT signatures checked, and tokens answered from the verifier's cache instead. */
  get jwtCounts(): { verified: number; cached: number } {
    return this.access.jwtCounts
  }

  /** Whether this server speaks HTTPS. */
  get secure(): boolean {
    return this.tlsFiles !== null
  }

  /**
   * Replace the certificate and key (e.g. renewed files, on SIGHUP): new connections get them,
   * open streams keep theirs. Throws when they are not a valid pair; the old ones stay then.
   */
  reloadTls(files: TlsFiles): void {
    if (this.tlsFiles === null) throw new Error('this server was not started with tls')
    const context = { cert: files.cert, key: files.key }
    tls.createSecureContext(context) // throws on a bad pair, before anything changes
    this.tlsFiles = context
    if (this.server instanceof tls.Server) this.server.setSecureContext(context)
  }

  /** Close one stream (it gets `0\r\n\r\n` first); false when there is no such stream. */
  closeClient(id: number): boolean {
    return this.subscriptions.close(id)
  }

  /**
   * Live channels: change what stream `clientId` receives, wherever in the cluster it is, as an
   * admin may (CONTRACT "Live channels"): the stream gets event `channels` there, and with `since`
   * the added channels' retained events it has not had. Returns its channels after the change (a
   * promise of them on a cluster bus). Throws (or rejects) an Error with `status`: 400 for a bad
   * change, 403 for a channel its token is not granted, 404 when no such stream is open.
   */
  setChannels(clientId: number, change: ChannelChange): readonly string[] | Promise<readonly string[]> {
    const a = this.bus.ask({ q: 'channels', id: clientId, change: checkChange(change), by: { admin: true } })
    return a instanceof Promise ? a.then(channelsOf) : channelsOf(a)
  }

  /** Close every stream; returns how many. */
  closeAll(): number {
    return this.subscriptions.closeAll()
  }

  /** The `/stats` figures. */
  stats(): Stats {
    return this.metrics.snapshot(this.streams.size, this.streams.channels(), { events: this.history.size, bytes: this.history.bytes }, this.conns.size)
  }

  // ---------------------------------------------------------------- publishing

  /** What the bus may ask of this process; built once. */
  private busNode(): BusNode {
    const holder: StreamHolder = {
      closeClient: (id) => this.closeClient(id),
      closeAll: () => this.closeAll(),
      stats: () => this.stats(),
      changeChannels: (q) => this.subscriptions.change(q),
    }
    return {
      deliver: (e) => this.delivery.deliver(e),
      mark: (id) => this.history.mark(id),
      gap: () => this.delivery.gap(),
      nextEventId: () => String(++this.lastEventId),
      count: (target) => this.streams.countMatches(target),
      answer: (q) => answerLocally(holder, q),
      clientExists: (id) => this.streams.get(id) !== undefined,
      userOnline: (user) => this.streams.userOnline(user),
    }
  }

  // ---------------------------------------------------------------- connections

  /** A new connection, within the budget (at its limit, one waiting for a request makes room: makeRoom). */
  private accept(socket: net.Socket): void {
    if (this.conns.size + this.host.filesOpen >= this.settings.maxConnections && !makeRoom(this.host, socket, this.metrics)) return
    this.conns.add(new Connection(socket, this.host))
  }

  /** What each Connection may ask of the server; built once. */
  private connectionHost(): ConnectionHost {
    const server = this
    const { headTimeoutMs, sendTimeoutMs, maxBufferBytes, corsOrigin, corsCredentials } = this.settings
    return {
      headTimeoutMs,
      sendTimeoutMs,
      maxBufferBytes,
      corsOrigin,
      corsCredentials,
      get stopping() {
        return server.stopping !== null
      },
      requestBytes: new ByteBudget(L.MAX_REQUEST_BYTES_IN_FLIGHT),
      beforeBody: (req, socket) => beforeBody(req, this.routes, socket),
      route: (req, body, socket) => route(req, body, this.routes, socket),
      openStream: (socket, req, o) => this.subscriptions.open(socket, req, o),
      opens: new TurnGate(L.STREAM_OPENS_PER_TURN),
      streamClosed: (stream) => this.streams.remove(stream, 'closed'),
      closed: (conn) => this.conns.delete(conn),
      waiting: new Set(),
      filesOpen: 0,
      sending: new Set(),
      resets: this.metrics,
      errorReply: (status, detail, req, remoteAddress) => {
        if (this.listenerCount('error-reply') === 0) return
        const path = req === null ? null : req.path.startsWith('/events/') ? '/events/***' : req.path
        const refusal = req === null ? undefined : this.access.refusalOf(req)
        this.emit('error-reply', { status, detail, method: req?.method ?? null, path, remoteAddress, refusal })
      },
    }
  }

  /** What the routes may ask of the server; built once. */
  private routeContext(): RouteContext {
    const server = this
    const streams = this.streams
    return {
      ...requestIdentity(this.access, { authCookie: this.settings.authCookie, corsOrigin: this.settings.corsOrigin }),
      createTicket: (request) => this.tickets.create(request),
      publish: (message, target) => this.submit(message, target, 'request'),
      catchUp: (lastEventId) => (lastEventId === '0' || this.history.has(lastEventId) || this.bus.catchUp === undefined ? null : this.bus.catchUp()),
      closeClient: (id) => this.bus.ask({ q: 'close-client', id }),
      closeAll: () => this.bus.ask({ q: 'close-all' }),
      stats: () => this.bus.ask({ q: 'stats' }),
      changeChannels: (q) => this.bus.ask(q),
      get clientCount() {
        return streams.size
      },
      get stopping() {
        return server.stopping !== null
      },
      get bus() {
        return server.bus.state ?? 'up'
      },
      maxClients: this.settings.maxClients,
      retryMs: this.settings.retryMs,
      statics: this.statics,
    }
  }
}

const PUBLISH_ASYNC = 'this server is one process of a cluster: use publishAsync()'
