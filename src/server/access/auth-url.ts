// `--auth-url` (CONTRACT "The server asks and tells the application"): the application says who a
// request is, as nginx's auth_request and nchan's nchan_authorize_request ask. `GET URL` with the
// request's `Authorization` (or `Bearer TOKEN` for a token from the path or the auth cookie) and `Cookie`, and
// `X-Rawsse-Channels`; `200` JSON `{user, roles, channels}` checked field by field (channels as a
// JWT's `rawsse.channels`), `401` → 401, `403` → 403; anything else (no answer in 2 s, a 5xx, an
// answer past 64 KiB or not as said) → 503 with Retry-After and a log line: a stream never opens
// on a guess.
//
// A `200` is remembered for its `Cache-Control: max-age` (none, 0, no-store or no-cache: not at
// all), by the digest of its credential and channels, never used past it, and forgotten within
// AUTH_URL_SWEEP_MS after. Questions for one credential while one is on its way wait for that one:
// a reconnect storm of N streams with one cookie asks once. No sockets of its own: app-http.ts.

import { createHash } from 'node:crypto'
import { jittered, QUERY_CHANNEL } from '../../wire.js'
import { AppClient, AppHttpError, type AppAnswer } from '../app-http.js'
import type { AuthRequest, AuthUser } from './auth.js'
import { HttpError } from '../http/errors.js'
import { isName, isNameList } from './jwt.js'
import * as L from '../limits.js'

interface Remembered {
  who: AuthUser
  /** Used until then (performance.now()). */
  until: number
}

const COMMA = ','

export class AuthUrl {
  private readonly client: AppClient
  private readonly remembered = new Map<string, Remembered>()
  private readonly asking = new Map<string, Promise<AuthUser | null>>()
  private sweeper: NodeJS.Timeout | null = null
  private lastLog = -Infinity
  private unlogged = 0

  constructor(
    url: URL,
    /** The reconnection time: a 503 says to come back after about this long. */
    private readonly retryMs: number,
    /** A log line: why the application's answer was not used (never a credential). */
    private readonly warn: (reason: string) => void,
  ) {
    this.client = new AppClient(url, L.APP_MAX_SOCKETS)
  }

  /**
   * Who the application says the request is: an identity, or null (its 401); a remembered answer
   * now, else a promise. Throws (or rejects) HttpError 403 (its 403) or 503 (anything else).
   * `token`: the credential rawsse found and nobody knew, or null (a request with only a cookie,
   * or an `Authorization` that is not Bearer).
   */
  ask(token: string | null, request: AuthRequest): AuthUser | null | Promise<AuthUser | null> {
    const authorization = request.headers.authorization ?? (token === null ? undefined : `Bearer ${token}`)
    const cookie = request.headers.cookie
    const channels = channelsHeader(request)
    const key = createHash('sha256').update(`${authorization ?? ''}\n${cookie ?? ''}\n${channels}`).digest('base64')
    const known = this.remembered.get(key)
    if (known !== undefined) {
      if (known.until > performance.now()) {
        this.remembered.delete(key) // most recently used last: the first is the one to forget when full
        this.remembered.set(key, known)
        return known.who
      }
      this.remembered.delete(key)
    }
    const underWay = this.asking.get(key)
    if (underWay !== undefined) return underWay
    if (this.asking.size >= L.AUTH_URL_MAX_ASKING) return Promise.reject(this.unavailable(`${L.AUTH_URL_MAX_ASKING} questions are already waiting for the application`))
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'rawsse', 'x-rawsse-channels': channels }
    if (authorization !== undefined) headers.authorization = authorization
    if (cookie !== undefined) headers.cookie = cookie
    const answer = this.client
      .request({ method: 'GET', headers, timeoutMs: L.AUTH_URL_TIMEOUT_MS, maxBytes: L.AUTH_URL_MAX_ANSWER_BYTES })
      .then(
        (a) => this.read(key, a),
        (err: AppHttpError) => {
          throw this.unavailable(err.noAnswer ? `no answer: ${err.message}` : err.message)
        },
      )
      .finally(() => this.asking.delete(key))
    this.asking.set(key, answer)
    return answer
  }

  /** Close the connections (stop). */
  close(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper)
    this.remembered.clear()
    this.client.close()
  }

  /** The application's answer as an identity (remembered for its max-age), null, or an HttpError thrown. */
  private read(key: string, a: AppAnswer): AuthUser | null {
    if (a.status === 401) return null
    if (a.status === 403) throw new HttpError(403, 'forbidden by the application')
    if (a.status !== 200) throw this.unavailable(`answered ${a.status}`)
    let json: unknown
    try {
      json = JSON.parse(a.body.toString('utf8'))
    } catch {
      throw this.unavailable('a 200 whose body is not JSON')
    }
    const who = identityOf(json)
    if (typeof who === 'string') throw this.unavailable(`a 200 whose ${who}`)
    const maxAge = maxAgeOf(a.headers['cache-control'])
    if (maxAge > 0) this.remember(key, who, maxAge)
    return who
  }

  private remember(key: string, who: AuthUser, seconds: number): void {
    if (this.remembered.size >= L.AUTH_URL_CACHE_ENTRIES) this.remembered.delete(this.remembered.keys().next().value!)
    this.remembered.set(key, { who, until: performance.now() + Math.min(seconds, L.AUTH_URL_MAX_AGE_S) * 1000 })
    this.sweeper ??= setInterval(this.sweep, L.AUTH_URL_SWEEP_MS).unref()
  }

  /** Answers past their max-age are forgotten, not only left unused. */
  private readonly sweep = (): void => {
    const now = performance.now()
    for (const [key, r] of this.remembered) if (r.until <= now) this.remembered.delete(key)
    if (this.remembered.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper)
      this.sweeper = null
    }
  }

  /** A 503 with Retry-After, and its log line (at most one per AUTH_URL_LOG_EVERY_MS, with how many were not written). */
  private unavailable(reason: string): HttpError {
    const now = performance.now()
    if (now - this.lastLog >= L.AUTH_URL_LOG_EVERY_MS) {
      this.warn(this.unlogged === 0 ? reason : `${reason} (and ${this.unlogged} more since the last line)`)
      this.lastLog = now
      this.unlogged = 0
    } else {
      this.unlogged++
    }
    const seconds = Math.ceil(jittered(this.retryMs) / 1000)
    return new HttpError(503, 'the application did not answer; try again', [['Retry-After', String(seconds)]])
  }
}

/**
 * `X-Rawsse-Channels`: the channels the request names (a stream with none: `default`), comma-
 * separated; a comma, a `%` or a byte outside visible ASCII in a name is percent-encoded (UTF-8),
 * so that the list splits at commas and fits in a header.
 */
function channelsHeader(request: AuthRequest): string {
  const named = new URLSearchParams(request.query).getAll(QUERY_CHANNEL)
  if (named.length === 0 && (request.path === '/events' || request.path.startsWith('/events/'))) return L.DEFAULT_CHANNEL
  return [...new Set(named)].map((ch) => (/^[!-$&-+\--~]*$/.test(ch) ? ch : encodeChannel(ch))).join(COMMA)
}

function encodeChannel(ch: string): string {
  let out = ''
  for (const byte of Buffer.from(ch, 'utf8')) out += byte > 0x20 && byte < 0x7f && byte !== 0x25 && byte !== 0x2c ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  return out
}

/** `{user, roles, channels}` checked field by field: the identity, or what is wrong (for the log). */
export function identityOf(json: unknown): AuthUser | string {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return 'body is not a JSON object'
  const { user, roles, channels } = json as Record<string, unknown>
  if (user !== undefined && user !== null && !isName(user)) return 'user is not a name (1 to 256 bytes, no CR or LF) or null'
  if (roles !== undefined && !isNameList(roles)) return `roles is not a list of at most ${L.MAX_TOKEN_GRANTS} names`
  if (channels !== undefined && channels !== null && !isNameList(channels)) return `channels is not a list of at most ${L.MAX_TOKEN_GRANTS} names or prefixes`
  const who: AuthUser = { user: typeof user === 'string' ? user : null, roles: Object.freeze([...((roles as string[] | undefined) ?? [])]) }
  if (Array.isArray(channels)) who.grants = Object.freeze([...(channels as string[])])
  return who
}

/** Seconds of `Cache-Control: max-age=N`; 0 when absent, or when no-store or no-cache forbid keeping it. */
export function maxAgeOf(header: string | undefined): number {
  if (header === undefined) return 0
  let seconds = 0
  for (const part of header.toLowerCase().split(COMMA)) {
    const d = part.trim()
    if (d === 'no-store' || d === 'no-cache') return 0
    const m = /^max-age\s*=\s*"?(\d+)"?$/.exec(d)
    if (m !== null) seconds = Number(m[1])
  }
  return seconds
}
