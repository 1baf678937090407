// Request to handler and status: what each route of docs/wire.md "Routes" does with a parsed request.
// Returns what to answer (a reply, a stream to open, a file to send); no byte framing here.

import { isUtf8 } from 'node:buffer'
import { jittered, QUERY_CHANNEL, QUERY_LAST_EVENT_ID, QUERY_TAG, TAG_CHANNEL } from '../wire.js'
import { hasRole, mayBroadcast, mayPublish, maySubscribe, ROLE_ADMIN, ROLE_PUBLISH, type AuthUser } from './access/auth.js'
import type { Accepted, BusState } from './bus/bus.js'
import { requestToken, streamToken, type CredentialSettings } from './access/credentials.js'
import type { Target } from './fanout/target.js'
import { CLIENT_SCRIPT_PATH, clientScript } from './http/client-script.js'
import { ALLOWED_METHODS, HttpError } from './http/errors.js'
import type { RequestHead } from './http/head.js'
import { DEFAULT_CHANNELS, MAX_CHANNELS_PER_STREAM, MAX_ID_BYTES, MAX_NAME_BYTES, MAX_TICKET_BODY_BYTES } from './limits.js'
import { prometheusText, type Stats } from './metrics.js'
import { json, text, type Reply } from './http/response.js'
import type { SseMessage } from './fanout/sse-encode.js'
import type { FileToStream, StaticFiles } from './http/static.js'
import { ticketBody, ticketRequest, TicketRefused, type TicketIssued, type TicketRequest } from './access/tickets.js'
import { beforeChangeBody, changeChannels, channelsRouteId, type ChannelsAnswer, type ChannelsQuestion } from './live-channels.js'

/** Where a request came from; the server passes its socket, which has this field. */
export interface Peer {
  readonly remoteAddress?: string | undefined
}

/** What the routes need from the server: the only way they touch state. Built once per server. */
export interface RouteContext {
  /**
   * The token lists first; the `authenticate` hook (which sees the request), a JWT, a ticket for a
   * stream, for tokens they lack: an answer now, or a promise (bounded: it rejects with a 503 when
   * the hook or a cluster is too slow). A refusal's reason goes to the log, never to the client.
   * A ticket is spent only `forStream`: by the stream it opens.
   */
  authenticate(token: string, req: RequestHead, peer: Peer, forStream: boolean): AuthUser | null | Promise<AuthUser | null>
  /** Where tokens may come from besides the path and the bearer: the auth cookie. */
  readonly credentials: CredentialSettings
  /** A ticket for what a POST /tickets asked, now or once the cluster's store has it. Throws (or rejects) a TicketRefused 503 when too many are live. */
  createTicket(request: TicketRequest): TicketIssued | Promise<TicketIssued>
  /**
   * A request with no token: who `--auth-url` says it is when it carries a Cookie or an
   * Authorization that is not Bearer (auth.ts askApp); null without --auth-url, or with neither.
   */
  withoutToken(req: RequestHead, peer: Peer): AuthUser | null | Promise<AuthUser | null>
  /**
   * Publish through the bus, by the publish rules (publish-rules.ts): the event's id and the
   * streams it reached, now or once the cluster accepted it. Throws (or rejects) an HttpError: 400,
   * 404 `offline` for a user or client connected nowhere, 409, 413, 503.
   */
  publish(message: SseMessage, target: Target): Accepted | Promise<Accepted>
  /** Null when `lastEventId` can be placed now; else a wait for this node to have what the cluster has (it may just be behind). */
  catchUp(lastEventId: string): Promise<void> | null
  /** Wherever the stream is (in a cluster, maybe another process). */
  closeClient(id: number): boolean | Promise<boolean>
  closeAll(): number | Promise<number>
  stats(): Stats | Promise<Stats>
  /** Live channels: asked of whichever process holds the stream. */
  changeChannels(q: ChannelsQuestion): ChannelsAnswer | Promise<ChannelsAnswer>
  readonly clientCount: number
  readonly maxClients: number
  readonly retryMs: number
  readonly statics: StaticFiles | null
  /** stop() has begun. */
  readonly stopping: boolean
  /** Whether the bus answers (always up in one process). */
  readonly bus: BusState
}

export interface OpenStream {
  kind: 'stream'
  who: AuthUser
  channels: readonly string[]
  lastEventId: string | null
  /** `tag=channel`: each event published to a channel carries `channel: NAME` (docs/wire.md "Tagged streams"). */
  tagged: boolean
}

export type Outcome = { kind: 'reply'; reply: Reply } | OpenStream | ({ kind: 'file' } & FileToStream)

const FORM_FIELDS = ['channel', 'event', 'id', 'user', 'role', 'client', 'data'] as const

const reply = (r: Reply): Outcome => ({ kind: 'reply', reply: r })

const CORS_PREFLIGHT: Reply = {
  status: 204,
  headers: [
    ['Access-Control-Allow-Methods', ALLOWED_METHODS],
    ['Access-Control-Allow-Headers', 'Authorization, Content-Type, Last-Event-ID'],
    ['Access-Control-Max-Age', '86400'],
  ],
}

export function route(req: RequestHead, body: Buffer, ctx: RouteContext, peer: Peer): Outcome | Promise<Outcome> {
  const { method, path } = req
  if (method === 'OPTIONS') return reply(CORS_PREFLIGHT)

  if (path === '/healthz') {
    allow(method, 'GET, HEAD, OPTIONS', method === 'GET' || method === 'HEAD')
    // No auth: a load balancer asks it. 503 while stopping, so it takes the node out of rotation.
    // A bus that does not answer (Redis away or hung) is said in the body but stays a 200: every
    // node shares that Redis, and streams still open and replay from the local history, so
    // taking every node out of rotation at once would turn a Redis blip into an outage.
    if (ctx.stopping) return reply(json(503, { status: 'stopping' }))
    return reply(json(200, { status: ctx.bus === 'up' ? 'ok' : 'bus down' }))
  }
  if (path === '/events' || path.startsWith('/events/')) {
    allow(method, 'GET, HEAD, OPTIONS', method === 'GET' || method === 'HEAD')
    return openStream(req, ctx, peer)
  }
  if (path === '/publish') {
    allow(method, 'POST, OPTIONS', method === 'POST')
    return publish(req, body, ctx, peer)
  }
  if (path === '/tickets') {
    allow(method, 'POST, OPTIONS', method === 'POST')
    return tickets(req, body, ctx, peer)
  }
  if (path === '/stats' || path === '/metrics') {
    allow(method, 'GET, HEAD, OPTIONS', method === 'GET' || method === 'HEAD')
    const denied = checkRole(req, ctx, peer, ROLE_ADMIN)
    if (denied instanceof Promise) return denied.then(() => route(req, body, ctx, peer)) // as in publish()
    if (denied !== null) return reply(denied)
    const asStats = (stats: Stats): Outcome =>
      reply(path === '/stats' ? json(200, stats) : { status: 200, body: prometheusText(stats), contentType: 'text/plain; version=0.0.4; charset=utf-8' })
    return after(ctx.stats(), asStats)
  }
  const live = channelsRouteId(path)
  if (live !== null) {
    allow(method, 'POST, OPTIONS', method === 'POST')
    return after(changeChannels(live, req, body, ctx, peer), reply)
  }
  if (path === '/clients' || path.startsWith('/clients/')) {
    allow(method, 'DELETE, OPTIONS', method === 'DELETE')
    return closeClients(req, ctx, peer)
  }

  allow(method, 'GET, HEAD, OPTIONS', method === 'GET' || method === 'HEAD')
  // Built in, before --public: a page can always import the client of the server it talks to.
  if (path === CLIENT_SCRIPT_PATH) return clientScript(req.headers['if-none-match']).then(reply)
  if (ctx.statics === null) return reply(text(404, 'not found'))
  return ctx.statics.serve(path, req.headers['if-none-match']).then((r) => ('file' in r ? { kind: 'file', ...r } : reply(r)))
}

function allow(method: string, allowed: string, ok: boolean): void {
  if (!ok) throw new HttpError(405, `${method} is not allowed here`, [['Allow', allowed]])
}

/**
 * GET /events/TOKEN[?channel=A&channel=B][&lastEventId=ID][&tag=channel], or GET /events with
 * `Authorization: Bearer TOKEN` or the auth cookie: a client that can set headers keeps its token
 * out of URLs, and so out of proxies' access logs. The path wins, then the header.
 */
function openStream(req: RequestHead, ctx: RouteContext, peer: Peer): Outcome | Promise<Outcome> {
  const token = streamToken(req, ctx.credentials)
  // No token anywhere (not one the path holds with more segments after it): perhaps --auth-url's.
  const bare = req.path.length <= '/events/'.length
  const who = token !== null ? ctx.authenticate(token, req, peer, req.method === 'GET') : bare ? ctx.withoutToken(req, peer) : null
  return who instanceof Promise ? who.then((w) => streamFor(w, req, ctx)) : streamFor(who, req, ctx)
}

/** The stream route once the token's identity is known: its channels, within what it is granted, and where it resumes. */
function streamFor(who: AuthUser | null, req: RequestHead, ctx: RouteContext): Outcome | Promise<Outcome> {
  if (who === null) throw new HttpError(401, 'unknown token')

  const params = new URLSearchParams(req.query)
  const channels: string[] = []
  for (const ch of params.getAll(QUERY_CHANNEL)) {
    checkName('channel', ch)
    if (!channels.includes(ch)) channels.push(ch)
  }
  if (channels.length > MAX_CHANNELS_PER_STREAM) throw new HttpError(400, `at most ${MAX_CHANNELS_PER_STREAM} channels per stream`)
  const tag = single(params, QUERY_TAG)
  if (tag !== null && tag !== TAG_CHANNEL) throw new HttpError(400, `${QUERY_TAG} must be "${TAG_CHANNEL}"`)
  for (const ch of channels.length === 0 ? DEFAULT_CHANNELS : channels) if (!maySubscribe(who, ch)) return reply(channelRefused(ch))

  // The header wins over the query: the browser sets the header itself on a reconnect, with the
  // newest id, while the query still holds the one the page was opened with.
  const header = req.headers['last-event-id']
  // Header values were read as latin1; WHATWG clients send the id as UTF-8.
  const lastEventId = header !== undefined ? Buffer.from(header, 'latin1').toString('utf8') : params.get(QUERY_LAST_EVENT_ID)

  if (req.method === 'GET' && ctx.clientCount >= ctx.maxClients) {
    const seconds = Math.ceil(jittered(ctx.retryMs) / 1000)
    throw new HttpError(503, 'too many streams', [['Retry-After', String(seconds)]])
  }
  // Most streams take the default: they share one array (a client record is kept per stream).
  const outcome: Outcome = { kind: 'stream', who, channels: channels.length === 0 ? DEFAULT_CHANNELS : channels, lastEventId, tagged: tag !== null }
  const behind = lastEventId === null ? null : ctx.catchUp(lastEventId)
  return behind === null ? outcome : behind.then(() => outcome)
}

/**
 * POST /publish?channel=&event=&id=&user=&role=&client= with the data as the body. What the
 * request names is read here (400 for what cannot be read); what may be published is the
 * publish rules' (publish-rules.ts), applied where the server hands it to the bus.
 */
function publish(req: RequestHead, body: Buffer, ctx: RouteContext, peer: Peer): Outcome | Promise<Outcome> {
  const who = bearer(req, ctx, peer)
  // A hook answering later: once it has, the same request runs again with its answer remembered.
  if (who instanceof Promise) return who.then(() => publish(req, body, ctx, peer))
  const denied = refusal(who, ROLE_PUBLISH)
  if (denied !== null) return reply(denied)
  let accepted: Accepted | Promise<Accepted>
  try {
    const { message, target } = publishRequest(req, body)
    // A publish naming no channel reaches streams on every channel: only for a token granted every one.
    if (target.channel === undefined ? !mayBroadcast(who!) : !mayPublish(who!, target.channel)) return reply(channelRefused(target.channel ?? null))
    accepted = ctx.publish(message, target)
  } catch (err) {
    return reply(publishRefused(err))
  }
  if (!(accepted instanceof Promise)) return reply(json(200, accepted))
  return accepted.then(
    (a) => reply(json(200, a)),
    (err: unknown) => reply(publishRefused(err)),
  )
}

/** The fields of a publish (the form's over the query's) and its data (the form's, or the body). Throws HttpError 400. */
function publishFields(req: RequestHead, body: Buffer): { fields: URLSearchParams; data: string } {
  if (!isUtf8(body)) throw new HttpError(400, 'body is not valid UTF-8')
  const fields = new URLSearchParams(req.query)
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  const form = contentType === 'application/x-www-form-urlencoded' ? new URLSearchParams(body.toString('utf8')) : null
  // `curl --data-binary hello` labels a plain body as a form by default, so a "form" that holds
  // none of our field names is taken as the data itself, which is what its sender meant.
  if (form === null || !FORM_FIELDS.some((f) => form.has(f))) return { fields, data: body.toString('utf8') }
  let data = ''
  // A field in the form wins over the same field in the query.
  for (const f of FORM_FIELDS) {
    const all = form.getAll(f)
    if (all.length === 0) continue
    if (f === 'data') data = all.join('\n')
    else {
      fields.delete(f)
      for (const v of all) fields.append(f, v)
    }
  }
  return { fields, data }
}

/** The message and target a publish request names; HttpError 400 for a field given twice, too long, or not one line. */
function publishRequest(req: RequestHead, body: Buffer): { message: SseMessage; target: Target } {
  const { fields, data } = publishFields(req, body)
  const target: Target = {}
  const message: SseMessage = { data }
  const channel = single(fields, 'channel')
  const user = single(fields, 'user')
  const role = single(fields, 'role')
  const client = single(fields, 'client')
  const event = single(fields, 'event')
  const id = single(fields, 'id')
  if (channel !== null) target.channel = checkName('channel', channel)
  if (user !== null) target.user = checkName('user', user)
  if (role !== null) target.role = checkName('role', role)
  if (event !== null && event !== '') message.event = checkName('event', event)
  if (id !== null) {
    if (id === '' || Buffer.byteLength(id) > MAX_ID_BYTES) throw new HttpError(400, `id must be 1 to ${MAX_ID_BYTES} bytes`)
    message.id = id
  }
  if (client !== null) {
    if (!/^[1-9]\d{0,15}$/.test(client)) throw new HttpError(400, 'client must be a stream id')
    target.client = Number(client)
  }
  return { message, target }
}

/** 400: what the request names cannot be published; 404 `offline`: a user or client connected nowhere; 409: an id the history still holds; 413: over maxEventBytes; 503: the cluster bus is down. */
function publishRefused(err: unknown): Reply {
  if (!(err instanceof HttpError)) throw err
  if (err.status === 404) return json(404, { delivered: 0, error: 'offline' })
  return json(err.status, { error: err.message }, err.headers)
}

/**
 * POST /tickets (publish or admin role), an optional JSON body `{user, roles, channels,
 * ttlSeconds}` → 201 `{"ticket","expiresAt"}`: a single-use stream token. What it may hold is
 * capped at the caller's own roles and channels (tickets.ts ticketRequest: 400, 403).
 */
function tickets(req: RequestHead, body: Buffer, ctx: RouteContext, peer: Peer): Outcome | Promise<Outcome> {
  const who = bearer(req, ctx, peer)
  if (who instanceof Promise) return who.then(() => tickets(req, body, ctx, peer)) // as in publish()
  const denied = ticketCallerRefusal(who)
  if (denied !== null) return reply(denied)
  let issued: TicketIssued | Promise<TicketIssued>
  try {
    issued = ctx.createTicket(ticketRequest(ticketBody(body), { roles: who!.roles, grants: who!.grants ?? null }))
  } catch (err) {
    return reply(ticketRefused(err))
  }
  const created = (t: TicketIssued): Outcome => reply(json(201, { ticket: t.ticket, expiresAt: new Date(t.expiresAt).toISOString() }))
  if (!(issued instanceof Promise)) return created(issued)
  return issued.then(created, (err: unknown) => reply(ticketRefused(err)))
}

/** A caller that may not ask for tickets: 401 without a valid token, 403 without the publish or admin role; else null. */
function ticketCallerRefusal(who: AuthUser | null): Reply | null {
  if (who === null) return refusal(who, ROLE_PUBLISH)
  if (hasRole(who, ROLE_PUBLISH) || hasRole(who, ROLE_ADMIN)) return null
  return json(403, { error: `the token lacks the ${ROLE_PUBLISH} or ${ROLE_ADMIN} role` })
}

/** A TicketRefused's JSON answer; any other HttpError as `{"error"}`. */
function ticketRefused(err: unknown): Reply {
  if (err instanceof TicketRefused) return json(err.status, err.body, err.headers)
  if (err instanceof HttpError) return json(err.status, { error: err.message }, err.headers)
  throw err
}

/** `f(value)`, at once when `value` is not a promise: the one-process path stays synchronous. */
function after<T>(value: T | Promise<T>, f: (v: T) => Outcome): Outcome | Promise<Outcome> {
  return value instanceof Promise ? value.then(f) : f(value)
}

/** DELETE /clients/ID closes one stream; DELETE /clients closes all. */
function closeClients(req: RequestHead, ctx: RouteContext, peer: Peer): Outcome | Promise<Outcome> {
  const denied = checkRole(req, ctx, peer, ROLE_ADMIN)
  if (denied instanceof Promise) return denied.then(() => closeClients(req, ctx, peer)) // as in publish()
  if (denied !== null) return reply(denied)
  if (req.path === '/clients') return after(ctx.closeAll(), (closed) => reply(json(200, { closed })))
  const id = req.path.slice('/clients/'.length)
  const unknown = reply(json(404, { closed: 0, error: 'unknown client' }))
  if (!/^[1-9]\d{0,15}$/.test(id)) return unknown
  return after(ctx.closeClient(Number(id)), (closed) => (closed ? reply(json(200, { closed: 1 })) : unknown))
}

/**
 * A request that announces a body, before any of it is read: the reply to send instead, or null
 * to read the body. A publish without a valid bearer is refused here, so a client without a
 * token can never make us buffer a body.
 *
 * Synchronous for a static token (and a hook that answers at once). For a bearer only an async
 * `authenticate` hook knows, this is its promise: the connection reads nothing more until it
 * settles (what it holds is what came with the head, within the request-bytes budget), the
 * hook's wait is bounded by AUTHENTICATE_TIMEOUT_MS (then a 503), and only a request it lets
 * through gets its body read, under the same limits as any other.
 */
export function beforeBody(req: RequestHead, ctx: RouteContext, peer: Peer): Reply | null | Promise<Reply | null> {
  if (req.method !== 'POST') return null
  if (req.path === '/publish') return checkRole(req, ctx, peer, ROLE_PUBLISH)
  if (req.path === '/tickets') {
    const tooBig = req.contentLength > MAX_TICKET_BODY_BYTES ? json(413, { error: `the body must be at most ${MAX_TICKET_BODY_BYTES} bytes` }) : null
    const who = bearer(req, ctx, peer)
    return who instanceof Promise ? who.then((w) => ticketCallerRefusal(w) ?? tooBig) : (ticketCallerRefusal(who) ?? tooBig)
  }
  if (channelsRouteId(req.path) !== null) return beforeChangeBody(req)
  return null
}

// The bearer's identity, once looked up for a request: beforeBody() and the route ask the same
// question of the same request, and an `authenticate` hook is asked it once. A hook's promise
// is kept until it settles, then its answer.
const bearers = new WeakMap<RequestHead, AuthUser | null | Promise<AuthUser | null>>()

/** The identity of the request's `Authorization: Bearer` token, else its auth cookie's (null: none, or unknown), now or later. */
function bearer(req: RequestHead, ctx: RouteContext, peer: Peer): AuthUser | null | Promise<AuthUser | null> {
  let who = bearers.get(req)
  if (who === undefined) {
    const token = requestToken(req, ctx.credentials)
    who = token === null ? ctx.withoutToken(req, peer) : ctx.authenticate(token, req, peer, false)
    if (who instanceof Promise) who = who.then((w) => (bearers.set(req, w), w))
    bearers.set(req, who)
  }
  return who
}

/** null when the bearer token holds `role`; otherwise the 401 or 403 to answer (later, when a hook answers later). */
function checkRole(req: RequestHead, ctx: RouteContext, peer: Peer, role: string): Reply | null | Promise<Reply | null> {
  const who = bearer(req, ctx, peer)
  return who instanceof Promise ? who.then((w) => refusal(w, role)) : refusal(who, role)
}

function refusal(who: AuthUser | null, role: string): Reply | null {
  // RFC 6750 §3: a 401 for a bearer-protected resource says which scheme it wants.
  if (who === null) return json(401, { error: 'a valid bearer token is required' }, [['WWW-Authenticate', 'Bearer']])
  if (!hasRole(who, role)) return json(403, { error: `the token lacks the ${role} role` })
  return null
}

/**
 * A stream or a publish naming a channel its token is not granted (CONTRACT "Tokens an
 * application signs"); `channel` null: a publish that names none, by a token not granted every one.
 */
function channelRefused(channel: string | null): Reply {
  return json(403, { error: 'channel not allowed', channel })
}

/** A parameter given at most once: two values for one target is ambiguous, so 400. */
function single(params: URLSearchParams, name: string): string | null {
  const all = params.getAll(name)
  if (all.length > 1) throw new HttpError(400, `${name} given more than once`)
  return all[0] ?? null
}

export function checkName(what: string, value: string): string {
  if (value === '' || Buffer.byteLength(value) > MAX_NAME_BYTES) throw new HttpError(400, `${what} must be 1 to ${MAX_NAME_BYTES} bytes`)
  if (/[\r\n]/.test(value)) throw new HttpError(400, `${what} contains CR or LF`)
  return value
}
