// The HTTP routes of docs/wire.md ("Routes", "The wire, byte by byte"), byte for byte
// over real sockets on 127.0.0.1: the stream, POST /publish, /stats, /metrics, DELETE /clients,
// OPTIONS and 405.

import t from 'tap'
import {
  afterReady,
  chunk,
  clientId,
  ev,
  openStream,
  parseResponse as parse,
  PUB,
  publish,
  RawClient,
  READY_PREFIX,
  rawRequest,
  startServer,
  STREAM_HEAD,
  streamKey,
  TOKEN,
  type ParsedResponse as Parsed,
  type Running,
} from './helpers.js'

// ------------------------------------------------------------------ local helpers

/** One request on its own connection, `Connection: close`; the whole answer, parsed. */
async function request(
  port: number,
  method: string,
  target: string,
  opts: { headers?: Record<string, string>; body?: string; token?: string | null } = {},
): Promise<Parsed> {
  const body = opts.body === undefined ? null : Buffer.from(opts.body)
  let head = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n`
  const token = opts.token === undefined ? PUB : opts.token
  if (token !== null) head += `Authorization: Bearer ${token}\r\n`
  for (const [k, v] of Object.entries(opts.headers ?? {})) head += `${k}: ${v}\r\n`
  if (body !== null) head += `Content-Length: ${body.length}\r\n`
  const bytes = body === null ? Buffer.from(head + '\r\n', 'latin1') : Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), body])
  return parse(await rawRequest(port, bytes))
}

/** POST /publish over a raw socket; the parsed reply (body is the exact JSON text). */
function post(port: number, query: string, body: string, opts: { headers?: Record<string, string>; token?: string | null } = {}): Promise<Parsed> {
  return request(port, 'POST', `/publish${query === '' ? '' : '?' + query}`, {
    headers: { 'Content-Type': 'text/plain', ...opts.headers },
    body,
    token: opts.token,
  })
}


/**
 * Broadcast a last event and wait until every given stream has it, so that what each stream
 * received before it can be compared as a whole: nothing is still on its way.
 */
async function fence(r: Running, streams: RawClient[], data = 'fence'): Promise<string> {
  const res = await publish(r.base, '', data)
  const id = String(res.json.id)
  for (const s of streams) await s.waitFor(ev(id, data))
  return ev(id, data)
}

/** Everything a stream received once its ready chunk is complete. */
async function readyBytes(s: RawClient): Promise<string> {
  await s.waitFor((x) => READY_PREFIX.test(x))
  return s.received
}

/** The exact head and ready chunk that stream `s` should have got, with its own retry: value and id. */
function exactReady(s: RawClient, json: string): string {
  const retry = /retry: (\d+)\n/.exec(s.received)![1]
  return STREAM_HEAD + chunk(`retry: ${retry}\nevent: ready\ndata: ${json.replace('%ID%', String(clientId(s))).replace('%KEY%', streamKey(s))}\n\n`)
}

// ------------------------------------------------------------------ GET /events/TOKEN

t.test('a stream starts with the exact head, then one chunk with retry: and the ready event', async (t) => {
  const retryMs = 2000
  const r = await startServer(t, { retryMs })
  const ids = new Set<number>()
  // The retry value is jittered: look at several streams.
  for (let i = 0; i < 8; i++) {
    const s = await openStream(r.port, `/events/${TOKEN}`)
    const m = /retry: (\d+)\n/.exec(s.received)
    t.ok(m, 'a retry: line is sent')
    const n = Number(m![1])
    t.ok(n >= retryMs && n <= 1.5 * retryMs, `retry ${n} is within [${retryMs}, ${1.5 * retryMs}]`)
    const id = clientId(s)
    t.ok(Number.isSafeInteger(id) && id > 0, 'client id is a positive integer')
    ids.add(id)
    await s.waitFor(/"key":"[\w-]{22}"\}\n/)
    const expected = STREAM_HEAD + chunk(`retry: ${n}\nevent: ready\ndata: {"client":${id},"user":null,"channels":["default"],"key":"${streamKey(s)}"}\n\n`)
    await s.waitFor((x) => x.length >= expected.length)
    t.equal(s.received, expected, 'head and ready chunk, byte for byte')
    s.close()
  }
  t.equal(ids.size, 8, 'every stream has its own client id')
})

t.test('ready.channels keeps the order of the channel parameters', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}?channel=b&channel=a`)
  t.equal(await readyBytes(s), exactReady(s, '{"client":%ID%,"user":null,"channels":["b","a"],"key":"%KEY%"}'))
  t.equal(r.server.connections('a'), 1)
  t.equal(r.server.connections('b'), 1)
  t.equal(r.server.connections('default'), 0, 'a stream with channels is not on default')
  s.close()
})

t.test('ready.user is the name of a user from the users option', async (t) => {
  const r = await startServer(t, { users: [{ token: 'alice-secret', user: 'alice', roles: ['staff'] }] })
  const s = await openStream(r.port, '/events/alice-secret')
  t.equal(await readyBytes(s), exactReady(s, '{"client":%ID%,"user":"alice","channels":["default"],"key":"%KEY%"}'))
  s.close()
})

t.test('an unknown token gets 401 with a short text body and the connection is closed', async (t) => {
  const r = await startServer(t)
  const c = await RawClient.open(r.port)
  c.write('GET /events/nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await c.waitClosed()
  const res = parse(c.received)
  t.equal(res.statusLine, 'HTTP/1.1 401 Unauthorized')
  t.equal(res.headers.connection, 'close')
  t.match(res.headers['content-type'], /^text\/plain/)
  t.equal(Number(res.headers['content-length']), Buffer.byteLength(res.body))
  t.ok(res.body.length > 0 && res.body.length < 200, 'a short body')
  t.notMatch(c.received, /event-stream|event: ready/, 'no stream')
  t.equal(r.server.clientCount, 0)
  // The exact bytes of today's answer.
  t.equal(c.received, 'HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\nConnection: close\r\n\r\nunknown token\n')
  // A stream-only server still serves the next client.
  const s = await openStream(r.port, `/events/${TOKEN}`)
  t.ok(s.received.startsWith(STREAM_HEAD))
  s.close()
})

t.test('an HTTP/1.0 stream has Connection: close, no chunked coding and unframed events', async (t) => {
  const retryMs = 1000
  const r = await startServer(t, { retryMs })
  const c = await RawClient.open(r.port)
  c.write('GET /events/tok HTTP/1.0\r\n\r\n')
  await c.waitFor('\n\n')
  const head =
    'HTTP/1.1 200 OK\r\n' +
    'Content-Type: text/event-stream; charset=utf-8\r\n' +
    'Cache-Control: no-cache, no-transform\r\n' +
    'Connection: close\r\n' +
    'X-Accel-Buffering: no\r\n' +
    'Access-Control-Allow-Origin: *\r\n' +
    '\r\n'
  const m = /retry: (\d+)\n/.exec(c.received)!
  const n = Number(m[1])
  t.ok(n >= retryMs && n <= 1.5 * retryMs, `retry ${n} within range`)
  const id = clientId(c)
  await c.waitFor(/"key":"[\w-]{22}"\}\n/)
  const ready = `retry: ${n}\nevent: ready\ndata: {"client":${id},"user":null,"channels":["default"],"key":"${streamKey(c)}"}\n\n`
  await c.waitFor((x) => x.length >= head.length + ready.length)
  t.equal(c.received, head + ready, 'head without Transfer-Encoding, ready event without chunk size')

  const res = await publish(r.base, '', 'x')
  t.same(res, { status: 200, json: { id: '1', delivered: 1 } })
  await c.waitFor('data: x\n\n')
  t.equal(c.received, head + ready + 'id: 1\ndata: x\n\n', 'the event as raw text, no chunk framing')

  const multi = await publish(r.base, 'event=two', 'a\nb')
  t.equal(multi.json.delivered, 1)
  await c.waitFor('data: b\n\n')
  t.equal(c.received, head + ready + 'id: 1\ndata: x\n\nid: 2\nevent: two\ndata: a\ndata: b\n\n')

  // Close-delimited: the end of the stream is the end of the connection, never `0\r\n\r\n`.
  const before = c.received.length
  await r.server.stop()
  await c.waitClosed()
  t.match(c.received.slice(before), /^(retry: \d+\n\n)?$/, 'at most a bare retry:, no chunk framing')
  t.notMatch(c.received, /0\r\n\r\n/)
})

t.test('HEAD of a stream sends the headers only and the connection takes a next request', async (t) => {
  const r = await startServer(t)
  const c = await RawClient.open(r.port)
  c.write('HEAD /events/tok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await c.waitFor('\r\n\r\n')
  t.equal(c.received, STREAM_HEAD, 'the stream head, no body')
  t.equal(r.server.clientCount, 0, 'HEAD opens no stream')
  t.notOk(c.closed, 'connection still open')

  // A plain request on the same connection.
  c.write('GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer pub\r\n\r\n')
  await c.waitFor((x) => /\r\n\r\n\{[^]*\}$/.test(x.slice(STREAM_HEAD.length)))
  const stats = parse(c.received.slice(STREAM_HEAD.length))
  t.equal(stats.status, 200)
  t.equal(JSON.parse(stats.body).clients, 0)

  // And then a real stream on it.
  const mark = c.received.length
  c.write('GET /events/tok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await c.waitFor((x) => x.slice(mark).endsWith('\n\n\r\n'))
  t.ok(c.received.slice(mark).startsWith(STREAM_HEAD), 'stream head')
  t.match(c.received.slice(mark), READY_PREFIX)
  t.equal(r.server.clientCount, 1)
  c.close()
})

// ------------------------------------------------------------------ POST /publish

t.test('POST /publish answers 200 with exact JSON and server ids 1, 2, 3', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  for (const n of [1, 2, 3]) {
    const res = await post(r.port, '', `m${n}`)
    t.equal(res.status, 200)
    t.equal(res.body, `{"id":"${n}","delivered":1}`, 'exact JSON text')
    t.match(res.headers['content-type'], /^application\/json/)
  }
  await s.waitFor(ev('3', 'm3'))
  t.equal(afterReady(s), ev('1', 'm1') + ev('2', 'm2') + ev('3', 'm3'))
  s.close()
})

t.test('pipelined POST /publish requests on one keep-alive connection are answered in order', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  const c = await RawClient.open(r.port)
  let bytes = ''
  for (const data of ['p1', 'p2', 'p3']) {
    bytes += `POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${PUB}\r\nContent-Type: text/plain\r\nContent-Length: ${data.length}\r\n\r\n${data}`
  }
  c.write(bytes)
  await c.waitFor((x) => (x.match(/HTTP\/1\.1 /g) ?? []).length === 3 && x.endsWith('"delivered":1}'))
  const bodies = c.received.split(/HTTP\/1\.1 /).slice(1).map((x) => parse('HTTP/1.1 ' + x))
  t.same(
    bodies.map((b) => [b.status, b.body]),
    [
      [200, '{"id":"1","delivered":1}'],
      [200, '{"id":"2","delivered":1}'],
      [200, '{"id":"3","delivered":1}'],
    ],
  )
  t.notOk(c.closed, 'the connection stays open')
  await s.waitFor(ev('3', 'p3'))
  t.equal(afterReady(s), ev('1', 'p1') + ev('2', 'p2') + ev('3', 'p3'))
  c.close()
  s.close()
})

t.test('a publisher id is used as is, and server ids keep increasing', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  const a = await post(r.port, '', 'one')
  t.equal(a.body, '{"id":"1","delivered":1}')
  const b = await post(r.port, 'id=order-7%3Aa%20b', 'two')
  t.equal(b.body, '{"id":"order-7:a b","delivered":1}')
  const c = await post(r.port, '', 'three')
  const third = JSON.parse(c.body) as { id: string }
  t.ok(Number(third.id) > 1, `next server id ${third.id} is greater than 1`)
  await s.waitFor('data: three\n')
  t.equal(afterReady(s), ev('1', 'one') + ev('order-7:a b', 'two') + ev(third.id, 'three'))
  s.close()
})

t.test('the event name goes on the wire as event:, and is omitted for message', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  await post(r.port, 'event=greet', 'hi')
  await post(r.port, 'event=message', 'plain')
  await post(r.port, 'event=user-joined&id=u1', '{"name":"bo"}')
  const end = await fence(r, [s])
  t.equal(afterReady(s), ev('1', 'hi', 'greet') + ev('2', 'plain') + ev('u1', '{"name":"bo"}', 'user-joined') + end)
  s.close()
})

t.test('data is split on CRLF, CR and LF; empty data and empty lines are data: \\n', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  const cases: Array<[string, string]> = [
    ['a\r\nb\rc\nd', 'data: a\ndata: b\ndata: c\ndata: d\n'],
    ['', 'data: \n'],
    ['a\n\nb', 'data: a\ndata: \ndata: b\n'],
    ['a\r\n\r\nb', 'data: a\ndata: \ndata: b\n'],
    ['end\n', 'data: end\ndata: \n'],
    ['\r', 'data: \ndata: \n'],
    ['x: y  ', 'data: x: y  \n'],
    ['héllo ✓', 'data: héllo ✓\n'],
  ]
  let expected = ''
  for (const [i, [body, lines]] of cases.entries()) {
    const res = await post(r.port, '', body)
    t.equal(res.body, `{"id":"${i + 1}","delivered":1}`)
    // Chunk sizes count UTF-8 bytes; the stream is read as latin1.
    expected += Buffer.from(chunk(`id: ${i + 1}\n${lines}\n`)).toString('latin1')
  }
  const end = await fence(r, [s])
  t.equal(afterReady(s), expected + end)
  s.close()
})

t.test('targets: channel, user, role and client, and several of them together', async (t) => {
  const r = await startServer(t, {
    users: [
      { token: 'alice-t', user: 'alice', roles: ['staff'] },
      { token: 'bob-t', user: 'bob', roles: ['guest'] },
      { token: 'carol-t', user: 'carol', roles: ['staff', 'publish'] },
    ],
  })
  const plainA = await openStream(r.port, `/events/${TOKEN}?channel=a`)
  const plainB = await openStream(r.port, `/events/${TOKEN}?channel=b`)
  const plainAB = await openStream(r.port, `/events/${TOKEN}?channel=a&channel=b`)
  const alice = await openStream(r.port, '/events/alice-t?channel=a')
  const alice2 = await openStream(r.port, '/events/alice-t?channel=b')
  const bob = await openStream(r.port, '/events/bob-t?channel=b')
  const carol = await openStream(r.port, '/events/carol-t?channel=c')
  const all = [plainA, plainB, plainAB, alice, alice2, bob, carol]
  const expected = new Map<RawClient, string>(all.map((s) => [s, '']))

  const send = async (query: string, data: string, to: RawClient[]): Promise<void> => {
    const res = await post(r.port, query, data)
    t.equal(res.status, 200, `${query} status`)
    const { id, delivered } = JSON.parse(res.body) as { id: string; delivered: number }
    t.equal(delivered, to.length, `${query} reaches ${to.length} streams`)
    for (const s of to) expected.set(s, expected.get(s)! + ev(id, data))
  }

  await send('channel=a', 'to-a', [plainA, plainAB, alice])
  await send('channel=b', 'to-b', [plainB, plainAB, alice2, bob])
  await send('user=alice', 'to-alice', [alice, alice2])
  await send('role=staff', 'to-staff', [alice, alice2, carol])
  await send('role=guest', 'to-guest', [bob])
  await send(`client=${clientId(plainAB)}`, 'to-one', [plainAB])
  await send('channel=b&role=staff', 'b-and-staff', [alice2])
  await send('channel=a&user=alice', 'a-and-alice', [alice])
  await send('channel=c&user=alice', 'c-and-alice', [])
  await send(`channel=a&client=${clientId(plainB)}`, 'a-and-client-on-b', [])
  await send('', 'everyone', all)

  const end = await fence(r, all)
  for (const [i, s] of all.entries()) t.equal(afterReady(s), expected.get(s)! + end, `stream ${i} got exactly its events`)
  for (const s of all) s.close()
})

t.test('a user or client target that is not connected is 404 offline; an empty channel is 200 delivered 0', async (t) => {
  const r = await startServer(t, { users: [{ token: 'dave-t', user: 'dave', roles: [] }] })
  const s = await openStream(r.port, `/events/${TOKEN}`)
  for (const q of ['user=dave', 'user=nobody', 'client=999999', 'channel=default&user=dave']) {
    const res = await post(r.port, q, 'x')
    t.equal(res.status, 404, q)
    t.equal(res.body, '{"delivered":0,"error":"offline"}', q)
  }
  const empty = await post(r.port, 'channel=nobody-here', 'kept')
  t.equal(empty.status, 200)
  const { id, delivered } = JSON.parse(empty.body) as { id: string; delivered: number }
  t.equal(delivered, 0)
  t.equal(empty.body, `{"id":"${id}","delivered":0}`)

  // A client that was connected and left is offline too.
  const gone = await openStream(r.port, `/events/${TOKEN}`)
  const goneId = clientId(gone)
  gone.close()
  await t.resolves(waitUntil(() => r.server.clientCount === 1))
  const res = await post(r.port, `client=${goneId}`, 'x')
  t.equal(res.status, 404)
  t.equal(res.body, '{"delivered":0,"error":"offline"}')

  const end = await fence(r, [s])
  t.equal(afterReady(s), end, 'no refused event reached the stream')
  s.close()
})

t.test('an event name or id with CR or LF is 400, and nothing is sent', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  for (const q of ['event=a%0Ab', 'event=a%0Db', 'event=a%0D%0Ab', 'id=1%0A2', 'id=1%0D', 'id=%0D%0A']) {
    const res = await post(r.port, q, 'x')
    t.equal(res.status, 400, q)
    t.match(res.headers['content-type'], /json/, q)
  }
  for (const form of ['event=a%0Ab&data=x', 'id=a%0Db&data=x']) {
    const res = await post(r.port, '', form, { headers: { 'Content-Type': 'application/x-www-form-urlencoded' } })
    t.equal(res.status, 400, `form ${form}`)
  }
  const end = await fence(r, [s])
  t.equal(afterReady(s), end, 'no event was sent')
  t.equal(JSON.parse((await request(r.port, 'GET', '/stats')).body).published, 1, 'only the fence was published')
  s.close()
})

t.test('POST /publish: no bearer or an unknown one is 401 with WWW-Authenticate, a stream-only token 403', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  const none = await post(r.port, '', 'x', { token: null })
  t.equal(none.status, 401)
  t.equal(none.headers['www-authenticate'], 'Bearer')
  const unknown = await post(r.port, '', 'x', { token: 'wrong' })
  t.equal(unknown.status, 401)
  t.equal(unknown.headers['www-authenticate'], 'Bearer')
  const basic = await post(r.port, '', 'x', { token: null, headers: { Authorization: 'Basic cHViOnB1Yg==' } })
  t.equal(basic.status, 401, 'a Basic header is no bearer')
  const streamOnly = await post(r.port, '', 'x', { token: TOKEN })
  t.equal(streamOnly.status, 403)
  t.notOk('www-authenticate' in streamOnly.headers, '403 asks for no other credentials')
  const end = await fence(r, [s])
  t.equal(afterReady(s), end, 'refused publishes sent nothing')
  s.close()
})

t.test('a form body carries channel, event, id and data', async (t) => {
  const r = await startServer(t)
  const a = await openStream(r.port, `/events/${TOKEN}?channel=a`)
  const other = await openStream(r.port, `/events/${TOKEN}?channel=z`)
  const form = { 'Content-Type': 'application/x-www-form-urlencoded' }
  const res = await post(r.port, '', 'channel=a&event=greet&id=f1&data=hello+world%0Aline+two', { headers: form })
  t.equal(res.status, 200)
  t.equal(res.body, '{"id":"f1","delivered":1}')
  // A charset parameter does not stop it being a form.
  const res2 = await post(r.port, '', 'data=%C3%A9t%C3%A9&channel=a', { headers: { 'Content-Type': 'application/x-www-form-urlencoded; charset=UTF-8' } })
  t.equal(res2.status, 200)
  const id2 = (JSON.parse(res2.body) as { id: string }).id
  const end = await fence(r, [a, other])
  t.equal(afterReady(a), chunk('id: f1\nevent: greet\ndata: hello world\ndata: line two\n\n') + Buffer.from(ev(id2, 'été')).toString('latin1') + end)
  t.equal(afterReady(other), end, 'the channel field targeted a only')
  a.close()
  other.close()
})

t.test('a form body with none of the field names is the data itself (curl -d hello)', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  const form = { 'Content-Type': 'application/x-www-form-urlencoded' }
  const res = await post(r.port, 'event=note', 'hello', { headers: form })
  t.equal(res.status, 200)
  t.equal(res.body, '{"id":"1","delivered":1}')
  const res2 = await post(r.port, '', 'a=b&x+y%20z', { headers: form })
  t.equal(res2.status, 200)
  const end = await fence(r, [s])
  t.equal(afterReady(s), ev('1', 'hello', 'note') + ev('2', 'a=b&x+y%20z') + end, 'taken as is, not decoded')
  s.close()
})

// ------------------------------------------------------------------ /stats and /metrics

t.test('GET /stats has exactly the contract keys with the right counts', async (t) => {
  const r = await startServer(t)
  const d = await openStream(r.port, `/events/${TOKEN}`)
  const x = await openStream(r.port, `/events/${TOKEN}?channel=x&channel=default`)
  const y = await openStream(r.port, `/events/${TOKEN}?channel=y`)
  await post(r.port, '', 'all') // 3 deliveries
  await post(r.port, 'channel=x', 'to-x') // 1
  await post(r.port, 'channel=nobody', 'none') // 0
  await post(r.port, 'channel=default', 'to-default') // 2
  await post(r.port, 'event=bad%0A', 'refused') // not published
  for (const [s, last] of [
    [d, 'to-default'],
    [x, 'to-default'],
    [y, 'all'],
  ] as const) {
    await s.waitFor(`data: ${last}\n`)
  }
  y.close()
  await t.resolves(waitUntil(() => r.server.clientCount === 2))

  const res = await request(r.port, 'GET', '/stats')
  t.equal(res.status, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const stats = JSON.parse(res.body) as Record<string, unknown>
  t.same(Object.keys(stats).sort(), ['bytesOut', 'channels', 'clients', 'connections', 'deliveries', 'drops', 'history', 'published', 'rssBytes', 'uptimeSeconds'])
  t.match(stats.connections, { open: Number, shed: 0, refused: 0 }, 'connections: none shed or refused')
  t.match(stats.history, { events: 4, bytes: Number }, 'history: the 4 published events and their bytes')
  t.equal(stats.clients, 2)
  t.same(stats.channels, { default: 2, x: 1 }, 'open streams per channel, closed one gone')
  t.equal(stats.published, 4)
  t.equal(stats.deliveries, 6)
  t.same(stats.drops, { buffer: 0, stall: 0, admin: 0, shutdown: 0, revoked: 0, expired: 0 })
  t.same(Object.keys(stats.drops as object).sort(), ['admin', 'buffer', 'expired', 'revoked', 'shutdown', 'stall'])
  // Every byte the three streams received was written to a stream.
  const streamed = d.received.length + x.received.length + y.received.length
  t.equal(stats.bytesOut, streamed, 'bytesOut is what the streams received')
  t.ok(Number.isInteger(stats.uptimeSeconds) && (stats.uptimeSeconds as number) >= 0, 'uptimeSeconds')
  t.ok(Number.isInteger(stats.rssBytes) && (stats.rssBytes as number) > 1024 * 1024, 'rssBytes')
  d.close()
  x.close()
})

t.test('GET /metrics names every contract metric with # HELP and # TYPE', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}?channel=news`)
  await post(r.port, '', 'one')
  await post(r.port, 'channel=news', 'two')
  await s.waitFor('data: two\n')
  const res = await request(r.port, 'GET', '/metrics')
  t.equal(res.status, 200)
  t.match(res.headers['content-type'], /^text\/plain/)
  const types: Record<string, string> = {
    rawsse_clients: 'gauge',
    rawsse_events_published_total: 'counter',
    rawsse_deliveries_total: 'counter',
    rawsse_drops_total: 'counter',
    rawsse_bytes_out_total: 'counter',
    rawsse_uptime_seconds: 'gauge',
    process_resident_memory_bytes: 'gauge',
  }
  const lines = res.body.split('\n')
  for (const [name, type] of Object.entries(types)) {
    t.ok(lines.some((l) => l.startsWith(`# HELP ${name} `)), `# HELP ${name}`)
    t.ok(lines.includes(`# TYPE ${name} ${type}`), `# TYPE ${name} ${type}`)
  }
  t.ok(lines.includes('rawsse_clients{channel="news"} 1'))
  t.ok(lines.includes('rawsse_events_published_total 2'))
  t.ok(lines.includes('rawsse_deliveries_total 2'))
  for (const reason of ['buffer', 'stall', 'admin', 'shutdown', 'revoked']) t.ok(lines.includes(`rawsse_drops_total{reason="${reason}"} 0`), reason)
  t.ok(lines.includes(`rawsse_bytes_out_total ${s.received.length}`))
  t.ok(lines.some((l) => /^rawsse_uptime_seconds \d+$/.test(l)))
  t.ok(lines.some((l) => /^process_resident_memory_bytes \d+$/.test(l)))
  s.close()
})

t.test('/stats and /metrics are 401 without a bearer and 403 with a stream-only token', async (t) => {
  const r = await startServer(t)
  for (const path of ['/stats', '/metrics']) {
    const none = await request(r.port, 'GET', path, { token: null })
    t.equal(none.status, 401, `${path} no bearer`)
    t.equal(none.headers['www-authenticate'], 'Bearer')
    t.notMatch(none.body, /published|rawsse_/)
    const wrong = await request(r.port, 'GET', path, { token: 'wrong' })
    t.equal(wrong.status, 401, `${path} unknown bearer`)
    const streamOnly = await request(r.port, 'GET', path, { token: TOKEN })
    t.equal(streamOnly.status, 403, `${path} stream-only token`)
    t.notMatch(streamOnly.body, /published|rawsse_/)
  }
})

// ------------------------------------------------------------------ DELETE /clients

t.test('DELETE /clients/ID closes that stream with 0\\r\\n\\r\\n; others go on', async (t) => {
  const r = await startServer(t)
  const victim = await openStream(r.port, `/events/${TOKEN}`)
  const other = await openStream(r.port, `/events/${TOKEN}`)
  await victim.waitFor('\n\n\r\n')
  const readyBytes = victim.received
  const res = await request(r.port, 'DELETE', `/clients/${clientId(victim)}`)
  t.equal(res.status, 200)
  t.equal(res.body, '{"closed":1}')
  await victim.waitClosed()
  t.equal(victim.received, readyBytes + '0\r\n\r\n', 'the terminating chunk, then the connection closes')
  t.equal(r.server.clientCount, 1)

  const again = await request(r.port, 'DELETE', `/clients/${clientId(victim)}`)
  t.equal(again.status, 404, 'a closed stream is unknown')
  t.equal(again.body, '{"closed":0,"error":"unknown client"}')
  for (const id of ['999999', 'abc', '0', '-1']) {
    const unknown = await request(r.port, 'DELETE', `/clients/${id}`)
    t.equal(unknown.status, 404, `/clients/${id}`)
    t.equal(unknown.body, '{"closed":0,"error":"unknown client"}', `/clients/${id}`)
  }

  const end = await fence(r, [other])
  t.equal(afterReady(other), end, 'the other stream still gets events')
  const stats = JSON.parse((await request(r.port, 'GET', '/stats')).body) as { drops: Record<string, number> }
  t.equal(stats.drops.admin, 1)
  other.close()
})

t.test('DELETE /clients closes every stream with 0\\r\\n\\r\\n and /stats counts the admin drops', async (t) => {
  const r = await startServer(t)
  const one = await openStream(r.port, `/events/${TOKEN}`)
  const streams = [one, await openStream(r.port, `/events/${TOKEN}?channel=a`), await openStream(r.port, `/events/${PUB}?channel=b`)]
  await fence(r, streams)
  const before = streams.map((s) => s.received)
  const res = await request(r.port, 'DELETE', '/clients')
  t.equal(res.status, 200)
  t.equal(res.body, '{"closed":3}')
  for (const [i, s] of streams.entries()) {
    await s.waitClosed()
    t.equal(s.received, before[i] + '0\r\n\r\n', `stream ${i} got the terminating chunk`)
  }
  t.equal(r.server.clientCount, 0)
  const stats = JSON.parse((await request(r.port, 'GET', '/stats')).body) as { clients: number; drops: Record<string, number> }
  t.equal(stats.clients, 0)
  t.same(stats.drops, { buffer: 0, stall: 0, admin: 3, shutdown: 0, revoked: 0, expired: 0 })

  const none = await request(r.port, 'DELETE', '/clients')
  t.equal(none.body, '{"closed":0}', 'nothing left to close')

  // New streams open after that.
  const fresh = await openStream(r.port, `/events/${TOKEN}`)
  t.ok(fresh.received.startsWith(STREAM_HEAD))
  fresh.close()
})

t.test('DELETE /clients needs the admin role', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  const none = await request(r.port, 'DELETE', '/clients', { token: null })
  t.equal(none.status, 401)
  const streamOnly = await request(r.port, 'DELETE', `/clients/${clientId(s)}`, { token: TOKEN })
  t.equal(streamOnly.status, 403)
  t.equal(r.server.clientCount, 1, 'the stream is still open')
  t.notOk(s.closed)
  s.close()
})

// ------------------------------------------------------------------ CORS, OPTIONS, 405

t.test('OPTIONS on any path is 204 with the CORS allow headers', async (t) => {
  const r = await startServer(t)
  for (const path of ['/publish', '/events/tok', '/events/unknown-token', '/stats', '/clients/1', '/no/such/path', '*']) {
    const res = await request(r.port, 'OPTIONS', path, {
      token: null,
      headers: { Origin: 'https://example.org', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization' },
    })
    t.equal(res.status, 204, path)
    t.equal(res.body, '', `${path}: no body`)
    const methods = (res.headers['access-control-allow-methods'] ?? '').split(',').map((m) => m.trim())
    for (const m of ['GET', 'POST', 'DELETE']) t.ok(methods.includes(m), `${path}: allows ${m}`)
    const allowed = (res.headers['access-control-allow-headers'] ?? '').split(',').map((h) => h.trim().toLowerCase())
    for (const h of ['authorization', 'content-type', 'last-event-id']) t.ok(allowed.includes(h), `${path}: allows header ${h}`)
    t.equal(res.headers['access-control-allow-origin'], '*', `${path}: origin`)
  }
})

t.test('the corsOrigin option is the Access-Control-Allow-Origin of the stream and of replies', async (t) => {
  const origin = 'https://app.example.com'
  const r = await startServer(t, { corsOrigin: origin })
  const s = await openStream(r.port, `/events/${TOKEN}`)
  t.ok(s.received.startsWith(STREAM_HEAD.replace('Access-Control-Allow-Origin: *', `Access-Control-Allow-Origin: ${origin}`)), 'stream head')

  const replies = [
    await post(r.port, '', 'x'),
    await post(r.port, '', 'x', { token: null }),
    await post(r.port, '', 'x', { token: TOKEN }),
    await post(r.port, 'user=nobody', 'x'),
    await request(r.port, 'GET', '/stats'),
    await request(r.port, 'GET', '/metrics'),
    await request(r.port, 'DELETE', '/clients/424242'),
    await request(r.port, 'OPTIONS', '/publish', { token: null }),
    await request(r.port, 'GET', '/not-here', { token: null }),
  ]
  for (const res of replies) t.equal(res.headers['access-control-allow-origin'], origin, `${res.statusLine}`)
  s.close()
})

t.test('a wrong method on a known route is 405 with Allow', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  const cases: Array<[string, string, string]> = [
    ['GET', '/publish', 'POST'],
    ['DELETE', '/publish', 'POST'],
    ['POST', '/stats', 'GET'],
    ['DELETE', '/metrics', 'GET'],
    ['GET', '/clients', 'DELETE'],
    ['POST', '/clients/1', 'DELETE'],
    ['POST', '/events/tok', 'GET'],
  ]
  for (const [method, path, must] of cases) {
    const res = await request(r.port, method, path)
    t.equal(res.statusLine, 'HTTP/1.1 405 Method Not Allowed', `${method} ${path}`)
    const allow = (res.headers.allow ?? '').split(',').map((m) => m.trim())
    t.ok(allow.includes(must), `${method} ${path}: Allow lists ${must} (${res.headers.allow})`)
    t.notOk(allow.includes(method), `${method} ${path}: Allow does not list ${method}`)
  }
  t.equal(r.server.clientCount, 1, 'POST /events opened no stream')
  const end = await fence(r, [s])
  t.equal(afterReady(s), end, 'GET/DELETE /publish published nothing')
  s.close()
})

/** Poll a condition that a socket close makes true (the server sees the close asynchronously). */
async function waitUntil(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}
