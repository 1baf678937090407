// What both ends of the wire share: the SSE defaults (WHATWG HTML §9.2), the reconnection
// jitter, rawsse's own vocabulary (docs/wire.md: the events it sends, their data, the query
// names of a stream), the byte codes of HTTP/1.1 and event streams, and where an HTTP head ends
// (RFC 9112 §2.2). The server, client and browser wings each import this file, and nothing of
// each other; it imports nothing at all, and compiles with DOM types or Node's (src/browser/tsconfig.json).

/** The event type of an event that names none; the server omits `event:` for it. */
export const DEFAULT_EVENT = 'message'

/** Reconnection time (ms): the server's default `retry:`, and the client's until a server sends one. */
export const DEFAULT_RETRY_MS = 3_000

/**
 * Every reconnection wait is drawn from [ms, ms × (1 + RETRY_JITTER)): the `retry:` a server
 * sends, its `Retry-After`, a client's wait. Streams dropped together then do not all return in
 * the same millisecond. The contract allows at most 1.5 × `--retry`.
 */
export const RETRY_JITTER = 0.5

/** `ms` with the jitter above; `random` in [0, 1) is a parameter so tests can pin it. */
export function jittered(ms: number, random: number = Math.random()): number {
  return ms + Math.floor(random * ms * RETRY_JITTER)
}

// --- rawsse's vocabulary: what a page or a client reads besides the events it published ---

/** The events rawsse itself sends on a stream. */
export const EVENT_READY = 'ready' // first on every stream: ReadyData
export const EVENT_RESET = 'reset' // the Last-Event-ID could not be placed: ResetData, then live events
export const EVENT_CHANNELS = 'channels' // the stream's channels changed here
export const EVENT_EXPIRING = 'expiring' // the token ends soon: renew it
export const EVENT_EXPIRED = 'expired' // the token ended: the stream ends after this

/** The data of `ready`, as JSON, in this field order. */
export interface ReadyData {
  /** The stream's id: what `POST /publish?client=` and `DELETE /clients/ID` name. */
  client: number
  /** The token's user (`--users`, the authenticate hook); null for a plain token. */
  user: string | null
  /** The channels the stream receives (`default` when it named none). */
  channels: readonly string[]
  /**
   * The stream's secret (128 random bits, base64url): `Authorization: Bearer KEY` on
   * `POST /clients/ID/channels` changes this stream's channels. Known only to its reader.
   */
  key: string
}

/** The data of `expiring` (the token ends at this time: renew it) and of `expired` (it has ended), as JSON. */
export interface ExpiryData {
  /** ISO 8601, UTC. */
  expiresAt: string
}

/** The data of `channels`, as JSON: the stream's channels from this event on. */
export interface ChannelsData {
  channels: readonly string[]
}

/** What `POST /clients/ID/channels` takes, as JSON: channels to add and to remove, and where the added ones' replay starts. */
export interface ChannelChange {
  add?: readonly string[]
  remove?: readonly string[]
  /** Replay the added channels' retained events after this id, right after the `channels` event. */
  since?: string
}

/** The path of the live channels route of stream `id`. */
export const channelsPath = (id: number): string => `/clients/${id}/channels`

/** Why a stream got `reset`: the one reason today, its Last-Event-ID is older than what history keeps (or unknown). */
export const RESET_HISTORY_GAP = 'history-gap'
export type ResetReason = typeof RESET_HISTORY_GAP

/** The data of `reset`, as JSON. */
export interface ResetData {
  reason: ResetReason
}

/** The channel of a stream that names none. */
export const DEFAULT_CHANNEL = 'default'
/** More channels than this on one stream (asked for, or after a change): 400. */
export const MAX_CHANNELS_PER_STREAM = 32

/** Query parameters of the stream route: `?channel=A&channel=B&lastEventId=ID&tag=channel`. */
export const QUERY_CHANNEL = 'channel'
export const QUERY_LAST_EVENT_ID = 'lastEventId'
/**
 * `tag=channel` (the only value): each event published to a channel comes with a `channel: NAME`
 * field line first (TAG_FIELD), so one stream can carry several pages' channels and each page
 * keep its own (docs/wire.md "Tagged streams"). An EventSource ignores the field.
 */
export const QUERY_TAG = 'tag'
export const TAG_CHANNEL = 'channel'
/** The field name of that line: `channel: NAME\n`. */
export const TAG_FIELD = 'channel'

// ASCII codes, named: parsers on both ends compare bytes, never strings.
export const HTAB = 9
export const LF = 10
export const CR = 13
export const SP = 32
export const COLON = 58
export const SEMICOLON = 59

/**
 * Index just past the blank line that ends an HTTP head (CRLF CRLF, or LF LF: RFC 9112 §2.2
 * accepts LF alone as a line end), searching from `from`; -1 while it has not arrived.
 * indexOf is native, so a head trickling in costs one scan of the new bytes, not a re-parse.
 */
export function findHeadEnd(buf: Uint8Array, from = 0): number {
  let i = from
  for (;;) {
    i = buf.indexOf(LF, i)
    if (i === -1) return -1
    const next = i + 1
    if (buf[next] === LF) return next + 1
    if (buf[next] === CR && buf[next + 1] === LF) return next + 2
    i = next
  }
}
