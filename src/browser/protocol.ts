// What the browser client needs of the protocol both ends share (WHATWG HTML §9.2 defaults, the
// events and query names rawsse uses). TODO(merge): from wire.ts, once wire.ts has no Node type
// in it (issue 22); then this file goes and its importers import ../wire.js.

/** The event type of an event that names none. */
export const DEFAULT_EVENT = 'message'

/** Reconnection time (ms) until a server sends `retry:`. */
export const DEFAULT_RETRY_MS = 3_000

/** Every reconnection wait is drawn from [ms, ms × (1 + RETRY_JITTER)), as the server's `retry:` is. */
const RETRY_JITTER = 0.5

export function jittered(ms: number, random: number = Math.random()): number {
  return ms + Math.floor(random * ms * RETRY_JITTER)
}

/** Events rawsse sends that the client acts on. */
export const EVENT_READY = 'ready'
export const EVENT_CHANNELS = 'channels'
export const EVENT_EXPIRING = 'expiring'

/** The stream route's query parameter naming a channel (repeated for several). */
export const QUERY_CHANNEL = 'channel'
