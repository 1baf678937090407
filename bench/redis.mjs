// `--redis URL` measured (issue 13, "Measure"): one build of rawsse, nodes on one Redis against one plain process.
//
//   node bench/redis.mjs [--cli PATH|COMMIT] [--rounds 3] [--label NAME] [--parts cost,latency,storm] [--storm 10000] [--quick]
//       [--out bench/RESULTS.md]
//
// Every Redis is Debian's redis-server, started here on a free loopback port with a temporary
// dir (`--save '' --appendonly no`), one per cluster started, stopped by its PID. Every rawsse is
// fresh (`--tick 0 --heartbeat 0 --max-clients 20000 --history 1000`, a publish token); a cluster
// is two processes given the same `--redis redis://127.0.0.1:PORT` and a `--redis-prefix` made
// afresh for it (`bench-…`). Nothing is pinned: servers, Redis and load tools share both cores, and
// what is compared is CPU time per unit of work. Before each part the script waits until the
// 1-minute load average is under 0.8 (at most 5 min, then it goes on and says so) and notes it.
// Within a part, rounds are interleaved (round 1 of every figure, then round 2, …; the order of
// the two servers alternates from round to round); tables give medians and min–max.
//
// The load tool is the build's own `rawsse bench`, which targets one URL. So every run of parts 1
// and 2 uses two of them, each with half the streams: a holding one (no --publish: it opens and
// holds its streams, counting and timing the events that reach them) started first, then the
// publishing one, which publishes to its own server and runs the closed (--window W) or open
// (--rate R) loop over its own streams. With two nodes, the publishing tool's streams are on node
// A and it publishes to A; the holding tool's are on node B, reached only through Redis. With one
// process both tools are on it: the same tools, the same split, only the server differs. The
// holding tool is stopped with SIGINT (it then reports) once it has every event the other
// published, or 8 s after the publisher ended.
//
//  1. cost: N = 1 000 and 10 000 streams, closed loop W = 1 and W = 8, 8 s runs. CPU is
//     utime+stime (/proc/PID/stat) of each server process (and children), of redis-server and
//     of the load tools, read each time the publishing tool's `--out` writes its once-a-second
//     line: a window of whole publishing seconds, the first (partial) second and 1 more left out.
//     Deliveries in the window are the publishing tool's (its lines) plus the holding tool's (its
//     lines' running total, interpolated to the same instants). Server CPU µs/delivery = both
//     nodes' CPU (or the one process's) / deliveries; × 1 process = the cluster's ÷ the one
//     process's at the same N and W (issue 13's target: ≤ 1.2×). Deliveries per write = deliveries
//     / the nodes' write system calls (/proc/PID/io syscw): how many events a write carries. Redis
//     µs/event = redis-server's CPU / events published in the window, from /proc/PID/stat and,
//     finer (10 ms ticks are coarse against Redis's few % of a core), from the sum of
//     /proc/PID/task/*/schedstat (ns); and that less its idle CPU, read over 3 s when each cluster
//     starts (both nodes up, nothing published). Also: the holding half's delivery latency (how
//     far node B, outside the closed loop, lags), lost and duplicated deliveries of both halves.
//  2. latency: N = 1 000 and N = 10 (half per tool), open loop at 20 events/s for 10 s; p50/p99
//     of delivery latency (the body's CLOCK_MONOTONIC stamp to the read, one clock for every
//     process) after the warm-up, of each half; the Redis hop = the cluster's p99 − the one
//     process's, per half (target ≤ 2 ms). At 1 000 a stream's latency is mostly its place in
//     its process's fan-out, which two nodes halve; at 10 the fan-out is negligible and what is
//     left is the Redis round trips. The holding tool's warm-up is longer (it starts first), so
//     both halves leave out the start of publishing.
//  3. storm: 10 000 streams on node A (raw node:net clients in one child process of this script,
//     from source addresses 127.x.y.z of this run, one per 1 000), events published through
//     node B at a steady 5/s (one keep-alive connection, one at a time); once every stream has
//     the latest, `kill -9` node A; each client reconnects to node B the moment its socket closes,
//     from 127.0.0.1 without bind(), with `Last-Event-ID` = the last id it got (a connection
//     closed before `ready` retries after 1 s). Times are from the kill: every stream `ready`
//     on B, and "back": every stream has every event published before its `ready` came
//     (its replay). Publishing goes on for 1 s more, then stops; every stream must end with
//     exactly the ids B acknowledged, in order (no gap, no duplicate, no stranger), counted per
//     stream, and none may get `event: reset`. Node B's RSS: VmRSS before the kill, sampled
//     every 50 ms (peak), and VmHWM at the end; B's CPU from the kill to "back"; the machine's
//     TcpExtListenOverflows delta (/proc/net/netstat; another program's would count too).
//
// It writes its section of bench/RESULTS.md (`<!-- redis:begin -->` … `<!-- redis:end -->`,
// after the workers section), one block per --label, each replaced only by a run with its label.
// The run is bounded (45 min, of which up to 15 waiting for the load to fall; --quick 8 min) and
// takes about 11 min (more while it waits for the load); every process it starts is stopped by
// its PID, also on errors and Ctrl-C. --quick: a few hundred streams, 3 s runs, a 1 000-stream
// storm, one round: a check of the script, written nowhere unless --out is given. --storm N: the
// storm's streams (e.g. a full-size storm in a quick run). --cli PATH|COMMIT: another build's
// dist/cli.js (server and load tool), or a commit, built in a temporary git worktree removed at
// the end. --label NAME: default `current` (`quick` with --quick).
// Internal: `node bench/redis.mjs --helper storm JSON` is the storm's client process.

import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { waitForPorts } from './fanout.mjs'
import {
  BENCH, binNodeFlags, buildAt, buildCommit, BUSY_LIMIT, busiestCorePercent, childPids, CLI, flagReader, fmt, freePort, killAll, listeningUrl, machine,
  machineMarkdown, median, placeSectionAfter, PUBLISH_TOKEN, ratio, readSection, ROOT, rssBytes, run, shellJoin, sleep, spread,
  startProcess, tail, writeSection, Http, labelBlocks, labelledSection, compareIds, openStream, listenCounters, PER_SOURCE, quantile, sourcesFor,
} from './lib.mjs'

const SELF = fileURLToPath(import.meta.url)
const FULL = {
  costNs: [1000, 10_000], windows: [1, 8], duration: 8,
  latencyNs: [1000, 10], latencyRate: 20, latencyDuration: 10,
  storm: 10_000, stormRate: 5, stormBoundS: 60,
}
const QUICK = {
  costNs: [200, 400], windows: [1, 8], duration: 3,
  latencyNs: [200, 10], latencyRate: 20, latencyDuration: 4,
  storm: 1000, stormRate: 5, stormBoundS: 30,
}
const WARMUP_S = 1
const CLK_TCK = 100 // USER_HZ of /proc/PID/stat times on every mainstream Linux
const LOAD_LIMIT = 0.8 // 1-minute load average under which a part starts
const BODY = '{seq} {ts}' // rawsse bench's default: the holding tool (no --publish) reads it
const AUTH = `Authorization: Bearer ${PUBLISH_TOKEN}`
const REDIS_IDLE_MS = 3000 // redis-server's idle CPU is read over this long when a cluster starts
const HOLD_AFTER_MS = 8000 // the holding tool gets this long after the publisher's end to receive the rest
const ONE = 'one process'
const TWO = '2 nodes on Redis'
const mib = (b) => fmt(b / 2 ** 20, 1)

// ---------------------------------------------------------------------------------------------
// /proc: CPU and memory.

function attempt(f, otherwise) {
  try {
    return f()
  } catch {
    return otherwise
  }
}
/** utime + stime in ticks: fields 14 and 15, counted after the command name's `)` (the name may hold spaces). */
function ticks(pid) {
  const s = attempt(() => readFileSync(`/proc/${pid}/stat`, 'utf8'), '')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return s ? Number(f[11]) + Number(f[12]) : 0
}
/** CPU seconds of a process and its children. */
const cpuOf = (pid) => [pid, ...childPids(pid)].reduce((n, p) => n + ticks(p), 0) / CLK_TCK
const rss = rssBytes
/** CPU nanoseconds of every thread of a process (/proc/PID/task/TID/schedstat, first field): the utime+stime of /proc/PID/stat at a finer grain than its 10 ms ticks. */
function cpuNs(pid) {
  const tids = attempt(() => readdirSync(`/proc/${pid}/task`), [])
  return tids.reduce((n, t) => n + Number(attempt(() => readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8'), '0 ').split(' ')[0]), 0)
}
/** Write system calls so far (/proc/PID/io syscw) of a process and its children: how many writes its deliveries took. */
const writesOf = (pid) => [pid, ...childPids(pid)].reduce((n, p) => n + Number(/syscw:\s+(\d+)/.exec(attempt(() => readFileSync(`/proc/${p}/io`, 'utf8'), ''))?.[1] ?? NaN), 0)
/** VmHWM: the peak resident memory of a process so far, in bytes. */
function hwmBytes(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(attempt(() => readFileSync(`/proc/${pid}/status`, 'utf8'), ''))
  return m ? Number(m[1]) * 1024 : NaN
}

/** CPU of every process of a setup and of the load tools, at one instant. */
function cpuSample(setup, toolPids) {
  const perNode = setup.nodes.map((n) => cpuOf(n.pid))
  return {
    at: Date.now(),
    perNode,
    nodes: perNode.reduce((a, b) => a + b, 0),
    redis: setup.redis ? cpuOf(setup.redis.pid) : 0,
    redisNs: setup.redis ? cpuNs(setup.redis.pid) : 0,
    writes: setup.nodes.reduce((n, x) => n + writesOf(x.pid), 0),
    tools: toolPids.reduce((n, p) => n + cpuOf(p), 0),
  }
}

// ---------------------------------------------------------------------------------------------
// Redis and the servers.

function redisBin() {
  return ['redis-server', '/usr/bin/redis-server'].find((bin) => run(bin, ['--version']) !== null) ?? null
}

async function startRedis() {
  const bin = redisBin()
  if (!bin) throw new Error('redis-server is not installed (apt-get install redis-server)')
  const port = await freePort()
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-redis-'))
  try {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning']
    const { proc } = await startProcess('redis-server', bin, args, {
      // --loglevel warning prints no ready line: ready once it answers PING.
      ready: async () => (await ping(port)) || undefined,
      timeoutMs: 10_000,
    })
    const stop = proc.stop.bind(proc)
    proc.stop = async (grace) => (await stop(grace), rmSync(dir, { recursive: true, force: true }))
    return { proc, pid: proc.pid, port, url: `redis://127.0.0.1:${port}` }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}

/** Whether a Redis answers PING on `port` (a raw RESP exchange). */
function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    const done = (v) => (s.destroy(), resolve(v))
    s.setTimeout(1000, () => done(false))
    s.once('error', () => done(false))
    s.once('connect', () => s.write('*1\r\n$4\r\nPING\r\n'))
    s.once('data', (d) => done(d.toString('latin1').startsWith('+PONG')))
  })
}

async function startNode(o, name, redis, prefix) {
  const port = await freePort()
  const args = ['--port', String(port), '--tick', '0', '--heartbeat', '0', '--publish-token', PUBLISH_TOKEN, '--max-clients', '20000', '--history', '1000']
  if (redis) args.push('--redis', redis.url, '--redis-prefix', prefix)
  const { proc, value } = await startProcess(name, process.execPath, [...binNodeFlags(o.cli), o.cli, ...args], { ready: listeningUrl, withChildren: true, timeoutMs: 20_000 })
  return { name, proc, pid: proc.pid, port, stream: `${value}/events/${PUBLISH_TOKEN}`, publish: `${value}/publish` }
}

/** ONE: a plain process. TWO: a fresh Redis and two nodes on it under a fresh prefix. */
async function startSetup(o, kind) {
  if (kind === ONE) {
    const node = await startNode(o, 'rawsse', null)
    return { kind, nodes: [node], redis: null, prefix: null }
  }
  const setup = { kind, nodes: [], redis: null, prefix: `bench-${randomBytes(4).toString('hex')}` }
  try {
    setup.redis = await startRedis()
    for (const name of ['rawsse A', 'rawsse B']) setup.nodes.push(await startNode(o, name, setup.redis, setup.prefix))
    // redis-server's CPU while both nodes are up and nothing is published (their blocking reads,
    // the once-a-second presence exchange, its own cron): what a window pays whatever its events.
    await sleep(1000)
    const a = [Date.now(), cpuNs(setup.redis.pid)]
    await sleep(REDIS_IDLE_MS)
    setup.redisIdleNsPerS = ((cpuNs(setup.redis.pid) - a[1]) * 1000) / (Date.now() - a[0])
    return setup
  } catch (err) {
    await stopSetup(setup)
    throw err
  }
}

async function stopSetup(setup) {
  for (const n of setup.nodes) await n.proc.stop()
  await setup.redis?.proc.stop()
}

const nodeStats = (port) =>
  fetch(`http://127.0.0.1:${port}/stats`, { headers: { authorization: `Bearer ${PUBLISH_TOKEN}` }, signal: AbortSignal.timeout(5000) }).then((r) => (r.ok ? r.json() : null), () => null)

const alive = (proc) => proc.child.exitCode === null && proc.child.signalCode === null

// ---------------------------------------------------------------------------------------------
// One run of parts 1 and 2: a holding tool on the last node, then a publishing tool on the first.

const readLines = (file) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(0, -1).map((l) => JSON.parse(l)) : [])
const lastJson = (text) => {
  const l = text.trim().split('\n').reverse().find((x) => x.startsWith('{'))
  try {
    return l ? JSON.parse(l) : null
  } catch {
    return null
  }
}

/**
 * Runs the two load tools against `setup` (publishing on nodes[0], holding on nodes.at(-1)).
 * Resolves to { pub, hold, window, spreadOver, error }: both tools' JSON reports and the window's figures.
 */
async function pairRun(o, setup, { perTool, window, rate, duration }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-redis-bench-'))
  const holdOut = path.join(dir, 'hold.jsonl')
  const pubOut = path.join(dir, 'pub.jsonl')
  const pubNode = setup.nodes[0]
  const holdNode = setup.nodes.at(-1)
  const connectS = perTool / 2000
  // Its warm-up ends after the publisher's: it starts first, then waits for that one to connect.
  const holdWarmup = Math.ceil(connectS + 3)
  // No --body without --publish (the tool refuses it): it reads the default template, which is BODY.
  const holdArgs = [o.cli, 'bench', holdNode.stream, '--streams', String(perTool), '--duration', '3600', '--warmup', String(holdWarmup), '--out', holdOut, '--json']
  const pubArgs = [o.cli, 'bench', pubNode.stream, '--streams', String(perTool), '--body', BODY, '--publish', pubNode.publish, '--publish-header', AUTH]
  pubArgs.push(...(rate !== undefined ? ['--rate', String(rate)] : ['--window', String(window)]), '--duration', String(duration), '--warmup', String(WARMUP_S), '--out', pubOut, '--json')
  let hold
  let pub
  const samples = [] // the publisher's lines, each with the CPU read when it appeared
  const holdSeen = [] // the holding tool's lines: when each appeared and the deliveries so far
  let holdCum = 0
  let holdRead = 0
  const readHold = () => {
    const lines = readLines(holdOut)
    for (; holdRead < lines.length; holdRead++) {
      holdCum += lines[holdRead].deliveries
      holdSeen.push({ at: Date.now(), cum: holdCum, line: lines[holdRead] })
    }
  }
  try {
    ;({ proc: hold } = await startProcess('rawsse bench (holding)', process.execPath, holdArgs, { ready: () => true }))
    const connectBound = Date.now() + (connectS + 30) * 1000
    for (;;) {
      readHold()
      if (holdSeen.some((s) => s.line.phase === 'holding')) break
      if (!alive(hold)) return { error: `the holding load tool exited while connecting: ${tail(hold.stderr || hold.stdout, 300)}` }
      if (Date.now() > connectBound) return { error: `the holding load tool was still connecting after ${fmt(connectS + 30)} s: ${JSON.stringify(holdSeen.at(-1)?.line)}` }
      await sleep(20)
    }
    const holdOpen = holdSeen.at(-1).line.open
    ;({ proc: pub } = await startProcess('rawsse bench (publishing)', process.execPath, pubArgs, { ready: () => true }))
    const toolPids = [pub.pid, hold.pid]
    const boundS = connectS + duration + 60
    let outcome = null
    void Promise.race([pub.exited, sleep(boundS * 1000).then(() => 'timeout')]).then((x) => (outcome = x))
    let seen = 0
    let spreadOver = null
    for (let finished = false; !finished; ) {
      finished = outcome !== null // one more read once it has ended: its last lines
      const lines = readLines(pubOut).slice(0) // the last piece (unfinished) is never parsed: readLines drops it
      for (; seen < lines.length; seen++) {
        samples.push({ line: lines[seen], sample: cpuSample(setup, toolPids) })
        if (lines[seen].phase === 'publishing' && spreadOver === null) {
          spreadOver = []
          for (const n of setup.nodes) {
            const st = await nodeStats(n.port)
            spreadOver.push(st ? (st.nodes?.[0]?.clients ?? st.clients) : NaN) // a node's own entry comes first
          }
        }
      }
      readHold()
      if (!finished) await sleep(20)
    }
    await Promise.race([pub.closed, sleep(2000)])
    if (outcome === 'timeout') return { error: `the publishing load tool did not finish within ${fmt(boundS)} s; its last line: ${JSON.stringify(samples.at(-1)?.line)}` }
    const pubJson = lastJson(pub.stdout)
    if (!pubJson) return { error: `the publishing load tool exited ${outcome.signal ?? outcome.code} without a report: ${tail(pub.stderr || pub.stdout, 300)}` }
    // The holding half: wait (its lines come once a second) until it has every event, then SIGINT: it reports.
    const expected = pubJson.published * holdOpen
    const t0 = Date.now()
    while (holdCum < expected && Date.now() - t0 < HOLD_AFTER_MS && alive(hold)) {
      readHold()
      await sleep(50)
    }
    await sleep(100)
    readHold()
    attempt(() => process.kill(hold.pid, 'SIGINT'))
    await Promise.race([hold.closed, sleep(10_000)])
    const holdJson = lastJson(hold.stdout)
    if (!holdJson) return { error: `the holding load tool gave no report: ${tail(hold.stderr || hold.stdout, 300)}`, pub: pubJson }
    holdJson.lost = Math.max(0, pubJson.published * holdJson.connected - holdJson.received)
    return { pub: pubJson, hold: holdJson, window: windowOf(samples, holdSeen, setup.redisIdleNsPerS ?? 0), spreadOver, holdStderr: tail(hold.stderr, 300), pubStderr: tail(pub.stderr, 300) }
  } catch (err) {
    return { error: err.message.split('\n')[0] }
  } finally {
    await pub?.stop(1000)
    await hold?.stop(1000)
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The holding tool's deliveries so far at instant `t`, interpolated between its lines. */
function holdAt(holdSeen, t) {
  for (let i = 1; i < holdSeen.length; i++) {
    const p = holdSeen[i - 1]
    const q = holdSeen[i]
    if (t >= p.at && t <= q.at) return q.at === p.at ? q.cum : p.cum + ((q.cum - p.cum) * (t - p.at)) / (q.at - p.at)
  }
  return NaN
}

/**
 * The measured window: from the publisher's line that ends its warm-up (the first publishing line
 * covers part of a second, then WARMUP_S more) to its last publishing line. CPU, deliveries and
 * events published between the two readings; null when publishing was too short to have one.
 */
function windowOf(samples, holdSeen, redisIdleNsPerS) {
  const pub = samples.filter((s) => s.line.phase === 'publishing')
  const a = pub[Math.ceil(WARMUP_S)]
  const b = pub.at(-1)
  if (!a || b === a) return null
  const pubDeliveries = pub.slice(pub.indexOf(a) + 1).reduce((n, s) => n + s.line.deliveries, 0)
  const holdDeliveries = holdAt(holdSeen, b.sample.at) - holdAt(holdSeen, a.sample.at)
  const deliveries = pubDeliveries + holdDeliveries
  const seconds = (b.sample.at - a.sample.at) / 1000
  const events = b.line.published - a.line.published
  const d = (k) => b.sample[k] - a.sample[k]
  return {
    seconds, events, eventsPerSecond: events / seconds,
    deliveries, deliveriesPerSecond: deliveries / seconds, pubPerSecond: pubDeliveries / seconds, holdPerSecond: holdDeliveries / seconds,
    usPerDelivery: (d('nodes') * 1e6) / deliveries,
    allUsPerDelivery: ((d('nodes') + d('redis')) * 1e6) / deliveries,
    redisUsPerEvent: (d('redis') * 1e6) / events,
    redisNsUsPerEvent: d('redisNs') / 1e3 / events,
    redisAboveIdleUsPerEvent: (d('redisNs') - redisIdleNsPerS * seconds) / 1e3 / events,
    redisIdlePct: redisIdleNsPerS / 1e7,
    deliveriesPerWrite: deliveries / d('writes'),
    serverPct: (100 * d('nodes')) / seconds,
    perNodePct: b.sample.perNode.map((x, i) => (100 * (x - a.sample.perNode[i])) / seconds),
    redisPct: (100 * d('redis')) / seconds,
    redisNsPct: d('redisNs') / 1e7 / seconds,
    toolsPct: (100 * d('tools')) / seconds,
  }
}

// ---------------------------------------------------------------------------------------------
// Machine discipline.

async function busyNote(what, notes) {
  const busy = await busiestCorePercent()
  if (busy > BUSY_LIMIT) notes.push(`${what}: a core was ${fmt(busy)} % busy with other work just before the run; its numbers are suspect`)
}

/** Waits until the 1-minute load average is under LOAD_LIMIT (at most 5 min; --quick 1), and notes it. */
async function waitForQuiet(o, part, notes) {
  const maxMs = o.quick ? 60_000 : 300_000
  const t0 = Date.now()
  const first = os.loadavg()[0]
  while (os.loadavg()[0] >= LOAD_LIMIT && Date.now() - t0 < maxMs) await sleep(5000)
  const [l1, l5, l15] = os.loadavg()
  const waited = (Date.now() - t0) / 1000
  const text =
    `${part}: load average ${l1.toFixed(2)} / ${l5.toFixed(2)} / ${l15.toFixed(2)} (1 / 5 / 15 min) at its start` +
    (waited >= 1 ? `, after waiting ${fmt(waited)} s (it was ${first.toFixed(2)})` : '') +
    (l1 >= LOAD_LIMIT ? `; still ≥ ${LOAD_LIMIT} after ${maxMs / 60000} min: went on anyway` : '')
  notes.push(text)
  process.stderr.write(`${text}\n`)
  return { load: l1, waited }
}

// ---------------------------------------------------------------------------------------------
// Part 1: cost.

async function costPart(o, notes) {
  const S = o.sizes
  const out = []
  for (let round = 1; round <= o.rounds; round++) {
    const kinds = round % 2 ? [ONE, TWO] : [TWO, ONE]
    for (const n of S.costNs) {
      for (const kind of kinds) {
        await waitForPorts(n)
        let setup
        try {
          setup = await startSetup(o, kind)
        } catch (err) {
          notes.push(`cost, round ${round}, ${kind}, N = ${fmt(n)}: did not start: ${err.message.split('\n')[0]}`)
          continue
        }
        try {
          for (const w of S.windows) {
            const what = `cost, round ${round}, ${kind}, N = ${fmt(n)}, W = ${w}`
            await busyNote(what, notes)
            const r = { round, kind, n, w, ...(await pairRun(o, setup, { perTool: n / 2, window: w, duration: S.duration })) }
            out.push(r)
            const x = r.window
            process.stderr.write(
              `${what}: ${r.error ? `ERROR ${r.error}` : `${fmt(x?.deliveriesPerSecond)} deliveries/s (${fmt(x?.pubPerSecond)} + ${fmt(x?.holdPerSecond)}), ${fmt(x?.usPerDelivery, 2)} µs/delivery, nodes ${x?.perNodePct.map((p) => fmt(p)).join(' + ')} %, redis ${fmt(x?.redisPct)} % (${fmt(x?.redisUsPerEvent, 1)} µs/event; schedstat ${fmt(x?.redisNsUsPerEvent, 1)}, above idle ${fmt(x?.redisAboveIdleUsPerEvent, 1)}), ${fmt(x?.deliveriesPerWrite, 2)} deliveries/write, tools ${fmt(x?.toolsPct)} %, lost ${r.pub.lost}+${r.hold.lost}, dup ${r.pub.duplicates}+${r.hold.duplicates}, hold p99 ${r.hold.latencyMs.p99} ms, spread ${r.spreadOver?.join('/')}`}\n`,
            )
            if (r.error) notes.push(`${what}: ${r.error}`)
            else if (!x) notes.push(`${what}: publishing too short for a measured window`)
            if (r.pub && r.hold && (r.pub.lost || r.hold.lost || r.pub.duplicates || r.hold.duplicates || r.pub.connected + r.hold.connected < n))
              notes.push(`${what}: connected ${r.pub.connected}+${r.hold.connected}/${n}, lost ${r.pub.lost}+${r.hold.lost}, duplicates ${r.pub.duplicates}+${r.hold.duplicates} (publishing + holding half)`)
            for (const node of setup.nodes) if (!alive(node.proc)) notes.push(`${what}: ${node.name} exited: ${tail(node.proc.stderr, 200)}`)
            if (setup.nodes.some((node) => !alive(node.proc))) break
          }
        } finally {
          await stopSetup(setup)
        }
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Part 2: latency.

async function latencyPart(o, notes) {
  const S = o.sizes
  const out = []
  for (let round = 1; round <= o.rounds; round++) {
    for (const kind of round % 2 ? [ONE, TWO] : [TWO, ONE]) {
      const what = `latency, round ${round}, ${kind}`
      await waitForPorts(Math.max(...S.latencyNs))
      let setup
      try {
        setup = await startSetup(o, kind)
      } catch (err) {
        notes.push(`${what}: did not start: ${err.message.split('\n')[0]}`)
        continue
      }
      try {
        for (const n of S.latencyNs) {
        await busyNote(`${what}, N = ${fmt(n)}`, notes)
        const r = { round, kind, n, ...(await pairRun(o, setup, { perTool: n / 2, rate: S.latencyRate, duration: S.latencyDuration })) }
        out.push(r)
        process.stderr.write(
          `${what}, N = ${fmt(n)}: ${r.error ? `ERROR ${r.error}` : `publishing half p50 ${r.pub.latencyMs.p50} p99 ${r.pub.latencyMs.p99} ms, other half p50 ${r.hold.latencyMs.p50} p99 ${r.hold.latencyMs.p99} ms, ${fmt(r.window?.eventsPerSecond, 1)} events/s, lost ${r.pub.lost}+${r.hold.lost}, dup ${r.pub.duplicates}+${r.hold.duplicates}`}\n`,
        )
        if (r.error) notes.push(`${what}, N = ${fmt(n)}: ${r.error}`)
        if (r.pub && r.hold && (r.pub.lost || r.hold.lost || r.pub.duplicates || r.hold.duplicates)) notes.push(`${what}, N = ${fmt(n)}: lost ${r.pub.lost}+${r.hold.lost}, duplicates ${r.pub.duplicates}+${r.hold.duplicates}`)
        }
      } finally {
        await stopSetup(setup)
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Part 3: the storm.

async function stormPart(o, notes) {
  const out = []
  for (let round = 1; round <= o.rounds; round++) {
    const what = `storm, round ${round}`
    try {
      const r = await stormRound(o, round, notes)
      out.push(r)
      process.stderr.write(
        `${what}: ${r.initialReady}/${r.n} on A; kill → all ready ${fmt(r.readyMax)} ms, all back ${fmt(r.backMax)} ms (p50 ${fmt(r.backP50)}, p99 ${fmt(r.backP99)}), not back ${r.notBack}; exact ${r.exact}/${r.n}, gaps ${r.withGap} (${r.missing} ids), dups ${r.withDup} (${r.dups}), order ${r.outOfOrder}, extra ${r.extra}, resets ${r.resets}; retries ${r.retries} ${JSON.stringify(r.statuses)}; overflows ${r.listenOverflows}; B RSS ${mib(r.rssBefore)} → ${mib(r.rssPeak)} (HWM ${mib(r.hwmEnd)}) MiB; missed/stream p50 ${r.missedP50} max ${r.missedMax}\n`,
      )
      if (r.notBack > 0 || r.exact < r.n) notes.push(`${what}: ${r.notBack} streams not back within ${o.sizes.stormBoundS} s; ${r.n - r.exact} of ${r.n} streams not exact (gaps ${r.withGap}, duplicates ${r.withDup}, out of order ${r.outOfOrder}, strangers ${r.extra})`)
      if (r.resets > 0) notes.push(`${what}: ${r.resets} streams got \`event: reset\``)
    } catch (err) {
      out.push({ round, error: err.message.split('\n')[0] })
      notes.push(`${what}: ${err.message.split('\n')[0]}`)
      process.stderr.write(`${what}: ERROR ${err.message}\n`)
    }
  }
  return out
}

async function stormRound(o, round, notes) {
  const S = o.sizes
  const waited = await waitForPorts(S.storm)
  if (waited >= 1) notes.push(`storm, round ${round}: waited ${fmt(waited)} s for ${fmt(S.storm)} free ports on 127.0.0.1 first`)
  const setup = await startSetup(o, TWO)
  let helper = null
  try {
    const [A, B] = setup.nodes
    await busyNote(`storm, round ${round}`, notes)
    const boundMs = S.stormBoundS * 1000
    const cfg = { portA: A.port, portB: B.port, n: S.storm, sources: sourcesFor(S.storm), rate: S.stormRate, boundMs }
    ;({ proc: helper } = await startProcess('storm clients', process.execPath, [SELF, '--helper', 'storm', JSON.stringify(cfg)], {
      ready: (out) => out.includes('"kill-me"') || undefined,
      timeoutMs: 180_000,
    }))
    // Every stream on A has the latest event, and events go on at S.stormRate through B.
    const before = { rss: rss(B.pid), hwm: hwmBytes(B.pid), cpu: cpuOf(B.pid), redisCpu: cpuOf(setup.redis.pid), stats: await nodeStats(B.port) }
    const rssSamples = []
    const sampler = setInterval(() => rssSamples.push(rss(B.pid)), 50)
    const killAt = Date.now()
    process.kill(A.pid, 'SIGKILL')
    let atBack = null
    const backWatch = (async () => {
      while (atBack === null && alive(helper)) {
        if (helper.stdout.includes('"back"')) atBack = { at: Date.now(), cpu: cpuOf(B.pid), redisCpu: cpuOf(setup.redis.pid), rss: rss(B.pid) }
        else await sleep(10)
      }
    })()
    const limitMs = boundMs + 60_000
    const outcome = await Promise.race([helper.exited, sleep(limitMs).then(() => 'timeout')])
    clearInterval(sampler)
    await backWatch
    await Promise.race([helper.closed, sleep(2000)])
    if (outcome === 'timeout') throw new Error(`the storm clients did not finish within ${limitMs / 1000} s after the kill: ${tail(helper.stderr, 300)}`)
    const h = lastJson(helper.stdout)
    if (!h || h.phase !== 'result') throw new Error(`the storm clients gave no result (exit ${outcome.signal ?? outcome.code}, ${helper.stdout.length} characters out): ${tail(helper.stderr, 300)} ${tail(helper.stdout, 300)}`)
    process.stderr.write(tail(helper.stderr, 600) + '\n')
    const rel = (xs) => xs.map((t) => (t === null ? Infinity : t - killAt))
    const ready = rel(h.readyAt)
    const back = rel(h.backAt)
    const fin = (x) => (Number.isFinite(x) ? x : null)
    const r = {
      round,
      n: h.n,
      initialReady: h.initialReady,
      initialFailed: h.initialFailed,
      aKilled: (await Promise.race([A.proc.exited, sleep(2000).then(() => null)]))?.signal ?? 'not seen',
      firstCloseMs: h.firstCloseAt - killAt,
      lastCloseMs: h.lastCloseAt - killAt,
      closed: h.closed,
      readyP50: fin(quantile(ready, 0.5)),
      readyP99: fin(quantile(ready, 0.99)),
      readyMax: fin(quantile(ready, 1)),
      backP50: fin(quantile(back, 0.5)),
      backP99: fin(quantile(back, 0.99)),
      backMax: fin(quantile(back, 1)),
      notReady: ready.filter((x) => !Number.isFinite(x)).length,
      notBack: back.filter((x) => !Number.isFinite(x)).length,
      ...Object.fromEntries(['published', 'publishedBeforeKill', 'publishErrors', 'exact', 'withGap', 'missing', 'withDup', 'dups', 'outOfOrder', 'extra', 'resets', 'retries', 'closedAfterReady', 'statuses', 'reasons', 'missedP50', 'missedMax', 'helperCpuS', 'statsAfter', 'fireSpanMs'].map((k) => [k, h[k]])),
      listenOverflows: h.listenOverflows,
      listenDrops: h.listenDrops,
      rssBefore: before.rss,
      rssPeak: Math.max(before.rss, ...rssSamples.filter(Number.isFinite)),
      rssAtBack: atBack?.rss ?? NaN,
      hwmBefore: before.hwm,
      hwmEnd: hwmBytes(B.pid),
      bCpuS: atBack ? atBack.cpu - before.cpu : NaN,
      redisCpuS: atBack ? atBack.redisCpu - before.redisCpu : NaN,
      clientsBefore: before.stats?.nodes?.[0]?.clients ?? NaN,
      bAlive: alive(B.proc),
    }
    if (!r.bAlive) notes.push(`storm, round ${round}: node B exited: ${tail(B.proc.stderr, 200)}`)
    return r
  } finally {
    await helper?.stop(1000)
    await stopSetup(setup)
  }
}

// ---------------------------------------------------------------------------------------------
// The storm's clients (a child process: `--helper storm JSON`).



/**
 * The storm, on the clients' side: open n streams on A; publish through B at `rate`; say
 * `kill-me` once every stream has the latest event; reconnect each to B as its socket closes;
 * say `back` once every stream has its replay; then check every stream's ids; one JSON line.
 */
async function stormHelper(cfg) {
  const { portA, portB, n, sources, rate, boundMs, inFlight = 256 } = cfg
  const auth = { Authorization: `Bearer ${PUBLISH_TOKEN}` }
  const log = (s) => process.stderr.write(`storm: ${s}\n`)
  // A write to a pipe may still be under way when it returns: the process exits once the last is out.
  const say = (o, then) => process.stdout.write(JSON.stringify(o) + '\n', then)
  const cpu0 = process.cpuUsage()
  const streams = Array.from({ length: n }, () => ({ ids: [], last: null, node: 'A', ready: false, readyAt: null, goal: null, backAt: null, lastEventId: null, closedAt: null, retries: 0, resets: 0, closedAfterReady: 0, stop: false, socket: null }))
  const bump = (o, k) => (o[k] = (o[k] ?? 0) + 1)
  const statuses = {}
  const reasons = {}
  const published = [] // ids B acknowledged, in order
  let publishErrors = 0
  let firstPublishError = null
  const api = new Http(portB)

  // Phase 1: every stream on A, at most inFlight connecting at a time.
  const t1 = Date.now()
  let initialReady = 0
  let initialFailed = 0
  let stormStarted = false
  let firstCloseAt = null
  let lastCloseAt = null
  let closed = 0
  let fireFirst = null
  let fireLast = null
  const onEvent = (st) => (ev) => {
    if (ev.event === 'ready') {
      st.ready = true
      if (st.node === 'B' && st.readyAt === null) {
        st.readyAt = Date.now()
        // Its replay: every event B acknowledged until now (B answers a publish once it delivered it).
        st.goal = published.at(-1) ?? null
        if (st.goal === null || (st.lastEventId !== null && Number(st.lastEventId) >= Number(st.goal))) st.backAt = st.readyAt
      }
      return
    }
    if (ev.event === 'reset') {
      st.resets++
      return
    }
    if (ev.id !== null && ev.event === 'message') {
      st.ids.push(ev.id)
      st.last = ev.id
      // At or past its goal (a gap before it is counted by the check at the end).
      if (st.backAt === null && st.goal !== null && Number(ev.id) >= Number(st.goal)) st.backAt = Date.now()
    }
  }
  await new Promise((resolve) => {
    let next = 0
    const one = () => {
      if (next >= n) return
      const i = next++
      const st = streams[i]
      let settled = false
      const settle = (ok) => {
        if (settled) return
        settled = true
        ok ? initialReady++ : initialFailed++
        if (initialReady + initialFailed === n) resolve()
        else one()
      }
      st.socket = openStream({
        port: portA,
        path: `/events/${PUBLISH_TOKEN}`,
        localAddress: sources[Math.floor(i / PER_SOURCE) % sources.length],
        onEvent: (ev) => (onEvent(st)(ev), ev.event === 'ready' && settle(true)),
        onClose: (err) => {
          if (!stormStarted) {
            st.failedA = err ?? 'closed'
            return settle(false)
          }
          onDrop(st)
        },
      })
    }
    for (let k = 0; k < Math.min(n, inFlight); k++) one()
    setTimeout(resolve, 120_000)
  })
  log(`${initialReady} of ${n} streams open on A in ${fmt((Date.now() - t1) / 1000, 1)} s (${initialFailed} failed)`)
  if (initialReady === 0) throw new Error('no stream opened on node A')

  // Phase 2: publishing through B, one at a time, at `rate`.
  let publishing = true
  let busy = false
  let k = 0
  const publishOne = async () => {
    busy = true
    try {
      const r = await api.request('POST', '/publish', { headers: auth, body: `storm ${++k}` })
      if (r.status !== 200) throw new Error(`publish: ${r.status} ${r.body}`)
      published.push(String(JSON.parse(r.body).id))
    } catch (e) {
      publishErrors++
      firstPublishError ??= e.message
    } finally {
      busy = false
    }
  }
  const pubTimer = setInterval(() => publishing && !busy && void publishOne(), 1000 / rate)
  // Every open stream has the latest event: they are live on A.
  const t2 = Date.now()
  await sleep(2000)
  while (Date.now() - t2 < 20_000) {
    const latest = published.at(-1)
    if (latest !== undefined && streams.every((st) => !st.ready || st.last === latest || Number(st.last) > Number(latest))) break
    await sleep(20)
  }
  const publishedBeforeKill = published.length
  // Phase 3: the parent kills A; each stream reconnects to B the moment it sees its socket close.
  stormStarted = true
  const counters0 = listenCounters()
  const connectB = (st) => {
    st.node = 'B'
    st.ready = false
    const now = performance.now()
    fireFirst ??= now
    fireLast = now
    st.socket = openStream({
      port: portB,
      path: `/events/${PUBLISH_TOKEN}`,
      headers: st.lastEventId === null ? {} : { 'Last-Event-ID': st.lastEventId },
      onStatus: (status) => bump(statuses, status),
      onEvent: onEvent(st),
      onClose: (err) => {
        if (st.stop) return
        if (st.ready) {
          st.closedAfterReady++
          return
        }
        bump(reasons, err ?? 'closed')
        if (Date.now() - firstCloseAt < boundMs) {
          st.retries++
          setTimeout(() => !st.stop && connectB(st), 1000)
        }
      },
    })
  }
  function onDrop(st) {
    if (st.node !== 'A' || st.stop) return
    const now = Date.now()
    firstCloseAt ??= now
    lastCloseAt = now
    closed++
    st.closedAt = now
    st.lastEventId = st.last
    connectB(st)
  }
  say({ phase: 'kill-me', t: Date.now() })
  // Until every stream is back with its replay, or the bound.
  const tracked = streams.filter((st) => st.failedA === undefined) // the streams that opened on A
  const t3 = Date.now()
  while (Date.now() - t3 < boundMs + 5000) {
    if (firstCloseAt !== null && tracked.every((st) => st.backAt !== null)) break
    if (firstCloseAt !== null && Date.now() - firstCloseAt > boundMs) break
    await sleep(10)
  }
  say({ phase: 'back', t: Date.now() })
  const counters1 = listenCounters()
  const statsAfter = await nodeStats(portB)
  // One more second of publishing, then the last event must reach every stream.
  await sleep(1000)
  publishing = false
  clearInterval(pubTimer)
  while (busy) await sleep(10)
  const lastId = published.at(-1)
  const t4 = Date.now()
  while (streams.some((st) => st.ready && st.node === 'B' && st.last !== lastId) && Date.now() - t4 < 15_000) await sleep(50)
  // B closes them (DELETE /clients), so that the TIME_WAITs are on its side, not on 127.0.0.1's client ports.
  for (const st of streams) st.stop = true
  await api.request('DELETE', '/clients', { headers: auth }).catch(() => {})
  const t5 = Date.now()
  while (streams.some((st) => st.socket && !st.socket.destroyed && !st.socket.readableEnded) && Date.now() - t5 < 10_000) await sleep(50)
  for (const st of streams) st.socket?.destroy()
  api.close()

  // Verdicts: each stream's ids against the ids B acknowledged (every stream was open before the first).
  const pos = new Map(published.map((id, i) => [id, i]))
  let exact = 0
  let withGap = 0
  let withDup = 0
  let outOfOrder = 0
  let extra = 0
  let missing = 0
  let dups = 0
  const missed = []
  for (const st of streams) {
    if (st.failedA !== undefined && st.closedAt === null) continue
    const { gap, dup, order, ...n } = compareIds(st.ids, published, pos)
    dups += n.dups
    extra += n.extra
    missing += n.missing
    if (!gap && !dup && !order && st.ids.length === published.length) exact++
    if (gap) withGap++
    if (dup) withDup++
    if (order) outOfOrder++
    // Its replay: events it got on B up to its goal (those published while it was away).
    if (st.lastEventId !== null && st.goal !== null) missed.push(Math.max(0, (pos.get(st.goal) ?? -1) - (pos.get(st.lastEventId) ?? -1)))
  }
  const cpu = process.cpuUsage(cpu0)
  const sum = (f) => streams.reduce((a, st) => a + f(st), 0)
  say({
    phase: 'result',
    n,
    initialReady,
    initialFailed,
    published: published.length,
    publishedBeforeKill,
    publishErrors,
    firstPublishError,
    firstCloseAt,
    lastCloseAt,
    closed,
    fireSpanMs: fireFirst === null ? null : Math.round(fireLast - fireFirst),
    readyAt: streams.map((st) => st.readyAt),
    backAt: streams.map((st) => st.backAt),
    exact,
    withGap,
    missing,
    withDup,
    dups,
    outOfOrder,
    extra,
    resets: sum((st) => (st.resets > 0 ? 1 : 0)),
    retries: sum((st) => st.retries),
    closedAfterReady: sum((st) => st.closedAfterReady),
    statuses,
    reasons,
    missedP50: quantile(missed, 0.5),
    missedMax: quantile(missed, 1),
    listenOverflows: counters1.overflows - counters0.overflows,
    listenDrops: counters1.drops - counters0.drops,
    statsAfter: statsAfter && { clients: statsAfter.nodes?.[0]?.clients ?? statsAfter.clients, published: statsAfter.published },
    helperCpuS: (cpu.user + cpu.system) / 1e6,
  }, () => process.exit(0))
}

// ---------------------------------------------------------------------------------------------
// The report: one block per label in the redis section.

const ok = (runs) => runs.filter((r) => !r.error && r.window)
const med = (runs, f) => median(ok(runs).map(f))
const spr = (runs, f, d = 0) => spread(ok(runs).map(f), d)
const good = (runs) => runs.filter((r) => !r.error && r.pub && r.hold)
const medL = (runs, f) => median(good(runs).map(f))
const sprL = (runs, f, d = 2) => spread(good(runs).map(f), d)

function labelBlock(o, m, command, build, res, notes) {
  const S = o.sizes
  const out = [`### ${o.label}${o.quick ? ' (QUICK SMOKE RUN: small sizes; not results)' : ''}`, '']
  out.push(machineMarkdown(m))
  out.push(`- Redis: ${run(redisBin() ?? 'redis-server', ['--version']) ?? 'not installed'}; one per cluster, on a free loopback port, \`--save '' --appendonly no\`, a temporary dir`)
  out.push(`- Build measured: \`${o.cli.startsWith(ROOT + path.sep) ? path.relative(ROOT, o.cli) : o.cli}\`, git ${build}; command: \`${command}\`; the run took ${fmt(res.minutes, 1)} min`)
  out.push(
    `- ${o.rounds} round(s), interleaved within each part (the two servers' order alternating); nothing pinned; servers \`--tick 0 --heartbeat 0 --max-clients 20000 --history 1000\`, a cluster = 2 processes with \`--redis redis://127.0.0.1:PORT --redis-prefix bench-<random>\`; body \`${BODY}\`; figures are medians, spread min–max over rounds.`,
  )
  out.push(
    '- The load tool (`rawsse bench`) targets one URL, so parts 1 and 2 run two at once, each with half the streams: a holding one (no `--publish`; it holds its streams and counts and times what reaches them; stopped with SIGINT, which makes it report, once it has every event or 8 s after publishing ended), then a publishing one that runs the closed or open loop over its own half. 2 nodes: the publishing half is on node A, which it publishes to; the holding half on node B (its events come only through Redis, and B is outside the closed loop). One process: both halves on it. Deliveries = both halves (the holding one\'s count interpolated to the publisher\'s once-a-second lines).',
  )
  out.push('')
  if (o.parts.has('cost')) {
    out.push(
      `**1. Cost.** Closed loop, ${S.duration} s runs, the window leaving out the first ${1 + WARMUP_S} s. CPU = utime+stime (/proc/PID/stat) over the window; server µs/delivery = both nodes' CPU (or the one process's) / deliveries; × 1 process = ÷ the one process's at the same N and W (target ≤ 1.2×); deliveries/write = deliveries / the nodes' write system calls (/proc/PID/io syscw: how many events one write to a stream carried, on average); + Redis = (nodes + redis-server) / deliveries; Redis µs/event = redis-server's CPU / events published in the window, from /proc/PID/stat (10 ms ticks: a window holds only 1–20 of them) and from /proc/PID/task/*/schedstat (the same CPU time in ns), and that less redis-server's idle CPU (measured over ${REDIS_IDLE_MS / 1000} s with both nodes up before the cluster's first run: their blocking reads, the once-a-second presence exchange, its own cron; ${fmt(median(res.cost.filter((r) => r.window).map((r) => r.window.redisIdlePct).filter((x) => x > 0)), 2)} % of a core, median). CPU % is of one core (200 % = both). Holding half p99 = delivery latency of the holding half (node B, or the same process), after its warm-up: with two nodes, how far B, outside the closed loop, lags.`,
    )
    out.push('')
    out.push('| N | W | server | deliveries/s | spread | of them the holding half | server CPU µs/delivery | spread | × 1 process | deliveries/write | nodes CPU % (A + B) | tools CPU % | events/s | + Redis µs/delivery | Redis CPU % | Redis µs/event | (schedstat) | above idle | holding half p99 ms | lost | dup | streams per node |')
    out.push('|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|')
    for (const n of S.costNs) {
      for (const w of S.windows) {
        const base = med(res.cost.filter((r) => r.n === n && r.w === w && r.kind === ONE), (r) => r.window.usPerDelivery)
        for (const kind of [ONE, TWO]) {
          const runs = res.cost.filter((r) => r.n === n && r.w === w && r.kind === kind)
          if (!runs.length) continue
          const us = med(runs, (r) => r.window.usPerDelivery)
          const two = kind === TWO
          const sp = runs.find((r) => r.spreadOver?.length)?.spreadOver
          const perNode = two ? `${fmt(med(runs, (r) => r.window.perNodePct[0]))} + ${fmt(med(runs, (r) => r.window.perNodePct[1]))}` : fmt(med(runs, (r) => r.window.serverPct))
          out.push(
            `| ${fmt(n)} | ${w} | ${kind} | ${fmt(med(runs, (r) => r.window.deliveriesPerSecond))} | ${spr(runs, (r) => r.window.deliveriesPerSecond)} | ${fmt(med(runs, (r) => r.window.holdPerSecond))} | ${fmt(us, 2)} | ${spr(runs, (r) => r.window.usPerDelivery, 2)} | ${two ? ratio(us, base) : '1.00×'} | ${fmt(med(runs, (r) => r.window.deliveriesPerWrite), 2)} | ${perNode} | ${fmt(med(runs, (r) => r.window.toolsPct))} | ${fmt(med(runs, (r) => r.window.eventsPerSecond))} | ${two ? fmt(med(runs, (r) => r.window.allUsPerDelivery), 2) : '–'} | ${two ? fmt(med(runs, (r) => r.window.redisNsPct), 1) : '–'} | ${two ? fmt(med(runs, (r) => r.window.redisUsPerEvent)) : '–'} | ${two ? fmt(med(runs, (r) => r.window.redisNsUsPerEvent)) : '–'} | ${two ? fmt(med(runs, (r) => r.window.redisAboveIdleUsPerEvent)) : '–'} | ${fmt(medL(runs, (r) => r.hold.latencyMs.p99), 1)} | ${fmt(median(good(runs).map((r) => r.pub.lost + r.hold.lost)))} | ${fmt(median(good(runs).map((r) => r.pub.duplicates + r.hold.duplicates)))} | ${sp ? sp.map((x) => fmt(x)).join(' / ') : '–'} |`,
          )
        }
      }
    }
    out.push('')
  }
  if (o.parts.has('latency')) {
    out.push(
      `**2. Latency.** N = ${S.latencyNs.map((n) => fmt(n)).join(' and ')} streams (half per tool), open loop at ${S.latencyRate} events/s for ${S.latencyDuration} s; latency = the event's CLOCK_MONOTONIC stamp (written by the publishing tool) to its read, after each tool's warm-up, in ms. Hop = the cluster's figure − the one process's (target: ≤ 2 ms at p99). At N = ${fmt(S.latencyNs[0])} a stream's latency is mostly its place in the fan-out (each process writes its streams one after another, and the tools read theirs the same way), which two nodes halve; at N = ${fmt(S.latencyNs.at(-1))} the fan-out is negligible and the difference is the Redis round trips alone.`,
    )
    out.push('')
    out.push('| N | server | publishing half p50 | p99 | spread p99 | holding half p50 | p99 | spread p99 | max (both) | events/s | lost | dup |')
    out.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (const n of S.latencyNs) for (const kind of [ONE, TWO]) {
      const runs = res.latency.filter((r) => r.kind === kind && r.n === n)
      if (!runs.length) continue
      out.push(
        `| ${fmt(n)} | ${kind} | ${fmt(medL(runs, (r) => r.pub.latencyMs.p50), 2)} | ${fmt(medL(runs, (r) => r.pub.latencyMs.p99), 2)} | ${sprL(runs, (r) => r.pub.latencyMs.p99)} | ${fmt(medL(runs, (r) => r.hold.latencyMs.p50), 2)} | ${fmt(medL(runs, (r) => r.hold.latencyMs.p99), 2)} | ${sprL(runs, (r) => r.hold.latencyMs.p99)} | ${fmt(medL(runs, (r) => Math.max(r.pub.latencyMs.max, r.hold.latencyMs.max)), 1)} | ${fmt(med(runs, (r) => r.window.eventsPerSecond), 1)} | ${fmt(median(good(runs).map((r) => r.pub.lost + r.hold.lost)))} | ${fmt(median(good(runs).map((r) => r.pub.duplicates + r.hold.duplicates)))} |`,
      )
    }
    out.push('')
  }
  if (o.parts.has('storm')) {
    out.push(
      `**3. Storm.** ${fmt(S.storm)} streams on node A (raw clients in one process); events through node B at ${S.stormRate}/s; \`kill -9\` A once every stream has the latest; each client reconnects to B as soon as its socket closes, with \`Last-Event-ID\`. Times in ms from the kill: "ready" = \`ready\` on B; "back" = has every event B acknowledged before its \`ready\` came (its replay). Exact = the stream's ids over the whole run (on A, then on B) are exactly B's acknowledged ids, in order. B's RSS in MiB: before the kill → sampled peak (VmHWM at the end). B CPU = node B's CPU from the kill to all back.`,
    )
    out.push('')
    out.push('| round | open on A | A\'s sockets closed (ms) | ready p50 / p99 / max | back p50 / p99 / max | not back | replay per stream p50 / max | exact | gaps | dups | order | resets | retries (statuses) | listen overflows | B RSS | B CPU s | Redis CPU s | clients CPU s | events |')
    out.push('|---:|---:|---|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|')
    for (const r of res.storm) {
      if (r.error) {
        out.push(`| ${r.round} | ERROR ${r.error} ||||||||||||||||||`)
        continue
      }
      out.push(
        `| ${r.round} | ${fmt(r.initialReady)}/${fmt(r.n)} | ${fmt(r.firstCloseMs)}–${fmt(r.lastCloseMs)} (${fmt(r.closed)}) | ${fmt(r.readyP50)} / ${fmt(r.readyP99)} / ${fmt(r.readyMax)} | ${fmt(r.backP50)} / ${fmt(r.backP99)} / ${fmt(r.backMax)} | ${fmt(r.notBack)} | ${fmt(r.missedP50)} / ${fmt(r.missedMax)} | ${fmt(r.exact)} | ${fmt(r.withGap)} | ${fmt(r.withDup)} | ${fmt(r.outOfOrder)} | ${fmt(r.resets)} | ${fmt(r.retries)} ${JSON.stringify(r.statuses).replaceAll('"', '')} | ${fmt(r.listenOverflows)} | ${mib(r.rssBefore)} → ${mib(r.rssPeak)} (${mib(r.hwmEnd)}) | ${fmt(r.bCpuS, 2)} | ${fmt(r.redisCpuS, 2)} | ${fmt(r.helperCpuS, 1)} | ${fmt(r.published)} |`,
      )
    }
    const st = res.storm.filter((r) => !r.error)
    if (st.length > 1) {
      const m = (f, d = 0) => fmt(median(st.map(f)), d)
      out.push(`| median | | | ${m((r) => r.readyP50)} / ${m((r) => r.readyP99)} / ${m((r) => r.readyMax)} | ${m((r) => r.backP50)} / ${m((r) => r.backP99)} / ${m((r) => r.backMax)} | ${m((r) => r.notBack)} | | ${m((r) => r.exact)} | | | | | | | ${mib(median(st.map((r) => r.rssBefore)))} → ${mib(median(st.map((r) => r.rssPeak)))} (${mib(median(st.map((r) => r.hwmEnd)))}) | ${m((r) => r.bCpuS, 2)} | ${m((r) => r.redisCpuS, 2)} | | |`)
    }
    out.push('')
  }
  out.push(...summary(o, res).map((l) => `- ${l}`))
  for (const n of notes) out.push(`- ${n}`)
  const data = { label: o.label, date: m.date, build, quick: o.quick, rounds: o.rounds, minutes: res.minutes, ...compact(res) }
  out.push('', `<!-- redis-data ${JSON.stringify(data).replaceAll('--', '\\u002d\\u002d') /* `--` may not appear in an HTML comment; only strings hold it */} -->`)
  return `<!-- redis-label:${o.label}:begin -->\n${out.join('\n')}\n<!-- redis-label:${o.label}:end -->`
}

/** The sentences that answer the issue: the ratio, the hop, the storm. */
function summary(o, res) {
  const S = o.sizes
  const lines = []
  if (res.cost.length) {
    const us = (kind, n, w) => med(res.cost.filter((r) => r.kind === kind && r.n === n && r.w === w), (r) => r.window.usPerDelivery)
    const redisUs = (n, w, f) => med(res.cost.filter((r) => r.kind === TWO && r.n === n && r.w === w), f)
    const parts = S.costNs.flatMap((n) => S.windows.map((w) => `${ratio(us(TWO, n, w), us(ONE, n, w))} at N = ${fmt(n)}, W = ${w}`))
    const perEvent = S.windows.map((w) => `${fmt(redisUs(S.costNs[0], w, (r) => r.window.redisNsUsPerEvent))} at W = ${w} (${fmt(redisUs(S.costNs[0], w, (r) => r.window.redisAboveIdleUsPerEvent))} above idle; /proc/PID/stat: ${fmt(redisUs(S.costNs[0], w, (r) => r.window.redisUsPerEvent))})`)
    lines.push(`Server CPU per delivery, 2 nodes on Redis / one process: ${parts.join('; ')} (target ≤ 1.2×). redis-server's CPU per published event, N = ${fmt(S.costNs[0])} (the most events per window): ${perEvent.join(', ')} µs.`)
  }
  if (res.latency.length) {
    const sign = (x) => (x >= 0 ? `+${fmt(x, 2)}` : fmt(x, 2))
    for (const n of S.latencyNs) {
      const p = (kind, f) => medL(res.latency.filter((r) => r.kind === kind && r.n === n), f)
      const hop = (half, q) => sign(p(TWO, (r) => r[half].latencyMs[q]) - p(ONE, (r) => r[half].latencyMs[q]))
      lines.push(`Latency at ${S.latencyRate} events/s to ${fmt(n)} streams: two nodes on Redis add ${hop('pub', 'p99')} ms at p99 to the publishing node's streams and ${hop('hold', 'p99')} ms to the other node's (p50: ${hop('pub', 'p50')} and ${hop('hold', 'p50')} ms); target ≤ 2 ms at p99.`)
    }
  }
  const st = res.storm.filter((r) => !r.error)
  if (st.length) {
    lines.push(
      `Storm: ${st.map((r) => `${fmt(r.n - r.notBack)}/${fmt(r.n)} back in ${fmt(r.backMax)} ms, ${fmt(r.exact)} exact`).join('; ')} (round by round); node B's peak RSS ${st.map((r) => mib(Math.max(r.rssPeak, r.hwmEnd))).join(', ')} MiB.`,
    )
  }
  return lines
}

/** Per-round figures for later readers (the tables keep medians). */
function compact(res) {
  const n = (x, d = 0) => (Number.isFinite(x) ? +x.toFixed(d) : null)
  const w = ({ window: x }) =>
    x && {
      dps: n(x.deliveriesPerSecond), holdDps: n(x.holdPerSecond), us: n(x.usPerDelivery, 3), usAll: n(x.allUsPerDelivery, 3), perWrite: n(x.deliveriesPerWrite, 2), eps: n(x.eventsPerSecond), pct: x.perNodePct.map((p) => n(p)), tools: n(x.toolsPct),
      redisPct: n(x.redisNsPct, 2), redisUs: n(x.redisUsPerEvent, 1), redisNsUs: n(x.redisNsUsPerEvent, 1), redisAboveIdleUs: n(x.redisAboveIdleUsPerEvent, 1), redisIdlePct: n(x.redisIdlePct, 2),
    }
  const lat = (r) => r.pub && r.hold && { pub: r.pub.latencyMs, hold: r.hold.latencyMs, lost: [r.pub.lost, r.hold.lost], dup: [r.pub.duplicates, r.hold.duplicates], connected: [r.pub.connected, r.hold.connected] }
  return {
    cost: res.cost.map((r) => ({ round: r.round, kind: r.kind, n: r.n, w: r.w, error: r.error, spread: r.spreadOver, ...w(r), ...lat(r) })),
    latency: res.latency.map((r) => ({ round: r.round, kind: r.kind, n: r.n, error: r.error, ...lat(r) })),
    storm: res.storm,
  }
}

function sectionText(blocks) {
  return labelledSection('## Across machines: `--redis URL` (issue 13, "Measure")', '`node bench/redis.mjs --label NAME` writes this section (do not edit it by hand), one block per label; its header says how each figure is made. Figures are from a shared 2-core VM on which the rawsse nodes, redis-server and the load tools all share both cores (a real cluster would have a machine per node); treat differences under about 20 % as noise.', blocks)
}



// ---------------------------------------------------------------------------------------------
// The run.

function parseFlags(argv) {
  const quick = argv.includes('--quick')
  const { get, num, list, done } = flagReader(argv, ['quick'])
  const o = {
    quick,
    sizes: quick ? QUICK : FULL,
    cli: get('cli') ?? CLI,
    rounds: num('rounds', quick ? 1 : 3),
    parts: new Set(list('parts', 'cost,latency,storm')),
    storm: get('storm'),
    label: get('label') ?? (quick ? 'quick' : 'current'),
    // A quick run checks the script: it writes nowhere unless told where.
    out: get('out') !== undefined ? path.resolve(get('out')) : quick ? null : path.join(BENCH, 'RESULTS.md'),
  }
  done()
  if (o.storm !== undefined) {
    const n = Number(o.storm)
    if (!Number.isInteger(n) || n < 1 || n > 18_000) throw new Error('--storm must be a whole number of streams from 1 to 18 000 (one client process, 20 000 open files)')
    o.sizes = { ...o.sizes, storm: n }
  }
  if (!/^[\w.-]+$/.test(o.label)) throw new Error(`--label must be letters, digits, . _ or -, not '${o.label}'`)
  o.cli = buildAt(o.cli) // a file as is, else a commit built in a temporary worktree (lib.mjs)
  if (!Number.isInteger(o.rounds) || o.rounds < 1) throw new Error('--rounds must be a whole number ≥ 1')
  for (const p of o.parts) if (!['cost', 'latency', 'storm'].includes(p)) throw new Error(`--parts: cost, latency, storm; not '${p}'`)
  return o
}

async function main() {
  const argv = process.argv.slice(2)
  const o = parseFlags(argv)
  const help = spawnSync(process.execPath, [o.cli, 'bench', '--help'], { encoding: 'utf8' })
  if (help.status !== 0) throw new Error(`the load tool is missing: \`node ${o.cli} bench --help\` failed\n${tail(help.stderr || help.stdout, 300)}`)
  if (!redisBin()) throw new Error('redis-server is not installed (apt-get install redis-server)')
  const limitS = o.quick ? 480 : 2700
  setTimeout(() => {
    process.stderr.write(`redis: the run passed its ${limitS} s bound; stopping every process started here\n`)
    killAll()
    process.exit(3)
  }, limitS * 1000).unref()
  const m = machine()
  const build = buildCommit(o.cli)
  const command = `node bench/redis.mjs${argv.length ? ' ' + shellJoin(argv) : ''}`
  process.stderr.write(`redis: ${o.cli} (git ${build}), label ${o.label}, ${o.rounds} round(s), parts ${[...o.parts].join(',')}\n`)
  const notes = []
  const res = { cost: [], latency: [], storm: [] }
  const t0 = Date.now()
  if (o.parts.has('cost')) {
    await waitForQuiet(o, 'cost', notes)
    res.cost = await costPart(o, notes)
  }
  if (o.parts.has('latency')) {
    await waitForQuiet(o, 'latency', notes)
    res.latency = await latencyPart(o, notes)
  }
  if (o.parts.has('storm')) {
    await waitForQuiet(o, 'storm', notes)
    res.storm = await stormPart(o, notes)
  }
  res.minutes = (Date.now() - t0) / 60000
  const block = labelBlock(o, m, command, build, res, notes)
  process.stdout.write(block + '\n')
  if (o.out === null) {
    process.stderr.write('--quick without --out: nothing written\n')
  } else {
    placeSectionAfter(o.out, 'redis', 'workers')
    const blocks = labelBlocks(readSection(o.out, 'redis'), 'redis')
    blocks.set(o.label, block)
    writeSection(o.out, 'redis', sectionText(blocks))
    process.stderr.write(`wrote the ${o.label} block of the redis section of ${path.relative(process.cwd(), o.out) || o.out}\n`)
  }
  killAll()
  process.exit(0)
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  if (process.argv[2] === '--helper') {
    const [, , , mode, json] = process.argv
    if (mode !== 'storm') {
      process.stderr.write(`redis: unknown helper '${mode}'\n`)
      process.exit(2)
    }
    stormHelper(JSON.parse(json)).catch((err) => {
      process.stderr.write(`storm: ${err.stack ?? err.message}\n`)
      process.exit(1)
    })
  } else {
    main().catch((err) => {
      process.stderr.write(`redis: ${err.message}\n`)
      killAll()
      process.exit(1)
    })
  }
}
