// SseClient (src/client/sse-client.ts) over real sockets on 127.0.0.1: against rawsse itself (events,
// reconnection with Last-Event-ID after DELETE /clients/ID), and against a raw node:net server
// that sends tricky streams: every split point of a set of events, chunked, Content-Length and
// close-delimited bodies, statuses, wrong Content-Types, 204, broken framing, TLS.

import t from 'tap'
import * as net from 'node:net'
import * as tls from 'node:tls'
import { SseClient, SseClientError, type SseClientOptions, type SseEvent } from '../src/index.js'
import { MAX_RESPONSE_HEAD_BYTES } from '../src/client/limits.js'
import { chunk, PUB, publish, startServer } from './helpers.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function until<T>(probe: () => T | null | undefined | false, what: () => string, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = probe()
    if (v !== null && v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`)
    await sleep(5)
  }
}

/** A client whose events are recorded; closed at the test's end. */
class Recorder {
  readonly client: SseClient
  readonly events: SseEvent[] = []
  /** Events per connection: a new list at each `open`. */
  readonly perOpen: SseEvent[][] = []
  readonly errors: SseClientError[] = []
  closed = false

  constructor(t: Teardown, url: string, options: SseClientOptions = {}) {
    this.client = new SseClient(url, options)
    this.client.on('open', () => this.perOpen.push([]))
    this.client.on('message', (e) => {
      this.events.push(e)
      this.perOpen[this.perOpen.length - 1]!.push(e)
    })
    this.client.on('error', (e) => this.errors.push(e))
    this.client.on('close', () => (this.closed = true))
    t.teardown(() => this.client.close())
  }

  waitEvents(n: number): Promise<SseEvent[]> {
    return until(() => this.events.length >= n && this.events, () => `${n} events; got ${JSON.stringify(this.events)}; errors ${this.errors.map((e) => e.message)}`)
  }

  waitClosed(): Promise<void> {
    return until(() => this.closed, () => `close; errors ${JSON.stringify(this.errors.map((e) => e.message))}`).then(() => undefined)
  }

  waitError(n = 1): Promise<SseClientError> {
    return until(() => this.errors[n - 1], () => `error #${n}; got ${JSON.stringify(this.errors.map((e) => e.message))}`)
  }
}

interface RawServer {
  port: number
  url: (path?: string) => string
  /** Each request head received, in order, as latin1. */
  requests: string[]
}

/**
 * A node:net server that reads one request head per connection and hands the socket to
 * `respond(socket, index)`, which writes whatever bytes the test wants.
 */
async function rawServer(t: Teardown, respond: (socket: net.Socket, index: number) => void, server: net.Server = net.createServer()): Promise<RawServer> {
  const requests: string[] = []
  const sockets = new Set<net.Socket>()
  server.on(server instanceof tls.Server ? 'secureConnection' : 'connection', (socket: net.Socket) => {
    sockets.add(socket)
    socket.setNoDelay(true)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let head = ''
    const onData = (d: Buffer): void => {
      head += d.toString('latin1')
      const end = head.indexOf('\r\n\r\n')
      if (end === -1) return
      socket.off('data', onData)
      requests.push(head.slice(0, end + 4))
      respond(socket, requests.length - 1)
    }
    socket.on('data', onData)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    server.close()
  })
  const port = (server.address() as net.AddressInfo).port
  const scheme = server instanceof tls.Server ? 'https' : 'http'
  return { port, url: (path = '/events') => `${scheme}://127.0.0.1:${port}${path}`, requests }
}

const SSE_HEAD = 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n'
const NO_CONTENT = 'HTTP/1.1 204 No Content\r\n\r\n'

// ------------------------------------------------------------------ against rawsse

t.test('receives named events, multi-line data and ids from rawsse, each exactly once', async (t) => {
  const { base } = await startServer(t)
  const r = new Recorder(t, `${base}/events/tok?channel=news`)
  await r.waitEvents(1)
  t.equal(r.events[0]!.event, 'ready')
  t.equal(r.client.readyState, 'open')
  t.equal((await publish(base, 'channel=news&event=greet&id=a1', 'hello')).status, 200)
  t.equal((await publish(base, 'channel=news', 'line1\nline2\r\nline3\rline4')).status, 200)
  t.equal((await publish(base, 'channel=news&event=empty&id=a3', '')).status, 200)
  t.equal((await publish(base, 'channel=other', 'not for us')).status, 200)
  t.equal((await publish(base, 'channel=news&event=last&id=a4', 'ünïcödé 😀')).status, 200)
  await r.waitEvents(5)
  await sleep(50) // anything extra (a duplicate, the other channel) would be here by now
  const rest = r.events.slice(1)
  t.same(rest[0], { event: 'greet', data: 'hello', id: 'a1' })
  t.match(rest[1], { event: 'message', data: 'line1\nline2\nline3\nline4' })
  t.not(rest[1]!.id, 'a1', 'the server gave the second event its own id')
  t.same(rest[2], { event: 'empty', data: '', id: 'a3' })
  t.same(rest[3], { event: 'last', data: 'ünïcödé 😀', id: 'a4' })
  t.equal(rest.length, 4, 'each event once, none from the other channel')
  t.equal(r.errors.length, 0)
})

t.test('reconnects after DELETE /clients/ID with Last-Event-ID and gets what it missed, exactly once', async (t) => {
  // retry: 300 ms, so the event published while the client is away is published before it returns.
  const { base } = await startServer(t, { retryMs: 300 })
  const r = new Recorder(t, `${base}/events/tok`)
  await r.waitEvents(1)
  const first = JSON.parse(r.events[0]!.data) as { client: number }
  await publish(base, 'event=a&id=1', 'A')
  await r.waitEvents(2)

  let missed: ReturnType<typeof publish> | null = null
  let idAtDrop: string | null = ''
  r.client.once('error', (err) => {
    idAtDrop = r.client.lastEventId
    t.equal(err.kind, 'ended', 'the server ended the stream')
    t.type(err.retryInMs, 'number', 'and the client will reconnect')
    missed = publish(base, 'event=b&id=2', 'B')
  })
  const del = await fetch(`${base}/clients/${first.client}`, { method: 'DELETE', headers: { authorization: `Bearer ${PUB}` } })
  t.same(await del.json(), { closed: 1 })
  const published = await until(() => missed, () => 'the drop')
  t.equal((await published).status, 200, 'B published while the client was away')
  t.equal(idAtDrop, '1', 'Last-Event-ID to send is the last id seen')

  await until(() => r.events.filter((e) => e.event === 'ready').length === 2, () => `a second ready; got ${JSON.stringify(r.events)}`)
  await r.waitEvents(4)
  await publish(base, 'event=c&id=3', 'C')
  await r.waitEvents(5)
  await sleep(50)
  const seen = r.events.filter((e) => e.event !== 'ready').map((e) => `${e.event}:${e.data}:${e.id}`)
  t.same(seen, ['a:A:1', 'b:B:2', 'c:C:3'], 'the replayed event once, live ones once, in order')
  t.equal(r.perOpen.length, 2, 'two connections')
  t.same(r.perOpen[1]!.map((e) => e.event), ['ready', 'b', 'c'], 'the event missed came back on the new stream')
})

// ------------------------------------------------------------------ tricky streams from a raw server

// Everything the parser must get right, in one stream: a BOM, an ignored retry and a valid one, a
// comment, CRLF, a CR-only event, an id with NUL (ignored), an empty data line, and a last event
// without its blank line (discarded, and its id not kept).
const TRICKY =
  '\uFEFF' +
  'retry: 12x\n' +
  'retry: 2\n' +
  ': a comment\n' +
  'id: 1\r\nevent: first\r\ndata: a\r\ndata: b\r\n\r\n' +
  'data: cr only\rid: 7\r\r' +
  'id: 8\0\ndata: nul id ignored\n\n' +
  'event: multi\ndata: é€\ndata:\n\n' +
  'id: 99\ndata: lost without its blank line\n'
const TRICKY_EVENTS: SseEvent[] = [
  { event: 'first', data: 'a\nb', id: '1' },
  { event: 'message', data: 'cr only', id: '7' },
  { event: 'message', data: 'nul id ignored', id: '7' },
  { event: 'multi', data: 'é€\n', id: '7' },
]

t.test('parses a tricky stream split at every byte, reconnecting after each with Last-Event-ID', async (t) => {
  const bytes = Buffer.from(TRICKY)
  // Connection k sends bytes [0, k), pauses, sends the rest and closes (a close-delimited body);
  // the client reconnects after `retry: 2`. One more connection answers 204 to stop it.
  const srv = await rawServer(t, (socket, k) => {
    if (k > bytes.length) return void socket.end(NO_CONTENT)
    socket.write(Buffer.concat([Buffer.from(SSE_HEAD + '\r\n'), bytes.subarray(0, k)]))
    setTimeout(() => socket.end(bytes.subarray(k)), 5)
  })
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  await until(() => r.closed, () => `the end; ${r.perOpen.length} connections so far`, 20_000)
  t.equal(r.perOpen.length, bytes.length + 1, 'one stream per split point')
  const wrong = r.perOpen.map((evs, k) => ({ k, evs })).filter(({ evs }) => JSON.stringify(evs) !== JSON.stringify(TRICKY_EVENTS))
  t.same(wrong.slice(0, 3), [], 'the same events at every split')
  t.equal(r.client.retryMs, 2, 'retry: 2 was applied, retry: 12x ignored')
  t.equal(r.errors.filter((e) => e.kind !== 'ended').length, 0, 'every stream just ended')
  t.notOk(srv.requests[0]!.includes('Last-Event-ID'), 'no Last-Event-ID at first')
  const resumed = srv.requests.slice(1).filter((h) => h.includes('\r\nLast-Event-ID: 7\r\n')).length
  t.equal(resumed, srv.requests.length - 1, 'every reconnection sends Last-Event-ID: 7 (not 8\\0, not the lost 99)')
})

t.test('sends an exact request head: headers option, Last-Event-ID option', async (t) => {
  const srv = await rawServer(t, (socket) => socket.end(NO_CONTENT))
  const r = new Recorder(t, srv.url('/events/x?channel=a&channel=b'), { headers: { Authorization: 'Bearer t', 'X-Trace': 'é1' }, lastEventId: '41' })
  await r.waitClosed()
  t.equal(
    srv.requests[0],
    `GET /events/x?channel=a&channel=b HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n` +
      `Authorization: Bearer t\r\nX-Trace: ${Buffer.from('é1').toString('latin1')}\r\nLast-Event-ID: 41\r\n\r\n`,
  )
  t.throws(() => new SseClient(srv.url(), { headers: { 'X-Bad': 'a\r\nInjected: 1' } }), TypeError, 'CR LF in a header value is refused')
  t.throws(() => new SseClient(srv.url(), { headers: { 'Bad Name': 'x' } }), TypeError)
  t.throws(() => new SseClient('ftp://127.0.0.1/'), TypeError)
  t.throws(() => new SseClient('not a url'), TypeError)
})

const EVENTS_TEXT = 'id: 1\nevent: a\ndata: x\n\ndata: y\ndata: z\n\n'
const EVENTS_PARSED: SseEvent[] = [
  { event: 'a', data: 'x', id: '1' },
  { event: 'message', data: 'y\nz', id: '1' },
]

/** Write `pieces` one after the other, each after the previous one went out and a moment passed. */
function trickle(socket: net.Socket, pieces: Array<string | Buffer>, then: () => void = () => {}): void {
  const next = (i: number): void => {
    if (socket.destroyed) return
    if (i === pieces.length) return then()
    socket.write(pieces[i]!, () => setTimeout(() => next(i + 1), 1))
  }
  next(0)
}

t.test('reads a chunked body cut anywhere, with extensions and trailers, and reconnects at its last chunk', async (t) => {
  const text = Buffer.from(EVENTS_TEXT)
  const srv = await rawServer(t, (socket, k) => {
    if (k > 0) return void socket.end(NO_CONTENT)
    const pieces: string[] = [SSE_HEAD + 'Transfer-Encoding: chunked\r\n\r\n']
    // Chunks of 1, 2, 3 ... bytes; some with an extension; the framing itself split across writes.
    let pos = 0
    for (let size = 1; pos < text.length; size++) {
      const part = text.subarray(pos, Math.min(pos + size, text.length)).toString('latin1')
      const framed = `${part.length.toString(16)}${size % 3 === 0 ? ';ext="1"' : ''}\r\n${part}\r\n`
      pieces.push(framed.slice(0, 2), framed.slice(2))
      pos += size
    }
    pieces.push('0\r\nX-Trailer: 1\r\n', '\r\n')
    // The server keeps the connection open: the last chunk alone must end the stream.
    trickle(socket, pieces.map((p) => Buffer.from(p, 'latin1')))
  })
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  await r.waitClosed()
  t.same(r.events, EVENTS_PARSED)
  t.equal(srv.requests.length, 2, 'reconnected after the last chunk although the socket stayed open')
  t.same(r.errors.map((e) => e.kind), ['ended'])
})

t.test('reads a Content-Length body and reconnects at its end, though the server keeps the socket open', async (t) => {
  const srv = await rawServer(t, (socket, k) => {
    if (k > 0) return void socket.end(NO_CONTENT)
    const body = Buffer.from(EVENTS_TEXT + 'data: after the body\n\n')
    const length = Buffer.byteLength(EVENTS_TEXT)
    trickle(socket, [`${SSE_HEAD}Content-Length: ${length}\r\n\r\n`, body.subarray(0, 10), body.subarray(10)])
  })
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  await r.waitClosed()
  t.same(r.events, EVENTS_PARSED, 'bytes after Content-Length are not events')
  t.equal(srv.requests.length, 2)
})

t.test('reads a close-delimited HTTP/1.0 body', async (t) => {
  const srv = await rawServer(t, (socket, k) => {
    if (k > 0) return void socket.end(NO_CONTENT)
    trickle(socket, ['HTTP/1.0 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n', EVENTS_TEXT.slice(0, 7), EVENTS_TEXT.slice(7)], () => socket.end())
  })
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  await r.waitClosed()
  t.same(r.events, EVENTS_PARSED)
})

t.test('skips 1xx interim responses', async (t) => {
  const srv = await rawServer(t, (socket, k) => {
    if (k > 0) return void socket.end(NO_CONTENT)
    trickle(socket, ['HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n', `${SSE_HEAD}\r\n${EVENTS_TEXT}`], () => socket.end())
  })
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  await r.waitClosed()
  t.same(r.events, EVENTS_PARSED)
})

for (const [status, reason, body] of [
  [401, 'Unauthorized', 'unknown token'],
  [503, 'Service Unavailable', 'too many clients'],
  [302, 'Found', ''],
  [500, '', 'x'.repeat(5000)],
] as const) {
  t.test(`a ${status} is an error event with the status, then close, and no reconnection`, async (t) => {
    const srv = await rawServer(t, (socket) => {
      socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nLocation: /elsewhere\r\n\r\n${body}`)
    })
    const r = new Recorder(t, srv.url(), { retryMs: 1 })
    await r.waitClosed()
    t.equal(r.errors.length, 1)
    const err = r.errors[0]!
    t.ok(err instanceof SseClientError)
    t.match(err, { kind: 'status', status, retryInMs: null })
    const line = reason === '' ? `HTTP ${status}` : `HTTP ${status} ${reason}`
    t.equal(err.message, body === '' ? line : `${line}: ${body.slice(0, 1024)}`, 'the message holds the start of the body')
    t.equal(r.client.readyState, 'closed')
    await sleep(100) // with retry 1 ms, a reconnection would be here by now
    t.equal(srv.requests.length, 1, 'not retried')
  })
}

for (const type of ['text/plain', null, 'text/event-streams']) {
  t.test(`a 200 with Content-Type ${String(type)} is an error event with the status, not a stream`, async (t) => {
    const srv = await rawServer(t, (socket) => {
      socket.end(`HTTP/1.1 200 OK\r\n${type === null ? '' : `Content-Type: ${type}\r\n`}\r\n${EVENTS_TEXT}`)
    })
    const r = new Recorder(t, srv.url(), { retryMs: 1 })
    await r.waitClosed()
    t.match(r.errors, [{ kind: 'content-type', status: 200, retryInMs: null }])
    t.same(r.events, [], 'its body is not parsed')
    await sleep(100)
    t.equal(srv.requests.length, 1, 'not retried')
  })
}

t.test('accepts text/event-stream in any case and with parameters', async (t) => {
  const srv = await rawServer(t, (socket, k) => {
    if (k > 0) return void socket.end(NO_CONTENT)
    socket.end(`HTTP/1.1 200 OK\r\ncontent-type: Text/Event-Stream ; charset=UTF-8\r\n\r\n${EVENTS_TEXT}`)
  })
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  await r.waitClosed()
  t.same(r.events, EVENTS_PARSED)
})

t.test('a 204 stops without an error and never reconnects', async (t) => {
  const srv = await rawServer(t, (socket) => socket.end(NO_CONTENT))
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  await r.waitClosed()
  t.same(r.errors, [])
  t.equal(r.client.readyState, 'closed')
  await sleep(100)
  t.equal(srv.requests.length, 1)
})

t.test('close() ends an open stream and nothing reconnects', async (t) => {
  let serverSideClosed = false
  const srv = await rawServer(t, (socket) => {
    socket.on('close', () => (serverSideClosed = true))
    socket.write(`${SSE_HEAD}\r\n${EVENTS_TEXT}`)
  })
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  await r.waitEvents(2)
  r.client.close()
  t.equal(r.client.readyState, 'closed')
  await r.waitClosed()
  await until(() => serverSideClosed, () => 'the server to see the close')
  await sleep(100)
  t.equal(srv.requests.length, 1)
  t.same(r.errors, [], 'close() is not an error')
})

t.test('close() during the wait cancels the reconnection', async (t) => {
  const srv = await rawServer(t, (socket) => socket.end(`${SSE_HEAD}\r\n${EVENTS_TEXT}`))
  const r = new Recorder(t, srv.url(), { retryMs: 100 })
  const err = await r.waitError()
  t.equal(err.kind, 'ended')
  t.equal(r.client.readyState, 'connecting')
  r.client.close()
  await r.waitClosed()
  await sleep(250)
  t.equal(srv.requests.length, 1)
})

t.test('close() from a message listener drops the rest of the chunk', async (t) => {
  const srv = await rawServer(t, (socket) => socket.write(`${SSE_HEAD}\r\ndata: 1\n\ndata: 2\n\ndata: 3\n\n`))
  const seen: string[] = []
  const client = new SseClient(srv.url())
  t.teardown(() => client.close())
  client.on('message', (e) => {
    seen.push(e.data)
    client.close()
  })
  await new Promise<void>((resolve) => client.on('close', resolve))
  t.same(seen, ['1'])
})

t.test('a refused connection is an error event, retried with a growing wait', async (t) => {
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const r = new Recorder(t, `http://127.0.0.1:${port}/events`, { retryMs: 10 })
  await r.waitError(3)
  r.client.close()
  t.match(r.errors.slice(0, 3), [{ kind: 'network', status: null }, { kind: 'network' }, { kind: 'network' }])
  const waits = r.errors.slice(0, 3).map((e) => e.retryInMs!)
  // Backoff doubles the base (10, 20, 40 ms), jitter adds up to half: the ranges do not overlap.
  t.ok(waits[0]! >= 10 && waits[0]! <= 15, `first wait ${waits[0]} in [10, 15]`)
  t.ok(waits[1]! >= 20 && waits[1]! <= 30, `second wait ${waits[1]} in [20, 30]`)
  t.ok(waits[2]! >= 40 && waits[2]! <= 60, `third wait ${waits[2]} in [40, 60]`)
})

t.test('broken chunk framing is a protocol error, and the client reconnects', async (t) => {
  const srv = await rawServer(t, (socket, k) => {
    if (k > 0) return void socket.end(NO_CONTENT)
    socket.write(`${SSE_HEAD}Transfer-Encoding: chunked\r\n\r\n${chunk('data: ok\n\n')}zz\r\ndata: no\n\n`)
  })
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  await r.waitClosed()
  t.same(r.events.map((e) => e.data), ['ok'], 'the events before the break are kept')
  t.match(r.errors, [{ kind: 'protocol', message: 'malformed chunk size' }])
  t.equal(srv.requests.length, 2)
})

t.test('a chunked stream cut in the middle of a chunk drops the partial event and reconnects', async (t) => {
  const srv = await rawServer(t, (socket, k) => {
    if (k > 0) return void socket.end(NO_CONTENT)
    socket.end(`${SSE_HEAD}Transfer-Encoding: chunked\r\n\r\n${chunk('data: ok\n\n')}20\r\ndata: half`)
  })
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  await r.waitClosed()
  t.same(r.events.map((e) => e.data), ['ok'])
  t.match(r.errors, [{ kind: 'ended', message: 'the stream ended in the middle of a chunk' }])
})

t.test(`a response head of ${MAX_RESPONSE_HEAD_BYTES} bytes is read, one byte more is a protocol error`, async (t) => {
  const headOf = (size: number): string => {
    const start = `${SSE_HEAD}X-Pad: `
    return start + 'p'.repeat(size - start.length - 4) + '\r\n\r\n'
  }
  for (const [size, ok] of [
    [MAX_RESPONSE_HEAD_BYTES, true],
    [MAX_RESPONSE_HEAD_BYTES + 1, false],
  ] as const) {
    const srv = await rawServer(t, (socket, k) => {
      if (k > 0) return void socket.end(NO_CONTENT)
      const head = headOf(size)
      t.equal(head.length, size)
      trickle(socket, [head.slice(0, 1000), head.slice(1000) + 'data: x\n\n'], () => socket.end())
    })
    const r = new Recorder(t, srv.url(), { retryMs: 1 })
    await r.waitClosed()
    if (ok) t.same(r.events.map((e) => e.data), ['x'], `${size}: read`)
    else t.match(r.errors, [{ kind: 'protocol', message: /response head over/ }], `${size}: refused`)
  }
})

t.test('an event over maxEventBytes is a protocol error; the client reconnects', async (t) => {
  const srv = await rawServer(t, (socket, k) => {
    if (k > 0) return void socket.end(NO_CONTENT)
    socket.write(`${SSE_HEAD}\r\ndata: ${'x'.repeat(100)}\n\n`)
  })
  const r = new Recorder(t, srv.url(), { retryMs: 1, maxEventBytes: 64 })
  await r.waitClosed()
  t.same(r.events, [])
  t.match(r.errors, [{ kind: 'protocol', message: /larger than 64 bytes/ }])
})

t.test('a server that accepts and never answers leaves the client connecting until close()', async (t) => {
  // (The 30 s head deadline that retries such a server is too long to wait for in a test.)
  const srv = await rawServer(t, () => {})
  const r = new Recorder(t, srv.url())
  await until(() => srv.requests.length === 1, () => 'the request')
  t.equal(r.client.readyState, 'connecting')
  r.client.close()
  await r.waitClosed()
  t.same(r.errors, [])
})

// ------------------------------------------------------------------ https

// A self-signed certificate for 127.0.0.1 and localhost, valid 2000-2100, made for these tests only.
const KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgGUNHyxJNhUFR2wpm
98G1W0E7m93XZQVd5NWfnvMOc4ehRANCAASTASsmLvetAjAJ+9J3ekMgvlhr6Xon
LgT8Ba/17hT0XZkSv5QL6fvNxESOYT2kVEVkjfuY/MUy9gOZc5ll5MWc
-----END PRIVATE KEY-----
`
const CERT = `-----BEGIN CERTIFICATE-----
MIIBZzCCAQ2gAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhv
c3QwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBQxEjAQBgNVBAMM
CWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABJMBKyYu960CMAn7
0nd6QyC+WGvpeicuBPwFr/XuFPRdmRK/lAvp+83ERI5hPaRURWSN+5j8xTL2A5lz
mWXkxZyjTjBMMA8GA1UdEwEB/wQFMAMBAf8wGgYDVR0RBBMwEYcEfwAAAYIJbG9j
YWxob3N0MB0GA1UdDgQWBBQH3mA9qnmSCC0WX0d3yrN+UpUc1TAKBggqhkjOPQQD
AgNIADBFAiEAyde79dBwOhCXcNUbtfrgHvSESX7jzu9nl9XLwVp41ZoCIDXV0Tu/
Wm/FdRPzjoNRDA57iTwD4LF+dOzAe0SNwNK6
-----END CERTIFICATE-----
`

t.test('reads a stream over https through node:tls', async (t) => {
  const srv = await rawServer(
    t,
    (socket, k) => {
      if (k > 0) return void socket.end(NO_CONTENT)
      socket.end(`${SSE_HEAD}Transfer-Encoding: chunked\r\n\r\n${chunk(EVENTS_TEXT)}0\r\n\r\n`)
    },
    tls.createServer({ key: KEY, cert: CERT, ALPNProtocols: ['http/1.1'] }),
  )
  const r = new Recorder(t, srv.url(), { retryMs: 1, tls: { ca: CERT } })
  await r.waitClosed()
  t.same(r.events, EVENTS_PARSED)
  t.match(srv.requests[0], /^GET \/events HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\n/)
})

t.test('an https server with an untrusted certificate is a network error, retried', async (t) => {
  const srv = await rawServer(t, (socket) => socket.end(NO_CONTENT), tls.createServer({ key: KEY, cert: CERT }))
  const r = new Recorder(t, srv.url(), { retryMs: 1 })
  const err = await r.waitError()
  r.client.close()
  t.equal(err.kind, 'network')
  t.match(err.message, /self[- ]signed/i)
  t.type(err.retryInMs, 'number')
})
