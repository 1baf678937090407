// Unit tests of the request head parser (src/server/http/head.ts): fields, "need more" at every split
// point, each limit at N and N+1, and each refusal with its exact status (RFC 9112; docs/wire.md "Routes").

import t from 'tap'
import { statusOf } from './helpers.js'
import { parseHead, type ParsedHead } from '../src/server/http/head.js'
import { HttpError } from '../src/server/http/errors.js'
import { MAX_HEAD_BYTES, MAX_HEADER_COUNT, MAX_TARGET_BYTES } from '../src/server/limits.js'

/** Bytes exactly as written: latin1, so '\x80'..'\xff' stay single bytes. */
const b = (s: string): Buffer => Buffer.from(s, 'latin1')


const statusOfHead = (s: string | Buffer): number | string => statusOf(() => parseHead(typeof s === 'string' ? b(s) : s))

/** A parse result as plain data (headers come back as a null-prototype object). */
function plain(p: ParsedHead | null): unknown {
  return p === null ? null : { length: p.length, head: { ...p.head, headers: { ...p.head.headers } } }
}

/** Parse a head that must be complete and valid. */
function must(s: string | Buffer): ParsedHead {
  const p = parseHead(typeof s === 'string' ? b(s) : s)
  if (p === null) throw new Error('expected a complete head, got "need more"')
  return p
}

/** The two assertions the helpers below need from a tap Test. */
interface Asserts {
  same(found: unknown, wanted: unknown, msg: string): boolean
  equal(found: unknown, wanted: unknown, msg: string): boolean
}

/**
 * Feed every proper prefix of `full` (plus `after`, bytes of a next request) and collect the
 * prefix lengths that did not answer "need more"; then check the whole head parses to `want`,
 * also with any number of the following bytes present.
 */
function checkEverySplit(t: Asserts, full: Buffer, after: Buffer = b('')): void {
  const notNull: number[] = []
  for (let i = 0; i < full.length; i++) {
    if (parseHead(full.subarray(0, i)) !== null) notNull.push(i)
  }
  t.same(notNull, [], 'every proper prefix is "need more"')
  const want = plain(must(full))
  t.equal((want as { length: number }).length, full.length, 'the head takes all its bytes')
  const wire = Buffer.concat([full, after])
  const differs: number[] = []
  for (let i = full.length; i <= wire.length; i++) {
    if (JSON.stringify(plain(parseHead(wire.subarray(0, i)))) !== JSON.stringify(want)) differs.push(i)
  }
  t.same(differs, [], 'bytes after the head never change its parse')
}

const HOST = 'Host: example.com\r\n'

t.test('parses a simple GET', (t) => {
  const raw = 'GET /events/tok?channel=a&channel=b HTTP/1.1\r\nHost: example.com\r\n\r\n'
  t.strictSame(plain(parseHead(b(raw))), {
    length: raw.length,
    head: {
      method: 'GET',
      target: '/events/tok?channel=a&channel=b',
      path: '/events/tok',
      query: 'channel=a&channel=b',
      version: '1.1',
      headers: { host: 'example.com' },
      keepAlive: true,
      contentLength: -1,
      chunked: false,
      expectContinue: false,
    },
  })
  t.end()
})

t.test('parses each routed method', (t) => {
  for (const method of ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS']) {
    t.equal(must(`${method} / HTTP/1.1\r\n${HOST}\r\n`).head.method, method, method)
  }
  t.end()
})

t.test('gives an empty query and the whole target as path when there is no "?"', (t) => {
  const h = must(`GET /a/b HTTP/1.1\r\n${HOST}\r\n`).head
  t.equal(h.path, '/a/b')
  t.equal(h.query, '')
  const q = must(`GET /a? HTTP/1.1\r\n${HOST}\r\n`).head
  t.equal(q.path, '/a')
  t.equal(q.query, '')
  t.end()
})

t.test('keeps the path percent-encoded, as sent', (t) => {
  const h = must(`GET /a%2fb%2e%2e?x=%20 HTTP/1.1\r\n${HOST}\r\n`).head
  t.equal(h.path, '/a%2fb%2e%2e')
  t.equal(h.query, 'x=%20')
  t.end()
})

t.test('lower-cases header names and trims whitespace around values', (t) => {
  const h = must(`GET / HTTP/1.1\r\nHOST: example.com\r\nX-Mixed-Case:  \t Some Value\twith tab \t \r\nEmpty:\r\n\r\n`).head
  t.strictSame({ ...h.headers }, { host: 'example.com', 'x-mixed-case': 'Some Value\twith tab', empty: '' })
  t.end()
})

t.test('joins a repeated header with ", "', (t) => {
  const h = must(`GET / HTTP/1.1\r\n${HOST}Accept: text/plain\r\naccept: text/html\r\nACCEPT: */*\r\n\r\n`).head
  t.equal(h.headers['accept'], 'text/plain, text/html, */*')
  t.end()
})

t.test('decides keep-alive by version and Connection', (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['1.1', '', true],
    ['1.1', 'Connection: close\r\n', false],
    ['1.1', 'Connection: Close\r\n', false],
    ['1.1', 'Connection: keep-alive\r\n', true],
    ['1.1', 'Connection: upgrade, close\r\n', false],
    ['1.1', 'Connection: keep-alive\r\nConnection: close\r\n', false],
    ['1.0', '', false],
    ['1.0', 'Connection: keep-alive\r\n', true],
    ['1.0', 'Connection: Keep-Alive\r\n', true],
    ['1.0', 'Connection: foo, keep-alive\r\n', true],
    ['1.0', 'Connection: close\r\n', false],
    ['1.0', 'Connection: keep-alive, close\r\n', false],
  ]
  for (const [version, conn, want] of cases) {
    const h = must(`GET / HTTP/${version}\r\n${HOST}${conn}\r\n`).head
    t.equal(h.version, version)
    t.equal(h.keepAlive, want, `HTTP/${version} ${JSON.stringify(conn)}`)
  }
  t.end()
})

t.test('reports Content-Length, or -1 when there is none', (t) => {
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}\r\n`).head.contentLength, -1)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}Content-Length: 0\r\n\r\n`).head.contentLength, 0)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}Content-Length: 42\r\n\r\n`).head.contentLength, 42)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}content-length:   7  \r\n\r\n`).head.contentLength, 7)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}Content-Length: 0042\r\n\r\n`).head.contentLength, 42)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}\r\n`).head.chunked, false)
  t.end()
})

t.test('accepts identical repeated Content-Lengths, as fields or as a list', (t) => {
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}Content-Length: 5\r\nContent-Length: 5\r\n\r\n`).head.contentLength, 5)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}Content-Length: 5, 5\r\n\r\n`).head.contentLength, 5)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}Content-Length: 5,5\r\n\r\n`).head.contentLength, 5)
  t.end()
})

t.test('reports a chunked body', (t) => {
  const h = must(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n`).head
  t.equal(h.chunked, true)
  t.equal(h.contentLength, -1)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: Chunked\r\n\r\n`).head.chunked, true)
  t.end()
})

t.test('reports Expect: 100-continue', (t) => {
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}Expect: 100-continue\r\n\r\n`).head.expectContinue, true)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}Expect: 100-Continue\r\n\r\n`).head.expectContinue, true)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}\r\n`).head.expectContinue, false)
  t.equal(must(`POST / HTTP/1.1\r\n${HOST}Expect: something-else\r\n\r\n`).head.expectContinue, false)
  t.end()
})

t.test('takes only the head bytes and leaves a pipelined request or body for later', (t) => {
  const first = `GET /one HTTP/1.1\r\n${HOST}\r\n`
  const second = `GET /two HTTP/1.1\r\n${HOST}\r\n`
  const buf = b(first + second)
  const p1 = must(buf)
  t.equal(p1.length, first.length)
  t.equal(p1.head.path, '/one')
  const p2 = must(buf.subarray(p1.length))
  t.equal(p2.length, second.length)
  t.equal(p2.head.path, '/two')

  const post = `POST /publish HTTP/1.1\r\n${HOST}Content-Length: 5\r\n\r\n`
  const p3 = must(post + 'hello')
  t.equal(p3.length, post.length)

  const half = must(first + 'GET /tw')
  t.equal(half.length, first.length, 'half a next request does not matter')
  t.end()
})

t.test('answers "need more" for every proper prefix and the full parse at full length', async (t) => {
  const heads: Record<string, string> = {
    'a simple GET': `GET /events/tok?channel=a HTTP/1.1\r\n${HOST}\r\n`,
    'a POST with several headers': `POST /publish?channel=x&event=y HTTP/1.1\r\n${HOST}Authorization: Bearer pub\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: keep-alive\r\n\r\n`,
    'bare LF line ends': `GET /lf HTTP/1.1\nHost: example.com\nAccept: */*\n\n`,
    'mixed line ends': `GET /mixed HTTP/1.1\r\nHost: example.com\nAccept: */*\r\n\n`,
    'leading empty lines': `\r\n\r\n\nGET /lead HTTP/1.1\r\n${HOST}\r\n`,
    'an HTTP/1.0 request': `GET / HTTP/1.0\r\n\r\n`,
    'a chunked POST': `POST /publish HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n`,
    'obs-text in a value': `GET / HTTP/1.1\r\n${HOST}X-Latin: caf\xe9 \xff\x80\r\n\r\n`,
  }
  for (const [name, raw] of Object.entries(heads)) {
    await t.test(name, async (t) => checkEverySplit(t, b(raw), b(`GET /next HTTP/1.1\r\n${HOST}\r\n`)))
  }
})

t.test('accepts bare LF line endings', (t) => {
  const raw = 'GET /x?y=1 HTTP/1.1\nHost: example.com\nX-A: 1\n\n'
  const p = must(raw)
  t.equal(p.length, raw.length)
  t.equal(p.head.path, '/x')
  t.equal(p.head.version, '1.1')
  t.strictSame({ ...p.head.headers }, { host: 'example.com', 'x-a': '1' })
  t.end()
})

t.test('ignores empty lines before the request line', (t) => {
  for (const lead of ['\r\n', '\r\n\r\n', '\n', '\n\r\n']) {
    const raw = `${lead}GET /after HTTP/1.1\r\n${HOST}\r\n`
    const p = must(raw)
    t.equal(p.head.path, '/after', JSON.stringify(lead))
    t.equal(p.length, raw.length, 'the skipped lines count as consumed')
  }
  t.equal(parseHead(b('\r\n\r\n')), null, 'only empty lines: need more')
  t.end()
})

t.test('routes an absolute-form target on its path', (t) => {
  const p = must(`GET http://example.com/path?x=1 HTTP/1.1\r\n${HOST}\r\n`).head
  t.equal(p.target, 'http://example.com/path?x=1')
  t.equal(p.path, '/path')
  t.equal(p.query, 'x=1')
  t.equal(must(`GET http://example.com:8080/a/b HTTP/1.1\r\n${HOST}\r\n`).head.path, '/a/b')
  t.equal(must(`GET HTTPS://example.com/s HTTP/1.1\r\n${HOST}\r\n`).head.path, '/s')
  t.equal(must(`GET http://example.com HTTP/1.1\r\n${HOST}\r\n`).head.path, '/')
  t.end()
})

t.test('accepts OPTIONS * and refuses GET * with 400', (t) => {
  const p = must(`OPTIONS * HTTP/1.1\r\n${HOST}\r\n`).head
  t.equal(p.method, 'OPTIONS')
  t.equal(p.path, '*')
  t.equal(statusOfHead(`GET * HTTP/1.1\r\n${HOST}\r\n`), 400)
  t.equal(statusOfHead(`POST * HTTP/1.1\r\n${HOST}\r\n`), 400)
  t.end()
})

t.test('refuses a target that is neither origin-form nor absolute-form with 400', (t) => {
  t.equal(statusOfHead(`GET foo HTTP/1.1\r\n${HOST}\r\n`), 400)
  t.equal(statusOfHead(`GET ftp://example.com/x HTTP/1.1\r\n${HOST}\r\n`), 400)
  t.end()
})

t.test('refuses a malformed request line with 400', (t) => {
  const lines: Record<string, string> = {
    'garbage bytes': '\x00\x01\x02\x03',
    'binary garbage with spaces': '\x16\x03\x01 \x02\x00 \x01',
    'a single word': 'GARBAGE',
    'missing version': 'GET /',
    'missing version after a space': 'GET / ',
    'missing target': 'GET HTTP/1.1',
    'two spaces after the method': 'GET  / HTTP/1.1',
    'two spaces before the version': 'GET /  HTTP/1.1',
    'a space after the version': 'GET / HTTP/1.1 ',
    'a tab as separator': 'GET\t/ HTTP/1.1',
    'a leading space': ' GET / HTTP/1.1',
    'lower-case http': 'GET / http/1.1',
    'version without minor': 'GET / HTTP/1',
    'version without dot': 'GET / HTTP/11',
    'a two-digit version': 'GET / HTTP/10.1',
    'a non-token byte in the method': 'G(T / HTTP/1.1',
    'a control byte in the target': 'GET /a\x01b HTTP/1.1',
    'DEL in the target': 'GET /a\x7fb HTTP/1.1',
    'obs-text in the target': 'GET /caf\xe9 HTTP/1.1',
    'a bare CR in the request line': 'GET /\r HTTP/1.1',
    'extra words': 'GET / HTTP/1.1 extra',
  }
  for (const [name, line] of Object.entries(lines)) {
    t.equal(statusOfHead(`${line}\r\n${HOST}\r\n`), 400, name)
  }
  t.end()
})

t.test('refuses a long request line with no space in it before its end, with 400', (t) => {
  t.equal(statusOfHead('A'.repeat(1024)), 400)
  t.end()
})

t.test('refuses an unknown well-formed method with 405 and an Allow header', (t) => {
  for (const method of ['PUT', 'PATCH', 'BREW', 'CONNECT', 'TRACE', 'get']) {
    let caught: unknown = null
    try {
      parseHead(b(`${method} / HTTP/1.1\r\n${HOST}\r\n`))
    } catch (err) {
      caught = err
    }
    t.type(caught, HttpError, method)
    const err = caught as HttpError
    t.equal(err.status, 405, method)
    t.strictSame(
      err.headers.map((h) => [...h]),
      [['Allow', 'GET, HEAD, POST, DELETE, OPTIONS']],
      `${method} lists the allowed methods`,
    )
  }
  t.end()
})

t.test('refuses HTTP versions other than 1.0 and 1.1 with 505', (t) => {
  for (const v of ['HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'HTTP/3.0', 'HTTP/9.9']) {
    t.equal(statusOfHead(`GET / ${v}\r\n${HOST}\r\n`), 505, v)
  }
  t.end()
})

t.test('accepts a target of exactly MAX_TARGET_BYTES and refuses one byte more with 414', (t) => {
  const at = '/' + 'a'.repeat(MAX_TARGET_BYTES - 1)
  const over = at + 'a'
  const p = must(`GET ${at} HTTP/1.1\r\n${HOST}\r\n`)
  t.equal(p.head.target.length, MAX_TARGET_BYTES)
  t.equal(p.head.path, at)
  t.equal(statusOfHead(`GET ${over} HTTP/1.1\r\n${HOST}\r\n`), 414)
  t.end()
})

t.test('refuses a too-long target with 414 while the request line is still arriving', (t) => {
  const over = '/' + 'a'.repeat(MAX_TARGET_BYTES)
  t.equal(statusOfHead(`GET ${over}`), 414, 'no space after the target yet')
  t.equal(statusOfHead(`GET ${over} HTTP/1.1`), 414, 'no line end yet')
  t.equal(statusOfHead(`GET ${over} HTTP/1.1\r`), 414, 'half a CRLF')
  t.equal(parseHead(b(`GET /${'a'.repeat(MAX_TARGET_BYTES - 1)}`)), null, 'exactly the limit so far: need more')
  t.end()
})

t.test('does not refuse a target of exactly MAX_TARGET_BYTES at any split point', (t) => {
  const full = b(`GET /${'a'.repeat(MAX_TARGET_BYTES - 1)} HTTP/1.1\r\n${HOST}\r\n`)
  const refused: Array<[number, number | string]> = []
  for (let i = 0; i < full.length; i++) {
    const s = statusOf(() => parseHead(full.subarray(0, i)))
    if (s !== 'no error') refused.push([i, s])
  }
  t.same(refused, [], 'no prefix is refused')
  t.equal(must(full).length, full.length)
  t.end()
})

/** A complete head of exactly `size` bytes, blank line included, padded in one header value. */
function headOfSize(size: number): Buffer {
  const prefix = `GET / HTTP/1.1\r\n${HOST}X-Pad: `
  const suffix = '\r\n\r\n'
  return b(prefix + 'p'.repeat(size - prefix.length - suffix.length) + suffix)
}

t.test('accepts a head of exactly MAX_HEAD_BYTES and refuses one byte more with 431', (t) => {
  const at = headOfSize(MAX_HEAD_BYTES)
  t.equal(at.length, MAX_HEAD_BYTES)
  t.equal(must(at).length, MAX_HEAD_BYTES)
  const over = headOfSize(MAX_HEAD_BYTES + 1)
  t.equal(statusOfHead(over), 431)
  t.end()
})

t.test('refuses an incomplete head over MAX_HEAD_BYTES with 431', (t) => {
  const line = `GET / HTTP/1.1\r\n${HOST}X-Pad: `
  const atLimit = b(line + 'p'.repeat(MAX_HEAD_BYTES - line.length))
  t.equal(atLimit.length, MAX_HEAD_BYTES)
  t.equal(parseHead(atLimit), null, 'MAX_HEAD_BYTES without an end: need more')
  const over = b(line + 'p'.repeat(MAX_HEAD_BYTES + 1 - line.length))
  t.equal(statusOfHead(over), 431, 'one byte more without an end: 431')
  t.equal(statusOfHead(b(line + 'p'.repeat(4 * MAX_HEAD_BYTES))), 431, 'far over')
  t.end()
})

t.test('never refuses a prefix of a head of exactly MAX_HEAD_BYTES, and refuses the one-byte-longer head only at its last byte', (t) => {
  const at = headOfSize(MAX_HEAD_BYTES)
  const refused: number[] = []
  for (let i = 0; i < at.length; i++) {
    if (statusOf(() => parseHead(at.subarray(0, i))) !== 'no error') refused.push(i)
  }
  t.same(refused, [], 'no prefix refused')
  const over = headOfSize(MAX_HEAD_BYTES + 1)
  t.equal(statusOfHead(over.subarray(0, MAX_HEAD_BYTES)), 'no error', 'MAX_HEAD_BYTES of it: need more')
  t.equal(parseHead(over.subarray(0, MAX_HEAD_BYTES)), null)
  t.equal(statusOfHead(over), 431)
  t.end()
})

t.test('accepts MAX_HEADER_COUNT header fields and refuses one more with 431', (t) => {
  const fields = (n: number): string => {
    let s = HOST
    for (let i = 1; i < n; i++) s += `X-H${i}: v\r\n`
    return s
  }
  const at = must(`GET / HTTP/1.1\r\n${fields(MAX_HEADER_COUNT)}\r\n`).head
  t.equal(Object.keys(at.headers).length, MAX_HEADER_COUNT)
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${fields(MAX_HEADER_COUNT + 1)}\r\n`), 431)
  // Repeats of one name count one each, though they join into one entry.
  let same = HOST
  for (let i = 1; i <= MAX_HEADER_COUNT; i++) same += 'X-Same: v\r\n'
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${same}\r\n`), 431, 'repeated names count too')
  t.end()
})

t.test('refuses control bytes in a header value with 400', (t) => {
  const bad: Record<string, string> = {
    NUL: 'a\x00b',
    'NUL at the start': '\x00ab',
    'NUL at the end': 'ab\x00',
    'a bare CR': 'a\rb',
    'a CR before the CRLF': 'ab\r',
    'a CR at the start': '\rab',
    DEL: 'a\x7fb',
    SOH: 'a\x01b',
    'vertical tab': 'a\x0bb',
    'form feed': 'a\x0cb',
    ESC: 'a\x1bb',
    US: 'a\x1fb',
  }
  for (const [name, value] of Object.entries(bad)) {
    t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}X-Test: ${value}\r\n\r\n`), 400, name)
  }
  t.equal(statusOfHead(`GET / HTTP/1.1\r\nHost: exa\x00mple.com\r\n\r\n`), 400, 'NUL in Host')
  t.end()
})

t.test('accepts obs-text (invalid UTF-8, 0x80-0xFF) in a header value, as latin1', (t) => {
  const raw = Buffer.concat([
    b(`GET / HTTP/1.1\r\n${HOST}X-Bytes: `),
    Buffer.from([0x80, 0xc3, 0x28, 0xff, 0x20, 0xfe]),
    b('\r\n\r\n'),
  ])
  t.equal(must(raw).head.headers['x-bytes'], '\x80\xc3(\xff \xfe')
  t.equal(must(`GET / HTTP/1.1\r\n${HOST}X-Tab: a\tb\r\n\r\n`).head.headers['x-tab'], 'a\tb', 'HTAB inside a value is fine')
  t.end()
})

t.test('refuses obs-fold with 400', (t) => {
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}X-A: one\r\n two\r\n\r\n`), 400, 'space')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}X-A: one\r\n\ttwo\r\n\r\n`), 400, 'tab')
  t.equal(statusOfHead(`GET / HTTP/1.1\n${HOST}X-A: one\n two\n\n`), 400, 'with LF line ends')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n ${HOST}\r\n`), 400, 'whitespace before the first field')
  t.end()
})

t.test('refuses whitespace between a field name and its colon with 400', (t) => {
  t.equal(statusOfHead(`GET / HTTP/1.1\r\nHost : example.com\r\n\r\n`), 400, 'space')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\nHost\t: example.com\r\n\r\n`), 400, 'tab')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}Content-Length : 5\r\n\r\n`), 400, 'Content-Length')
  t.end()
})

t.test('refuses a malformed field name or line with 400', (t) => {
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}: empty-name\r\n\r\n`), 400, 'empty name')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}No-Colon\r\n\r\n`), 400, 'no colon')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}X(y): z\r\n\r\n`), 400, 'non-token byte in the name')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}X\x00Y: z\r\n\r\n`), 400, 'NUL in the name')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}Caf\xe9: z\r\n\r\n`), 400, 'obs-text in the name')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}\rX: z\r\n\r\n`), 400, 'a line starting with a bare CR')
  t.end()
})

t.test('requires exactly one Host in HTTP/1.1 and at most one in HTTP/1.0', (t) => {
  t.equal(statusOfHead('GET / HTTP/1.1\r\n\r\n'), 400, 'HTTP/1.1 without Host')
  t.equal(statusOfHead('GET / HTTP/1.1\r\nAccept: */*\r\n\r\n'), 400, 'HTTP/1.1 with other fields but no Host')
  t.equal(must('GET / HTTP/1.0\r\n\r\n').head.version, '1.0', 'HTTP/1.0 without Host')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}${HOST}\r\n`), 400, 'two Host fields')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n`), 400, 'two Host fields, differing')
  t.equal(statusOfHead(`GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n`), 400, 'two Host fields in HTTP/1.0')
  t.equal(must('GET / HTTP/1.1\r\nHost:\r\n\r\n').head.headers['host'], '', 'an empty Host is allowed (RFC 9112 §3.2)')
  t.end()
})

t.test('refuses a Content-Length that is not a plain number with 400', (t) => {
  for (const v of ['abc', '-1', '+5', '5a', '0x10', '1.5', '1e3', '', ' ', '5,', ',5', '5 5']) {
    t.equal(statusOfHead(`POST / HTTP/1.1\r\n${HOST}Content-Length: ${v}\r\n\r\n`), 400, JSON.stringify(v))
  }
  t.end()
})

t.test('refuses differing Content-Lengths with 400', (t) => {
  t.equal(statusOfHead(`POST / HTTP/1.1\r\n${HOST}Content-Length: 5\r\nContent-Length: 6\r\n\r\n`), 400, 'two fields')
  t.equal(statusOfHead(`POST / HTTP/1.1\r\n${HOST}Content-Length: 5, 6\r\n\r\n`), 400, 'a list')
  t.equal(statusOfHead(`POST / HTTP/1.1\r\n${HOST}Content-Length: 5\r\nContent-Length: 5, 6\r\n\r\n`), 400, 'a field and a list')
  t.equal(
    statusOfHead(`POST / HTTP/1.1\r\n${HOST}Content-Length: 99999999999999999999\r\nContent-Length: 99999999999999999998\r\n\r\n`),
    400,
    'two differing huge values',
  )
  t.end()
})

t.test('refuses Content-Length together with Transfer-Encoding with 400', (t) => {
  t.equal(statusOfHead(`POST / HTTP/1.1\r\n${HOST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`), 400, 'CL first')
  t.equal(statusOfHead(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n`), 400, 'TE first')
  t.equal(statusOfHead(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n`), 400, 'CL 0')
  t.end()
})

t.test('refuses Transfer-Encoding in HTTP/1.0 with 400', (t) => {
  t.equal(statusOfHead(`POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n`), 400)
  t.end()
})

t.test('refuses chunked that is not the final coding with 400, and other codings with 501', (t) => {
  // RFC 9112 §6.3 (4): the final coding not chunked makes the length unknowable: MUST 400.
  t.equal(statusOfHead(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: gzip\r\n\r\n`), 400, 'gzip')
  t.equal(statusOfHead(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked, gzip\r\n\r\n`), 400, 'chunked, gzip')
  // RFC 9112 §6.1: a coding the server does not implement SHOULD be 501.
  t.equal(statusOfHead(`POST / HTTP/1.1\r\n${HOST}Transfer-Encoding: gzip, chunked\r\n\r\n`), 501, 'gzip, chunked')
  t.end()
})

t.test('refuses a method longer than any we route with 400, whole or in pieces', (t) => {
  const head = Buffer.from(`${'A'.repeat(40)} / HTTP/1.1\r\n${HOST}\r\n`)
  t.equal(statusOfHead(head.toString('latin1')), 400, 'whole')
  let status: number | null = null
  for (let i = 1; i <= head.length && status === null; i++) {
    try {
      parseHead(head.subarray(0, i))
    } catch (err) {
      status = (err as HttpError).status
    }
  }
  t.equal(status, 400, 'in pieces')
  t.end()
})

t.test('refuses a malformed line of an unfinished head at once, not at the deadline', (t) => {
  t.equal(statusOfHead('\x00\x01\x02 \x03\n'), 400, 'garbage request line')
  t.equal(statusOfHead('GET / HTTP/1.1 junk\r\n'), 400, 'junk after the version')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST}\x00\x01\x02\r\n`), 400, 'garbage header line')
  t.equal(statusOfHead(`GET / HTTP/1.1\r\n${HOST} folded\r\n`), 400, 'obs-fold before the head ends')
  t.equal(statusOfHead('PUT / HTTP/1.1\r\n'), 405, 'unknown method as soon as the line ends')
  t.end()
})

t.test('gives the same answers fed byte by byte with the "seen" hint as fed whole', (t) => {
  const heads = [
    `GET /events/x?channel=a HTTP/1.1\r\n${HOST}Last-Event-ID: 7\r\n\r\n`,
    `POST /p HTTP/1.1\n${HOST}Content-Length: 3\n\nabc`,
    `GET / HTTP/1.1\r\n${HOST}X: a\x00b\r\n\r\n`,
    `GET / HTTP/1.1\r\n${HOST} fold\r\n\r\n`,
  ]
  for (const text of heads) {
    const buf = Buffer.from(text, 'latin1')
    let whole: string
    try {
      whole = JSON.stringify(parseHead(buf))
    } catch (err) {
      whole = `error ${(err as HttpError).status}`
    }
    let seen = 0
    let fed = 'null'
    for (let i = 1; i <= buf.length; i++) {
      try {
        const r = parseHead(buf.subarray(0, i), seen)
        if (r === null) {
          seen = i
          continue
        }
        fed = JSON.stringify(r)
      } catch (err) {
        fed = `error ${(err as HttpError).status}`
      }
      break
    }
    t.equal(fed, whole, JSON.stringify(text))
  }
  t.end()
})
