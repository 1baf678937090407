// `--auth-url` (src/server/access/auth-url.ts): the application, a real HTTP server on loopback, says who
// a request is. Allowed (its identity and channel rules), denied (401) and forbidden (403) passed
// on; asked only when no static token matches, with Authorization, Cookie and X-Rawsse-Channels;
// a 200 remembered for its max-age; 5 000 streams with one credential at once ask once; a slow,
// failing or garbled application gives 503 with Retry-After and a log line while the server stays
// healthy; the application down, then up again.

import t from 'tap'
import * as net from 'node:net'
import * as jose from 'jose'
import { SseServer, type HookFailure, type SseServerOptions } from '../src/index.js'
import { openStream, parseResponse, publish, rawRequest, startServer, TOKEN, PUB, sleep, type Running } from './helpers.js'
import { until } from './process.js'
import { startApp, type App, type AppAnswer } from './app-server.js'

const ANN: AppAnswer = { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'ann', roles: [], channels: ['news', 'user:ann:*'] }) }

/** A server asking `app`, with its hook failures collected. */
async function withApp(t: Parameters<typeof startServer>[0], app: App, opts: SseServerOptions = {}): Promise<Running & { failures: HookFailure[] }> {
  const r = await startServer(t, { authUrl: app.url, ...opts })
  const failures: HookFailure[] = []
  r.server.on('hook-failure', (f) => failures.push(f))
  return { ...r, failures }
}

/** One GET on a connection of its own; the parsed answer (a stream's head and first chunks). */
async function get(port: number, target: string, headers: Record<string, string> = {}, waitMs = 500): Promise<ReturnType<typeof parseResponse>> {
  let head = `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
  return parseResponse(await rawRequest(port, head + '\r\n', waitMs))
}

t.test('allowed: the application says who it is and which channels; it is asked with the credential and the channels', async (t) => {
  const app = await startApp(t, () => ANN)
  const r = await withApp(t, app)
  const s = await openStream(r.port, '/events?channel=news&channel=user%3Aann%3Ainbox', { Authorization: 'Bearer opaque-session-token', Cookie: 'sid=abc; theme=dark' })
  t.match(s.received, /data: \{"client":\d+,"user":"ann","channels":\["news","user:ann:inbox"\][,}]/, 'ready.user is the application\'s')
  t.equal(app.requests.length, 1)
  const q = app.requests[0]!
  t.equal(q.method, 'GET')
  t.equal(q.headers.authorization, 'Bearer opaque-session-token')
  t.equal(q.headers.cookie, 'sid=abc; theme=dark')
  t.equal(q.headers['x-rawsse-channels'], 'news,user:ann:inbox')
  const ok = await publish(r.base, 'channel=news', 'hello')
  t.equal(ok.json.delivered, 1)
  await s.waitFor('data: hello\n')
  s.close()

  const outside = await get(r.port, '/events?channel=sports', { Authorization: 'Bearer opaque-session-token' })
  t.equal(outside.status, 403, 'a channel outside the answer: 403')
  t.same(JSON.parse(outside.body), { error: 'channel not allowed', channel: 'sports' })

  const fromPath = await openStream(r.port, '/events/path-token?channel=news')
  t.equal(app.requests.at(-1)!.headers.authorization, 'Bearer path-token', 'a token from the path is sent as a bearer')
  fromPath.close()
  t.equal((await get(r.port, '/events', { Cookie: 'sid=0' })).status, 403, 'default is not among its channels')
  t.equal(app.requests.at(-1)!.headers['x-rawsse-channels'], 'default', 'a stream naming no channel: default')

  const asked = app.requests.length
  const known = await openStream(r.port, `/events/${TOKEN}`)
  t.equal(app.requests.length, asked, 'a static token is not asked about')
  known.close()
  const odd = await get(r.port, '/events?channel=a%2Cb&channel=caf%C3%A9', { Cookie: 'sid=1' })
  t.equal(odd.status, 403)
  t.equal(app.requests.at(-1)!.headers['x-rawsse-channels'], 'a%2Cb,caf%C3%A9', 'a comma or a byte past ASCII in a name is percent-encoded')
})

t.test('asked only when no static token, JWT or ticket matches; a refused JWT or a spent ticket is asked about', async (t) => {
  const SECRET = 'a-jwt-secret-of-at-least-32-bytes!!'
  const app = await startApp(t, () => ANN)
  const r = await withApp(t, app, { jwt: { secrets: [SECRET] }, authCookie: 'sid' })
  const sign = (exp: number): Promise<string> => new jose.SignJWT({ sub: 'jay', exp }).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from(SECRET))
  const good = await openStream(r.port, '/events?channel=news', { Authorization: `Bearer ${await sign(Math.floor(Date.now() / 1000) + 600)}` })
  t.match(good.received, /"user":"jay"/, 'a JWT that verifies')
  good.close()
  const { ticket } = await r.server.createTicket({ user: 'tia', channels: ['news'] })
  const byTicket = await openStream(r.port, `/events/${ticket}?channel=news`)
  t.match(byTicket.received, /"user":"tia"/, 'a ticket')
  byTicket.close()
  t.equal(app.requests.length, 0, 'the application was not asked')
  const expired = await openStream(r.port, '/events?channel=news', { Authorization: `Bearer ${await sign(Math.floor(Date.now() / 1000) - 600)}` })
  t.match(expired.received, /"user":"ann"/, 'an expired JWT: the application says who it is')
  expired.close()
  const spent = await openStream(r.port, `/events/${ticket}?channel=news`)
  t.match(spent.received, /"user":"ann"/, 'a spent ticket: the same')
  t.equal(app.requests.at(-1)!.headers.authorization, `Bearer ${ticket}`)
  spent.close()
  const cookie = await openStream(r.port, '/events?channel=news', { Cookie: 'sid=opaque; other=1' })
  t.equal(app.requests.at(-1)!.headers.cookie, 'sid=opaque; other=1', 'an --auth-cookie nobody knows: the Cookie goes as it came')
  t.equal(app.requests.at(-1)!.headers.authorization, 'Bearer opaque', 'and its value as the bearer')
  cookie.close()
  t.equal(app.requests.length, 3)
})

t.test('denied and forbidden are passed on; no credential at all is 401 without asking', async (t) => {
  const app = await startApp(t, (q) => ({ status: q.headers.cookie === 'sid=banned' ? 403 : 401 }))
  const r = await withApp(t, app)
  t.equal((await get(r.port, '/events', { Cookie: 'sid=nobody' })).status, 401)
  const forbidden = await get(r.port, '/events', { Cookie: 'sid=banned' })
  t.equal(forbidden.status, 403)
  t.match(forbidden.body, /forbidden by the application/)
  const asked = app.requests.length
  t.equal((await get(r.port, '/events')).status, 401, 'no token, no cookie')
  t.equal(app.requests.length, asked, 'not asked')
  t.same(r.failures, [], 'a refusal is no failure')
})

t.test('a request with only a cookie: a stream, /stats; a cross-site POST is not asked about', async (t) => {
  const admin: AppAnswer = { status: 200, body: JSON.stringify({ user: 'root', roles: ['publish', 'admin'] }) }
  const app = await startApp(t, () => admin)
  const r = await withApp(t, app)
  const s = await openStream(r.port, '/events?channel=ops', { Cookie: 'session=s1' })
  t.match(s.received, /"user":"root"/)
  t.equal(app.requests.at(-1)!.headers.authorization, undefined, 'no Authorization made up')
  const stats = await fetch(`${r.base}/stats`, { headers: { cookie: 'session=s1' } })
  t.equal(stats.status, 200, '/stats with the cookie the application says is an admin\'s')
  const asked = app.requests.length
  const crossSite = await fetch(`${r.base}/publish?channel=ops`, { method: 'POST', headers: { cookie: 'session=s1', origin: 'https://evil.example', 'content-type': 'text/plain' }, body: 'x' })
  t.equal(crossSite.status, 401, 'a POST from another site with the cookie: 401')
  t.equal(app.requests.length, asked, 'and the application is not asked')
  const sameSite = await fetch(`${r.base}/publish?channel=ops`, { method: 'POST', headers: { cookie: 'session=s1', origin: r.base, 'content-type': 'text/plain' }, body: 'y' })
  t.equal(sameSite.status, 200, 'from its own origin: asked, and allowed')
  await s.waitFor('data: y\n')
  s.close()
})

t.test('a 200 is remembered for its max-age, and no longer; without one it is not', async (t) => {
  let cacheControl: string | undefined = 'max-age=1'
  const app = await startApp(t, (): AppAnswer => {
    const headers: Record<string, string> = {}
    if (cacheControl !== undefined) headers['cache-control'] = cacheControl
    return { ...(ANN as Exclude<AppAnswer, 'hang'>), headers }
  })
  const r = await withApp(t, app)
  const open = async (cookie = 'sid=1'): Promise<void> => (await openStream(r.port, '/events?channel=news', { Cookie: cookie })).close()
  await open()
  await open()
  t.equal(app.requests.length, 1, 'the second within max-age: not asked')
  await open('sid=2')
  t.equal(app.requests.length, 2, 'another credential: asked')
  await sleep(1100)
  await open()
  t.equal(app.requests.length, 3, 'past max-age: asked again')
  for (const cc of [undefined, 'no-store, max-age=60', 'max-age=0', 'private, no-cache']) {
    cacheControl = cc
    const before = app.requests.length
    await open(`sid=${cc ?? 'none'}`)
    await open(`sid=${cc ?? 'none'}`)
    t.equal(app.requests.length, before + 2, `Cache-Control ${cc ?? 'absent'}: asked each time`)
  }
})

t.test('questions for one credential while one is on its way wait for it: 50 at once, no max-age, asked once', async (t) => {
  let release = (): void => {}
  const held = new Promise<void>((resolve) => (release = resolve))
  const app = await startApp(t, async () => (await held, ANN))
  const r = await withApp(t, app)
  const opening = Array.from({ length: 50 }, () => openStream(r.port, '/events?channel=news', { Cookie: 'sid=one' }))
  await until(() => app.requests.length >= 1, () => 'the question')
  await sleep(300)
  release()
  const streams = await Promise.all(opening)
  t.equal(app.requests.length, 1, 'asked once')
  for (const s of streams) s.close()
})

t.test('5 000 streams with one credential reconnecting at once: the application is asked once', async (t) => {
  const N = 5000
  let release = (): void => {}
  const held = new Promise<void>((resolve) => (release = resolve))
  // Held until every connection is in (or 1.5 s, inside the 2 s deadline); remembered after: the
  // streams whose head comes while it is on its way wait for it, those after find it remembered.
  const app = await startApp(t, async () => (await held, { ...(ANN as Exclude<AppAnswer, 'hang'>), headers: { 'cache-control': 'max-age=60' } }))
  const r = await withApp(t, app, { maxClients: N + 10 })
  const sockets: net.Socket[] = []
  let ready = 0
  for (let i = 0; i < N; i++) {
    const s = net.connect(r.port, '127.0.0.1', () => s.write('GET /events?channel=news HTTP/1.1\r\nHost: x\r\nCookie: sid=storm\r\n\r\n'))
    s.setEncoding('latin1')
    let got = ''
    s.on('data', (d: string) => {
      if (got.includes('event: ready')) return
      got += d
      if (got.includes('event: ready')) ready++
    })
    s.on('error', () => {})
    sockets.push(s)
  }
  t.teardown(() => {
    for (const s of sockets) s.destroy()
  })
  await until(() => app.requests.length >= 1, () => 'the question')
  const asked = Date.now()
  await until(() => r.server.stats().connections.open >= N || Date.now() - asked > 1500, () => 'the connections', 5000)
  release()
  await until(() => ready === N, () => `${N} streams ready; ${ready} so far`, 60_000)
  t.equal(app.requests.length, 1, 'asked once')
  t.equal(r.server.clientCount, N)
})

t.test('a slow, failing or garbled application: 503 with Retry-After and a log line; the server stays healthy', async (t) => {
  const answers: Record<string, AppAnswer | (() => Promise<AppAnswer>)> = {
    slow: async () => (await sleep(3000), ANN),
    e500: { status: 500 },
    e502: { status: 502, body: '<html>bad gateway</html>' },
    notjson: { status: 200, body: '{"user": "ann",' },
    array: { status: 200, body: '[1,2]' },
    baduser: { status: 200, body: JSON.stringify({ user: 'a\nb' }) },
    badroles: { status: 200, body: JSON.stringify({ user: 'ann', roles: 'admin' }) },
    badchannels: { status: 200, body: JSON.stringify({ user: 'ann', channels: [1] }) },
    toomany: { status: 200, body: JSON.stringify({ user: 'ann', channels: Array.from({ length: 300 }, (_, i) => `c${i}`) }) },
    huge: { status: 200, body: JSON.stringify({ user: 'ann', pad: 'x'.repeat(70 * 1024) }) },
    redirect: { status: 302, headers: { location: 'http://example.com/' } },
    deep: { status: 200, body: '['.repeat(30_000) + ']'.repeat(30_000) },
  }
  const app = await startApp(t, async (q) => {
    const a = answers[(q.headers.cookie ?? '').slice(4)]!
    return typeof a === 'function' ? a() : a
  })
  const r = await withApp(t, app)
  for (const name of Object.keys(answers)) {
    const started = Date.now()
    const res = await get(r.port, '/events', { Cookie: `sid=${name}` }, 3500)
    t.equal(res.status, 503, `${name}: 503`)
    t.match(res.headers['retry-after'], /^\d+$/, `${name}: Retry-After`)
    if (name === 'slow') t.ok(Date.now() - started < 2800, `slow: answered at the 2 s deadline (${Date.now() - started} ms)`)
    await sleep(1000) // one log line a second at most
  }
  t.equal(r.failures.length, Object.keys(answers).length, 'a log line each')
  t.ok(r.failures.every((f) => f.hook === 'auth-url'))
  const expected = ['no answer', 'answered 500', 'answered 502', 'not JSON', 'not a JSON object', 'user is not a name', 'roles', 'channels', 'channels', 'over 65536', 'answered 302', 'not a JSON object']
  t.same(r.failures.map((f, i) => (f.reason.includes(expected[i]!) ? expected[i] : f.reason)), expected, 'each says why')
  const s = await openStream(r.port, `/events/${TOKEN}`)
  const p = await publish(r.base, '', 'still here')
  t.equal(p.status, 200)
  await s.waitFor('data: still here\n')
  const health = await fetch(`${r.base}/healthz`)
  t.equal(health.status, 200)
  s.close()
})

t.test('the application down, then up again', async (t) => {
  const app = await startApp(t, () => ANN)
  const r = await withApp(t, app)
  await app.down()
  const down = await get(r.port, '/events?channel=news', { Cookie: 'sid=x' })
  t.equal(down.status, 503)
  t.match(r.failures[0], { hook: 'auth-url', reason: /no answer: ECONNREFUSED/ })
  await app.up()
  const s = await openStream(r.port, '/events?channel=news', { Cookie: 'sid=x' })
  t.match(s.received, /"user":"ann"/)
  s.close()
})

t.test('the authenticate hook is asked first; the application only when the hook says no', async (t) => {
  const app = await startApp(t, () => ANN)
  const server = new SseServer({
    port: 0,
    host: '127.0.0.1',
    publishTokens: [PUB],
    tickMs: 0,
    heartbeatMs: 0,
    publicDir: null,
    authUrl: app.url,
    authenticate: (token) => (token === 'hooked' ? { user: 'hooked', roles: [] } : null),
  })
  const { port } = await server.listen()
  t.teardown(() => server.stop())
  const a = await openStream(port, '/events/hooked')
  t.match(a.received, /"user":"hooked"/)
  t.equal(app.requests.length, 0)
  const b = await openStream(port, '/events?channel=news', { Authorization: 'Bearer other' })
  t.match(b.received, /"user":"ann"/)
  t.equal(app.requests.length, 1)
  a.close()
  b.close()
})
