// Live channels (CONTRACT "Live channels", docs/wire.md "Live channels"): what a change of an open
// stream's channels is, read from a request (`POST /clients/ID/channels`) or a program
// (SseServer.setChannels) and checked here; the question that carries it to the process holding
// the stream (bus/questions.ts), and its answers. The holder makes the change (subscriptions.ts).

import { isUtf8 } from 'node:buffer'
import { bearerToken, hasRole, ROLE_ADMIN, type AuthUser } from './access/auth.js'
import { HttpError } from './http/errors.js'
import { json, type Reply } from './http/response.js'
import { MAX_CHANGE_BODY_BYTES, MAX_CHANNELS_PER_CHANGE, MAX_ID_BYTES } from './limits.js'
import { checkName, type Peer, type RouteContext } from './routes.js'
import type { RequestHead } from './http/head.js'
import { keyDigest } from './stream-key.js'

/** A change as checked: each name once, none in both lists. */
export interface CheckedChange {
  add: string[]
  remove: string[]
  since?: string
}

/**
 * Change stream `id`'s channels; `by`: the digest of the key a request presented (the holder
 * compares it with the stream's), or an admin (checked where the request came in).
 */
export interface ChannelsQuestion {
  q: 'channels'
  id: number
  change: CheckedChange
  by: { key: string } | { admin: true }
}

/** A change the holder refused: the status and JSON body to answer with. */
export interface ChannelsRefusal {
  status: 400 | 401 | 403
  error: string
  channel?: string
}

/** The stream's channels after the change, or why not; null: the stream is not here. */
export type ChannelsAnswer = { channels: readonly string[] } | ChannelsRefusal | null

/** The holder's answer to a key that is not the stream's (the route then tries the bearer as an admin token). */
export const NOT_ITS_KEY: ChannelsRefusal = { status: 401, error: "not this stream's key" }

const FIELDS: ReadonlySet<string> = new Set(['add', 'remove', 'since'])

/** A change from a program or a request body, checked; throws HttpError 400 saying what is wrong. */
export function checkChange(change: unknown): CheckedChange {
  if (change === null || typeof change !== 'object' || Array.isArray(change)) throw new HttpError(400, 'a change is a JSON object: {"add":[...],"remove":[...],"since":"ID"}')
  const c = change as Record<string, unknown>
  for (const k of Object.keys(c)) if (!FIELDS.has(k)) throw new HttpError(400, `unknown field ${JSON.stringify(k)}`)
  const add = names(c, 'add')
  const remove = names(c, 'remove')
  if (add.length + remove.length > MAX_CHANNELS_PER_CHANGE) throw new HttpError(400, `at most ${MAX_CHANNELS_PER_CHANGE} channels in one change`)
  const out: CheckedChange = { add: unique(add), remove: unique(remove) }
  for (const ch of out.add) if (out.remove.includes(ch)) throw new HttpError(400, `channel ${JSON.stringify(ch)} is in both add and remove`)
  const since = c.since
  if (since !== undefined) {
    if (typeof since !== 'string' || since === '' || Buffer.byteLength(since) > MAX_ID_BYTES) throw new HttpError(400, `since must be an event id of 1 to ${MAX_ID_BYTES} bytes`)
    out.since = since
  }
  return out
}

/** `c[field]`: absent, or an array of channel names the stream route would accept. */
function names(c: Record<string, unknown>, field: 'add' | 'remove'): string[] {
  const v = c[field]
  if (v === undefined) return []
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new HttpError(400, `${field} must be an array of channel names`)
  if (v.length > MAX_CHANNELS_PER_CHANGE) throw new HttpError(400, `at most ${MAX_CHANNELS_PER_CHANGE} channels in one change`)
  for (const ch of v as string[]) checkName('channel', ch)
  return v as string[]
}

function unique(xs: readonly string[]): string[] {
  return xs.filter((x, i) => xs.indexOf(x) === i)
}

/** The channels of an answer, or the HttpError it says (404: no such stream); what SseServer.setChannels returns. */
export function channelsOf(a: ChannelsAnswer): readonly string[] {
  if (a === null) throw new HttpError(404, 'unknown client')
  if ('channels' in a) return a.channels
  throw new HttpError(a.status, a.channel === undefined ? a.error : `${a.error}: ${a.channel}`)
}

// ---------------------------------------------------------------- the route

/** The stream id of `/clients/ID/channels`, as it stands in the path; null for any other path. */
export function channelsRouteId(path: string): string | null {
  if (!path.startsWith('/clients/') || !path.endsWith('/channels')) return null
  const id = path.slice('/clients/'.length, -'/channels'.length)
  return id.includes('/') ? null : id
}

const UNKNOWN: Reply = json(404, { error: 'unknown client' })
const NO_BEARER: Reply = json(401, { error: "a bearer is required: the stream's key, or an admin token" }, [['WWW-Authenticate', 'Bearer']])

/**
 * Before the body of a change is read: no bearer at all is a 401, and a body announced over
 * MAX_CHANGE_BODY_BYTES a 413, from the head alone (the connection then closes).
 */
export function beforeChangeBody(req: RequestHead): Reply | null {
  if (bearerToken(req.headers.authorization) === null) return NO_BEARER
  if (!req.chunked && req.contentLength > MAX_CHANGE_BODY_BYTES) return json(413, { error: `a change is at most ${MAX_CHANGE_BODY_BYTES} bytes` })
  return null
}

/**
 * POST /clients/ID/channels. The bearer is tried first as the stream's key, by the process
 * holding the stream, so that a stream's key never reaches an `authenticate` hook; a bearer that
 * is not its key is then tried as an admin token. The body is checked before either: a malformed
 * change is a 400 whoever asks.
 */
export function changeChannels(rawId: string, req: RequestHead, body: Buffer, ctx: RouteContext, peer: Peer): Reply | Promise<Reply> {
  const token = bearerToken(req.headers.authorization)
  if (token === null) return NO_BEARER
  if (body.length > MAX_CHANGE_BODY_BYTES) return json(413, { error: `a change is at most ${MAX_CHANGE_BODY_BYTES} bytes` })
  let change: CheckedChange
  try {
    change = checkChange(parseBody(body))
  } catch (err) {
    if (!(err instanceof HttpError)) throw err
    return json(err.status, { error: err.message })
  }
  if (!/^[1-9]\d{0,15}$/.test(rawId)) return UNKNOWN
  const id = Number(rawId)
  const asAdmin = (who: AuthUser | null): Reply | Promise<Reply> => {
    if (who === null) return json(401, { error: "the bearer is neither this stream's key nor an admin token" }, [['WWW-Authenticate', 'Bearer']])
    if (!hasRole(who, ROLE_ADMIN)) return json(403, { error: `the token lacks the ${ROLE_ADMIN} role` })
    return then(ctx.changeChannels({ q: 'channels', id, change, by: { admin: true } }), replyOf)
  }
  const byKey = ctx.changeChannels({ q: 'channels', id, change, by: { key: keyDigest(token) } })
  return then(byKey, (a) => (a !== null && 'status' in a && a.status === 401 ? then(ctx.authenticate(token, req, peer, false), asAdmin) : replyOf(a)))
}

function parseBody(body: Buffer): unknown {
  if (body.length === 0) throw new HttpError(400, 'a change needs a JSON body: {"add":[...],"remove":[...]}')
  if (!isUtf8(body)) throw new HttpError(400, 'body is not valid UTF-8')
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw new HttpError(400, 'body is not JSON')
  }
}

function replyOf(a: ChannelsAnswer): Reply {
  if (a === null) return UNKNOWN
  if ('channels' in a) return json(200, { channels: a.channels })
  return json(a.status, a.channel === undefined ? { error: a.error } : { error: a.error, channel: a.channel })
}

/** `f(value)`, at once when `value` is not a promise: the one-process path stays synchronous. */
function then<T, R>(value: T | Promise<T>, f: (v: T) => R | Promise<R>): R | Promise<R> {
  return value instanceof Promise ? value.then(f) : f(value)
}
