// The HTTP/1.1 request head parser (RFC 9112 §2–§7, field syntax from RFC 9110 §5): bytes in;
// a parsed head, "need more", or an HttpError out. No sockets, no routing.
//
// The caller keeps the bytes received so far and calls parseHead() again when more arrive.
// We first look for the blank line that ends the head with indexOf (native, fast), and only
// then walk the lines once, so a head trickling in byte by byte costs no repeated parsing.

import { COLON, CR, findHeadEnd, HTAB, LF, SP } from '../../wire.js'
import { ALLOWED_METHODS, HttpError } from './errors.js'
import { MAX_HEAD_BYTES, MAX_HEADER_COUNT, MAX_TARGET_BYTES } from '../limits.js'

const DEL = 127

// tchar (RFC 9110 §5.6.2): the bytes allowed in a method and a field name.
const TOKEN = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TOKEN[c.charCodeAt(0)] = 1
}

// Field value bytes (RFC 9110 §5.5): VCHAR, SP, HTAB and obs-text. Everything else,
// NUL, a bare CR, other controls and DEL, is refused: they are how smuggling starts.
const FIELD_VALUE = new Uint8Array(256)
for (let c = 0; c < 256; c++) FIELD_VALUE[c] = c === HTAB || (c >= SP && c !== DEL) ? 1 : 0

// A method name longer than this cannot be one of ours: refuse it before buffering more.
const MAX_METHOD_BYTES = 32

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS'])

export interface RequestHead {
  method: string
  /** The request target as sent. */
  target: string
  /** The target's path (origin-form), still percent-encoded; `*` for `OPTIONS *`. */
  path: string
  /** What follows `?` in the target, without it; '' when there is none. */
  query: string
  version: '1.0' | '1.1'
  /** Lower-case names. A repeated field is joined with ", " (RFC 9110 §5.3). Values are latin1. */
  headers: Record<string, string>
  /** Whether the connection may carry another request after this one. */
  keepAlive: boolean
  /** -1 when there is no Content-Length. */
  contentLength: number
  chunked: boolean
  expectContinue: boolean
}

export interface ParsedHead {
  head: RequestHead
  /** How many bytes of the buffer the head took, blank line included. */
  length: number
}

/**
 * Parse the request head at the start of `buf`. Returns null while the head is incomplete
 * ("need more" is a result, not an error) and throws HttpError for a head we refuse.
 */
export function parseHead(buf: Buffer, seen = 0): ParsedHead | null {
  // RFC 9112 §2.2: a server SHOULD ignore empty lines received before the request line
  // (some clients send an extra CRLF after a POST body).
  let start = 0
  while (start < buf.length && (buf[start] === LF || (buf[start] === CR && buf[start + 1] === LF))) {
    start += buf[start] === CR ? 2 : 1
  }
  if (start > MAX_HEAD_BYTES) throw new HttpError(431, 'request head too large')

  // `seen`: bytes of `buf` an earlier call already answered "need more" for. The blank line
  // cannot end before them, and the lines that ended inside them were already checked.
  const from = Math.max(start, seen - 3)
  const end = findHeadEnd(buf, from)
  if (end === -1) {
    checkIncomplete(buf, start, Math.max(start, seen))
    return null
  }
  if (end - start > MAX_HEAD_BYTES) throw new HttpError(431, 'request head too large')
  return { head: parseComplete(buf, start), length: end }
}

/**
 * Refuse an unfinished head as soon as it is wrong: over a limit, or a line that has already
 * ended is malformed (garbage, a TLS hello) so it need not hold the connection until the
 * deadline. Only lines that ended after `from` are checked, so a head trickling in byte by byte
 * is checked once, not once per byte.
 */
function checkIncomplete(buf: Buffer, start: number, from: number): void {
  let lineStart = from === start ? start : buf.lastIndexOf(LF, from - 1) + 1
  if (lineStart < start) lineStart = start
  for (;;) {
    const lf = buf.indexOf(LF, lineStart)
    if (lf === -1) break
    const stop = contentEnd(buf, lineStart, lf)
    if (lineStart === start) parseRequestLine(buf, start, stop)
    else fieldLine(buf, lineStart, stop)
    lineStart = lf + 1
  }
  if (lineStart === start) {
    // Still in the request line: tell a long target (414) from a garbage line (400).
    const sp = buf.indexOf(SP, start)
    if (sp === -1) {
      if (buf.length - start > MAX_METHOD_BYTES) throw new HttpError(400, 'malformed request line')
    } else {
      // The target runs to the next space, or to what has arrived so far.
      const sp2 = buf.indexOf(SP, sp + 1)
      if ((sp2 === -1 ? buf.length : sp2) - sp - 1 > MAX_TARGET_BYTES) throw new HttpError(414, 'request target too long')
    }
  }
  if (buf.length - start > MAX_HEAD_BYTES) throw new HttpError(431, 'request head too large')
}

/** Check one field line (RFC 9112 §5); returns where its name ends and its trimmed value lies. */
function fieldLine(buf: Buffer, pos: number, stop: number): { colon: number; vs: number; ve: number } {
  // RFC 9112 §5.2: obs-fold is deprecated; a server may reject it with 400.
  if (buf[pos] === SP || buf[pos] === HTAB) throw new HttpError(400, 'obsolete line folding')
  let colon = pos
  while (colon < stop && TOKEN[buf[colon]!] === 1) colon++
  // RFC 9112 §5.1: no whitespace is allowed between the field name and the colon.
  if (colon === pos || colon === stop || buf[colon] !== COLON) throw new HttpError(400, 'malformed header field')
  let vs = colon + 1
  let ve = stop
  while (vs < ve && (buf[vs] === SP || buf[vs] === HTAB)) vs++
  while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--
  for (let i = vs; i < ve; i++) {
    if (FIELD_VALUE[buf[i]!] !== 1) throw new HttpError(400, 'invalid byte in header value')
  }
  return { colon, vs, ve }
}

function parseComplete(buf: Buffer, start: number): RequestHead {
  let lineEnd = buf.indexOf(LF, start)
  const { method, target, version } = parseRequestLine(buf, start, contentEnd(buf, start, lineEnd))

  const headers: Record<string, string> = Object.create(null) as Record<string, string>
  let count = 0
  let hostCount = 0
  let contentLength: string | null = null
  let transferEncoding: string | null = null
  let connection = ''
  let expect = ''

  let pos = lineEnd + 1
  for (;;) {
    lineEnd = buf.indexOf(LF, pos)
    const stop = contentEnd(buf, pos, lineEnd)
    if (stop === pos) break // the blank line
    if (++count > MAX_HEADER_COUNT) throw new HttpError(431, 'too many header fields')
    const { colon, vs, ve } = fieldLine(buf, pos, stop)
    const name = buf.toString('latin1', pos, colon).toLowerCase()
    const value = buf.toString('latin1', vs, ve)
    switch (name) {
      case 'host':
        hostCount++
        break
      case 'content-length':
        contentLength = mergeContentLength(contentLength, value)
        break
      case 'transfer-encoding':
        transferEncoding = transferEncoding === null ? value : `${transferEncoding}, ${value}`
        break
      case 'connection':
        connection += ',' + value.toLowerCase()
        break
      case 'expect':
        expect = value.toLowerCase()
        break
    }
    const prev = headers[name]
    headers[name] = prev === undefined ? value : `${prev}, ${value}`
    pos = lineEnd + 1
  }

  // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request without Host,
  // or with more than one Host field.
  if (hostCount > 1 || (version === '1.1' && hostCount === 0)) throw new HttpError(400, 'exactly one Host header is required')

  let chunked = false
  if (transferEncoding !== null) {
    // RFC 9112 §6.3: "If a message is received with both a Transfer-Encoding and a
    // Content-Length header field, the Transfer-Encoding overrides the Content-Length. Such a
    // message might indicate an attempt to perform request smuggling". We refuse it outright.
    if (contentLength !== null) throw new HttpError(400, 'both Content-Length and Transfer-Encoding')
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is a faulty framing.
    if (version === '1.0') throw new HttpError(400, 'Transfer-Encoding in HTTP/1.0')
    const codings = transferEncoding.toLowerCase().split(',').map((c) => c.trim())
    // RFC 9112 §6.3 (4): chunked not the final coding means the length cannot be known: MUST 400.
    if (codings[codings.length - 1] !== 'chunked') throw new HttpError(400, 'chunked must be the final transfer coding')
    // RFC 9112 §6.1: a coding we do not implement (gzip, chunked) SHOULD be 501.
    if (codings.length > 1) throw new HttpError(501, 'only chunked transfer coding is supported')
    chunked = true
  }

  const tokens = connection.split(',').map((t) => t.trim())
  const keepAlive = tokens.includes('close') ? false : version === '1.1' || tokens.includes('keep-alive')

  const q = target.indexOf('?')
  let path = q === -1 ? target : target.slice(0, q)
  const query = q === -1 ? '' : target.slice(q + 1)
  // RFC 9112 §3.2.2: a server MUST accept the absolute-form; we route on its path.
  if (path.charCodeAt(0) !== 47 /* / */ && path !== '*') {
    const m = /^https?:\/\/[^/]*/i.exec(path)
    if (m === null) throw new HttpError(400, 'malformed request target')
    path = path.slice(m[0].length) || '/'
  }
  if (path === '*' && method !== 'OPTIONS') throw new HttpError(400, 'malformed request target')

  return {
    method,
    target,
    path,
    query,
    version,
    headers,
    keepAlive,
    // Past 15 digits the number is far over any body limit; the body reader refuses it with 413.
    contentLength: contentLength === null ? -1 : contentLength.length > 15 ? Number.MAX_SAFE_INTEGER : Number(contentLength),
    chunked,
    expectContinue: expect === '100-continue',
  }
}

/** End of a line's content: before its LF, and before a CR that precedes the LF. */
function contentEnd(buf: Buffer, pos: number, lf: number): number {
  return lf > pos && buf[lf - 1] === CR ? lf - 1 : lf
}

function parseRequestLine(buf: Buffer, start: number, stop: number): { method: string; target: string; version: '1.0' | '1.1' } {
  let i = start
  while (i < stop && TOKEN[buf[i]!] === 1) i++
  // Same answer whether the line came whole or in pieces (checkIncomplete refuses long methods too).
  if (i === start || buf[i] !== SP || i - start > MAX_METHOD_BYTES) throw new HttpError(400, 'malformed request line')
  const method = buf.toString('latin1', start, i)

  const ts = ++i
  while (i < stop && buf[i]! > SP && buf[i]! < DEL) i++
  if (i - ts > MAX_TARGET_BYTES) throw new HttpError(414, 'request target too long')
  if (i === ts || buf[i] !== SP) throw new HttpError(400, 'malformed request line')
  const target = buf.toString('latin1', ts, i)

  const version = buf.toString('latin1', i + 1, stop)
  if (!/^HTTP\/\d\.\d$/.test(version)) throw new HttpError(400, 'malformed request line')
  if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') throw new HttpError(505, 'only HTTP/1.0 and HTTP/1.1 are supported')

  // A well-formed method we do not route is a 405, which must list what we do route.
  if (!KNOWN_METHODS.has(method)) throw new HttpError(405, 'method not allowed', [['Allow', ALLOWED_METHODS]])
  return { method, target, version: version === 'HTTP/1.1' ? '1.1' : '1.0' }
}

/**
 * RFC 9112 §6.3: a Content-Length that is not a plain number, or several that differ, make
 * the message length unknowable: 400. Identical repeats (also as a list) are accepted.
 */
function mergeContentLength(prev: string | null, value: string): string {
  let result = prev
  for (const part of value.split(',')) {
    const v = part.trim()
    if (!/^\d+$/.test(v)) throw new HttpError(400, 'invalid Content-Length')
    // Compared as digit strings, so that two huge values that differ are still told apart.
    const digits = v.replace(/^0+(?=\d)/, '')
    if (result !== null && result !== digits) throw new HttpError(400, 'conflicting Content-Length')
    result = digits
  }
  return result!
}
