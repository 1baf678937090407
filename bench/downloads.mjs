// Never-reading downloads (issue 20, points 1 and 2): what a closed download leaves in the kernel,
// and what open ones cost the server, measured on one build of rawsse.
//
//   node bench/downloads.mjs [--cli PATH|COMMIT] [--n 5000] [--label NAME] [--server-arg ARG]...
//       [--ramp-step 500] [--ramp-ms 100] [--profile DIR] [--quick] [--out bench/RESULTS.md]
//
// e.g. `node bench/downloads.mjs --cli /tmp/before/dist/cli.js --label before --n 19700`, and once
// the fix is built, `node bench/downloads.mjs --label after --n 19700`.
//
// The server is PATH (default: this repo's dist/cli.js), run as its bin runs it (the node flags on
// its first line), pinned to core 0 with `taskset`, with `--tick 0 --max-clients 20000`, --token,
// --publish-token, `--public DIR` (a temporary folder holding big.bin, 16 MiB of random bytes),
// then each --server-arg. This script and its helper processes run on core 1.
//
// N connections (--n; up to the server's connection budget: 20 000 open files less its reserve
// of 256) each send `GET /big.bin HTTP/1.1` and never read: the socket is paused before it
// connects, so Node never starts reading it and the kernel's receive window closes after the
// first ~100 KiB. They come from ceil(N / 9 000) helper processes (this script with `--helper`;
// 20 000 open files per process), bound to source addresses 127.A.B.C of this run (one per 1 000
// connections: no earlier run's TIME_WAIT, no slow bind()), opened at --ramp-step per --ramp-ms
// in all, each kept open. Only 127.x addresses are ever used.
//
// Every 250 ms, from /proc: the server's RSS (VmRSS) and open files (/proc/PID/fd), and the
// kernel's `TCP: inuse … orphan … tw … alloc … mem …` line of /proc/net/sockstat (mem in pages
// of 4 KiB; the whole machine, so other programs' sockets count too: the baseline is reported).
// Every second from the first connection on, this process opens a valid subscriber stream
// (`GET /events/TOKEN`, from a source address of this run) and times its `ready` (10 s at most),
// then closes it: p50 / max of those that got it, and how many got it within 2 s.
//
// The server's send deadline is fixed at 30 s (SEND_TIMEOUT_MS): a download the client takes
// nothing of for that long is closed. 45 s after the first connection (and at least 35 s after
// the last), the check: sockstat's orphans and TCP memory, the server's RSS and open files, its
// `/stats` `connections` object (all of it: `reset` once resets are counted), and `ss` for this
// server's port: its own sockets by state (the orphans in FIN-WAIT-1 and their send queues) and
// the peers' sockets by state, which says whether they saw the close: ESTAB (still open: a FIN
// waits behind the unsent bytes), CLOSE-WAIT (a FIN arrived: a clean end) or gone while the
// helper still holds the socket (a reset closed it). Node tells a paused socket nothing (it does
// not watch it; what it did report is counted too), and on Linux a reset socket with bytes still
// in its receive queue reads as those bytes and then a plain end, not ECONNRESET. So after the
// readings each peer writes an empty line (`\r\n`, which HTTP/1.1 lets a server ignore before a
// request): on a reset connection the write fails at once with ECONNRESET, on an open one it goes
// out (and an orphan on the other end answers it with a reset, which frees it); then each reads
// one chunk, for the status line of its answer (200, or 503 past the connection budget).
//
// It writes its section of bench/RESULTS.md (`<!-- downloads:begin -->` … `<!-- downloads:end -->`,
// after the hostile section) with one block per --label, each replaced only by a run with its
// label, and a table of every label's figures at the top. Every process it starts is killed by
// PID at the end, on errors and on Ctrl-C; the run is bounded (5 min) and takes about 1 min.
// --quick: N = 500, written nowhere unless --out is given: a check of the script, not results.
// Internal: `node bench/downloads.mjs --helper JSON` is one download process.

import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import {
  BENCH,
  buildAt,
  buildCommit,
  BUSY_LIMIT,
  busiestCorePercent,
  CLI,
  fdCount,
  flagReader,
  fmt,
  freePort,
  Http,
  killAll,
  labelBlocks,
  labelledSection,
  listeningUrl,
  machine,
  machineMarkdown,
  PER_SOURCE,
  placeSectionAfter,
  PUBLISH_TOKEN,
  quantile,
  readSection,
  rssBytes,
  run,
  shellJoin,
  sleep,
  sourcesFor,
  startProcess,
  subscribeAttempt,
  tail,
  writeSection,
  lastJsonLine,
  rawsseArgv,
  SAMPLE_MS,
  sampler,
  SUB_TOKEN,
} from './lib.mjs'

const SELF = fileURLToPath(import.meta.url)
const SERVER_CORE = '0'
const LOAD_CORE = '1'
const FILE_NAME = 'big.bin'
const FILE_BYTES = 16 * 2 ** 20 // over the server's in-memory cache limit: streamed from disk
const FD_LIMIT = 20_000 // open files per process on the bench machines (hard limit)
const FD_RESERVE = 256 // the server's (src/server/limits.ts): its connection budget is FD_LIMIT less this
const PER_HELPER = 9_000 // sockets per helper process, well under FD_LIMIT
const SUBSCRIBE_WAIT_MS = 10_000
const READY_GOAL_MS = 2_000 // issue 20: a valid subscriber gets `ready` in under 2 s throughout
const SEND_TIMEOUT_S = 30 // the server's (SEND_TIMEOUT_MS, not a flag)
const CHECK_AFTER_FIRST_S = 45 // the check: this long after the first connection…
const CHECK_AFTER_LAST_S = SEND_TIMEOUT_S + 5 // …and at least this long after the last
const RAMP_BOUND_MS = 60_000 // every connection open (or failed) within this, or the check goes on without
const PROBE_WRITE_MS = 1_000 // after the check, how long the peers' writes have to fail
const PROBE_READ_MS = 1_000 // and then to read their first chunk
const RUN_BOUND_S = 300
const PAGE = Number(run('getconf', ['PAGESIZE'])) || 4096 // /proc/net/sockstat's mem unit
const RSS_GOAL_MIB = 256 // issue 20: RSS within start + 256 MiB up to the connection limit

const mib = (bytes, d = 0) => fmt(bytes / 2 ** 20, d)
const msOrS = (ms) => (!Number.isFinite(ms) ? '–' : ms < 1000 ? `${fmt(ms)} ms` : `${fmt(ms / 1000, 1)} s`)

// ---------------------------------------------------------------------------------------------
// Helper: one process of never-reading downloads. Opens its share at its pace from cfg.startAt,
// prints its counts as a JSON line every 500 ms; on SIGUSR2 (the check is done) it finds out
// which of its connections were reset, and prints that.

function downloadHelper(cfg) {
  const { port, count, sources, step, everyMs, startAt } = cfg
  const REQUEST = `GET /${FILE_NAME} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`
  const sockets = []
  const c = { count, opened: 0, failed: 0, firstAt: null, lastAt: null, failures: {}, paused: { end: 0, close: 0, errors: {} }, probe: null }
  const bump = (o, k) => (o[k] = (o[k] ?? 0) + 1)
  const open = (i) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: sources[Math.floor(i / PER_SOURCE) % sources.length] })
    // Paused before it connects: Node then never starts reading it (net.js reads on connect only
    // when not paused), and what the server sends stays in the kernel's receive buffer.
    s.pause()
    const st = { s, connected: false, closed: false }
    sockets.push(st)
    s.on('connect', () => {
      st.connected = true
      c.opened++
      const now = Date.now()
      c.firstAt ??= now
      c.lastAt = now
      s.write(REQUEST)
    })
    s.on('error', (e) => {
      const code = e.code ?? e.message
      if (!st.connected) (c.failed++, bump(c.failures, code))
      else if (c.probe === null) bump(c.paused.errors, code)
    })
    s.on('end', () => c.probe === null && c.paused.end++)
    s.on('close', () => {
      st.closed = true
      if (st.connected && c.probe === null) c.paused.close++
    })
  }
  let next = 0
  const ramp = () => {
    for (let k = 0; k < step && next < count; k++) open(next++)
    if (next < count) setTimeout(ramp, everyMs)
  }
  setTimeout(ramp, Math.max(0, startAt - Date.now()))
  const report = () => process.stdout.write(JSON.stringify({ t: Date.now(), ...c }) + '\n')
  const ticker = setInterval(report, 500)
  report()
  // The check is done: did each connection see its close? A paused socket is not watched by
  // Node, so each writes an empty line (which HTTP/1.1 lets a server ignore before a request): on
  // a connection the server reset, the write fails at once with ECONNRESET; on one still open at
  // the TCP level it goes out. Then each reads one chunk, for the status line of its answer.
  process.on('SIGUSR2', () => {
    if (c.probe !== null) return
    const p = (c.probe = { written: 0, errors: {}, statuses: {}, closedBefore: 0 })
    const live = sockets.filter((st) => st.connected && !st.closed)
    p.closedBefore = sockets.filter((st) => st.connected && st.closed).length
    for (const st of live) {
      st.s.write('\r\n', (err) => (err ? bump(p.errors, err.code ?? err.message) : p.written++))
    }
    setTimeout(() => {
      for (const st of live) {
        if (st.s.destroyed) continue
        st.s.once('data', (d) => {
          st.s.pause()
          bump(p.statuses, /^HTTP\/1\.[01] (\d{3})/.exec(d.toString('latin1', 0, 16))?.[1] ?? 'not HTTP')
        })
        st.s.resume()
      }
      setTimeout(() => {
        p.done = true
        clearInterval(ticker)
        report()
      }, PROBE_READ_MS)
    }, PROBE_WRITE_MS)
  })
  const bye = () => {
    for (const st of sockets) st.s.destroy()
    process.exit(0)
  }
  process.on('SIGTERM', bye)
  process.on('SIGINT', bye)
}

// ---------------------------------------------------------------------------------------------
// /proc and ss readings.

/** /proc/net/sockstat's TCP line: inuse, orphan, tw, alloc, mem (pages). */
function sockstat() {
  try {
    const m = /^TCP: inuse (\d+) orphan (\d+) tw (\d+) alloc (\d+) mem (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'))
    return { inuse: +m[1], orphan: +m[2], tw: +m[3], alloc: +m[4], memBytes: +m[5] * PAGE }
  } catch {
    return { inuse: NaN, orphan: NaN, tw: NaN, alloc: NaN, memBytes: NaN }
  }
}


/**
 * TCP sockets on this server's port, from `ss`: `side` 'server' (its own, source port = port; the
 * orphans are among them, owned by no process) or 'peer' (the clients', destination port = port),
 * only those whose other end (server side) or own address (peer side) is one of `sources`. Counts
 * by state and the summed Recv-Q / Send-Q.
 */
function socketsByState(port, side, sources) {
  const filter = side === 'server' ? `( sport = :${port} )` : `( dport = :${port} )`
  const out = spawnSync('ss', ['-tanH', filter], { encoding: 'utf8', maxBuffer: 1 << 28 })
  if (out.error || out.status !== 0) return null
  const r = { states: {}, recvQ: 0, sendQ: 0, n: 0 }
  for (const line of out.stdout.split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f.length < 5 || f[0] === 'LISTEN' || f[0] === 'TIME-WAIT') continue
    const addr = (side === 'server' ? f[4] : f[3]).replace(/:\d+$/, '')
    if (!sources.has(addr)) continue
    r.n++
    r.states[f[0]] = (r.states[f[0]] ?? 0) + 1
    r.recvQ += Number(f[1])
    r.sendQ += Number(f[2])
  }
  return r
}

// ---------------------------------------------------------------------------------------------
// The run.

function serverArgv(o, port, publicDir) {
  return rawsseArgv(o, port, { extra: ['--public', publicDir] })
}

async function measure(o, notes) {
  const r = { n: o.n }
  const publicDir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-downloads-'))
  process.on('exit', () => rmSync(publicDir, { recursive: true, force: true }))
  writeFileSync(path.join(publicDir, FILE_NAME), randomBytes(FILE_BYTES))
  const port = await freePort()
  const { proc: server } = await startProcess('rawsse', 'taskset', ['-c', SERVER_CORE, ...serverArgv(o, port, publicDir)], { ready: listeningUrl })
  r.serverCommand = `taskset -c ${SERVER_CORE} ${shellJoin(serverArgv(o, 'PORT', 'DIR').map((a) => (a === process.execPath ? 'node' : a)))}`
  const smp = sampler(server.pid, sockstat)
  const helpers = []
  const attempts = []
  try {
    const busy = await busiestCorePercent()
    if (busy > BUSY_LIMIT) notes.push(`a core was ${fmt(busy)} % busy with other work just before the run (other developers' tests)`)
    const before = smp.samples.at(-1)
    r.rssBefore = before.rss
    r.fdsBefore = before.fds
    r.kernelBefore = { orphan: before.orphan, memBytes: before.memBytes, tw: before.tw }
    // The kernel's TCP memory bounds (pages): past the second it is under pressure, the third is its cap.
    r.tcpMemBytes = (run('cat', ['/proc/sys/net/ipv4/tcp_mem']) ?? '').split(/\s+/).map((x) => Number(x) * PAGE)

    // The downloads: helpers of at most PER_HELPER sockets, each with its share of the pace.
    const procs = Math.ceil(o.n / PER_HELPER)
    const per = Math.ceil(o.n / procs)
    const sources = new Set() // the downloads' source addresses: ss counts only their sockets
    const startAt = Date.now() + 1500
    for (let k = 0; k < procs; k++) {
      const count = Math.min(per, o.n - k * per)
      const src = sourcesFor(count)
      for (const a of src) sources.add(a)
      const cfg = { port, count, sources: src, step: Math.max(1, Math.round((o.rampStep * count) / o.n)), everyMs: o.rampMs, startAt }
      const { proc } = await startProcess(`downloads ${k}`, process.execPath, [SELF, '--helper', JSON.stringify(cfg)], { ready: (out) => (out.includes('\n') ? true : undefined), timeoutMs: 30_000 })
      helpers.push(proc)
    }
    const [subSource] = sourcesFor(1)
    const counts = () => helpers.map((h) => lastJsonLine(h.stdout) ?? {})
    const sum = (xs, k) => xs.reduce((s, x) => s + (x[k] ?? 0), 0)

    // A subscriber every second from the first connection until the check.
    await sleep(Math.max(0, startAt - Date.now()))
    let checking = false
    const subscribers = (async () => {
      while (!checking) {
        attempts.push(subscribeAttempt({ port, path: `/events/${SUB_TOKEN}`, localAddress: subSource, waitMs: SUBSCRIBE_WAIT_MS }))
        await sleep(1000)
      }
    })()

    // The ramp: until every connection is open or failed.
    let c = counts()
    while (Date.now() - startAt < RAMP_BOUND_MS && sum(c, 'opened') + sum(c, 'failed') < o.n) {
      await sleep(100)
      c = counts()
    }
    r.opened = sum(c, 'opened')
    r.failed = sum(c, 'failed')
    r.failures = {}
    for (const h of c) for (const [k, v] of Object.entries(h.failures ?? {})) r.failures[k] = (r.failures[k] ?? 0) + v
    const firstAt = Math.min(...c.map((h) => h.firstAt ?? Infinity))
    const lastAt = Math.max(...c.map((h) => h.lastAt ?? -Infinity))
    if (!Number.isFinite(firstAt)) throw new Error(`no download connected: ${JSON.stringify(r.failures)}`)
    r.rampS = (lastAt - firstAt) / 1000
    if (r.opened + r.failed < o.n) notes.push(`${fmt(o.n - r.opened - r.failed)} connections were still connecting ${RAMP_BOUND_MS / 1000} s after the start`)
    process.stderr.write(`downloads: ${fmt(r.opened)} open in ${fmt(r.rampS, 1)} s (${fmt(r.failed)} failed), server RSS ${mib(rssBytes(server.pid))} MiB, ${fmt(fdCount(server.pid))} open files; the check at +${CHECK_AFTER_FIRST_S} s\n`)

    // The check.
    const checkAt = Math.max(firstAt + CHECK_AFTER_FIRST_S * 1000, lastAt + CHECK_AFTER_LAST_S * 1000)
    await sleep(Math.max(0, checkAt - Date.now()))
    checking = true
    const at = smp.samples.at(-1)
    const until = smp.samples.filter((s) => s.t <= checkAt + SAMPLE_MS)
    const peakOf = (k) => Math.max(...until.map((s) => s[k]).filter(Number.isFinite))
    r.checkAfterS = (Date.now() - firstAt) / 1000
    r.rssPeak = peakOf('rss')
    r.rssCheck = at.rss
    r.fdsPeak = peakOf('fds')
    r.fdsCheck = at.fds
    r.kernelPeak = { orphan: peakOf('orphan'), memBytes: peakOf('memBytes'), tw: peakOf('tw') }
    r.kernelCheck = { orphan: at.orphan, memBytes: at.memBytes, tw: at.tw }
    r.serverSockets = socketsByState(port, 'server', sources)
    r.peerSockets = socketsByState(port, 'peer', sources)
    const http = new Http(port)
    try {
      const st = await http.request('GET', '/stats', { headers: { Authorization: `Bearer ${PUBLISH_TOKEN}` } })
      r.connections = st.status === 200 ? JSON.parse(st.body).connections ?? null : `status ${st.status}`
    } catch (err) {
      r.connections = `no answer: ${err.message}`
    } finally {
      http.close()
    }
    c = counts()
    r.pausedSeen = { end: sum(c.map((h) => h.paused ?? {}), 'end'), close: sum(c.map((h) => h.paused ?? {}), 'close'), errors: {} }
    for (const h of c) for (const [k, v] of Object.entries(h.paused?.errors ?? {})) r.pausedSeen.errors[k] = (r.pausedSeen.errors[k] ?? 0) + v

    // The peers read.
    for (const h of helpers) process.kill(h.pid, 'SIGUSR2')
    const probeBound = Date.now() + PROBE_WRITE_MS + PROBE_READ_MS + 5000
    while (Date.now() < probeBound && counts().some((h) => !h.probe?.done)) await sleep(200)
    const probes = counts().map((h) => h.probe).filter((p) => p?.done)
    r.probe = { written: sum(probes, 'written'), closedBefore: sum(probes, 'closedBefore'), errors: {}, statuses: {} }
    for (const p of probes) {
      for (const [k, v] of Object.entries(p.errors)) r.probe.errors[k] = (r.probe.errors[k] ?? 0) + v
      for (const [k, v] of Object.entries(p.statuses)) r.probe.statuses[k] = (r.probe.statuses[k] ?? 0) + v
    }
    if (probes.length < helpers.length) notes.push(`${helpers.length - probes.length} download process(es) gave no report of their writes after the check`)
    await subscribers
    r.serverAlive = server.child.exitCode === null && server.child.signalCode === null
    if (!r.serverAlive) notes.push(`the server exited (${server.child.signalCode ?? server.child.exitCode}): ${tail(server.stderr, 300)}`)
  } finally {
    smp.stop()
    r.attempts = await Promise.all(attempts)
    for (const h of helpers) await h.stop(1000)
    await server.stop(3000)
  }
  const ok = r.attempts.filter((a) => a.ok)
  r.subscribers = r.attempts.length
  r.readyGoal = ok.filter((a) => a.ms <= READY_GOAL_MS).length
  r.ready = ok.length
  r.readyP50 = quantile(ok.map((a) => a.ms), 0.5)
  r.readyMax = quantile(ok.map((a) => a.ms), 1)
  r.subscriberFailures = {}
  for (const a of r.attempts) if (!a.ok) r.subscriberFailures[a.outcome] = (r.subscriberFailures[a.outcome] ?? 0) + 1
  r.attempts = r.attempts.map((a) => (a.ok ? Math.round(a.ms) : a.outcome))
  return r
}

// ---------------------------------------------------------------------------------------------
// The report: one block per label, a table of every label's figures.

const peers = (r) => {
  const p = r.peerSockets
  if (!p) return 'ss failed'
  const gone = r.opened - p.n
  return `${fmt(gone)} gone (reset) / ${fmt(p.states['CLOSE-WAIT'] ?? 0)} FIN / ${fmt(p.states.ESTAB ?? 0)} open`
}
const ready = (r) => `${fmt(r.readyGoal)} of ${fmt(r.subscribers)} (${msOrS(r.readyP50)} / ${msOrS(r.readyMax)})`
const kernel = (k) => `${fmt(k.orphan)} / ${mib(k.memBytes)}`

function summaryRow(r, label) {
  if (r.error) return `| ${label} | ${fmt(r.n)} | failed: ${r.error} | | | | | | | |`
  return `| ${label} | ${fmt(r.n)} | ${mib(r.rssBefore)} → ${mib(r.rssPeak)} → ${mib(r.rssCheck)} | ${mib(r.rssPeak - r.rssBefore)} (${fmt((r.rssPeak - r.rssBefore) / 1024 / Math.max(1, r.opened))}) | ${kernel(r.kernelPeak)} | ${kernel(r.kernelCheck)} | ${fmt(r.fdsCheck)} | ${ready(r)} | ${peers(r)} | \`${JSON.stringify(r.connections)}\` |`
}

const SUMMARY_HEAD = [
  '| label | N | server RSS before → peak → at the check (MiB) | peak − before, MiB (KiB per download) | kernel orphans / TCP mem MiB, peak | the same at the check | server open files at the check | subscribers `ready` ≤ 2 s (p50 / max) | peers at the check (their kernel): reset / FIN seen / open | `/stats` `connections` at the check |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---|---|',
]

function labelReport(o, m, command, build, r, notes) {
  const out = [`### ${o.label}${o.quick ? ' (QUICK SMOKE RUN: small sizes; not results)' : ''}`, '']
  // machineMarkdown's software line names this checkout and the fan-out peers; here the build matters.
  out.push(machineMarkdown(m).split('\n').filter((l) => !l.startsWith('- Software:')).join('\n'))
  out.push(`- Software: node ${m.node}; the build measured, below`)
  out.push(`- Command: \`${command}\``)
  out.push(`- Build measured: \`${o.cli}\`, git ${build}; server started as \`${r.serverCommand ?? '–'}\``)
  out.push(`- A shared 2-core VM (other developers' tests were on it too): the server on core ${SERVER_CORE}, this script and its ${fmt(Math.ceil(o.n / PER_HELPER))} download process(es) on core ${LOAD_CORE}.`)
  out.push('')
  if (r.error) {
    out.push(`The run failed: ${r.error}`)
  } else {
    const k = r.kernelBefore
    const ss = r.serverSockets
    const p = r.probe
    out.push(SUMMARY_HEAD.join('\n'))
    out.push(summaryRow(r, o.label))
    out.push('')
    out.push(
      `- ${fmt(r.opened)} of ${fmt(r.n)} downloads of a ${mib(FILE_BYTES)} MiB file connected (${fmt(r.failed)} failed${r.failed ? `: ${JSON.stringify(r.failures)}` : ''}), ${o.rampStep} per ${o.rampMs} ms: the last ${fmt(r.rampS, 1)} s after the first; the check ${fmt(r.checkAfterS, 1)} s after the first (the send deadline is ${SEND_TIMEOUT_S} s).`,
      `- Server: RSS ${mib(r.rssBefore)} MiB before, ${mib(r.rssPeak)} at the peak (${fmt((r.rssPeak - r.rssBefore) / 1024 / Math.max(1, r.opened))} KiB per download over the start), ${mib(r.rssCheck)} at the check (goal of issue 20 up to the connection limit: peak within start + ${RSS_GOAL_MIB} MiB); open files ${fmt(r.fdsBefore)} before, ${fmt(r.fdsPeak)} at most, ${fmt(r.fdsCheck)} at the check.`,
      `- Kernel (/proc/net/sockstat, the whole machine): orphans ${fmt(k.orphan)} before, ${fmt(r.kernelPeak.orphan)} at most, ${fmt(r.kernelCheck.orphan)} at the check; TCP memory ${mib(k.memBytes)} MiB before, ${mib(r.kernelPeak.memBytes)} at most, ${mib(r.kernelCheck.memBytes)} at the check; TIME_WAIT ${fmt(k.tw)} before, ${fmt(r.kernelCheck.tw)} at the check; net.ipv4.tcp_mem: pressure from ${mib(r.tcpMemBytes?.[1])} MiB, at most ${mib(r.tcpMemBytes?.[2])} MiB.`,
      `- This server's sockets at the check (ss, its port, peers of this run): ${ss ? `${JSON.stringify(ss.states)}, send queues ${mib(ss.sendQ)} MiB in all` : 'ss failed'}; the peers' sockets: ${r.peerSockets ? `${JSON.stringify(r.peerSockets.states)}, receive queues ${mib(r.peerSockets.recvQ)} MiB` : 'ss failed'}; a peer socket gone from ss while its process still holds it was closed by a reset.`,
      `- What Node told the paused peers before the check (it does not watch a socket it does not read): ${fmt(r.pausedSeen.close)} closes, ${fmt(r.pausedSeen.end)} ends, errors ${JSON.stringify(r.pausedSeen.errors)}. After it, each wrote an empty line: ${fmt(p.errors.ECONNRESET ?? 0)} failed with ECONNRESET (reset before), ${fmt(p.written)} went out (the connection still open, or only half-closed by a FIN)${Object.keys(p.errors).some((k) => k !== 'ECONNRESET') ? `, other errors ${JSON.stringify(p.errors)}` : ''}${p.closedBefore ? `, ${fmt(p.closedBefore)} were closed already` : ''}; the status lines of the answers they then read: ${JSON.stringify(p.statuses)}.`,
      `- Subscribers (\`GET /events/TOKEN\`, one a second from the first download to the check, ${SUBSCRIBE_WAIT_MS / 1000} s each at most): ${fmt(r.ready)} of ${fmt(r.subscribers)} got \`ready\`, ${fmt(r.readyGoal)} within 2 s; p50 ${msOrS(r.readyP50)}, max ${msOrS(r.readyMax)}; the others: ${JSON.stringify(r.subscriberFailures)}.`,
      `- \`/stats\` \`connections\` at the check: \`${JSON.stringify(r.connections)}\`.`,
    )
  }
  out.push('')
  out.push('Notes:')
  out.push('')
  if (!notes.some((n) => n.includes('% busy'))) out.push(`- Before the run no core was more than ${BUSY_LIMIT} % busy with other work.`)
  for (const n of notes) out.push(`- ${n}`)
  out.push('')
  out.push(`<!-- downloads-data ${JSON.stringify(r).replace(/--/g, '-\\u002d')} -->`)
  return `<!-- downloads-label:${o.label}:begin -->\n${out.join('\n')}\n<!-- downloads-label:${o.label}:end -->`
}

function sectionText(blocks) {
  const rows = []
  for (const [label, text] of blocks) {
    const data = /<!-- downloads-data ([\s\S]*?) -->/.exec(text)
    try {
      if (data) rows.push(summaryRow(JSON.parse(data[1]), label))
    } catch {}
  }
  const intro = [
    '`node bench/downloads.mjs --cli PATH --label NAME` writes this section (do not edit it by hand), one block per label, each replaced only by a run with its label; its header says how each figure is made. N connections from helper processes on core 1 each `GET /big.bin` (16 MiB) and never read; the server is on core 0; its send deadline (30 s) closes them; the check is 45 s after the first connection. Issue 20\'s goals: kernel orphans near 0 after the deadline and the peers see the close; RSS within start + 256 MiB up to the connection limit (~19 700); a valid subscriber gets `ready` in under 2 s throughout. Kernel figures are the whole machine\'s (a shared 2-core VM): read them against the "before" in each block.',
    '',
    SUMMARY_HEAD.join('\n'),
    ...rows,
  ].join('\n')
  return labelledSection('## Never-reading downloads (issue 20, points 1 and 2)', intro, blocks)
}

function parseFlags(argv) {
  const quick = argv.includes('--quick')
  const { get, num, done } = flagReader(argv, ['quick'])
  const serverArgs = []
  for (let i = 0; i < argv.length; i++) if (argv[i] === '--server-arg') serverArgs.push(argv[++i])
  const o = {
    quick,
    cli: get('cli') ?? CLI,
    n: num('n', quick ? 500 : 5000),
    rampStep: num('ramp-step', 500),
    rampMs: num('ramp-ms', 100),
    label: get('label') ?? (quick ? 'quick' : 'current'),
    serverArgs,
    profile: get('profile') === undefined ? undefined : path.resolve(get('profile')),
    // A quick run checks the script: it writes nowhere unless told where.
    out: get('out') !== undefined ? path.resolve(get('out')) : quick ? null : path.join(BENCH, 'RESULTS.md'),
  }
  get('server-arg')
  done()
  if (!/^[\w.-]+$/.test(o.label)) throw new Error(`--label must be letters, digits, . _ or -, not '${o.label}'`)
  o.cli = buildAt(o.cli) // a file as is, else a commit built in a temporary worktree (lib.mjs)
  if (!Number.isInteger(o.n) || o.n < 1 || o.n > FD_LIMIT - FD_RESERVE) throw new Error(`--n: 1 to ${FD_LIMIT - FD_RESERVE} (the server's connection budget), not ${o.n}`)
  if (!Number.isInteger(o.rampStep) || o.rampStep < 1 || o.rampMs < 1) throw new Error('--ramp-step and --ramp-ms must be ≥ 1')
  return o
}

async function main() {
  const argv = process.argv.slice(2)
  if (argv[0] === '--helper') return downloadHelper(JSON.parse(argv[1]))
  const o = parseFlags(argv)
  if (spawnSync('taskset', ['-V']).error) throw new Error('taskset (util-linux) is not installed')
  if (spawnSync('ss', ['-V']).error) throw new Error('ss (iproute2) is not installed')
  // The whole run is bounded; every child is killed on the way out.
  setTimeout(() => {
    process.stderr.write(`downloads: the run passed its ${RUN_BOUND_S} s bound; stopping every process started here\n`)
    killAll()
    process.exit(3)
  }, RUN_BOUND_S * 1000).unref()
  // This script and its download processes run on core 1; the server on core 0.
  const pin = spawnSync('taskset', ['-a', '-c', '-p', LOAD_CORE, String(process.pid)], { encoding: 'utf8' })
  if (pin.status !== 0) throw new Error(`cannot pin this process to core ${LOAD_CORE}: ${pin.stderr.trim()}`)
  const m = machine()
  const build = buildCommit(o.cli)
  const command = `node bench/downloads.mjs${argv.length ? ' ' + shellJoin(argv) : ''}`
  process.stderr.write(`downloads: ${o.cli} (git ${build}), label ${o.label}, N = ${fmt(o.n)}\n`)
  const notes = []
  const t0 = Date.now()
  let r
  try {
    r = await measure(o, notes)
    process.stderr.write(
      `downloads N=${r.n}: RSS ${mib(r.rssBefore)} → ${mib(r.rssPeak)} → ${mib(r.rssCheck)} MiB (+${fmt((r.rssPeak - r.rssBefore) / 1024 / Math.max(1, r.opened))} KiB each); orphans ${fmt(r.kernelPeak.orphan)} peak, ${fmt(r.kernelCheck.orphan)} at +${fmt(r.checkAfterS)} s; TCP mem ${mib(r.kernelPeak.memBytes)} / ${mib(r.kernelCheck.memBytes)} MiB; server fds ${fmt(r.fdsCheck)}; ready ≤ 2 s ${r.readyGoal} of ${r.subscribers}, p50 ${msOrS(r.readyP50)}, max ${msOrS(r.readyMax)}; peers ${peers(r)}, their writes: ${JSON.stringify(r.probe.errors)}, ${r.probe.written} went out; connections ${JSON.stringify(r.connections)}\n`,
    )
  } catch (err) {
    process.stderr.write(`downloads: ${err.stack}\n`)
    r = { n: o.n, error: err.message.split('\n')[0] }
  }
  notes.push(`The whole run took ${fmt((Date.now() - t0) / 60000, 1)} min.`)
  const block = labelReport(o, m, command, build, r, notes)
  process.stdout.write(block + '\n')
  if (o.out === null) {
    process.stderr.write('--quick without --out: nothing written\n')
  } else {
    placeSectionAfter(o.out, 'downloads', 'hostile')
    const blocks = labelBlocks(readSection(o.out, 'downloads'), 'downloads')
    blocks.set(o.label, block)
    writeSection(o.out, 'downloads', sectionText(blocks), ['fanout', 'http', 'hostile', 'downloads'])
    process.stderr.write(`wrote the ${o.label} block of the downloads section of ${path.relative(process.cwd(), o.out) || o.out}\n`)
  }
  killAll()
  process.exit(r.error ? 1 : 0)
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((err) => {
    process.stderr.write(`downloads: ${err.stack ?? err.message}\n`)
    killAll()
    process.exit(1)
  })
}
