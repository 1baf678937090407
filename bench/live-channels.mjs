// Live channels (issue 24, "Measure"): what a change of an open stream's channels costs.
//
//   node bench/live-channels.mjs [--parts latency,storm] [--changes 200] [--streams 10000] [--seconds 30]
//       [--cli PATH|COMMIT] [--quick] [--write]
//
// latency: the change as its caller sees it, from writing `POST /clients/ID/channels` (the
// stream's key, a connection of its own) to reading the stream's `channels` event, --changes
// times one after the other (the stream flips between two channels), p50, p99 and max, for one
// process; `--workers 2`, counting only the changes a worker that does not hold the stream
// answered (each POST is followed on its connection by a stream opened there, whose id block
// names that worker); two processes on one fresh redis-server, the change asked of the process
// that does not hold the stream (skipped without /usr/bin/redis-server).
//
// storm: a page flip, --streams streams on one process (raw node:net clients in this process,
// from source addresses of this run), each on `news` and one of 100 pages; every second each
// stream asks once to move to another page (remove the page it is on, add another; 64 keep-alive
// connections carry the changes), while 20 events a second go to random pages and 1 a second to
// news, for --seconds. Measured: the server's event-loop delay (bench/loop-monitor.mjs, loaded
// with --import: the max of each 100 ms; the issue's bound is 50 ms), its CPU per change
// (/proc utime+stime over the storm, less the CPU of the same publishing without changes for 5 s
// before it, divided by the changes answered), its RSS once the streams are open, at the peak,
// and 10 s after the storm (memory comes back), the answers' statuses, and whether each stream
// got one `channels` event per change answered.
//
// Nothing is pinned and nothing waits for a quiet machine: before each part the busiest core's
// use is read and a figure over 15 % is noted beside the results (the numbers are then suspect).
// --quick: 10 changes, 300 streams, 4 s: a check of the script. --write replaces the section
// `live-channels` of bench/RESULTS.md (never with --quick). Every process started here is stopped
// by its PID, also on errors and Ctrl-C.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { BENCH, binNodeFlags, buildAt, busiestCorePercent, BUSY_LIMIT, CLI, flagReader, fmt, freePort, Http, killAll, listeningUrl, machine, machineMarkdown, openStream, PUBLISH_TOKEN, quantile, rng, shellJoin, sleep, sourcesFor, PER_SOURCE, placeSectionAfter, startProcess, writeSection } from './lib.mjs'
import { cpuOf, mib, redisBin, rss, startSetup, stopSetup, TWO } from './redis/cluster.mjs'

const flags = flagReader(process.argv.slice(2), ['quick', 'write'])
const quick = process.argv.includes('--quick')
const o = {
  parts: flags.list('parts', 'latency,storm'),
  changes: flags.num('changes', quick ? 10 : 200),
  streams: flags.num('streams', quick ? 300 : 10_000),
  seconds: flags.num('seconds', quick ? 4 : 30),
  cli: buildAt(flags.get('cli') ?? CLI),
  quick,
  write: process.argv.includes('--write'),
  serverArgs: [],
}
flags.done()
const BLOCK = 1 << 16 // CLIENT_ID_BLOCK: a worker's stream ids
const PAGES = 100
const LOOP_BOUND_MS = 50

// ---------------------------------------------------------------------------------------------
// Servers.

/** One rawsse (`extra`: e.g. --workers 2), stream and publish token PUBLISH_TOKEN; `loopLog` loads the loop monitor. */
async function server(name, extra = [], loopLog = null) {
  const port = await freePort()
  const imports = loopLog === null ? [] : ['--import', path.join(BENCH, 'loop-monitor.mjs')]
  if (loopLog !== null) process.env.RAWSSE_LOOP_LOG = loopLog
  const args = [...binNodeFlags(o.cli), ...imports, o.cli, '--port', String(port), '--tick', '0', '--heartbeat', '0', '--publish-token', PUBLISH_TOKEN, '--max-clients', '20000', '--log', 'off', ...extra]
  const { proc } = await startProcess(name, process.execPath, args, { ready: listeningUrl, withChildren: true, timeoutMs: 30_000 })
  delete process.env.RAWSSE_LOOP_LOG
  return { proc, pid: proc.pid, port }
}

/** A stream whose `ready` and `channels` events are handed to `on`; resolves once ready. */
function stream(port, query, on = () => {}, localAddress) {
  return new Promise((resolve, reject) => {
    const s = { client: 0, key: '', socket: null }
    s.socket = openStream({
      port,
      path: `/events/${PUBLISH_TOKEN}?${query}`,
      localAddress,
      onEvent: (e) => {
        if (e.event === 'ready') {
          const r = JSON.parse(e.data)
          s.client = r.client
          s.key = r.key
          resolve(s)
        }
        on(e)
      },
      onClose: (err) => reject(new Error(`stream closed: ${err}`)),
    })
  })
}

/** One request on a connection of its own, and (`probe`) a stream opened after it there: resolves with the status and the probe's worker. */
function oneShot(port, s, body, probe) {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1')
    let got = ''
    c.setEncoding('latin1')
    const req = `POST /clients/${s.client}/channels HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.key}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${probe ? '' : 'Connection: close\r\n'}\r\n${body}`
    c.write(probe ? req + `GET /events/${PUBLISH_TOKEN}?channel=probe HTTP/1.1\r\nHost: x\r\n\r\n` : req)
    const timer = setTimeout(() => (c.destroy(), reject(new Error(`no answer: ${got.slice(0, 200)}`))), 10_000)
    c.on('data', (d) => {
      got += d
      const m = /"client":(\d+)/.exec(got)
      if (probe ? m === null : !got.includes('\r\n\r\n{')) return
      clearTimeout(timer)
      c.destroy()
      resolve({ status: Number(got.slice(9, 12)), worker: m === null ? null : Math.floor((Number(m[1]) - 1) / BLOCK) })
    })
    c.on('error', (e) => (clearTimeout(timer), reject(e)))
  })
}

// ---------------------------------------------------------------------------------------------
// latency

/**
 * `o.changes` changes of stream `s` (on `streamPort`) asked on `askPort`, one after the other:
 * milliseconds from the write to the `channels` event; `keep(answer)` says which to count.
 */
async function changesTimed(streamPort, askPort, probe, keep) {
  let wake = null
  const s = await stream(streamPort, 'channel=x', (e) => e.event === 'channels' && wake?.(performance.now()))
  const times = []
  const refused = []
  for (let i = 0; times.length < o.changes && i < o.changes * 4; i++) {
    const body = JSON.stringify(i % 2 === 0 ? { add: ['y'], remove: ['x'] } : { add: ['x'], remove: ['y'] })
    const seen = new Promise((r) => (wake = r))
    const t0 = performance.now()
    const a = await oneShot(askPort, s, body, probe)
    const t1 = await seen
    if (a.status !== 200) refused.push(a.status)
    else if (keep(s, a)) times.push(t1 - t0)
  }
  s.socket.destroy()
  if (refused.length > 0) throw new Error(`changes refused: ${refused.join(', ')}`)
  return times
}

const summary = (ms) => ({ n: ms.length, p50: quantile(ms, 0.5), p99: quantile(ms, 0.99), max: Math.max(...ms) })

async function latencyPart(notes) {
  const rows = []
  const busy = async (what) => {
    const b = await busiestCorePercent()
    if (b > BUSY_LIMIT) notes.push(`latency, ${what}: a core was ${fmt(b)} % busy with other work before the run; its figures are suspect`)
  }
  {
    const srv = await server('rawsse')
    try {
      await busy('one process')
      rows.push(['one process', summary(await changesTimed(srv.port, srv.port, false, () => true))])
    } finally {
      await srv.proc.stop()
    }
  }
  {
    const srv = await server('rawsse --workers 2', ['--workers', '2'])
    try {
      await busy('--workers 2')
      rows.push(['`--workers 2`, asked of the other worker', summary(await changesTimed(srv.port, srv.port, true, (s, a) => a.worker !== Math.floor((s.client - 1) / BLOCK)))])
    } finally {
      await srv.proc.stop()
    }
  }
  if (redisBin() === null) notes.push('latency, 2 nodes on Redis: not run (no redis-server)')
  else {
    const setup = await startSetup(o, TWO)
    try {
      await busy('2 nodes on Redis')
      const [a, b] = setup.nodes
      rows.push(['2 processes on Redis, asked of the other', summary(await changesTimed(a.port, b.port, false, () => true))])
    } finally {
      await stopSetup(setup)
    }
  }
  return rows
}

// ---------------------------------------------------------------------------------------------
// storm

async function stormPart(notes) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-live-'))
  const loopLog = path.join(dir, 'loop.log')
  const srv = await server('rawsse (storm)', ['--history', '1000'], loopLog)
  const random = rng(24)
  const publishers = [new Http(srv.port), new Http(srv.port)]
  const carriers = Array.from({ length: 64 }, () => new Http(srv.port))
  const streams = []
  let channelsEvents = 0
  try {
    // Open the streams, 500 at a time, from this run's source addresses.
    const sources = sourcesFor(o.streams)
    for (let i = 0; i < o.streams; i += 500) {
      const batch = Array.from({ length: Math.min(500, o.streams - i) }, (_, k) => {
        const n = i + k
        const page = n % PAGES
        return stream(srv.port, `channel=news&channel=p${page}`, (e) => e.event === 'channels' && channelsEvents++, sources[Math.floor(n / PER_SOURCE)]).then((s) => Object.assign(s, { page, changes: 0 }))
      })
      streams.push(...(await Promise.all(batch)))
    }
    const b = await busiestCorePercent()
    if (b > BUSY_LIMIT) notes.push(`storm: a core was ${fmt(b)} % busy with other work before the run; its figures are suspect`)
    const rssOpen = rss(srv.pid)

    let publishing = true
    const publisher = (async () => {
      for (let n = 0; publishing; n++) {
        const target = n % 21 === 0 ? 'news' : `p${Math.floor(random() * PAGES)}`
        await publishers[n % 2].request('POST', `/publish?channel=${target}`, { headers: { authorization: `Bearer ${PUBLISH_TOKEN}` }, body: `event ${n}` }).catch(() => {})
        await sleep(1000 / 21)
      }
    })()
    // The same publishing without changes first: the CPU the storm is compared against.
    await sleep(1000)
    const base0 = { cpu: cpuOf(srv.pid), at: Date.now() }
    await sleep(5000)
    const baseline = (cpuOf(srv.pid) - base0.cpu) / ((Date.now() - base0.at) / 1000)

    const statuses = new Map()
    let peak = rss(srv.pid)
    const rssTimer = setInterval(() => (peak = Math.max(peak, rss(srv.pid))), 100)
    writeFileSync(loopLog, '')
    const start = { cpu: cpuOf(srv.pid), at: Date.now() }
    // Each stream once a second: a tenth of them every 100 ms, spread over the carriers.
    const tick = 100
    const perTick = Math.ceil((o.streams * tick) / 1000)
    let next = 0
    const inFlight = new Set()
    for (let t = 0; t < (o.seconds * 1000) / tick; t++) {
      const at = Date.now()
      for (let k = 0; k < perTick; k++) {
        const s = streams[next++ % streams.length]
        const to = (s.page + 1 + Math.floor(random() * (PAGES - 1))) % PAGES
        const body = JSON.stringify({ add: [`p${to}`], remove: [`p${s.page}`] })
        s.page = to
        const p = carriers[(next + k) % carriers.length]
          .request('POST', `/clients/${s.client}/channels`, { headers: { authorization: `Bearer ${s.key}` }, body })
          .then(
            (r) => {
              statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
              if (r.status === 200) s.changes++
            },
            () => statuses.set('error', (statuses.get('error') ?? 0) + 1),
          )
        inFlight.add(p)
        void p.finally(() => inFlight.delete(p))
      }
      await sleep(Math.max(0, tick - (Date.now() - at)))
    }
    await Promise.all([...inFlight])
    const end = { cpu: cpuOf(srv.pid), at: Date.now() }
    clearInterval(rssTimer)
    publishing = false
    await publisher
    const answered = statuses.get(200) ?? 0
    const stormS = (end.at - start.at) / 1000
    await sleep(2000) // the last channels events arrive
    const loop = readFileSync(loopLog, 'utf8').trim().split('\n').filter(Boolean).map((l) => Number(l.split(' ')[1]))
    await sleep(8000)
    const rssAfter = rss(srv.pid)
    const changed = streams.reduce((n, s) => n + s.changes, 0)
    return {
      streams: streams.length,
      seconds: stormS,
      answered,
      statuses: Object.fromEntries(statuses),
      changesPerS: answered / stormS,
      cpuPerChangeUs: ((end.cpu - start.cpu - baseline * stormS) * 1e6) / Math.max(1, answered),
      cpuBaselinePerS: baseline,
      loopMaxMs: Math.max(...loop),
      loopOver: loop.filter((ms) => ms > LOOP_BOUND_MS).length,
      loopSamples: loop.length,
      rssOpen,
      rssPeak: peak,
      rssAfter,
      channelsEvents,
      eventsMatch: channelsEvents === changed,
    }
  } finally {
    for (const s of streams) s.socket.destroy()
    for (const h of [...publishers, ...carriers]) h.close()
    await srv.proc.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------
// The report.

async function main() {
  const m = machine()
  const notes = []
  const command = shellJoin(['node', 'bench/live-channels.mjs', ...process.argv.slice(2)])
  const lines = [`## Live channels${o.quick ? ' (QUICK SMOKE RUN: not results)' : ''}`, '', `\`${command}\``, '', machineMarkdown(m), '']
  if (o.parts.includes('latency')) {
    const rows = await latencyPart(notes)
    lines.push(`**A change as its caller sees it**: POST to the stream's \`channels\` event, ${o.changes} changes one after the other, ms.`, '', '| where | changes | p50 | p99 | max |', '|---|---|---|---|---|')
    for (const [what, r] of rows) lines.push(`| ${what} | ${r.n} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${fmt(r.max, 2)} |`)
    lines.push('')
  }
  if (o.parts.includes('storm')) {
    const r = await stormPart(notes)
    lines.push(
      `**Page-flip storm**: ${fmt(r.streams)} streams, each moving to another of ${PAGES} pages once a second for ${fmt(r.seconds, 1)} s, 21 events a second published meanwhile.`,
      '',
      '| changes answered 200 | per second | server CPU per change | event loop, max delay | 100 ms intervals over 50 ms | RSS open → peak → 10 s after | channels events = changes |',
      '|---|---|---|---|---|---|---|',
      `| ${fmt(r.answered)} (${JSON.stringify(r.statuses)}) | ${fmt(r.changesPerS)} | ${fmt(r.cpuPerChangeUs, 1)} µs (baseline ${fmt(r.cpuBaselinePerS * 1000, 1)} ms/s) | ${fmt(r.loopMaxMs, 1)} ms | ${r.loopOver} of ${r.loopSamples} | ${mib(r.rssOpen)} → ${mib(r.rssPeak)} → ${mib(r.rssAfter)} MiB | ${r.eventsMatch ? 'yes' : `no (${r.channelsEvents})`} |`,
      '',
    )
  }
  if (notes.length > 0) lines.push('Notes:', '', ...notes.map((n) => `- ${n}`), '')
  const text = lines.join('\n')
  process.stdout.write(text + '\n')
  // After the redis section (placeSectionAfter keeps it above the hand-written part when it is new).
  const results = path.join(BENCH, 'RESULTS.md')
  if (o.write && !o.quick) (placeSectionAfter(results, 'live-channels', 'redis'), writeSection(results, 'live-channels', text))
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench/live-channels.mjs: ${err.stack ?? err}\n`)
    killAll()
    process.exit(1)
  },
)
