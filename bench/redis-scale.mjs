// What one Redis carries per node (issue 13, "Beyond this machine, on paper"): redis-server's CPU
// per published event with M = 1, 2, 4, 8 rawsse nodes reading the stream, at a fixed rate, no
// streams open (so the nodes' own cost is the bus alone: the read, the parse, the snapshot).
//
//   node bench/redis-scale.mjs [--cli PATH|COMMIT] [--nodes 1,2,4,8] [--rate 500] [--seconds 10] [--rounds 3]
//
// For each M: a fresh redis-server (free loopback port, temporary dir, `--save '' --appendonly
// no`), M nodes (`--redis URL --tick 0 --heartbeat 0 --log off`), then redis-server's idle CPU over
// 3 s (blocking reads, snapshots), then publishes at --rate for --seconds through node 1 (one
// keep-alive connection per 10 ms tick, in parallel), CPU from /proc/PID/task/*/schedstat (ns).
// Prints a markdown table (medians over rounds, min–max) and the least-squares line redis µs/event
// = a + b·M; writes nothing. Every process is stopped by its PID.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import * as http from 'node:http'
import * as os from 'node:os'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import { binNodeFlags, buildAt, CLI, flagReader, fmt, freePort, killAll, listeningUrl, median, PUBLISH_TOKEN, sleep, spread, startProcess } from './lib.mjs'

const IDLE_MS = 3000

/** CPU time of a process, all threads, in ns. */
function cpuNs(pid) {
  let ns = 0
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0])
    } catch {}
  }
  return ns
}

async function startRedis() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-scale-'))
  const port = await freePort()
  const { proc } = await startProcess('redis-server', '/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], {
    ready: (out) => out.includes('Ready to accept connections'),
  })
  return { proc, url: `redis://127.0.0.1:${port}`, dir }
}

async function startNode(cli, url, i) {
  const args = [...binNodeFlags(cli), cli, '--port', '0', '--redis', url, '--redis-prefix', 'scale', '--tick', '0', '--heartbeat', '0', '--log', 'off', '--publish-token', PUBLISH_TOKEN]
  const { proc, value } = await startProcess(`node-${i}`, process.execPath, args, { ready: listeningUrl, timeoutMs: 20_000 })
  return { proc, url: value }
}

/** Publishes at `rate` events/s for `seconds` to `base`; resolves to how many were answered 200. */
async function publishAtRate(base, rate, seconds) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
  const url = new URL('/publish', base)
  let ok = 0
  const post = () =>
    new Promise((resolve) => {
      const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers: { authorization: `Bearer ${PUBLISH_TOKEN}` } }, (res) => {
        res.resume().on('end', () => ((ok += res.statusCode === 200 ? 1 : 0), resolve()))
      })
      req.on('error', () => resolve())
      req.end('x'.repeat(64))
    })
  const inFlight = []
  const ticks = seconds * 100
  const started = Date.now()
  for (let k = 0; k < ticks; k++) {
    const due = Math.round(((k + 1) * rate) / 100) - Math.round((k * rate) / 100)
    for (let j = 0; j < due; j++) inFlight.push(post())
    const wait = started + (k + 1) * 10 - Date.now()
    if (wait > 0) await sleep(wait)
  }
  await Promise.all(inFlight)
  agent.destroy()
  return ok
}

async function measure(o, m) {
  const redis = await startRedis()
  const nodes = []
  try {
    for (let i = 1; i <= m; i++) nodes.push(await startNode(o.cli, redis.url, i))
    await sleep(1500) // every node's first snapshots
    const r0 = cpuNs(redis.proc.pid)
    await sleep(IDLE_MS)
    const idleNsPerS = (cpuNs(redis.proc.pid) - r0) / (IDLE_MS / 1000)
    const before = { redis: cpuNs(redis.proc.pid), nodes: nodes.map((n) => cpuNs(n.proc.pid)), t: process.hrtime.bigint() }
    const events = await publishAtRate(nodes[0].url, o.rate, o.seconds)
    const seconds = Number(process.hrtime.bigint() - before.t) / 1e9
    const redisNs = cpuNs(redis.proc.pid) - before.redis
    const nodeNs = nodes.map((n, i) => cpuNs(n.proc.pid) - before.nodes[i])
    return {
      m,
      eps: events / seconds,
      redisUs: redisNs / 1000 / events,
      redisAboveIdleUs: (redisNs - idleNsPerS * seconds) / 1000 / events,
      publisherUs: nodeNs[0] / 1000 / events,
      readerUs: m > 1 ? median(nodeNs.slice(1)) / 1000 / events : NaN,
      redisPct: (redisNs / 1e9 / seconds) * 100,
    }
  } finally {
    for (const n of nodes) await n.proc.stop()
    await redis.proc.stop()
    rmSync(redis.dir, { recursive: true, force: true })
  }
}

async function main() {
  const f = flagReader(process.argv.slice(2))
  const o = { cli: f.get('cli') ?? CLI, nodes: f.list('nodes', '1,2,4,8').map(Number), rate: f.num('rate', 500), seconds: f.num('seconds', 10), rounds: f.num('rounds', 3) }
  f.done()
  o.cli = buildAt(o.cli) // a file as is, else a commit built in a temporary worktree (lib.mjs)
  const runs = []
  for (let round = 1; round <= o.rounds; round++) for (const m of o.nodes) runs.push(await measure(o, m))
  const rows = o.nodes.map((m) => runs.filter((r) => r.m === m))
  const col = (rs, k, d = 1) => `${fmt(median(rs.map((r) => r[k])), d)} (${spread(rs.map((r) => r[k]), d)})`
  console.log(`node bench/redis-scale.mjs ${process.argv.slice(2).join(' ')} — ${new Date().toISOString()}, ${os.cpus().length} CPUs, ${o.rounds} rounds, ${o.rate} events/s of 64 bytes for ${o.seconds} s\n`)
  console.log('| M nodes | events/s | redis-server µs/event | above its idle | redis-server % of a core | publishing node µs/event | each other node µs/event |')
  console.log('|---:|---:|---:|---:|---:|---:|---:|')
  for (const rs of rows) console.log(`| ${rs[0].m} | ${fmt(median(rs.map((r) => r.eps)))} | ${col(rs, 'redisUs')} | ${col(rs, 'redisAboveIdleUs')} | ${col(rs, 'redisPct')} | ${col(rs, 'publisherUs')} | ${rs[0].m > 1 ? col(rs, 'readerUs') : '–'} |`)
  // Least squares over the medians: redis µs/event = a + b·M.
  const xs = rows.map((rs) => rs[0].m)
  const ys = rows.map((rs) => median(rs.map((r) => r.redisAboveIdleUs)))
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length
  const my = ys.reduce((a, b) => a + b, 0) / ys.length
  const b = xs.reduce((s, x, i) => s + (x - mx) * (ys[i] - my), 0) / xs.reduce((s, x) => s + (x - mx) ** 2, 0)
  console.log(`\nredis-server µs per event above idle ≈ ${fmt(my - b * mx, 1)} + ${fmt(b, 1)} × M`)
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => killAll(),
    (err) => {
      console.error(`redis-scale: ${err.message}`)
      killAll()
      process.exit(1)
    },
  )
}
