// What the server refuses, and how cheaply (issue 14, commit dae0da5), over real sockets on
// 127.0.0.1 port 0: a publish without a valid bearer is answered before its body is read; one
// global cap on request bytes in flight (503); events over maxEventBytes encoded (413); history
// bounded in bytes (`--history-bytes`); dotfiles never served; ids 0, with edge whitespace, or
// still retained (400, 409); a broadcast filter runs once per stream per event; an over-long
// `--stdin` line is refused with one line. Replies are asserted byte for byte (Date normalised),
// and after each refusal a stream opened before it still gets the next event.

import t, { type Test } from 'tap'
import { promises as fs } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { SseServer, type ClientView } from '../src/index.js'
import { MAX_BODY_BYTES, MAX_REQUEST_BYTES_IN_FLIGHT } from '../src/server/limits.js'
import { afterReady, chunk, clientId, ev, openStream, parseResponse, PUB, publish, RawClient, rawRequest, startServer, TOKEN, type Running } from './helpers.js'
import { Child, CLI, runCli, START_MS, startCli, until, type Exit, type Teardown } from './process.js'

// ------------------------------------------------------------------ expected bytes

/** Every Date header replaced by `<DATE>`, so replies compare as literals. */
const undate = (s: string): string =>
  s.replace(/\r\nDate: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT\r\n/g, '\r\nDate: <DATE>\r\n')

/** A plain (non-stream) reply as response.ts frames it, Date normalised. */
function plainReply(status: string, o: { type?: string; body?: string; headers?: string; close?: boolean } = {}): string {
  const body = o.body ?? ''
  let s = `HTTP/1.1 ${status}\r\nDate: <DATE>\r\n`
  if (o.type !== undefined) s += `Content-Type: ${o.type}\r\n`
  s += `Content-Length: ${Buffer.byteLength(body)}\r\n`
  s += 'Access-Control-Allow-Origin: *\r\n' + (o.headers ?? '')
  if (o.close === true) s += 'Connection: close\r\n'
  return s + '\r\n' + Buffer.from(body).toString('latin1')
}
const JSON_TYPE = 'application/json; charset=utf-8'
const TEXT_TYPE = 'text/plain; charset=utf-8'
const jsonReply = (status: string, body: unknown, close = true, headers = ''): string => plainReply(status, { type: JSON_TYPE, body: JSON.stringify(body), close, headers })

const R401 = jsonReply('401 Unauthorized', { error: 'a valid bearer token is required' }, true, 'WWW-Authenticate: Bearer\r\n')
const R403 = jsonReply('403 Forbidden', { error: 'the token lacks the publish role' })
const R404 = plainReply('404 Not Found', { type: TEXT_TYPE, body: 'not found\n', close: true })

/** A refusal written by errors.ts: status, extra headers, short text body, `Connection: close` (no Date). */
function refusal(status: number, reason: string, message: string, extraHeaders = ''): string {
  const body = message + '\n'
  return `HTTP/1.1 ${status} ${reason}\r\n${extraHeaders}Content-Type: ${TEXT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
}
const R503_BYTES = refusal(503, 'Service Unavailable', 'too many request bytes in flight; try again', 'Retry-After: 1\r\n')

/** A request head with Host; `lines` are extra header lines without CRLF. */
function req(requestLine: string, ...lines: string[]): string {
  return [requestLine, 'Host: 127.0.0.1', ...lines].join('\r\n') + '\r\n\r\n'
}

/** True once `s` holds one complete response (head and a body of its Content-Length). */
function oneResponse(s: string): boolean {
  const end = s.indexOf('\r\n\r\n')
  if (end === -1) return false
  const m = /\r\nContent-Length: (\d+)\r\n/i.exec(s.slice(0, end + 2))
  return s.length >= end + 4 + (m === null ? 0 : Number(m[1]))
}

/** The text of an event as the SSE format puts it (WHATWG HTML §9.2), built here independently of the server. */
function eventText(m: { data: string; id?: string; event?: string }): string {
  let s = m.id === undefined ? '' : `id: ${m.id}\n`
  if (m.event !== undefined) s += `event: ${m.event}\n`
  for (const line of m.data.split(/\r\n|\r|\n/)) s += `data: ${line}\n`
  return s + '\n'
}
const encodedSize = (m: { data: string; id?: string; event?: string }): number => Buffer.byteLength(eventText(m))
/** The chunk a RawClient (latin1) sees for an event. */
const wire = (m: { data: string; id?: string; event?: string }): string => Buffer.from(chunk(eventText(m))).toString('latin1')

/** POST /publish over its own raw connection with `Connection: close`; the whole reply, Date normalised. */
async function post(port: number, query: string, body: string | Buffer, token: string | null = PUB, extra: string[] = []): Promise<string> {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body
  const lines = ['Connection: close', 'Content-Type: text/plain', `Content-Length: ${bytes.length}`, ...extra]
  if (token !== null) lines.push(`Authorization: Bearer ${token}`)
  const head = Buffer.from(req(`POST /publish${query === '' ? '' : '?' + query} HTTP/1.1`, ...lines), 'latin1')
  return undate(await rawRequest(port, Buffer.concat([head, bytes]), 10_000))
}

/** The Error `fn` throws (the test fails when it throws nothing). */
function thrown(t: Test, fn: () => unknown, what: string): Error & { status?: number } {
  try {
    fn()
  } catch (err) {
    t.ok(err instanceof Error, `${what}: throws an Error`)
    return err as Error & { status?: number }
  }
  t.fail(`${what}: throws`)
  return new Error('nothing thrown')
}

/** A publish after the refusals reaches `reader`, and nothing else reached it since `before` bytes. */
async function stillDelivers(t: Test, r: Running, reader: RawClient, expectedBefore: string, tag: string): Promise<void> {
  const res = await publish(r.base, '', tag)
  t.equal(res.status, 200, `${tag}: a publish after the refusals works`)
  const after = ev(String(res.json.id), tag)
  await until(() => afterReady(reader).endsWith(after), () => `${tag} at the reader; it has ${JSON.stringify(afterReady(reader).slice(-300))}`)
  sameBytes(t, afterReady(reader), expectedBefore + after, `${tag}: the reader got exactly the accepted events, then the new one`)
}

/** t.equal, but a long mismatch is reported by lengths and the first differing offset, not a diff of megabytes. */
function sameBytes(t: Test, actual: string, expected: string, what: string): void {
  if (actual.length + expected.length < 20_000) {
    t.equal(actual, expected, what)
    return
  }
  let at = 0
  while (at < actual.length && at < expected.length && actual[at] === expected[at]) at++
  const where = (s: string): string => JSON.stringify(s.slice(Math.max(0, at - 40), at + 80))
  t.ok(actual === expected, actual === expected ? what : `${what}: ${actual.length} bytes, expected ${expected.length}; first difference at ${at}: ${where(actual)} vs ${where(expected)}`)
}

const MiB = 1024 * 1024

// ================================================================== 1. the bearer before the body

t.test('POST /publish without a valid bearer: 401 (403 without the publish role) while the client has sent only the head', async (t) => {
  const r = await startServer(t)
  const reader = await openStream(r.port, `/events/${TOKEN}`)
  t.teardown(() => reader.close())

  const credentials: Array<[string, string[], string]> = [
    ['no Authorization', [], R401],
    ['an unknown bearer', ['Authorization: Bearer nope'], R401],
    ['a Basic header', ['Authorization: Basic cHViOnB1Yg=='], R401],
    ['a stream-only token', [`Authorization: Bearer ${TOKEN}`], R403],
  ]
  const framings: Array<[string, string[], string]> = [
    ['Content-Length 1000000, head only', ['Content-Length: 1000000'], ''],
    ['Content-Length 1000000, head and 5 body bytes', ['Content-Length: 1000000'], 'never'],
    ['Content-Length 1000000 with Expect: 100-continue', ['Content-Length: 1000000', 'Expect: 100-continue'], ''],
    ['chunked, head and the start of a 1000000-byte chunk', ['Transfer-Encoding: chunked'], 'f4240\r\nnev'],
  ]
  for (const [who, auth, expected] of credentials) {
    for (const [how, framing, sent] of framings) {
      const what = `${who}, ${how}`
      const c = await RawClient.open(r.port)
      const head = req('POST /publish?id=never HTTP/1.1', 'Content-Type: text/plain', ...auth, ...framing)
      c.write(head + sent)
      await c.waitFor(oneResponse, 3000)
      // Every byte this client ever sent is the head and `sent`: the body of 1 000 000 bytes was
      // never needed for the answer (a server reading the body first would wait for it, then 408).
      t.equal(c.socket.bytesWritten, head.length + sent.length, `${what}: the reply came with only the head${sent === '' ? '' : ' and a few bytes'} sent`)
      t.equal(undate(c.received), expected, `${what}: exact reply, no 100 Continue, Connection: close`)
      await c.waitClosed(3000)
      t.ok(c.closed, `${what}: the server closed the connection`)
      c.close()
    }
  }
  t.notMatch(reader.received, /never/, 'no refused body was published')
  await stillDelivers(t, r, reader, '', 'after-401s')
})

t.test('200 unauthenticated publishes each announcing 1 MiB and sending 64 KiB: each gets 401 and is closed; a stream opened before still gets the next event', async (t) => {
  const N = 200
  const r = await startServer(t)
  const reader = await openStream(r.port, `/events/${TOKEN}`)
  t.teardown(() => reader.close())
  const part = Buffer.alloc(64 * 1024, 'b')
  const clients = await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const c = await RawClient.open(r.port)
      t.teardown(() => c.close())
      // Half without a bearer, half with an unknown one.
      c.write(req('POST /publish HTTP/1.1', 'Content-Type: text/plain', `Content-Length: ${MiB}`, ...(i % 2 === 0 ? [] : [`Authorization: Bearer wrong-${i}`])))
      c.write(part)
      return c
    }),
  )
  await Promise.all(clients.map((c) => c.waitFor(oneResponse, 10_000)))
  const wrong = clients.filter((c) => undate(c.received) !== R401)
  t.equal(wrong.length, 0, `every one got exactly the 401${wrong.length === 0 ? '' : `; e.g. ${JSON.stringify(wrong[0]!.received.slice(0, 200))}`}`)
  await Promise.all(clients.map((c) => c.waitClosed(5000)))
  t.equal(clients.filter((c) => c.closed).length, N, `all ${N} connections were closed by the server`)
  t.equal(r.server.clientCount, 1, 'none of them became a stream')
  await stillDelivers(t, r, reader, '', 'after-200-half-bodies')
})

// ================================================================== 2. the global cap on request bytes in flight

t.test(`past MAX_REQUEST_BYTES_IN_FLIGHT (${MAX_REQUEST_BYTES_IN_FLIGHT} bytes) of request bodies being read, 503 with Retry-After: 1; the others complete`, async (t) => {
  const N = 70
  const SENT = MAX_BODY_BYTES - 1 // each body is announced at MAX_BODY_BYTES and held one byte short
  const FIT = Math.floor(MAX_REQUEST_BYTES_IN_FLIGHT / SENT) // bodies that can be held at once
  t.ok(N > FIT, `${N} bodies of ${SENT} bytes (${N * SENT}) are more than the cap holds (${FIT} of them)`)
  // Events up to 2 MiB, so that what is tested is the cap, not maxEventBytes; history 1 keeps memory small.
  const r = await startServer(t, { maxBufferBytes: 2 * MiB, maxEventBytes: 2 * MiB, history: 1 })
  const reader = await openStream(r.port, `/events/${TOKEN}`)
  t.teardown(() => reader.close())

  const payload = Buffer.alloc(SENT, 'x')
  const clients: RawClient[] = []
  const written: Array<Promise<void>> = []
  for (let i = 0; i < N; i++) {
    const c = await RawClient.open(r.port)
    t.teardown(() => c.close())
    clients.push(c)
    c.write(req(`POST /publish?channel=void&id=big-${i} HTTP/1.1`, `Authorization: Bearer ${PUB}`, 'Content-Type: text/plain', `Content-Length: ${MAX_BODY_BYTES}`, 'Connection: close'))
    written.push(new Promise<void>((resolve) => c.socket.write(payload, () => resolve())))
  }
  const replied = (): RawClient[] => clients.filter((c) => c.received !== '')
  // Once the server has read everything, at most FIT bodies can be held, so at least N - FIT were refused.
  await until(
    () => replied().length >= N - FIT,
    () => `at least ${N - FIT} refusals; ${replied().length} so far: ${JSON.stringify(replied()[0]?.received.slice(0, 200))}`,
    15_000,
  )
  await Promise.all(written)
  // The others were not affected: their last byte completes their publish. (A body still on its
  // way from the kernel may yet push the total over: such a connection gets the same 503.)
  const finished = clients.filter((c) => c.received === '' && !c.closed)
  t.ok(finished.length > 0 && finished.length <= FIT, `${finished.length} connections not refused (at most ${FIT})`)
  for (const c of finished) c.write('x')
  await Promise.all(clients.map((c) => c.waitFor(oneResponse, 10_000)))
  const outcomes = clients.map((c, i) => {
    const s = undate(c.received)
    return s === R503_BYTES ? '503' : s === jsonReply('200 OK', { id: `big-${i}`, delivered: 0 }) ? '200' : s
  })
  t.same(
    outcomes.filter((o) => o !== '503' && o !== '200'),
    [],
    'every connection got exactly one reply: the 503 with Retry-After: 1 and Connection: close, or its own 200',
  )
  const n503 = outcomes.filter((o) => o === '503').length
  const n200 = outcomes.filter((o) => o === '200').length
  t.ok(n503 >= N - FIT, `${n503} refused with 503 (at least ${N - FIT})`)
  t.ok(n200 > 0, `${n200} publishes of ${MAX_BODY_BYTES}-byte bodies completed with 200`)
  t.ok(clients.every((c, i) => outcomes[i] === '503' || finished.includes(c)), 'only connections that were sent their last byte got a 200')
  await Promise.all(clients.map((c) => c.waitClosed(5000)))

  // Everything is closed: the budget is free again, and the reader saw nothing of channel void.
  const again = await post(r.port, 'channel=void&id=big-again', Buffer.alloc(SENT, 'y'))
  t.equal(again, jsonReply('200 OK', { id: 'big-again', delivered: 0 }), 'a new body of 1 MiB - 1 is read once the others are gone')
  await stillDelivers(t, r, reader, '', 'after-the-flood')
})

// ================================================================== 3. maxEventBytes

t.test('POST /publish: an event over maxEventBytes encoded is 413 with its exact encoded size; one at the limit is published', async (t) => {
  const LIMIT = 100
  const r = await startServer(t, { maxEventBytes: LIMIT })
  const reader = await openStream(r.port, `/events/${TOKEN}`)
  t.teardown(() => reader.close())
  let accepted = ''
  // Shapes of event whose fixed part differs; each is padded to exactly LIMIT and LIMIT + 1 bytes.
  const shapes: Array<{ name: string; id: string; event?: string; data: string; pad: string }> = [
    { name: 'one line', id: 'e1', data: '', pad: 'x' },
    { name: 'with an event name', id: 'e2', event: 'tick', data: '', pad: 'y' },
    { name: 'LF, CRLF and CR line breaks', id: 'e3', data: 'a\nb\r\nc\rd\n', pad: 'z' },
    { name: 'two-byte characters', id: 'e4', data: 'é', pad: 'é' },
  ]
  for (const s of shapes) {
    const shape = { id: s.id, ...(s.event === undefined ? {} : { event: s.event }) }
    let atLimit = s.data
    while (encodedSize({ ...shape, data: atLimit + s.pad }) <= LIMIT) atLimit += s.pad
    while (encodedSize({ ...shape, data: atLimit + '.' }) <= LIMIT) atLimit += '.' // a 2-byte pad can stop one short
    const msg = { ...shape, data: atLimit }
    const query = (id: string): string => `id=${id}${s.event === undefined ? '' : `&event=${s.event}`}`
    t.equal(encodedSize(msg), LIMIT, `${s.name}: ${LIMIT} bytes encoded`)
    t.equal(await post(r.port, query(s.id), atLimit), jsonReply('200 OK', { id: s.id, delivered: 1 }), `${s.name}: exactly ${LIMIT} bytes encoded is published`)
    accepted += wire(msg)
    const over = atLimit + 'o'
    const overMsg = { ...msg, id: `${s.id}-over`, data: over }
    const n = encodedSize(overMsg)
    t.equal(n, LIMIT + 1 + (`${s.id}-over`.length - s.id.length), `${s.name}: the bigger one is ${n} bytes`)
    t.equal(
      await post(r.port, query(`${s.id}-over`), over),
      jsonReply('413 Content Too Large', { error: `event is ${n} bytes encoded; the limit is ${LIMIT}` }),
      `${s.name}: ${n} bytes encoded is 413, with that size`,
    )
    // The same data one byte over with the same id length: LIMIT + 1 exactly.
    const justOver = { ...msg, id: s.id.replace('e', 'f'), data: over }
    t.equal(encodedSize(justOver), LIMIT + 1)
    t.equal(
      await post(r.port, query(justOver.id), over),
      jsonReply('413 Content Too Large', { error: `event is ${LIMIT + 1} bytes encoded; the limit is ${LIMIT}` }),
      `${s.name}: ${LIMIT + 1} bytes encoded is 413`,
    )
  }
  // The body of the refused ones was small (well under MAX_BODY_BYTES): the encoded size is what counts.
  await until(() => afterReady(reader) === accepted, () => `the accepted events; got ${JSON.stringify(afterReady(reader))}`)
  await stillDelivers(t, r, reader, accepted, 'after-413s')
})

t.test('line feeds are counted as encoded: 7 bytes a line; 1000 of them arrive as 1001 `data: ` lines, 150 000 are refused', async (t) => {
  const r = await startServer(t) // maxEventBytes: the default 1 MiB
  const reader = await openStream(r.port, `/events/${TOKEN}`)
  t.teardown(() => reader.close())
  let accepted = ''
  const cases: Array<[string, string]> = [
    ['lf1000', '\n'.repeat(1000)],
    ['crlf1000', '\r\n'.repeat(1000)],
    ['cr1000', '\r'.repeat(1000)],
    ['lf100000', '\n'.repeat(100_000)],
  ]
  for (const [id, data] of cases) {
    const text = eventText({ id, data })
    t.equal(text, `id: ${id}\n` + 'data: \n'.repeat(data.split(/\r\n|\r|\n/).length) + '\n', `${id}: one empty data line per line`)
    t.equal(await post(r.port, `id=${id}`, data), jsonReply('200 OK', { id, delivered: 1 }), `${id}: ${Buffer.byteLength(text)} bytes encoded is published`)
    accepted += wire({ id, data })
    await until(() => afterReady(reader) === accepted, () => `${id} on the stream, byte for byte (${afterReady(reader).length} of ${accepted.length} bytes so far)`)
    t.pass(`${id}: the stream got exactly ${id.startsWith('lf100000') ? 100_001 : 1001} \`data: \` lines`)
  }
  // 150 000 line feeds: a 150 000-byte body, 1 050 015 bytes encoded.
  const n = encodedSize({ id: 'lf150000', data: '\n'.repeat(150_000) })
  t.equal(n, 'id: lf150000\n'.length + 150_001 * 7 + 1)
  t.equal(
    await post(r.port, 'id=lf150000', '\n'.repeat(150_000)),
    jsonReply('413 Content Too Large', { error: `event is ${n} bytes encoded; the limit is ${MiB}` }),
    `150 000 line feeds: 413, ${n} bytes encoded`,
  )
  await stillDelivers(t, r, reader, accepted, 'after-line-feeds')
})

t.test('library: broadcast() over maxEventBytes throws an Error with status 413; at the limit it is sent; the default is min(1 MiB, maxBufferBytes)', async (t) => {
  const r = await startServer(t, { maxEventBytes: 100 })
  const reader = await openStream(r.port, `/events/${TOKEN}`)
  t.teardown(() => reader.close())
  const at = { id: 'L1', data: 'x'.repeat(100 - encodedSize({ id: 'L1', data: '' })) }
  t.equal(encodedSize(at), 100)
  t.equal(r.server.broadcast(at), 1, '100 bytes encoded: sent to the one stream')
  const over = { id: 'L2', data: at.data + 'x' }
  const err = thrown(t, () => r.server.broadcast(over), '101 bytes encoded')
  t.equal(err.status, 413, 'status 413')
  t.equal(err.message, 'event is 101 bytes encoded; the limit is 100')
  const err2 = thrown(t, () => r.server.publish('default', { ...over, id: 'L3' }), 'publish(), 101 bytes encoded')
  t.equal(err2.status, 413, 'publish() too')
  await stillDelivers(t, r, reader, wire(at), 'after-library-413')

  // Default with a small maxBufferBytes: the limit is maxBufferBytes.
  const small = await startServer(t, { maxBufferBytes: 1000 })
  const d1000 = { id: 'S1', data: 'x'.repeat(1000 - encodedSize({ id: 'S1', data: '' })) }
  t.equal(small.server.broadcast(d1000), 0, 'maxBufferBytes 1000: an event of 1000 bytes encoded is sent')
  t.equal(thrown(t, () => small.server.broadcast({ id: 'S2', data: d1000.data + 'x' }), 'maxBufferBytes 1000, 1001 bytes').status, 413, 'and one of 1001 bytes is refused')
  // Default: 1 MiB.
  const dflt = await startServer(t)
  const dMiB = { id: 'M1', data: 'x'.repeat(MiB - encodedSize({ id: 'M1', data: '' })) }
  t.equal(dflt.server.broadcast(dMiB), 0, 'default: an event of exactly 1 MiB encoded is sent')
  const e = thrown(t, () => dflt.server.broadcast({ id: 'M2', data: dMiB.data + 'x' }), 'default, 1 MiB + 1')
  t.equal(e.status, 413)
  t.equal(e.message, `event is ${MiB + 1} bytes encoded; the limit is ${MiB}`)

  // maxEventBytes above maxBufferBytes: RangeError from the constructor.
  t.throws(() => new SseServer({ publicDir: null, tickMs: 0, maxEventBytes: 2_000_000 }), RangeError, 'maxEventBytes 2000000 with the default maxBufferBytes')
  t.throws(() => new SseServer({ publicDir: null, tickMs: 0, maxBufferBytes: 1000, maxEventBytes: 1001 }), RangeError, 'maxEventBytes 1001 with maxBufferBytes 1000')
  t.doesNotThrow(() => new SseServer({ publicDir: null, tickMs: 0, maxBufferBytes: 1000, maxEventBytes: 1000 }), 'maxEventBytes equal to maxBufferBytes')
})

// ================================================================== 4. history bounded in bytes

t.test('historyBytes 10 000: only the newest events whose chunks fit are kept; replay, reset, /stats and /metrics agree', async (t) => {
  const MAX = 10_000
  const r = await startServer(t, { history: 1000, historyBytes: MAX })
  const events = Array.from({ length: 100 }, (_, i) => ({ id: `e${1000 + i}`, data: `${i}:` + 'h'.repeat(1000 + (i % 7) * 3) }))
  for (const e of events) r.server.broadcast(e)
  // The longest run of newest events whose chunks (`<hex>\r\n<text>\r\n`) add up to at most MAX.
  const chunkBytes = (e: { id: string; data: string }): number => Buffer.byteLength(chunk(eventText(e)))
  const retained: typeof events = []
  let bytes = 0
  for (let i = events.length - 1; i >= 0 && bytes + chunkBytes(events[i]!) <= MAX; i--) {
    retained.unshift(events[i]!)
    bytes += chunkBytes(events[i]!)
  }
  t.ok(retained.length >= 8 && retained.length <= 10, `about 9 events of ~1 KiB fit in ${MAX} bytes (${retained.length}, ${bytes} bytes)`)

  const all = await openStream(r.port, `/events/${TOKEN}?lastEventId=0`)
  t.teardown(() => all.close())
  const replay = retained.map(wire).join('')
  await until(() => afterReady(all).length >= replay.length, () => `the replay (${afterReady(all).length} of ${replay.length} bytes)`)
  t.equal(afterReady(all), replay, `lastEventId=0 replays exactly the ${retained.length} newest events, in order`)

  const stats = parseResponse(await rawRequest(r.port, req('GET /stats HTTP/1.1', `Authorization: Bearer ${PUB}`, 'Connection: close')))
  t.equal(stats.status, 200)
  const history = (JSON.parse(stats.body) as { history: unknown }).history
  t.same(history, { events: retained.length, bytes }, '/stats history: the retained events and the sum of their chunk sizes')
  t.ok(bytes <= MAX, `${bytes} <= ${MAX}`)

  const metrics = parseResponse(await rawRequest(r.port, req('GET /metrics HTTP/1.1', `Authorization: Bearer ${PUB}`, 'Connection: close')))
  t.equal(metrics.status, 200)
  t.match(metrics.body, `\n# TYPE rawsse_history_events gauge\nrawsse_history_events ${retained.length}\n`, '/metrics: rawsse_history_events')
  t.match(metrics.body, `\n# TYPE rawsse_history_bytes gauge\nrawsse_history_bytes ${bytes}\n`, '/metrics: rawsse_history_bytes')

  const oldestKept = retained[0]!.id
  const from = await openStream(r.port, `/events/${TOKEN}`, { 'Last-Event-ID': oldestKept })
  t.teardown(() => from.close())
  const rest = retained.slice(1).map(wire).join('')
  await until(() => afterReady(from).length >= rest.length, () => `the replay after ${oldestKept}`)
  t.equal(afterReady(from), rest, `Last-Event-ID ${oldestKept} (the oldest kept): the events after it`)

  // A Last-Event-ID older than what is kept: reset, no replay.
  const RESET = chunk('event: reset\ndata: {"reason":"history-gap"}\n\n')
  for (const old of [events[0]!.id, events[events.length - retained.length - 1]!.id]) {
    const s = await openStream(r.port, `/events/${TOKEN}`, { 'Last-Event-ID': old })
    t.teardown(() => s.close())
    await s.waitFor(RESET)
    const live = { id: `live-after-${old}`, data: 'live' }
    r.server.broadcast(live)
    await until(() => afterReady(s).endsWith(wire(live)), () => `the live event after reset; got ${JSON.stringify(afterReady(s))}`)
    t.equal(afterReady(s), RESET + wire(live), `Last-Event-ID ${old} (evicted): reset, then live events only`)
  }
  // One event bigger than historyBytes alone is kept alone (a replay never silently leaves one out).
  const huge = { id: 'huge', data: 'H'.repeat(12_000) }
  r.server.broadcast(huge)
  t.same(r.server.stats().history, { events: 1, bytes: chunkBytes(huge) }, 'an event bigger than historyBytes is kept alone')
})

t.test('--history-bytes: the CLI keeps only what fits', async (t) => {
  const c = await startCli(t, ['--port', '0', '--tick', '0', '--publish-token', PUB, '--history-bytes', '3000'])
  const sent: Array<{ id: string; data: string }> = []
  for (let i = 0; i < 10; i++) {
    const e = { id: `c${i}`, data: 'q'.repeat(1000) }
    t.equal(await post(c.port, `id=${e.id}`, e.data), jsonReply('200 OK', { id: e.id, delivered: 0 }), `publish ${e.id}`)
    sent.push(e)
  }
  const one = Buffer.byteLength(chunk(eventText(sent[0]!)))
  const kept = Math.floor(3000 / one)
  const stats = parseResponse(await rawRequest(c.port, req('GET /stats HTTP/1.1', `Authorization: Bearer ${PUB}`, 'Connection: close')))
  t.same((JSON.parse(stats.body) as { history: unknown }).history, { events: kept, bytes: kept * one }, `${kept} events of ${one} bytes kept`)
  const s = await openStream(c.port, `/events/${PUB}?lastEventId=0`)
  t.teardown(() => s.close())
  const replay = sent.slice(-kept).map(wire).join('')
  await until(() => afterReady(s).length >= replay.length, () => 'the replay')
  t.equal(afterReady(s), replay, 'lastEventId=0 replays the newest ones')
})

// ================================================================== 5. dotfiles

t.test('dotfiles are never served, asked for or reached through a symlink; other files are', async (t) => {
  const SECRET = 'DOT-SECRET-51c2'
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rawsse-dot-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  await fs.mkdir(path.join(dir, '.git'))
  await fs.mkdir(path.join(dir, 'a', '.hidden'), { recursive: true })
  await fs.writeFile(path.join(dir, '.env'), `TOKEN=${SECRET}\n`)
  await fs.writeFile(path.join(dir, '.git', 'config'), `[core]\n${SECRET}\n`)
  await fs.writeFile(path.join(dir, 'a', '.hidden', 'x.txt'), SECRET)
  await fs.writeFile(path.join(dir, 'visible.txt'), 'visible\n')
  await fs.symlink('.env', path.join(dir, 'link.txt'))
  await fs.symlink('.git', path.join(dir, 'gitlink'))
  await fs.symlink('.hidden', path.join(dir, 'a', 'shown'))
  const r = await startServer(t, { publicDir: dir })
  const reader = await openStream(r.port, `/events/${TOKEN}`)
  t.teardown(() => reader.close())

  const get = async (target: string, method = 'GET'): Promise<string> => undate(await rawRequest(r.port, req(`${method} ${target} HTTP/1.1`, 'Connection: close')))
  const refusedPaths = [
    '/.env',
    '/.git/config',
    '/.git/',
    '/.git',
    '/a/.hidden/x.txt',
    '/%2eenv',
    '/%2Eenv',
    '/%2egit/config',
    '/a/%2ehidden/x.txt',
    '/link.txt',
    '/gitlink/config',
    '/a/shown/x.txt',
    '/.env?x=1',
  ]
  for (const p of refusedPaths) {
    const raw = await get(p)
    t.equal(raw, R404, `GET ${p}: exactly the 404`)
    t.notMatch(raw, SECRET, `GET ${p}: the secret never appears`)
  }
  t.equal(await get('/.env', 'HEAD'), R404.slice(0, R404.indexOf('\r\n\r\n') + 4), 'HEAD /.env: the 404 head')
  const visible = parseResponse(await get('/visible.txt'))
  t.equal(visible.statusLine, 'HTTP/1.1 200 OK', '/visible.txt is served')
  t.equal(visible.headers['content-type'], TEXT_TYPE)
  t.equal(visible.body, 'visible\n')
  await stillDelivers(t, r, reader, '', 'after-dotfiles')
})

// ================================================================== 6. publisher ids

t.test('POST /publish ids: 0 and edge whitespace are 400, a retained id is 409 and not delivered, an evicted one is taken again', async (t) => {
  const r = await startServer(t, { history: 2 })
  const reader = await openStream(r.port, `/events/${TOKEN}`)
  t.teardown(() => reader.close())
  const R400_ZERO = jsonReply('400 Bad Request', { error: 'id 0 is reserved (lastEventId=0 asks for every retained event)' })
  const R400_SPACE = jsonReply('400 Bad Request', { error: 'id starts or ends with a space or tab' })
  t.equal(await post(r.port, 'id=0', 'zero'), R400_ZERO, 'id=0')
  for (const q of ['%20a', 'a%20', '%09a', 'a%09', '%20', '+a']) {
    t.equal(await post(r.port, `id=${q}`, 'space'), R400_SPACE, `id=${q}`)
  }
  // An id with inner spaces is fine.
  t.equal(await post(r.port, 'id=a%20b', 'inner'), jsonReply('200 OK', { id: 'a b', delivered: 1 }), 'id=a%20b (inner space) is taken')
  let expected = wire({ id: 'a b', data: 'inner' })

  t.equal(await post(r.port, 'id=dup', 'first'), jsonReply('200 OK', { id: 'dup', delivered: 1 }), 'id=dup the first time')
  expected += wire({ id: 'dup', data: 'first' })
  t.equal(await post(r.port, 'id=dup', 'second'), jsonReply('409 Conflict', { error: 'id dup is already in the history' }), 'id=dup again: 409')
  t.equal(await post(r.port, 'id=dup&channel=other', 'third'), jsonReply('409 Conflict', { error: 'id dup is already in the history' }), 'id=dup on another channel: 409 too')
  // Two more events push `dup` out of a history of 2.
  for (const id of ['n1', 'n2']) {
    t.equal(await post(r.port, `id=${id}`, id), jsonReply('200 OK', { id, delivered: 1 }))
    expected += wire({ id, data: id })
  }
  t.equal(await post(r.port, 'id=dup', 'again'), jsonReply('200 OK', { id: 'dup', delivered: 1 }), 'id=dup once evicted: 200')
  expected += wire({ id: 'dup', data: 'again' })
  await until(() => afterReady(reader) === expected, () => `the accepted events only; got ${JSON.stringify(afterReady(reader))}`)
  t.pass('the stream got no event for a refused id, and one for each accepted one')
  await stillDelivers(t, r, reader, expected, 'after-ids')
})

t.test('library ids: broadcast with id 0 or edge whitespace throws TypeError; a retained id throws an Error with status 409', async (t) => {
  const r = await startServer(t)
  const reader = await openStream(r.port, `/events/${TOKEN}`)
  t.teardown(() => reader.close())
  t.throws(() => r.server.broadcast({ data: 'x', id: '0' }), new TypeError('id 0 is reserved (lastEventId=0 asks for every retained event)'), "id '0'")
  for (const id of [' a', 'a ', '\ta', 'a\t']) t.throws(() => r.server.broadcast({ data: 'x', id }), TypeError, `id ${JSON.stringify(id)}`)
  t.equal(r.server.broadcast({ data: 'one', id: 'lib' }), 1)
  const err = thrown(t, () => r.server.broadcast({ data: 'two', id: 'lib' }), 'repeated id')
  t.notOk(err instanceof TypeError, 'not a TypeError')
  t.equal(err.status, 409, 'status 409')
  t.equal(err.message, 'id lib is already in the history')
  t.equal(thrown(t, () => r.server.publish('default', { data: 'three', id: 'lib' }), 'publish(), repeated id').status, 409, 'publish() too')
  await stillDelivers(t, r, reader, wire({ id: 'lib', data: 'one' }), 'after-library-ids')
})

// ================================================================== 7. broadcast filters

t.test('broadcast(msg, filter) calls filter exactly once per open stream per event, and returns the streams that passed', async (t) => {
  const r = await startServer(t)
  const streams: RawClient[] = []
  for (let i = 0; i < 5; i++) {
    const s = await openStream(r.port, `/events/${TOKEN}${i % 2 === 0 ? '' : '?channel=odd'}`)
    t.teardown(() => s.close())
    streams.push(s)
  }
  const ids = streams.map(clientId)
  const calls = new Map<string, number>()
  const EVENTS = 6
  const pass = (k: number, id: number): boolean => (id * 7 + k) % 3 !== 0
  const returned: number[] = []
  // One event-loop turn: filtered broadcasts, with unfiltered ones between them.
  for (let k = 0; k < EVENTS; k++) {
    const n = r.server.broadcast({ id: `f${k}`, data: `filtered ${k}` }, (c: ClientView) => {
      const key = `${k}/${c.id}`
      calls.set(key, (calls.get(key) ?? 0) + 1)
      return pass(k, c.id)
    })
    returned.push(n)
    r.server.broadcast({ id: `u${k}`, data: `plain ${k}` })
  }
  const callTable = (): Record<string, number> => Object.fromEntries([...calls].sort())
  const once: Record<string, number> = {}
  for (let k = 0; k < EVENTS; k++) for (const id of ids) once[`${k}/${id}`] = 1
  t.same(callTable(), Object.fromEntries(Object.entries(once).sort()), `each of ${EVENTS} filters was called once for each of the 5 streams, no more`)
  t.same(
    returned,
    Array.from({ length: EVENTS }, (_, k) => ids.filter((id) => pass(k, id)).length),
    'each broadcast returned how many streams passed its filter',
  )
  for (let i = 0; i < streams.length; i++) {
    let expected = ''
    for (let k = 0; k < EVENTS; k++) {
      if (pass(k, ids[i]!)) expected += wire({ id: `f${k}`, data: `filtered ${k}` })
      expected += wire({ id: `u${k}`, data: `plain ${k}` })
    }
    await until(() => afterReady(streams[i]!) === expected, () => `stream ${ids[i]}: its events in order; got ${JSON.stringify(afterReady(streams[i]!))}`)
  }
  t.pass('each stream got exactly the filtered events it passed, in publish order with the others')
  // Later events do not run old filters again.
  r.server.broadcast({ id: 'later', data: 'later' })
  await streams[0]!.waitFor(wire({ id: 'later', data: 'later' }))
  t.same(callTable(), Object.fromEntries(Object.entries(once).sort()), 'no filter ran again afterwards')

  // A filter that passes none: it still runs once a stream, and the count is 0.
  let none = 0
  const nobody = (): boolean => {
    none++
    return false
  }
  t.equal(r.server.broadcast({ data: 'nobody' }, nobody), 0, 'a filter that passes no stream: 0')
  t.equal(none, 5, 'and it ran 5 times')
})

// ================================================================== CLI



t.test('--max-event-bytes 100: a 200-byte publish is 413, one of 100 bytes encoded is delivered', async (t) => {
  const c = await startCli(t, ['--port', '0', '--tick', '0', '--publish-token', PUB, '--max-event-bytes', '100'])
  const s = await openStream(c.port, `/events/${PUB}`)
  t.teardown(() => s.close())
  const big = 'b'.repeat(200)
  const n = encodedSize({ id: 'c1', data: big })
  t.equal(await post(c.port, 'id=c1', big), jsonReply('413 Content Too Large', { error: `event is ${n} bytes encoded; the limit is 100` }), `200 bytes of data (${n} encoded): 413`)
  const fits = { id: 'c2', data: 'f'.repeat(100 - encodedSize({ id: 'c2', data: '' })) }
  t.equal(await post(c.port, 'id=c2', fits.data), jsonReply('200 OK', { id: 'c2', delivered: 1 }), '100 bytes encoded: published')
  await until(() => afterReady(s) === wire(fits), () => `only the event that fits; got ${JSON.stringify(afterReady(s))}`)
  t.pass('the stream got only the event that fits')
  t.equal(c.child.stderr.split('\n').filter((l) => l !== '' && !/^\S+Z (start|error-reply|stream-open|stream-close) /.test(l)).join('\n'), '', 'nothing on stderr but log lines')
})

t.test('--max-event-bytes above --max-buffer: exit 2 with one line on stderr', async (t) => {
  const { exit, stdout, stderr } = await runCli(t, ['--port', '0', '--tick', '0', '--max-event-bytes', '2000000'])
  t.same(exit, { code: 2, signal: null }, 'exit code 2')
  t.match(stderr, /^rawsse: [^\n]+\n$/, `exactly one line on stderr: ${JSON.stringify(stderr)}`)
  t.match(stderr, /maxEventBytes|max-event-bytes/, 'naming the option')
  t.equal(stdout, '', 'never listening')
  const both = await runCli(t, ['--port', '0', '--tick', '0', '--max-event-bytes', '2000000', '--max-buffer', '2000000'])
  t.equal(both.exit, 'still running', `with --max-buffer 2000000 it starts; stderr: ${JSON.stringify(both.stderr)}`)
})

// ================================================================== 8. --stdin

t.test('--stdin: a line over 1 MiB is refused with one line on stderr; the process goes on and the next line is broadcast', async (t) => {
  // --log off: what is asserted here is the refusal's own line, alone on stderr.
  const c = await startCli(t, ['--stdin', '--port', '0', '--tick', '0', '--log', 'off', '--publish-token', PUB], { stdin: 'pipe' })
  const s = await openStream(c.port, `/events/${PUB}`)
  t.teardown(() => s.close())
  const stdin = c.child.proc.stdin!
  stdin.write('x'.repeat(MAX_BODY_BYTES + 1) + '\n')
  await until(() => c.child.stderr.includes('\n'), () => `a line on stderr; stderr: ${JSON.stringify(c.child.stderr)}; exit ${JSON.stringify(c.child.exit)}`, 10_000)
  t.match(c.child.stderr, /^rawsse: a line of 1048577 bytes was not broadcast: [^\n]+\n$/, `exactly one line: ${JSON.stringify(c.child.stderr)}`)
  t.equal(c.child.exit, null, 'the process is still running')

  stdin.write('short line\n')
  await until(() => /data: short line\n\n\r\n$/.test(afterReady(s)), () => `the short line on the stream; got ${JSON.stringify(afterReady(s).slice(0, 300))}`, 10_000)
  const id = /^[0-9a-f]+\r\nid: (\d+)\n/.exec(afterReady(s))?.[1]
  t.equal(afterReady(s), wire({ id: id ?? '?', data: 'short line' }), 'the stream got the short line and nothing of the long one')
  t.equal(c.child.stderr.split('\n').length, 2, 'still one line on stderr')
  t.equal(c.child.exit, null, 'still running')
})
