// A presence change as rawsse tells it (CONTRACT "The server asks and tells the application"):
// the four types, the webhook body (`{"id","type","channel","user","at"}`), its key (one per
// user and per channel: the order of one key's changes is kept), and the signature header.

import { createHmac, randomUUID } from 'node:crypto'

export type PresenceChangeType = 'user.online' | 'user.offline' | 'channel.occupied' | 'channel.vacated'

/** What the `presence` event carries and a webhook's body holds, field for field. */
export interface PresenceChange {
  /** The same for every try of one change. */
  id: string
  type: PresenceChangeType
  /** The channel of a `channel.*` change, else null. */
  channel: string | null
  /** The user of a `user.*` change, else null. */
  user: string | null
  /** When the change happened (the edge, not the telling: a change is told after the grace window), ISO 8601. */
  at: string
}

/** The key of a user's or a channel's changes: `u:NAME` or `c:NAME`. */
export function changeKey(kind: 'channel' | 'user', name: string): string {
  return (kind === 'user' ? 'u:' : 'c:') + name
}

/** A new change of `key` (a changeKey) to `present`, which happened at `atMs` (ms since the epoch). */
export function makeChange(key: string, present: boolean, atMs: number): PresenceChange {
  const name = key.slice(2)
  const user = key.charCodeAt(0) === 117 // 'u'
  const type: PresenceChangeType = user ? (present ? 'user.online' : 'user.offline') : present ? 'channel.occupied' : 'channel.vacated'
  return { id: randomUUID(), type, channel: user ? null : name, user: user ? name : null, at: new Date(atMs).toISOString() }
}

/** `Rawsse-Signature: t=UNIX SECONDS,v1=HEX`, HEX the HMAC-SHA256 of `t.BODY` with the secret. */
export function signature(secret: string, body: string, unixSeconds = Math.floor(Date.now() / 1000)): string {
  const hex = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex')
  return `t=${unixSeconds},v1=${hex}`
}
