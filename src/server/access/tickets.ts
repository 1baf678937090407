// Tickets: short-lived, single-use stream tokens a backend gets from POST /tickets (CONTRACT
// "Tickets"). What a request may ask for, and the in-process store behind the TicketStore interface.

import { createHash, randomBytes } from 'node:crypto'
import { HttpError } from '../http/errors.js'
import { isName, isNameList, type AppIdentity } from './jwt.js'
import { jsonObject } from './jws-bytes.js'
import { MAX_LIVE_TICKETS, MAX_NAME_BYTES, MAX_TICKET_BODY_BYTES, MAX_TOKEN_GRANTS, TICKET_DEFAULT_TTL_S, TICKET_MAX_TTL_S, TICKET_RANDOM_BYTES, TICKET_SWEEP_MS } from '../limits.js'

/** What a ticket will let in, checked against its caller: ticketRequest()'s result. */
export interface TicketRequest {
  readonly user: string | null
  readonly roles: readonly string[]
  /** Channel names or `prefix*`; null = every channel. */
  readonly channels: readonly string[] | null
  readonly ttlSeconds: number
}

/** What a program asks createTicket() for: the fields of a POST /tickets body. */
export interface TicketOptions {
  /** `ready.user` of the stream it opens; default null. */
  user?: string | null
  /** Default none. */
  roles?: readonly string[]
  /** Channel names or `prefix*` it may subscribe to; default every channel. */
  channels?: readonly string[]
  /** Default 30, at most 300. */
  ttlSeconds?: number
}

/** Who asks for a ticket (the route has checked the publish or admin role): what it may hand on. */
export interface TicketCaller {
  readonly roles: readonly string[]
  /** The caller's own channel grants; null or absent = every channel. */
  readonly grants?: readonly string[] | null
}

export interface TicketIssued {
  readonly ticket: string
  /** ms since the epoch; the route answers it as an ISO time. */
  readonly expiresAt: number
}

/**
 * Where tickets live until spent. The in-process store is MemoryTicketStore; a cluster's store
 * must spend a ticket once in the whole cluster (through the primary with --workers, by one atomic
 * step such as GETDEL with --redis): keep the digest, never the ticket, and make spend() one step.
 */
export interface TicketStore {
  create(request: TicketRequest): TicketIssued | Promise<TicketIssued>
  /** The identity a live, unspent ticket opens a stream with, spending it; else null. */
  spend(ticket: string): AppIdentity | null | Promise<AppIdentity | null>
}

/**
 * Where a cluster keeps tickets, by digest: the primary of --workers (its MemoryTicketStore), or
 * Redis. put() is refused (a TicketRefused or HttpError 503) when it cannot keep one more; take()
 * is one step, so a ticket presented on two processes at once is had by one of them.
 */
export interface TicketLedger {
  put(digest: string, identity: AppIdentity, expiresAt: number): void | Promise<void>
  /** The identity of a live ticket, removing it; else null. */
  take(digest: string): AppIdentity | null | Promise<AppIdentity | null>
}

/** The TicketStore of a process whose tickets a cluster's ledger keeps: the ticket is made here, only its digest travels. */
export function ledgerStore(ledger: TicketLedger, now: () => number = Date.now): TicketStore {
  return {
    async create(request) {
      const { ticket, digest } = newTicket()
      const expiresAt = now() + request.ttlSeconds * 1000
      await ledger.put(digest, ticketIdentity(request), expiresAt)
      return { ticket, expiresAt }
    },
    spend: (ticket) => (looksLikeTicket(ticket) ? ledger.take(ticketDigest(ticket)) : null),
  }
}

/**
 * A ticket's identity as another process or Redis gave it back (JSON), or null when it is not one:
 * whoever can write to that Redis must not be able to make up a shape the server never checked.
 */
export function identityFrom(json: unknown): AppIdentity | null {
  const v = json as Partial<Record<keyof AppIdentity, unknown>> | null
  if (v === null || typeof v !== 'object') return null
  const { user, roles, grants } = v
  if ((user !== null && !isName(user)) || !isNameList(roles) || (grants !== null && !isNameList(grants))) return null
  return Object.freeze({ user, roles: Object.freeze([...roles]), grants: grants === null ? null : Object.freeze([...grants]), expiresAt: null })
}

/** A refusal of POST /tickets with the JSON body to answer (`{"error":…}` and what it names). */
export class TicketRefused extends HttpError {
  constructor(
    status: 400 | 403 | 413 | 503,
    readonly body: Readonly<Record<string, string>>,
    headers: ReadonlyArray<readonly [string, string]> = [],
  ) {
    super(status, body.error, headers)
  }
}

/**
 * The JSON a POST /tickets body holds (undefined for none), or a TicketRefused: 413 past
 * MAX_TICKET_BODY_BYTES, 400 for what is not a JSON object (nesting bounded before it is parsed).
 */
export function ticketBody(body: Buffer): unknown {
  if (body.length > MAX_TICKET_BODY_BYTES) throw new TicketRefused(413, { error: `the body must be at most ${MAX_TICKET_BODY_BYTES} bytes` })
  if (body.length === 0) return undefined
  const json = jsonObject(body)
  if (typeof json === 'string') throw bad(`the body must be a JSON object (${json})`)
  return json
}

const FIELDS = new Set(['user', 'roles', 'channels', 'ttlSeconds'])

/**
 * The ticket a POST /tickets body asks for (`undefined` for no body), or a TicketRefused: 400 for
 * a body that is not what the contract describes, 403 for a role or channel the caller does not
 * hold itself (like a stream naming a channel outside its token). Roles not given: none; channels
 * not given: the caller's; user not given: null.
 */
export function ticketRequest(body: unknown, caller: TicketCaller): TicketRequest {
  if (body === undefined || body === null) body = {}
  if (typeof body !== 'object' || Array.isArray(body)) throw bad('the body must be a JSON object')
  const fields = body as Record<string, unknown>
  for (const f of Object.keys(fields)) if (!FIELDS.has(f)) throw bad(`unknown field ${JSON.stringify(f).slice(0, 64)}`)
  const { user, roles, channels, ttlSeconds } = fields
  if (user !== undefined && user !== null && !isName(user)) throw bad(`user must be 1 to ${MAX_NAME_BYTES} bytes without CR or LF`)
  if (roles !== undefined && !isNameList(roles)) throw bad(`roles must be an array of at most ${MAX_TOKEN_GRANTS} names`)
  if (channels !== undefined && !isNameList(channels)) throw bad(`channels must be an array of at most ${MAX_TOKEN_GRANTS} names`)
  const ttl = ttlSeconds ?? TICKET_DEFAULT_TTL_S
  if (!Number.isInteger(ttl) || (ttl as number) < 1 || (ttl as number) > TICKET_MAX_TTL_S) {
    throw bad(`ttlSeconds must be a whole number from 1 to ${TICKET_MAX_TTL_S}`)
  }
  for (const role of roles ?? []) {
    if (!caller.roles.includes(role)) throw new TicketRefused(403, { error: 'role not allowed', role })
  }
  const held = caller.grants ?? null
  for (const channel of channels ?? []) {
    if (!grantCovers(held, channel)) throw new TicketRefused(403, { error: 'channel not allowed', channel })
  }
  return {
    user: (user as string | null | undefined) ?? null,
    roles: Object.freeze([...(roles ?? [])]),
    channels: channels === undefined ? held : Object.freeze([...channels]),
    ttlSeconds: ttl as number,
  }
}

/** Whether `grants` (names and `prefix*`; null = all) hold `wanted`, itself a name or a `prefix*`. */
export function grantCovers(grants: readonly string[] | null, wanted: string): boolean {
  if (grants === null) return true
  const wantedPrefix = wanted.endsWith('*')
  for (const g of grants) {
    if (g.endsWith('*')) {
      if (wanted.startsWith(g.slice(0, -1))) return true
    } else if (!wantedPrefix && g === wanted) return true
  }
  return false
}

function bad(error: string): TicketRefused {
  return new TicketRefused(400, { error })
}

/** The length of every ticket: base64url of TICKET_RANDOM_BYTES. */
export const TICKET_CHARS = Math.ceil((TICKET_RANDOM_BYTES * 4) / 3)

/** Whether `s` could be a ticket at all (its length and alphabet), before any digest is taken. */
export function looksLikeTicket(s: string): boolean {
  return s.length === TICKET_CHARS && /^[A-Za-z0-9_-]+$/.test(s)
}

/** A new ticket and the digest a store keeps instead of it. */
export function newTicket(): { ticket: string; digest: string } {
  const ticket = randomBytes(TICKET_RANDOM_BYTES).toString('base64url')
  return { ticket, digest: ticketDigest(ticket) }
}

/** SHA-256: a store (or Redis) that leaks shows no ticket anyone could still present. */
export function ticketDigest(ticket: string): string {
  return createHash('sha256').update(ticket).digest('base64url')
}

/** The identity a ticket opens a stream with. No expiresAt: the stream it opened stays open. */
export function ticketIdentity(request: TicketRequest): AppIdentity {
  return Object.freeze({ user: request.user, roles: request.roles, grants: request.channels, expiresAt: null })
}

interface Live {
  identity: AppIdentity
  expiresAt: number
}

export interface MemoryTicketStoreOptions {
  /** ms since the epoch; tests move it. */
  now?: () => number
  /** Live tickets at most (MAX_LIVE_TICKETS). */
  maxLive?: number
}

/**
 * One process's tickets, by digest. Expired ones go in a sweep at most every TICKET_SWEEP_MS, run
 * by create(), and whenever the store is full, so memory is bounded with no timer of its own.
 * put()/take() are the steps a primary answers its workers with.
 */
export class MemoryTicketStore implements TicketStore, TicketLedger {
  private readonly live = new Map<string, Live>()
  private readonly now: () => number
  private readonly maxLive: number
  private lastSweep = -Infinity

  constructor(options: MemoryTicketStoreOptions = {}) {
    this.now = options.now ?? Date.now
    this.maxLive = options.maxLive ?? MAX_LIVE_TICKETS
  }

  /** Tickets neither spent nor swept (some may have expired since the last sweep). */
  get size(): number {
    return this.live.size
  }

  create(request: TicketRequest): TicketIssued {
    const { ticket, digest } = newTicket()
    const expiresAt = this.now() + request.ttlSeconds * 1000
    this.put(digest, ticketIdentity(request), expiresAt)
    return { ticket, expiresAt }
  }

  spend(ticket: string): AppIdentity | null {
    return looksLikeTicket(ticket) ? this.take(ticketDigest(ticket)) : null
  }

  /** Keep a ticket by its digest until `expiresAt`; a TicketRefused 503 when MAX_LIVE_TICKETS are live. */
  put(digest: string, identity: AppIdentity, expiresAt: number): void {
    const now = this.now()
    const soonest = this.live.size >= this.maxLive || now - this.lastSweep >= TICKET_SWEEP_MS ? this.sweep() : Infinity
    if (this.live.size >= this.maxLive) {
      const seconds = Math.max(1, Math.ceil((soonest - now) / 1000))
      throw new TicketRefused(503, { error: 'too many tickets' }, [['Retry-After', String(seconds)]])
    }
    this.live.set(digest, { identity, expiresAt })
  }

  /** Spend the ticket behind `digest`: its identity when it was live, else null. Gone either way. */
  take(digest: string): AppIdentity | null {
    const found = this.live.get(digest)
    if (found === undefined) return null
    this.live.delete(digest)
    return this.now() < found.expiresAt ? found.identity : null
  }

  /** Drop the expired tickets; returns when the soonest live one expires (Infinity when none is). */
  sweep(): number {
    const now = this.now()
    this.lastSweep = now
    let soonest = Infinity
    for (const [digest, t] of this.live) {
      if (now >= t.expiresAt) this.live.delete(digest)
      else if (t.expiresAt < soonest) soonest = t.expiresAt
    }
    return soonest
  }
}
