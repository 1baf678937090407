// What every part of bench/redis.mjs shares: the processes measured (a fresh Redis and two rawsse
// nodes on it, or one plain rawsse process), their CPU, writes and memory read from /proc, and the
// machine's discipline (wait for a quiet machine, note a busy core). bench/redis.mjs's header says
// how the processes are started and why nothing is pinned.

import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { binNodeFlags, BUSY_LIMIT, busiestCorePercent, childPids, fmt, freePort, listeningUrl, PUBLISH_TOKEN, rssBytes, run, sleep, startProcess } from '../lib.mjs'

const CLK_TCK = 100 // USER_HZ of /proc/PID/stat times on every mainstream Linux
const LOAD_LIMIT = 0.8 // 1-minute load average under which a part starts
export const REDIS_IDLE_MS = 3000 // redis-server's idle CPU is read over this long when a cluster starts
export const ONE = 'one process'
export const TWO = '2 nodes on Redis'
export const mib = (b) => fmt(b / 2 ** 20, 1)

// ---------------------------------------------------------------------------------------------
// /proc: CPU and memory.

export function attempt(f, otherwise) {
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
export const cpuOf = (pid) => [pid, ...childPids(pid)].reduce((n, p) => n + ticks(p), 0) / CLK_TCK
export const rss = rssBytes
/** CPU nanoseconds of every thread of a process (/proc/PID/task/TID/schedstat, first field): the utime+stime of /proc/PID/stat at a finer grain than its 10 ms ticks. */
function cpuNs(pid) {
  const tids = attempt(() => readdirSync(`/proc/${pid}/task`), [])
  return tids.reduce((n, t) => n + Number(attempt(() => readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8'), '0 ').split(' ')[0]), 0)
}
/** Write system calls so far (/proc/PID/io syscw) of a process and its children: how many writes its deliveries took. */
const writesOf = (pid) => [pid, ...childPids(pid)].reduce((n, p) => n + Number(/syscw:\s+(\d+)/.exec(attempt(() => readFileSync(`/proc/${p}/io`, 'utf8'), ''))?.[1] ?? NaN), 0)
/** VmHWM: the peak resident memory of a process so far, in bytes. */
export function hwmBytes(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(attempt(() => readFileSync(`/proc/${pid}/status`, 'utf8'), ''))
  return m ? Number(m[1]) * 1024 : NaN
}

/** CPU of every process of a setup and of the load tools, at one instant. */
export function cpuSample(setup, toolPids) {
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

export function redisBin() {
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
export async function startSetup(o, kind) {
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

export async function stopSetup(setup) {
  for (const n of setup.nodes) await n.proc.stop()
  await setup.redis?.proc.stop()
}

export const nodeStats = (port) =>
  fetch(`http://127.0.0.1:${port}/stats`, { headers: { authorization: `Bearer ${PUBLISH_TOKEN}` }, signal: AbortSignal.timeout(5000) }).then((r) => (r.ok ? r.json() : null), () => null)

// ---------------------------------------------------------------------------------------------
// Machine discipline.

export async function busyNote(what, notes) {
  const busy = await busiestCorePercent()
  if (busy > BUSY_LIMIT) notes.push(`${what}: a core was ${fmt(busy)} % busy with other work just before the run; its numbers are suspect`)
}

/** Waits until the 1-minute load average is under LOAD_LIMIT (at most 5 min; --quick 1), and notes it. */
export async function waitForQuiet(o, part, notes) {
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
