// Fan-out benchmark: rawsse against better-sse on node:http, a naive node:http server and nginx + nchan.
//
//   npm install && node bench/fanout.mjs [--quick] [--rounds 3] [--peers rawsse,better-sse,node-http,nchan]
//       [--streams 100,1000,10000,19000] [--windows 1,8] [--duration 8] [--warmup 1]
//       [--rate 20] [--rate-streams 1000] [--rss-streams 10000,19000] [--settle 30] [--idle-only] [--workers K] [--out bench/RESULTS.md]
//       [--baseline OTHER/dist/cli.js | COMMIT]
//
// Needs a machine with at least two cores; nchan needs Debian's `nginx` and `libnginx-mod-nchan`
// (`apt-get install nginx libnginx-mod-nchan`): without them it says so and benches the others.
// nginx is never run as a system service: it is started in the foreground from bench/peers/nchan.conf
// with `-p TMPDIR -c TMPDIR/nginx.conf -g 'daemon off;'` and stopped by its PID.
//
// Every server runs pinned to core 0 (`taskset -c 0`), the load tool (`rawsse bench`, dist/cli.js)
// to core 1. Each peer exposes a stream URL and a publish URL (POST, body = the event data, to
// every stream), so one load tool drives them all. For each round, each N and each peer, a fresh
// server is started, then the load tool runs closed-loop with W = 1 and W = 8 events in flight
// (an event is in flight until every stream has it), and at N = --rate-streams also at a fixed
// rate well below saturation (--rate events/s) for latency. Rounds are interleaved (round 1 of
// every peer, then round 2, ...), so a slow minute on the machine hits every peer alike; the
// tables give the median over rounds and the spread (min–max). Then idle memory, per N: one fresh
// server per peer, its RSS (VmRSS in /proc/PID/status, nginx: master plus worker), then one wave
// per round: N idle streams opened by a helper process on core 1, RSS 2 s later and after --settle
// seconds, the streams closed, RSS after --settle seconds more; (RSS_N − RSS_0) / N is the idle
// cost of one stream, and the RSS after each wave left shows whether the server comes back.
// A process may hold at most 20 000 open files on the bench machines (not raisable), hence
// N ≤ 19 000: the server and the load tool each hold one socket per stream.
//
// It writes its section of bench/RESULTS.md (between `<!-- fanout:begin -->` and
// `<!-- fanout:end -->`; bench/http.mjs owns another): date, machine, command, tables, and each
// peer's ratio to rawsse. Every process it starts is killed by PID when it is done, on errors and on Ctrl-C.
// Its figures, per round, also go in a `<!-- fanout-data {...} -->` comment, which bench/charts.mjs draws as SVG in bench/charts/.
//
// --quick: N = 100 and 1 000, one round, 3 s runs, idle RSS at 1 000; a smoke test, not results.
// --baseline PATH|COMMIT: another build of rawsse (its dist/cli.js, or a commit, built in a temporary
// git worktree removed at the end) runs as peer `rawsse-baseline`, so a change is measured against
// the code before it in the same interleaved rounds.
// --idle-only: only the idle memory part (it does not need the load tool).
// Internal: `node bench/fanout.mjs --hold URL N [--header 'K: V']...` opens N idle streams and
// prints one JSON line when they are all open (used for the idle RSS; stopped with SIGTERM).

import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import {
  BENCH,
  binNodeFlags,
  buildAt,
  BUSY_LIMIT,
  busiestCorePercent,
  childPids,
  rssBytes as processRss,
  CLI,
  fmt,
  freePort,
  killAll,
  listeningUrl,
  machine,
  machineMarkdown,
  flagReader,
  median,
  nginxBin,
  PUBLISH_TOKEN,
  ratio,
  ROOT,
  run,
  shellJoin,
  sleep,
  spread,
  startProcess,
  tail,
  writeSection,
  waitForPorts,
} from './lib.mjs'
import { dataComment, writeCharts } from './charts.mjs'

const SERVER_CORE = '0'
const LOAD_CORE = '1'
const NCHAN_MODULE_PATHS = ['/usr/lib/nginx/modules/ngx_nchan_module.so', '/usr/share/nginx/modules/ngx_nchan_module.so']
const NCHAN_INSTALL_HINT = 'apt-get install nginx libnginx-mod-nchan'
const CLK_TCK = 100 // Linux's USER_HZ for /proc/PID/stat times; 100 on every mainstream architecture

/** Bytes as MiB with one decimal. */
const mib = (bytes) => fmt(bytes / 2 ** 20, 1)

// ---------------------------------------------------------------------------------------------
// Memory and CPU of a server process (and its children: nginx's worker).

/** RSS of a server and its children (nginx: master plus worker). */
function rssBytes(pid) {
  let total = 0
  for (const p of [pid, ...childPids(pid)]) {
    const b = processRss(p)
    if (Number.isFinite(b)) total += b
  }
  return total
}

function cpuSeconds(pid) {
  let ticks = 0
  for (const p of [pid, ...childPids(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(f[11]) + Number(f[12]) // utime, stime (fields 14 and 15)
    } catch {}
  }
  return ticks / CLK_TCK
}

// ---------------------------------------------------------------------------------------------
// The peers. Each start() resolves to { proc, pid, stream, publish, streamHeaders, publishHeaders }.

function findNchan() {
  const nginx = nginxBin()
  const module = NCHAN_MODULE_PATHS.find((p) => existsSync(p))
  const missing = []
  if (nginx === null) missing.push('nginx')
  if (module === undefined) missing.push('libnginx-mod-nchan')
  return { ok: missing.length === 0, module, missing, nginx }
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => (s.destroy(), resolve(true)))
    s.once('error', () => resolve(false))
  })
}

const nodePeer = (name, script) => ({
  name,
  async start() {
    const port = await freePort()
    const { proc, value } = await startProcess(name, 'taskset', ['-c', SERVER_CORE, process.execPath, script, '--port', String(port)], { ready: listeningUrl })
    return { proc, pid: proc.pid, stream: `${value}/events`, publish: `${value}/publish`, streamHeaders: [], publishHeaders: [] }
  },
})

/**
 * rawsse as its bin runs it; `cli` may be another build's dist/cli.js (--baseline); `extra`: more
 * flags; `query`: the streams' channel (and tag) and the publish's channel, e.g. `channel=bench`.
 */
const rawssePeer = (name, cli, extra = [], query = { stream: '', publish: '' }) => ({
  name,
  async start() {
    const args = ['--port', String(await freePort()), '--tick', '0', '--heartbeat', '0', '--publish-token', PUBLISH_TOKEN, '--max-clients', '20000', '--history', '1000', ...extra]
    const { proc, value } = await startProcess(name, 'taskset', ['-c', SERVER_CORE, process.execPath, ...binNodeFlags(), cli, ...args], { ready: listeningUrl })
    return {
      proc,
      pid: proc.pid,
      stream: `${value}/events/${PUBLISH_TOKEN}${query.stream}`,
      publish: `${value}/publish${query.publish}`,
      streamHeaders: [],
      publishHeaders: [`Authorization: Bearer ${PUBLISH_TOKEN}`],
    }
  },
})

/** The peers of a run without --peers. */
const DEFAULT_PEERS = ['rawsse', 'better-sse', 'node-http', 'nchan']

export const PEERS = {
  rawsse: rawssePeer('rawsse', CLI),
  // Only when asked (--peers): rawsse without its log (--log text is the default), to price it.
  'rawsse-log-off': rawssePeer('rawsse-log-off', CLI, ['--log', 'off']),
  // Only when asked: events published to a channel, to streams on it, untagged and tagged
  // (`tag=channel`, what a shared browser leader asks for), to price the tag.
  'rawsse-channel': rawssePeer('rawsse-channel', CLI, [], { stream: '?channel=bench', publish: '?channel=bench' }),
  'rawsse-tagged': rawssePeer('rawsse-tagged', CLI, [], { stream: '?channel=bench&tag=channel', publish: '?channel=bench' }),
  'better-sse': nodePeer('better-sse', path.join(BENCH, 'peers', 'better-sse.mjs')),
  'node-http': nodePeer('node-http', path.join(BENCH, 'peers', 'node-http.mjs')),
  nchan: {
    name: 'nchan',
    async start() {
      const found = findNchan()
      if (!found.ok) throw new Error(`nchan: missing ${found.missing.join(' and ')}`)
      const port = await freePort()
      const prefix = mkdtempSync(path.join(os.tmpdir(), 'rawsse-nchan-'))
      const conf = readFileSync(path.join(BENCH, 'peers', 'nchan.conf'), 'utf8')
        .replaceAll('@MODULE@', found.module)
        .replaceAll('@PORT@', String(port))
        .replaceAll('@PREFIX@', prefix)
      writeFileSync(path.join(prefix, 'nginx.conf'), conf)
      const args = ['-c', SERVER_CORE, found.nginx, '-p', prefix, '-c', path.join(prefix, 'nginx.conf'), '-g', 'daemon off;']
      let started
      try {
        started = await startProcess('nchan', 'taskset', args, {
          withChildren: true,
          // Ready when the worker is up and the port answers.
          ready: async (_out, proc) => childPids(proc.pid).length > 0 && (await canConnect(port)),
        })
      } catch (err) {
        rmSync(prefix, { recursive: true, force: true })
        throw err
      }
      const { proc } = started
      const stop = proc.stop.bind(proc)
      proc.stop = async (graceMs) => {
        await stop(graceMs)
        rmSync(prefix, { recursive: true, force: true })
      }
      return {
        proc,
        pid: proc.pid,
        stream: `http://127.0.0.1:${port}/sub`,
        publish: `http://127.0.0.1:${port}/pub`,
        streamHeaders: [],
        publishHeaders: [],
      }
    },
  },
}

// ---------------------------------------------------------------------------------------------
// The load tool and the idle-stream holder.

/** One `rawsse bench` run on core 1; resolves to its JSON (plus serverCpuPercent) or { error }. */
async function loadRun(peer, { streams, window, rate, duration, warmup, workers }) {
  const args = [CLI, 'bench', peer.stream, '--streams', String(streams)]
  // nchan only treats a request as EventSource when it asks for text/event-stream, as browsers do.
  for (const h of ['Accept: text/event-stream', ...peer.streamHeaders]) args.push('--header', h)
  args.push('--publish', peer.publish)
  for (const h of peer.publishHeaders) args.push('--publish-header', h)
  args.push('--body', '{seq} {ts}')
  if (rate !== undefined) args.push('--rate', String(rate))
  else args.push('--window', String(window))
  args.push('--duration', String(duration), '--warmup', String(warmup))
  if (workers !== undefined) args.push('--workers', String(workers))
  args.push('--json')
  const timeoutMs = (duration + warmup + 40 + streams / 400) * 1000
  const cpu0 = cpuSeconds(peer.pid)
  const t0 = process.hrtime.bigint()
  let proc
  try {
    ;({ proc } = await startProcess('rawsse bench', 'taskset', ['-c', LOAD_CORE, process.execPath, ...args], {
      ready: () => true,
      timeoutMs: 5000,
    }))
  } catch (err) {
    return { error: err.message }
  }
  const timer = sleep(timeoutMs).then(() => 'timeout')
  const outcome = await Promise.race([proc.exited, timer])
  await Promise.race([proc.closed, sleep(2000)]) // all of its stdout
  const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9
  const serverCpu = cpuSeconds(peer.pid) - cpu0
  await proc.stop(1000)
  if (outcome === 'timeout') return { error: `rawsse bench did not finish within ${timeoutMs / 1000} s`, args }
  const text = proc.stdout.trim()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    const line = text.split('\n').reverse().find((l) => l.trim().startsWith('{'))
    try {
      json = JSON.parse(line ?? '')
    } catch {
      return { error: `rawsse bench exited ${outcome.signal ?? outcome.code} without JSON: ${tail(proc.stderr || text, 300)}`, args }
    }
  }
  // The server's CPU over the whole run (connect, warm-up, measure, close): a saturated server
  // shows ~100 %; well below that, the load tool or the window was the limit.
  json.serverCpuPercent = (100 * serverCpu) / wallSeconds
  json.args = args
  return json
}

/** Opens `streams` idle streams from a helper process on core 1; resolves to its handle. */
async function holdStreams(peer, streams) {
  const args = [fileURLToPath(import.meta.url), '--hold', peer.stream, String(streams)]
  for (const h of ['Accept: text/event-stream', ...peer.streamHeaders]) args.push('--header', h)
  const { proc, value } = await startProcess('holder', 'taskset', ['-c', LOAD_CORE, process.execPath, ...args], {
    ready: (out) => {
      const line = out.split('\n').find((l) => l.startsWith('{'))
      return line ? JSON.parse(line) : undefined
    },
    timeoutMs: 60_000 + streams * 5,
  })
  return { proc, ...value }
}

async function holdMain(url, n, headers) {
  const u = new URL(url)
  const head = `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n${headers.map((h) => h + '\r\n').join('')}\r\n`
  const sockets = []
  let ok = 0
  let failed = 0
  let next = 0
  const SOURCE_NET = `127.${1 + Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`
  const IN_FLIGHT = 256 // below the servers' listen backlogs (511), so no SYN is dropped and retried
  await new Promise((resolve) => {
    const open = () => {
      if (next >= n) return
      next++
      // On loopback, from a source address of our own (a new one every 20 000 streams): a
      // socket bound to an address takes its port from the ephemeral range of that address only,
      // so the holder neither competes with the load tool (127.0.0.x) nor meets the TIME_WAIT
      // ports of an earlier holder.
      const local = u.hostname.startsWith('127.') ? { localAddress: `${SOURCE_NET}.${1 + Math.floor(next / 20000)}` } : {}
      const s = net.connect({ port: Number(u.port), host: u.hostname, ...local })
      sockets.push(s)
      let first = true
      const settle = (good) => {
        if (!first) return
        first = false
        good ? ok++ : failed++
        if (ok + failed === n) resolve()
        else open()
      }
      s.on('connect', () => s.write(head))
      s.on('data', (d) => settle(/^HTTP\/1\.[01] 200 /.test(d.toString('latin1', 0, 16)))) // later data: discarded
      s.on('error', () => settle(false))
      s.on('close', () => settle(false))
    }
    for (let i = 0; i < Math.min(IN_FLIGHT, n); i++) open()
    if (n === 0) resolve()
  })
  process.stdout.write(JSON.stringify({ open: ok, failed }) + '\n')
  const bye = () => {
    for (const s of sockets) s.destroy()
    process.exit(0)
  }
  process.on('SIGTERM', bye)
  process.on('SIGINT', bye)
  setInterval(() => {}, 1 << 30)
}

// ---------------------------------------------------------------------------------------------
// The run.

function parseFlags(argv) {
  const quick = argv.includes('--quick')
  const { get, list, num, done } = flagReader(argv, ['quick', 'idle-only'])
  const o = {
    quick,
    peers: list('peers', DEFAULT_PEERS.join(',')),
    streams: argv.includes('--idle-only') ? [] : list('streams', quick ? '100,1000' : '100,1000,10000,19000').map(Number),
    windows: list('windows', '1,8').map(Number),
    rounds: num('rounds', quick ? 1 : 3),
    duration: num('duration', quick ? 3 : 8),
    warmup: num('warmup', 1),
    rate: num('rate', 20),
    rateStreams: num('rate-streams', 1000),
    rssStreams: list('rss-streams', quick ? '1000' : '10000,19000').map(Number),
    settle: num('settle', quick ? 5 : 30),
    workers: get('workers') === undefined ? undefined : num('workers', 1),
    out: path.resolve(get('out') ?? path.join(BENCH, 'RESULTS.md')),
  }
  // Another build of rawsse (its dist/cli.js) as one more peer, to compare two versions in one run.
  const baseline = get('baseline')
  done()
  if (baseline !== undefined) {
    PEERS['rawsse-baseline'] = rawssePeer('rawsse-baseline', buildAt(baseline)) // a file, or a commit built in a temporary worktree
    if (!o.peers.includes('rawsse-baseline')) o.peers.push('rawsse-baseline')
  }
  for (const p of o.peers) if (!(p in PEERS)) throw new Error(`unknown peer '${p}' (peers: ${Object.keys(PEERS).join(', ')})`)
  for (const n of [...o.streams, ...o.rssStreams]) {
    if (!Number.isInteger(n) || n < 1 || n > 19000) throw new Error(`stream counts must be 1 to 19000 (20 000 open files per process), not ${n}`)
  }
  return o
}

async function main() {
  const argv = process.argv.slice(2)
  if (argv[0] === '--hold') {
    const headers = []
    for (let i = 3; i < argv.length; i++) if (argv[i] === '--header') headers.push(argv[++i])
    return holdMain(argv[1], Number(argv[2]), headers)
  }
  const o = parseFlags(argv)
  const command = `node bench/fanout.mjs${argv.length ? ' ' + shellJoin(argv) : ''}`

  // Preconditions, said plainly.
  if (os.cpus().length < 2) throw new Error('needs at least two CPU cores (server on core 0, load tool on core 1)')
  if (run('taskset', ['-V']) === null) throw new Error('taskset (util-linux) is not installed')
  const help = o.streams.length ? spawnSync(process.execPath, [CLI, 'bench', '--help'], { encoding: 'utf8', cwd: ROOT }) : { status: 0 }
  if (help.status !== 0) throw new Error(`the load tool is missing: \`node dist/cli.js bench --help\` failed (run \`npm install\`, which builds dist/).\n${tail(help.stderr || help.stdout, 300)}`)
  const notes = []
  if (o.peers.includes('nchan')) {
    const found = findNchan()
    if (!found.ok) {
      const msg = `nchan NOT BENCHED: ${found.missing.join(' and ')} ${found.missing.length > 1 ? 'are' : 'is'} not installed. Install Debian's packages with \`${NCHAN_INSTALL_HINT}\` (as root; nginx is then only started in the foreground by this script, a system service is not needed and may be disabled), then run this again.`
      process.stderr.write(msg + '\n')
      notes.push(msg)
      o.peers = o.peers.filter((p) => p !== 'nchan')
    }
  }

  const m = machine()
  process.stderr.write(`fanout: ${o.peers.join(', ')}; N = ${o.streams.join(', ')}; W = ${o.windows.join(', ')}; ${o.rounds} round(s); ${o.duration} s runs\n`)

  // results[scenario][N][peer] = [run, ...]
  const results = {}
  const put = (scenario, n, peer, r) => {
    results[scenario] ??= {}
    results[scenario][n] ??= {}
    ;(results[scenario][n][peer] ??= []).push(r)
  }
  for (let round = 1; round <= o.rounds; round++) {
    for (const n of o.streams) {
      for (const name of o.peers) {
        let peer
        try {
          peer = await PEERS[name].start()
        } catch (err) {
          process.stderr.write(`round ${round} N=${n} ${name}: ${err.message}\n`)
          notes.push(`round ${round}, N = ${n}, ${name}: did not start: ${err.message.split('\n')[0]}`)
          continue
        }
        try {
          const scenarios = o.windows.map((w) => ({ key: `W${w}`, window: w }))
          if (n === o.rateStreams && o.rate > 0) scenarios.push({ key: 'rate', rate: o.rate })
          for (const sc of scenarios) {
            const waited = await waitForPorts(n)
            if (waited >= 1) process.stderr.write(`waited ${fmt(waited)} s for ${fmt(n)} free ports on 127.0.0.1 (TIME_WAIT of the last run)\n`)
            const busy = await busiestCorePercent()
            if (busy > BUSY_LIMIT) {
              const msg = `round ${round}, N = ${n}, ${name}, ${sc.key}: a core was ${fmt(busy)} % busy with other work just before the run; its numbers are suspect`
              process.stderr.write(msg + '\n')
              notes.push(msg)
            }
            const r = await loadRun(peer, { streams: n, window: sc.window, rate: sc.rate, duration: o.duration, warmup: o.warmup, workers: o.workers })
            put(sc.key, n, name, r)
            const line = r.error
              ? `ERROR ${r.error}`
              : `${fmt(r.deliveriesPerSecond)} deliveries/s, p50 ${fmt(r.latencyMs?.p50, 1)} ms, p99 ${fmt(r.latencyMs?.p99, 1)} ms, connected ${r.connected}/${r.streams}, lost ${r.lost}, dup ${r.duplicates}, server CPU ${fmt(r.serverCpuPercent)} %, bench CPU ${fmt(r.benchCpu?.percentOfOneCore)} %`
            process.stderr.write(`round ${round} N=${n} ${name} ${sc.key}: ${line}\n`)
            if (r.error) notes.push(`round ${round}, N = ${n}, ${name}, ${sc.key}: ${r.error.split('\n')[0]}`)
            // A dead server would fail every later run the same way: start a fresh one.
            if (peer.proc.child.exitCode !== null || peer.proc.child.signalCode !== null) {
              notes.push(`round ${round}, N = ${n}, ${name}: the server exited during ${sc.key}: ${tail(peer.proc.stderr, 200)}`)
              break
            }
          }
        } finally {
          await peer.proc.stop()
        }
      }
    }
  }

  const rss = await idleMemory(o, notes)

  const md = report(o, m, command, results, rss, notes)
  writeSection(o.out, 'fanout', md)
  writeCharts(o.out)
  process.stdout.write(md + '\n')
  process.stderr.write(`wrote the fan-out section of ${path.relative(process.cwd(), o.out) || o.out}\n`)
}

/**
 * Idle memory per stream, and whether it comes back. Per N, one server per peer, all started
 * together and idle on core 0. Each wave (one per round) opens N streams to every server in turn
 * (a holder process per server, on core 1), reads each server's RSS 2 s after its streams opened,
 * again after --settle s of idling, then closes every stream and reads it after --settle s more.
 * The settled reading is there because a Node heap shrinks only when V8 decides to collect: the
 * connection burst grows the young generation and leaves garbage that an idle process may keep
 * for tens of seconds. The same server sees every wave, so one that kept something per stream
 * would grow from wave to wave.
 * Returns rss[N][peer] = [{ rss0, open2s, settled, left, open, failed }, ...] (one row per wave).
 */
async function idleMemory(o, notes) {
  const rss = {}
  for (const n of o.rssStreams) {
    const servers = []
    try {
      for (const name of o.peers) {
        try {
          const peer = await PEERS[name].start()
          servers.push({ name, peer, holder: null })
        } catch (err) {
          process.stderr.write(`idle N=${n} ${name}: ${err.message}\n`)
          notes.push(`idle N = ${n}, ${name}: did not start: ${err.message.split('\n')[0]}`)
        }
      }
      await sleep(1000)
      const rss0 = new Map(servers.map((s) => [s.name, rssBytes(s.peer.pid)]))
      for (let wave = 1; wave <= o.rounds; wave++) {
        const rows = new Map()
        for (const s of servers) {
          try {
            s.holder = await holdStreams(s.peer, n)
            await sleep(2000)
            rows.set(s.name, { rss0: rss0.get(s.name), open2s: rssBytes(s.peer.pid), open: s.holder.open, failed: s.holder.failed })
            if (s.holder.failed) notes.push(`idle N = ${n}, wave ${wave}, ${s.name}: ${s.holder.failed} of ${n} streams failed to open`)
          } catch (err) {
            process.stderr.write(`idle N=${n} wave ${wave} ${s.name}: ${err.message}\n`)
            notes.push(`idle N = ${n}, wave ${wave}, ${s.name}: ${err.message.split('\n')[0]}`)
          }
        }
        await sleep(o.settle * 1000)
        for (const s of servers) {
          const row = rows.get(s.name)
          if (row) row.settled = rssBytes(s.peer.pid)
        }
        for (const s of servers) {
          await s.holder?.proc.stop()
          s.holder = null
        }
        await sleep(o.settle * 1000)
        for (const s of servers) {
          const row = rows.get(s.name)
          if (!row) continue
          row.left = rssBytes(s.peer.pid)
          ;((rss[n] ??= {})[s.name] ??= []).push(row)
          process.stderr.write(
            `idle N=${n} wave ${wave} ${s.name}: RSS ${mib(row.rss0)} MiB → ${mib(row.open2s)} (2 s) → ${mib(row.settled)} (${o.settle} s) with ${row.open} open; ${fmt(perStream(row, 'settled'))} bytes/stream; ${mib(row.left)} MiB after they left\n`,
          )
        }
      }
    } finally {
      for (const s of servers) {
        await s.holder?.proc.stop()
        await s.peer.proc.stop()
      }
    }
  }
  return rss
}

/** (RSS with the streams open − RSS before any) / streams, for one of a row's readings. */
function perStream(row, key) {
  return (row[key] - row.rss0) / Math.max(1, row.open)
}

export function report(o, m, command, results, rss, notes) {
  const peers = o.peers
  const ok = (runs) => (runs ?? []).filter((r) => !r.error)
  const med = (runs, f) => median(ok(runs).map(f))
  const out = []
  out.push(`## Fan-out${o.quick ? ' (QUICK SMOKE RUN: one round, short runs; not results)' : ''}`)
  out.push('')
  out.push(machineMarkdown(m))
  out.push(`- Command: \`${command}\``)
  out.push(
    `- Servers pinned to core ${SERVER_CORE}, \`rawsse bench\` to core ${LOAD_CORE}; a fresh server per N; ${o.rounds} round(s), interleaved; runs of ${o.duration} s after ${o.warmup} s warm-up; body \`{seq} {ts}\`.`,
  )
  out.push(
    `- Peers: rawsse (started as its bin starts it, \`node ${binNodeFlags().join(' ')} dist/cli.js\`, with \`--tick 0 --heartbeat 0 --history 1000 --max-clients 20000\`), better-sse on node:http (bench/peers/better-sse.mjs), a naive node:http server (bench/peers/node-http.mjs), nginx + nchan with one worker (bench/peers/nchan.conf).`,
  )
  out.push('- Figures are medians over rounds; spread is min–max over rounds; × rawsse is the peer\'s median divided by rawsse\'s (for deliveries/s higher is better, for latency and memory lower is better).')
  out.push('')
  for (const w of o.windows) {
    const key = `W${w}`
    if (!results[key]) continue
    out.push(`### Closed loop, W = ${w} (${w} event${w > 1 ? 's' : ''} in flight; the next is published when every stream has one)`)
    out.push('')
    out.push('| N | peer | deliveries/s | spread | × rawsse | p50 ms | p99 ms | connected | lost | dup | server CPU % | bench CPU % |')
    out.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (const n of o.streams) {
      const base = med(results[key][n]?.rawsse, (r) => r.deliveriesPerSecond)
      for (const p of peers) {
        const runs = results[key][n]?.[p]
        if (!runs) continue
        const good = ok(runs)
        const dps = med(runs, (r) => r.deliveriesPerSecond)
        const errs = runs.length - good.length
        out.push(
          `| ${fmt(n)} | ${p} | ${fmt(dps)} | ${spread(good.map((r) => r.deliveriesPerSecond))} | ${p === 'rawsse' ? '1.00×' : ratio(dps, base)} | ${fmt(med(runs, (r) => r.latencyMs?.p50), 1)} | ${fmt(med(runs, (r) => r.latencyMs?.p99), 1)} | ${fmt(med(runs, (r) => r.connected))}/${fmt(n)} | ${fmt(med(runs, (r) => r.lost))} | ${fmt(med(runs, (r) => r.duplicates))} | ${fmt(med(runs, (r) => r.serverCpuPercent))} | ${fmt(med(runs, (r) => r.benchCpu?.percentOfOneCore))}${errs ? ` (${errs} run${errs > 1 ? 's' : ''} failed)` : ''} |`,
        )
      }
    }
    out.push('')
  }
  if (results.rate) {
    out.push(`### Fixed rate: ${o.rate} events/s to N = ${fmt(o.rateStreams)} streams (latency below saturation)`)
    out.push('')
    out.push('| N | peer | p50 ms | p90 ms | p99 ms | p99 spread | × rawsse (p99) | max ms | deliveries/s | lost | dup | server CPU % |')
    out.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    const n = o.rateStreams
    const base = med(results.rate[n]?.rawsse, (r) => r.latencyMs?.p99)
    for (const p of peers) {
      const runs = results.rate[n]?.[p]
      if (!runs) continue
      const p99 = med(runs, (r) => r.latencyMs?.p99)
      out.push(
        `| ${fmt(n)} | ${p} | ${fmt(med(runs, (r) => r.latencyMs?.p50), 2)} | ${fmt(med(runs, (r) => r.latencyMs?.p90), 2)} | ${fmt(p99, 2)} | ${spread(ok(runs).map((r) => r.latencyMs?.p99), 2)} | ${p === 'rawsse' ? '1.00×' : ratio(p99, base)} | ${fmt(med(runs, (r) => r.latencyMs?.max), 1)} | ${fmt(med(runs, (r) => r.deliveriesPerSecond))} | ${fmt(med(runs, (r) => r.lost))} | ${fmt(med(runs, (r) => r.duplicates))} | ${fmt(med(runs, (r) => r.serverCpuPercent))} |`,
      )
    }
    out.push('')
  }
  if (Object.keys(rss).length) {
    out.push('### Idle memory per stream: (RSS with N idle streams − RSS with none) / N')
    out.push('')
    out.push(
      `One server per peer holds N idle streams for ${o.rounds} wave(s) (open, wait, close, wait). Bytes per stream 2 s after the last stream opened, and settled: after ${o.settle} s of idling (Node peers: once V8 has collected the connection burst's garbage and shrunk its young generation, if it did). After leaving: RSS ${o.settle} s after every stream closed, wave by wave; a server that kept something per stream would grow from wave to wave.`,
    )
    out.push('')
    out.push('| N | peer | RSS, 0 streams (MiB) | bytes/stream at 2 s | RSS settled (MiB) | bytes/stream settled | spread | × rawsse | RSS after leaving, by wave (MiB) | open |')
    out.push('|---:|---|---:|---:|---:|---:|---:|---:|---|---:|')
    for (const n of o.rssStreams) {
      const base = median((rss[n]?.rawsse ?? []).map((r) => perStream(r, 'settled')))
      for (const p of peers) {
        const rows = rss[n]?.[p]
        if (!rows) continue
        const per = median(rows.map((r) => perStream(r, 'settled')))
        out.push(
          `| ${fmt(n)} | ${p} | ${mib(median(rows.map((r) => r.rss0)))} | ${fmt(median(rows.map((r) => perStream(r, 'open2s'))))} | ${mib(median(rows.map((r) => r.settled)))} | ${fmt(per)} | ${spread(rows.map((r) => perStream(r, 'settled')))} | ${p === 'rawsse' ? '1.00×' : ratio(per, base)} | ${rows.map((r) => mib(r.left)).join(' → ')} | ${fmt(median(rows.map((r) => r.open)))}/${fmt(n)} |`,
        )
      }
    }
    out.push('')
    out.push('nginx: master plus worker (the master is the same with or without streams).')
    out.push('')
  }
  out.push('### Notes')
  out.push('')
  out.push(
    '- server CPU % is the server\'s CPU time over the whole load-tool run (connect, warm-up, measure, close) as a share of one core; near 100 % the server was the limit, well below it the load tool (bench CPU %) or the window was.',
  )
  out.push('- better-sse is used as documented, with its serializer set to write the body as is (its default JSON-quotes it) and keep-alive comments off; it still gives every event a random UUID id. node-http ignores `res.write()`\'s return value, as a first attempt does.')
  out.push('- nchan treats a subscriber as EventSource only when it sends `Accept: text/event-stream`, so every stream request carries that header; nchan answers 202 to a publish.')
  if (notes.length === 0) out.push('- Every run completed.')
  for (const n of notes) out.push(`- ${n}`)
  out.push('', dataComment(fanoutData(o, m, command, results, rss)))
  return out.join('\n')
}

/**
 * The tables' figures as JSON, each row with its value in every round (the tables keep only the
 * median and the min–max), for bench/charts.mjs and any later reader. The shape is the one
 * charts.mjs's parseFanoutTables reads out of the tables of a section written before this.
 */
export function fanoutData(o, m, command, results, rss) {
  const round = (x, digits = 0) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null)
  const spreadOf = (xs, digits = 0) => {
    const v = xs.filter(Number.isFinite)
    return v.length > 1 ? [round(Math.min(...v), digits), round(Math.max(...v), digits)] : null
  }
  const good = (runs) => runs.filter((r) => !r.error)
  const closed = []
  for (const w of o.windows) {
    for (const n of o.streams) {
      for (const peer of o.peers) {
        const runs = results[`W${w}`]?.[n]?.[peer]
        if (!runs) continue
        const dps = good(runs).map((r) => r.deliveriesPerSecond)
        const p50 = good(runs).map((r) => r.latencyMs?.p50)
        const p99 = good(runs).map((r) => r.latencyMs?.p99)
        const rounds = { dps: dps.map((x) => round(x)), p50: p50.map((x) => round(x, 2)), p99: p99.map((x) => round(x, 2)) }
        closed.push({ window: w, n, peer, dps: round(median(dps)), spread: spreadOf(dps), p50: round(median(p50), 1), p99: round(median(p99), 1), rounds })
      }
    }
  }
  let rate = null
  if (results.rate) {
    const rows = []
    for (const peer of o.peers) {
      const runs = results.rate[o.rateStreams]?.[peer]
      if (!runs) continue
      const [p50, p90, p99, max] = ['p50', 'p90', 'p99', 'max'].map((k) => good(runs).map((r) => r.latencyMs?.[k]))
      const rounds = { p50: p50.map((x) => round(x, 2)), p90: p90.map((x) => round(x, 2)), p99: p99.map((x) => round(x, 2)), max: max.map((x) => round(x, 1)) }
      rows.push({ peer, p50: round(median(p50), 2), p90: round(median(p90), 2), p99: round(median(p99), 2), p99Spread: spreadOf(p99, 2), max: round(median(max), 1), rounds })
    }
    rate = { rate: o.rate, n: o.rateStreams, rows }
  }
  const idle = []
  for (const n of o.rssStreams) {
    for (const peer of o.peers) {
      const rows = rss[n]?.[peer]
      if (!rows) continue
      const settled = rows.map((r) => perStream(r, 'settled'))
      const at2s = rows.map((r) => perStream(r, 'open2s'))
      const rounds = { perStream: settled.map((x) => round(x)), perStream2s: at2s.map((x) => round(x)), rssLeft: rows.map((r) => r.left) }
      idle.push({ n, peer, perStream: round(median(settled)), spread: spreadOf(settled), perStream2s: round(median(at2s)), rounds })
    }
  }
  return { date: m.date, command, rawsse: m.rawsse, quick: o.quick, rounds: o.rounds, settle: o.settle, peers: o.peers, closed, rate, idle }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((err) => {
    process.stderr.write(`fanout: ${err.message}\n`)
    killAll()
    process.exit(1)
  })
}
