// Who may do what: a token maps to a user name (or null), roles, the channels it is granted and
// when it ends. The chain a token goes through (a static token, the `authenticate` hook, a JWT, a
// ticket) and what each failure says to the log. No sockets, no files.
//
// Roles `publish` and `admin` grant rights (POST /publish, POST /tickets; /stats, /metrics, DELETE
// /clients); any other role name is a label that `POST /publish?role=...` can target. Channel
// grants (CONTRACT "Apps", "Tokens an application signs") narrow what a stream may subscribe to
// and a publish may name; maySubscribe(), mayPublish() and mayBroadcast() are the only places that
// read them.

import { createHash, randomBytes } from 'node:crypto'
import type { EventEmitter } from 'node:events'
import { jittered } from '../../wire.js'
import { AuthUrl } from './auth-url.js'
import { hookFailed, type SseServerEvents } from '../events.js'
import { HttpError } from '../http/errors.js'
import { JwtVerifier, looksLikeJwt, type AppIdentity, type JwtConfig } from './jwt.js'
import { AUTHENTICATE_TIMEOUT_MS } from '../limits.js'
import { looksLikeTicket, type TicketStore } from './tickets.js'

export const ROLE_PUBLISH = 'publish'
export const ROLE_ADMIN = 'admin'

/** The identity behind a token: what `ready.user` shows and what targets and rights apply to. */
export interface AuthUser {
  user: string | null
  roles: readonly string[]
  /**
   * The channels it may subscribe to and, with the publish role, publish to: names, or prefixes
   * ending in `*` (`user:alice:*`; `*` alone is every channel). Absent: every channel. (A JWT's
   * `rawsse.channels`, a ticket's or `--auth-url`'s `channels`.)
   */
  grants?: readonly string[]
  /**
   * When it stops being valid, in ms since the epoch; absent: never. A stream opened with it gets
   * `expiring` before and `expired` then (subscriptions.ts).
   */
  expiresAt?: number
}

/** One entry of the `--users` file. */
export interface UserEntry {
  token: string
  user: string
  roles: string[]
}

/** What an `authenticate` hook may look at besides the token. */
export interface AuthRequest {
  method: string
  path: string
  /** Lower-case names, latin1 values. */
  headers: Readonly<Record<string, string>>
  remoteAddress: string | undefined
  /** What follows `?` in the request target, still percent-encoded ('' when none): e.g. the `channel`s a stream asks for. */
  query: string
}

/**
 * The library's `authenticate(token, request)` option: an AuthUser, or null to refuse; now or
 * as a promise (a database, another service). A promise unsettled after AUTHENTICATE_TIMEOUT_MS
 * is a `503` with `Retry-After`; a rejected one, a `500`.
 */
export type Authenticate = (token: string, request: AuthRequest) => AuthUser | null | PromiseLike<AuthUser | null>

export interface TokenConfig {
  tokens?: readonly string[]
  publishTokens?: readonly string[]
  users?: readonly UserEntry[]
}

/**
 * Tokens are looked up by their SHA-256 digest. Hashing first means the time a lookup takes
 * depends on the digest, never on how many leading characters of a secret were right, which
 * is what a constant-time compare protects against, and it stays O(1) with many tokens.
 */
export class TokenTable {
  private readonly byDigest = new Map<string, AuthUser>()

  constructor(config: TokenConfig) {
    for (const t of config.tokens ?? []) this.add(t, { user: null, roles: [] })
    for (const t of config.publishTokens ?? []) this.add(t, { user: null, roles: [ROLE_PUBLISH, ROLE_ADMIN] })
    for (const u of config.users ?? []) this.add(u.token, { user: u.user, roles: [...u.roles] })
  }

  get size(): number {
    return this.byDigest.size
  }

  lookup(token: string): AuthUser | null {
    return this.byDigest.get(digest(token)) ?? null
  }

  /**
   * What the token behind `who` holds in this table: its identity here, null when the token is
   * not here, undefined when `who` came from no table (an `authenticate` hook's). `who` may come
   * from any earlier table, not only the one this replaced: a stream keeps the identity it opened
   * with through every reload that leaves its token alone, and must still be revoked at the one
   * that takes the token away.
   */
  successorOf(who: AuthUser): AuthUser | null | undefined {
    const key = tokenDigests.get(who)
    if (key === undefined) return undefined
    return this.byDigest.get(key) ?? null
  }

  private add(token: string, who: AuthUser): void {
    if (token === '') throw new Error('a token must not be empty')
    const key = digest(token)
    if (this.byDigest.has(key)) throw new Error('the same token is given twice')
    this.byDigest.set(key, who)
    tokenDigests.set(who, key)
  }
}

// The digest of the token behind each identity any table handed out. Weak: an identity goes
// with its table and the last stream that holds it.
const tokenDigests = new WeakMap<AuthUser, string>()

function digest(token: string): string {
  return createHash('sha256').update(token).digest('base64')
}

/** 192 random bits, URL-safe, so it can sit in a path and a URL fragment as is. */
export function generateToken(): string {
  return randomBytes(24).toString('base64url')
}

/** The token of `Authorization: Bearer TOKEN` (RFC 6750 §2.1), or null. */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null
  const m = /^Bearer[ ]+(\S+)$/i.exec(header)
  return m === null ? null : m[1]!
}

export function hasRole(who: AuthUser, role: string): boolean {
  return who.roles.includes(role)
}

/** May `who` open a stream on `channel`? The one check of a stream's channels (and, next, of a change to them). */
export function maySubscribe(who: AuthUser, channel: string): boolean {
  return who.grants === undefined || granted(who.grants, channel)
}

/** May `who` (which has the publish role) publish to `channel`? The one check of a publish's channel. */
export function mayPublish(who: AuthUser, channel: string): boolean {
  return who.grants === undefined || granted(who.grants, channel)
}

/**
 * May `who` (which has the publish role) publish naming no channel: to every stream, or to a
 * user, role or client on whatever channels they are? Only with every channel granted (no grants,
 * or `*` among them): a token held to some channels must not reach streams outside them.
 */
export function mayBroadcast(who: AuthUser): boolean {
  return who.grants === undefined || who.grants.includes('*')
}

const STAR = 42

/** `channel` is one of `grants`, or starts with one that ends in `*` (compared in place: no string is made). */
function granted(grants: readonly string[], channel: string): boolean {
  for (const g of grants) {
    const last = g.length - 1
    if (last >= 0 && g.charCodeAt(last) === STAR) {
      if (channel.length < last) continue
      let i = 0
      while (i < last && channel.charCodeAt(i) === g.charCodeAt(i)) i++
      if (i === last) return true
    } else if (g === channel) {
      return true
    }
  }
  return false
}

/** Validate the parsed JSON of a `--users` file; throws Error saying what is wrong. */
export function parseUsers(json: unknown): UserEntry[] {
  if (!Array.isArray(json)) throw new Error('the users file must hold a JSON array')
  return json.map((entry: unknown, i) => {
    const e = entry as Partial<Record<keyof UserEntry, unknown>> | null
    if (e === null || typeof e !== 'object') throw new Error(`users[${i}] is not an object`)
    if (typeof e.token !== 'string' || e.token === '') throw new Error(`users[${i}].token must be a non-empty string`)
    if (typeof e.user !== 'string' || e.user === '') throw new Error(`users[${i}].user must be a non-empty string`)
    const roles = e.roles ?? []
    if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string')) throw new Error(`users[${i}].roles must be an array of strings`)
    return { token: e.token, user: e.user, roles: roles as string[] }
  })
}

/** The token lists of a server (`tokens`, `publishTokens`, `users`), as its options and updateTokens() give them. */
export interface TokenLists {
  tokens?: readonly string[]
  publishTokens?: readonly string[]
  users?: readonly UserEntry[]
}

/** What an Access is built from: the server's options, and its ticket store. */
export interface AccessOptions {
  lists: TokenLists
  /** The library's `authenticate`: asked after the token lists, before JWTs and tickets. */
  hook?: Authenticate | undefined
  jwt?: JwtConfig | undefined
  tickets: TicketStore
  /** The reconnection time: a 503 for a hook that did not answer says to come back after about this long. */
  retryMs: number
  /** `--auth-url` (asked last, for what nothing before it knows: auth-url.ts), and the server that tells its failures (a log line each). */
  app?: { url: URL | null; events: EventEmitter<SseServerEvents> }
}

/**
 * Who may connect to one server, asked in this order: its token table (replaceable, e.g. on
 * SIGHUP), the `authenticate` hook, a JWT (three dot-separated parts), a ticket, and last the
 * `--auth-url` application (which also hears of a request with no token but a cookie). Also the
 * token generated when the caller chose nobody.
 */
export class Access {
  /** The token generated when no token, user or authenticate hook was given; it has every role. */
  readonly generatedToken: string | null
  private table: TokenTable
  private jwt: JwtVerifier | null
  private readonly hook: Authenticate | undefined
  private readonly tickets: TicketStore
  private readonly retryMs: number
  private readonly app: AuthUrl | null
  /** Why the credential of each request (the key given to authenticate()) was refused: for the log only, never the token. */
  private readonly refusals = new WeakMap<object, string>()

  /** Throws a RangeError saying what is wrong with a JWT secret or key. */
  constructor(o: AccessOptions) {
    const lists = o.lists
    this.hook = o.hook
    this.tickets = o.tickets
    this.retryMs = o.retryMs
    // Any token list given, even an empty one, means the caller chose who may connect. JWT keys
    // do not: the contract generates a token unless --token, --publish-token or --users is given.
    const noAuth = !lists.tokens?.length && !lists.publishTokens?.length && lists.users === undefined && o.hook === undefined
    this.generatedToken = noAuth ? generateToken() : null
    this.table = this.tableOf(lists)
    this.jwt = o.jwt === undefined ? null : verifier(o.jwt, null)
    const app = o.app
    this.app = app === undefined || app.url === null ? null : new AuthUrl(app.url, o.retryMs, (reason) => hookFailed(app.events, { hook: 'auth-url', reason }))
  }

  /**
   * The identity behind `token`, or null: the table first; then the hook (which sees the
   * request); then, for what neither knows, a JWT or (only to open a stream, `forStream`) a
   * ticket, which this spends. A static token, a JWT and a hook that answers at once are answered
   * now; a promise (a hook's, a cluster's ticket store) is waited for at most
   * AUTHENTICATE_TIMEOUT_MS, then rejects with a 503: a request is refused, not held. Throws, or
   * rejects, what the hook does (the request then gets a 500). Why a token was refused is kept
   * for refusalOf(`key`) (the request). Last, for what none of them knows, `--auth-url` (askApp).
   */
  authenticate(token: string, request: () => AuthRequest, forStream: boolean, key: object): AuthUser | null | Promise<AuthUser | null> {
    const known = this.table.lookup(token)
    if (known !== null) return known
    if (this.hook === undefined) return this.afterHook(token, request, forStream, key)
    const who = this.hook(token, request())
    if (isThenable(who)) return this.bounded(who).then((w) => w ?? this.afterHook(token, request, forStream, key))
    return who ?? this.afterHook(token, request, forStream, key)
  }

  /**
   * The last of the chain (CONTRACT `--auth-url`): the application, for a token nobody before it
   * knew, or (`token` null) a request that carries no token but a Cookie or an Authorization that
   * is not Bearer. Null without --auth-url. Throws (or rejects) HttpError 403 or 503.
   */
  askApp(token: string | null, request: () => AuthRequest): AuthUser | null | Promise<AuthUser | null> {
    return this.app === null ? null : this.app.ask(token, request())
  }

  /** What neither the table nor the hook knows: a JWT, a ticket, then the application. */
  private afterHook(token: string, request: () => AuthRequest, forStream: boolean, key: object): AuthUser | null | Promise<AuthUser | null> {
    const who = this.appToken(token, forStream, key)
    if (this.app === null) return who
    return who instanceof Promise ? who.then((w) => w ?? this.askApp(token, request)) : (who ?? this.askApp(token, request))
  }

  /** Close the connections to the application (stop). */
  close(): void {
    this.app?.close()
  }

  /** Why the token of the request `key` was refused (for its log line), if it was. */
  refusalOf(key: object): string | undefined {
    return this.refusals.get(key)
  }

  /** A token an application made: a JWT it signed, or a ticket it asked for. */
  private appToken(token: string, forStream: boolean, key: object): AuthUser | null | Promise<AuthUser | null> {
    if (looksLikeJwt(token)) {
      if (this.jwt === null) return this.refuse(key, 'jwt: no JWT secret or key is configured')
      const r = this.jwt.verify(token)
      return r.ok ? userOf(r.identity) : this.refuse(key, `jwt: ${r.reason}`)
    }
    if (forStream && looksLikeTicket(token)) {
      const spent = this.tickets.spend(token)
      const known = (app: AppIdentity | null): AuthUser | null => (app === null ? this.refuse(key, 'ticket: unknown, spent or expired') : userOf(app))
      return isThenable(spent) ? this.bounded(spent).then(known) : known(spent)
    }
    return null // an unknown token: the answer says all there is to say
  }

  private refuse(key: object, reason: string): null {
    this.refusals.set(key, reason)
    return null
  }

  /** A later answer, or a 503 once AUTHENTICATE_TIMEOUT_MS has passed (the answer is then dropped, a rejection included). */
  private bounded<T>(answer: PromiseLike<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const seconds = Math.ceil(jittered(this.retryMs) / 1000)
        reject(new HttpError(503, 'authentication did not answer in time; try again', [['Retry-After', String(seconds)]]))
      }, AUTHENTICATE_TIMEOUT_MS)
      answer.then(
        (v) => {
          clearTimeout(timer)
          resolve(v)
        },
        (err: unknown) => {
          clearTimeout(timer)
          reject(err)
        },
      )
    })
  }

  /**
   * Replace the token lists (the generated token stays). Returns, for an identity this access
   * handed out, what its token holds now: the new identity, null when the token is gone, or
   * undefined for an identity no table gave (the hook's, a JWT's, a ticket's: not this one's to judge).
   */
  replace(lists: TokenLists): (who: AuthUser) => AuthUser | null | undefined {
    const next = this.tableOf(lists)
    this.table = next
    return (who) => next.successorOf(who)
  }

  /**
   * Replace the JWT secrets and keys (throws a RangeError, and changes nothing, when one is wrong). Returns,
   * for an identity a JWT gave, whether its token still verifies: the same identity, or null; for
   * any other, undefined. Expiry is not looked at here: a stream's own deadline is.
   */
  replaceJwt(config: JwtConfig): (who: AuthUser) => AuthUser | null | undefined {
    const next = verifier(config, this.jwt)
    this.jwt = next
    return (who) => {
      const app = identities.get(who)
      const still = app === undefined ? undefined : next.stillAccepts(app)
      return still === undefined ? undefined : still ? who : null
    }
  }

  /** Signatures checked and tokens answered from the cache (the bench reads them). */
  get jwtCounts(): { verified: number; cached: number } {
    return { ...(this.jwt?.counts ?? { verified: 0, cached: 0 }) }
  }

  private tableOf(lists: TokenLists): TokenTable {
    return new TokenTable({
      tokens: lists.tokens ?? [],
      publishTokens: [...(lists.publishTokens ?? []), ...(this.generatedToken === null ? [] : [this.generatedToken])],
      users: lists.users ?? [],
    })
  }
}

/** A verifier for `config` (on the clock of `before`, when there is one); a RangeError naming what is wrong. */
function verifier(config: JwtConfig, before: JwtVerifier | null): JwtVerifier {
  try {
    return before === null ? new JwtVerifier(config) : before.reload(config)
  } catch (err) {
    throw new RangeError(`jwt: ${(err as Error).message}`)
  }
}

// An application's identity (a JWT's claims, a ticket) as the server's AuthUser, made once per
// identity (the JWT cache hands out the same one for the same token), and back, for a reload.
const users = new WeakMap<AppIdentity, AuthUser>()
const identities = new WeakMap<AuthUser, AppIdentity>()

/** The one place an AppIdentity becomes an AuthUser: its `null`s (every channel, never ends) are absent fields here. */
function userOf(app: AppIdentity): AuthUser {
  let who = users.get(app)
  if (who === undefined) {
    who = { user: app.user, roles: app.roles }
    if (app.grants !== null) who.grants = app.grants
    if (app.expiresAt !== null) who.expiresAt = app.expiresAt
    users.set(app, who)
    identities.set(who, app)
  }
  return who
}

function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as Partial<PromiseLike<unknown>> | null)?.then === 'function'
}
