// `--redis` when Redis misbehaves in ways other than refusing connections (issue 20), on a real
// redis-server: a Redis that hangs (SIGSTOP, then SIGCONT) while two processes publish through it,
// one at a time and pipelined on keep-alive connections; the deadline each append carries, in
// Redis's clock; a `--workers` primary whose request for a block of stream ids fails while Redis
// is away; and the library's publishEvent() on a cluster bus. Without redis-server (or the redis
// package) they are skipped, and fail under CI=true.

import t, { type Test } from 'tap'
import { parseResponse, rawRequest, RawClient, sleep } from './helpers.js'
import { SseServer } from '../src/index.js'
import { canRun } from './needs.js'
import { startCli, until, type Cli } from './process.js'
import { redisCommand, redisMissing, startRedis, type Redis } from './redis-server.js'

const SUB = 'sub-token'
const PUB = 'pub-token'
const FILE = 'test/redis-faults.test.ts'

/** One rawsse process on `redis`, quiet (no tick, heartbeat or log). */
function node(t: Test, redis: { url: string }, extra: readonly string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Cli> {
  return startCli(t, ['--port', '0', '--redis', redis.url, '--token', SUB, '--publish-token', PUB, '--tick', '0', '--heartbeat', '0', '--log', 'off', ...extra], { env })
}

interface Answer {
  status: number
  headers: Record<string, string>
  body: string
}

const publishRequest = (data: string, close: boolean): string =>
  `POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(data)}\r\n${close ? 'Connection: close\r\n' : ''}\r\n${data}`

/** The whole answers at the front of `raw` (each head and its Content-Length body); what follows them is left. */
function wholeAnswers(raw: string): { answers: Answer[]; rest: string } {
  const answers: Answer[] = []
  let rest = raw
  for (;;) {
    const end = rest.indexOf('\r\n\r\n')
    if (end === -1) break
    const r = parseResponse(rest.slice(0, end + 4))
    const length = Number(r.headers['content-length'] ?? NaN)
    if (!Number.isInteger(length) || rest.length < end + 4 + length) break
    answers.push({ status: r.status, headers: r.headers, body: rest.slice(end + 4, end + 4 + length) })
    rest = rest.slice(end + 4 + length)
  }
  return { answers, rest }
}

/** GET on a connection of its own; the whole answer (or a failure naming what came). */
async function get(port: number, path: string, token: string | null = null): Promise<Answer> {
  const raw = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: x\r\n${token === null ? '' : `Authorization: Bearer ${token}\r\n`}Connection: close\r\n\r\n`, 10_000)
  const { answers } = wholeAnswers(raw)
  if (answers.length !== 1) throw new Error(`GET ${path} on :${port}: not one whole answer: ${JSON.stringify(raw)}`)
  return answers[0]!
}

/** What a process's /healthz says, and its own bus in /stats `nodes` (found by its pid). */
async function busSeenBy(x: Cli): Promise<{ healthz: string; stats: string }> {
  const h = await get(x.port, '/healthz')
  const s = JSON.parse((await get(x.port, '/stats', PUB)).body) as { nodes?: Array<{ pid: number; bus: string }> }
  const own = s.nodes?.find((n) => n.pid === x.child.proc.pid)
  return { healthz: `${h.status} ${h.body}`, stats: own?.bus ?? `no entry for pid ${x.child.proc.pid}` }
}

const DOWN = { healthz: '200 {"status":"bus down"}', stats: 'down' }
const UP = { healthz: '200 {"status":"ok"}', stats: 'up' }

/** The published events a stream received, as `ID DATA`, in order. */
function published(c: RawClient): string[] {
  return [...c.received.matchAll(/(?:^|\n)id: ([^\n]*)\ndata: ([^\n]*)\n\n/g)].map((m) => `${m[1]} ${m[2]}`)
}

async function stream(t: Test, port: number): Promise<RawClient> {
  const c = await RawClient.open(port)
  t.teardown(() => c.close())
  c.write(`GET /events/${SUB} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  await c.waitFor('event: ready\n', 10_000)
  return c
}

/** Every publish a publisher made: the data answered 200 (with its id) in the order sent, the data answered 503, and anything else. */
interface Tally {
  /** `ID DATA` of each 200, in the order its publisher sent it. */
  ok: string[]
  refused: string[]
  /** Answers neither 200 nor a whole `503 {"error":"bus unavailable"}` with Retry-After: an empty reply, a cut connection… */
  wrong: string[]
}

function judge(tally: Tally, data: string, a: Answer | undefined, why: string): void {
  if (a === undefined) tally.wrong.push(`${data}: no whole answer (${why})`)
  else if (a.status === 200) tally.ok.push(`${String((JSON.parse(a.body) as { id: unknown }).id)} ${data}`)
  else if (a.status === 503 && a.body === '{"error":"bus unavailable"}' && /^\d+$/.test(a.headers['retry-after'] ?? '')) tally.refused.push(data)
  else tally.wrong.push(`${data}: ${a.status} ${JSON.stringify(a.headers)} ${a.body}`)
}

interface Running {
  tally: Tally
  stop(): Promise<void>
}

/** One publish at a time, each on a connection of its own, on the processes in turn, until stopped. */
function oneAtATime(nodes: readonly Cli[], prefix: string): Running {
  const tally: Tally = { ok: [], refused: [], wrong: [] }
  let running = true
  const loop = (async () => {
    for (let n = 1; running; n++) {
      const data = `${prefix}${n}`
      const raw = await rawRequest(nodes[n % nodes.length]!.port, publishRequest(data, true), 10_000).catch((err: unknown) => `(${String(err)})`)
      const { answers } = wholeAnswers(raw)
      judge(tally, data, answers.length === 1 ? answers[0] : undefined, JSON.stringify(raw))
      await sleep(10)
    }
  })()
  return { tally, stop: async () => void ((running = false), await loop) }
}

/** `depth` publishes in one write on one keep-alive connection, then the next `depth` once all are answered, until stopped. */
function pipelined(at: Cli, prefix: string, depth: number): Running {
  const tally: Tally = { ok: [], refused: [], wrong: [] }
  let running = true
  const connect = (): Promise<RawClient | null> => RawClient.open(at.port).catch(() => null)
  const loop = (async () => {
    let c = await connect()
    let from = 0
    for (let n = 1; running; ) {
      if (c === null) {
        tally.wrong.push(`cannot connect to :${at.port}`)
        break
      }
      const batch = Array.from({ length: depth }, (_, k) => `${prefix}${n + k}`)
      n += depth
      const conn = c
      conn.write(batch.map((d) => publishRequest(d, false)).join(''))
      await conn.waitFor((s) => wholeAnswers(s.slice(from)).answers.length >= depth, 10_000).catch(() => {})
      const { answers, rest } = wholeAnswers(conn.received.slice(from))
      batch.forEach((d, k) => judge(tally, d, answers[k], `connection ${conn.closed ? 'closed' : 'open'} after ${answers.length} of ${depth} answers; then ${JSON.stringify(rest)}`))
      from = conn.received.length - rest.length
      if (answers.length < depth) {
        c.close()
        c = await connect()
        from = 0
      }
      await sleep(10)
    }
    c?.close()
  })()
  return { tally, stop: async () => void ((running = false), await loop) }
}

const dataOf = (key: string): string => key.slice(key.indexOf(' ') + 1)
const idOf = (key: string): number => Number(key.slice(0, key.indexOf(' ')))

/** SIGSTOP to redis-server (by its PID) for the length of `during`, then SIGCONT whatever happened. */
async function hang<T>(redis: Redis, during: () => Promise<T>): Promise<T> {
  process.kill(redis.pid, 'SIGSTOP')
  try {
    return await during()
  } finally {
    process.kill(redis.pid, 'SIGCONT')
  }
}

if (canRun(t, FILE, 'the Redis fault tests', redisMissing())) {
  t.test('Redis hangs (SIGSTOP 5 s) under publishing: each publish gets a whole answer, 200 or 503; every 200 reaches every stream once, in order, no 503 ever; /healthz and /stats say the bus is down, then up', async (t) => {
    const redis = await startRedis(t)
    const [a, b] = await Promise.all([node(t, redis), node(t, redis)])
    const nodes = [a!, b!]
    const streams = [await stream(t, a!.port), await stream(t, b!.port)]
    for (const x of nodes) t.same(await busSeenBy(x), UP, `:${x.port} says the bus is up before`)

    const publishers = [oneAtATime(nodes, 's'), pipelined(a!, 'pa', 3), pipelined(b!, 'pb', 3)]
    t.teardown(() => Promise.all(publishers.map((p) => p.stop())))
    const okCount = (): number[] => publishers.map((p) => p.tally.ok.length)
    await until(() => okCount().every((n) => n >= 3), () => `three 200s for each publisher; ${JSON.stringify(publishers.map((p) => p.tally))}`, 10_000)

    const seenDown = await hang(redis, async () => {
      const stopped = Date.now()
      const seen = await Promise.all(
        nodes.map(async (x) => {
          let last: unknown = null
          await until(
            async () => JSON.stringify((last = await busSeenBy(x))) === JSON.stringify(DOWN),
            () => `:${x.port} to say the bus is down; last ${JSON.stringify(last)}`,
            10_000,
          )
          return last
        }),
      )
      // The hang lasts 5 s whatever the processes do: publishing goes on throughout.
      await sleep(Math.max(0, 5000 - (Date.now() - stopped)))
      return seen
    })
    t.same(seenDown, [DOWN, DOWN], 'while Redis hangs: /healthz 200 {"status":"bus down"} and /stats bus down, on both processes')
    const refusedByThen = publishers.map((p) => p.tally.refused.length)

    for (const x of nodes) {
      let last: unknown = null
      await until(async () => JSON.stringify((last = await busSeenBy(x))) === JSON.stringify(UP), () => `:${x.port} to say the bus is up again; last ${JSON.stringify(last)}`, 10_000)
    }
    t.pass('after SIGCONT: /healthz 200 {"status":"ok"} and /stats bus up again on both')
    const okThen = okCount()
    await until(() => okCount().every((n, i) => n >= okThen[i]! + 3), () => `three more 200s for each publisher; ${JSON.stringify(publishers.map((p) => p.tally))}`, 10_000)
    await Promise.all(publishers.map((p) => p.stop()))

    const tallies = publishers.map((p) => p.tally)
    t.same(
      tallies.flatMap((x) => x.wrong),
      [],
      'every publish got a whole answer: 200, or 503 {"error":"bus unavailable"} with Retry-After',
    )
    t.ok(
      refusedByThen.every((n) => n > 0),
      `each publisher had 503s while Redis hung (${refusedByThen.join(', ')}): one at a time, and pipelined on each process`,
    )

    // A marker through each process last: whatever came before it has been delivered.
    const markers: string[] = []
    for (const x of nodes) {
      const m = wholeAnswers(await rawRequest(x.port, publishRequest(`end-${x.port}`, true), 10_000)).answers[0]
      t.equal(m?.status, 200, `the marker through :${x.port}`)
      markers.push(`end-${x.port}`)
    }
    for (const c of streams) for (const m of markers) await c.waitFor(`data: ${m}\n`, 10_000)

    const ok = tallies.flatMap((x) => x.ok)
    const refused = new Set(tallies.flatMap((x) => x.refused))
    const first = published(streams[0]!).filter((k) => !markers.includes(dataOf(k)))
    t.same(published(streams[1]!).filter((k) => !markers.includes(dataOf(k))), first, 'both streams: the same events, ids and order')
    t.same(
      first.filter((k) => refused.has(dataOf(k))),
      [],
      `no event answered 503 was published (${refused.size} refused)`,
    )
    t.same([...first].sort(), [...ok].sort(), `exactly the ${ok.length} events answered 200, each once, with the ids they were answered`)
    t.ok(
      first.every((k, i) => i === 0 || idOf(k) > idOf(first[i - 1]!)),
      'ids increase in delivery order',
    )
    for (const [i, x] of tallies.entries()) {
      const own = new Set(x.ok)
      t.same(
        first.filter((k) => own.has(k)),
        x.ok,
        `publisher ${i + 1} (${i === 0 ? 'one at a time' : 'pipelined'}): its 200s arrive in the order it sent them`,
      )
    }
    t.comment(`${ok.length} answered 200, ${refused.size} answered 503`)
  })

  t.test('--workers 2 --redis: blocks of stream ids asked for while Redis is away come once it is back, and streams open on every worker again', async (t) => {
    const redis = await startRedis(t)
    // Blocks of 4 stream ids instead of 65 536, so that a few streams spend them (a knob for tests only).
    const machine = await node(t, redis, ['--workers', '2'], { RAWSSE_TEST_CLIENT_ID_BLOCK: '4' })
    // At start the node took a block for itself (1 to 4, unused by a primary) and one in reserve;
    // each worker got one (5 to 8, 9 to 12), and the reserve was refilled (13 to 16).
    await until(async () => (await redisCommand(redis.port, ['GET', '{rawsse}:client-ids'])) === '$2\r\n16\r\n', () => 'ids 1 to 16 taken from Redis', 10_000)
    /** A stream's client id, or the whole answer that refused it. */
    const open = async (): Promise<number | string> => {
      const c = await RawClient.open(machine.port)
      t.teardown(() => c.close())
      c.write(`GET /events/${SUB} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
      await c.waitFor((s) => s.includes('event: ready\n') || wholeAnswers(s).answers.length > 0, 10_000)
      const id = /data: \{"client":(\d+),/.exec(c.received)
      if (id !== null) return Number(id[1])
      c.close()
      const a = wholeAnswers(c.received).answers[0]!
      return `${a.status} ${a.body} Retry-After: ${a.headers['retry-after']}`
    }
    /** Each worker's streams, from /stats `nodes`. */
    const perWorker = async (): Promise<number[]> => {
      const s = JSON.parse((await get(machine.port, '/stats', PUB)).body) as { nodes: Array<{ node: string; clients: number }> }
      return [...s.nodes].sort((x, y) => x.node.localeCompare(y.node)).map((n) => n.clients)
    }

    await redis.stop()
    // A worker asks for its next block half way through one: the first ask gets the reserve,
    // the others find Redis refusing. Streams open until both workers are out of ids.
    const ids: number[] = []
    const refusals = new Set<string>()
    for (let i = 0, inARow = 0; i < 40 && inARow < 4; i++) {
      const r = await open()
      if (typeof r === 'number') ids.push(r)
      else refusals.add(r)
      inARow = typeof r === 'number' ? 0 : inARow + 1
    }
    t.same([...ids].sort((x, y) => x - y), [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 'the ids the blocks held, each once')
    t.same([...refusals], ['503 no stream ids left; try again\n Retry-After: 1'], 'then each worker refuses streams: 503 with Retry-After')
    const before = await perWorker()
    // Each worker answers /healthz itself, from what the primary tells it: four in a row reach both.
    const healthz = async (): Promise<string> => (await get(machine.port, '/healthz')).body
    const fourSay = async (body: string): Promise<boolean> => {
      for (let i = 0; i < 4; i++) if ((await healthz()) !== body) return false
      return true
    }
    await until(() => fourSay('{"status":"bus down"}'), () => 'both workers’ /healthz to say bus down', 10_000)
    t.pass('while Redis is away, each worker’s /healthz says {"status":"bus down"}')

    await redis.restart()
    let now: number[] = before
    const after: number[] = []
    await until(
      async () => {
        // Two at a time: the primary hands connections to its workers in turn, and /stats takes one.
        for (const r of [await open(), await open()]) if (typeof r === 'number') after.push(r)
        now = await perWorker()
        return now.length === 2 && now.every((n, i) => n > before[i]!)
      },
      () => `a stream to open on each worker once Redis is back; streams per worker before ${JSON.stringify(before)}, now ${JSON.stringify(now)}`,
      15_000,
    )
    t.pass(`streams open on both workers again (per worker ${JSON.stringify(before)} → ${JSON.stringify(now)})`)
    await until(() => fourSay('{"status":"ok"}'), () => 'both workers’ /healthz to say ok again', 10_000)
    t.pass('and each worker’s /healthz says {"status":"ok"} again')
    t.ok(
      after.every((id) => id > 16) && new Set([...ids, ...after]).size === ids.length + after.length,
      `with ids from new blocks, unique (${after.join(', ')})`,
    )
  })

  t.test('garbage published on the cluster\'s control and reply channels is warned, never thrown: both nodes go on serving and answering each other', async (t) => {
    const redis = await startRedis(t)
    const a = await node(t, redis)
    const b = await node(t, redis)
    const sa = await stream(t, a.port)
    await until(async () => JSON.parse((await get(b.port, '/stats', PUB)).body).clients === 1, () => 'b sees a\'s stream', 5000)
    const names = JSON.parse((await get(b.port, '/stats', PUB)).body).nodes.map((n: { node: string }) => n.node) as string[]
    for (const ch of ['{rawsse}:control', ...names.map((n) => `{rawsse}:reply:${n}`)]) {
      for (const junk of ['not json', '{"q":"close-all","from":"x","n":', 'null', '{"n":1}']) await redisCommand(redis.port, ['PUBLISH', ch, junk])
    }
    await sleep(200)
    const id = /"client":(\d+)/.exec(sa.received)![1]
    const del = await rawRequest(b.port, `DELETE /clients/${id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nConnection: close\r\n\r\n`)
    t.match(del, /^HTTP\/1\.1 200 OK[\s\S]*\{"closed":1\}$/, 'a question across the nodes is still answered')
    t.equal(a.child.exit, null, 'node a lives')
    t.equal(b.child.exit, null, 'node b lives')
    t.match(a.child.stderr + b.child.stderr, /a message of another node on \{rawsse\}:control failed/, 'and says what it got')
  })

  t.test('each append carries its deadline in Redis’s own clock, as Redis runs it: later than now, and at most 1.5 s later (the node’s wall clock plays no part)', async (t) => {
    const redis = await startRedis(t)
    const a = await node(t, redis)
    // MONITOR shows each command as Redis runs it, stamped with Redis's own time.
    const monitor = await RawClient.open(redis.port)
    t.teardown(() => monitor.close())
    monitor.write('MONITOR\r\n')
    await monitor.waitFor('+OK\r\n', 5000)
    for (let i = 0; i < 3; i++) {
      const r = wholeAnswers(await rawRequest(a.port, publishRequest(`timed-${i}`, true), 10_000)).answers[0]
      t.equal(r?.status, 200, `timed-${i} published`)
    }
    await monitor.waitFor('timed-2', 5000)
    const runs = [...monitor.received.matchAll(/^\+(\d+\.\d+) \[[^\]]*\] "EVALSHA" .*timed-\d.*"([\d.]+)"\r$/gm)]
    t.equal(runs.length, 3, `the three appends as Redis ran them: ${JSON.stringify(runs.map((m) => m[0].slice(0, 80)))}`)
    for (const m of runs) {
      const left = Number(m[2]) - Number(m[1]) * 1000
      // (1 ms over 1500 allowed: NTP may slew the wall clock Redis reads against the monotonic one the node measures with.)
      t.ok(left > 0 && left <= 1501, `deadline − Redis’s time when it ran the append: ${left.toFixed(1)} ms, in (0, 1500]`)
    }
  })

  t.test('the library: publishEvent() on a cluster bus refuses before publishing (nothing reaches a stream), and leaves no promise unhandled, with Redis up or away', async (t) => {
    const redis = await startRedis(t)
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    t.teardown(() => void process.off('unhandledRejection', onUnhandled))
    const server = new SseServer({ port: 0, redis: redis.url, redisPrefix: 'lib', tokens: [SUB], publishTokens: [PUB], tickMs: 0, heartbeatMs: 0, publicDir: null })
    const { port } = await server.listen()
    t.teardown(() => server.stop())
    const c = await stream(t, port)

    t.throws(() => server.publishEvent({ data: 'not-published' }, {}), /publishAsync/, 'publishEvent throws: the answer comes later on a cluster bus')
    const marker = await server.publishAsync({ data: 'marker' }, {})
    await c.waitFor('data: marker\n', 5000)
    t.same(published(c), [`${marker.id} marker`], 'the stream got the marker published after it, and nothing before')

    await redis.stop()
    t.throws(() => server.publishEvent({ data: 'while-away' }, {}), /publishAsync/, 'publishEvent throws with Redis away too')
    const refused = await server.publishAsync({ data: 'refused' }, {}).then(
      () => 'published',
      (err: { status?: number; message?: string }) => `${err.status} ${err.message}`,
    )
    t.equal(refused, '503 bus unavailable', 'publishAsync: 503 bus unavailable')
    // Unhandled rejections are reported once the microtasks of a turn have run: one turn later, any would be.
    await new Promise((resolve) => setImmediate(resolve))
    t.same(unhandled, [], 'no unhandled rejection')
  })
}
