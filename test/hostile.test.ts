// Hostile and broken clients over real sockets (127.0.0.1, port 0): every row of the error table
// in docs/wire.md ("Routes"), request smuggling, floods, garbage, slow-loris, pipelining,
// half-closes and resets. Each reply is asserted byte for byte, and after each bad input the
// server must still serve everyone else: a stream opened before it gets an event published
// after it, and a new stream and a new publish work. The server runs in this process, so a
// crash fails the run.

import t, { type Test } from 'tap'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import type { SseServerOptions } from '../src/index.js'
import { KEEP_ALIVE_IDLE_MS, MAX_BODY_BYTES, MAX_HEAD_BYTES, MAX_HEADER_COUNT, MAX_TARGET_BYTES } from '../src/server/limits.js'
import { chunk, openStream, PUB, publish, RawClient, rng, sleep, STREAM_HEAD, TOKEN, startServer, type Running } from './helpers.js'

// ------------------------------------------------------------------ expected bytes

/** Bytes exactly as written: latin1, so '\x00'..'\xff' stay single bytes. */
const b = (s: string): Buffer => Buffer.from(s, 'latin1')

/** A refusal from the error table: status, extra headers, short text body, `Connection: close`. */
function refusal(status: number, reason: string, message: string, extraHeaders = ''): string {
  const body = message + '\n'
  return (
    `HTTP/1.1 ${status} ${reason}\r\n` +
    extraHeaders +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n' +
    '\r\n' +
    body
  )
}
const bad = (message: string): string => refusal(400, 'Bad Request', message)
const ALLOW_ALL = 'Allow: GET, HEAD, POST, DELETE, OPTIONS\r\n'
const R405 = refusal(405, 'Method Not Allowed', 'method not allowed', ALLOW_ALL)
const R505 = refusal(505, 'HTTP Version Not Supported', 'only HTTP/1.0 and HTTP/1.1 are supported')
const R414 = refusal(414, 'URI Too Long', 'request target too long')
const R431 = refusal(431, 'Request Header Fields Too Large', 'request head too large')
const R431_COUNT = refusal(431, 'Request Header Fields Too Large', 'too many header fields')
const R413 = refusal(413, 'Content Too Large', 'request body too large')
const R408 = refusal(408, 'Request Timeout', 'request head or body not received in time')
const R400_LINE = bad('malformed request line')
const R400_FIELD = bad('malformed header field')
const R400_BYTE = bad('invalid byte in header value')
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n'

/** Every Date header (RFC 9110 §5.6.7 IMF-fixdate) replaced by `<DATE>`, so replies compare as literals. */
const undate = (s: string): string =>
  s.replace(/\r\nDate: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT\r\n/g, '\r\nDate: <DATE>\r\n')

/** A plain (non-stream) reply as response.ts frames it, Date normalised. */
function plainReply(status: string, o: { type?: string; body?: string; headers?: string; close?: boolean; head?: boolean } = {}): string {
  const body = o.body ?? ''
  let s = `HTTP/1.1 ${status}\r\nDate: <DATE>\r\n`
  if (o.type !== undefined) s += `Content-Type: ${o.type}\r\n`
  if (!status.startsWith('204')) s += `Content-Length: ${Buffer.byteLength(body)}\r\n`
  s += 'Access-Control-Allow-Origin: *\r\n' + (o.headers ?? '')
  if (o.close === true) s += 'Connection: close\r\n'
  return s + '\r\n' + (o.head === true ? '' : Buffer.from(body).toString('latin1'))
}
const JSON_TYPE = 'application/json; charset=utf-8'
const TEXT_TYPE = 'text/plain; charset=utf-8'
const json200 = (body: string, close = false): string => plainReply('200 OK', { type: JSON_TYPE, body, close })
const notFound = (close = false, head = false): string => plainReply('404 Not Found', { type: TEXT_TYPE, body: 'not found\n', close, head })
const R204 = plainReply('204 No Content', {
  headers:
    'Access-Control-Allow-Methods: GET, HEAD, POST, DELETE, OPTIONS\r\n' +
    'Access-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID\r\n' +
    'Access-Control-Max-Age: 86400\r\n',
})

/** One event chunk as a RawClient sees it (latin1), whatever characters `text` holds. */
const wire = (text: string): string => Buffer.from(chunk(text)).toString('latin1')

// ------------------------------------------------------------------ sockets

interface Exchange {
  /** Everything received, latin1. */
  text: string
  /** The server ended the connection (FIN or reset) before our timeout. */
  closed: boolean
}

/**
 * Connect, write `parts` (strings are latin1; several parts are separate writes `gapMs` apart),
 * optionally half-close, and collect everything until the server closes or `timeoutMs` passes.
 */
function exchange(port: number, parts: string | Buffer | Array<string | Buffer>, opts: { timeoutMs?: number; end?: boolean; gapMs?: number } = {}): Promise<Exchange> {
  const list = Array.isArray(parts) ? parts : [parts]
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let closed = false
    const s = net.connect(port, '127.0.0.1', async () => {
      s.setNoDelay(true)
      for (let i = 0; i < list.length && !closed; i++) {
        const p = list[i]!
        s.write(typeof p === 'string' ? b(p) : p)
        if (opts.gapMs !== undefined && i < list.length - 1) await sleep(opts.gapMs)
      }
      if (opts.end === true && !closed) s.end()
    })
    const timer = setTimeout(() => {
      s.destroy()
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed: false })
    }, opts.timeoutMs ?? 3000)
    s.on('data', (d: Buffer) => chunks.push(d))
    s.on('end', () => (closed = true))
    s.on('error', () => (closed = true)) // a reset is the server closing too
    s.on('close', () => {
      clearTimeout(timer)
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed: true })
    })
  })
}

/** Assert that `input` got exactly `expected` and then the server closed the connection. */
async function refused(t: Test, port: number, input: string | Buffer | Array<string | Buffer>, expected: string, what: string, timeoutMs = 3000): Promise<void> {
  const r = await exchange(port, input, { timeoutMs })
  t.equal(r.text, expected, `${what}: exact reply`)
  t.ok(r.closed, `${what}: the server closed the connection`)
}

/** A request head with Host; `lines` are extra header lines without CRLF. */
function req(requestLine: string, ...lines: string[]): string {
  return [requestLine, 'Host: 127.0.0.1', ...lines].join('\r\n') + '\r\n\r\n'
}

/** Deterministic random bytes, so a failing garbage case can be replayed. */
function randomBytes(seed: number, n: number): Buffer {
  const next = rng(seed)
  const out = Buffer.alloc(n)
  for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256)
  return out
}

async function statsOf(base: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}/stats`, { headers: { authorization: `Bearer ${PUB}` } })
  return (await res.json()) as Record<string, unknown>
}

/** Poll /stats until `clients` is `n`; returns the last count seen. */
async function clientsBecome(base: string, n: number, timeoutMs = 3000): Promise<number> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const c = (await statsOf(base)).clients as number
    if (c === n || Date.now() > deadline) return c
    await sleep(20)
  }
}

/** The events a stream received after its `ready` chunk. */
function afterReady(c: RawClient): string {
  const i = c.received.indexOf('event: ready\n')
  if (i === -1) return ''
  return c.received.slice(c.received.indexOf('\n\n\r\n', i) + 4)
}

// ------------------------------------------------------------------ "the server still serves everyone"

let tagSeq = 0

/** The stream opened before the bad input gets a new event; a new stream and a new publish work. */
async function stillServes(t: Test, srv: Running, before: RawClient): Promise<void> {
  const tag = `still-alive-${++tagSeq}`
  const r1 = await publish(srv.base, '', tag)
  t.equal(r1.status, 200, 'publish after the bad input works')
  await before.waitFor(chunk(`id: ${String(r1.json.id)}\ndata: ${tag}\n\n`))
  t.pass('the stream opened before the bad input got the event published after it')
  const fresh = await openStream(srv.port, `/events/${TOKEN}`)
  t.ok(fresh.received.startsWith(STREAM_HEAD), 'a new stream opens')
  const r2 = await publish(srv.base, '', `${tag}-2`)
  await fresh.waitFor(chunk(`id: ${String(r2.json.id)}\ndata: ${tag}-2\n\n`))
  await before.waitFor(chunk(`id: ${String(r2.json.id)}\ndata: ${tag}-2\n\n`))
  t.pass('the new stream and the old one both got the next event')
  fresh.close()
}

/** Run `fn` against a fresh server with one stream already open, then check the server still serves. */
async function guarded(t: Test, opts: SseServerOptions, fn: (srv: Running, before: RawClient) => Promise<void>): Promise<void> {
  const srv = await startServer(t, opts)
  const before = await openStream(srv.port, `/events/${TOKEN}`)
  // connection.ts reports an unexpected exception (answered 500) as a process warning.
  const warnings: string[] = []
  const onWarning = (w: Error): void => {
    if (w.message.startsWith('rawsse:')) warnings.push(w.message)
  }
  process.on('warning', onWarning)
  try {
    await fn(srv, before)
    await stillServes(t, srv, before)
    t.same(warnings, [], 'no internal error on the way')
  } finally {
    process.off('warning', onWarning)
    before.close()
  }
}

// ================================================================== the error table

t.test('refuses a malformed request line with 400 and closes', (t) =>
  guarded(t, {}, async ({ port }) => {
    const cases: Array<[string, string]> = [
      ['no target, no version', 'GARBAGE\r\nHost: x\r\n\r\n'],
      ['no version', 'GET /\r\nHost: x\r\n\r\n'],
      ['two spaces', 'GET  / HTTP/1.1\r\nHost: x\r\n\r\n'],
      ['leading space', ' GET / HTTP/1.1\r\nHost: x\r\n\r\n'],
      ['trailing space', 'GET / HTTP/1.1 \r\nHost: x\r\n\r\n'],
      ['lower-case version', 'GET / http/1.1\r\nHost: x\r\n\r\n'],
      ['version without minor', 'GET / HTTP/1\r\nHost: x\r\n\r\n'],
      ['tab as separator', 'GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n'],
      ['non-token byte in method', 'G(T / HTTP/1.1\r\nHost: x\r\n\r\n'],
      ['space inside the target', 'GET /a b HTTP/1.1\r\nHost: x\r\n\r\n'],
      ['DEL in the target', 'GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n'],
      ['bare CR ending the line', 'GET / HTTP/1.1\rHost: x\r\n\r\n'],
    ]
    await Promise.all(cases.map(([what, input]) => refused(t, port, input, R400_LINE, what)))
    await refused(t, port, 'GET stats HTTP/1.1\r\nHost: x\r\n\r\n', bad('malformed request target'), 'target neither a path nor absolute')
  }),
)

t.test('refuses a malformed header field with 400 and closes', (t) =>
  guarded(t, {}, async ({ port }) => {
    const cases: Array<[string, string, string]> = [
      ['no colon', 'GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n', R400_FIELD],
      ['space before the colon', 'GET / HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n', R400_FIELD],
      ['empty field name', 'GET / HTTP/1.1\r\nHost: x\r\n: value\r\n\r\n', R400_FIELD],
      ['non-token byte in the name', 'GET / HTTP/1.1\r\nHost: x\r\nX(Y): z\r\n\r\n', R400_FIELD],
      ['non-ASCII byte in the name', 'GET / HTTP/1.1\r\nHost: x\r\nX-\xe9: z\r\n\r\n', R400_FIELD],
      ['no Host in HTTP/1.1', 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n', bad('exactly one Host header is required')],
      ['two Host fields', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', bad('exactly one Host header is required')],
    ]
    await Promise.all(cases.map(([what, input, expected]) => refused(t, port, input, expected, what)))
  }),
)

t.test('refuses an unknown method with 405 and the Allow header', (t) =>
  guarded(t, {}, async ({ port }) => {
    for (const m of ['PUT', 'PATCH', 'TRACE', 'BREW', 'get']) {
      await refused(t, port, req(`${m} / HTTP/1.1`), R405, m)
    }
    await refused(t, port, req('CONNECT 127.0.0.1:443 HTTP/1.1'), R405, 'CONNECT')
    // A known method on a route that does not take it lists that route's methods.
    await refused(t, port, req('DELETE /publish HTTP/1.1'), refusal(405, 'Method Not Allowed', 'DELETE is not allowed here', 'Allow: POST, OPTIONS\r\n'), 'DELETE /publish')
    await refused(t, port, req('POST /events/tok HTTP/1.1', 'Content-Length: 0'), refusal(405, 'Method Not Allowed', 'POST is not allowed here', 'Allow: GET, HEAD, OPTIONS\r\n'), 'POST /events')
  }),
)

t.test('refuses an HTTP version other than 1.0 and 1.1 with 505', (t) =>
  guarded(t, {}, async ({ port }) => {
    for (const v of ['HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'HTTP/3.0']) {
      await refused(t, port, req(`GET /stats ${v}`), R505, v)
    }
  }),
)

t.test('refuses a request target over 8 KiB with 414, and takes one of exactly 8 KiB', (t) =>
  guarded(t, {}, async ({ port }) => {
    const target = (n: number): string => '/' + 'a'.repeat(n - 1)
    t.equal(target(MAX_TARGET_BYTES).length, 8192)
    const atLimit = await exchange(port, req(`GET ${target(MAX_TARGET_BYTES)} HTTP/1.1`, 'Connection: close'))
    t.equal(undate(atLimit.text), notFound(true), 'exactly 8192 bytes: routed (404 from a server without files)')
    t.ok(atLimit.closed)
    await refused(t, port, req(`GET ${target(MAX_TARGET_BYTES + 1)} HTTP/1.1`), R414, '8193 bytes')
    // Target and head both over their limits: either answer (docs/wire.md "Routes").
    const both = await exchange(port, req(`GET ${target(4 * MAX_TARGET_BYTES)} HTTP/1.1`))
    t.ok(both.text === R414 || both.text === R431, `32 KiB target, head over 16 KiB too: 414 or 431: ${JSON.stringify(both.text.slice(0, 40))}`)
    t.ok(both.closed)
    // A request line that never ends: refused as soon as the target is over the limit,
    // long before the 10 s head deadline.
    await refused(t, port, `GET ${target(MAX_TARGET_BYTES + 100)}`, R414, 'unfinished request line')
  }),
)

t.test('refuses a request head over 16 KiB with 431, and takes one of exactly 16 KiB', (t) =>
  guarded(t, {}, async ({ port }) => {
    // The whole head, blank line included, is `size` bytes.
    const head = (size: number): string => {
      const fixed = req('GET /x HTTP/1.1', 'Connection: close', 'X-Pad: ')
      return req('GET /x HTTP/1.1', 'Connection: close', 'X-Pad: ' + 'p'.repeat(size - fixed.length))
    }
    t.equal(head(MAX_HEAD_BYTES).length, 16384)
    const atLimit = await exchange(port, head(MAX_HEAD_BYTES))
    t.equal(undate(atLimit.text), notFound(true), 'exactly 16384 bytes: routed')
    t.ok(atLimit.closed)
    await refused(t, port, head(MAX_HEAD_BYTES + 1), R431, '16385 bytes')
    // Header lines that never end with a blank line: refused once over the limit, without waiting.
    await refused(t, port, 'GET / HTTP/1.1\r\nHost: x\r\n' + 'X-A: b\r\n'.repeat(3000), R431, 'unfinished head')
    // 16 KiB of empty lines before the request line (RFC 9112 §2.2 lets us skip a few).
    await refused(t, port, '\r\n'.repeat(MAX_HEAD_BYTES), R431, '16 KiB of blank lines')
  }),
)

t.test('refuses a body over 1 MiB with 413, by Content-Length and by chunks, and takes exactly 1 MiB', (t) =>
  // Events up to 2 MiB here, so that what is tested is the body limit, not maxEventBytes.
  guarded(t, { maxBufferBytes: 2 * MAX_BODY_BYTES, maxEventBytes: 2 * MAX_BODY_BYTES }, async ({ port }) => {
    const post = (query: string, ...lines: string[]): string => req(`POST /publish?${query} HTTP/1.1`, `Authorization: Bearer ${PUB}`, 'Connection: close', ...lines)
    const mib = 'm'.repeat(MAX_BODY_BYTES)

    const exact = await exchange(port, [post('channel=void&id=exact', `Content-Length: ${MAX_BODY_BYTES}`), mib], { timeoutMs: 5000 })
    t.equal(undate(exact.text), json200('{"id":"exact","delivered":0}', true), 'Content-Length of exactly 1 MiB is read')

    await refused(t, port, post('channel=void', `Content-Length: ${MAX_BODY_BYTES + 1}`), R413, 'Content-Length 1 MiB + 1, refused before any body byte')
    await refused(t, port, post('channel=void', 'Content-Length: 99999999999999999999999'), R413, 'Content-Length past 2^53')
    await refused(t, port, [post('channel=void', `Content-Length: ${MAX_BODY_BYTES + 1}`), mib + 'm'], R413, 'Content-Length 1 MiB + 1 with the whole body')

    // Chunked: two chunks of 512 KiB are exactly 1 MiB; one more byte is over.
    const half = (MAX_BODY_BYTES / 2).toString(16)
    const halfData = 'c'.repeat(MAX_BODY_BYTES / 2)
    const chunkedExact = await exchange(port, [post('channel=void&id=chunked-exact', 'Transfer-Encoding: chunked'), `${half}\r\n${halfData}\r\n`, `${half}\r\n${halfData}\r\n0\r\n\r\n`], { timeoutMs: 5000 })
    t.equal(undate(chunkedExact.text), json200('{"id":"chunked-exact","delivered":0}', true), 'chunked body of exactly 1 MiB is read')
    await refused(t, port, [post('channel=void', 'Transfer-Encoding: chunked'), `${half}\r\n${halfData}\r\n`, `${half}\r\n${halfData}\r\n1\r\nx\r\n0\r\n\r\n`], R413, 'chunked body growing to 1 MiB + 1')
    await refused(t, port, [post('channel=void', 'Transfer-Encoding: chunked'), 'fffffffffffffffffffff\r\n'], R413, 'one huge chunk size')
  }),
)

t.test('reads a chunked request body correctly, at any split', (t) =>
  guarded(t, {}, async ({ port }, before) => {
    const data = 'first line\nsecond ✓ line — ünïcode'
    const bytes = Buffer.from(data)
    // Chunks of 3, 7, 1 and the rest bytes: the ✓ is cut across chunks. Upper-case hex, a chunk
    // extension, a bare-LF line end and a trailer field are all legal (RFC 9112 §7.1).
    const sizes = [3, 7, 1, bytes.length - 11]
    let body = Buffer.alloc(0)
    let at = 0
    sizes.forEach((n, i) => {
      const sizeLine = i === 1 ? `${n.toString(16).toUpperCase()};name="value"\r\n` : i === 2 ? `${n.toString(16)}\n` : `${n.toString(16)}\r\n`
      body = Buffer.concat([body, b(sizeLine), bytes.subarray(at, at + n), b('\r\n')])
      at += n
    })
    body = Buffer.concat([body, b('0\r\nX-Trailer: ignored\r\n\r\n')])
    const head = (id: string): Buffer => b(req(`POST /publish?id=${id} HTTP/1.1`, `Authorization: Bearer ${PUB}`, 'Transfer-Encoding: chunked', 'Content-Type: text/plain; charset=utf-8', 'Connection: close'))
    const expectedEvent = (id: string): string => wire(`id: ${id}\ndata: first line\ndata: second ✓ line — ünïcode\n\n`)

    const whole = await exchange(port, Buffer.concat([head('c1'), body]))
    t.equal(undate(whole.text), json200('{"id":"c1","delivered":1}', true), 'one write')
    t.ok(whole.closed)
    await before.waitFor(expectedEvent('c1'))

    // Every byte of the body in its own write.
    const bytewise = await exchange(port, [head('c2'), ...[...body].map((x) => Buffer.from([x]))], { gapMs: 1, timeoutMs: 5000 })
    t.equal(undate(bytewise.text), json200('{"id":"c2","delivered":1}', true), 'byte by byte')
    await before.waitFor(expectedEvent('c2'))

    // Chunk framing errors are 400s.
    const h = head('bad')
    await refused(t, port, Buffer.concat([h, b('zz\r\nab\r\n0\r\n\r\n')]), bad('malformed chunk size'), 'non-hex size')
    await refused(t, port, Buffer.concat([h, b('2\r\nabX0\r\n\r\n')]), bad('malformed chunked body'), 'no CRLF after the data')
    await refused(t, port, Buffer.concat([h, b('1;' + 'e'.repeat(2000) + '\r\nx\r\n0\r\n\r\n')]), bad('chunk line too long'), 'chunk extension over 1 KiB')
    t.notMatch(before.received, /id: bad/, 'no refused body was published')
  }),
)

t.test('answers 408 when the head or body is not complete within headTimeoutMs', (t) =>
  guarded(t, { headTimeoutMs: 300 }, async ({ port }) => {
    await Promise.all([
      refused(t, port, 'GET /st', R408, 'unfinished request line'),
      refused(t, port, 'GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthoriz', R408, 'unfinished header'),
      refused(t, port, 'GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n', R408, 'no blank line'),
      refused(t, port, req('POST /publish HTTP/1.1', `Authorization: Bearer ${PUB}`, 'Content-Length: 10') + 'abc', R408, 'body shorter than its Content-Length'),
      refused(t, port, req('POST /publish HTTP/1.1', `Authorization: Bearer ${PUB}`, 'Transfer-Encoding: chunked') + '3\r\nabc\r\n', R408, 'chunked body without its last chunk'),
      refused(t, port, req('POST /publish HTTP/1.1', `Authorization: Bearer ${PUB}`, 'Transfer-Encoding: chunked') + '3\r\nabc\r\n0\r\nX-Trailer: x\r\n', R408, 'trailer never ended'),
      // One answered request, then half of the next one: the 204, then the 408.
      (async () => {
        const r = await exchange(port, req('OPTIONS * HTTP/1.1') + 'GET /stats HT')
        t.equal(undate(r.text), R204 + R408, 'a second pipelined request left unfinished')
        t.ok(r.closed)
      })(),
      // A connection that sends nothing at all is closed too (with or without a 408).
      (async () => {
        const r = await exchange(port, [])
        t.ok(r.closed, 'a silent connection is closed')
        t.ok(r.text === '' || r.text === R408, 'and gets nothing or a 408')
      })(),
    ])
  }),
)

t.test('a head or body trickling in byte by byte does not extend the deadline (slow-loris)', (t) =>
  guarded(t, { headTimeoutMs: 300 }, async ({ port }) => {
    const trickle = async (what: string, whole: string, startAt: number): Promise<void> => {
      const c = await RawClient.open(port)
      c.socket.setNoDelay(true)
      c.write(whole.slice(0, startAt))
      let sent = startAt
      const timer = setInterval(() => {
        if (!c.closed && sent < whole.length) c.write(whole[sent++]!)
      }, 20)
      try {
        // At 20 ms a byte the whole request would take many seconds; the 408 must come first.
        await c.waitFor(R408, 4000)
        t.ok(sent < whole.length, `${what}: the 408 came while bytes were still trickling in (${sent} of ${whole.length} sent)`)
        await c.waitClosed()
        t.equal(c.received, R408, `${what}: exact reply`)
        t.ok(c.closed, `${what}: closed`)
      } finally {
        clearInterval(timer)
        c.close()
      }
    }
    const head = req('GET /stats HTTP/1.1', `Authorization: Bearer ${PUB}`, 'X-Pad: ' + 'p'.repeat(400))
    const post = req('POST /publish HTTP/1.1', `Authorization: Bearer ${PUB}`, 'Content-Length: 400')
    const chunked = req('POST /publish HTTP/1.1', `Authorization: Bearer ${PUB}`, 'Transfer-Encoding: chunked')
    await Promise.all([
      trickle('head', head, 0),
      trickle('Content-Length body', post + 'd'.repeat(400), post.length),
      trickle('chunked body', chunked + '1\r\nd\r\n'.repeat(100) + '0\r\n\r\n', chunked.length),
    ])
  }),
)

t.test('refuses a stream over maxClients with 503 and Retry-After', (t) =>
  guarded(t, { maxClients: 2 }, async (srv) => {
    const second = await openStream(srv.port, `/events/${TOKEN}`)
    const r = await exchange(srv.port, req(`GET /events/${TOKEN} HTTP/1.1`))
    const m = /^HTTP\/1\.1 503 Service Unavailable\r\nRetry-After: (\d+)\r\n/.exec(r.text)
    t.ok(m !== null, `503 with a Retry-After in seconds: ${JSON.stringify(r.text)}`)
    t.equal(r.text, refusal(503, 'Service Unavailable', 'too many streams', `Retry-After: ${m?.[1] ?? '?'}\r\n`), 'exact reply')
    t.ok(r.closed)
    t.equal(srv.server.clientCount, 2, 'the refused request did not become a stream')
    second.close()
    t.equal(await clientsBecome(srv.base, 1), 1, 'a closed stream frees its place')
  }),
)

// ================================================================== hostile inputs

t.test('refuses a header flood: 100 fields are read, 101 get 431', (t) =>
  guarded(t, {}, async ({ port }) => {
    const fields = (n: number): string[] => ['Connection: close', ...Array.from({ length: n - 2 }, (_, i) => `X-Flood-${i}: ${i}`)] // + Host
    t.equal(req('GET /x HTTP/1.1', ...fields(MAX_HEADER_COUNT)).split('\r\n').length - 3, MAX_HEADER_COUNT)
    const atLimit = await exchange(port, req('GET /x HTTP/1.1', ...fields(MAX_HEADER_COUNT)))
    t.equal(undate(atLimit.text), notFound(true), '100 header fields')
    await refused(t, port, req('GET /x HTTP/1.1', ...fields(MAX_HEADER_COUNT + 1)), R431_COUNT, '101 header fields')
    await refused(t, port, req('GET /x HTTP/1.1', ...fields(1000).map(() => 'A: b')), R431_COUNT, '1000 tiny header fields')
  }),
)

t.test('refuses control bytes in a header value with 400', (t) =>
  guarded(t, {}, async ({ port }) => {
    const cases: Array<[string, string]> = [
      ['NUL', 'X-A: a\x00b'],
      ['NUL at the end', 'X-A: ab\x00'],
      ['bare CR', 'X-A: a\rb'],
      ['SOH', 'X-A: \x01'],
      ['DEL', 'X-A: a\x7f'],
      ['NUL in Authorization', `Authorization: Bearer ${PUB}\x00`],
    ]
    await Promise.all(cases.map(([what, line]) => refused(t, port, req('GET /stats HTTP/1.1', line), R400_BYTE, what)))
    // obs-text (0x80-0xff) is a legal field value byte (RFC 9110 §5.5).
    const ok = await exchange(port, req('GET /x HTTP/1.1', 'X-A: caf\xe9', 'Connection: close'))
    t.equal(undate(ok.text), notFound(true), 'obs-text is accepted')
  }),
)

t.test('refuses obs-fold (a header line starting with whitespace) with 400', (t) =>
  guarded(t, {}, async ({ port }) => {
    const R = bad('obsolete line folding')
    await refused(t, port, 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n', R, 'space fold')
    await refused(t, port, 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tfolded\r\n\r\n', R, 'tab fold')
    // Whitespace before the first field (RFC 9112 §2.2) is the classic smuggling vector.
    await refused(t, port, 'GET / HTTP/1.1\r\n Host: x\r\n\r\n', R, 'whitespace before the first field')
    await refused(t, port, `POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nX-A: a\r\n Content-Length: 3\r\n\r\nabc`, R, 'a folded Content-Length')
  }),
)

t.test('refuses duplicate differing or invalid Content-Length with 400 (RFC 9112 §6.3)', (t) =>
  guarded(t, {}, async ({ port }, before) => {
    const post = (...lines: string[]): string => req('POST /publish?id=dup HTTP/1.1', `Authorization: Bearer ${PUB}`, 'Connection: close', ...lines)
    const conflicting = bad('conflicting Content-Length')
    const invalid = bad('invalid Content-Length')
    await refused(t, port, post('Content-Length: 3', 'Content-Length: 4') + 'abcd', conflicting, 'two fields')
    await refused(t, port, post('Content-Length: 3, 4') + 'abcd', conflicting, 'a list')
    await refused(t, port, post('Content-Length: 4', 'Content-Length: 3') + 'abc', conflicting, 'bigger first')
    for (const v of ['-3', '+3', '3.0', '0x3', '3 3', '', '3a', '\xb9']) {
      await refused(t, port, post(`Content-Length: ${v}`) + 'abc', invalid, `Content-Length: ${JSON.stringify(v)}`)
    }
    // Identical repeats leave the length known, so they are accepted.
    const same = await exchange(port, post('Content-Length: 3', 'Content-Length: 3') + 'abc')
    t.equal(undate(same.text), json200('{"id":"dup","delivered":1}', true), 'identical repeats are accepted')
    await before.waitFor(chunk('id: dup\ndata: abc\n\n'))
  }),
)

t.test('refuses Content-Length with Transfer-Encoding (request smuggling), and never answers the smuggled request', (t) =>
  guarded(t, {}, async ({ port }, before) => {
    const auth = `Authorization: Bearer ${PUB}`
    const smuggled = `POST /publish?event=smuggled HTTP/1.1\r\nHost: x\r\n${auth}\r\nContent-Length: 3\r\n\r\nbad`
    const both = bad('both Content-Length and Transfer-Encoding')
    // CL.TE: a front end trusting Content-Length sees one request; one trusting chunked sees two.
    await refused(t, port, `POST /publish HTTP/1.1\r\nHost: x\r\n${auth}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n` + smuggled, both, 'CL.TE')
    // TE.CL: the other order.
    const inner = `GET /stats HTTP/1.1\r\nHost: x\r\n${auth}\r\n\r\n`
    await refused(t, port, `POST /publish HTTP/1.1\r\nHost: x\r\n${auth}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${Buffer.byteLength(inner).toString(16)}\r\n${inner}\r\n0\r\n\r\n` + smuggled, both, 'TE.CL')
    await refused(t, port, `POST /publish HTTP/1.1\r\nHost: x\r\n${auth}\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n` + smuggled, both, 'CL 0 with TE')
    // Transfer-Encoding variants that a lenient parser might take as chunked.
    const te501 = refusal(501, 'Not Implemented', 'only chunked transfer coding is supported')
    // RFC 9112 §6.3: chunked not the final coding leaves the length unknown: 400.
    const notFinal = bad('chunked must be the final transfer coding')
    await refused(t, port, `POST /publish HTTP/1.1\r\nHost: x\r\n${auth}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n` + smuggled, notFinal, 'xchunked')
    await refused(t, port, `POST /publish HTTP/1.1\r\nHost: x\r\n${auth}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n` + smuggled, notFinal, 'chunked, then identity')
    await refused(t, port, `POST /publish HTTP/1.1\r\nHost: x\r\n${auth}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n` + smuggled, notFinal, 'chunked, gzip')
    await refused(t, port, `POST /publish HTTP/1.1\r\nHost: x\r\n${auth}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n` + smuggled, te501, 'gzip, chunked')
    await refused(t, port, `POST /publish HTTP/1.0\r\n${auth}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n` + smuggled, bad('Transfer-Encoding in HTTP/1.0'), 'chunked in HTTP/1.0')
    // Events arrive in publish order: had the smuggled request been answered, its event would
    // come before this one.
    const r = await publish(`http://127.0.0.1:${port}`, 'id=after-smuggling', 'after')
    t.equal(r.status, 200)
    await before.waitFor(chunk('id: after-smuggling\ndata: after\n\n'))
    t.notMatch(before.received, /smuggled|data: bad/, 'the smuggled request was never published')
  }),
)

t.test('answers random binary garbage with 400 and closes, without waiting for a blank line', (t) =>
  // A short head deadline, so that a server that waits for the end of a head it could already
  // refuse shows up as a 408 instead of a 400.
  guarded(t, { headTimeoutMs: 800 }, async ({ port }) => {
    const seeds = [1, 2, 3, 4, 5, 6, 7, 8]
    await Promise.all(seeds.map((seed) => refused(t, port, Buffer.concat([randomBytes(seed, 1024), b('\r\n\r\n')]), R400_LINE, `garbage ending in a blank line, seed ${seed}`, 2000)))
    await Promise.all(seeds.map((seed) => refused(t, port, randomBytes(seed, 1024), R400_LINE, `garbage, seed ${seed}`, 2000)))
    // A TLS ClientHello sent to the plain-HTTP port.
    const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), randomBytes(99, 501)])
    await refused(t, port, hello, R400_LINE, 'TLS ClientHello', 2000)
    // The smallest forms of the same: the first line is complete and bad; the head is not done.
    await refused(t, port, 'GET / HTTP/1.1 junk\r\n', R400_LINE, 'bad request line, head unfinished', 2000)
    await refused(t, port, '\x00\x01\x02 \x03\n', R400_LINE, 'binary request line, head unfinished', 2000)
    await refused(t, port, 'GET / HTTP/1.1\r\nHost: x\r\n\x00\x01\x02\r\n', R400_FIELD, 'bad header line, head unfinished', 2000)
  }),
)

t.test('answers a publish body that is not valid UTF-8 with 400 JSON and publishes nothing', (t) =>
  guarded(t, {}, async ({ port }, before) => {
    const auth = `Authorization: Bearer ${PUB}`
    const R = (close: boolean): string => plainReply('400 Bad Request', { type: JSON_TYPE, body: '{"error":"body is not valid UTF-8"}', close })
    const bodies: Array<[string, Buffer]> = [
      ['0xff', Buffer.from([0xff])],
      ['truncated sequence', Buffer.from([0x61, 0xc3])],
      ['overlong slash', Buffer.from([0xc0, 0xaf])],
      ['UTF-16 surrogate', Buffer.from([0xed, 0xa0, 0x80])],
      ['past U+10FFFF', Buffer.from([0xf4, 0x90, 0x80, 0x80])],
      ['valid text, then 0xfe', Buffer.concat([Buffer.from('valid ✓ then '), Buffer.from([0xfe])])],
    ]
    for (const [what, body] of bodies) {
      const r = await exchange(port, [req('POST /publish HTTP/1.1', auth, `Content-Length: ${body.length}`, 'Connection: close'), body])
      t.equal(undate(r.text), R(true), what)
      t.ok(r.closed, `${what}: closed`)
    }
    const form = Buffer.concat([b('data='), Buffer.from([0xff, 0xfe])])
    const rf = await exchange(port, [req('POST /publish HTTP/1.1', auth, 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${form.length}`, 'Connection: close'), form])
    t.equal(undate(rf.text), R(true), 'a form body with raw invalid bytes')
    // It is a refusal of the data, not of the framing: the connection stays usable.
    const bad2 = Buffer.from([0x80])
    const ka = await exchange(port, [
      req('POST /publish HTTP/1.1', auth, `Content-Length: ${bad2.length}`),
      bad2,
      req('POST /publish?id=utf8-ok HTTP/1.1', auth, 'Content-Length: 4', 'Connection: close') + 'fine',
    ])
    t.equal(undate(ka.text), R(false) + json200('{"id":"utf8-ok","delivered":1}', true), 'the next request on the connection is answered')
    await before.waitFor(chunk('id: utf8-ok\ndata: fine\n\n'))
    t.equal(afterReady(before), chunk('id: utf8-ok\ndata: fine\n\n'), 'no invalid body became an event')
  }),
)

/** Split pipelined responses by their Content-Length (1xx, 204 and 304 have no body). */
function splitResponses(text: string): Array<{ head: string; status: number; body: string }> {
  const out: Array<{ head: string; status: number; body: string }> = []
  let pos = 0
  while (pos < text.length) {
    const end = text.indexOf('\r\n\r\n', pos)
    if (end === -1) break
    const head = text.slice(pos, end + 4)
    const status = Number(head.slice(9, 12))
    const m = /\r\nContent-Length: (\d+)\r\n/i.exec(head)
    const len = status < 200 || status === 204 || status === 304 || m === null ? 0 : Number(m[1])
    out.push({ head, status, body: text.slice(end + 4, end + 4 + len) })
    pos = end + 4 + len
  }
  return out
}

t.test('answers 5000 tiny pipelined requests sent in one write, all in order, on one connection', (t) =>
  guarded(t, {}, async ({ port }) => {
    const N = 5000
    const auth = `Authorization: Bearer ${PUB}`
    const parts: string[] = []
    for (let i = 0; i < N; i++) {
      const close = i === N - 1 ? ['Connection: close'] : []
      if (i % 3 === 0) parts.push(req('OPTIONS /x HTTP/1.1', ...close))
      else if (i % 3 === 1) parts.push(req('GET /stats HTTP/1.1', auth, ...close))
      else parts.push(req(`POST /publish?channel=void&id=p${i} HTTP/1.1`, auth, 'Content-Length: 1', ...close) + 'x')
    }
    const r = await exchange(port, parts.join(''), { timeoutMs: 15000 })
    t.ok(r.closed, 'closed after the last request (Connection: close)')
    const responses = splitResponses(undate(r.text))
    t.equal(responses.length, N, 'one response per request')
    const wrong: string[] = []
    let published = 0
    responses.forEach((res, i) => {
      const close = i === N - 1
      const whole = res.head + res.body
      if (i % 3 === 0) {
        const expected = close ? R204.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n') : R204
        if (whole !== expected) wrong.push(`${i}: ${whole}`)
      } else if (i % 3 === 1) {
        const stats = JSON.parse(res.body) as { clients: number; published: number }
        if (whole !== json200(res.body, close) || stats.clients !== 1 || stats.published !== published) wrong.push(`${i}: ${whole}`)
      } else {
        if (whole !== json200(`{"id":"p${i}","delivered":0}`, close)) wrong.push(`${i}: ${whole}`)
        published++
      }
    })
    t.equal(wrong.length, 0, 'every response is the answer to its own request, in order')
    t.same(wrong.slice(0, 3), [], 'the first wrong ones')
    t.equal(responses.reduce((n, x) => n + x.head.length + x.body.length, 0), undate(r.text).length, 'nothing after the last response')
  }),
)

t.test('answers several pipelined requests on one keep-alive connection in order, at any split', (t) =>
  guarded(t, {}, async ({ port }) => {
    const auth = `Authorization: Bearer ${PUB}`
    // Each exchange publishes its own ids: an id the history still holds would be refused (409).
    const pipeline = (run: string): string =>
      req('OPTIONS * HTTP/1.1') +
      req('GET /nope HTTP/1.1') +
      req(`POST /publish?channel=void&id=k1${run} HTTP/1.1`, auth, 'Content-Length: 2') +
      'hi' +
      req('DELETE /clients/999 HTTP/1.1', auth) +
      req('POST /publish HTTP/1.1', 'Content-Length: 0') +
      req('POST /publish HTTP/1.1', `Authorization: Bearer ${TOKEN}`, 'Content-Length: 0') +
      // RFC 9112 §2.2: an extra CRLF after a body is ignored.
      '\r\n' +
      req('HEAD /nope HTTP/1.1') +
      req(`POST /publish?channel=void&id=k2${run} HTTP/1.1`, auth, 'Transfer-Encoding: chunked') +
      '2\r\nho\r\n0\r\n\r\n' +
      req('GET /nope HTTP/1.1', 'Connection: close')
    const expected = (run: string): string =>
      R204 +
      notFound() +
      json200(`{"id":"k1${run}","delivered":0}`) +
      plainReply('404 Not Found', { type: JSON_TYPE, body: '{"closed":0,"error":"unknown client"}' }) +
      plainReply('401 Unauthorized', { type: JSON_TYPE, body: '{"error":"a valid bearer token is required"}', headers: 'WWW-Authenticate: Bearer\r\n' }) +
      plainReply('403 Forbidden', { type: JSON_TYPE, body: '{"error":"the token lacks the publish role"}' }) +
      notFound(false, true) +
      json200(`{"id":"k2${run}","delivered":0}`) +
      notFound(true)
    const whole = await exchange(port, pipeline('a'))
    t.equal(undate(whole.text), expected('a'), 'one write')
    t.ok(whole.closed)
    const bytewise = await exchange(port, [...pipeline('b')], { gapMs: 0, timeoutMs: 8000 })
    t.equal(undate(bytewise.text), expected('b'), 'one byte per write')
    t.ok(bytewise.closed)
    const requests = pipeline('c')
    const cut = Math.floor(requests.length / 3)
    const thirds = await exchange(port, [requests.slice(0, cut), requests.slice(cut, 2 * cut), requests.slice(2 * cut)], { gapMs: 20 })
    t.equal(undate(thirds.text), expected('c'), 'three writes')
  }),
)

t.test('sends 100 Continue before reading a body the client holds back', (t) =>
  guarded(t, {}, async ({ port }, before) => {
    const auth = `Authorization: Bearer ${PUB}`
    const c = await RawClient.open(port)
    c.write(b(req('POST /publish?id=cont HTTP/1.1', auth, 'Content-Length: 5', 'Expect: 100-continue', 'Connection: close')))
    await c.waitFor(CONTINUE)
    t.equal(c.received, CONTINUE, 'the interim response, and nothing else yet')
    c.write('hello')
    await c.waitClosed()
    t.equal(undate(c.received), CONTINUE + json200('{"id":"cont","delivered":1}', true), 'then the final response')
    await before.waitFor(chunk('id: cont\ndata: hello\n\n'))

    const d = await RawClient.open(port)
    d.write(b(req('POST /publish?id=cont2 HTTP/1.1', auth, 'Transfer-Encoding: chunked', 'Expect: 100-Continue', 'Connection: close')))
    await d.waitFor(CONTINUE)
    d.write('5\r\nworld\r\n0\r\n\r\n')
    await d.waitClosed()
    t.equal(undate(d.received), CONTINUE + json200('{"id":"cont2","delivered":1}', true), 'chunked, with a capitalised expectation')

    // A body that would be refused anyway gets its refusal at once, never a 100.
    await refused(t, port, req('POST /publish HTTP/1.1', auth, `Content-Length: ${MAX_BODY_BYTES + 1}`, 'Expect: 100-continue'), R413, 'too big: 413, no 100 Continue')
  }),
)

t.test('a client that half-closes right after its requests still gets every response', (t) =>
  guarded(t, {}, async ({ port }, before) => {
    const auth = `Authorization: Bearer ${PUB}`
    // Whether the FIN is seen before the answer is written is up to the kernel: with or without `Connection: close`.
    const eitherClose = (s: string, open: string, closed: string): boolean => s === open || s === closed
    const one = await exchange(port, req('POST /publish?id=half HTTP/1.1', auth, 'Content-Length: 4') + 'half', { end: true })
    const body = '{"id":"half","delivered":1}'
    t.ok(eitherClose(undate(one.text), json200(body), json200(body, true)), `one request: ${JSON.stringify(one.text)}`)
    t.ok(one.closed, 'then closed')
    await before.waitFor(chunk('id: half\ndata: half\n\n'))

    const three = await exchange(port, req('OPTIONS * HTTP/1.1') + req('GET /nope HTTP/1.1') + req('POST /publish?channel=void&id=h3 HTTP/1.1', auth, 'Content-Length: 1') + 'x', { end: true })
    const res = splitResponses(undate(three.text))
    t.equal(res.length, 3, 'three pipelined requests, three responses')
    t.equal(res[0]!.head, R204)
    t.equal(res[1]!.head + res[1]!.body, notFound())
    t.ok(eitherClose(res[2]!.head + res[2]!.body, json200('{"id":"h3","delivered":0}'), json200('{"id":"h3","delivered":0}', true)))
    t.ok(three.closed)

    const many = await exchange(port, req('GET /stats HTTP/1.1', auth).repeat(300), { end: true, timeoutMs: 5000 })
    t.equal(splitResponses(undate(many.text)).filter((r) => r.status === 200).length, 300, '300 pipelined /stats then FIN: 300 answers')
    t.ok(many.closed)

    // A request that can never be completed is refused (as Node does), not left hanging.
    await Promise.all([
      (async () => {
        const partial = await exchange(port, 'GET /stats HTTP/1.1\r\nHost: x\r\n', { end: true })
        t.equal(partial.text, bad('incomplete request head'), 'half a head and a FIN')
        t.ok(partial.closed)
      })(),
      (async () => {
        const partial = await exchange(port, req('POST /publish HTTP/1.1', auth, 'Content-Length: 10') + 'abc', { end: true })
        t.equal(partial.text, bad('incomplete request body'), 'half a body and a FIN')
        t.ok(partial.closed)
      })(),
    ])
  }),
)

// ================================================================== resets

t.test('streams that reset or close during a fan-out do not disturb the others', (t) =>
  guarded(t, {}, async (srv, before) => {
    const N = 50
    const E = 200
    const random = rng(42)
    const streams = await Promise.all(Array.from({ length: N }, () => openStream(srv.port, `/events/${TOKEN}`)))
    // Half of them go, each at its own publish, in one of several ways.
    const order = [...streams.keys()].sort(() => random() - 0.5)
    const hows = ['reset', 'reset', 'destroy', 'end', 'paused-reset'] as const
    const victims = new Map<number, { at: number; how: (typeof hows)[number] }>()
    for (const i of order.slice(0, N / 2)) victims.set(i, { at: Math.floor(random() * E), how: hows[Math.floor(random() * hows.length)]! })
    for (const [i, v] of victims) if (v.how === 'paused-reset') streams[i]!.socket.pause() // lets unsent bytes pile up first

    const pad = 'x'.repeat(1000)
    const ids: string[] = []
    for (let e = 0; e < E; e++) {
      for (const [i, v] of victims) {
        if (v.at !== e) continue
        const s = streams[i]!.socket
        if (v.how === 'destroy') s.destroy()
        else if (v.how === 'end') s.end()
        else s.resetAndDestroy()
      }
      const r = await publish(srv.base, '', `e${e}-${pad}`)
      if (r.status !== 200) t.fail(`publish ${e}: ${r.status}`)
      ids.push(String(r.json.id))
    }
    const survivors = [before, ...streams.filter((_, i) => !victims.has(i))]
    const last = wire(`id: ${ids[E - 1]!}\ndata: e${E - 1}-${pad}\n\n`)
    await Promise.all(survivors.map((s) => s.waitFor(last, 8000)))
    const expected = ids.map((id, e) => wire(`id: ${id}\ndata: e${e}-${pad}\n\n`)).join('')
    const wrong = survivors.filter((s) => afterReady(s) !== expected).length
    t.equal(wrong, 0, `each of the ${survivors.length} survivors got every event exactly once, in order`)
    t.equal(await clientsBecome(srv.base, survivors.length), survivors.length, '/stats counts only the survivors')
    for (const s of streams) s.close()
    t.equal(await clientsBecome(srv.base, 1), 1, 'and then only the first stream')
  }),
)

t.test('clients that reset mid-request or mid-response do not disturb the others', (t) =>
  guarded(t, {}, async (srv) => {
    const auth = `Authorization: Bearer ${PUB}`
    const go = (bytes: string, when: 'written' | 'first-data' | 'connected'): Promise<void> =>
      new Promise((resolve) => {
        const s = net.connect(srv.port, '127.0.0.1', () => {
          if (when === 'connected') return s.resetAndDestroy()
          s.write(b(bytes), () => {
            if (when === 'written') s.resetAndDestroy()
          })
        })
        if (when === 'first-data') s.once('data', () => s.resetAndDestroy())
        s.on('error', () => {})
        s.on('close', () => resolve())
      })
    const jobs: Array<Promise<void>> = []
    for (let i = 0; i < 10; i++) {
      jobs.push(go(req('GET /stats HTTP/1.1', auth).repeat(2000), 'first-data')) // a long pipelined answer, cut
      jobs.push(go('GET /stats HTTP/1.1\r\nHost: x\r\nAuth', 'written')) // half a head
      jobs.push(go(req('POST /publish HTTP/1.1', auth, 'Content-Length: 100') + 'half a body', 'written'))
      jobs.push(go('', 'connected'))
      jobs.push(go(req(`GET /events/${TOKEN} HTTP/1.1`), 'written')) // a stream, gone at once
      jobs.push(go(req(`GET /events/${TOKEN} HTTP/1.1`), 'first-data')) // a stream, gone after its head
      jobs.push(go(req('GET /x HTTP/1.1', 'Transfer-Encoding: chunked') + '5\r\nab', 'written'))
    }
    await Promise.all(jobs)
    t.equal(await clientsBecome(srv.base, 1), 1, 'no stream of a reset connection is left behind')
  }),
)

// ================================================================== keep-alive and streams

t.test('closes an idle keep-alive connection after KEEP_ALIVE_IDLE_MS without sending anything', (t) =>
  guarded(t, {}, async ({ port }) => {
    const c = await RawClient.open(port)
    c.write(req('OPTIONS * HTTP/1.1'))
    await c.waitFor('\r\n\r\n')
    t.equal(undate(c.received), R204)
    await sleep(KEEP_ALIVE_IDLE_MS / 2)
    t.notOk(c.closed, 'still open halfway through the idle time')
    await c.waitClosed(KEEP_ALIVE_IDLE_MS + 3000)
    t.ok(c.closed, 'closed by the server')
    t.equal(undate(c.received), R204, 'with no bytes after the last response (no 408)')
  }),
)

t.test('bytes pipelined after a stream request are ignored, and the stream works', (t) =>
  guarded(t, {}, async (srv) => {
    const c = await RawClient.open(srv.port)
    c.write(b(req('OPTIONS * HTTP/1.1') + req(`GET /events/${TOKEN} HTTP/1.1`) + 'GARBAGE \x00\x01\r\n\r\n' + req('GET /stats HTTP/1.1', `Authorization: Bearer ${PUB}`)))
    await c.waitFor('event: ready\n')
    c.write(randomBytes(7, 4096))
    const r = await publish(srv.base, 'id=s1', 'one')
    t.equal(r.status, 200)
    await c.waitFor(chunk('id: s1\ndata: one\n\n'))
    t.ok(undate(c.received).startsWith(R204 + STREAM_HEAD), 'the 204, then the stream head')
    t.equal(afterReady(c), chunk('id: s1\ndata: one\n\n'), 'then only the event: no reply to the bytes after the stream request')
    c.close()
  }),
)

// ================================================================== static files (the async route)

/** A public folder with a file too big for the cache (streamed) and a small one. */
function publicDir(t: Test): { dir: string; big: Buffer; small: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rawsse-hostile-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const big = randomBytes(3, 3 * 1024 * 1024)
  fs.writeFileSync(path.join(dir, 'big.bin'), big)
  fs.writeFileSync(path.join(dir, 'small.txt'), 'small file\n')
  return { dir, big, small: 'small file\n' }
}

t.test('answers a request pipelined after a large streamed file', (t) => {
  const { dir, big, small } = publicDir(t)
  return guarded(t, { publicDir: dir }, async ({ port }) => {
    const r = await exchange(port, req('GET /big.bin HTTP/1.1') + req('GET /small.txt HTTP/1.1', 'Connection: close'), { timeoutMs: 5000 })
    const res = splitResponses(r.text)
    t.equal(res.length, 2, 'two requests, two responses')
    t.match(res[0]?.head, /^HTTP\/1\.1 200 OK\r\n/)
    t.ok(res[0]?.body === big.toString('latin1'), 'the large file, whole')
    t.match(res[1]?.head, /^HTTP\/1\.1 200 OK\r\n/)
    t.equal(res[1]?.body, small, 'then the small file')
    t.ok(r.closed)
  })
})

t.test('a client that resets mid-download leaves no open file behind', (t) => {
  const { dir } = publicDir(t)
  return guarded(t, { publicDir: dir }, async ({ port }) => {
    const real = fs.realpathSync(path.join(dir, 'big.bin'))
    const openFds = (): number =>
      fs.readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${fd}`) === real
        } catch {
          return false
        }
      }).length
    await Promise.all(
      Array.from(
        { length: 10 },
        () =>
          new Promise<void>((resolve) => {
            const s = net.connect(port, '127.0.0.1', () => s.write(req('GET /big.bin HTTP/1.1')))
            s.once('data', () => s.resetAndDestroy())
            s.on('error', () => {})
            s.on('close', () => resolve())
          }),
      ),
    )
    let n = openFds()
    for (let i = 0; i < 50 && n > 0; i++) {
      await sleep(20)
      n = openFds()
    }
    t.equal(n, 0, 'every file opened for an aborted download is closed')
  })
})
