// `--workers N` measured (issue 12, "Measure"): one build of rawsse, nginx + nchan beside it.
//
//   node bench/workers.mjs [--cli PATH|COMMIT] [--rounds 3] [--label NAME] [--parts hold,cost,primary,big] [--quick] [--out bench/RESULTS.md]
//
// Nothing is pinned: `taskset -c 0` would put both workers of a cluster on one core, and what is
// compared is CPU time per unit of work, not throughput. The load tool is the build's own `rawsse
// bench`, unpinned too, so deliveries/s is what two cores do with server and load tool together.
// Every server is fresh (`--tick 0 --heartbeat 0 --max-clients 20000 --history 1000`, a publish
// token). Rounds are interleaved (round 1 of every figure, then round 2, …); tables give medians
// and min–max. CPU is utime+stime (/proc/PID/stat) of the server process AND its children (the
// primary and every worker; nginx's master and workers), read each time `rawsse bench --out`
// writes its once-a-second line: a window of whole publishing seconds after the warm-up (the
// first, partial, second and WARMUP_S more left out), never connecting or closing.
//
//  1. Streams held. `--workers 2`, 38 000 streams from `rawsse bench` (two processes of 19 000:
//     past one process's 20 000 open files), 20 events published at 0.5/s (idle between them,
//     40 s in all); lost deliveries from the bench's JSON. RSS (VmRSS) of the primary and of each
//     worker (/proc/PID/task/PID/children) before the streams, when all are open (before the
//     first event) and at the last event; bytes per stream = the workers' growth / streams.
//     /stats (the publish token as Bearer): clients and each node's; each worker's open files.
//     The load tool needs ~50 s to open them: past ~34 000 its bind() calls slow down (below).
//  2. Cost of the cluster. Server CPU µs per delivery (CPU over the window / deliveries the bench
//     counted in it) for `--workers 1` (one process: the plain server) and `--workers 2` at
//     10 000 streams and, `--workers 2` only, 30 000 (one process cannot hold them); closed loop,
//     W = 1 and W = 8 events in flight, 8 s runs. Also deliveries/s, the server's CPU as % of one
//     core, the primary's part, the load tool's. Issue 12's target: 2 workers / 1 process ≤ 1.25×.
//  3. The primary. A `--workers 2` server, one load tool with 100 streams, open loop at 1 000,
//     2 000, 4 000, … events/s, stopping after the first not kept up (under 90 % published, or a
//     delivery lost), then closed loop W = 256. A worker answers one connection's requests in
//     order, each once the primary accepted it (an IPC round trip), so one publish connection
//     cannot load the primary: then K = 1, 2, 4, 8 load tools at once, each with its own
//     connection, channel and 2 streams (W = 256 each), events counted by the primary's
//     `published` in /stats. Per step: events/s, the primary's CPU % of one core and µs per
//     published event. It saturates where its CPU nears 100 %; if publishing stops scaling
//     first, something else was the limit, and 1 s / (µs per event) is its ceiling by
//     extrapolation, said as such.
//  4. nginx + nchan, `worker_processes 2` (bench/peers/nchan.conf copied to a temporary folder,
//     that one line changed), on the work of (2) at 10 000 streams; the spread of its streams
//     over its workers is read from their open files.
//
// It writes its section of bench/RESULTS.md (`<!-- workers:begin -->` … `<!-- workers:end -->`,
// after the fan-out section), one block per --label, each replaced only by a run with its label.
// The run is bounded (35 min; --quick 5 min) and takes about 16 min; every process it starts is
// stopped by its PID, also on errors and Ctrl-C. --quick: a few hundred streams, 3 s runs, one
// round: a check of the script, written nowhere unless --out is given. --cli PATH|COMMIT: another
// build's dist/cli.js (server and load tool), or a commit, built in a temporary git worktree
// removed at the end. --label NAME: default `current` (`quick` with --quick).

import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  BENCH, binNodeFlags, buildAt, buildCommit, BUSY_LIMIT, busiestCorePercent, childPids, CLI, ephemeralPorts, flagReader, fmt, freePort, killAll, listeningUrl,
  machine, machineMarkdown, median, nginxBin, placeSectionAfter, PUBLISH_TOKEN, ratio, readSection, ROOT, rssBytes, run, shellJoin,
  sleep, spread, startProcess, tail, writeSection, labelBlocks, labelledSection,
} from './lib.mjs'

const FULL = {
  holdStreams: 38_000, holdEvents: 20, holdRate: 0.5,
  cost: 10_000, big: 30_000, windows: [1, 8], duration: 8,
  primaryStreams: 100, rates: [1000, 2000, 4000, 8000, 16000], primaryWindow: 256, publishers: [1, 2, 4, 8], primaryDuration: 5,
}
const QUICK = {
  holdStreams: 300, holdEvents: 4, holdRate: 2,
  cost: 200, big: 400, windows: [1, 8], duration: 3,
  primaryStreams: 20, rates: [500, 2000], primaryWindow: 64, publishers: [1, 4], primaryDuration: 3,
}
const WARMUP_S = 1
const CLK_TCK = 100 // USER_HZ of /proc/PID/stat times on every mainstream Linux
const PER_SOURCE = 20_000 // rawsse bench binds streams 20 000.. to 127.0.0.2, 40 000.. to .3 (src/load/limits.ts)
const KEPT_UP = 0.9 // part 3: a rate is kept up when at least this share of it was published
const NCHAN_MODULES = ['/usr/lib/nginx/modules/ngx_nchan_module.so', '/usr/share/nginx/modules/ngx_nchan_module.so']
const mib = (b) => fmt(b / 2 ** 20, 1)

// ---------------------------------------------------------------------------------------------
// /proc: CPU, memory and open files of a process and its children.

/** f(), or `otherwise` if it throws (a process gone between listing and reading it). */
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
const rss = rssBytes
const openFiles = (pid) => attempt(() => readdirSync(`/proc/${pid}/fd`).length, NaN)

/** CPU seconds of the server (all its processes), of its main process alone, and of the load tool. */
function cpuSample(server, benchPids) {
  const kids = childPids(server.pid)
  const sum = (pids) => pids.reduce((n, p) => n + ticks(p), 0) / CLK_TCK
  return { at: Date.now(), main: sum([server.pid]), total: sum([server.pid, ...kids]), kids: kids.join(','), bench: sum(benchPids.flatMap((p) => [p, ...childPids(p)])) }
}


/**
 * Waits until each source address the load tool binds (127.0.0.2 from stream 20 000 on) has ports
 * for its block: a bound socket cannot take a port still in TIME_WAIT there (60 s), and 38 000 +
 * 30 000 streams in a minute would need more than 127.0.0.2's ~28 000. The first block is not
 * bound (connect() may share a port between destinations), so it is not counted.
 */
async function waitForSources(streams, maxMs = 75_000) {
  const [low, high] = ephemeralPorts()
  const need = []
  for (let k = 2; (k - 1) * PER_SOURCE < streams; k++) need.push([`${k.toString(16).padStart(2, '0').toUpperCase()}00007F`, Math.min(PER_SOURCE, streams - (k - 1) * PER_SOURCE)])
  const short = () => {
    const text = readFileSync('/proc/net/tcp', 'utf8')
    return need.some(([hex, n]) => {
      let used = 0
      for (const m of text.matchAll(new RegExp(`^\\s*\\d+: ${hex}:([0-9A-F]{4}) `, 'gm'))) {
        const port = parseInt(m[1], 16)
        if (port >= low && port <= high) used++
      }
      return high - low + 1 - used < n + 500
    })
  }
  const t0 = Date.now()
  while (need.length && short() && Date.now() - t0 < maxMs) await sleep(2000)
  if (Date.now() - t0 >= 1000) process.stderr.write(`waited ${fmt((Date.now() - t0) / 1000)} s for free ports on the source addresses\n`)
}

// ---------------------------------------------------------------------------------------------
// The servers, unpinned. Each resolves to { name, proc, pid, port, stream, publish, publishHeaders }.

async function startRawsse(o, workers) {
  const port = await freePort()
  const args = ['--port', String(port), '--tick', '0', '--heartbeat', '0', '--publish-token', PUBLISH_TOKEN, '--max-clients', '20000', '--history', '1000', '--workers', String(workers)]
  const { proc, value } = await startProcess(`rawsse --workers ${workers}`, process.execPath, [...binNodeFlags(o.cli), o.cli, ...args], { ready: listeningUrl, withChildren: true, timeoutMs: 20_000 })
  return { name: `rawsse --workers ${workers}`, proc, pid: proc.pid, port, stream: `${value}/events/${PUBLISH_TOKEN}`, publish: `${value}/publish`, publishHeaders: [`Authorization: Bearer ${PUBLISH_TOKEN}`] }
}

/** nginx + nchan from bench/peers/nchan.conf, with `worker_processes` set to `workers`, in the foreground. */
async function startNchan(workers) {
  const nginx = nginxBin()
  const module = NCHAN_MODULES.find((p) => existsSync(p))
  if (!nginx || !module) throw new Error(`nchan not benched: ${!nginx ? 'nginx' : 'libnginx-mod-nchan'} is not installed (apt-get install nginx libnginx-mod-nchan)`)
  const port = await freePort()
  const prefix = mkdtempSync(path.join(os.tmpdir(), 'rawsse-nchan-'))
  const conf = readFileSync(path.join(BENCH, 'peers', 'nchan.conf'), 'utf8')
    .replace(/^worker_processes \d+;$/m, `worker_processes ${workers};`)
    .replaceAll('@MODULE@', module).replaceAll('@PORT@', String(port)).replaceAll('@PREFIX@', prefix)
  if (!conf.includes(`worker_processes ${workers};`)) throw new Error('bench/peers/nchan.conf has no `worker_processes N;` line to change')
  writeFileSync(path.join(prefix, 'nginx.conf'), conf)
  const answers = () =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => (s.destroy(), resolve(true))).once('error', () => resolve(false))
    })
  try {
    const { proc } = await startProcess(`nchan ×${workers}`, nginx, ['-p', prefix, '-c', path.join(prefix, 'nginx.conf'), '-g', 'daemon off;'], {
      withChildren: true,
      ready: async (_out, p) => childPids(p.pid).length >= workers && (await answers()),
    })
    const stop = proc.stop.bind(proc)
    proc.stop = async (grace) => (await stop(grace), rmSync(prefix, { recursive: true, force: true }))
    return { name: `nchan ×${workers}`, proc, pid: proc.pid, port, stream: `http://127.0.0.1:${port}/sub`, publish: `http://127.0.0.1:${port}/pub`, publishHeaders: [] }
  } catch (err) {
    rmSync(prefix, { recursive: true, force: true })
    throw err
  }
}

const stats = (port) =>
  fetch(`http://127.0.0.1:${port}/stats`, { headers: { authorization: `Bearer ${PUBLISH_TOKEN}` }, signal: AbortSignal.timeout(5000) }).then((r) => (r.ok ? r.json() : null), () => null)

// ---------------------------------------------------------------------------------------------
// One `rawsse bench` run, with the server's CPU read at each of its once-a-second lines.

/**
 * Runs the load tool against `server`; `onLine(line, sample)` is called for each line of its
 * --out file as it appears (part 1 reads memory then). Resolves to { json, window, error }.
 */
async function benchRun(o, server, { streams, window, rate, events, duration, connectS = streams / 2000 }, onLine = () => {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-workers-'))
  const outFile = path.join(dir, 'seconds.jsonl')
  // nchan treats a subscriber as EventSource only when it asks for text/event-stream, as browsers do.
  const args = [o.cli, 'bench', server.stream, '--streams', String(streams), '--header', 'Accept: text/event-stream', '--publish', server.publish]
  for (const h of server.publishHeaders) args.push('--publish-header', h)
  args.push('--body', '{seq} {ts}', ...(rate !== undefined ? ['--rate', String(rate)] : ['--window', String(window)]))
  args.push(...(events !== undefined ? ['--events', String(events)] : ['--duration', String(duration)]), '--warmup', String(WARMUP_S), '--out', outFile, '--json')
  const boundS = connectS + (events !== undefined ? events / rate : duration) + 60
  const samples = []
  let proc
  try {
    ;({ proc } = await startProcess('rawsse bench', process.execPath, args, { ready: () => true, withChildren: true }))
    let seen = 0
    let outcome = null
    void Promise.race([proc.exited, sleep(boundS * 1000).then(() => 'timeout')]).then((x) => (outcome = x))
    for (let finished = false; !finished; ) {
      finished = outcome !== null // one more read once it has ended: its last lines
      const lines = existsSync(outFile) ? readFileSync(outFile, 'utf8').split('\n').slice(0, -1) : [] // the last piece: unfinished
      for (; seen < lines.length; seen++) {
        const line = JSON.parse(lines[seen])
        const sample = cpuSample(server, [proc.pid])
        samples.push({ line, sample })
        await onLine(line, sample)
      }
      if (!finished) await sleep(20) // a line is read within 20 ms of being written
    }
    await Promise.race([proc.closed, sleep(2000)])
    const lastLine = samples.at(-1)?.line
    if (outcome === 'timeout') return { error: `rawsse bench did not finish within ${fmt(boundS)} s; its last line: ${JSON.stringify(lastLine)}; ${tail(proc.stderr, 200)}` }
    const last = proc.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'))
    if (!last) return { error: `rawsse bench exited ${outcome.signal ?? outcome.code} without a report: ${tail(proc.stderr || proc.stdout, 300)}` }
    return { json: JSON.parse(last), window: windowOf(samples), stderr: tail(proc.stderr, 300) }
  } catch (err) {
    return { error: err.message.split('\n')[0] }
  } finally {
    await proc?.stop(1000)
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * The measured window: from the line that ends the warm-up (the first publishing line covers part
 * of a second, then WARMUP_S more) to the last publishing line. CPU, deliveries and events
 * published between the two readings; null when publishing was too short to have one.
 */
function windowOf(samples) {
  const pub = samples.filter((s) => s.line.phase === 'publishing')
  const a = pub[Math.ceil(WARMUP_S)]
  const b = pub.at(-1)
  if (!a || b === a) return null
  const deliveries = pub.slice(pub.indexOf(a) + 1).reduce((n, s) => n + s.line.deliveries, 0)
  return { ...figures(a.sample, b.sample, b.line.published - a.line.published), deliveries, deliveriesPerSecond: (deliveries * 1000) / (b.sample.at - a.sample.at), usPerDelivery: ((b.sample.total - a.sample.total) * 1e6) / deliveries }
}

/** What two CPU samples and the events published between them say. */
function figures(a, b, events) {
  const seconds = (b.at - a.at) / 1000
  const pct = (key) => (100 * (b[key] - a[key])) / seconds
  return {
    seconds, published: events, eventsPerSecond: events / seconds,
    serverPct: pct('total'), mainPct: pct('main'), benchPct: pct('bench'), mainUsPerEvent: ((b.main - a.main) * 1e6) / events,
    workersChanged: a.kids !== b.kids, // a worker died and was replaced: its CPU is missing
  }
}

async function busyNote(what, notes) {
  const busy = await busiestCorePercent()
  if (busy > BUSY_LIMIT) notes.push(`${what}: a core was ${fmt(busy)} % busy with other work just before the run; its numbers are suspect`)
}

// ---------------------------------------------------------------------------------------------
// The parts, one round each.

/** Part 1: 38 000 streams on --workers 2; memory before / held / at the end, /stats, lost. */
async function holdRound(o, round, notes) {
  const S = o.sizes
  await waitForSources(S.holdStreams)
  const server = await startRawsse(o, 2)
  try {
    await sleep(1000)
    await busyNote(`hold, round ${round}`, notes)
    const pids = childPids(server.pid)
    const mem = () => ({ primary: rss(server.pid), workers: pids.map(rss) })
    const r = { round, before: mem() }
    // The load tool connects at its default 2 000/s, but it binds streams 20 000 on to 127.0.0.2
    // with port 0, and bind() tries the even half of the ephemeral ports first (14 116 here):
    // past about 34 000 streams each bind() scans that half in vain, ~150 connections/s.
    const res = await benchRun(o, server, { streams: S.holdStreams, rate: S.holdRate, events: S.holdEvents, connectS: 150 }, async (line) => {
      if (line.phase !== 'publishing') return
      if (r.held === undefined) {
        r.connectS = line.t // the first publishing line: when every stream was open
        // Every stream is open and no event has been sent yet (the first is due 1 / rate s in).
        r.held = mem()
        r.files = pids.map(openFiles)
        const st = await stats(server.port)
        r.stats = st && { clients: st.clients, nodes: (st.nodes ?? []).map((n) => ({ node: n.node, pid: n.pid, clients: n.clients })).sort((x, y) => x.node.localeCompare(y.node)) }
      }
      r.end = mem()
    })
    if (res.error) return { ...r, error: res.error }
    const { connected, published, lost, streamErrors } = res.json
    const grow = (m) => m.workers.reduce((n, x) => n + x, 0) - r.before.workers.reduce((n, x) => n + x, 0)
    Object.assign(r, { connected, published, lost, streamErrors, perStreamHeld: grow(r.held) / connected, perStreamEnd: grow(r.end) / connected })
    r.workersSame = childPids(server.pid).join(',') === pids.join(',')
    if (!r.workersSame) notes.push(`hold, round ${round}: a worker was replaced during the run`)
    return r
  } finally {
    await server.proc.stop()
  }
}

/** Part 2 (and 4): one server, closed loop at each W. */
async function costRound(o, round, kind, workers, n, notes) {
  const S = o.sizes
  const out = []
  await waitForSources(n)
  let server
  try {
    server = kind === 'nchan' ? await startNchan(workers) : await startRawsse(o, workers)
  } catch (err) {
    notes.push(`round ${round}, ${kind} ×${workers}, N = ${fmt(n)}: did not start: ${err.message.split('\n')[0]}`)
    return out
  }
  try {
    for (const w of S.windows) {
      await busyNote(`round ${round}, ${server.name}, N = ${fmt(n)}, W = ${w}`, notes)
      let spreadOver = null
      const res = await benchRun(o, server, { streams: n, window: w, duration: S.duration }, async (line) => {
        // How the streams spread over the processes: /stats for rawsse, open files for nchan.
        if (line.phase !== 'publishing' || spreadOver !== null || workers < 2) return
        spreadOver = kind === 'nchan' ? childPids(server.pid).map(openFiles) : ((await stats(server.port))?.nodes ?? []).map((x) => x.clients)
      })
      const r = { round, server: server.name, n, w, spreadOver, ...res }
      out.push(r)
      const x = r.window
      process.stderr.write(
        `round ${round} ${server.name} N=${n} W=${w}: ${r.error ? `ERROR ${r.error}` : `${fmt(x?.deliveriesPerSecond)} deliveries/s, ${fmt(x?.usPerDelivery, 2)} µs CPU/delivery, server ${fmt(x?.serverPct)} % (main ${fmt(x?.mainPct)} %), bench ${fmt(x?.benchPct)} %, connected ${r.json.connected}/${n}, lost ${r.json.lost}${spreadOver ? `, spread ${spreadOver.join('/')}` : ''}`}\n`,
      )
      if (r.error) notes.push(`round ${round}, ${server.name}, N = ${fmt(n)}, W = ${w}: ${r.error}`)
      else if (!x) notes.push(`round ${round}, ${server.name}, N = ${fmt(n)}, W = ${w}: publishing too short for a measured window`)
      else if (x.workersChanged) notes.push(`round ${round}, ${server.name}, N = ${fmt(n)}, W = ${w}: a worker was replaced during the window`)
      if (r.json && (r.json.lost > 0 || r.json.connected < n)) notes.push(`round ${round}, ${server.name}, N = ${fmt(n)}, W = ${w}: connected ${r.json.connected}/${n}, lost ${r.json.lost}`)
      if (server.proc.child.exitCode !== null || server.proc.child.signalCode !== null) {
        notes.push(`round ${round}, ${server.name}, N = ${fmt(n)}: the server exited: ${tail(server.proc.stderr, 200)}`)
        break
      }
    }
  } finally {
    await server.proc.stop()
  }
  return out
}

const primarySteps = (S) => [
  ...S.rates.map((rate) => ({ key: `${rate}/s`, rate })),
  { key: `W = ${S.primaryWindow}`, window: S.primaryWindow },
  ...S.publishers.map((k) => ({ key: `${k} publisher${k > 1 ? 's' : ''}, W = ${S.primaryWindow} each`, publishers: k })),
]

/** Part 3: the primary's CPU per event, rising open-loop rates, then a wide closed loop, then several publishers. */
async function primaryRound(o, round, notes) {
  const S = o.sizes
  const server = await startRawsse(o, 2)
  const out = []
  try {
    let saturated = false
    for (const step of primarySteps(S)) {
      if (saturated && step.rate !== undefined) continue
      await busyNote(`round ${round}, primary, ${step.key}`, notes)
      const res = step.publishers
        ? await publishersRun(o, server, step.publishers)
        : await benchRun(o, server, { streams: S.primaryStreams, rate: step.rate, window: step.window, duration: S.primaryDuration })
      const r = { round, ...step, ...res }
      out.push(r)
      const x = r.window
      process.stderr.write(
        `round ${round} primary ${step.key}: ${r.error ? `ERROR ${r.error}` : `${fmt(x?.eventsPerSecond)} events/s, primary ${fmt(x?.mainPct)} % (${fmt(x?.mainUsPerEvent, 1)} µs/event), server ${fmt(x?.serverPct)} %, bench ${fmt(x?.benchPct)} %, lost ${r.json.lost}`}\n`,
      )
      if (r.error || !x) notes.push(`round ${round}, primary, ${step.key}: ${r.error ?? 'no measured window'}`)
      // Past the first rate not kept up, a higher one only queues more in front of the same limit.
      if (step.rate !== undefined && (r.error || !x || x.eventsPerSecond < KEPT_UP * step.rate || r.json.lost > 0)) saturated = true
    }
  } finally {
    await server.proc.stop()
  }
  return out
}

/**
 * K load tools at once, each with its own publish connection, channel and 2 streams: a worker
 * answers the requests of one connection in order, each once the primary has accepted it (an IPC
 * round trip), so one connection cannot load the primary however wide its window. The events
 * counted are the primary's own (`published` in /stats), over a window inside every tool's run.
 */
async function publishersRun(o, server, k) {
  const S = o.sizes
  const procs = []
  try {
    for (let i = 0; i < k; i++) {
      const args = [o.cli, 'bench', `${server.stream}?channel=p${i}`, '--streams', '2', '--publish', `${server.publish}?channel=p${i}`, '--publish-header', server.publishHeaders[0]]
      args.push('--window', String(S.primaryWindow), '--duration', String(S.primaryDuration + 4), '--warmup', String(WARMUP_S), '--json')
      procs.push((await startProcess(`rawsse bench ${i + 1}/${k}`, process.execPath, args, { ready: () => true })).proc)
    }
    const sample = async () => ({ ...cpuSample(server, procs.map((p) => p.pid)), published: (await stats(server.port))?.published })
    await sleep(2000) // every tool connected and past its first second of publishing
    const a = await sample()
    await sleep(S.primaryDuration * 1000)
    const b = await sample()
    await Promise.race([Promise.all(procs.map((p) => p.closed)), sleep(30_000)])
    const reports = procs.map((p) => p.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'))).map((l) => (l ? JSON.parse(l) : null))
    if (reports.includes(null)) return { error: `a load tool gave no report: ${tail(procs.find((p, i) => !reports[i]).stderr, 200)}` }
    const sum = (f) => reports.reduce((n, r) => n + f(r), 0)
    return { json: { lost: sum((r) => r.lost), connected: sum((r) => r.connected) }, window: { ...figures(a, b, b.published - a.published), deliveriesPerSecond: sum((r) => r.deliveriesPerSecond) } }
  } catch (err) {
    return { error: err.message.split('\n')[0] }
  } finally {
    for (const p of procs) await p.stop(1000)
  }
}

// ---------------------------------------------------------------------------------------------
// The report: one block per label in the workers section.

const ok = (runs) => runs.filter((r) => !r.error && r.window)
const med = (runs, f) => median(ok(runs).map(f))
const spr = (runs, f, d = 0) => spread(ok(runs).map(f), d)

function labelBlock(o, m, command, build, res, notes) {
  const S = o.sizes
  const out = [`### ${o.label}${o.quick ? ' (QUICK SMOKE RUN: small sizes; not results)' : ''}`, '']
  out.push(machineMarkdown(m))
  out.push(`- Build measured: \`${o.cli.startsWith(ROOT + path.sep) ? path.relative(ROOT, o.cli) : o.cli}\`, git ${build}; command: \`${command}\`; the run took ${fmt(res.minutes, 1)} min`)
  out.push(`- ${o.rounds} round(s), interleaved; every process unpinned (a 2-worker cluster on one core would measure one core); servers \`--tick 0 --heartbeat 0 --max-clients 20000 --history 1000\`; body \`{seq} {ts}\`; figures are medians, spread min–max over rounds.`)
  out.push('')
  out.push(`**1. Streams held** by \`--workers 2\`: ${fmt(S.holdStreams)} streams from \`rawsse bench\` (two processes), ${S.holdEvents} events at ${S.holdRate}/s while they are held. RSS in MiB: before any stream → all open (before the first event) → at the last event.`)
  out.push('')
  out.push('| round | connected (all open after) | lost | /stats clients | nodes (clients) | worker open files | primary RSS | workers RSS | bytes/stream open | at the end |')
  out.push('|---:|---:|---:|---:|---|---|---|---|---:|---:|')
  const arrow = (r, f) => [r.before, r.held, r.end].map((x) => (x ? f(x) : '–')).join(' → ')
  for (const r of res.hold) {
    if (r.error) {
      out.push(`| ${r.round} | ERROR ${r.error} |||||||||`)
      continue
    }
    out.push(
      `| ${r.round} | ${fmt(r.connected)}/${fmt(S.holdStreams)} (${fmt(r.connectS)} s) | ${fmt(r.lost)} | ${fmt(r.stats?.clients)} | ${(r.stats?.nodes ?? []).map((n) => fmt(n.clients)).join(' + ') || '–'} | ${r.files.map((x) => fmt(x)).join(' + ')} | ${arrow(r, (x) => mib(x.primary))} | ${arrow(r, (x) => x.workers.map(mib).join(' + '))} | ${fmt(r.perStreamHeld)} | ${fmt(r.perStreamEnd)} |`,
    )
  }
  const good = res.hold.filter((r) => !r.error)
  out.push(`| median | | ${fmt(median(good.map((r) => r.lost)))} | | | | | | ${fmt(median(good.map((r) => r.perStreamHeld)))} | ${fmt(median(good.map((r) => r.perStreamEnd)))} |`)
  out.push('')
  out.push(`**2. Cost of the cluster** (and **4.** nginx + nchan with \`worker_processes 2\`): closed loop, ${S.duration} s runs, the window leaving out the first ${1 + WARMUP_S} s. CPU = server processes' utime+stime over the window (all of them: primary and workers; nginx master and workers); µs/delivery = CPU / deliveries the load tool counted in it; × 1 process = ÷ \`--workers 1\`'s µs/delivery at the same N and W (target for \`--workers 2\`: ≤ 1.25×). CPU % is of one core (200 % = both).`)
  out.push('')
  out.push('| N | W | server | deliveries/s | spread | CPU µs/delivery | spread | × 1 process | server CPU % | of it primary/master % | bench CPU % | lost | streams per worker (nchan: open files) |')
  out.push('|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|')
  const names = ['rawsse --workers 1', 'rawsse --workers 2', 'nchan ×2']
  for (const n of [S.cost, S.big]) {
    for (const w of S.windows) {
      const base = med(res.cost.filter((r) => r.n === n && r.w === w && r.server === names[0]), (r) => r.window.usPerDelivery)
      for (const name of names) {
        const runs = res.cost.filter((r) => r.n === n && r.w === w && r.server === name)
        if (!runs.length) continue
        const us = med(runs, (r) => r.window.usPerDelivery)
        const sp = runs.find((r) => r.spreadOver?.length)?.spreadOver
        out.push(
          `| ${fmt(n)} | ${w} | ${name} | ${fmt(med(runs, (r) => r.window.deliveriesPerSecond))} | ${spr(runs, (r) => r.window.deliveriesPerSecond)} | ${fmt(us, 2)} | ${spr(runs, (r) => r.window.usPerDelivery, 2)} | ${name === names[0] ? '1.00×' : ratio(us, base)} | ${fmt(med(runs, (r) => r.window.serverPct))} | ${name === names[0] ? '–' : fmt(med(runs, (r) => r.window.mainPct))} | ${fmt(med(runs, (r) => r.window.benchPct))} | ${fmt(median(runs.filter((r) => r.json).map((r) => r.json.lost)))} | ${sp ? sp.map((x) => fmt(x)).join(' / ') : '–'} |`,
        )
      }
    }
  }
  out.push('')
  out.push(`**3. The primary** (\`--workers 2\`, ${S.primaryStreams} streams, ${S.primaryDuration} s runs): one load tool, open loop at rising rates (stopping after the first not kept up: under ${KEPT_UP * 100} % published, or a delivery lost), then closed loop W = ${S.primaryWindow}; then K load tools at once, each with its own publish connection, channel and 2 streams (W = ${S.primaryWindow} each; events counted by the primary's /stats). µs/event = the primary's own CPU / events published in the window.`)
  out.push('')
  out.push('| asked | rounds | events/s published | spread | primary CPU % | primary µs/event | server CPU % (all) | bench CPU % | deliveries/s | lost |')
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const { key } of primarySteps(S)) {
    const runs = res.primary.filter((r) => r.key === key)
    if (!runs.length) continue
    out.push(
      `| ${key} | ${ok(runs).length} | ${fmt(med(runs, (r) => r.window.eventsPerSecond))} | ${spr(runs, (r) => r.window.eventsPerSecond)} | ${fmt(med(runs, (r) => r.window.mainPct))} | ${fmt(med(runs, (r) => r.window.mainUsPerEvent), 1)} | ${fmt(med(runs, (r) => r.window.serverPct))} | ${fmt(med(runs, (r) => r.window.benchPct))} | ${fmt(med(runs, (r) => r.window.deliveriesPerSecond))} | ${fmt(median(runs.filter((r) => r.json).map((r) => r.json.lost)))} |`,
    )
  }
  out.push('')
  out.push(...summary(o, res).map((l) => `- ${l}`))
  for (const n of notes) out.push(`- ${n}`)
  const data = { label: o.label, date: m.date, build, quick: o.quick, rounds: o.rounds, minutes: res.minutes, ...compact(res) }
  out.push('', `<!-- workers-data ${JSON.stringify(data).replaceAll('--', '\\u002d\\u002d') /* `--` may not appear in an HTML comment; only strings hold it */} -->`)
  return `<!-- workers-label:${o.label}:begin -->\n${out.join('\n')}\n<!-- workers-label:${o.label}:end -->`
}

/** The sentences that answer the issue: the ratio, the streams held, where the primary stops. */
function summary(o, res) {
  const S = o.sizes
  const lines = []
  const us = (name, n, w) => med(res.cost.filter((r) => r.server === name && r.n === n && r.w === w), (r) => r.window.usPerDelivery)
  const ratios = S.windows.map((w) => `${ratio(us('rawsse --workers 2', S.cost, w), us('rawsse --workers 1', S.cost, w))} at W = ${w}`)
  lines.push(`CPU per delivery, \`--workers 2\` / one process, N = ${fmt(S.cost)}: ${ratios.join(', ')} (target ≤ 1.25×); nchan ×2 / \`--workers 2\`: ${S.windows.map((w) => `${ratio(us('nchan ×2', S.cost, w), us('rawsse --workers 2', S.cost, w))} at W = ${w}`).join(', ')}.`)
  const held = res.hold.filter((r) => !r.error)
  if (held.length) lines.push(`Held: ${held.map((r) => `${fmt(r.stats?.clients)} in /stats, ${fmt(r.lost)} lost`).join('; ')} (round by round); every worker ${held.every((r) => r.workersSame) ? 'lived through every round' : 'did NOT live through every round'}.`)
  const keptUp = res.primary.filter((r) => r.rate !== undefined && ok([r]).length && r.window.eventsPerSecond >= KEPT_UP * r.rate && r.json.lost === 0)
  const best = Math.max(...keptUp.map((r) => r.rate))
  const closed = [...new Set(res.primary.filter((r) => r.rate === undefined).map((r) => r.key))].map((key) => {
    const runs = res.primary.filter((r) => r.key === key)
    return { key, eps: med(runs, (r) => r.window.eventsPerSecond), pct: med(runs, (r) => r.window.mainPct), us: med(runs, (r) => r.window.mainUsPerEvent) }
  })
  const top = closed.reduce((x, y) => (y.eps > x.eps ? y : x), closed[0] ?? {})
  lines.push(
    `The primary: ${fmt(median(keptUp.filter((r) => r.rate === best).map((r) => r.window.mainUsPerEvent)), 1)} µs of its CPU per published event at the highest open-loop rate kept up (${fmt(best)}/s); closed loop, ${closed.map((c) => `${c.key}: ${fmt(c.eps)} events/s with the primary at ${fmt(c.pct)} % of a core (${fmt(c.us, 1)} µs/event)`).join('; ')}. ` +
      (top.pct >= 90
        ? `At ${fmt(top.eps)} events/s the primary was the limit.`
        : `Publishing stopped scaling before the primary did (at most ${fmt(top.pct)} % of a core): by extrapolation, 1 s / ${fmt(top.us, 1)} µs, it would saturate near ${fmt(1e6 / top.us)} events/s; not measured.`),
  )
  return lines
}

/** Per-round figures for later readers (the tables keep medians). */
function compact(res) {
  const n = (x, d = 0) => (Number.isFinite(x) ? +x.toFixed(d) : null)
  const w = ({ window: x }) => x && { dps: n(x.deliveriesPerSecond), us: n(x.usPerDelivery, 3), eps: n(x.eventsPerSecond), pct: n(x.serverPct), mainPct: n(x.mainPct), mainUs: n(x.mainUsPerEvent, 2), bench: n(x.benchPct) }
  return {
    hold: res.hold.map((r) => ({ round: r.round, error: r.error, connected: r.connected, connectS: r.connectS, lost: r.lost, stats: r.stats, files: r.files, before: r.before, held: r.held, end: r.end, perStream: Math.round(r.perStreamHeld) })),
    cost: res.cost.map((r) => ({ round: r.round, server: r.server, n: r.n, w: r.w, error: r.error, lost: r.json?.lost, spread: r.spreadOver, ...w(r) })),
    primary: res.primary.map((r) => ({ round: r.round, step: r.key, error: r.error, lost: r.json?.lost, ...w(r) })),
  }
}

function sectionText(blocks) {
  return labelledSection('## Every core: `--workers N` (issue 12, "Measure")', '`node bench/workers.mjs --label NAME` writes this section (do not edit it by hand), one block per label; its header says how each figure is made. Figures are from a shared 2-core VM on which server, workers and load tool share both cores; treat differences under about 20 % as noise.', blocks)
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
    // Which measurements: hold (38 000 streams), cost (10 000, 1 vs 2 workers, nchan), primary, big (30 000).
    parts: new Set(list('parts', 'hold,cost,primary,big')),
    label: get('label') ?? (quick ? 'quick' : 'current'),
    // A quick run checks the script: it writes nowhere unless told where.
    out: get('out') !== undefined ? path.resolve(get('out')) : quick ? null : path.join(BENCH, 'RESULTS.md'),
  }
  done()
  if (!/^[\w.-]+$/.test(o.label)) throw new Error(`--label must be letters, digits, . _ or -, not '${o.label}'`)
  o.cli = buildAt(o.cli) // a file as is, else a commit built in a temporary worktree (lib.mjs)
  if (!Number.isInteger(o.rounds) || o.rounds < 1) throw new Error('--rounds must be a whole number ≥ 1')
  for (const p of o.parts) if (!['hold', 'cost', 'primary', 'big'].includes(p)) throw new Error(`--parts: hold, cost, primary, big; not '${p}'`)
  return o
}

async function main() {
  const argv = process.argv.slice(2)
  const o = parseFlags(argv)
  const help = spawnSync(process.execPath, [o.cli, 'bench', '--help'], { encoding: 'utf8' })
  if (help.status !== 0) throw new Error(`the load tool is missing: \`node ${o.cli} bench --help\` failed\n${tail(help.stderr || help.stdout, 300)}`)
  const limitS = o.quick ? 300 : 2100
  setTimeout(() => {
    process.stderr.write(`workers: the run passed its ${limitS} s bound; stopping every process started here\n`)
    killAll()
    process.exit(3)
  }, limitS * 1000).unref()
  const m = machine()
  const build = buildCommit(o.cli)
  const command = `node bench/workers.mjs${argv.length ? ' ' + shellJoin(argv) : ''}`
  process.stderr.write(`workers: ${o.cli} (git ${build}), label ${o.label}, ${o.rounds} round(s)\n`)
  const S = o.sizes
  const notes = []
  const res = { hold: [], cost: [], primary: [] }
  const t0 = Date.now()
  for (let round = 1; round <= o.rounds; round++) {
    // The 38 000 first, the 30 000 last: they share 127.0.0.2's ports, whose TIME_WAIT lasts 60 s.
    if (o.parts.has('hold')) try {
      const h = await holdRound(o, round, notes)
      res.hold.push(h)
      process.stderr.write(`round ${round} hold: ${h.error ? `ERROR ${h.error}` : `${h.connected} connected (all after ${fmt(h.connectS)} s), lost ${h.lost}, /stats ${h.stats?.clients} (${(h.stats?.nodes ?? []).map((n) => n.clients).join('/')}), ${fmt(h.perStreamHeld)} bytes/stream, files ${h.files.join('/')}`}\n`)
      if (h.error) notes.push(`hold, round ${round}: ${h.error}`)
    } catch (err) {
      res.hold.push({ round, error: err.message.split('\n')[0] })
      notes.push(`hold, round ${round}: ${err.message.split('\n')[0]}`)
    }
    if (o.parts.has('cost')) for (const [kind, workers] of [['rawsse', 1], ['rawsse', 2], ['nchan', 2]]) res.cost.push(...(await costRound(o, round, kind, workers, S.cost, notes)))
    if (o.parts.has('primary')) res.primary.push(...(await primaryRound(o, round, notes).catch((err) => (notes.push(`primary, round ${round}: ${err.message.split('\n')[0]}`), []))))
    if (o.parts.has('big')) res.cost.push(...(await costRound(o, round, 'rawsse', 2, S.big, notes)))
  }
  res.minutes = (Date.now() - t0) / 60000
  const block = labelBlock(o, m, command, build, res, notes)
  process.stdout.write(block + '\n')
  if (o.out === null) {
    process.stderr.write('--quick without --out: nothing written\n')
  } else {
    placeSectionAfter(o.out, 'workers', 'fanout')
    const blocks = labelBlocks(readSection(o.out, 'workers'), 'workers')
    blocks.set(o.label, block)
    writeSection(o.out, 'workers', sectionText(blocks))
    process.stderr.write(`wrote the ${o.label} block of the workers section of ${path.relative(process.cwd(), o.out) || o.out}\n`)
  }
  killAll()
  process.exit(0)
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((err) => {
    process.stderr.write(`workers: ${err.message}\n`)
    killAll()
    process.exit(1)
  })
}
