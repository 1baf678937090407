// Every limit and timeout of the client wing (SseClient, the HTTP reader, the stream parser),
// with its unit and what happens past it. The defaults both ends of the wire share (event
// name, retry, jitter) are in ../wire.ts.

// --- HTTP responses: past each, the response is refused (ResponseError) ---
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024 // no server of ours sends a head near this
export const MAX_RESPONSE_CHUNK_LINE_BYTES = 4 * 1024 // chunk-size line (with extensions) or trailer line
export const MAX_CHUNK_SIZE_DIGITS = 12 // hex digits: chunks up to 256 TiB, and the size stays an exact integer

// --- event streams ---
/**
 * The longest line, and the longest event data (its lines joined), in bytes. A server that never
 * ends a line or an event cannot make us buffer without bound: one byte more and the parser stops
 * with a `too-large` error, whatever the split of the reads. Far above anything rawsse sends
 * (publish bodies are at most 1 MiB).
 */
export const DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024

// --- SseClient ---
export const MAX_BACKOFF_MS = 30_000 // attempts that fail before a stream opens double the wait, up to this (or the server's retry, if longer)
export const HEAD_TIMEOUT_MS = 30_000 // from dialing to the end of the response head; trickled bytes do not extend it; past it the attempt is retried
export const KEEPALIVE_MS = 30_000 // TCP keep-alive probes start after this much silence, so a vanished peer is noticed on a quiet stream
export const MAX_ERROR_BODY_BYTES = 1024 // how much of a refusal's body is kept for the error message
export const SET_CHANNELS_TIMEOUT_MS = 10_000 // setChannels(): no whole answer to its POST within this: rejected (the change may still have been made)
export const MAX_TIMER_MS = 2 ** 31 - 1 // setTimeout fires at once for longer delays; a huge `retry:` waits this long instead (~24.8 days)
