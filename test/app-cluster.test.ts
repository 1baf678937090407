// Tickets spent once in a whole cluster (CONTRACT "Tickets"), as real processes: `--workers 2`
// (the primary keeps them), two processes on one redis-server (one GETDEL), and `--workers 2
// --redis`. A ticket made on one process opens a stream on another, once; shown to two processes
// at the same moment it opens exactly one stream; its TTL holds across processes; Redis keeps the
// digest, never the ticket. Expiry on a worker ends its stream as in one process. Without
// redis-server the Redis cases are skipped (and fail under CI=true).

import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import * as jose from 'jose'
import { parseResponse, rawRequest, sleep } from './helpers.js'
import { canRun } from './needs.js'
import { startCli, until, type Cli } from './process.js'
import { redisArray, redisCommand, redisMissing, startRedis } from './redis-server.js'

const PUB = 'pub-token'
const QUIET = ['--token', 'sub-token', '--publish-token', PUB, '--tick', '0', '--heartbeat', '0', '--log', 'off']
const SECRET = randomBytes(40).toString('base64url')

/** A ticket from POST /tickets on a connection of its own (with --workers, the next worker takes it). */
async function ticket(port: number, body = '{}'): Promise<string> {
  const raw = await rawRequest(port, `POST /tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`, 10_000)
  const r = parseResponse(raw)
  if (r.status !== 201) throw new Error(`POST /tickets: ${raw}`)
  return (JSON.parse(r.body) as { ticket: string }).ticket
}

/** The status a stream request gets (a stream that opens is closed once its head is in). */
async function present(port: number, tk: string): Promise<number> {
  const raw = await rawRequest(port, `GET /events/${tk} HTTP/1.1\r\nHost: x\r\n\r\n`, 1000)
  return parseResponse(raw).status
}

/** N tickets made on `makeOn`, each shown at the same moment to every port of `showTo`: how many streams each opened. */
async function race(makeOn: number, showTo: readonly number[], n: number): Promise<number[]> {
  const tickets = await Promise.all(Array.from({ length: n }, () => ticket(makeOn)))
  return Promise.all(tickets.map(async (tk) => (await Promise.all(showTo.map((p) => present(p, tk)))).filter((s) => s === 200).length))
}

async function clusterChecks(t: Test, a: Cli, b: Cli): Promise<void> {
  // Made on one, spent on the other, then refused everywhere.
  for (let i = 0; i < 4; i++) {
    const tk = await ticket(a.port)
    t.equal(await present(b.port, tk), 200, `ticket ${i}: opens a stream elsewhere`)
    t.same([await present(a.port, tk), await present(b.port, tk)], [401, 401], `ticket ${i}: spent for all`)
  }
  t.same(await race(a.port, [a.port, b.port, a.port, b.port], 10), Array(10).fill(1), 'shown four times at once: one stream each')
  const short = await ticket(a.port, '{"ttlSeconds":1}')
  await sleep(1300)
  t.equal(await present(b.port, short), 401, 'past its TTL, elsewhere too')
}

t.test('--workers 2: a ticket is spent once whichever worker it is shown to', async (t) => {
  const cli = await startCli(t, ['--port', '0', '--workers', '2', ...QUIET])
  // One port, two workers: connections alternate between them.
  await clusterChecks(t, cli, cli)
})

t.test('--workers 2: a stream whose JWT expires on a worker gets expiring, expired and its end', async (t) => {
  const cli = await startCli(t, ['--port', '0', '--workers', '2', '--jwt-secret', SECRET, ...QUIET])
  const exp = Math.ceil(Date.now() / 1000) + 2
  const token = await new jose.SignJWT({ exp }).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from(SECRET))
  const raw = await rawRequest(cli.port, `GET /events/${token} HTTP/1.1\r\nHost: x\r\n\r\n`, 6000)
  t.match(raw, /event: expiring\n[\s\S]*event: expired\ndata: \{"expiresAt":"[^"]+"\}\n\n\r\n0\r\n\r\n$/)
  const stats = JSON.parse(parseResponse(await rawRequest(cli.port, `GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nConnection: close\r\n\r\n`)).body) as { drops: Record<string, number> }
  t.equal(stats.drops.expired, 1, "the cluster's /stats")
})

if (canRun(t, 'test/app-cluster.test.ts', 'the Redis ticket tests', redisMissing())) {
  t.test('two processes on one redis-server: a ticket is spent once in the cluster; Redis holds its digest only', async (t) => {
    const redis = await startRedis(t)
    const a = await startCli(t, ['--port', '0', '--redis', redis.url, ...QUIET])
    const b = await startCli(t, ['--port', '0', '--redis', redis.url, ...QUIET])
    await clusterChecks(t, a, b)
    const kept = await ticket(a.port, '{"ttlSeconds":60}')
    const keys = redisArray(await redisCommand(redis.port, ['KEYS', '{rawsse}:ticket:*']))!
    t.equal(keys.length, 1, 'one live ticket in Redis')
    t.notOk(keys[0]!.includes(kept), 'its key is not the ticket')
    t.notOk((await redisCommand(redis.port, ['GET', keys[0]!])).includes(kept), 'nor its value')
    const ttl = Number((await redisCommand(redis.port, ['PTTL', keys[0]!])).slice(1))
    t.ok(ttl > 55_000 && ttl <= 60_000, `it expires with the ticket (PTTL ${ttl})`)
  })

  t.test('--workers 2 --redis beside a plain process: one ledger for every worker and machine', async (t) => {
    const redis = await startRedis(t)
    const a = await startCli(t, ['--port', '0', '--workers', '2', '--redis', redis.url, ...QUIET])
    const b = await startCli(t, ['--port', '0', '--redis', redis.url, ...QUIET])
    await clusterChecks(t, a, b)
  })

  t.test('Redis away: POST /tickets and a ticket shown are 503 bus unavailable; the process serves on', async (t) => {
    const redis = await startRedis(t, { persist: true })
    const a = await startCli(t, ['--port', '0', '--redis', redis.url, ...QUIET])
    const tk = await ticket(a.port)
    await redis.stop()
    const made = parseResponse(await rawRequest(a.port, `POST /tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`))
    t.same([made.status, JSON.parse(made.body)], [503, { error: 'bus unavailable' }])
    t.equal(made.headers['retry-after'], '1')
    t.equal(await present(a.port, tk), 503, 'a ticket shown: 503, not 401 (it may still be good)')
    await redis.restart()
    await until(async () => (await present(a.port, tk)) === 200, () => 'the ticket opens a stream once Redis is back', 10_000)
  })
}
