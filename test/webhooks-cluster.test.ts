// Presence webhooks of `rawsse` as real processes: the flags (the secret kept off the command
// line, exit 2 for what is wrong), SIGTERM (what is owed is tried once more, then logged; exit 0
// within 5 s), `--workers` (the primary tells each change once for the machine), and two
// processes on one real redis-server, one killed with -9: the users it held get `offline` after
// the grace window, once, except those that reconnected to the other first.

import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { PresenceChange } from '../src/index.js'
import { openStream, parseResponse, rawRequest, RawClient, sleep } from './helpers.js'
import { canRun } from './needs.js'
import { runCli, startCli, until } from './process.js'
import { redisMissing, startRedis } from './redis-server.js'
import { signatureValid, startApp, type App } from './app-server.js'

const FILE = 'test/webhooks-cluster.test.ts'
const SECRET = 'the-webhook-secret'
const SUB = 'sub-token'
const PUB = 'pub-token'
const QUIET = ['--port', '0', '--token', SUB, '--publish-token', PUB, '--tick', '0', '--heartbeat', '0']

/** The changes the receiver took (200), each id once, in the order they first came. */
function taken(app: App): PresenceChange[] {
  const out = new Map<string, PresenceChange>()
  for (const r of app.requests) {
    const c = JSON.parse(r.body) as PresenceChange
    if (!out.has(c.id)) out.set(c.id, c)
  }
  return [...out.values()]
}

/** A --users file of `n` users (`u0`… with tokens `t0`…), removed at the test's end. */
function usersFile(t: { teardown(fn: () => void): void }, n: number): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-hooks-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'users.json')
  writeFileSync(file, JSON.stringify(Array.from({ length: n }, (_, i) => ({ token: `t${i}`, user: `u${i}`, roles: [] }))))
  return file
}

async function statsOf(port: number): Promise<Record<string, unknown>> {
  const raw = await rawRequest(port, `GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nConnection: close\r\n\r\n`, 5000)
  return JSON.parse(parseResponse(raw).body) as Record<string, unknown>
}

t.test('flags: --webhook needs --webhook-secret, which may come from RAWSSE_WEBHOOK_SECRET; bad values exit 2', async (t) => {
  for (const [args, message] of [
    [['--webhook', 'http://127.0.0.1:9/'], /--webhook needs --webhook-secret/],
    [['--webhook-secret', 'x'], /--webhook-secret and --webhook-grace go with --webhook/],
    [['--webhook', 'ftp://x/', '--webhook-secret', 'x'], /--webhook must be an http:\/\/ or https:\/\/ URL/],
    [['--webhook', 'http://x/', '--webhook-secret', 'x', '--webhook-grace', '-1'], /--webhook-grace must be a whole number/],
    [['--auth-url', 'not a url'], /--auth-url must be an http:\/\/ or https:\/\/ URL/],
  ] as const) {
    const r = await runCli(t, [...QUIET, ...args])
    t.same(r.exit, { code: 2, signal: null }, args.join(' '))
    t.match(r.stderr, message)
    t.equal(r.stderr.split('\n').length, 2, 'one line')
  }
  const app = await startApp(t)
  const cli = await startCli(t, [...QUIET, '--webhook', app.url, '--webhook-grace', '100'], { env: { RAWSSE_WEBHOOK_SECRET: SECRET } })
  const s = await openStream(cli.port, `/events/${SUB}?channel=env`)
  await until(() => app.requests.length >= 1, () => 'a webhook')
  t.ok(signatureValid(SECRET, app.requests[0]!.headers['rawsse-signature'] as string, app.requests[0]!.body), 'signed with the secret from the environment')
  s.close()
  const help = await runCli(t, ['--help'])
  for (const flag of ['--webhook URL', '--webhook-secret SECRET', '--webhook-grace MS', '--auth-url URL']) t.match(help.stdout, flag)
})

t.test('SIGTERM: a webhook still owed is tried once more, then logged; the streams closing are not told; exit 0 within 5 s', async (t) => {
  const app = await startApp(t, () => ({ status: 503 }))
  const cli = await startCli(t, [...QUIET, '--webhook', app.url, '--webhook-secret', SECRET, '--webhook-grace', '100', '--log', 'json'])
  const s = await openStream(cli.port, `/events/${SUB}?channel=owed`)
  await until(() => app.requests.length >= 1, () => 'the first try')
  await sleep(100) // the next try is 1 s away
  const stopped = Date.now()
  cli.child.kill('SIGTERM')
  const exit = await cli.child.waitExit(6000)
  t.same(exit, { code: 0, signal: null })
  t.ok(Date.now() - stopped < 5000, `stopped in ${Date.now() - stopped} ms`)
  t.equal(app.requests.length, 2, 'tried once more at the stop')
  t.ok(app.requests[1]!.at - stopped < 800, 'at once, not after the backoff')
  t.same(taken(app).map((c) => c.type), ['channel.occupied'], 'the stream closing at the stop is not told')
  const id = taken(app)[0]!.id
  const line = cli.child.stderr.split('\n').find((l) => l.includes('"event":"webhook-unsent"'))
  t.ok(line, 'a log line for the webhook left unsent')
  t.match(JSON.parse(line!), { event: 'webhook-unsent', id, type: 'channel.occupied', channel: 'owed' })
  s.close()
})

t.test('--workers 2: the primary tells each change once for the machine', async (t) => {
  const app = await startApp(t)
  const users = usersFile(t, 1)
  const cli = await startCli(t, [...QUIET, '--workers', '2', '--users', users, '--webhook', app.url, '--webhook-secret', SECRET, '--webhook-grace', '300', '--log', 'off'])
  // Connections of their own: the primary hands them round-robin to both workers.
  const streams: RawClient[] = []
  for (let i = 0; i < 6; i++) streams.push(await openStream(cli.port, '/events/t0?channel=lobby'))
  await until(() => app.requests.length >= 2, () => 'online and occupied')
  await sleep(1000)
  t.same(taken(app).map((c) => c.type).sort(), ['channel.occupied', 'user.online'], 'once, though both workers hold streams of u0')
  for (const s of streams.slice(0, 5)) s.close()
  await sleep(1000)
  t.equal(app.requests.length, 2, 'a stream left: nothing to tell')
  streams[5]!.close()
  await until(() => app.requests.length >= 4, () => 'offline and vacated')
  await sleep(800)
  t.same(taken(app).map((c) => c.type).slice(2).sort(), ['channel.vacated', 'user.offline'])
  t.equal(app.requests.length, 4)
  await until(async () => ((await statsOf(cli.port)).webhooks as { sent: number } | undefined)?.sent === 4, () => '/stats webhooks.sent 4')
  t.pass('/stats webhooks of the primary in the totals')
})

if (canRun(t, FILE, 'the Redis webhook test', redisMissing())) {
  t.test('kill -9 of one of two Redis processes: its users get offline after the grace window, once, unless they reconnected to the other', async (t) => {
    const redis = await startRedis(t)
    const app = await startApp(t)
    const users = usersFile(t, 6)
    const GRACE = 1500
    const args = [...QUIET, '--redis', redis.url, '--users', users, '--webhook', app.url, '--webhook-secret', SECRET, '--webhook-grace', String(GRACE), '--log', 'off']
    const a = await startCli(t, args)
    const b = await startCli(t, args)
    const held = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => openStream(a.port, `/events/t${i}?channel=room`)))
    const onB = await openStream(b.port, `/events/${SUB}?channel=room`) // the room stays occupied through the kill
    await until(() => taken(app).length >= 7, () => `6 onlines and the room; got ${JSON.stringify(taken(app).map((c) => c.type))}`, 15_000)
    await sleep(4000) // past the backstop: a second node that claims tells nothing
    const before = taken(app)
    t.equal(before.filter((c) => c.type === 'user.online').length, 6, 'each online once for the cluster')
    t.equal(before.filter((c) => c.type === 'channel.occupied').length, 1, 'the room once')
    t.equal(app.requests.length, 7, 'and no second try of any')

    a.child.kill('SIGKILL')
    const killed = Date.now()
    for (const s of held) s.close()
    // u0, u1, u2 come back on the other process at once.
    const back = await Promise.all([0, 1, 2].map((i) => openStream(b.port, `/events/t${i}?channel=room`)))
    await until(() => taken(app).length >= 10, () => `3 offlines; got ${JSON.stringify(taken(app).slice(7))}`, 20_000)
    const firstOffline = Date.now() - killed
    await sleep(5000) // past the grace window and the backstop again
    const after = taken(app).slice(7)
    t.same(after.map((c) => `${c.type} ${c.user}`).sort(), ['user.offline u3', 'user.offline u4', 'user.offline u5'], 'only those that did not reconnect, once each')
    t.ok(firstOffline >= GRACE, `told after the grace window (${firstOffline} ms after the kill)`)
    t.equal(app.requests.length, 10, 'nothing twice')
    for (const r of app.requests) t.ok(signatureValid(SECRET, r.headers['rawsse-signature'] as string, r.body))
    for (const s of [...back, onB]) s.close()
  })
}
