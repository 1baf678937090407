// Hostile clients at full size: cases 1, 2 and 7 of issue 14, measured on one build of rawsse.
//
//   node bench/hostile.mjs [--cli PATH|COMMIT] [--label NAME] [--server-arg ARG]... [--quick] [--cases 1,2,3]
//       [--stalled 3000,10000] [--stalled-rcvbuf 4096] [--stalled-mss 536] [--publish-seconds 35]
//       [--publish-rate 0] [--recover-bound 120]
//       [--flood 20000] [--flood-procs 4] [--flood-seconds 30] [--floods keepalive,idle,loris]
//       [--storm 10000] [--storm-bound 90] [--storm-drop server,client,resume] [--storm-missed 5]
//       [--storm-live-ms 500] [--storm-history 1000] [--storm-resume-at 500] [--storm-live-count 200]
//       [--storm-resume-live-ms 50] [--storm-sources 0] [--commit SHA] [--profile DIR] [--out bench/RESULTS.md]
//
// e.g. `node bench/hostile.mjs --cli 41a4b9a --label before`, and once the fix is
// built, `node bench/hostile.mjs --label after [--server-arg --some-flag --server-arg VALUE]`.
//
// The server is PATH (default: this repo's dist/cli.js), run as its bin runs it (the node flags on
// its first line), pinned to core 0 with `taskset`; this script and every load process it starts
// run on core 1. A fresh server per case, per N and per flood, with `--tick 0 --max-clients 20000`
// (so the stream cap never answers instead of the attack), --token and --publish-token, then each
// --server-arg. Its RSS (VmRSS) and open files (/proc/PID/fd) are sampled every 250 ms from /proc,
// which answers while its event loop is blocked. Clients bind source addresses 127.A.B.C of this
// run's own (one per 1 000 connections: bind() with port 0 slows down as an address fills), so no
// earlier run's TIME_WAIT is met and ports never run out; only 127.x addresses are ever targets.
//
//  1. Dropping stalled streams. N streams (--stalled, each N in turn, smallest first; a larger N
//     only if the smaller recovered within the bound) are opened by one python3 process that
//     never reads: each socket gets SO_RCVBUF 4096 and TCP_MAXSEG 536 before connect (a stalled
//     mobile client on a small MSS; Node can set neither), so the server's writes block after a
//     few KiB; the answer is checked with MSG_PEEK, which leaves it unread. Then for
//     --publish-seconds (longer than the server's fixed 30 s stall timeout) one keep-alive
//     connection publishes 100-byte events back to back (the next when the last is answered;
//     --publish-rate R > 0 caps it at R/s: a server that publishes fast fills every stream's
//     1 MiB --max-buffer within seconds, and then drops them as `buffer`, never reaching the
//     30 s stall sweep; a cap of ~100/s keeps them under it for 35 s),
//     while a canary, one reading subscriber, gets them too and a probe publishes a `probe` event
//     every 100 ms and times each round trip. Reported: the worst probe round trip (the event
//     loop blocked), the longest time the canary got no probe event, how many streams were
//     dropped in that gap (the fall of the server's open files) and how long after the drop the
//     canary's events flowed again, RSS before / peak / after, drops.stall / drops.buffer from
//     /stats. A case not recovered --recover-bound s after publishing ended is stopped: that is
//     its figure.
//  2. Floods at the file-descriptor limit (20 000 open files per process, the server's too). For
//     each flood (--floods), --flood connections from --flood-procs helper processes try to hold
//     every descriptor the server has, each reopened when the server closes it (after 0.5 s if it
//     lived under 1 s): `keepalive` sends `OPTIONS * HTTP/1.1` on each every 4 s (under the 5 s
//     keep-alive idle close), `idle` sends nothing, `loris` trickles a request head a byte every
//     3 s. Once the flood is up, every second for --flood-seconds a new subscriber with a valid
//     token sends `GET /events/TOKEN` and waits at most 10 s: attempts, how many got `ready`
//     within 2 s, p50 / max time to `ready` of those that got it, and what happened to the others.
//  3. Reconnect storm. --storm streams (opened 256 at a time) get 20 events; then, for each
//     --storm-drop: `server`, `DELETE /clients` (admin) closes them all at once and the reconnects
//     start when every stream has seen its end; `client`, this side closes every socket in the
//     same turn as the reconnects (a network blip, a killed client process: the server meets the
//     closes and the new connections together while it still holds the old streams).
//     --storm-missed events are published while they are away; all reconnect in one loop, from
//     127.0.0.1 without bind() (10 000 bind() calls would take this process seconds of system
//     time and spread the storm out), each with `Last-Event-ID` = the last id it got, while an
//     event is published every --storm-live-ms; a connection closed before `ready` retries after
//     1 s (as EventSource would). Reported: `ready` within 10 s and within --storm-bound s of the
//     loop's start, p50 / p99 / max time to `ready` (streams never ready count as beyond the
//     bound), whether each stream ended with exactly the published ids (no gap, no duplicate, in
//     order), and the kernel's TcpExtListenOverflows / ListenDrops delta over the storm
//     (/proc/net/netstat: the whole machine, so another program's overflows would count too).
//     --storm-drop `resume` (issue 20's storm): --storm-history numbered events (~10 bytes of data
//     each) are published first; then all --storm streams connect in one loop with
//     `Last-Event-ID` = the --storm-resume-at-th of them, while --storm-live-count more are
//     published one at a time, --storm-resume-live-ms apart (--storm-sources K > 0: the streams
//     connect from K source addresses, round robin). Each should end with exactly the
//     events after its id. Reported besides: `GET /healthz` every 20 ms from this process
//     (p50 / p99 / max while the storm lasts), the live publishes' answer times, and the longest
//     block of the server's own event loop (bench/loop-monitor.mjs).
//
// It writes its section of bench/RESULTS.md (between `<!-- hostile:begin -->` and
// `<!-- hostile:end -->`, right after the HTTP section) with one block per label: a run replaces
// only its own label's block (each block keeps its figures as JSON in an HTML comment), and a
// table at the top puts every label side by side. Every process it starts is killed by PID when
// done, on errors and on Ctrl-C; the whole run is bounded (30 min; --quick 5 min) and takes about
// 7 min at full size on the before-build (case 1 waits out each freeze, up to its bound).
//
// --quick: 1 000 stalled (33 s of publishing: the stall timeout is fixed at 30 s), 2 000 flood
// connections for 8 s, 1 000 reconnecting: about 1.5 min; a check of the script, not results,
// written nowhere unless --out is given.
// Internal: `node bench/hostile.mjs --helper canary|flood|storm JSON` are its load processes.

import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { waitForPorts } from './fanout.mjs'
import {
  BENCH,
  binNodeFlags,
  compareIds,
  Http,
  PER_SOURCE,
  quantile,
  sourcesFor,
  listenCounters,
  openStream,
  BUSY_LIMIT,
  busiestCorePercent,
  CLI,
  ephemeralPorts,
  fmt,
  freePort,
  killAll,
  listeningUrl,
  machine,
  machineMarkdown,
  flagReader,
  median,
  placeSectionAfter,
  PUBLISH_TOKEN,
  readSection,
  ROOT,
  rssBytes,
  run,
  shellJoin,
  sleep,
  startProcess,
  tail,
  writeSection,
  buildAt,
} from './lib.mjs'

const SELF = fileURLToPath(import.meta.url)
const SERVER_CORE = '0'
const LOAD_CORE = '1'
const SUB_TOKEN = 'bench-subscribe-token'
const EVENT_BYTES = 100
const FD_LIMIT = 20_000 // open files per process on the bench machines (hard limit)
const SAMPLE_MS = 250
const SUBSCRIBE_WAIT_MS = 10_000 // case 2: how long one new subscriber waits for `ready`
const READY_GOAL_MS = 2_000 // case 2 goal
const STORM_GOAL_MS = 10_000 // case 3 goal
const STALL_TIMEOUT_S = 30 // the server's (not a flag)
const STORM_BEFORE = 20 // case 3: events every stream gets before the drop

const mib = (bytes) => fmt(bytes / 2 ** 20, 0)
const secs = (ms, d = 1) => (Number.isFinite(ms) ? `${fmt(ms / 1000, d)} s` : '–')
const msOrS = (ms) => (!Number.isFinite(ms) ? '–' : ms < 1000 ? `${fmt(ms)} ms` : secs(ms))

// ---------------------------------------------------------------------------------------------
// /proc readings.


function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return NaN
  }
}

const readProc = (p) => {
  try {
    return readFileSync(p, 'utf8').trim()
  } catch {
    return '?'
  }
}

/** Samples a server's RSS and open files every SAMPLE_MS until stop(). */
function sampler(pid) {
  const samples = []
  const take = () => samples.push({ t: Date.now(), rss: rssBytes(pid), fds: fdCount(pid) })
  take()
  const timer = setInterval(take, SAMPLE_MS)
  return {
    samples,
    stop() {
      clearInterval(timer)
      take()
      return samples
    },
  }
}



// ---------------------------------------------------------------------------------------------
// Helper: the canary of case 1 (publisher, probe, canary subscriber, /stats), on core 1.

async function canaryHelper(cfg) {
  const { port, n, publishSeconds, recoverBound, settleSeconds, publishRate = 0 } = cfg
  const auth = { Authorization: `Bearer ${PUBLISH_TOKEN}` }
  const out = { probes: [], loop: [], recv: [], flood: { count: 0, errors: 0, maxRttMs: 0 }, stats: null, statsAt: 0, boundHit: false, canaryClosed: null }
  // The canary: one subscriber that reads everything.
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('canary: no ready within 10 s')), 10_000)
    openStream({
      port,
      path: `/events/${SUB_TOKEN}`,
      onEvent: (ev) => {
        if (ev.event === 'ready') (clearTimeout(timer), resolve())
        else if (ev.event === 'probe') out.recv.push([Number(ev.data), Date.now()])
      },
      onClose: (err) => (out.canaryClosed ??= { at: Date.now(), err }),
    })
  })
  const pub = new Http(port)
  const probe = new Http(port)
  const loopProbe = new Http(port)
  const stats = new Http(port)
  const body = 'x'.repeat(EVENT_BYTES)
  const t0 = Date.now()
  out.t0 = t0
  process.stdout.write(JSON.stringify({ phase: 'started', t0 }) + '\n')
  let stop = false

  // Small events back to back, one connection, the next when the last is answered (with
  // publishRate > 0: and not before its time at that rate).
  const flood = (async () => {
    while (!stop && Date.now() - t0 < publishSeconds * 1000) {
      if (publishRate > 0) {
        const due = t0 + ((out.flood.count + out.flood.errors) * 1000) / publishRate - Date.now()
        if (due > 0) await sleep(due)
      }
      const s = performance.now()
      try {
        const r = await pub.request('POST', '/publish', { headers: auth, body })
        if (r.status === 200) out.flood.count++
        else out.flood.errors++
      } catch {
        out.flood.errors++
        await sleep(100)
      }
      out.flood.maxRttMs = Math.max(out.flood.maxRttMs, performance.now() - s)
    }
    out.publishEnd = Date.now()
  })()

  // One probe event every 100 ms (the next when the last is answered), timed.
  let inflight = null
  const probeLoop = (async () => {
    for (let seq = 0; !stop; seq++) {
      const s = performance.now()
      inflight = { seq, sentAt: Date.now() }
      try {
        const r = await probe.request('POST', '/publish?event=probe', { headers: auth, body: String(seq) })
        out.probes.push([seq, inflight.sentAt, performance.now() - s, r.status])
      } catch (e) {
        out.probes.push([seq, inflight.sentAt, performance.now() - s, 0])
      }
      inflight = null
      const wait = 100 - (performance.now() - s)
      if (wait > 0) await sleep(wait)
    }
  })()

  // The event loop itself: `GET /healthz` (no fan-out behind it) every 20 ms, the next when the
  // last is answered. Its round trip is how long the loop was busy with something else.
  const loopLoop = (async () => {
    while (!stop) {
      const s = performance.now()
      const sentAt = Date.now()
      try {
        await loopProbe.request('GET', '/healthz')
      } catch {}
      out.loop.push([sentAt, performance.now() - s])
      const wait = 20 - (performance.now() - s)
      if (wait > 0) await sleep(wait)
    }
  })()

  // After publishing: /stats every second (one at a time) until the stalled streams are gone and
  // the probe has been normal for settleSeconds, or the bound.
  let statsBusy = false
  let normalSince = 0
  for (;;) {
    await sleep(250)
    const now = Date.now()
    if (now - t0 > (publishSeconds + recoverBound) * 1000) {
      out.boundHit = true
      break
    }
    if (out.publishEnd === undefined) continue
    if (!statsBusy) {
      statsBusy = true
      stats
        .request('GET', '/stats', { headers: auth })
        .then((r) => {
          out.stats = JSON.parse(r.body)
          out.statsAt = Date.now()
        })
        .catch(() => {})
        .finally(() => (statsBusy = false))
    }
    const d = out.stats?.drops
    const gone = d !== undefined && out.statsAt > out.publishEnd && d.stall + d.buffer >= Math.floor(n * 0.99)
    const recent = out.probes.filter((p) => p[1] > now - 3000)
    const normal = inflight === null || now - inflight.sentAt < 250
    const healthy = gone && normal && recent.length >= 10 && recent.every((p) => p[2] < 250)
    if (!healthy) normalSince = 0
    else if (normalSince === 0) normalSince = now
    else if (now - normalSince >= settleSeconds * 1000) break
  }
  stop = true
  out.end = Date.now()
  out.inflight = inflight === null ? null : { ...inflight, waitedMs: out.end - inflight.sentAt }
  await Promise.race([Promise.all([flood, probeLoop, loopLoop]), sleep(out.boundHit ? 0 : 2000)])
  process.stdout.write(JSON.stringify(out) + '\n')
  process.exit(0)
}

// ---------------------------------------------------------------------------------------------
// Helper: one flood process of case 2. Holds `count` connections from `source`, reopening each
// the server closes; prints its counts every second.

async function floodHelper(cfg) {
  const { port, mode, count, sources, inFlight = 128 } = cfg
  const KEEPALIVE_MS = 4000
  const LORIS_MS = 3000
  const TICK_MS = 100
  const LORIS = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: '
  const OPTIONS = `OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`
  const slots = new Array(count).fill(null)
  const c = { open: 0, connecting: 0, opened: 0, closed: 0, quickClosed: 0, responses: 0, errors: 0 }
  const queue = []
  for (let i = 0; i < count; i++) queue.push(i)
  const pump = () => {
    while (queue.length && c.connecting < inFlight) open(queue.shift())
  }
  const open = (i) => {
    c.connecting++
    const s = net.connect({ port, host: '127.0.0.1', localAddress: sources[Math.floor(i / PER_SOURCE) % sources.length] })
    const st = { s, connected: false, at: 0, sent: 0 }
    slots[i] = st
    s.on('connect', () => {
      c.connecting--
      c.open++
      c.opened++
      st.connected = true
      st.at = Date.now()
      if (mode === 'keepalive') s.write(OPTIONS)
      else if (mode === 'loris') s.write(LORIS[st.sent++])
      pump()
    })
    s.on('data', (d) => {
      const t = d.toString('latin1')
      for (let k = t.indexOf('HTTP/1.1 '); k !== -1; k = t.indexOf('HTTP/1.1 ', k + 1)) c.responses++
    })
    s.on('error', () => c.errors++)
    s.on('close', () => {
      if (st.connected) {
        c.open--
        c.closed++
      } else c.connecting--
      const quick = !st.connected || Date.now() - st.at < 1000
      if (quick) c.quickClosed++
      slots[i] = null
      // Reopen at once; after a quick close (the server at its file limit accepts and closes) wait a little.
      setTimeout(() => (queue.push(i), pump()), quick ? 500 : 20)
      pump()
    })
  }
  let tick = 0
  setInterval(() => {
    tick++
    if (mode === 'keepalive') {
      const buckets = KEEPALIVE_MS / TICK_MS
      for (let i = tick % buckets; i < count; i += buckets) if (slots[i]?.connected) slots[i].s.write(OPTIONS)
    } else if (mode === 'loris') {
      const buckets = LORIS_MS / TICK_MS
      for (let i = tick % buckets; i < count; i += buckets) {
        const st = slots[i]
        if (st?.connected) st.s.write(st.sent < LORIS.length ? LORIS[st.sent++] : 'a')
      }
    }
  }, TICK_MS)
  setInterval(() => process.stdout.write(JSON.stringify({ t: Date.now(), ...c }) + '\n'), 1000)
  process.stdout.write(JSON.stringify({ t: Date.now(), ...c }) + '\n')
  const bye = () => {
    for (const st of slots) st?.s.destroy()
    process.exit(0)
  }
  process.on('SIGTERM', bye)
  process.on('SIGINT', bye)
  pump()
}

// ---------------------------------------------------------------------------------------------
// Helper: the reconnect storm of case 3, start to finish; prints one JSON line.

async function stormHelper(cfg) {
  const { port, n, sources, before = STORM_BEFORE, missed = 5, livePeriodMs = 500, boundMs, inFlight = 256, drop = 'server' } = cfg
  const auth = { Authorization: `Bearer ${PUBLISH_TOKEN}` }
  const log = (s) => process.stderr.write(`storm: ${s}\n`)
  const api = new Http(port)
  const published = []
  const publish = async (tag) => {
    const r = await api.request('POST', `/publish?event=${tag}`, { headers: auth, body: `${tag} ${published.length}` })
    if (r.status !== 200) throw new Error(`publish: ${r.status} ${r.body}`)
    published.push(Number(JSON.parse(r.body).id))
  }
  const streams = Array.from({ length: n }, () => ({ ids: [], last: null, phase: 0, readyAt: NaN, retries: 0, statuses: {}, reasons: {}, ended: false, closedAfterReady: 0 }))
  const bump = (o, k) => (o[k] = (o[k] ?? 0) + 1)
  const onEvent = (st) => (ev) => {
    if (ev.event === 'ready') {
      if (st.phase === 2 && Number.isNaN(st.readyAt)) st.readyAt = performance.now()
      st.ready = true
      return
    }
    if (ev.id !== null) {
      st.ids.push(Number(ev.id))
      st.last = ev.id
    }
  }

  // Phase 1: open every stream, at most inFlight connecting at a time.
  const t1 = performance.now()
  let initialReady = 0
  let initialFailed = 0
  await new Promise((resolve) => {
    let next = 0
    const one = () => {
      if (next >= n) return
      const i = next++
      const st = streams[i]
      st.phase = 1
      let settled = false
      const settle = (ok) => {
        if (settled) return
        settled = true
        ok ? initialReady++ : initialFailed++
        if (initialReady + initialFailed === n) resolve()
        else one()
      }
      st.socket = openStream({
        port,
        path: `/events/${SUB_TOKEN}`,
        localAddress: sources[Math.floor(i / PER_SOURCE) % sources.length],
        onEvent: (ev) => (onEvent(st)(ev), ev.event === 'ready' && settle(true)),
        onClose: () => {
          st.ended = true
          settle(false)
        },
      })
    }
    for (let k = 0; k < Math.min(n, inFlight); k++) one()
    setTimeout(resolve, 120_000)
  })
  log(`${initialReady} of ${n} streams open in ${fmt((performance.now() - t1) / 1000, 1)} s (${initialFailed} failed)`)
  for (let k = 0; k < before; k++) await publish('before')
  const lastBefore = published.at(-1)
  const t2 = Date.now()
  while (streams.some((st) => st.ready && !st.ended && st.ids.at(-1) !== lastBefore) && Date.now() - t2 < 30_000) await sleep(100)

  // Phase 2, drop 'server': every stream closed at once by the server (DELETE /clients); they
  // notice, then events are published that they miss. Drop 'client': below, in phase 3.
  let del = { status: '–', body: 'not asked (client drop)' }
  let notEnded = 0
  if (drop === 'server') {
    del = await api.request('DELETE', '/clients', { headers: auth })
    const t3 = Date.now()
    while (streams.some((st) => st.phase === 1 && st.ready && !st.ended) && Date.now() - t3 < 15_000) await sleep(50)
    notEnded = streams.filter((st) => st.ready && !st.ended).length
    for (const st of streams) st.socket?.destroy()
    for (let k = 0; k < missed; k++) await publish('missed')
    await sleep(200)
  }

  // Phase 3: all reconnect in one loop, with Last-Event-ID; live events meanwhile. Drop 'client':
  // first every socket is closed from this side (a network blip, a killed client process), in the
  // same turn as the reconnects, and the missed events are published without waiting, so the
  // server meets 10 000 closes, 10 000 connections and the publishes at once, while it still
  // holds the old streams.
  const counters0 = listenCounters()
  const fireAt = performance.now()
  let missedP = null
  if (drop === 'client') {
    for (const st of streams) st.socket?.destroy()
    missedP = (async () => {
      for (let k = 0; k < missed; k++) await publish('missed')
    })()
  }
  const connectOne = (st) => {
    st.phase = 2
    st.ready = false
    st.socket = openStream({
      port,
      path: `/events/${SUB_TOKEN}`,
      // No source address here: bind() before connect() would cost this process seconds of
      // system time for 10 000 sockets and spread the storm out. The kernel picks 127.0.0.1 and
      // a port (the caller checked that enough are free).
      headers: st.last === null ? {} : { 'Last-Event-ID': st.last },
      onStatus: (status) => bump(st.statuses, status),
      onEvent: onEvent(st),
      onClose: (err) => {
        if (st.stop) return
        if (st.ready) {
          st.closedAfterReady++
          return
        }
        bump(st.reasons, err ?? 'closed')
        if (performance.now() - fireAt < boundMs) {
          st.retries++
          setTimeout(() => !st.stop && connectOne(st), 1000)
        }
      },
    })
  }
  for (const st of streams) connectOne(st)
  const fireLoopMs = performance.now() - fireAt
  await missedP
  let live = 0
  let liveBusy = false
  const liveTimer = setInterval(() => {
    if (liveBusy) return
    liveBusy = true
    publish('live')
      .then(() => live++)
      .catch((e) => log(e.message))
      .finally(() => (liveBusy = false))
  }, livePeriodMs)
  while (streams.some((st) => Number.isNaN(st.readyAt)) && performance.now() - fireAt < boundMs) await sleep(100)
  const stormMs = performance.now() - fireAt
  clearInterval(liveTimer)
  while (liveBusy) await sleep(20)
  const counters1 = listenCounters()
  // Every ready stream should now get the last event; give it a moment.
  const lastId = published.at(-1)
  const t4 = Date.now()
  while (streams.some((st) => !Number.isNaN(st.readyAt) && st.ids.at(-1) !== lastId) && Date.now() - t4 < 15_000) await sleep(100)
  // The server closes them (DELETE /clients again), so that the TIME_WAITs are on its side, not
  // on this machine's 127.0.0.1 ports that other programs use.
  for (const st of streams) st.stop = true
  await api.request('DELETE', '/clients', { headers: auth }).catch(() => {})
  const t5 = Date.now()
  while (streams.some((st) => st.socket && !st.socket.destroyed && !st.socket.readableEnded) && Date.now() - t5 < 10_000) await sleep(50)
  for (const st of streams) st.socket?.destroy()
  api.close()

  // Verdicts: each served stream against the published ids.
  const ttr = streams.map((st) => (Number.isNaN(st.readyAt) ? Infinity : st.readyAt - fireAt))
  const pos = new Map(published.map((id, k) => [id, k]))
  let exact = 0
  let withGap = 0
  let withDup = 0
  let outOfOrder = 0
  let extra = 0
  let missing = 0
  let dups = 0
  for (const st of streams) {
    if (Number.isNaN(st.readyAt)) continue
    const { gap, dup, order, ...n } = compareIds(st.ids, published, pos)
    dups += n.dups
    extra += n.extra
    missing += n.missing
    if (!gap && !dup && !order && st.ids.length === published.length) exact++
    if (gap) withGap++
    if (dup) withDup++
    if (order) outOfOrder++
  }
  const sum = (f) => streams.reduce((a, st) => a + f(st), 0)
  const merge = (f) => {
    const o = {}
    for (const st of streams) for (const [k, v] of Object.entries(f(st))) o[k] = (o[k] ?? 0) + v
    return o
  }
  const res = {
    n,
    drop,
    initialReady,
    initialFailed,
    deleteStatus: del.status,
    deleteBody: del.body,
    notEnded,
    published: published.length,
    before,
    missed,
    live,
    fireLoopMs,
    stormMs,
    boundMs,
    readyWithinGoal: ttr.filter((t) => t <= STORM_GOAL_MS).length,
    readyWithinBound: ttr.filter((t) => t <= boundMs).length,
    notServed: ttr.filter((t) => !Number.isFinite(t)).length,
    p50: quantile(ttr, 0.5),
    p99: quantile(ttr, 0.99),
    max: quantile(ttr, 1),
    exact,
    withGap,
    withDup,
    outOfOrder,
    extra,
    missing,
    dups,
    retries: sum((st) => st.retries),
    closedAfterReady: sum((st) => st.closedAfterReady),
    statuses: merge((st) => st.statuses),
    reasons: merge((st) => st.reasons),
    listenOverflows: counters1.overflows - counters0.overflows,
    listenDrops: counters1.drops - counters0.drops,
  }
  for (const k of ['p50', 'p99', 'max']) if (!Number.isFinite(res[k])) res[k] = null // JSON has no Infinity
  process.stdout.write(JSON.stringify(res) + '\n')
  process.exit(0)
}

// Helper: the resume storm of case 3 (issue 20): `history` numbered events are published first;
// then all n streams connect in one loop, each with Last-Event-ID = the `resumeAt`-th of them,
// while `liveCount` more are published one at a time, `livePeriodMs` apart. Every stream should
// end with exactly the events after its Last-Event-ID. Prints one JSON line.

async function resumeStormHelper(cfg) {
  const { port, n, boundMs, history = 1000, resumeAt = 500, liveCount = 200, livePeriodMs = 50, sources = [] } = cfg
  const auth = { Authorization: `Bearer ${PUBLISH_TOKEN}` }
  const log = (s) => process.stderr.write(`storm: ${s}\n`)
  const api = new Http(port)
  const published = []
  const publishMs = []
  const publish = async (k) => {
    const t = performance.now()
    const r = await api.request('POST', '/publish', { headers: auth, body: `e${k}` })
    publishMs.push(performance.now() - t)
    if (r.status !== 200) throw new Error(`publish: ${r.status} ${r.body}`)
    published.push(Number(JSON.parse(r.body).id))
  }
  for (let k = 0; k < history; k++) await publish(k)
  publishMs.length = 0
  const from = String(published[resumeAt - 1])
  log(`${history} events published; ${n} streams resume from id ${from}`)
  const streams = Array.from({ length: n }, (_, k) => ({ k, ids: [], readyAt: NaN, retries: 0, statuses: {}, reasons: {}, resets: 0 }))
  const bump = (o, k) => (o[k] = (o[k] ?? 0) + 1)
  const counters0 = listenCounters()
  const fireAt = performance.now()
  const fireEpoch = Date.now()
  const connectOne = (st) => {
    st.ready = false
    st.socket = openStream({
      port,
      path: `/events/${SUB_TOKEN}`,
      // --storm-sources K: from K source addresses of this run, round robin (bind() before each
      // connect slows this loop down); 0: none, the kernel picks 127.0.0.1 and a port.
      ...(sources.length > 0 ? { localAddress: sources[st.k % sources.length] } : {}),
      headers: { 'Last-Event-ID': from },
      onStatus: (status) => bump(st.statuses, status),
      onEvent: (ev) => {
        if (ev.event === 'ready') {
          if (Number.isNaN(st.readyAt)) st.readyAt = performance.now()
          st.ready = true
        } else if (ev.event === 'reset') st.resets++
        else if (ev.id !== null) st.ids.push(Number(ev.id))
      },
      onClose: (err) => {
        if (st.stop || st.ready) return
        bump(st.reasons, err ?? 'closed')
        if (performance.now() - fireAt < boundMs) {
          st.retries++
          setTimeout(() => !st.stop && connectOne(st), 1000)
        }
      },
    })
  }
  for (const st of streams) connectOne(st)
  const fireLoopMs = performance.now() - fireAt
  for (let k = 0; k < liveCount; k++) {
    const next = fireAt + fireLoopMs + (k + 1) * livePeriodMs
    await sleep(Math.max(0, next - performance.now()))
    await publish(history + k)
  }
  while (streams.some((st) => Number.isNaN(st.readyAt)) && performance.now() - fireAt < boundMs) await sleep(100)
  const stormMs = performance.now() - fireAt
  const endEpoch = Date.now()
  const counters1 = listenCounters()
  const expected = published.slice(resumeAt)
  const lastId = expected.at(-1)
  const t4 = Date.now()
  while (streams.some((st) => !Number.isNaN(st.readyAt) && st.ids.at(-1) !== lastId) && Date.now() - t4 < 30_000) await sleep(100)
  const deliveredMs = performance.now() - fireAt
  for (const st of streams) st.stop = true
  await api.request('DELETE', '/clients', { headers: auth }).catch(() => {})
  const t5 = Date.now()
  while (streams.some((st) => st.socket && !st.socket.destroyed && !st.socket.readableEnded) && Date.now() - t5 < 10_000) await sleep(50)
  for (const st of streams) st.socket?.destroy()
  api.close()

  const ttr = streams.map((st) => (Number.isNaN(st.readyAt) ? Infinity : st.readyAt - fireAt))
  const pos = new Map(expected.map((id, k) => [id, k]))
  let exact = 0
  let withGap = 0
  let withDup = 0
  let outOfOrder = 0
  for (const st of streams) {
    if (Number.isNaN(st.readyAt)) continue
    const { gap, dup, order, extra } = compareIds(st.ids, expected, pos)
    if (!gap && !dup && !order && extra === 0 && st.ids.length === expected.length) exact++
    if (gap) withGap++
    if (dup) withDup++
    if (order) outOfOrder++
  }
  const sum = (f) => streams.reduce((a, st) => a + f(st), 0)
  const merge = (f) => {
    const o = {}
    for (const st of streams) for (const [k, v] of Object.entries(f(st))) o[k] = (o[k] ?? 0) + v
    return o
  }
  const res = {
    n,
    drop: 'resume',
    history,
    resumeAt,
    liveCount,
    livePeriodMs,
    expected: expected.length,
    fireEpoch,
    endEpoch,
    fireLoopMs,
    stormMs,
    deliveredMs,
    boundMs,
    readyWithinGoal: ttr.filter((t) => t <= STORM_GOAL_MS).length,
    readyWithinBound: ttr.filter((t) => t <= boundMs).length,
    notServed: ttr.filter((t) => !Number.isFinite(t)).length,
    p50: quantile(ttr, 0.5),
    p99: quantile(ttr, 0.99),
    max: quantile(ttr, 1),
    publishP50: quantile(publishMs, 0.5),
    publishP99: quantile(publishMs, 0.99),
    exact,
    withGap,
    withDup,
    outOfOrder,
    resets: sum((st) => st.resets),
    retries: sum((st) => st.retries),
    statuses: merge((st) => st.statuses),
    reasons: merge((st) => st.reasons),
    listenOverflows: counters1.overflows - counters0.overflows,
    listenDrops: counters1.drops - counters0.drops,
  }
  for (const k of ['p50', 'p99', 'max']) if (!Number.isFinite(res[k])) res[k] = null
  process.stdout.write(JSON.stringify(res) + '\n')
  process.exit(0)
}

// ---------------------------------------------------------------------------------------------
// The stalled clients of case 1: python3, because node cannot set SO_RCVBUF or TCP_MAXSEG.
// argv: N PORT PATH SOURCES RCVBUF MSS (SOURCES: comma-separated, one per 1 000 sockets). Connects N sockets one by one (a pause every 100), each
// with the small buffer and segment size set before connect, sends the GET, and never reads:
// whether the answer began `HTTP/1.1 200` is checked with MSG_PEEK, which leaves it unread.
// Prints one JSON line, then sleeps until killed.

const PY_HOLDER = String.raw`
import json, signal, socket, sys, time
n, port, path, sources, rcvbuf, mss = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4].split(','), int(sys.argv[5]), int(sys.argv[6])
head = ('GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n\r\n' % (path, port)).encode()
socks, failed, mss_ok, errors = [], 0, True, {}
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        except OSError:
            mss_ok = False
        s.bind((sources[(i // 1000) % len(sources)], 0))
        s.settimeout(20)
        s.connect(('127.0.0.1', port))
        s.sendall(head)
        s.setblocking(False)  # so that the MSG_PEEK below never waits
        socks.append(s)
    except OSError as e:
        failed += 1
        errors[str(e.errno)] = errors.get(str(e.errno), 0) + 1
        s.close()
    if i % 100 == 99:
        time.sleep(0.005)
ok, other, pending, deadline = 0, 0, list(socks), time.time() + 30
while pending and time.time() < deadline:
    still = []
    for s in pending:
        try:
            b = s.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            if b.startswith(b'HTTP/1.1 200') or b.startswith(b'HTTP/1.0 200'):
                ok += 1
            elif len(b) >= 12 or not b:
                other += 1
            else:
                still.append(s)
        except (BlockingIOError, socket.timeout):
            still.append(s)
        except OSError:
            other += 1
    pending = still
    if pending:
        time.sleep(0.2)
info = {'open': len(socks), 'failed': failed, 'errors': errors, 'ok200': ok, 'other': other, 'noAnswer': len(pending), 'mssSet': mss_ok}
if socks:
    info['rcvbuf'] = socks[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    info['mss'] = socks[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
print(json.dumps(info), flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    signal.pause()
`

// ---------------------------------------------------------------------------------------------
// The server under test.


function serverArgv(o, port) {
  return [
    process.execPath,
    ...binNodeFlags(o.cli),
    '--import',
    pathToFileURL(path.join(BENCH, 'loop-monitor.mjs')).href,
    // --profile DIR: a V8 CPU profile of the server, written when it exits.
    ...(o.profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${o.profile}`]),
    o.cli,
    '--port',
    String(port),
    '--host',
    '127.0.0.1',
    '--token',
    SUB_TOKEN,
    '--publish-token',
    PUBLISH_TOKEN,
    '--tick',
    '0',
    '--max-clients',
    '20000',
    ...o.serverArgs,
  ]
}

async function startServer(o) {
  const port = await freePort()
  // The server's own loop delay (bench/loop-monitor.mjs), to a file of this run; the variable is
  // set only while this one process is spawned.
  const loopLog = path.join(mkdtempSync(path.join(os.tmpdir(), 'rawsse-loop-')), 'loop.log')
  process.env.RAWSSE_LOOP_LOG = loopLog
  const started = startProcess('rawsse', 'taskset', ['-c', SERVER_CORE, ...serverArgv(o, port)], { ready: listeningUrl })
  delete process.env.RAWSSE_LOOP_LOG
  const { proc } = await started
  return { proc, pid: proc.pid, port, loopLog }
}

/** The server's loop-delay lines: [epoch ms, longest delay in ms of the 100 ms before]. */
function loopDelays(file) {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split(' ').map(Number))
}

const alive = (proc) => proc.child.exitCode === null && proc.child.signalCode === null
const exitOf = (proc) => proc.child.signalCode ?? proc.child.exitCode

/** Starts a helper mode of this script; ready when `ready(stdout)` holds. */
function startHelper(name, mode, cfg, ready, timeoutMs = 30_000) {
  return startProcess(name, process.execPath, [SELF, '--helper', mode, JSON.stringify(cfg)], { ready, timeoutMs })
}

const lastJsonLine = (text) => {
  const line = text.trim().split('\n').reverse().find((l) => l.startsWith('{'))
  try {
    return line ? JSON.parse(line) : null
  } catch {
    return null
  }
}

async function stats(port) {
  const h = new Http(port)
  try {
    const r = await Promise.race([h.request('GET', '/stats', { headers: { Authorization: `Bearer ${PUBLISH_TOKEN}` } }), sleep(5000).then(() => null)])
    return r && r.status === 200 ? JSON.parse(r.body) : null
  } catch {
    return null
  } finally {
    h.close()
  }
}

async function busyNote(what, notes) {
  const busy = await busiestCorePercent()
  if (busy > BUSY_LIMIT) {
    const msg = `${what}: a core was ${fmt(busy)} % busy with other work just before it (the other engineer's tests)`
    process.stderr.write(msg + '\n')
    notes.push(msg)
  }
}

// ---------------------------------------------------------------------------------------------
// Case 1.

/**
 * The kernel send queues (ss's Send-Q: bytes written by the server, not yet acknowledged) of the
 * server's connections from this run's source addresses, i.e. the stalled streams still open:
 * a stream whose every byte the kernel took has nothing queued in Node, so no stall check sees it.
 */
function kernelSendQueues(port) {
  const out = spawnSync('ss', ['-tnH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8', maxBuffer: 1 << 28 })
  if (out.error || out.status !== 0) return null
  const q = []
  for (const line of out.stdout.split('\n')) {
    const m = /^\s*\d+\s+(\d+)\s+\S+\s+(\S+)/.exec(line)
    if (m && m[2].startsWith(`127.${RUN_A}.`)) q.push(Number(m[1]))
  }
  if (q.length === 0) return { n: 0 }
  return { n: q.length, p50: quantile(q, 0.5), min: quantile(q, 0), max: quantile(q, 1) }
}

async function caseStall(o, n, notes) {
  const r = { n, publishSeconds: o.publishSeconds, recoverBound: o.recoverBound }
  const server = await startServer(o)
  const smp = sampler(server.pid)
  let holder = null
  let canary = null
  try {
    await busyNote(`case 1, N = ${n}`, notes)
    const started = await startProcess('stalled holder', 'python3', ['-c', PY_HOLDER, String(n), String(server.port), `/events/${SUB_TOKEN}`, sourcesFor(n).join(','), String(o.stalledRcvbuf), String(o.stalledMss)], {
      ready: (out) => lastJsonLine(out) ?? undefined,
      timeoutMs: 90_000 + n * 10,
    })
    holder = started.proc
    r.holder = started.value
    process.stderr.write(`case 1 N=${n}: holder ${JSON.stringify(r.holder)}\n`)
    const t = Date.now()
    let st = null
    while (Date.now() - t < 20_000) {
      st = await stats(server.port)
      if (st && st.clients >= n) break
      await sleep(500)
    }
    r.streamsOpen = st?.clients ?? NaN
    await sleep(2000)
    r.rssBefore = rssBytes(server.pid)
    r.fdsBefore = fdCount(server.pid)
    const boundMs = (o.publishSeconds + o.recoverBound + 30) * 1000
    const c = await startHelper(
      'canary',
      'canary',
      { port: server.port, n, publishSeconds: o.publishSeconds, recoverBound: o.recoverBound, settleSeconds: 5, publishRate: o.publishRate },
      (out) => (out.includes('"phase":"started"') ? true : undefined),
    )
    canary = c.proc
    process.stderr.write(`case 1 N=${n}: publishing for ${o.publishSeconds} s (bound: ${o.recoverBound} s more)\n`)
    const progress = setInterval(() => {
      const s = smp.samples.at(-1)
      process.stderr.write(`  +${fmt((Date.now() - t) / 1000)} s: server RSS ${mib(s.rss)} MiB, ${fmt(s.fds)} open files\n`)
    }, 10_000)
    const outcome = await Promise.race([canary.exited, sleep(boundMs).then(() => 'timeout')])
    clearInterval(progress)
    await Promise.race([canary.closed, sleep(2000)])
    if (outcome === 'timeout') throw new Error(`the canary helper did not finish within ${boundMs / 1000} s`)
    const res = lastJsonLine(canary.stdout)
    if (!res || res.phase) throw new Error(`the canary helper gave no result: ${tail(canary.stderr || canary.stdout, 300)}`)
    r.rssAfter = rssBytes(server.pid)
    r.kernelSendQ = kernelSendQueues(server.port)
    r.serverAlive = alive(server.proc)
    if (!r.serverAlive) r.serverExit = `${exitOf(server.proc)}: ${tail(server.proc.stderr, 200)}`
    Object.assign(r, analyseStall(res, smp.stop(), r, n, loopDelays(server.loopLog)))
  } finally {
    smp.stop()
    await canary?.stop(1000)
    await holder?.stop(1000)
    await server.proc.stop(3000)
  }
  return r
}

function analyseStall(res, samples, r, n, delays = []) {
  const out = {}
  out.floodPublishes = res.flood.count
  out.floodErrors = res.flood.errors
  out.publishEnd = res.publishEnd ?? null
  out.floodRate = res.flood.count / (((res.publishEnd ?? res.end) - res.t0) / 1000)
  out.floodMaxRttMs = res.flood.maxRttMs
  out.probes = res.probes.length
  out.probeMaxRttMs = Math.max(0, ...res.probes.map((p) => p[2]))
  out.probeP50Ms = quantile(res.probes.map((p) => p[2]), 0.5)
  out.inflightMs = res.inflight?.waitedMs ?? null
  out.worstMs = Math.max(out.probeMaxRttMs, out.inflightMs ?? 0)
  out.notReturned = res.inflight !== null && res.inflight.waitedMs >= out.probeMaxRttMs
  out.boundHit = res.boundHit
  out.canaryGot = res.recv.length
  out.canaryClosed = res.canaryClosed
  // The longest time without a probe event at the canary (to the end of the run if none came after).
  const times = res.recv.map((x) => x[1]).sort((a, b) => a - b)
  let gap = 0
  let gapFrom = res.t0
  let prev = res.t0
  for (const t of [...times, res.end]) {
    if (t - prev > gap) (gap = t - prev), (gapFrom = prev)
    prev = t
  }
  out.longestGapMs = gap
  out.longestGapAtS = (gapFrom - res.t0) / 1000
  out.gapOpen = gapFrom + gap === res.end // no probe event came after it
  // Drops show in the server's open files (sampled every 250 ms from /proc, which answers while
  // the loop is blocked): the first drop is the first sample below the level at the start of
  // publishing by more than 1 % of N; the drop that froze the loop is the fall of open files
  // inside the longest canary gap, from its first sample there.
  const during = samples.filter((s) => s.t >= res.t0)
  const fd0 = Math.max(...during.filter((s) => s.t < res.t0 + 5000).map((s) => s.fds))
  const step = Math.max(10, n / 100)
  const first = during.find((s) => s.fds < fd0 - step)
  out.firstDropAtS = first ? (first.t - res.t0) / 1000 : null
  // What "dropping N stalled streams blocks the loop" means: the worst probe round trip among the
  // probes sent from 1 s before the first drop to 1 s after the last one (all N gone).
  const last = first ? during.find((s) => s.t >= first.t && s.fds <= fd0 - n + step) : undefined
  const windowProbes = first ? res.probes.filter((p) => p[1] >= first.t - 1000 && p[1] <= (last ?? first).t + 1000) : []
  out.dropWindowMaxRttMs = windowProbes.length > 0 ? Math.max(...windowProbes.map((p) => p[2])) : null
  // The same window for `GET /healthz`: the loop blocked, without the probe event's own fan-out.
  const windowLoop = first && res.loop ? res.loop.filter((p) => p[0] >= first.t - 1000 && p[0] <= (last ?? first).t + 1000) : []
  out.dropWindowLoopMs = windowLoop.length > 0 ? Math.max(...windowLoop.map((p) => p[1])) : null
  out.loopMaxMs = res.loop?.length ? Math.max(...res.loop.map((p) => p[1])) : null
  // The server's own event-loop delay (bench/loop-monitor.mjs): in the same window, and over the run.
  const inWindow = first ? delays.filter(([t]) => t >= first.t - 1000 && t <= (last ?? first).t + 1000) : []
  out.serverLoopWindowMs = inWindow.length > 0 ? Math.max(...inWindow.map(([, ms]) => ms)) : null
  out.serverLoopMaxMs = delays.length > 0 ? Math.max(...delays.filter(([t]) => t >= res.t0).map(([, ms]) => ms)) : null
  out.loopP50Ms = res.loop?.length ? quantile(res.loop.map((p) => p[1]), 0.5) : null
  out.dropWindowS = first ? [(first.t - res.t0) / 1000, ((last ?? first).t - res.t0) / 1000] : null
  const inGap = during.filter((s) => s.t >= gapFrom && s.t <= gapFrom + gap)
  const before = during.filter((s) => s.t < gapFrom).at(-1) ?? inGap[0]
  const fell = before ? inGap.find((s) => s.fds < before.fds - step) : undefined
  out.droppedInGap = fell ? before.fds - Math.min(...inGap.map((s) => s.fds)) : 0
  out.gapDropAtS = fell ? (fell.t - res.t0) / 1000 : null
  out.flowAgainMs = fell && !out.gapOpen ? gapFrom + gap - fell.t : null
  out.flowAgainBoundMs = fell ? res.end - fell.t : null
  // Every other canary gap over 1 s, with the fall of open files during it (the drops in more
  // than one sweep show here), longest first.
  const gaps = []
  prev = res.t0
  for (const t of [...times, res.end]) {
    if (t - prev > 1000 && prev !== gapFrom) {
      const inside = during.filter((s) => s.t >= prev && s.t <= t)
      const at = during.filter((s) => s.t < prev).at(-1) ?? inside[0]
      gaps.push({ ms: t - prev, atS: (prev - res.t0) / 1000, dropped: at && inside.length ? Math.max(0, at.fds - Math.min(...inside.map((s) => s.fds))) : 0 })
    }
    prev = t
  }
  out.otherGaps = gaps.sort((a, b) => b.ms - a.ms).slice(0, 5)
  out.rssPeak = Math.max(...samples.map((s) => s.rss).filter(Number.isFinite))
  out.rssPeakAtS = (samples.find((s) => s.rss === out.rssPeak)?.t - res.t0) / 1000
  out.drops = res.stats?.drops ?? null
  out.statsAgeS = res.stats ? (res.end - res.statsAt) / 1000 : null
  out.clientsAfter = res.stats?.clients ?? null
  out.runS = (res.end - res.t0) / 1000
  return out
}

// ---------------------------------------------------------------------------------------------
// Case 2.

function subscribeAttempt(port) {
  return new Promise((resolve) => {
    const t0 = performance.now()
    let status = null
    let done = false
    const finish = (r) => {
      if (done) return
      done = true
      clearTimeout(timer)
      s.destroy()
      resolve(r)
    }
    const s = openStream({
      port,
      path: `/events/${SUB_TOKEN}`,
      onStatus: (st) => (status = st),
      onEvent: (ev) => ev.event === 'ready' && finish({ ok: true, ms: performance.now() - t0 }),
      onClose: (err) => finish({ ok: false, outcome: status !== null && status !== 200 ? `status ${status}` : err ? `error ${err}` : 'closed, no answer', ms: performance.now() - t0 }),
    })
    const timer = setTimeout(() => finish({ ok: false, outcome: `no ready within ${SUBSCRIBE_WAIT_MS / 1000} s`, ms: SUBSCRIBE_WAIT_MS }), SUBSCRIBE_WAIT_MS)
  })
}

async function caseFlood(o, mode, notes) {
  const r = { mode, target: o.flood, procs: o.floodProcs, seconds: o.floodSeconds }
  const server = await startServer(o)
  const smp = sampler(server.pid)
  const helpers = []
  try {
    await busyNote(`case 2, ${mode}`, notes)
    r.fdsIdle = fdCount(server.pid)
    const per = Math.ceil(o.flood / o.floodProcs)
    for (let k = 0; k < o.floodProcs; k++) {
      const count = Math.min(per, o.flood - k * per)
      if (count <= 0) break
      const { proc } = await startHelper(`flood ${mode} ${k}`, 'flood', { port: server.port, mode, count, sources: sourcesFor(count) }, (out) => (out.includes('\n') ? true : undefined))
      helpers.push(proc)
    }
    // The flood is up when the server's open files stop growing (3 s) or reach the target.
    const t = Date.now()
    let best = 0
    let bestAt = t
    while (Date.now() - t < 40_000) {
      await sleep(500)
      const f = fdCount(server.pid)
      if (f > best) (best = f), (bestAt = Date.now())
      if (best >= Math.min(FD_LIMIT - 5, r.fdsIdle + o.flood) || Date.now() - bestAt > 3000) break
    }
    r.rampS = (Date.now() - t) / 1000
    const t0 = Date.now()
    process.stderr.write(`case 2 ${mode}: flood up in ${fmt(r.rampS, 1)} s, server holds ${fmt(fdCount(server.pid))} open files; ${o.floodSeconds} subscribers, one a second\n`)
    const attempts = []
    for (let k = 0; k < o.floodSeconds; k++) {
      attempts.push(subscribeAttempt(server.port))
      await sleep(1000)
    }
    r.attempts = await Promise.all(attempts)
    const window = smp.samples.filter((s) => s.t >= t0)
    r.serverFdsMedian = median(window.map((s) => s.fds))
    r.serverFdsMin = Math.min(...window.map((s) => s.fds))
    r.serverFdsMax = Math.max(...window.map((s) => s.fds))
    r.helpers = helpers.map((h) => lastJsonLine(h.stdout))
    r.serverAlive = alive(server.proc)
    if (drop === 'resume') {
      const during = (t) => t >= r.fireEpoch && t <= r.endEpoch
      const rtts = probes.filter(([t]) => during(t)).map(([, ms]) => ms)
      r.healthProbes = rtts.length
      r.healthP50 = quantile(rtts, 0.5)
      r.healthP99 = quantile(rtts, 0.99)
      r.healthMax = quantile(rtts, 1)
      // The loop monitor's lines cover the 100 ms before their time stamp.
      r.loopMaxMs = Math.max(0, ...loopDelays(server.loopLog).filter(([t]) => t >= r.fireEpoch && t - 100 <= r.endEpoch).map(([, ms]) => ms))
    }
    r.rssPeak = Math.max(...smp.samples.map((s) => s.rss).filter(Number.isFinite))
    r.emfileWarnings = (server.proc.stderr.match(/EMFILE/g) ?? []).length
  } finally {
    smp.stop()
    for (const h of helpers) await h.stop(1000)
    await server.proc.stop(3000)
  }
  const ok = r.attempts.filter((a) => a.ok)
  r.n = r.attempts.length
  r.readyGoal = ok.filter((a) => a.ms <= READY_GOAL_MS).length
  r.ready = ok.length
  r.p50 = quantile(ok.map((a) => a.ms), 0.5)
  r.max = quantile(ok.map((a) => a.ms), 1)
  r.failures = {}
  for (const a of r.attempts) if (!a.ok) r.failures[a.outcome] = (r.failures[a.outcome] ?? 0) + 1
  const sumH = (k) => r.helpers.reduce((s, h) => s + (h?.[k] ?? 0), 0)
  r.floodOpen = sumH('open')
  r.floodOpened = sumH('opened')
  r.floodClosed = sumH('closed')
  r.floodQuickClosed = sumH('quickClosed')
  delete r.helpers
  r.attempts = r.attempts.map((a) => (a.ok ? Math.round(a.ms) : a.outcome))
  return r
}

// ---------------------------------------------------------------------------------------------
// Case 3.

const DROP_NAMES = {
  server: 'server drops all (`DELETE /clients`)',
  client: 'clients drop all (closed from their side)',
  resume: 'all resume mid-history while events are published',
}

/** GET /healthz every 20 ms on one keep-alive connection until stop(): [epoch ms, round trip ms]. */
function healthProbe(port) {
  const h = new Http(port)
  const out = []
  let running = true
  const done = (async () => {
    while (running) {
      const at = Date.now()
      const t = performance.now()
      const r = await Promise.race([h.request('GET', '/healthz'), sleep(10_000).then(() => null)]).catch(() => null)
      out.push([at, r === null ? 10_000 : performance.now() - t])
      await sleep(20)
    }
  })()
  return {
    async stop() {
      running = false
      await done
      h.close()
      return out
    },
  }
}

async function caseStorm(o, drop, notes) {
  const server = await startServer(o)
  const smp = sampler(server.pid)
  let helper = null
  let r
  try {
    await busyNote(`case 3, ${drop} drop`, notes)
    const waited = await waitForPorts(o.storm)
    if (waited >= 1) notes.push(`case 3: waited ${fmt(waited)} s for ${fmt(o.storm)} free ports on 127.0.0.1 first (TIME_WAIT of earlier connections)`)
    const boundMs = o.stormBound * 1000
    const limitMs = 120_000 + 30_000 + 15_000 + boundMs + 30_000 + o.storm * 5
    const cfg = { port: server.port, n: o.storm, sources: sourcesFor(o.storm), boundMs, missed: o.stormMissed, livePeriodMs: o.stormLiveMs, drop }
    if (drop === 'resume') Object.assign(cfg, { history: o.stormHistory, resumeAt: o.stormResumeAt, liveCount: o.stormLiveCount, livePeriodMs: o.stormResumeLiveMs, sources: o.stormSources > 0 ? sourcesFor(o.stormSources * PER_SOURCE) : [] })
    helper = (await startHelper('storm', 'storm', cfg, () => true)).proc
    // /healthz from this process (not the one holding the streams) every 20 ms, for the whole run.
    const probe = drop === 'resume' ? healthProbe(server.port) : null
    const outcome = await Promise.race([helper.exited, sleep(limitMs).then(() => 'timeout')])
    const probes = (await probe?.stop()) ?? []
    await Promise.race([helper.closed, sleep(2000)])
    if (outcome === 'timeout') throw new Error(`the storm helper did not finish within ${limitMs / 1000} s`)
    r = lastJsonLine(helper.stdout)
    if (!r) throw new Error(`the storm helper gave no result: ${tail(helper.stderr || helper.stdout, 300)}`)
    process.stderr.write(tail(helper.stderr, 400) + '\n')
    r.serverAlive = alive(server.proc)
    if (drop === 'resume') {
      const during = (t) => t >= r.fireEpoch && t <= r.endEpoch
      const rtts = probes.filter(([t]) => during(t)).map(([, ms]) => ms)
      r.healthProbes = rtts.length
      r.healthP50 = quantile(rtts, 0.5)
      r.healthP99 = quantile(rtts, 0.99)
      r.healthMax = quantile(rtts, 1)
      // The loop monitor's lines cover the 100 ms before their time stamp.
      r.loopMaxMs = Math.max(0, ...loopDelays(server.loopLog).filter(([t]) => t >= r.fireEpoch && t - 100 <= r.endEpoch).map(([, ms]) => ms))
    }
    r.rssPeak = Math.max(...smp.samples.map((s) => s.rss).filter(Number.isFinite))
    r.fdsPeak = Math.max(...smp.samples.map((s) => s.fds).filter(Number.isFinite))
  } finally {
    smp.stop()
    await helper?.stop(1000)
    await server.proc.stop(3000)
  }
  return r
}

// ---------------------------------------------------------------------------------------------
// Which build is measured.

/**
 * The git commit of the build at `cli` (…/dist/cli.js): its own checkout's HEAD if it is one,
 * else the commit of this repository whose src/ is byte for byte the build's src/ (newest 200
 * commits), else unknown. `--commit` overrides.
 */
function buildCommit(cli) {
  const root = path.resolve(path.dirname(cli), '..')
  const head = run('git', ['-C', root, 'rev-parse', '--short', 'HEAD'])
  const top = run('git', ['-C', root, 'rev-parse', '--show-toplevel'])
  if (head && top && /^[0-9a-f]{4,}$/.test(head) && path.resolve(top) === root) {
    const dirty = run('git', ['-C', root, 'status', '--porcelain', '--', 'src'])
    return `${head}${dirty ? ' with src/ modified (uncommitted changes)' : ''}`
  }
  const src = path.join(root, 'src')
  if (!existsSync(src)) return 'unknown (no src/ beside the build)'
  const files = spawnSync('find', [src, '-type', 'f'], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean)
  const hashes = spawnSync('git', ['-C', ROOT, 'hash-object', '--stdin-paths'], { input: files.join('\n'), encoding: 'utf8' }).stdout.trim().split('\n')
  const mine = new Map(files.map((f, k) => [path.relative(root, f), hashes[k]]))
  const commits = (run('git', ['-C', ROOT, 'rev-list', '--max-count=200', 'HEAD']) ?? '').split('\n').filter(Boolean)
  for (const c of commits) {
    const tree = spawnSync('git', ['-C', ROOT, 'ls-tree', '-r', c, '--', 'src'], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean)
    if (tree.length !== mine.size) continue
    if (tree.every((l) => mine.get(l.split('\t')[1]) === l.split(/\s+/)[2])) return `${c.slice(0, 7)} (its src/ is byte for byte this repository's src/ at that commit; no git checkout at ${root})`
  }
  return `unknown (src/ at ${root} matches none of this repository's last 200 commits)`
}

function buildVersion(cli) {
  try {
    return JSON.parse(readFileSync(path.resolve(path.dirname(cli), '..', 'package.json'), 'utf8')).version
  } catch {
    return '?'
  }
}

// ---------------------------------------------------------------------------------------------
// The report: one block per label, a side-by-side table of every label's figures.

const LABEL_ORDER = ['before', 'after']

function labelBlocks(section) {
  const blocks = new Map()
  if (!section) return blocks
  const re = /<!-- hostile-label:(\S+?):begin -->([\s\S]*?)<!-- hostile-label:\1:end -->/g
  for (let m; (m = re.exec(section)); ) {
    const data = /<!-- hostile-data ([\s\S]*?) -->/.exec(m[2])
    let json = null
    try {
      json = data ? JSON.parse(data[1]) : null
    } catch {}
    blocks.set(m[1], { text: m[0], data: json })
  }
  return blocks
}

function stallCell(c) {
  if (!c) return '–'
  if (c.error) return `failed: ${c.error}`
  const block = c.notReturned ? `≥ ${secs(c.worstMs)} (not returned at the bound)` : msOrS(c.worstMs)
  // Runs from before this figure existed: when the drops fell inside the longest canary gap, the
  // worst round trip was the drops'.
  const drop = c.dropWindowMaxRttMs ?? (c.droppedInGap > 0 ? c.worstMs : null)
  const own = c.serverLoopWindowMs === undefined || c.serverLoopWindowMs === null ? '' : `server's loop delay ${msOrS(c.serverLoopWindowMs)} (worst over the run ${msOrS(c.serverLoopMaxMs)}), `
  const loop = own + (c.dropWindowLoopMs === undefined || c.dropWindowLoopMs === null ? '' : `\`GET /healthz\` ${msOrS(c.dropWindowLoopMs)}, `)
  return `${loop}publish ${drop === null ? '–' : msOrS(drop)} while dropped (worst overall ${block}); RSS peak ${mib(c.rssPeak)} MiB`
}

function summaryTable(blocks) {
  const labels = [...blocks.keys()].sort((a, b) => {
    const ia = LABEL_ORDER.indexOf(a)
    const ib = LABEL_ORDER.indexOf(b)
    return (ia === -1 ? 99 : ia) - (ib === -1 ? 99 : ib) || a.localeCompare(b)
  })
  const data = labels.map((l) => blocks.get(l).data ?? {})
  const rows = []
  const ns = [...new Set(data.flatMap((d) => [...(d.stall ?? []).map((c) => c.n), ...(d.stallSkipped ?? [])]))].sort((a, b) => a - b)
  for (const n of ns) {
    const cell = (d) => (d.stallSkipped?.includes(n) ? 'not run: a smaller N did not recover within the bound' : stallCell(d.stall?.find((c) => c.n === n)))
    rows.push([`1: drop ${fmt(n)} stalled streams`, 'while the streams are dropped: the server\'s own event-loop delay (bench/loop-monitor.mjs); the worst round trip of `GET /healthz` and of a publish (its fan-out to N + 1 streams too) from a client process on the other core', '< 100 ms (at 10 000)', ...data.map(cell)])
  }
  const modes = [...new Set(data.flatMap((d) => (d.flood ?? []).map((f) => f.mode)))]
  for (const mode of modes) {
    rows.push([
      `2: ${FLOOD_NAMES[mode] ?? mode} flood`,
      'new subscribers with `ready` within 2 s',
      '≥ 95 %',
      ...data.map((d) => {
        const f = d.flood?.find((x) => x.mode === mode)
        if (!f) return '–'
        if (f.error) return `failed: ${f.error}`
        return `${f.readyGoal} of ${f.n} (${fmt((100 * f.readyGoal) / Math.max(1, f.n))} %); server held ${fmt(f.serverFdsMedian)} fds`
      }),
    ])
  }
  const drops = [...new Set(data.flatMap((d) => (d.storm ?? []).map((s) => s.drop)))]
  for (const drop of drops) {
    rows.push([
      `3: all reconnect at once; ${DROP_NAMES[drop] ?? drop}`,
      '`ready` within 10 s; p99; exact replay; listen overflows',
      'all within 10 s',
      ...data.map((d) => {
        const s = d.storm?.find((x) => x.drop === drop)
        if (!s) return '–'
        if (s.error) return `failed: ${s.error}`
        return `${fmt(s.readyWithinGoal)} of ${fmt(s.n)}; p99 ${s.p99 === null ? `> ${secs(s.boundMs, 0)}` : secs(s.p99)}; ${fmt(s.exact)} exact; ${fmt(s.listenOverflows)} overflows`
      }),
    ])
  }
  const out = [`| case | figure | goal (issue 14) | ${labels.join(' | ')} |`, `|---|---|---|${labels.map(() => '---|').join('')}`]
  for (const r of rows) out.push(`| ${r.join(' | ')} |`)
  return out.join('\n')
}

const FLOOD_NAMES = { keepalive: 'keep-alive `OPTIONS *` every 4 s', idle: 'idle', loris: 'slow-loris' }

function labelReport(o, m, command, build, res, notes) {
  const out = []
  out.push(`### ${o.label}${o.quick ? ' (QUICK SMOKE RUN: small sizes; not results)' : ''}`)
  out.push('')
  // machineMarkdown's software line names this checkout and the fan-out peers; here the build and python3 matter.
  out.push(
    machineMarkdown(m)
      .split('\n')
      .filter((l) => !l.startsWith('- Software:'))
      .join('\n'),
  )
  out.push(`- Software: node ${m.node}, ${run('python3', ['-V']) ?? 'python3 not installed'}, rawsse ${buildVersion(o.cli)} (the build measured, below)`)
  out.push(`- Command: \`${command}\``)
  out.push(`- Build measured: \`${o.cli}\`, git ${build}; server started as \`taskset -c ${SERVER_CORE} ${shellJoin(serverArgv(o, 'PORT').map((a) => (a === process.execPath ? 'node' : a)))}\``)
  out.push(`- Kernel: net.core.somaxconn ${res.somaxconn}, tcp_max_syn_backlog ${res.synBacklog}, tcp_syncookies ${res.syncookies}, ephemeral ports ${res.ports}; a shared 2-core VM (another engineer's test runs were on it too): server on core ${SERVER_CORE}, everything else on core ${LOAD_CORE}.`)
  out.push('')
  if (res.stall) {
    out.push(`**Case 1: stalled streams dropped.** Stalled sockets: SO_RCVBUF ${o.stalledRcvbuf}, TCP_MAXSEG ${o.stalledMss}. ${EVENT_BYTES}-byte events back to back${o.publishRate > 0 ? ` (at most ${o.publishRate}/s)` : ''} for ${o.publishSeconds} s on one connection (the server's stall timeout is ${STALL_TIMEOUT_S} s, --max-buffer its default 1 MiB); a probe event every 100 ms to a reading canary. Stopped ${o.recoverBound} s after publishing if not recovered.`)
    out.push('')
    out.push('| N stalled | publishes (/s) | first drop at | worst probe round trip | the server\'s loop delay: worst while dropped / over the run; `GET /healthz` round trip: worst while dropped / worst / p50 | longest canary gap: length (from) | streams dropped in it (at) | canary flowing again after that drop | other canary gaps over 1 s (from; streams dropped in it) | RSS before → peak → after (MiB) | dropped: stall / buffer | streams left |')
    out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|')
    for (const c of res.stall) {
      if (c.error) {
        out.push(`| ${fmt(c.n)} | failed: ${c.error} | | | | | | | | | | |`)
        continue
      }
      const worst = c.notReturned ? `≥ ${secs(c.worstMs)}, not returned when stopped` : msOrS(c.worstMs)
      const kq = c.kernelSendQ
      const left =
        c.clientsAfter === null ? '–' : `${fmt(c.clientsAfter)}${kq?.n ? ` (${fmt(kq.n)} stalled, kernel send queue p50 ${fmt(kq.p50 / 1024)} KiB each)` : ''}${c.boundHit ? `; stopped at the bound, ${secs(c.runS * 1000, 0)} after publishing began` : ''}`
      const flow = c.gapDropAtS === null ? '–' : c.flowAgainMs === null ? `not within ${secs(c.flowAgainBoundMs, 0)}` : msOrS(c.flowAgainMs)
      const drops = c.drops ? `${fmt(c.drops.stall)} / ${fmt(c.drops.buffer)}${c.statsAgeS > 2 ? ` (the last /stats answer, ${secs(c.statsAgeS * 1000, 0)} before the end)` : ''}` : 'no /stats answer'
      const at = (x) => (x === null ? '–' : `${fmt(x, 1)} s`)
      const ms = (x) => (x === null || x === undefined ? '–' : msOrS(x))
      const loopCell = `${ms(c.serverLoopWindowMs)} / ${ms(c.serverLoopMaxMs)}; ${ms(c.dropWindowLoopMs)} / ${ms(c.loopMaxMs)} / ${ms(c.loopP50Ms)}`
      const others = (c.otherGaps ?? []).map((g) => `${secs(g.ms)} (${fmt(g.atS, 1)} s; ${fmt(g.dropped)})`).join(', ') || '–'
      out.push(
        `| ${fmt(c.n)} | ${fmt(c.floodPublishes)} (${fmt(c.floodRate)}) | ${at(c.firstDropAtS)} | ${worst} | ${loopCell} | ${secs(c.longestGapMs)}${c.gapOpen ? ', to the end' : ''} (${fmt(c.longestGapAtS, 1)} s) | ${fmt(c.droppedInGap)} (${at(c.gapDropAtS)}) | ${flow} | ${others} | ${mib(c.rssBefore)} → ${mib(c.rssPeak)} → ${mib(c.rssAfter)} | ${drops} | ${left} |`,
      )
    }
    for (const n of res.stallSkipped ?? []) out.push(`| ${fmt(n)} | not run: a smaller N did not recover within the bound | | | | | | | | | | |`)
    out.push('')
    out.push(
      'Times are from the start of publishing. Drops are read from the server\'s open files, sampled every 250 ms from /proc (which answers while the loop is blocked): the first drop is the first sample with fewer than at the start of publishing (by over 1 % of N); "streams dropped in it" is how far they fell during the longest canary gap, "at" its first sample there, and "flowing again" the time from that sample to the first probe event after the gap. "Streams left" is /stats `clients` at the end (the canary is one); for the stalled ones among them, the Send-Q column of `ss`: what the server\'s kernel holds for them unacknowledged (a stream whose every byte the kernel has taken has nothing queued in Node, and no stall check sees it: the kernel\'s send buffer grows by autotuning to ~130 KiB here, while the peer acknowledges ~5 KiB). The probe median round trip, the canary\'s count of probe events and the holder\'s own report are in the JSON below.',
    )
    out.push('')
  }
  if (res.flood) {
    out.push(`**Case 2: floods at the file-descriptor limit.** ${fmt(o.flood)} connections from ${o.floodProcs} processes (own source addresses), each reopened when the server closes it; once the flood is up, a new subscriber (valid token) every second for ${o.floodSeconds} s, each waiting at most ${SUBSCRIBE_WAIT_MS / 1000} s for \`ready\`.`)
    out.push('')
    out.push('| flood | server open files (median, min–max) | flood connections open at the end | subscribers | `ready` ≤ 2 s | `ready` at all | p50 / max to `ready` | the others |')
    out.push('|---|---:|---:|---:|---:|---:|---:|---|')
    for (const f of res.flood) {
      if (f.error) {
        out.push(`| ${FLOOD_NAMES[f.mode] ?? f.mode} | failed: ${f.error} | | | | | | |`)
        continue
      }
      const others = Object.entries(f.failures).map(([k, v]) => `${v}× ${k}`).join('; ') || '–'
      out.push(
        `| ${FLOOD_NAMES[f.mode] ?? f.mode} | ${fmt(f.serverFdsMedian)} (${fmt(f.serverFdsMin)}–${fmt(f.serverFdsMax)}) | ${fmt(f.floodOpen)} | ${f.n} | ${f.readyGoal} (${fmt((100 * f.readyGoal) / Math.max(1, f.n))} %) | ${f.ready} | ${msOrS(f.p50)} / ${msOrS(f.max)} | ${others} |`,
      )
    }
    out.push('')
    out.push('"closed, no answer": the connection was accepted and closed with nothing sent (what libuv does with a connection it accepts at EMFILE).')
    out.push('')
  }
  if (res.storm) {
    out.push(
      `**Case 3: reconnect storm.** ${fmt(o.storm)} streams get ${STORM_BEFORE} events; then all are dropped at once, either by the server (\`DELETE /clients\`; the reconnects start when every stream has seen its end) or from the clients' side (every socket closed in the same turn as the reconnects, so the server meets the closes and the new connections together while it still holds the old streams); ${o.stormMissed} events are published while they are away; all reconnect in one loop with \`Last-Event-ID\`, an event is published every ${o.stormLiveMs} ms meanwhile, and a connection closed before \`ready\` retries after 1 s. Bound: ${o.stormBound} s.`,
    )
    out.push('')
    out.push('| drop | N | `ready` ≤ 10 s | `ready` ≤ bound | p50 / p99 / max to `ready` | exact events | with a gap / a duplicate / out of order | retries | listen overflows / drops (Δ) | server RSS peak |')
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    const more = []
    for (const s of res.storm) {
      if (s.error) {
        out.push(`| ${DROP_NAMES[s.drop] ?? s.drop} | ${fmt(s.n)} | failed: ${s.error} | | | | | | | |`)
        continue
      }
      const q = (x) => (x === null ? `> ${secs(s.boundMs, 0)}` : secs(x, 2))
      out.push(
        `| ${DROP_NAMES[s.drop] ?? s.drop} | ${fmt(s.n)} | ${fmt(s.readyWithinGoal)} | ${fmt(s.readyWithinBound)} | ${q(s.p50)} / ${q(s.p99)} / ${q(s.max)} | ${fmt(s.exact)} of ${fmt(s.readyWithinBound)} served | ${fmt(s.withGap)} / ${fmt(s.withDup)} / ${fmt(s.outOfOrder)} | ${fmt(s.retries)} | ${fmt(s.listenOverflows)} / ${fmt(s.listenDrops)} | ${mib(s.rssPeak)} MiB |`,
      )
      if (s.drop === 'resume') {
        more.push(
          `- resume: ${fmt(s.history)} events published first; every stream connects with \`Last-Event-ID\` = the ${fmt(s.resumeAt)}th, while ${fmt(s.liveCount)} more are published one at a time ${s.livePeriodMs} ms apart, so each should get exactly ${fmt(s.expected)}; \`reset\`s: ${fmt(s.resets)}; the ${fmt(s.n)} connect() calls took ${fmt(s.fireLoopMs)} ms of the client process; all delivered ${secs(s.deliveredMs, 2)} after the first connect. While the storm lasted: \`GET /healthz\` every 20 ms from another process, p50 / p99 / max ${msOrS(s.healthP50)} / ${msOrS(s.healthP99)} / ${msOrS(s.healthMax)} (${fmt(s.healthProbes)} probes); the live publishes' answers p50 / p99 ${msOrS(s.publishP50)} / ${msOrS(s.publishP99)}; the server's event loop blocked at most ${msOrS(s.loopMaxMs)} (its own monitor, 10 ms resolution); closes before \`ready\`: ${JSON.stringify(s.reasons)}; statuses: ${JSON.stringify(s.statuses)}; server open files at most ${fmt(s.fdsPeak)}.`,
        )
        continue
      }
      more.push(
        `- ${s.drop} drop: ${fmt(s.published)} events published in all (each stream should end with every one, in order: "exact"); ${fmt(s.initialReady)} of ${fmt(s.n)} streams open before the storm; \`DELETE /clients\`: ${s.deleteStatus} \`${s.deleteBody}\`; the ${fmt(s.n)} connect() calls took ${fmt(s.fireLoopMs)} ms of the client process; closes before \`ready\`: ${JSON.stringify(s.reasons)}; statuses: ${JSON.stringify(s.statuses)}; server open files at most ${fmt(s.fdsPeak)}.`,
      )
    }
    out.push('')
    out.push(...more)
    out.push('')
  }
  out.push('Notes:')
  out.push('')
  if (!notes.some((n) => n.includes('% busy'))) out.push(`- Before every case no core was more than ${BUSY_LIMIT} % busy with other work.`)
  for (const n of notes) out.push(`- ${n}`)
  out.push('')
  const json = JSON.stringify(res).replace(/--/g, '-\\u002d')
  out.push(`<!-- hostile-data ${json} -->`)
  return `<!-- hostile-label:${o.label}:begin -->\n${out.join('\n')}\n<!-- hostile-label:${o.label}:end -->`
}

function sectionText(o, blocks) {
  const out = []
  out.push('## Hostile clients (issue 14: cases 1, 2 and 7)')
  out.push('')
  out.push(
    '`node bench/hostile.mjs --cli PATH --label NAME` writes this section (do not edit it by hand): one block per label, each replaced only by a run with its label; the table puts the labels side by side. The header of bench/hostile.mjs says in full how each case is made. Figures are from a shared 2-core VM; treat differences under about 20 % as noise.',
  )
  out.push('')
  out.push(
    '- Case 1: the stalled clients are one python3 process (Node cannot set these) holding N sockets with SO_RCVBUF 4096 and TCP_MAXSEG 536 set before connect, bound to source addresses 127.x.y.z of their own (one per 1 000); each sends `GET /events/TOKEN` (a subscribe-only token) and never reads (the answer is checked with MSG_PEEK, which leaves it unread). One keep-alive connection publishes 100-byte events back to back; the canary (one reading subscriber) and the probe (one publish every 100 ms, timed) run in one node process.',
  )
  out.push(
    '- Case 2: 4 node processes, with source addresses of their own (one per 1 000 connections), hold the flood connections and reopen any the server closes (after 0.5 s if it lived under 1 s, else at once); the new subscribers come from this script, one a second.',
  )
  out.push(
    '- Case 3: one node process opens all the streams (from source addresses of its own), drops them all (by `DELETE /clients`, or by closing every socket itself in the same turn as the reconnects), and reconnects them all in one loop from 127.0.0.1 without bind() (10 000 bind() calls would cost it seconds of system time and spread the storm out); `ready` time is from the start of that loop. Listen overflows are read from /proc/net/netstat, which counts the whole machine.',
  )
  out.push('')
  out.push(summaryTable(blocks))
  out.push('')
  const labels = [...blocks.keys()].sort((a, b) => {
    const ia = LABEL_ORDER.indexOf(a)
    const ib = LABEL_ORDER.indexOf(b)
    return (ia === -1 ? 99 : ia) - (ib === -1 ? 99 : ib) || a.localeCompare(b)
  })
  for (const l of labels) out.push(blocks.get(l).text, '')
  return out.join('\n')
}

// ---------------------------------------------------------------------------------------------
// The run.

function parseFlags(argv) {
  const quick = argv.includes('--quick')
  const { get, list, num, done } = flagReader(argv, ['quick'])
  const serverArgs = []
  for (let i = 0; i < argv.length; i++) if (argv[i] === '--server-arg') serverArgs.push(argv[++i])
  const o = {
    quick,
    cli: get('cli') ?? CLI,
    label: get('label') ?? (quick ? 'quick' : 'current'),
    serverArgs,
    cases: list('cases', '1,2,3').map(Number),
    stalled: list('stalled', quick ? '1000' : '3000,10000').map(Number),
    stalledRcvbuf: num('stalled-rcvbuf', 4096),
    stalledMss: num('stalled-mss', 536),
    publishSeconds: num('publish-seconds', quick ? 33 : 35),
    publishRate: num('publish-rate', 0),
    recoverBound: num('recover-bound', quick ? 30 : 120),
    flood: num('flood', quick ? 2000 : 20_000),
    floodProcs: num('flood-procs', 4),
    floodSeconds: num('flood-seconds', quick ? 8 : 30),
    floods: list('floods', 'keepalive,idle,loris'),
    storm: num('storm', quick ? 1000 : 10_000),
    stormBound: num('storm-bound', 90),
    stormMissed: num('storm-missed', 5),
    stormLiveMs: num('storm-live-ms', 500),
    stormDrops: list('storm-drop', 'server,client,resume'),
    stormHistory: num('storm-history', quick ? 200 : 1000),
    stormResumeAt: num('storm-resume-at', quick ? 100 : 500),
    stormLiveCount: num('storm-live-count', quick ? 40 : 200),
    stormResumeLiveMs: num('storm-resume-live-ms', 50),
    stormSources: num('storm-sources', 0),
    commit: get('commit'),
    profile: get('profile') === undefined ? undefined : path.resolve(get('profile')),
    // A quick run checks the script: it writes nowhere unless told where.
    out: get('out') !== undefined ? path.resolve(get('out')) : quick ? null : path.join(BENCH, 'RESULTS.md'),
  }
  get('server-arg')
  done()
  if (!/^[\w.-]+$/.test(o.label)) throw new Error(`--label must be letters, digits, . _ or -, not '${o.label}'`)
  o.cli = buildAt(o.cli) // a file as is, else a commit built in a temporary worktree (lib.mjs)
  for (const n of o.stalled) if (!Number.isInteger(n) || n < 1 || n > FD_LIMIT - 1000) throw new Error(`--stalled: 1 to ${FD_LIMIT - 1000}, not ${n}`)
  if (o.storm < 1 || o.storm > FD_LIMIT - 1000) throw new Error(`--storm: 1 to ${FD_LIMIT - 1000}`)
  if (o.flood / Math.max(1, o.floodProcs) > FD_LIMIT - 1000) throw new Error('--flood / --flood-procs must stay under 19 000 connections per process')
  if (o.publishSeconds <= STALL_TIMEOUT_S) process.stderr.write(`warning: --publish-seconds ${o.publishSeconds} is not longer than the ${STALL_TIMEOUT_S} s stall timeout\n`)
  for (const d of o.stormDrops) if (!(d in DROP_NAMES)) throw new Error(`--storm-drop: server, client or both, not '${d}'`)
  for (const f of o.floods) if (!(f in FLOOD_NAMES)) throw new Error(`--floods: keepalive, idle, loris; not '${f}'`)
  return o
}

async function main() {
  const argv = process.argv.slice(2)
  if (argv[0] === '--helper') {
    const cfg = JSON.parse(argv[2])
    if (argv[1] === 'canary') return canaryHelper(cfg)
    if (argv[1] === 'flood') return floodHelper(cfg)
    if (argv[1] === 'storm') return cfg.drop === 'resume' ? resumeStormHelper(cfg) : stormHelper(cfg)
    throw new Error(`unknown helper ${argv[1]}`)
  }
  const o = parseFlags(argv)
  if (spawnSync('taskset', ['-V']).error) throw new Error('taskset (util-linux) is not installed')
  if (o.cases.includes(1) && spawnSync('python3', ['-V']).error) throw new Error('case 1 needs python3')
  // The whole run is bounded; every child is killed on the way out.
  const limitS = o.quick ? 300 : 1800
  setTimeout(() => {
    process.stderr.write(`hostile: the run passed its ${limitS} s bound; stopping every process started here\n`)
    killAll()
    process.exit(3)
  }, limitS * 1000).unref()
  // This script and every load process it starts run on core 1; servers on core 0.
  const pin = spawnSync('taskset', ['-a', '-c', '-p', LOAD_CORE, String(process.pid)], { encoding: 'utf8' })
  if (pin.status !== 0) throw new Error(`cannot pin this process to core ${LOAD_CORE}: ${pin.stderr.trim()}`)
  const m = machine()
  const build = o.commit ?? buildCommit(o.cli)
  const command = `node bench/hostile.mjs${argv.length ? ' ' + shellJoin(argv) : ''}`
  process.stderr.write(`hostile: ${o.cli} (git ${build}), label ${o.label}\n`)
  const [low, high] = ephemeralPorts()
  const res = {
    label: o.label,
    date: m.date,
    somaxconn: readProc('/proc/sys/net/core/somaxconn'),
    synBacklog: readProc('/proc/sys/net/ipv4/tcp_max_syn_backlog'),
    syncookies: readProc('/proc/sys/net/ipv4/tcp_syncookies'),
    ports: `${low}–${high}`,
  }
  const notes = []
  const t0 = Date.now()

  if (o.cases.includes(1)) {
    res.stall = []
    for (const n of [...o.stalled].sort((a, b) => a - b)) {
      // A larger N only if the smaller one recovered within the bound: it would not either.
      const prev = res.stall.at(-1)
      if (prev && (prev.error || prev.boundHit)) {
        ;(res.stallSkipped ??= []).push(n)
        notes.push(`case 1, N = ${fmt(n)}: not run, because N = ${fmt(prev.n)} ${prev.error ? 'failed' : `did not recover within its ${o.recoverBound} s bound`}`)
        continue
      }
      try {
        const c = await caseStall(o, n, notes)
        res.stall.push(c)
        process.stderr.write(
          `case 1 N=${n}: worst probe RTT ${msOrS(c.worstMs)}${c.notReturned ? ' (not returned)' : ''}, first drop at ${c.firstDropAtS} s, ${c.droppedInGap} dropped in the longest gap (${secs(c.longestGapMs)} from ${c.longestGapAtS} s), canary again ${msOrS(c.flowAgainMs)} after that drop, RSS ${mib(c.rssBefore)} → ${mib(c.rssPeak)} → ${mib(c.rssAfter)} MiB, drops ${JSON.stringify(c.drops)}, ${fmt(c.floodPublishes)} publishes\n`,
        )
        if (c.holder && c.holder.ok200 < n) notes.push(`case 1, N = ${fmt(n)}: only ${fmt(c.holder.ok200)} of the stalled streams were answered 200 (${JSON.stringify(c.holder)})`)
        if (c.serverAlive === false) notes.push(`case 1, N = ${fmt(n)}: the server exited: ${c.serverExit}`)
      } catch (err) {
        process.stderr.write(`case 1 N=${n}: ${err.stack}\n`)
        res.stall.push({ n, error: err.message.split('\n')[0] })
      }
    }
  }
  if (o.cases.includes(2)) {
    res.flood = []
    for (const mode of o.floods) {
      try {
        const f = await caseFlood(o, mode, notes)
        res.flood.push(f)
        process.stderr.write(`case 2 ${mode}: ${f.readyGoal} of ${f.n} ready within 2 s, ${f.ready} at all, p50 ${msOrS(f.p50)}, max ${msOrS(f.max)}; server fds median ${f.serverFdsMedian}; ${JSON.stringify(f.failures)}\n`)
        if (!f.serverAlive) notes.push(`case 2, ${mode}: the server exited during the flood`)
      } catch (err) {
        process.stderr.write(`case 2 ${mode}: ${err.stack}\n`)
        res.flood.push({ mode, error: err.message.split('\n')[0] })
      }
    }
  }
  if (o.cases.includes(3)) {
    res.storm = []
    for (const drop of o.stormDrops) {
      try {
        const s = await caseStorm(o, drop, notes)
        res.storm.push(s)
        process.stderr.write(
          `case 3, ${drop} drop: ${s.readyWithinGoal} of ${s.n} ready within 10 s, ${s.readyWithinBound} within ${o.stormBound} s; p50 ${msOrS(s.p50)} p99 ${msOrS(s.p99)} max ${msOrS(s.max)}; exact ${s.exact}; overflows ${s.listenOverflows}${drop === 'resume' ? `; /healthz p99 ${msOrS(s.healthP99)} max ${msOrS(s.healthMax)}; loop blocked ≤ ${msOrS(s.loopMaxMs)}; publish p99 ${msOrS(s.publishP99)}; resets ${s.resets}` : ''}\n`,
        )
        if (!s.serverAlive) notes.push(`case 3, ${drop} drop: the server exited during the storm`)
      } catch (err) {
        process.stderr.write(`case 3, ${drop} drop: ${err.stack}\n`)
        res.storm.push({ n: o.storm, drop, error: err.message.split('\n')[0] })
      }
    }
  }
  res.runSeconds = Math.round((Date.now() - t0) / 1000)
  notes.push(`The whole run took ${fmt(res.runSeconds / 60, 1)} min.`)

  const block = labelReport(o, m, command, build, res, notes)
  process.stdout.write(block + '\n')
  if (o.out === null) {
    process.stderr.write('--quick without --out: nothing written\n')
  } else {
    placeSectionAfter(o.out, 'hostile', 'http')
    const blocks = labelBlocks(readSection(o.out, 'hostile'))
    blocks.set(o.label, labelBlocks(block).get(o.label))
    writeSection(o.out, 'hostile', sectionText(o, blocks))
    process.stderr.write(`wrote the ${o.label} block of the hostile section of ${path.relative(process.cwd(), o.out) || o.out}\n`)
  }
  killAll()
  process.exit(0)
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().catch((err) => {
    process.stderr.write(`hostile: ${err.stack ?? err.message}\n`)
    killAll()
    process.exit(1)
  })
}
