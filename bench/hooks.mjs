// The application in the loop (docs/hooks.md), measured on the built CLI:
//
//   npm run build && node bench/hooks.mjs [--streams 10000] [--grace 5000] [--churn-seconds 30]
//                                         [--opens 3000] [--concurrency 100] [--only grace,churn,auth] [--write]
//
// - grace: N streams of N users; once their `user.online`s are told, every stream drops and
//   reconnects at once, within the grace window: webhooks told after it (0 expected), how long
//   the reconnection took, the server's RSS before, at its peak and after.
// - churn: N streams; each second 1 % of them close and 1 % new users connect, for --churn-seconds;
//   the server's CPU (utime+stime) with --webhook against the same churn without, and the webhook
//   calls per second the receiver got.
// - auth: --opens stream opens, --concurrency at a time, each timed from connect to `ready`:
//   a static token; --auth-url asked for every stream (a new cookie each); --auth-url answering
//   `max-age` for one cookie (remembered). Opens per second and p50/p99.
//
// The application (receiver and auth-url) is a node:http server in this process; the server under
// test is one rawsse process (dist/cli.js, as the bin runs it). With --write the section "hooks"
// of bench/RESULTS.md is replaced. Run on a quiet machine: the busiest core is read first.

import * as http from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { readFileSync } from 'node:fs'
import {
  BENCH,
  busiestCorePercent,
  CLI,
  flagReader,
  fmt,
  freePort,
  machine,
  machineMarkdown,
  openStream,
  placeSectionAfter,
  quantile,
  rawsseArgv,
  rssBytes,
  sleep,
  sourcesFor,
  startProcess,
  subscribeAttempt,
  SUB_TOKEN,
  writeSection,
} from './lib.mjs'

const flags = flagReader(process.argv.slice(2), ['write'])
const N = flags.num('streams', 10_000)
const GRACE = flags.num('grace', 5000)
const CHURN_S = flags.num('churn-seconds', 30)
const OPENS = flags.num('opens', 3000)
const CONCURRENCY = flags.num('concurrency', 100)
const ONLY = flags.list('only', 'grace,churn,auth')
const WRITE = process.argv.includes('--write')
flags.done()

const SECRET = 'bench-webhook-secret'
const CLK_TCK = 100 // USER_HZ of /proc/PID/stat times on every mainstream Linux
const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-hooks-bench-'))
process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
const USERS = Math.max(N, 1) * 2 // churn connects new users
const usersFile = path.join(dir, 'users.json')
writeFileSync(usersFile, JSON.stringify(Array.from({ length: USERS }, (_, i) => ({ token: `t${i}`, user: `u${i}`, roles: [] }))))

/** utime + stime of a process, in seconds (fields 14 and 15 after the command name's `)`). */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / CLK_TCK
}

/** The application: webhooks counted (204), auth-url answered from the cookie (`sid=NAME`). */
async function startApp() {
  const app = { webhooks: 0, asked: 0, maxAge: 0 }
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (req.method === 'POST') {
        app.webhooks++
        return res.writeHead(204).end()
      }
      app.asked++
      const user = /sid=([^;]+)/.exec(req.headers.cookie ?? '')?.[1] ?? null
      const headers = { 'content-type': 'application/json' }
      if (app.maxAge > 0) headers['cache-control'] = `max-age=${app.maxAge}`
      res.writeHead(200, headers).end(JSON.stringify({ user, roles: [] }))
    })
  })
  server.keepAliveTimeout = 60_000
  const port = await freePort()
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve))
  return { ...app, url: `http://127.0.0.1:${port}/`, server, state: app }
}

async function startServer(extra) {
  const port = await freePort()
  const o = { cli: CLI, serverArgs: [] }
  const argv = rawsseArgv(o, port, { extra: ['--heartbeat', '0', '--log', 'off', '--users', usersFile, '--max-clients', String(USERS + 1000), ...extra] })
  const { proc } = await startProcess('rawsse', argv[0], argv.slice(1), { ready: (out) => /listening on/.test(out), timeoutMs: 20_000 })
  return { proc, port }
}

/** `count` streams of users from `first`, opened 500 at a time; resolves when every one has had `ready`. */
async function openUsers(port, first, count, sources) {
  const sockets = []
  for (let k = 0; k < count; k += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, count - k) }, (_, j) => {
        const i = first + k + j
        return new Promise((resolve) => {
          const s = openStream({ port, path: `/events/t${i}?channel=room`, localAddress: sources[Math.floor((k + j) / 1000) % sources.length], onEvent: (e) => e.event === 'ready' && resolve(), onClose: () => resolve() })
          sockets.push(s)
        })
      }),
    )
  }
  return sockets
}

async function until(probe, ms) {
  const deadline = Date.now() + ms
  while (!probe()) {
    if (Date.now() > deadline) return false
    await sleep(50)
  }
  return true
}

async function grace(app) {
  const { proc, port } = await startServer(['--webhook', app.url, '--webhook-secret', SECRET, '--webhook-grace', String(GRACE)])
  try {
    const base = app.state.webhooks
    let sockets = await openUsers(port, 0, N, sourcesFor(N))
    const told = await until(() => app.state.webhooks - base >= N + 1, GRACE + 30_000)
    await sleep(1000)
    const rssBefore = rssBytes(proc.pid)
    const before = app.state.webhooks
    const onlines = before - base
    const dropped = performance.now()
    for (const s of sockets) s.destroy()
    sockets = await openUsers(port, 0, N, sourcesFor(N))
    const reconnectMs = performance.now() - dropped
    let peak = rssBytes(proc.pid)
    const sampling = setInterval(() => (peak = Math.max(peak, rssBytes(proc.pid))), 100)
    await sleep(GRACE + 2000)
    clearInterval(sampling)
    const after = app.state.webhooks - before
    const rssAfter = rssBytes(proc.pid)
    for (const s of sockets) s.destroy()
    return { streams: N, graceMs: GRACE, onlinesTold: told ? onlines : `only ${onlines}`, reconnectMs: Math.round(reconnectMs), webhooksAfterDrop: after, rssBefore, rssPeak: peak, rssAfter }
  } finally {
    await proc.stop()
  }
}

async function churnOnce(app, webhook) {
  const { proc, port } = await startServer(webhook ? ['--webhook', app.url, '--webhook-secret', SECRET, '--webhook-grace', String(GRACE)] : [])
  try {
    const sources = sourcesFor(N + (N / 100) * CHURN_S)
    const base = app.state.webhooks
    const open = await openUsers(port, 0, N, sources)
    // The N onlines told first, and a moment: the window measures the churn alone.
    if (webhook) await until(() => app.state.webhooks - base >= N + 1, GRACE + 30_000)
    await sleep(2000)
    const per = Math.max(1, Math.round(N / 100))
    let next = N
    const hooksAt = app.state.webhooks
    const cpuAt = cpuSeconds(proc.pid)
    const t0 = performance.now()
    for (let s = 0; s < CHURN_S; s++) {
      const tick = performance.now()
      for (let k = 0; k < per; k++) open.shift()?.destroy()
      open.push(...(await openUsers(port, next, per, sources)))
      next += per
      await sleep(Math.max(0, 1000 - (performance.now() - tick)))
    }
    const seconds = (performance.now() - t0) / 1000
    const cpu = cpuSeconds(proc.pid) - cpuAt
    const calls = app.state.webhooks - hooksAt
    for (const s of open) s.destroy()
    return { cpuPercent: (100 * cpu) / seconds, webhooksPerSecond: calls / seconds, seconds }
  } finally {
    await proc.stop()
  }
}

async function opens(port, cookieOf) {
  const ms = []
  let failed = 0
  let i = 0
  const t0 = performance.now()
  const sources = sourcesFor(OPENS)
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (i < OPENS) {
        const k = i++
        const cookie = cookieOf(k)
        const r = await subscribeAttemptWith(port, cookie === null ? `/events/${SUB_TOKEN}?channel=room` : '/events?channel=room', cookie, sources[Math.floor(k / 1000) % sources.length])
        if (r.ok) ms.push(r.ms)
        else failed++
      }
    }),
  )
  const seconds = (performance.now() - t0) / 1000
  return { opensPerSecond: ms.length / seconds, p50: quantile(ms, 0.5), p99: quantile(ms, 0.99), failed }
}

/** subscribeAttempt with a Cookie header (lib's takes none): timed from connect to `ready`. */
function subscribeAttemptWith(port, target, cookie, localAddress) {
  if (cookie === null) return subscribeAttempt({ port, path: target, localAddress })
  return new Promise((resolve) => {
    const t0 = performance.now()
    const s = openStream({
      port,
      path: target,
      headers: { Cookie: cookie },
      localAddress,
      onEvent: (e) => {
        if (e.event !== 'ready') return
        resolve({ ok: true, ms: performance.now() - t0 })
        s.destroy()
      },
      onClose: () => resolve({ ok: false }),
    })
  })
}

async function auth(app) {
  const out = {}
  for (const [name, extra, cookieOf, maxAge] of [
    ['static token', [], () => null, 0],
    ['--auth-url, asked each time', ['--auth-url', app.url], (k) => `sid=u${k}`, 0],
    ['--auth-url, remembered (max-age)', ['--auth-url', app.url], () => 'sid=u1', 60],
  ]) {
    app.state.maxAge = maxAge
    const askedBefore = app.state.asked
    const { proc, port } = await startServer(extra)
    try {
      out[name] = { ...(await opens(port, cookieOf)), asked: app.state.asked - askedBefore }
    } finally {
      await proc.stop()
    }
  }
  return out
}

const busy = await busiestCorePercent()
if (busy > 15) process.stderr.write(`warning: the busiest core was ${fmt(busy)} % busy before the run: the figures are not to be trusted\n`)
const app = await startApp()
const results = { machine: machine(), busiestCoreBefore: busy }
if (ONLY.includes('grace')) results.grace = await grace(app)
if (ONLY.includes('churn')) {
  const without = await churnOnce(app, false)
  const withHooks = await churnOnce(app, true)
  results.churn = { without, with: withHooks }
}
if (ONLY.includes('auth')) results.auth = await auth(app)
app.server.close()
console.log(JSON.stringify(results))

if (WRITE) {
  const mib = (b) => `${fmt(b / 2 ** 20, 1)} MiB`
  const lines = ['## The application in the loop: `--auth-url` and webhooks', '', `\`node bench/hooks.mjs --streams ${N} --grace ${GRACE} --churn-seconds ${CHURN_S} --opens ${OPENS} --concurrency ${CONCURRENCY} --write\``, '', machineMarkdown(results.machine), `- The busiest core before the run: ${fmt(busy)} %`, '']
  const g = results.grace
  if (g) lines.push(`**Grace window.** ${g.streams} streams of ${g.streams} users, \`--webhook-grace ${g.graceMs}\`: once their onlines were told (${g.onlinesTold} webhooks), every stream dropped and reconnected in ${fmt(g.reconnectMs)} ms; webhooks told after: **${g.webhooksAfterDrop}**. Server RSS ${mib(g.rssBefore)} before, ${mib(g.rssPeak)} at the peak, ${mib(g.rssAfter)} after.`, '')
  const c = results.churn
  if (c) lines.push(`**Churn.** ${N} streams, 1 % closing and 1 % new users connecting each second for ${CHURN_S} s: server CPU ${fmt(c.without.cpuPercent, 1)} % of a core without \`--webhook\`, ${fmt(c.with.cpuPercent, 1)} % with it (${fmt(c.with.webhooksPerSecond, 1)} webhook calls/s to the receiver).`, '')
  const a = results.auth
  if (a) {
    lines.push(`**Stream opens** (${OPENS} opens, ${CONCURRENCY} at a time, connect to \`ready\`; the application answers at once, in the bench's process):`, '', '| credential | opens/s | p50 ms | p99 ms | asked | failed |', '|---|---:|---:|---:|---:|---:|')
    for (const [name, r] of Object.entries(a)) lines.push(`| ${name} | ${fmt(r.opensPerSecond)} | ${fmt(r.p50, 1)} | ${fmt(r.p99, 1)} | ${r.asked} | ${r.failed} |`)
  }
  const file = path.join(BENCH, 'RESULTS.md')
  placeSectionAfter(file, 'hooks', 'auth') // beside the other issue sections, above the hand-written ones
  writeSection(file, 'hooks', lines.join('\n'), ['fanout', 'http', 'hostile', 'hooks'])
}
process.exit(0)
