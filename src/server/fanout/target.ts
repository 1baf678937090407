// Who an event goes to, and whether a stream is one of them: the one rule that the fan-out, a
// replay, a blocked stream's backlog and a cluster's presence (who is connected where) all apply;
// and the form of a target that crosses to the other processes of a cluster.

import type { ClientView } from './stream.js'

/** Who an event goes to. Every given field must match; none given means every stream. */
export interface Target {
  channel?: string
  user?: string
  role?: string
  client?: number
  filter?: (client: ClientView) => boolean
}

/** A target as it crosses to another process: plain fields, never a filter (a function cannot). */
export type WireTarget = Omit<Target, 'filter'>

/** What a target is matched against: the fields of a stream every process of a cluster knows. */
export interface Matchable {
  readonly id: number
  readonly user: string | null
  readonly roles: readonly string[]
  readonly channels: readonly string[]
}

/** A target as it crosses to another process; throws TypeError for a filter. */
export function wireTarget(t: Target): WireTarget {
  if (t.filter !== undefined) throw new TypeError('a filter is a function: it cannot cross to the other processes of a cluster')
  const w: WireTarget = {}
  if (t.channel !== undefined) w.channel = t.channel
  if (t.user !== undefined) w.user = t.user
  if (t.role !== undefined) w.role = t.role
  if (t.client !== undefined) w.client = t.client
  return w
}

/**
 * Does a stream match a target? Cheapest tests first; the filter, user code, last. A filter sees
 * a stream of this process (ClientView); another process's stream only ever meets a WireTarget.
 */
export function matches(c: ClientView, t: Target): boolean
export function matches(c: Matchable, t: WireTarget): boolean
export function matches(c: Matchable, t: Target): boolean {
  if (t.client !== undefined && c.id !== t.client) return false
  if (t.channel !== undefined && !c.channels.includes(t.channel)) return false
  if (t.user !== undefined && c.user !== t.user) return false
  if (t.role !== undefined && !c.roles.includes(t.role)) return false
  if (t.filter !== undefined && !t.filter(c as ClientView)) return false
  return true
}
