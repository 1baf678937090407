// Presence webhooks in one process (src/server/webhooks/): each of the four types, signed as the
// contract says and checked by the receiver; a receiver that fails three times, then takes it
// (one change, one id); 500 streams that drop and reconnect within the grace window (no webhook);
// the order of one user's changes under churn with a receiver that fails now and then; the
// `presence` event; /stats and /metrics. The receiver is a real HTTP server on loopback.

import t from 'tap'
import { SseServer, type PresenceChange, type SseServerOptions } from '../src/index.js'
import { openStream, RawClient, startServer, TOKEN, PUB, sleep } from './helpers.js'
import { until } from './process.js'
import { signatureValid, startApp, type App, type AppRequestSeen } from './app-server.js'

const SECRET = 'a-webhook-secret-for-the-tests'

const users = (n: number): SseServerOptions['users'] => Array.from({ length: n }, (_, i) => ({ token: `t${i}`, user: `u${i}`, roles: [] }))

const changes = (app: App): PresenceChange[] => app.requests.map((r) => JSON.parse(r.body) as PresenceChange)

t.test('each type is POSTed once, signed: user.online and channel.occupied, then user.offline and channel.vacated', async (t) => {
  const app = await startApp(t)
  const r = await startServer(t, { users: users(1), webhook: { url: app.url, secret: SECRET, graceMs: 200 } })
  const opened = Date.now()
  const s = await openStream(r.port, '/events/t0?channel=news')
  await until(() => app.requests.length >= 2, () => `2 webhooks; got ${app.requests.length}`)
  t.ok(Date.now() - opened >= 200, 'told after the grace window')
  s.close()
  await until(() => app.requests.length >= 4, () => `4 webhooks; got ${app.requests.length}`)
  await sleep(400)
  t.equal(app.requests.length, 4, 'nothing more')
  const got = changes(app)
  t.same(got.map((c) => c.type).sort(), ['channel.occupied', 'channel.vacated', 'user.offline', 'user.online'])
  for (const [i, c] of got.entries()) {
    const req = app.requests[i]!
    t.equal(req.method, 'POST')
    t.equal(req.path, '/')
    t.match(req.headers['content-type'], /^application\/json/)
    t.ok(signatureValid(SECRET, req.headers['rawsse-signature'] as string, req.body), `${c.type}: the signature checks`)
    t.notOk(signatureValid('another secret', req.headers['rawsse-signature'] as string, req.body), `${c.type}: not with another secret`)
    t.match(req.body, /^\{"id":"[^"]+","type":"[a-z.]+","channel":("news"|null),"user":("u0"|null),"at":"\d{4}-\d\d-\d\dT[\d:.]+Z"\}$/, 'the body, key for key')
    if (c.type.startsWith('user.')) t.same([c.user, c.channel], ['u0', null])
    else t.same([c.user, c.channel], [null, 'news'])
  }
  t.equal(new Set(got.map((c) => c.id)).size, 4, 'four ids')
  const online = got.find((c) => c.type === 'user.online')!
  t.ok(Math.abs(Date.parse(online.at) - opened) < 150, '`at` is when the stream opened, not when it was told')
  const stats = r.server.stats()
  t.same(stats.webhooks, { sent: 4, retried: 0, failed: 0 }, '/stats webhooks')
})

t.test('a receiver that fails 3 times then takes it: one change, the same id and body each time, counted', async (t) => {
  const seen = new Map<string, number>()
  const app = await startApp(t, (req) => {
    const id = (JSON.parse(req.body) as PresenceChange).id
    const n = (seen.get(id) ?? 0) + 1
    seen.set(id, n)
    return n <= 3 ? { status: n === 2 ? 429 : 503 } : { status: 204 }
  })
  const r = await startServer(t, { webhook: { url: app.url, secret: SECRET, graceMs: 100 } })
  const s = await openStream(r.port, `/events/${TOKEN}?channel=solo`) // no user: one change, channel.occupied
  await until(() => app.requests.length >= 4, () => `4 tries; got ${app.requests.length}`, 15_000)
  const tries = app.requests
  t.equal(new Set(tries.map((q) => q.body)).size, 1, 'the same body (and id) each time')
  t.equal(changes(app)[0]!.type, 'channel.occupied')
  for (const q of tries) t.ok(signatureValid(SECRET, q.headers['rawsse-signature'] as string, q.body), 'each try signed')
  const gaps = tries.slice(1).map((q, i) => q.at - tries[i]!.at)
  t.ok(gaps[0]! >= 900 && gaps[1]! >= 1900 && gaps[2]! >= 3900, `backoff 1 s, 2 s, 4 s (${gaps.join(', ')} ms)`)
  // The receiver has the 4th try before the sender has read its answer: counted a moment later.
  await until(() => r.server.stats().webhooks?.sent === 1, () => `sent: ${JSON.stringify(r.server.stats().webhooks)}`)
  t.same(r.server.stats().webhooks, { sent: 1, retried: 3, failed: 0 })
  const res = await fetch(`${r.base}/metrics`, { headers: { authorization: `Bearer ${PUB}` } })
  const text = await res.text()
  for (const [name, n] of [['sent', 1], ['retried', 3], ['failed', 0]] as const) {
    t.match(text, `# TYPE rawsse_webhooks_${name}_total counter\nrawsse_webhooks_${name}_total ${n}\n`, `/metrics rawsse_webhooks_${name}_total`)
  }
  s.close()
})

t.test('500 streams that drop and reconnect within the grace window tell nothing', async (t) => {
  const N = 500
  const app = await startApp(t)
  const r = await startServer(t, { users: users(N), webhook: { url: app.url, secret: SECRET, graceMs: 3000 } })
  const open = (): Promise<RawClient[]> => Promise.all(Array.from({ length: N }, (_, i) => openStream(r.port, `/events/t${i}?channel=room`)))
  let streams = await open()
  await until(() => app.requests.length >= N + 1, () => `${N} onlines and the room; got ${app.requests.length}`, 15_000)
  const before = app.requests.length
  t.equal(before, N + 1, `${N} user.online and one channel.occupied`)
  const dropped = Date.now()
  for (const s of streams) s.close()
  await until(() => r.server.clientCount === 0, () => 'every stream closed')
  streams = await open()
  t.ok(Date.now() - dropped < 3000, `all back within the grace window (${Date.now() - dropped} ms)`)
  await sleep(3500)
  t.equal(app.requests.length, before, 'no webhook')
  for (const s of streams) s.close()
})

t.test("one user's changes arrive in order under churn, with a receiver that fails now and then", async (t) => {
  const taken: Array<PresenceChange> = []
  let n = 0
  const app = await startApp(t, (req: AppRequestSeen) => {
    const c = JSON.parse(req.body) as PresenceChange
    if (++n % 3 === 0 && !taken.some((x) => x.id === c.id)) return { status: 503 } // every third try fails once
    if (!taken.some((x) => x.id === c.id)) taken.push(c)
    return { status: 200 }
  })
  const U = 4
  const r = await startServer(t, { users: users(U), webhook: { url: app.url, secret: SECRET, graceMs: 150 } })
  const open: RawClient[][] = Array.from({ length: U }, () => [])
  // Seeded steps: each user opens or closes a stream, with pauses around the grace window.
  let seed = 7
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
  for (let step = 0; step < 40; step++) {
    const u = Math.floor(rand() * U)
    if (open[u]!.length > 0 && rand() < 0.6) open[u]!.pop()!.close()
    else open[u]!.push(await openStream(r.port, `/events/t${u}`))
    await sleep(Math.floor(rand() * 300))
  }
  for (const list of open) for (const s of list) s.close()
  await until(() => r.server.clientCount === 0, () => 'every stream closed')
  await sleep(300)
  await until(
    async () => {
      const before = app.requests.length
      await sleep(1500)
      return app.requests.length === before
    },
    () => 'the webhooks to settle',
    30_000,
  )
  for (let u = 0; u < U; u++) {
    const mine = taken.filter((c) => c.user === `u${u}`)
    const types = mine.map((c) => c.type)
    t.ok(mine.length >= 2, `u${u}: at least one online and offline (${types.length})`)
    t.ok(
      types.every((ty, i) => ty === (i % 2 === 0 ? 'user.online' : 'user.offline')),
      `u${u}: online and offline alternate, in order: ${types.join(' ')}`,
    )
    t.ok(
      mine.every((c, i) => i === 0 || Date.parse(c.at) >= Date.parse(mine[i - 1]!.at)),
      `u${u}: their times increase`,
    )
  }
  t.ok(r.server.stats().webhooks!.retried > 0, 'some were retried')
})

t.test('the presence event: each change once, without a webhook; /stats has no webhooks then', async (t) => {
  const server = new SseServer({ port: 0, host: '127.0.0.1', tokens: [TOKEN], users: users(1), tickMs: 0, heartbeatMs: 0, publicDir: null, webhook: undefined })
  const told: PresenceChange[] = []
  server.on('presence', (c) => told.push(c))
  const { port } = await server.listen()
  t.teardown(() => server.stop())
  const s = await openStream(port, '/events/t0')
  s.close()
  await sleep(200)
  const again = await openStream(port, '/events/t0') // within the 5 s default: the close tells nothing
  await until(() => told.length >= 2, () => `2 changes; got ${told.length}`, 8000)
  t.same(told.map((c) => c.type).sort(), ['channel.occupied', 'user.online'])
  t.equal(told.find((c) => c.type === 'channel.occupied')!.channel, 'default')
  t.notOk('webhooks' in server.stats(), 'no webhooks in /stats without --webhook')
  again.close()
})

t.test('a server with neither webhook nor presence listener tells nothing and counts nothing', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  s.close()
  t.notOk('webhooks' in r.server.stats())
})

t.test('the library refuses a bad webhook or auth URL, and an empty secret', async (t) => {
  t.throws(() => new SseServer({ webhook: { url: 'ftp://x/', secret: 's' } }), { name: 'RangeError', message: /webhook\.url must be an http/ })
  t.throws(() => new SseServer({ webhook: { url: 'http://x/', secret: '' } }), { name: 'RangeError', message: /webhook\.secret/ })
  t.throws(() => new SseServer({ webhook: { url: 'http://x/', secret: 's', graceMs: -1 } }), { name: 'RangeError', message: /graceMs/ })
  t.throws(() => new SseServer({ authUrl: 'nope' }), { name: 'RangeError', message: /authUrl must be an http/ })
})

t.test('the sender: a 4xx is refused at once, a receiver down is given up after its time, each counted and reported', async (t) => {
  const { WebhookSender } = await import('../src/server/webhooks/sender.js')
  const { makeChange } = await import('../src/server/webhooks/change.js')
  const app = await startApp(t, (q) => ({ status: (JSON.parse(q.body) as PresenceChange).user === 'refused' ? 404 : 503 }))
  const counts = { sent: 0, retried: 0, failed: 0 }
  const reports: Array<{ outcome: string; reason: string; user: string | null }> = []
  const times = { firstRetryMs: 100, maxRetryMs: 200, giveUpMs: 1000, timeoutMs: 1000, stopMs: 500 }
  const sender = new WebhookSender(new URL(app.url), SECRET, counts, (f) => reports.push({ outcome: f.outcome, reason: f.reason, user: f.change.user }), times)
  sender.send('u:refused', makeChange('u:refused', true, Date.now()))
  sender.send('u:down', makeChange('u:down', true, Date.now()))
  sender.send('u:down', makeChange('u:down', false, Date.now()))
  await until(() => reports.length >= 3, () => `3 reports; got ${JSON.stringify(reports)}`, 10_000)
  t.match(reports[0], { outcome: 'failed', reason: 'answered 404', user: 'refused' }, 'a 404: given up at once')
  t.match(reports[1], { outcome: 'failed', reason: /answered 503; given up/, user: 'down' }, 'a receiver that keeps failing: given up after its time')
  t.match(reports[2], { outcome: 'failed', user: 'down' }, 'then the next of the same key, which waited behind it')
  t.equal(counts.failed, 3)
  t.ok(counts.retried >= 4, `retried in between (${counts.retried})`)
  t.equal(sender.size, 0, 'nothing owed')
  const tried = app.requests.filter((q) => (JSON.parse(q.body) as PresenceChange).user === 'down')
  const firstOfSecond = tried.findIndex((q) => (JSON.parse(q.body) as PresenceChange).type === 'user.offline')
  t.ok(tried.slice(0, firstOfSecond).every((q) => (JSON.parse(q.body) as PresenceChange).type === 'user.online'), 'the offline was not tried before the online was given up')
  await sender.stop()
})

t.test("live channels: a channel added to an open stream is occupied, one removed vacated", async (t) => {
  const app = await startApp(t)
  const r = await startServer(t, { webhook: { url: app.url, secret: SECRET, graceMs: 100 } })
  const s = await openStream(r.port, `/events/${TOKEN}?channel=a`)
  const ready = JSON.parse(/data: (\{"client".*)\n/.exec(s.received)![1]!) as { client: number; key: string }
  await until(() => app.requests.length >= 1, () => 'a occupied')
  const change = await fetch(`${r.base}/clients/${ready.client}/channels`, { method: 'POST', headers: { authorization: `Bearer ${ready.key}` }, body: JSON.stringify({ add: ['b'], remove: ['a'] }) })
  t.equal(change.status, 200)
  await until(() => app.requests.length >= 3, () => `b occupied and a vacated; got ${JSON.stringify(changes(app))}`)
  t.same(changes(app).map((c) => `${c.type} ${c.channel}`).sort(), ['channel.occupied a', 'channel.occupied b', 'channel.vacated a'])
  s.close()
})
