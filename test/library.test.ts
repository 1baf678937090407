// The SseServer library API of docs/library.md: listen, the four ways to send and
// their counts, client bookkeeping, connect / disconnect, authenticate, the generated token,
// invalid messages and stop(). Every stream is a real socket; its bytes are compared whole.

import * as net from 'node:net'
import t from 'tap'
import { SseServer, type AuthRequest, type ClientView } from '../src/index.js'
import { afterReady, READY_PREFIX, chunk, clientId, ev, openStream, PUB, publish, RawClient, rawRequest, startServer, STREAM_HEAD, TOKEN } from './helpers.js'


/** Broadcast a last event with a known id and wait for it on every stream. */
async function fence(server: SseServer, streams: RawClient[]): Promise<string> {
  const n = server.broadcast({ data: 'fence', id: 'fence' })
  if (n < streams.length) throw new Error(`fence reached ${n} streams`)
  const bytes = ev('fence', 'fence')
  for (const s of streams) await s.waitFor(bytes)
  return bytes
}

async function waitUntil(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

const USERS = [
  { token: 'alice-t', user: 'alice', roles: ['staff'] },
  { token: 'bob-t', user: 'bob', roles: [] },
]

t.test('listen() resolves to the host and the real port, which accepts streams', async (t) => {
  const server = new SseServer({ port: 0, host: '127.0.0.1', tokens: [TOKEN], tickMs: 0, heartbeatMs: 0, publicDir: null })
  t.teardown(() => server.stop())
  const addr = await server.listen()
  t.same(Object.keys(addr).sort(), ['host', 'port'])
  t.equal(addr.host, '127.0.0.1')
  t.ok(Number.isInteger(addr.port) && addr.port > 0 && addr.port < 65536, `port ${addr.port}`)
  const s = await openStream(addr.port, `/events/${TOKEN}`)
  t.ok(s.received.startsWith(STREAM_HEAD))
  s.close()
})

t.test('broadcast(msg) reaches every stream with exact bytes and returns the count', async (t) => {
  const { server, port } = await startServer(t, { users: USERS })
  const streams = [await openStream(port, `/events/${TOKEN}`), await openStream(port, `/events/${TOKEN}?channel=x`), await openStream(port, '/events/alice-t?channel=y')]
  t.equal(server.broadcast({ data: 'hello' }), 3)
  t.equal(server.broadcast({ data: 'a\r\nb\nc', event: 'multi', id: 'custom-1' }), 3)
  t.equal(server.broadcast({ data: '', event: 'message' }), 3)
  const end = await fence(server, streams)
  const expected = ev('1', 'hello') + chunk('id: custom-1\nevent: multi\ndata: a\ndata: b\ndata: c\n\n') + ev('2', '') + end
  for (const [i, s] of streams.entries()) t.equal(afterReady(s), expected, `stream ${i}`)
  for (const s of streams) s.close()
})

t.test('broadcast(msg, filter) sends to the streams the filter accepts; the filter sees {id, user, channels}', async (t) => {
  const { server, port } = await startServer(t, { users: USERS })
  const plain = await openStream(port, `/events/${TOKEN}?channel=b&channel=a`)
  const alice = await openStream(port, '/events/alice-t')
  const bob = await openStream(port, '/events/bob-t?channel=a')
  const seen: ClientView[] = []
  const n = server.broadcast({ data: 'to-a' }, (c) => {
    seen.push(c)
    return c.channels.includes('a')
  })
  t.equal(n, 2)
  const views = seen.map((c) => ({ id: c.id, user: c.user, channels: [...c.channels] })).sort((x, y) => x.id - y.id)
  t.same(views, [
    { id: clientId(plain), user: null, channels: ['b', 'a'] },
    { id: clientId(alice), user: 'alice', channels: ['default'] },
    { id: clientId(bob), user: 'bob', channels: ['a'] },
  ])
  t.equal(server.broadcast({ data: 'to-alice' }, (c) => c.user === 'alice'), 1)
  t.equal(server.broadcast({ data: 'to-none' }, () => false), 0)
  const end = await fence(server, [plain, alice, bob])
  t.equal(afterReady(plain), ev('1', 'to-a') + end)
  t.equal(afterReady(alice), ev('2', 'to-alice') + end)
  t.equal(afterReady(bob), ev('1', 'to-a') + end)
  for (const s of [plain, alice, bob]) s.close()
})

t.test('publish(channel, msg) reaches the subscribers of that channel only', async (t) => {
  const { server, port } = await startServer(t)
  const a = await openStream(port, `/events/${TOKEN}?channel=a`)
  const ab = await openStream(port, `/events/${TOKEN}?channel=a&channel=b`)
  const d = await openStream(port, `/events/${TOKEN}`)
  t.equal(server.publish('a', { data: 'on-a', event: 'note' }), 2)
  t.equal(server.publish('b', { data: 'on-b' }), 1)
  t.equal(server.publish('nobody', { data: 'lost' }), 0)
  t.equal(server.publish('default', { data: 'on-default', id: 'd1' }), 1)
  const end = await fence(server, [a, ab, d])
  t.equal(afterReady(a), ev('1', 'on-a', 'note') + end)
  t.equal(afterReady(ab), ev('1', 'on-a', 'note') + ev('2', 'on-b') + end)
  t.equal(afterReady(d), ev('d1', 'on-default') + end)
  for (const s of [a, ab, d]) s.close()
})

t.test('send(clientId, msg) reaches that one stream; an unknown id reaches none', async (t) => {
  const { server, port } = await startServer(t)
  const one = await openStream(port, `/events/${TOKEN}`)
  const two = await openStream(port, `/events/${TOKEN}`)
  t.equal(server.send(clientId(two), { data: 'just-you', event: 'dm' }), 1)
  t.equal(server.send(999999, { data: 'nobody' }), 0)
  const end = await fence(server, [one, two])
  t.match(afterReady(two), /^[0-9a-f]+\r\nid: \d+\nevent: dm\ndata: just-you\n\n\r\n/)
  const id = /id: (\d+)\nevent: dm/.exec(afterReady(two))![1]!
  t.equal(afterReady(two), ev(id, 'just-you', 'dm') + end)
  t.equal(afterReady(one), end)
  one.close()
  two.close()
})

t.test('sendToUser(user, msg) reaches every stream of that user', async (t) => {
  const { server, port } = await startServer(t, { users: USERS })
  const a1 = await openStream(port, '/events/alice-t?channel=x')
  const a2 = await openStream(port, '/events/alice-t?channel=y')
  const bob = await openStream(port, '/events/bob-t')
  const plain = await openStream(port, `/events/${TOKEN}`)
  t.equal(server.sendToUser('alice', { data: 'hi alice' }), 2)
  t.equal(server.sendToUser('bob', { data: 'hi bob', event: 'dm', id: 'b-1' }), 1)
  t.equal(server.sendToUser('carol', { data: 'nobody' }), 0)
  const end = await fence(server, [a1, a2, bob, plain])
  t.equal(afterReady(a1), ev('1', 'hi alice') + end)
  t.equal(afterReady(a2), ev('1', 'hi alice') + end)
  t.equal(afterReady(bob), ev('b-1', 'hi bob', 'dm') + end)
  t.equal(afterReady(plain), end)
  for (const s of [a1, a2, bob, plain]) s.close()
})

t.test('clientCount and connections(channel) follow streams opening and closing', async (t) => {
  const { server, port } = await startServer(t)
  t.equal(server.clientCount, 0)
  t.equal(server.connections('default'), 0)
  const a = await openStream(port, `/events/${TOKEN}?channel=a`)
  const ab = await openStream(port, `/events/${TOKEN}?channel=a&channel=b`)
  const d = await openStream(port, `/events/${TOKEN}`)
  t.equal(server.clientCount, 3)
  t.equal(server.connections('a'), 2)
  t.equal(server.connections('b'), 1)
  t.equal(server.connections('default'), 1)
  t.equal(server.connections('nope'), 0)
  ab.close()
  await waitUntil(() => server.clientCount === 2)
  t.equal(server.connections('a'), 1)
  t.equal(server.connections('b'), 0)
  // A refused stream is not counted.
  const refused = await rawRequest(port, 'GET /events/wrong HTTP/1.1\r\nHost: x\r\n\r\n')
  t.match(refused, /^HTTP\/1\.1 401 /)
  t.equal(server.clientCount, 2)
  a.close()
  d.close()
  await waitUntil(() => server.clientCount === 0)
  t.equal(server.connections('a'), 0)
  t.equal(server.connections('default'), 0)
})

t.test('closeClient(id) ends that stream with 0\\r\\n\\r\\n and returns true; false for an unknown id', async (t) => {
  const { server, port } = await startServer(t)
  const victim = await openStream(port, `/events/${TOKEN}?channel=v`)
  const other = await openStream(port, `/events/${TOKEN}?channel=v`)
  await victim.waitFor((x) => READY_PREFIX.test(x))
  const before = victim.received
  t.equal(server.closeClient(clientId(victim)), true)
  t.equal(server.clientCount, 1, 'gone at once')
  t.equal(server.connections('v'), 1)
  await victim.waitClosed()
  t.equal(victim.received, before + '0\r\n\r\n')
  t.equal(server.closeClient(clientId(victim)), false, 'already closed')
  t.equal(server.closeClient(424242), false, 'never existed')
  const end = await fence(server, [other])
  t.equal(afterReady(other), end)
  t.equal(server.stats().drops.admin, 1)
  other.close()
})

t.test('closeAll() ends every stream with 0\\r\\n\\r\\n', async (t) => {
  const { server, port } = await startServer(t)
  const streams = [await openStream(port, `/events/${TOKEN}`), await openStream(port, `/events/${TOKEN}?channel=q`), await openStream(port, `/events/${PUB}`)]
  await fence(server, streams)
  const before = streams.map((s) => s.received)
  t.equal(server.closeAll(), 3)
  t.equal(server.clientCount, 0)
  for (const [i, s] of streams.entries()) {
    await s.waitClosed()
    t.equal(s.received, before[i] + '0\r\n\r\n', `stream ${i}`)
  }
  t.equal(server.closeAll(), 0)
  t.equal(server.broadcast({ data: 'after' }), 0)
  const fresh = await openStream(port, `/events/${TOKEN}`)
  t.equal(server.clientCount, 1, 'the server still takes streams')
  fresh.close()
})

t.test('updateTokens() revokes at any reload: a stream kept by one reload is closed by the next that drops its token', async (t) => {
  const carolT = { token: 'carol-t', user: 'carol', roles: ['publish'] }
  const daveT = { token: 'dave-t', user: 'dave', roles: [] }
  const { server, port } = await startServer(t, { users: [...USERS, carolT, daveT] })
  const carol = await openStream(port, '/events/carol-t')
  const dave = await openStream(port, '/events/dave-t')
  const alice = await openStream(port, '/events/alice-t')
  await fence(server, [carol, dave, alice])
  const before = carol.received

  t.equal(server.updateTokens({ users: [...USERS, carolT, daveT] }), 0, 'reload 1 keeps everyone')
  t.equal(server.updateTokens({ users: [...USERS, daveT] }), 1, 'reload 2 drops carol: 1 revoked')
  await carol.waitClosed()
  t.equal(carol.received, before + '0\r\n\r\n', 'her stream ends with the last chunk')
  t.equal(server.updateTokens({ users: USERS }), 1, 'reload 3 drops dave: 1 revoked')
  await dave.waitClosed()
  t.match(dave.received, /\r\n0\r\n\r\n$/)
  t.equal(server.updateTokens({ users: USERS }), 0, 'reload 4 changes nothing')
  t.equal(server.stats().drops.revoked, 2)
  t.equal(server.clientCount, 1, 'alice, kept by every reload, still streams')
  t.equal(server.broadcast({ data: 'still here' }), 1)
  await alice.waitFor(ev('1', 'still here'))
  t.equal(afterReady(alice), ev('fence', 'fence') + ev('1', 'still here'))
  alice.close()
})

t.test("'connect' and 'disconnect' events carry the client view", async (t) => {
  const { server, port } = await startServer(t, { users: USERS })
  const connects: ClientView[] = []
  const disconnects: Array<[ClientView, string]> = []
  server.on('connect', (c) => connects.push(c))
  server.on('disconnect', (c, reason) => disconnects.push([c, reason]))

  const a = await openStream(port, '/events/alice-t?channel=z&channel=y')
  t.equal(connects.length, 1)
  t.equal(connects[0]!.id, clientId(a))
  t.equal(connects[0]!.user, 'alice')
  t.same([...connects[0]!.channels], ['z', 'y'])

  const p = await openStream(port, `/events/${TOKEN}`)
  t.equal(connects.length, 2)
  t.same({ id: connects[1]!.id, user: connects[1]!.user, channels: [...connects[1]!.channels] }, { id: clientId(p), user: null, channels: ['default'] })
  t.equal(disconnects.length, 0)

  // The client hangs up.
  a.close()
  await waitUntil(() => disconnects.length === 1)
  t.equal(disconnects[0]![0].id, clientId(a))
  t.equal(disconnects[0]![0].user, 'alice')
  t.same([...disconnects[0]![0].channels], ['z', 'y'])
  t.equal(disconnects[0]![1], 'closed')

  // The server closes it.
  t.equal(server.closeClient(clientId(p)), true)
  await waitUntil(() => disconnects.length === 2)
  t.equal(disconnects[1]![0].id, clientId(p))
  t.equal(disconnects[1]![1], 'admin')

  // Refused and HEAD requests are no clients.
  await rawRequest(port, 'GET /events/nope HTTP/1.1\r\nHost: x\r\n\r\n')
  await rawRequest(port, 'HEAD /events/tok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.equal(connects.length, 2)
  await p.waitClosed()
  t.equal(disconnects.length, 2, 'one disconnect per stream')
})

t.test('the authenticate option accepts a token no list knows and gives its user and roles', async (t) => {
  const calls: Array<{ token: string; request: AuthRequest }> = []
  const { server, port, base } = await startServer(t, {
    authenticate: (token, request) => {
      calls.push({ token, request })
      if (token === 'magic') return { user: 'mage', roles: ['publish', 'wizards'] }
      if (token === 'viewer') return { user: 'vic', roles: [] }
      return null
    },
  })
  const mage = await openStream(port, '/events/magic?channel=m', { 'X-Extra': 'yes' })
  await mage.waitFor((x) => READY_PREFIX.test(x))
  t.match(mage.received, new RegExp(`data: \\{"client":${clientId(mage)},"user":"mage","channels":\\["m"\\],"key":"[\\w-]{22}"\\}\n\n\r\n$`))
  const call = calls.find((c) => c.token === 'magic')!
  t.ok(call, 'the hook saw the token')
  t.equal(call.request.method, 'GET')
  t.match(call.request.path, /^\/events\/magic/)
  t.equal(call.request.headers['x-extra'], 'yes', 'headers with lower-case names')
  t.equal(call.request.remoteAddress, '127.0.0.1')

  const vic = await openStream(port, '/events/viewer')
  t.match(vic.received, /"user":"vic"/)

  // Listed tokens still work; unknown ones are still refused.
  const plain = await openStream(port, `/events/${TOKEN}`)
  t.match(await rawRequest(port, 'GET /events/nobody HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 401 /)

  // Its roles grant rights and are targets.
  const res = await publish(base, 'role=wizards', 'for wizards', 'magic')
  t.same(res, { status: 200, json: { id: '1', delivered: 1 } })
  t.same(await publish(base, 'user=vic', 'for vic', 'magic'), { status: 200, json: { id: '2', delivered: 1 } })
  t.equal((await publish(base, '', 'x', 'viewer')).status, 403, 'no publish role, no publish')
  t.equal((await publish(base, '', 'x', 'nobody')).status, 401)
  t.equal(server.sendToUser('mage', { data: 'lib' }), 1)
  const end = await fence(server, [mage, vic, plain])
  t.equal(afterReady(mage), ev('1', 'for wizards') + ev('3', 'lib') + end)
  t.equal(afterReady(vic), ev('2', 'for vic') + end)
  t.equal(afterReady(plain), end)
  for (const s of [mage, vic, plain]) s.close()
})

t.test('with no tokens at all, a generated URL-safe token of at least 128 bits opens streams and publishes', async (t) => {
  const server = new SseServer({ port: 0, host: '127.0.0.1', tickMs: 0, heartbeatMs: 0, publicDir: null, firstEventId: 1 })
  t.teardown(() => server.stop())
  const { port } = await server.listen()
  const token = server.generatedToken
  t.type(token, 'string')
  t.match(token!, /^[A-Za-z0-9_-]+$/, 'URL-safe')
  t.ok(token!.length * 6 >= 128, `${token!.length} base64url characters hold at least 128 bits`)
  t.equal(new SseServer({ tickMs: 0 }).generatedToken === token, false, 'random per server')

  const s = await openStream(port, `/events/${token}`)
  t.ok(s.received.startsWith(STREAM_HEAD))
  const base = `http://127.0.0.1:${port}`
  t.same(await publish(base, '', 'hi', token), { status: 200, json: { id: '1', delivered: 1 } })
  await s.waitFor(ev('1', 'hi'))
  const stats = await fetch(`${base}/stats`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(stats.status, 200, 'it administers too')
  await stats.arrayBuffer()
  t.match(await rawRequest(port, 'GET /events/other HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 401 /, 'nothing else is accepted')
  t.equal((await publish(base, '', 'x', null)).status, 401)
  s.close()
})

t.test('invalid messages throw TypeError and send nothing', async (t) => {
  const { server, port } = await startServer(t, { users: USERS })
  const s = await openStream(port, '/events/alice-t?channel=c')
  const bad = [
    { data: 'x', event: 'a\nb' },
    { data: 'x', event: 'a\rb' },
    { data: 'x', id: '1\n2' },
    { data: 'x', id: '1\r' },
  ]
  for (const msg of bad) {
    t.throws(() => server.broadcast(msg), TypeError, `broadcast ${JSON.stringify(msg)}`)
    t.throws(() => server.broadcast(msg, () => true), TypeError)
    t.throws(() => server.publish('c', msg), TypeError, `publish ${JSON.stringify(msg)}`)
    t.throws(() => server.send(clientId(s), msg), TypeError, `send ${JSON.stringify(msg)}`)
    t.throws(() => server.sendToUser('alice', msg), TypeError, `sendToUser ${JSON.stringify(msg)}`)
  }
  t.throws(() => server.broadcast({ data: 42 } as unknown as { data: string }), TypeError, 'data must be a string')
  const end = await fence(server, [s])
  t.equal(afterReady(s), end, 'nothing reached the stream')
  t.equal(server.stats().published, 1, 'only the fence was published')
  s.close()
})

t.test('stop() sends every stream 0\\r\\n\\r\\n (after at most a retry: chunk), closes them and resolves', async (t) => {
  const retryMs = 1000
  const { server, port } = await startServer(t, { retryMs })
  const streams = [await openStream(port, `/events/${TOKEN}`), await openStream(port, `/events/${TOKEN}?channel=k`), await openStream(port, `/events/${PUB}`)]
  // An idle keep-alive connection, too.
  const idle = await RawClient.open(port)
  idle.write('GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n')
  await idle.waitFor('not found')
  await fence(server, streams)
  const before = streams.map((s) => s.received)
  const disconnects: string[] = []
  server.on('disconnect', (_c, reason) => disconnects.push(reason))

  await t.resolves(server.stop(), 'stop() resolves')
  for (const [i, s] of streams.entries()) {
    await s.waitClosed()
    const tail = s.received.slice(before[i]!.length)
    const m = /^(?:([0-9a-f]+)\r\n(retry: (\d+)\n\n)\r\n)?0\r\n\r\n$/.exec(tail)
    t.ok(m, `stream ${i} ends with 0\\r\\n\\r\\n: ${JSON.stringify(tail)}`)
    if (m?.[1] !== undefined) {
      t.equal(parseInt(m[1], 16), Buffer.byteLength(m[2]!), 'the retry chunk size is right')
      const n = Number(m[3])
      t.ok(n >= retryMs && n <= 1.5 * retryMs, `last retry ${n} within range`)
    }
  }
  await idle.waitClosed()
  t.same(disconnects, ['shutdown', 'shutdown', 'shutdown'])
  t.equal(server.clientCount, 0)
  t.equal(server.stats().drops.shutdown, 3)
  await t.resolves(server.stop(), 'a second stop() resolves too')

  // Nothing listens any more.
  await t.rejects(
    new Promise<void>((resolve, reject) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.destroy()
        resolve()
      })
      c.on('error', reject)
    }),
    { code: 'ECONNREFUSED' },
  )
})

t.test('stop() on a server that never listened resolves', async (t) => {
  const server = new SseServer({ tokens: [TOKEN], tickMs: 0, heartbeatMs: 0, publicDir: null })
  await t.resolves(server.stop())
})

t.test('refuses a corsOrigin that would inject a header', async (t) => {
  t.throws(() => new SseServer({ corsOrigin: 'https://x.example\r\nX-Injected: 1', publicDir: null }), RangeError)
})
