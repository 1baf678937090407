// The library's `authenticate` hook as it can grow (docs/library.md): answering later (a
// promise), bounded when it never answers, seeing the request's query, and channel grants with
// their `403 channel not allowed` for a stream and for a publish (CONTRACT "Apps", "Tokens an
// application signs"). Real sockets; replies compared whole, their Date line aside.

import t from 'tap'
import type { AuthRequest, AuthUser } from '../src/index.js'
import { mayPublish, maySubscribe } from '../src/server/access/auth.js'
import { AUTHENTICATE_TIMEOUT_MS } from '../src/server/limits.js'
import { afterReady, ev, openStream, publish, rawRequest, RawClient, READY_PREFIX, startServer, TOKEN } from './helpers.js'

const UNKNOWN_TOKEN = 'HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\nConnection: close\r\n\r\nunknown token\n'

/** A reply with its Date line taken out (it changes every second); the rest as sent. */
const undated = (raw: string): string => raw.replace(/\r\nDate: [^\r]*\r\n/, '\r\n')

/** The exact JSON reply the contract gives for a channel outside a token's grants. */
function channelRefused(channel: string, close = false): string {
  const body = JSON.stringify({ error: 'channel not allowed', channel })
  return (
    'HTTP/1.1 403 Forbidden\r\nContent-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\nAccess-Control-Allow-Origin: *\r\n${close ? 'Connection: close\r\n' : ''}\r\n${body}`
  )
}

/** A publish written by hand, its bearer and body as given; the whole reply read until close. */
function rawPublish(port: number, query: string, token: string, body: string, close = true): Promise<string> {
  const head = `POST /publish${query === '' ? '' : '?' + query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`
  return rawRequest(port, head + body)
}

/** An `async` hook, as an application writes one: its answer comes in a later turn. */
function asyncHook(users: Record<string, AuthUser>, seen: AuthRequest[] = []): (token: string, request: AuthRequest) => Promise<AuthUser | null> {
  return async (token, request) => {
    seen.push(request)
    await new Promise((r) => setTimeout(r, 5))
    return users[token] ?? null
  }
}

t.test('maySubscribe and mayPublish: no grants is every channel; a grant is a name, or a prefix ending in *', async (t) => {
  const all: AuthUser = { user: null, roles: [] }
  const some: AuthUser = { user: 'alice', roles: [], grants: ['news', 'user:alice:*'] }
  const star: AuthUser = { user: null, roles: [], grants: ['*'] }
  const none: AuthUser = { user: null, roles: [], grants: [] }
  for (const check of [maySubscribe, mayPublish]) {
    t.ok(check(all, 'anything'), `${check.name}: no grants`)
    t.ok(check(some, 'news'), `${check.name}: a name`)
    t.notOk(check(some, 'news2'), `${check.name}: a name is not a prefix`)
    t.notOk(check(some, 'new'), `${check.name}: nor is a part of it`)
    t.ok(check(some, 'user:alice:'), `${check.name}: the prefix itself`)
    t.ok(check(some, 'user:alice:inbox'), `${check.name}: under the prefix`)
    t.notOk(check(some, 'user:alice'), `${check.name}: one character short of the prefix`)
    t.notOk(check(some, 'user:bob:inbox'), `${check.name}: another prefix`)
    t.ok(check(star, 'x'), `${check.name}: * alone is every channel`)
    t.notOk(check(none, 'default'), `${check.name}: an empty list is no channel`)
  }
})

t.test('an async authenticate that resolves a user: the stream opens with its user, and its bearer publishes', async (t) => {
  const seen: AuthRequest[] = []
  const hook = asyncHook({ later: { user: 'lena', roles: ['publish'] } }, seen)
  const { port, base } = await startServer(t, { authenticate: hook })
  const s = await openStream(port, '/events/later?channel=c')
  t.match(s.received, READY_PREFIX)
  t.match(s.received, /data: \{"client":\d+,"user":"lena","channels":\["c"\],"key":"[\w-]{22}"\}\n\n\r\n$/)
  const r = await publish(base, 'channel=c', 'from lena', 'later')
  t.same(r, { status: 200, json: { id: '1', delivered: 1 } })
  await s.waitFor(ev('1', 'from lena'))
  t.equal(afterReady(s), ev('1', 'from lena'))
  t.equal(seen.length, 2, 'the hook was asked once per request (the publish: before its body, not again by its route)')
  s.close()
})

t.test('an async authenticate that resolves null: 401 for the stream, 401 before a publish body is read', async (t) => {
  const { port, base } = await startServer(t, { authenticate: asyncHook({}) })
  t.equal(await rawRequest(port, 'GET /events/nobody HTTP/1.1\r\nHost: x\r\n\r\n'), UNKNOWN_TOKEN)
  const bearer = await rawRequest(port, 'GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nobody\r\n\r\n')
  t.equal(bearer, UNKNOWN_TOKEN, 'the same through the header')
  // The body announced is never sent: a 401 that needed it would never come.
  const refused = await rawRequest(port, 'POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nobody\r\nContent-Length: 100000\r\n\r\n')
  t.equal(
    undated(refused),
    'HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 44\r\nAccess-Control-Allow-Origin: *\r\n' +
      'WWW-Authenticate: Bearer\r\nConnection: close\r\n\r\n{"error":"a valid bearer token is required"}',
  )
  // Static tokens go on as before, beside the hook.
  const s = await openStream(port, `/events/${TOKEN}`)
  const r = await publish(base, '', 'still here')
  t.equal(r.status, 200)
  await s.waitFor(ev(String(r.json.id), 'still here'))
  s.close()
})

t.test('an async authenticate that never answers: 503 with Retry-After after AUTHENTICATE_TIMEOUT_MS, and the connection closes', async (t) => {
  const asked: string[] = []
  const { port, base } = await startServer(t, {
    authenticate: (token) => {
      asked.push(token)
      return new Promise<never>(() => {})
    },
  })
  const waitMs = AUTHENTICATE_TIMEOUT_MS + 3_000
  const expected = /^HTTP\/1\.1 503 Service Unavailable\r\nRetry-After: [1-5]\r\nContent-Type: text\/plain; charset=utf-8\r\nContent-Length: 49\r\nConnection: close\r\n\r\nauthentication did not answer in time; try again\n$/
  const [stream, pub] = await Promise.all([
    rawRequest(port, 'GET /events/silent HTTP/1.1\r\nHost: x\r\n\r\n', waitMs),
    // The body is sent at once, and not read: only an authorized publish has its body read.
    rawRequest(port, 'POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer silent\r\nContent-Length: 5\r\n\r\nhello', waitMs),
  ])
  t.match(stream, expected, 'the stream request')
  t.match(pub, expected, 'the publish')
  t.same(asked, ['silent', 'silent'])
  // The server serves on.
  const s = await openStream(port, `/events/${TOKEN}`)
  const r = await publish(base, '', 'after the silence')
  t.equal(r.status, 200)
  await s.waitFor(ev(String(r.json.id), 'after the silence'))
  s.close()
})

t.test('the hook sees the request query, still percent-encoded', async (t) => {
  const seen: AuthRequest[] = []
  const { port } = await startServer(t, { authenticate: asyncHook({ q: { user: null, roles: [] } }, seen) })
  const s = await openStream(port, '/events/q?channel=a%20b&channel=c&lastEventId=0')
  t.equal(seen.length, 1)
  t.equal(seen[0]!.query, 'channel=a%20b&channel=c&lastEventId=0')
  t.match(seen[0]!.path, /^\/events\/q$/)
  s.close()
  await rawRequest(port, 'GET /events/q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 500)
  t.equal(seen[1]!.query, '', 'none: the empty string')
})

t.test('grants from the hook: a stream naming a channel outside them gets 403 channel not allowed', async (t) => {
  const granted: AuthUser = { user: 'alice', roles: [], grants: ['news', 'user:alice:*'] }
  for (const [how, authenticate] of [
    ['a hook that answers at once', (token: string) => (token === 'g' ? granted : null)],
    ['an async hook', asyncHook({ g: granted })],
  ] as const) {
    const { port, base } = await startServer(t, { authenticate })
    // Inside the grants: a name, and a channel under a prefix.
    const s = await openStream(port, '/events/g?channel=news&channel=user:alice:inbox')
    t.match(s.received, /"user":"alice","channels":\["news","user:alice:inbox"\],"key":"[\w-]{22}"\}/, `${how}: inside the grants`)
    const refuse = async (path: string, channel: string): Promise<void> => {
      const raw = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
      t.equal(undated(raw), channelRefused(channel, true), `${how}: ${path}`)
    }
    await refuse('/events/g?channel=news&channel=sports', 'sports')
    await refuse('/events/g?channel=user:bob:inbox', 'user:bob:inbox')
    await refuse('/events/g', 'default') // a stream that names no channel is on `default`
    // Keep-alive after the 403: the connection answers the next request too.
    const c = await RawClient.open(port)
    c.write('GET /events/g?channel=sports HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    await c.waitClosed()
    const [first, second] = c.received.split(/(?=HTTP\/1\.1 )/)
    t.equal(undated(first!), channelRefused('sports'), `${how}: a plain reply, the connection kept`)
    t.match(second, /^HTTP\/1\.1 200 OK\r\n/)
    // A plain token, beside the hook, has no grants: every channel.
    const plain = await openStream(port, `/events/${TOKEN}?channel=sports`)
    const r = await publish(base, 'channel=news', 'n')
    await s.waitFor(ev(String(r.json.id), 'n'))
    t.equal(afterReady(plain), '', `${how}: the plain stream is on sports, not news`)
    s.close()
    plain.close()
  }
})

t.test('grants from the hook: a publish naming a channel outside them gets 403 channel not allowed, and reaches nobody', async (t) => {
  const publisher: AuthUser = { user: 'app', roles: ['publish'], grants: ['room:*'] }
  for (const [how, authenticate] of [
    ['a hook that answers at once', (token: string) => (token === 'p' ? publisher : null)],
    ['an async hook', asyncHook({ p: publisher })],
  ] as const) {
    const { port } = await startServer(t, { authenticate })
    const watcher = await openStream(port, `/events/${TOKEN}?channel=lobby&channel=room:1`)
    t.equal(undated(await rawPublish(port, 'channel=lobby', 'p', 'no')), channelRefused('lobby', true), `${how}: outside`)
    t.equal(undated(await rawPublish(port, 'channel=room', 'p', 'no')), channelRefused('room', true), `${how}: the prefix without its last character`)
    // A form body names the channel as well as the query can.
    const form = 'POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer p\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 21\r\nConnection: close\r\n\r\nchannel=lobby&data=no'
    t.equal(undated(await rawRequest(port, form)), channelRefused('lobby', true), `${how}: a form's channel`)
    const ok = await rawPublish(port, 'channel=room:1', 'p', 'yes')
    t.match(ok, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n\{"id":"1","delivered":1\}$/, `${how}: inside`)
    await watcher.waitFor(ev('1', 'yes'))
    t.equal(afterReady(watcher), ev('1', 'yes'), `${how}: only the allowed event reached the stream`)
    watcher.close()
  }
})

t.test('an async bearer on pipelined publishes: each waits for the hook, and the answers keep their order', async (t) => {
  const { port } = await startServer(t, { authenticate: asyncHook({ p: { user: null, roles: ['publish'] } }) })
  const s = await openStream(port, `/events/${TOKEN}`)
  const one = (body: string, close = false): string =>
    `POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer p\r\nContent-Length: ${body.length}\r\n${close ? 'Connection: close\r\n' : ''}\r\n${body}`
  const raw = await rawRequest(port, one('first') + one('second') + one('third', true))
  const bodies = [...raw.matchAll(/\r\n\r\n(\{[^}]*\})/g)].map((m) => m[1])
  t.same(bodies, ['{"id":"1","delivered":1}', '{"id":"2","delivered":1}', '{"id":"3","delivered":1}'])
  await s.waitFor(ev('3', 'third'))
  t.equal(afterReady(s), ev('1', 'first') + ev('2', 'second') + ev('3', 'third'))
  s.close()
})

t.test('an async bearer on GET /stats and DELETE /clients: the admin role, known later', async (t) => {
  const { port } = await startServer(t, { authenticate: asyncHook({ a: { user: null, roles: ['admin'] }, v: { user: null, roles: [] } }) })
  const stats = await rawRequest(port, 'GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nConnection: close\r\n\r\n')
  t.match(stats, /^HTTP\/1\.1 200 OK\r\n[\s\S]*"clients":0/)
  const denied = await rawRequest(port, 'DELETE /clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer v\r\nConnection: close\r\n\r\n')
  t.match(denied, /^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*\{"error":"the token lacks the admin role"\}$/)
  const closed = await rawRequest(port, 'DELETE /clients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nConnection: close\r\n\r\n')
  t.match(closed, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\{"closed":0\}$/)
})
