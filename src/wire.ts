// What both ends of the wire share: the SSE defaults (WHATWG HTML §9.2), the reconnection
// jitter, the byte codes of HTTP/1.1 and event streams, and where an HTTP head ends (RFC 9112
// §2.2). The server wing and the client wing each import this file, and nothing of each other.

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
export function findHeadEnd(buf: Buffer, from = 0): number {
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
