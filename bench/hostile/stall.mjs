// Case 1 of bench/hostile.mjs, dropping stalled streams:
//   node bench/hostile.mjs --cases 1 [--stalled 3000,10000] [--stalled-rcvbuf 4096] [--stalled-mss 536]
//       [--publish-seconds 35] [--publish-rate 0] [--recover-bound 120]
//
// N streams (--stalled, each N in turn, smallest first; a larger N
// only if the smaller recovered within the bound) are opened by one python3 process that
// never reads: each socket gets SO_RCVBUF 4096 and TCP_MAXSEG 536 before connect (a stalled
// mobile client on a small MSS; Node can set neither), so the server's writes block after a
// few KiB; the answer is checked with MSG_PEEK, which leaves it unread. Then for
// --publish-seconds (longer than the server's fixed 30 s stall timeout) one keep-alive
// connection publishes 100-byte events back to back (the next when the last is answered;
// --publish-rate R > 0 caps it at R/s: a server that publishes fast fills every stream's
// 1 MiB --max-buffer within seconds, and then drops them as `buffer`, never reaching the
// 30 s stall sweep; a cap of ~100/s keeps them under it for 35 s),
// while a canary, one reading subscriber, gets them too and a probe publishes a `probe` event
// every 100 ms and times each round trip. Reported: the worst probe round trip (the event
// loop blocked), the longest time the canary got no probe event, how many streams were
// dropped in that gap (the fall of the server's open files) and how long after the drop the
// canary's events flowed again, RSS before / peak / after, drops.stall / drops.buffer from
// /stats. A case not recovered --recover-bound s after publishing ended is stopped: that is
// its figure.

import { spawnSync } from 'node:child_process'
import { alive, fdCount, fmt, Http, isRunSource, lastJsonLine, openStream, PUBLISH_TOKEN, quantile, rssBytes, sleep, sourcesFor, startProcess, tail } from '../lib.mjs'
import { busyNote, exitOf, loopDelays, mib, msOrS, sampler, secs, startHelper, startServer, stats, SUB_TOKEN } from './server.mjs'

const EVENT_BYTES = 100
export const STALL_TIMEOUT_S = 30 // the server's (not a flag)

// ---------------------------------------------------------------------------------------------
// Helper: the canary (publisher, probe, canary subscriber, /stats), on core 1.

export async function canaryHelper(cfg) {
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
// The stalled clients: python3, because node cannot set SO_RCVBUF or TCP_MAXSEG.
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
// The case.

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
    if (m && isRunSource(m[2])) q.push(Number(m[1]))
  }
  if (q.length === 0) return { n: 0 }
  return { n: q.length, p50: quantile(q, 0.5), min: quantile(q, 0), max: quantile(q, 1) }
}

export async function caseStall(o, n, notes) {
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
// Its part of the report.

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

/** The summary table's rows of case 1, one per N, a cell per label. */
export function stallSummaryRows(data) {
  const rows = []
  const ns = [...new Set(data.flatMap((d) => [...(d.stall ?? []).map((c) => c.n), ...(d.stallSkipped ?? [])]))].sort((a, b) => a - b)
  for (const n of ns) {
    const cell = (d) => (d.stallSkipped?.includes(n) ? 'not run: a smaller N did not recover within the bound' : stallCell(d.stall?.find((c) => c.n === n)))
    rows.push([`1: drop ${fmt(n)} stalled streams`, 'while the streams are dropped: the server\'s own event-loop delay (bench/loop-monitor.mjs); the worst round trip of `GET /healthz` and of a publish (its fan-out to N + 1 streams too) from a client process on the other core', '< 100 ms (at 10 000)', ...data.map(cell)])
  }
  return rows
}

/** Case 1's part of a label's block. */
export function stallReport(o, res) {
  const out = []
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
  return out
}
