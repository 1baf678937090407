// `rawsse --redis URL` as real processes on a real redis-server (test/redis-server.ts): several
// processes on one Redis answering as one server (one order, one id sequence, one history,
// client= and DELETE /clients across processes, cluster-wide /stats), clients moving between
// processes and a kill -9 storm with exact replay, Redis stopped and restarted with its data,
// empty, or from an older snapshot, one process cut off from Redis or reading it late (a relay
// in this process), SIGTERM to one process, --redis-prefix, --workers with --redis, the missing
// package, and a Redis that comes late. Without redis-server (or the redis package) the cluster
// cases are skipped, and fail under CI=true.

import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { clientId, RawClient, requestAlone, sleep, type JsonAnswer } from './helpers.js'
import { SseServer } from '../src/index.js'
import { canRun } from './needs.js'
import { Child, CLI, ROOT, startCli, START_MS, until, type Cli, type Exit } from './process.js'
import { freePort, redisArray, redisCommand, redisMissing, redisProxy, startRedis, type Redis } from './redis-server.js'

const SUB = 'sub-token'
const PUB = 'pub-token'
const FILE = 'test/redis.test.ts'
/** The contract lets shared counts be 2 s old: polls for them get this long. */
const COUNTS_MS = 5000
const LISTENING = /^rawsse listening on http:\/\/127\.0\.0\.1:(\d+)\n/

// ------------------------------------------------------------------ processes and requests

/** One rawsse process of the cluster on `redis`: quiet (no tick, heartbeat or log) unless `extra` says otherwise (the last value of a flag wins). */
function node(t: Test, redis: { url: string }, extra: readonly string[] = []): Promise<Cli> {
  return startCli(t, ['--port', '0', '--redis', redis.url, '--token', SUB, '--publish-token', PUB, '--tick', '0', '--heartbeat', '0', '--log', 'off', ...extra])
}

type Answer = JsonAnswer

/** One request on a connection of its own (Connection: close), so that with --workers the primary hands each to the next worker. */
async function request(port: number, method: string, target: string, body = '', token = PUB): Promise<Answer> {
  return requestAlone(port, method, target, body, token)
}

const publish = (port: number, query: string, data: string): Promise<Answer> => request(port, 'POST', `/publish${query === '' ? '' : '?' + query}`, data)

/** A publish that a network error turned into no answer at all: status 0 and the error, for failure messages. */
const publishOrError = (port: number, query: string, data: string): Promise<Answer> =>
  publish(port, query, data).catch((err: unknown) => ({ status: 0, headers: {}, json: null, body: String(err) }))

/** Publishes until it is accepted (a node may still be reconnecting to Redis: 503); fails after `ms`. */
async function publishAccepted(port: number, query: string, data: string, ms = 10_000): Promise<Answer> {
  let last: Answer | null = null
  return until(
    async () => {
      last = await publishOrError(port, query, data)
      if (last.status === 503) await sleep(50)
      return last.status === 503 ? null : last
    },
    () => `publish ${data} on :${port} to be accepted; last answer ${JSON.stringify(last)}`,
    ms,
  )
}

async function stats(port: number): Promise<Record<string, unknown>> {
  const r = await request(port, 'GET', '/stats')
  if (r.status !== 200 || r.json === null) throw new Error(`GET /stats on :${port}: ${r.status} ${r.body}`)
  return r.json
}

interface NodeEntry {
  node: string
  clients: number
  rssBytes: number
  bus: string
}

const nodesOf = (s: Record<string, unknown>): NodeEntry[] => (s.nodes ?? []) as NodeEntry[]

/** Polls /stats of every process until `ok` holds for each (shared counts are up to 2 s old). */
async function statsSettle(ports: readonly number[], ok: (s: Record<string, unknown>) => boolean, what: string): Promise<void> {
  let seen: unknown[] = []
  await until(
    async () => {
      seen = await Promise.all(ports.map((p) => stats(p).catch((e: unknown) => String(e))))
      return seen.every((s) => typeof s === 'object' && ok(s as Record<string, unknown>))
    },
    () => `${what}; /stats: ${JSON.stringify(seen)}`,
    COUNTS_MS,
  )
}

/** Every process's /stats counts `n` streams in the cluster. */
const clientsSettle = (nodes: readonly Cli[], n: number): Promise<void> =>
  statsSettle(
    nodes.map((x) => x.port),
    (s) => s.clients === n,
    `/stats clients = ${n} on every process`,
  )

// ------------------------------------------------------------------ streams

/** A raw stream (GET /events/TOKEN QUERY) that has had its `ready` event; closed at the test's end when `t` is given. */
async function stream(t: Test | null, port: number, query = '', headers: Record<string, string> = {}, token = SUB, ms = 10_000): Promise<RawClient> {
  const c = await RawClient.open(port)
  t?.teardown(() => c.close())
  let head = `GET /events/${token}${query} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
  c.write(head + '\r\n')
  await c.waitFor('event: ready\n', ms)
  return c
}

interface Ev {
  id: string | undefined
  event: string
  data: string
}

/** Every event a stream received, in order (ready and reset included; comments and heartbeats are not events). */
function eventsOf(c: RawClient): Ev[] {
  const out: Ev[] = []
  for (const m of c.received.matchAll(/(?:^|\n)(?:id: ([^\n]*)\n)?(?:event: ([^\n]*)\n)?data: ([^\n]*)\n\n/g)) {
    out.push({ id: m[1], event: m[2] ?? 'message', data: m[3]! })
  }
  return out
}

/** The published events a stream received (those with an id), as `ID DATA`, in order. */
const published = (c: RawClient): string[] => eventsOf(c).flatMap((e) => (e.id === undefined ? [] : [`${e.id} ${e.data}`]))
const datas = (c: RawClient): string[] => eventsOf(c).flatMap((e) => (e.id === undefined ? [] : [e.data]))
const idOf = (key: string): number => Number(key.slice(0, key.indexOf(' ')))
const RESET = 'event: reset\ndata: {"reason":"history-gap"}\n\n'
const resets = (c: RawClient): number => c.received.split(RESET).length - 1
/** Heartbeat comments (`:\n\n`, each its own chunk). */
const heartbeats = (c: RawClient): number => c.received.split('\r\n:\n\n\r\n').length - 1

const increasing = (xs: readonly number[]): boolean => xs.every((x, i) => i === 0 || x > xs[i - 1]!)

/** Waits for `text` on each stream in turn (each wait is event-driven; one deadline for all). */
async function eachReceives(streams: readonly RawClient[], text: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  for (const c of streams) await c.waitFor(text, Math.max(1, deadline - Date.now()))
}

async function eachClosed(streams: readonly RawClient[], ms: number): Promise<void> {
  const deadline = Date.now() + ms
  for (const c of streams) await c.waitClosed(Math.max(1, deadline - Date.now()))
}

/** `n` streams on `port`, opened `batch` at a time (a few hundred connects at once stay within the listen backlog). */
async function openMany(port: number, n: number, batch: number): Promise<RawClient[]> {
  const out: RawClient[] = []
  while (out.length < n) {
    const k = Math.min(batch, n - out.length)
    out.push(...(await Promise.all(Array.from({ length: k }, () => stream(null, port, '', {}, SUB, 30_000)))))
  }
  return out
}

// ------------------------------------------------------------------ publishers

interface Publisher {
  /** The events answered 200, as `ID DATA`, in the order of their answers. */
  acked: string[]
  /** Answers other than 200 (or network errors), as text. */
  failures: string[]
  stop(): Promise<void>
}

/** Publishes `PREFIX1`, `PREFIX2`, … on the given processes in turn, one at a time, `gapMs` apart, until stopped. */
function startPublisher(nodes: readonly Cli[], prefix: string, gapMs: number): Publisher {
  const p: Publisher = { acked: [], failures: [], stop: async () => {} }
  let running = true
  const loop = (async () => {
    for (let n = 1; running; n++) {
      const at = nodes[n % nodes.length]!
      const data = `${prefix}${n}`
      const a = await publishOrError(at.port, '', data)
      if (a.status === 200) p.acked.push(`${String(a.json?.id)} ${data}`)
      else p.failures.push(`${data} on :${at.port}: ${a.status} ${a.body}`)
      await sleep(gapMs)
    }
  })()
  p.stop = async () => {
    running = false
    await loop
  }
  return p
}

interface RetryingPublisher extends Publisher {
  /** The 503 answers, kept whole to check their headers and body. */
  refusals: Answer[]
}

/** Like startPublisher on one process, but a 503 is retried with the same data (as a client honouring Retry-After would, only sooner). */
function retryingPublisher(at: Cli, prefix: string, gapMs: number): RetryingPublisher {
  const p: RetryingPublisher = { acked: [], failures: [], refusals: [], stop: async () => {} }
  let running = true
  const loop = (async () => {
    for (let n = 1; running; ) {
      const data = `${prefix}${n}`
      const a = await publishOrError(at.port, '', data)
      if (a.status === 200) {
        p.acked.push(`${String(a.json?.id)} ${data}`)
        n++
      } else if (a.status === 503) {
        p.refusals.push(a)
        await sleep(100)
      } else {
        p.failures.push(`${data}: ${a.status} ${a.body}`)
      }
      await sleep(gapMs)
    }
  })()
  p.stop = async () => {
    running = false
    await loop
  }
  return p
}

/**
 * A publisher in a process of its own, so that it goes on at its pace while this process is busy
 * opening thousands of connections: `PREFIX1`, `PREFIX2`, … on `ports` in turn, `gapMs` apart,
 * one line per answer on its stdout (`ok ID DATA` or `fail DATA STATUS BODY`); it stops when its
 * stdin ends.
 */
const PUBLISHER_SCRIPT = `
import * as http from 'node:http'
const [ports, prefix, gap, token] = [process.argv[1].split(',').map(Number), process.argv[2], Number(process.argv[3]), process.argv[4]]
let running = true
process.stdin.on('end', () => (running = false)).resume()
const post = (port, data) => new Promise((resolve) => {
  const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/publish', agent: false,
    headers: { authorization: 'Bearer ' + token, 'content-type': 'text/plain', 'content-length': Buffer.byteLength(data), connection: 'close' } }, (res) => {
    let body = ''
    res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => resolve([res.statusCode, body]))
  })
  req.on('error', (err) => resolve([0, String(err)]))
  req.end(data)
})
for (let n = 1; running; n++) {
  const data = prefix + n
  const [status, body] = await post(ports[n % ports.length], data)
  process.stdout.write(status === 200 ? 'ok ' + JSON.parse(body).id + ' ' + data + '\\n' : 'fail ' + data + ' ' + status + ' ' + body + '\\n')
  await new Promise((r) => setTimeout(r, gap))
}
process.stdout.write('done\\n')
`

interface ProcessPublisher {
  /** The events answered 200 so far, as `ID DATA`, in the order of their answers. */
  acked(): string[]
  failures(): string[]
  stop(): Promise<void>
}

function publisherProcess(t: Test, nodes: readonly Cli[], prefix: string, gapMs: number): ProcessPublisher {
  const args = ['--input-type=module', '-e', PUBLISHER_SCRIPT, nodes.map((x) => x.port).join(','), prefix, String(gapMs), PUB]
  const child = new Child(t, process.execPath, args, { stdin: 'pipe' })
  const lines = (kind: string): string[] => child.stdout.split('\n').flatMap((l) => (l.startsWith(kind + ' ') ? [l.slice(kind.length + 1)] : []))
  return {
    acked: () => lines('ok'),
    failures: () => [...lines('fail'), ...(child.exit !== null && !child.stdout.endsWith('done\n') ? [`the publisher exited ${JSON.stringify(child.exit)}: ${child.stderr}`] : [])],
    stop: async () => {
      child.proc.stdin!.end()
      await child.waitExit(15_000)
    },
  }
}

// ------------------------------------------------------------------ the missing package (no redis-server needed)

/** `node FILE ARGS` in `cwd`, without NODE_PATH; resolves with its exit and output (killed by PID after `ms`). */
function runIn(t: Test, cwd: string, file: string, args: readonly string[], ms: number): Promise<{ exit: Exit; stdout: string; stderr: string }> {
  const env = { ...process.env }
  delete env.NODE_PATH
  const p = spawn(process.execPath, [file, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const timer = setTimeout(() => p.kill('SIGKILL'), ms)
  t.teardown(() => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
  })
  return new Promise((resolve) => {
    p.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ exit: { code, signal }, stdout, stderr })
    })
  })
}

t.test('--redis without the redis package: exit 2, one line on stderr saying npm install redis', async (t) => {
  // A copy of the package with no node_modules anywhere above it (os.tmpdir() has none).
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-noredis-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(path.join(ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true })
  cpSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'))
  const r = await runIn(t, dir, path.join(dir, 'dist', 'cli.js'), ['--port', '0', '--redis', 'redis://127.0.0.1:1'], START_MS)
  t.same(r.exit, { code: 2, signal: null }, `exit 2 (stderr: ${JSON.stringify(r.stderr)})`)
  const lines = r.stderr.split('\n').filter((l) => l !== '')
  t.equal(lines.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`)
  t.match(lines[0] ?? '', /npm install redis/, 'it says how to install the package')
  t.equal(r.stdout, '', 'no start-up lines')
})

// ------------------------------------------------------------------ the cluster cases

if (canRun(t, FILE, 'the Redis tests', redisMissing())) {
  t.test('the harness: redis-server answers PING; a persisting one keeps its data over a restart, a plain one does not', async (t) => {
    const plain = await startRedis(t)
    const kept = await startRedis(t, { persist: true })
    t.not(plain.port, kept.port, 'two ports')
    for (const r of [plain, kept]) t.equal(await redisCommand(r.port, ['SET', 'k', 'v']), '+OK\r\n')
    const pid = kept.pid
    await kept.restart()
    await plain.restart()
    t.not(kept.pid, pid, 'a new process')
    t.equal(await redisCommand(kept.port, ['GET', 'k']), '$1\r\nv\r\n', 'persisted: the key is back')
    t.equal(await redisCommand(plain.port, ['GET', 'k']), '$-1\r\n', 'not persisted: empty')
    await plain.stop()
    await t.rejects(redisCommand(plain.port, ['PING']), 'stopped: nothing answers')
  })

  for (const n of [2, 3]) {
    t.test(`${n} processes on one Redis: every stream on every process gets every event, published on each in turn and concurrently, with the same ids in the same order`, async (t) => {
      const redis = await startRedis(t)
      const nodes = await Promise.all(Array.from({ length: n }, () => node(t, redis)))
      const streams: RawClient[] = []
      for (const x of nodes) for (let k = 0; k < 2; k++) streams.push(await stream(t, x.port))
      t.equal(new Set(streams.map(clientId)).size, streams.length, `client ids unique in the cluster (${streams.map(clientId).join(', ')})`)
      await clientsSettle(nodes, streams.length)

      const sent: string[] = []
      const answers: Answer[] = []
      for (let round = 0; round < 3; round++) {
        for (const [i, x] of nodes.entries()) {
          sent.push(`turn-${round}-${i}`)
          answers.push(await publish(x.port, '', sent.at(-1)!))
        }
      }
      for (let round = 0; round < 3; round++) {
        const batch = nodes.flatMap((x, i) => [0, 1].map((k) => ({ port: x.port, data: `conc-${round}-${i}-${k}` })))
        sent.push(...batch.map((b) => b.data))
        answers.push(...(await Promise.all(batch.map((b) => publish(b.port, '', b.data)))))
      }
      t.same(
        answers.flatMap((a, i) => (a.status === 200 && a.json?.delivered === streams.length && /^\d+$/.test(String(a.json.id)) ? [] : [`${sent[i]}: ${a.status} ${a.body}`])),
        [],
        `every publish: 200, an integer id, delivered = ${streams.length} (every stream of the cluster)`,
      )
      await until(
        () => streams.every((c) => published(c).length >= sent.length),
        () => `${sent.length} events on every stream; counts: ${streams.map((c) => published(c).length).join(', ')}`,
        10_000,
      )
      const first = published(streams[0]!)
      for (const [i, c] of streams.entries()) t.same(published(c), first, `stream ${clientId(c)} on process ${Math.floor(i / 2) + 1}: the same events, ids and order`)
      t.ok(increasing(first.map(idOf)), `ids increase in delivery order (${first.map(idOf).join(', ')})`)
      t.same(
        [...first].sort(),
        answers.map((a, i) => `${String(a.json?.id)} ${sent[i]}`).sort(),
        'each event once, with the id its publisher was given',
      )
      const turns = first.map((k) => k.slice(k.indexOf(' ') + 1)).filter((d) => d.startsWith('turn-'))
      t.same(turns, sent.filter((d) => d.startsWith('turn-')), 'events published one after the other arrive in that order')

      // The answer comes once this process has the event: its id is placeable here at once.
      const last = await publish(nodes[1]!.port, '', 'placeable')
      const resumed = await stream(t, nodes[1]!.port, '', { 'Last-Event-ID': String(last.json?.id) })
      t.equal((await publish(nodes[0]!.port, '', 'after-placeable')).status, 200)
      await resumed.waitFor('data: after-placeable\n', 5000)
      t.equal(resets(resumed), 0, 'no reset for the id just answered')
      t.same(datas(resumed), ['after-placeable'], 'exactly the one event after it')
    })
  }

  t.test('a client moving between processes with Last-Event-ID while events are published: no gap, no duplicate', async (t) => {
    const redis = await startRedis(t)
    const [a, b] = await Promise.all([node(t, redis), node(t, redis)])
    const witnesses = [await stream(t, a!.port), await stream(t, b!.port)]
    const pub = startPublisher([a!, b!], 'p', 5)
    const got: string[] = []
    let last: string | null = null
    for (let hop = 0; hop < 8; hop++) {
      const at = hop % 2 === 0 ? a! : b!
      const c = await stream(t, at.port, '', last === null ? {} : { 'Last-Event-ID': last })
      await until(() => published(c).length >= 3, () => `hop ${hop}: three events; received ${JSON.stringify(c.received)}`, 5000)
      c.close()
      t.equal(resets(c), 0, `hop ${hop} to :${at.port} with Last-Event-ID ${last}: no reset`)
      const e = published(c)
      got.push(...e)
      last = String(idOf(e.at(-1)!))
    }
    await pub.stop()
    t.same(pub.failures, [], 'every publish answered 200')
    const final = pub.acked.at(-1)!
    await eachReceives(witnesses, `id: ${idOf(final)}\n`, 5000)
    const w = published(witnesses[0]!)
    t.same(published(witnesses[1]!), w, 'the two processes’ witnesses saw the same sequence')
    const start = w.indexOf(got[0]!)
    t.ok(start >= 0, `the moving client’s first event ${got[0]} is in the witness’s sequence`)
    t.same(got, w.slice(start, start + got.length), `${got.length} events over 8 connections on alternate processes: exactly the witness’s events in that stretch`)
  })

  t.test('kill -9 of a process holding 5 000 streams: all reconnect at once to the other two with Last-Event-ID while events are published, each gets exactly what it missed', async (t) => {
    const N = 5000
    const redis = await startRedis(t)
    const flags = ['--history', '100000']
    const [victim, b, c] = await Promise.all([node(t, redis, flags), node(t, redis, flags), node(t, redis, flags)])
    const witnesses = [await stream(t, b!.port), await stream(t, c!.port)]
    const all: RawClient[] = []
    t.teardown(() => all.forEach((x) => x.close()))
    const started = Date.now()
    const first = await openMany(victim!.port, N, 500)
    all.push(...first)
    t.comment(`${N} streams open on the victim in ${Date.now() - started} ms`)
    t.equal((await publish(b!.port, '', 'before')).status, 200)
    await eachReceives(first, 'data: before\n', 20_000)

    // Events keep coming through the survivors, before, during and after the storm.
    const pub = publisherProcess(t, [b!, c!], 'p', 20)
    await until(() => pub.acked().length >= 5, () => 'five events published', 5000)
    victim!.child.kill('SIGKILL')
    const killed = Date.now()
    await victim!.child.waitExit(5000)
    await eachClosed(first, 10_000)
    // Every stream misses some events before it comes back.
    const cut = pub.acked().length
    await until(() => pub.acked().length >= cut + 3, () => 'three events published while the streams are away', 5000)
    const storm = Date.now()
    const stormFrom = pub.acked().length
    const again = await Promise.all(first.map((old, i) => stream(null, (i % 2 === 0 ? b! : c!).port, '', { 'Last-Event-ID': String(idOf(published(old).at(-1)!)) }, SUB, 30_000)))
    all.push(...again)
    t.comment(`${N} streams back with Last-Event-ID in ${Date.now() - storm} ms, ${pub.acked().length - stormFrom} events published meanwhile`)
    const mark = pub.acked().length
    await until(() => pub.acked().length >= mark + 5, () => 'five more events published', 5000)
    await pub.stop()
    t.same(pub.failures(), [], 'every publish through the survivors answered 200')
    t.equal((await publish(c!.port, '', 'end')).status, 200)
    await eachReceives([...witnesses, ...again], 'data: end\n', 30_000)
    const w = published(witnesses[0]!)
    t.same(published(witnesses[1]!), w, 'the survivors’ witnesses saw the same sequence')
    const inW = new Set(w)
    t.same(pub.acked().filter((k) => !inW.has(k)), [], 'every acknowledged event is in it')
    t.ok(increasing(w.map(idOf)) && w.length === new Set(w).size, `${w.length} events, ids increasing, none twice`)
    let exact = 0
    const wrong: string[] = []
    const W = JSON.stringify(w.slice(w.indexOf(published(first[0]!)[0]!)))
    for (let i = 0; i < N; i++) {
      const seq = [...published(first[i]!), ...published(again[i]!)]
      if (resets(again[i]!) === 0 && JSON.stringify(seq) === W) exact++
      else if (wrong.length < 3) {
        const before = published(first[i]!)
        wrong.push(`stream ${i}: ${before.length} events before the kill (last ${before.at(-1)}), resets after: ${resets(again[i]!)}, after: ${JSON.stringify(published(again[i]!).slice(0, 6))}…`)
      }
    }
    t.equal(exact, N, `all ${N} got 'before', what they missed and the live events, each once, in order${wrong.length === 0 ? '' : '; e.g. ' + wrong.join(' | ') + ` (the witness from 'before': ${W.slice(0, 300)}…)`}`)
    // The killed process's streams count no more: it cannot say goodbye, its shared counts age out.
    await statsSettle([b!.port, c!.port], (s) => s.clients === N + 2 && nodesOf(s).length === 2, `/stats: the killed process gone, ${N + 2} clients`)
    t.pass(`the killed process left /stats (${Date.now() - killed} ms after the kill)`)
  })

  t.test('Redis stopped for 5 s: 503 bus unavailable with Retry-After, streams stay open with heartbeats; after its restart every acknowledged event arrives once, in order, everywhere', async (t) => {
    const redis = await startRedis(t, { persist: true })
    const flags = ['--heartbeat', '300']
    const [a, b] = await Promise.all([node(t, redis, flags), node(t, redis, flags)])
    const streams = [await stream(t, a!.port), await stream(t, a!.port), await stream(t, b!.port), await stream(t, b!.port)]
    const pubs = [retryingPublisher(a!, 'a', 20), retryingPublisher(b!, 'b', 20)]
    await until(() => pubs.every((p) => p.acked.length >= 5), () => 'five events acknowledged through each process', 5000)

    await redis.stop()
    const down = Date.now()
    const beats = streams.map(heartbeats)
    await until(() => pubs.every((p) => p.refusals.length > 0), () => 'a 503 from each process', 5000)
    const opened = await stream(t, b!.port, '', {}, SUB, 5000)
    t.pass('a new stream opens while Redis is down')
    // The outage itself: Redis stays down 5 s whatever the processes do.
    await sleep(Math.max(0, 5000 - (Date.now() - down)))
    t.same(
      streams.map((c) => c.closed),
      [false, false, false, false],
      'every stream still open',
    )
    t.ok(
      streams.every((c, i) => heartbeats(c) >= beats[i]! + 3),
      `heartbeats went on (${streams.map((c, i) => heartbeats(c) - beats[i]!).join(', ')} in 5 s at one per 300 ms)`,
    )
    const refusals = pubs.flatMap((p) => p.refusals)
    t.same(
      refusals.flatMap((r) => (/^\d+$/.test(r.headers['retry-after'] ?? '') && JSON.stringify(r.json) === '{"error":"bus unavailable"}' ? [] : [`${r.headers['retry-after']} ${r.body}`])),
      [],
      `all ${refusals.length} refusals: 503, Retry-After in seconds, {"error":"bus unavailable"}`,
    )
    const ackedDown = pubs.map((p) => p.acked.length)

    await redis.restart()
    await until(() => pubs.every((p, i) => p.acked.length >= ackedDown[i]! + 5), () => 'five more acknowledged through each process after the restart', 15_000)
    await Promise.all(pubs.map((p) => p.stop()))
    t.same(
      pubs.flatMap((p) => p.failures),
      [],
      'no answer other than 200 and 503',
    )
    const acked = pubs.flatMap((p) => p.acked)
    const want = new Set(acked)
    const missing = (c: RawClient): string[] => {
      const have = new Set(published(c))
      return acked.filter((k) => !have.has(k))
    }
    await until(
      () => streams.every((c) => missing(c).length === 0),
      () => `every acknowledged event on every stream; missing: ${streams.map((c) => missing(c).slice(0, 5).join(',')).join(' | ')}`,
      10_000,
    )
    const ref = published(streams[0]!)
    for (const [i, c] of streams.entries()) {
      const seq = published(c)
      t.equal(resets(c), 0, `stream ${i}: no reset (Redis kept everything)`)
      t.ok(increasing(seq.map(idOf)), `stream ${i}: ${seq.length} events, ids increasing, none twice`)
      t.same(seq, ref, `stream ${i}: the same sequence as stream 0`)
    }
    t.comment(`${acked.length} acknowledged, ${ref.length} delivered (${ref.filter((k) => !want.has(k)).length} answered 503 yet kept by Redis), ${refusals.length} refusals`)
    // The stream opened during the outage: from some point of the sequence on, everything.
    const late = published(opened)
    const from = ref.indexOf(late[0]!)
    t.ok(late.length > 0 && from >= 0, 'the stream opened during the outage got events after it')
    t.same(late, ref.slice(from), 'and the sequence from there on, nothing missing or twice')
    t.equal(resets(opened), 0, 'no reset there either')
  })

  t.test('one process cut off from Redis while another publishes: 503 there, its streams stay open, and once back it delivers what it missed, in order', async (t) => {
    const redis = await startRedis(t)
    const proxy = await redisProxy(t, redis.port)
    const [a, b] = await Promise.all([node(t, redis), node(t, proxy, ['--heartbeat', '300'])])
    const onA = await stream(t, a!.port)
    const onB = [await stream(t, b!.port), await stream(t, b!.port)]
    const e1 = await publish(a!.port, '', 'e1')
    await eachReceives([onA, ...onB], 'data: e1\n', 5000)

    proxy.cut()
    let refused: Answer | null = null
    await until(
      async () => (refused = await publishOrError(b!.port, '', 'refused')).status === 503,
      () => `a 503 from the process cut off; last answer ${JSON.stringify(refused)}`,
      COUNTS_MS,
    )
    t.same([refused!.json, /^\d+$/.test(refused!.headers['retry-after'] ?? '')], [{ error: 'bus unavailable' }, true], '503 {"error":"bus unavailable"} with Retry-After')
    await statsSettle([b!.port], (s) => nodesOf(s).some((x) => x.bus === 'down'), 'the cut-off process’s /stats says its bus is down')
    t.pass('its /stats says bus down')
    // A stream opening there meanwhile, resuming after e1.
    const resumed = await stream(t, b!.port, '', { 'Last-Event-ID': String(e1.json?.id) })
    const missed: string[] = []
    for (let i = 1; i <= 10; i++) {
      const r = await publish(a!.port, '', `m${i}`)
      t.equal(r.status, 200, `m${i} accepted by the process still on Redis`)
      missed.push(`${String(r.json?.id)} m${i}`)
    }
    const beats = onB.map(heartbeats)
    await sleep(1000) // the outage goes on a while
    t.ok(onB.every((c, i) => !c.closed && heartbeats(c) > beats[i]!), 'the cut-off process’s streams stay open, heartbeats going on')
    t.same(onB.map(datas), [['e1'], ['e1']], 'and got nothing it could not have')

    proxy.restore()
    const back = await publishAccepted(b!.port, '', 'back', 15_000)
    t.equal(back.status, 200, 'the process publishes again once reconnected')
    await eachReceives([onA, ...onB, resumed], 'data: back\n', 10_000)
    const expected = [`${String(e1.json?.id)} e1`, ...missed, `${String(back.json?.id)} back`]
    t.same(published(onA), expected, 'the stream on the process that kept Redis: e1, m1..m10, back')
    for (const c of onB) {
      t.same(published(c), expected, 'a stream on the cut-off process: the same, nothing lost or twice, in order')
      t.equal(resets(c), 0)
    }
    t.same(published(resumed), expected.slice(1), 'the stream opened during the outage after e1: m1..m10, back')
    t.equal(resets(resumed), 0)
  })

  t.test('Redis restarted from an older snapshot, one process cut off meanwhile: every stream gets reset once, then exactly what Redis holds, no event twice, ids still increasing', async (t) => {
    // Redis's default persistence: a snapshot now and then, so a crash loses the last events.
    const redis = await startRedis(t)
    const proxy = await redisProxy(t, redis.port)
    const [a, b] = await Promise.all([node(t, redis), node(t, proxy)])
    const streams = [await stream(t, a!.port), await stream(t, b!.port)]
    const old: number[] = []
    for (let i = 1; i <= 6; i++) {
      if (i === 4) t.equal(await redisCommand(redis.port, ['SAVE']), '+OK\r\n', 'a snapshot holding e1..e3')
      const r = await publish((i % 2 === 0 ? b! : a!).port, '', `e${i}`)
      t.equal(r.status, 200)
      old.push(Number(r.json?.id))
    }
    await eachReceives(streams, 'data: e6\n', 5000)

    proxy.cut() // b is away while Redis crashes and comes back from the snapshot
    await redis.kill()
    await redis.restart()
    const fresh: number[] = []
    for (let i = 1; i <= 5; i++) fresh.push(Number((await publishAccepted(a!.port, '', `n${i}`)).json?.id))
    proxy.restore()
    fresh.push(Number((await publishAccepted(b!.port, '', 'end', 15_000)).json?.id))
    t.ok(
      fresh.every((id) => id > Math.max(...old)),
      `ids after the crash (${fresh.join(', ')}) > every id before (${old.join(', ')})`,
    )
    await eachReceives(streams, 'data: end\n', 10_000)
    const expected = ['ready', 'e1', 'e2', 'e3', 'e4', 'e5', 'e6', 'reset', 'n1', 'n2', 'n3', 'n4', 'n5', 'end']
    for (const [i, c] of streams.entries()) {
      const got = eventsOf(c).map((e) => (e.event === 'message' ? e.data : e.event))
      t.same(got, expected, `stream on ${i === 0 ? 'the process that stayed' : 'the process cut off'}: e1..e6, one reset, then the events Redis holds after the crash, each once`)
      const ids = published(c).map(idOf)
      t.same(ids.filter((id, k) => ids.indexOf(id) !== k), [], 'no id twice')
    }
  })

  t.test('a client resuming on a process that reads Redis late (150 ms each way) with an id that process has not read yet: no reset, no duplicate', async (t) => {
    const redis = await startRedis(t)
    const slow = await redisProxy(t, redis.port, { delayMs: 150 })
    const [a, b] = await Promise.all([node(t, redis), node(t, slow)])
    const onA = await stream(t, a!.port)
    const wrong: string[] = []
    for (let i = 0; i < 5; i++) {
      // Seen on a, then at once to b with its id: b reads it some 150 ms later.
      const x = await publish(a!.port, '', `x${i}`)
      await onA.waitFor(`data: x${i}\n`, 5000)
      const c = await stream(null, b!.port, '', { 'Last-Event-ID': String(x.json?.id) })
      t.teardown(() => c.close())
      t.equal((await publish(a!.port, '', `y${i}`)).status, 200)
      await c.waitFor(`data: y${i}\n`, 5000)
      c.close()
      const got = eventsOf(c).map((e) => (e.event === 'message' ? e.data : e.event))
      if (JSON.stringify(got) !== JSON.stringify(['ready', `y${i}`])) wrong.push(`after x${i}: ${got.join(', ')}`)
    }
    t.same(wrong, [], 'each resumed stream: ready, then only the event after its id')
  })

  t.test('a stream that waited for its process to catch up (an id it cannot place) still notices its client leaving', async (t) => {
    const redis = await startRedis(t)
    const slow = await redisProxy(t, redis.port, { delayMs: 150 })
    const b = await node(t, slow)
    // An id no process gave: b first makes sure it has read what Redis holds (a round trip through
    // the slow relay), then says reset. Meanwhile the connection was not read; it must be again.
    const c = await stream(null, b.port, '', { 'Last-Event-ID': 'never-given' })
    t.equal(resets(c), 1, 'reset: the id cannot be placed')
    const own = async (): Promise<number> => nodesOf(await stats(b.port))[0]?.clients ?? -1
    t.equal(await own(), 1, 'the stream is counted')
    c.close()
    await until(async () => ((await own()) === 0 ? true : null), () => 'the closed stream to leave the count', COUNTS_MS)
    t.pass('its FIN was seen: the stream is gone')
  })

  t.test('SIGTERM to one process: its streams end with 0\\r\\n\\r\\n, it exits 0 within 5 s, and the others stop counting it', async (t) => {
    const redis = await startRedis(t)
    const [a, b] = await Promise.all([node(t, redis), node(t, redis)])
    const onA = await stream(t, a!.port)
    await stream(t, b!.port)
    await clientsSettle([a!, b!], 2)
    const stopped = Date.now()
    a!.child.kill('SIGTERM')
    t.same(await a!.child.waitExit(6000), { code: 0, signal: null }, 'exit 0')
    t.ok(Date.now() - stopped < 5000, `within 5 s (${Date.now() - stopped} ms)`)
    await onA.waitClosed(2000)
    t.ok(onA.received.endsWith('0\r\n\r\n'), 'its stream got the last chunk')
    // Counts shared at most 2 s ago: the others stop counting it (polled for COUNTS_MS, like every shared count).
    let seen: unknown = null
    await until(
      async () => {
        const s = await stats(b!.port)
        seen = s
        return s.clients === 1 && nodesOf(s).length === 1
      },
      () => `the stopped process gone from the other’s /stats; last: ${JSON.stringify(seen)}`,
      COUNTS_MS,
    )
    t.pass(`gone from the other’s /stats ${Date.now() - stopped} ms after SIGTERM`)
  })

  t.test('Redis restarted empty: every open stream gets reset, and ids published afterwards are larger than every earlier one', async (t) => {
    const redis = await startRedis(t)
    const [a, b] = await Promise.all([node(t, redis), node(t, redis)])
    const streams = [await stream(t, a!.port), await stream(t, b!.port)]
    const before: number[] = []
    for (const [i, x] of [a!, b!, a!].entries()) {
      const r = await publish(x.port, '', `before-${i}`)
      t.equal(r.status, 200)
      before.push(Number(r.json?.id))
    }
    await eachReceives(streams, 'data: before-2\n', 5000)

    await redis.restart() // not persisted: it comes back empty
    const after = [await publishAccepted(a!.port, '', 'after-a'), await publishAccepted(b!.port, '', 'after-b')]
    t.same(after.map((r) => r.status), [200, 200], 'publishing works again on both')
    const newIds = after.map((r) => Number(r.json?.id))
    t.ok(
      newIds.every((id) => id > Math.max(...before)),
      `ids after (${newIds.join(', ')}) > every id before (${before.join(', ')})`,
    )
    t.ok(newIds[1]! > newIds[0]!, 'and still increasing')
    await eachReceives(streams, 'data: after-b\n', 10_000)
    for (const [i, c] of streams.entries()) {
      const names = eventsOf(c).map((e) => (e.event === 'message' ? e.data : e.event))
      t.equal(resets(c), 1, `stream ${i}: one reset with {"reason":"history-gap"}`)
      t.same(names.slice(names.indexOf('reset')), ['reset', 'after-a', 'after-b'], `stream ${i}: reset, then the events published after the restart (got ${names.join(', ')})`)
      t.same(names.slice(0, 4), ['ready', 'before-0', 'before-1', 'before-2'], `stream ${i}: the earlier events once`)
    }
  })

  t.test('a process started after events were published replays with lastEventId=0 the same retained events, with the same ids, as one that saw them live', async (t) => {
    const redis = await startRedis(t)
    const flags = ['--history', '5']
    const [a, b] = await Promise.all([node(t, redis, flags), node(t, redis, flags)])
    const live = await stream(t, a!.port)
    const acked: string[] = []
    for (let i = 1; i <= 8; i++) {
      const r = await publish((i % 2 === 0 ? b! : a!).port, '', `h${i}`)
      t.equal(r.status, 200)
      acked.push(`${String(r.json?.id)} h${i}`)
    }
    // An event to one client is not kept: no replay shows it. (Sent from b once b knows of the stream.)
    await clientsSettle([a!, b!], 1)
    const priv = await publish(b!.port, `client=${clientId(live)}`, 'private')
    t.same([priv.status, priv.json?.delivered], [200, 1], 'client= of the stream on the other process')
    await live.waitFor('data: private\n', 5000)
    t.same(published(live).slice(0, 8), acked, 'the live stream got them with the ids the publishers were given')

    const late = await node(t, redis, flags)
    const replays = [await stream(t, a!.port, '?lastEventId=0'), await stream(t, late.port, '?lastEventId=0')]
    // A marker after them: what came before it is the whole replay.
    const m = await publish(late.port, '', 'marker')
    await eachReceives(replays, 'data: marker\n', 5000)
    const expected = [...acked.slice(-5), `${String(m.json?.id)} marker`]
    t.same(published(replays[0]!), expected, 'the process that saw them live: the last 5 (--history 5), then the marker')
    t.same(published(replays[1]!), expected, 'the late process: the same events with the same ids')

    // Last-Event-ID on the late process: inside its history a replay, before it a reset.
    const inside = await stream(t, late.port, '', { 'Last-Event-ID': String(idOf(acked[5]!)) })
    const gap = await stream(t, late.port, '', { 'Last-Event-ID': String(idOf(acked[1]!)) })
    t.equal((await publish(b!.port, '', 'next')).status, 200)
    await eachReceives([inside, gap], 'data: next\n', 5000)
    t.same(datas(inside), ['h7', 'h8', 'marker', 'next'], 'Last-Event-ID of h6: h7, h8, the marker, then live')
    t.equal(resets(inside), 0)
    t.same(eventsOf(gap).map((e) => e.event), ['ready', 'reset', 'message'], 'Last-Event-ID of h2 (trimmed away): ready, reset, then live')

    // The id of the event to one client is placed on every process, the late one too (it read
    // the event from Redis): a resume from it gets the kept events after it, no reset.
    const fromPrivate = [await stream(t, a!.port, '', { 'Last-Event-ID': String(priv.json?.id) }), await stream(t, b!.port, '', { 'Last-Event-ID': String(priv.json?.id) }), await stream(t, late.port, '', { 'Last-Event-ID': String(priv.json?.id) })]
    t.equal((await publish(a!.port, '', 'last')).status, 200)
    await eachReceives(fromPrivate, 'data: last\n', 5000)
    for (const [i, c] of fromPrivate.entries()) {
      t.equal(resets(c), 0, `process ${i + 1}: no reset`)
      t.same(datas(c), ['marker', 'next', 'last'], `process ${i + 1}: the kept events after the private one`)
    }
  })

  t.test('routing across processes: client= and DELETE /clients/ID reach the other process, user= connected nowhere is 404, /stats shows the cluster', async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-redis-users-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const users = path.join(dir, 'users.json')
    writeFileSync(users, JSON.stringify([{ token: 'bob-token', user: 'bob', roles: ['viewer'] }]))
    const redis = await startRedis(t)
    const [a, b] = await Promise.all([node(t, redis, ['--users', users]), node(t, redis, ['--users', users])])
    const onA = await stream(t, a!.port)
    const bob = await stream(t, b!.port, '', {}, 'bob-token')
    await clientsSettle([a!, b!], 2)

    const toB = await publish(a!.port, `client=${clientId(bob)}`, 'to-bob-stream')
    t.same([toB.status, toB.json?.delivered], [200, 1], 'client= of a stream on the other process: 200, delivered 1')
    const toA = await publish(b!.port, `client=${clientId(onA)}`, 'to-a-stream')
    t.same([toA.status, toA.json?.delivered], [200, 1], 'and the other way round')
    const toUser = await publish(a!.port, 'user=bob', 'to-bob')
    t.same([toUser.status, toUser.json?.delivered], [200, 1], 'user= of a user on the other process: 200, delivered 1')
    await bob.waitFor('data: to-bob\n', 5000)
    await onA.waitFor('data: to-a-stream\n', 5000)
    t.same(datas(bob), ['to-bob-stream', 'to-bob'], 'the targeted stream got its events')
    t.same(datas(onA), ['to-a-stream'], 'and only its own')
    for (const q of ['user=nobody', 'client=999999999']) {
      const r = await publish(a!.port, q, 'nowhere')
      t.same([r.status, r.json], [404, { delivered: 0, error: 'offline' }], `${q}: connected nowhere → 404 offline`)
    }

    const s = await stats(a!.port)
    t.equal(s.clients, 2, '/stats clients: the cluster’s total')
    t.same(s.channels, { default: 2 }, '/stats channels: the cluster’s totals')
    const nodes = nodesOf(s)
    t.equal(nodes.length, 2, `one nodes entry per process: ${JSON.stringify(nodes)}`)
    t.equal(new Set(nodes.map((x) => x.node)).size, 2, 'with different names')
    t.ok(
      nodes.every((x) => typeof x.node === 'string' && x.clients === 1 && x.bus === 'up' && Number.isInteger(x.rssBytes) && x.rssBytes > 0),
      'each: a name, 1 client, rssBytes, bus up',
    )

    const metrics = await request(a!.port, 'GET', '/metrics')
    for (const x of nodes) t.match(metrics.body, `rawsse_clients{node="${x.node}",channel="default"} 1\n`, `/metrics: the series of ${x.node} with its node label`)
    // Three events went out (the two 404s were not published), each to one stream.
    await statsSettle([a!.port, b!.port], (s) => s.published === 3 && s.deliveries === 3, '/stats published 3 and deliveries 3: the cluster’s totals')
    t.pass('/stats published and deliveries are the cluster’s totals')

    const del = await request(a!.port, 'DELETE', `/clients/${clientId(bob)}`)
    t.same([del.status, del.json], [200, { closed: 1 }], 'DELETE /clients/ID of a stream on the other process: closed 1')
    await bob.waitClosed(5000)
    t.ok(bob.received.endsWith('0\r\n\r\n'), 'that stream got the last chunk 0\\r\\n\\r\\n')
    const again = await request(a!.port, 'DELETE', `/clients/${clientId(bob)}`)
    t.same([again.status, again.json], [404, { closed: 0, error: 'unknown client' }], 'a second time: unknown client')
    let last: Answer | null = null
    await until(
      async () => (last = await publish(a!.port, 'user=bob', 'gone')).status === 404,
      () => `user=bob to be 404 once bob is gone; last answer ${JSON.stringify(last)}`,
      COUNTS_MS,
    )
    t.same(last!.json, { delivered: 0, error: 'offline' }, 'user=bob after the delete: 404 offline')

    const more = [await stream(t, b!.port), await stream(t, a!.port)]
    await clientsSettle([a!, b!], 3)
    const all = await request(b!.port, 'DELETE', '/clients')
    t.same([all.status, all.json], [200, { closed: 3 }], 'DELETE /clients: every stream of the cluster')
    for (const c of [onA, ...more]) {
      await c.waitClosed(5000)
      t.ok(c.received.endsWith('0\r\n\r\n'), `stream ${clientId(c)} got 0\\r\\n\\r\\n`)
    }
  })

  t.test('the library: two SseServers with the redis option are one cluster; publishAsync answers with the cluster id; publishEvent refuses; stop() leaves', async (t) => {
    const redis = await startRedis(t)
    const opts = { port: 0, redis: redis.url, redisPrefix: 'lib', tokens: [SUB], publishTokens: [PUB], tickMs: 0, heartbeatMs: 0, publicDir: null }
    const a = new SseServer(opts)
    const b = new SseServer(opts)
    const states: string[] = []
    b.on('bus', (state) => states.push(state))
    const [pa, pb] = await Promise.all([a.listen(), b.listen()])
    t.teardown(() => Promise.all([a.stop(), b.stop()]))
    const onB = await stream(t, pb.port)
    const accepted = await a.publishAsync({ data: 'from the library' }, {})
    await onB.waitFor('data: from the library\n', 5000)
    t.same(published(onB), [`${accepted.id} from the library`], 'the stream on the other server got it, with the id publishAsync answered')
    t.throws(() => a.publishEvent({ data: 'x' }, {}), /publishAsync/, 'publishEvent: the answer comes later on a cluster bus')
    t.throws(() => a.broadcast({ data: 'x' }, () => true), TypeError, 'a filter cannot cross processes')
    t.same(states, ['up'], 'one bus event: up, once it joined (none more while Redis answers)')
    await a.stop()
    await statsSettle([pb.port], (s) => nodesOf(s).length === 1, 'the stopped server leaves the cluster at once')
    t.ok(pa.port > 0 && pa.port !== pb.port, 'two listening servers')
  })

  t.test('--redis-prefix: clusters with different prefixes on one Redis do not see each other’s events; every key carries its prefix', async (t) => {
    const redis = await startRedis(t)
    const [a1, a2, beta, plain] = await Promise.all([
      node(t, redis, ['--redis-prefix', 'alpha']),
      node(t, redis, ['--redis-prefix', 'alpha']),
      node(t, redis, ['--redis-prefix', 'beta']),
      node(t, redis), // the default prefix, rawsse
    ])
    const alpha = [await stream(t, a1!.port), await stream(t, a2!.port)]
    const sBeta = await stream(t, beta!.port)
    const sPlain = await stream(t, plain!.port)
    // Each cluster's events, then a marker on each: anything leaking from another cluster came before it.
    for (const [x, d] of [[beta!, 'beta-1'], [plain!, 'plain-1'], [a1!, 'alpha-1'], [a2!, 'alpha-2'], [beta!, 'beta-2'], [plain!, 'plain-2'], [a1!, 'alpha-3']] as const) {
      t.equal((await publish(x.port, '', d)).status, 200, `${d} accepted`)
    }
    await eachReceives(alpha, 'data: alpha-3\n', 5000)
    await sBeta.waitFor('data: beta-2\n', 5000)
    await sPlain.waitFor('data: plain-2\n', 5000)
    for (const c of alpha) t.same(datas(c), ['alpha-1', 'alpha-2', 'alpha-3'], 'alpha (2 processes): only alpha’s events')
    t.same(datas(sBeta), ['beta-1', 'beta-2'], 'beta: only beta’s')
    t.same(datas(sPlain), ['plain-1', 'plain-2'], 'the default prefix: only its own')
    await statsSettle([a1!.port], (s) => nodesOf(s).length === 2, 'alpha’s /stats lists its 2 processes')
    await statsSettle([beta!.port, plain!.port], (s) => nodesOf(s).length === 1, 'beta’s and the default cluster’s /stats list 1 process each')
    t.pass('each cluster’s /stats lists its own processes only')

    const keys = redisArray(await redisCommand(redis.port, ['KEYS', '*']))!
    t.same(keys.filter((k) => !/^\{?(alpha|beta|rawsse)\b/.test(k)), [], `every key starts with its cluster's prefix: ${keys.join(', ')}`)
    for (const p of ['alpha', 'beta', 'rawsse']) t.ok(keys.some((k) => k.replace(/^\{/, '').startsWith(p)), `keys of ${p}`)
  })

  t.test('--workers 2 --redis with a plain process on the same Redis: events published through either reach every stream of both, in one order', async (t) => {
    const redis = await startRedis(t)
    const machine = await startCli(t, ['--port', '0', '--workers', '2', '--redis', redis.url, '--token', SUB, '--publish-token', PUB, '--tick', '0', '--heartbeat', '0', '--log', 'off'])
    const single = await node(t, redis)
    const streams: RawClient[] = []
    // Each on its own connection: the primary hands them to its two workers in turn.
    for (let i = 0; i < 4; i++) streams.push(await stream(t, machine.port))
    streams.push(await stream(t, single.port))
    await statsSettle(
      [machine.port, single.port],
      (s) => s.clients === 5 && nodesOf(s).length === 3 && nodesOf(s).every((x) => x.clients > 0 && x.bus === 'up'),
      '/stats: 3 nodes (2 workers, 1 plain process), each with streams, bus up, 5 clients',
    )
    t.pass('/stats lists both workers and the plain process, each holding streams')
    const sent: string[] = []
    const answers: Answer[] = []
    for (let i = 0; i < 6; i++) {
      sent.push(`w${i}`, `s${i}`)
      answers.push(...(await Promise.all([publish(machine.port, '', `w${i}`), publish(single.port, '', `s${i}`)])))
    }
    t.same(
      answers.flatMap((a, i) => (a.status === 200 && a.json?.delivered === 5 ? [] : [`${sent[i]}: ${a.status} ${a.body}`])),
      [],
      'every publish (through both workers and the plain process): 200, delivered 5',
    )
    await until(() => streams.every((c) => published(c).length >= sent.length), () => `${sent.length} events everywhere; counts ${streams.map((c) => published(c).length).join(', ')}`, 10_000)
    const first = published(streams[0]!)
    for (const c of streams) t.same(published(c), first, `stream ${clientId(c)}: the same events, ids and order`)
    t.same([...first].map((k) => k.slice(k.indexOf(' ') + 1)).sort(), [...sent].sort(), 'each event once')
    t.ok(increasing(first.map(idOf)), 'ids increase')
  })

  t.test('Redis unreachable at start: the process says so once, waits, and listens once Redis answers', async (t) => {
    const port = await freePort()
    const child = new Child(t, process.execPath, [CLI, '--port', '0', '--redis', `redis://127.0.0.1:${port}`, '--token', SUB, '--publish-token', PUB, '--tick', '0', '--heartbeat', '0'], { stdin: 'ignore' })
    await until(() => child.exit !== null || /rawsse: waiting for redis at /.test(child.stderr), () => `the waiting line; stderr: ${JSON.stringify(child.stderr)}`, START_MS)
    t.equal(child.exit, null, 'still running')
    t.match(child.stderr, new RegExp(`rawsse: waiting for redis at \\S*127\\.0\\.0\\.1:${port}`), 'it names the address')
    // Some retries' worth of waiting: the line must not repeat.
    await sleep(1500)
    t.equal(child.stdout, '', 'not listening while Redis is away')
    const redis = await startRedis(t, { port })
    const m = await until(
      () => {
        if (child.exit !== null) throw new Error(`exited ${JSON.stringify(child.exit)}; stderr: ${child.stderr}`)
        return child.stdout.split('\n').length > 4 ? LISTENING.exec(child.stdout) : null
      },
      () => `the start-up lines once Redis is up; stdout: ${JSON.stringify(child.stdout)}; stderr: ${JSON.stringify(child.stderr)}`,
      START_MS,
    )
    t.equal(child.stderr.split('waiting for redis').length - 1, 1, `said once: ${JSON.stringify(child.stderr)}`)
    const rawsse = Number(m[1])
    // Credentials in the URL are not written to the log.
    const secret = new Child(t, process.execPath, [CLI, '--port', '0', '--redis', 'redis://someone:s3cret-pw@127.0.0.1:1', '--token', SUB, '--tick', '0'], { stdin: 'ignore' })
    await until(() => secret.exit !== null || /waiting for redis/.test(secret.stderr), () => `the waiting line; stderr: ${JSON.stringify(secret.stderr)}`, START_MS)
    t.notMatch(secret.stderr, /s3cret-pw/, `the password is not on stderr: ${JSON.stringify(secret.stderr)}`)
    secret.kill('SIGKILL')
    const c = await stream(t, rawsse)
    const r = await publish(rawsse, '', 'hello')
    t.same([r.status, r.json?.delivered], [200, 1], 'it publishes through Redis')
    await c.waitFor('data: hello\n', 5000)
    t.ok(redis.pid > 0)
  })
}
