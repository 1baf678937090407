// The tickets of a cluster on Redis (CONTRACT "Tickets": spent once in the whole cluster). Key
// {p}:ticket:DIGEST holds the identity a ticket opens a stream with (JSON), made with the ticket's
// life as its own (SET … PX) and spent by one atomic GETDEL (Redis 6.2 or later): two nodes that
// are shown the ticket at the same moment get it once between them. Only the digest is stored.

import { HttpError } from '../../http/errors.js'
import * as L from '../../limits.js'
import type { AppIdentity } from '../../access/jwt.js'
import { identityFrom, type TicketLedger } from '../../access/tickets.js'
import { within, type RedisLink } from './client.js'
import { unavailable } from './event-stream.js'

export class RedisTickets implements TicketLedger {
  constructor(
    /** The command connection, once the bus has one. */
    private readonly link: () => RedisLink | undefined,
    private readonly prefix: string,
  ) {}

  /** Kept until `expiresAt`; rejects with 503 `bus unavailable` when Redis is away or does not answer. */
  async put(digest: string, identity: AppIdentity, expiresAt: number): Promise<void> {
    const ms = Math.max(1, Math.ceil(expiresAt - Date.now()))
    await this.send(['SET', this.key(digest), JSON.stringify(identity), 'PX', String(ms)])
  }

  /** The identity, and the key gone, in one step; null when there is none (spent, expired, never made). */
  async take(digest: string): Promise<AppIdentity | null> {
    const value = await this.send(['GETDEL', this.key(digest)])
    if (typeof value !== 'string') return null
    try {
      return identityFrom(JSON.parse(value))
    } catch {
      return null // not ours: whoever wrote it could open no stream with it
    }
  }

  private key(digest: string): string {
    return `{${this.prefix}}:ticket:${digest}`
  }

  private send(args: readonly string[]): Promise<unknown> {
    const link = this.link()
    if (link === undefined || !link.ready) return Promise.reject(unavailable())
    return within(link.send(args), L.REDIS_ANSWER_MS, unavailable).catch((err: Error) => {
      // Redis refused the command itself (GETDEL before Redis 6.2, say): said, since nothing else will.
      if (!(err instanceof HttpError)) process.emitWarning(`rawsse: redis refused a ticket command: ${err.message}`)
      throw unavailable()
    })
  }
}
