// Who an event goes to, and whether a stream is one of them: the one rule that the fan-out, a
// replay and a blocked stream's backlog all apply.

import type { ClientView } from './stream.js'

/** Who an event goes to. Every given field must match; none given means every stream. */
export interface Target {
  channel?: string
  user?: string
  role?: string
  client?: number
  filter?: (client: ClientView) => boolean
}

/** What a target is matched against: a stream as the fan-out sees it. */
export interface Matchable extends ClientView {
  readonly id: number
}

/** Does a stream match a target? Cheapest tests first; the filter, user code, last. */
export function matches(c: Matchable, t: Target): boolean {
  if (t.client !== undefined && c.id !== t.client) return false
  if (t.channel !== undefined && !c.channels.includes(t.channel)) return false
  if (t.user !== undefined && c.user !== t.user) return false
  if (t.role !== undefined && !c.roles.includes(t.role)) return false
  if (t.filter !== undefined && !t.filter(c)) return false
  return true
}
