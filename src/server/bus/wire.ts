// What the processes of a cluster tell each other of a stream and of an event: plain objects
// that JSON carries, over IPC between a primary and its workers and through Redis between
// machines. One shape each, whatever carries it.

import type { SseMessage } from '../fanout/sse-encode.js'
import type { WireTarget } from '../fanout/target.js'

/**
 * What the cluster knows of one stream, wherever it is: what a target is matched against
 * (fanout/target.ts), what is counted (fanout/counts.ts), and what an action on it elsewhere
 * needs. An attribute added here (and to LISTED) travels and is compared with the rest.
 */
export interface StreamFacts {
  readonly id: number
  readonly user: string | null
  readonly roles: readonly string[]
  readonly channels: readonly string[]
  /** The channels its token may subscribe to; absent: any. */
  readonly grants?: readonly string[]
  /** When its token expires, in ms since the epoch; absent: never. */
  readonly expiresAt?: number
}

/** Every attribute of StreamFacts: one left out here does not compile. */
const LISTED: { readonly [K in keyof Required<StreamFacts>]: true } = { id: true, user: true, roles: true, channels: true, grants: true, expiresAt: true }
const FACTS = Object.keys(LISTED) as ReadonlyArray<keyof StreamFacts>

/** An event as it crosses to another process: its target has no filter. */
export interface WireEvent {
  message: SseMessage
  target: WireTarget
  keep: boolean
}

/**
 * The facts of a stream as a plain object, to send or keep: a Stream of this process is a class
 * with a socket, and only its facts may leave it.
 */
export function factsOf(s: StreamFacts): StreamFacts {
  const f: Record<string, unknown> = {}
  for (const k of FACTS) if (s[k] !== undefined) f[k] = s[k]
  return f as unknown as StreamFacts
}

/** Whether two records of one stream say the same (a snapshot read again, most of it unchanged). */
export function sameFacts(a: StreamFacts, b: StreamFacts): boolean {
  for (const k of FACTS) {
    const x = a[k]
    const y = b[k]
    if (x === y) continue
    if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false
  }
  return true
}
