// Case 3 of bench/hostile.mjs, the reconnect storm:
//   node bench/hostile.mjs --cases 3 [--storm 10000] [--storm-bound 90] [--storm-drop server,client,resume]
//       [--storm-missed 5] [--storm-live-ms 500]
//
// --storm streams (opened 256 at a time) get 20 events; then, for each
// --storm-drop: `server`, `DELETE /clients` (admin) closes them all at once and the reconnects
// start when every stream has seen its end; `client`, this side closes every socket in the
// same turn as the reconnects (a network blip, a killed client process: the server meets the
// closes and the new connections together while it still holds the old streams).
// --storm-missed events are published while they are away; all reconnect in one loop, from
// 127.0.0.1 without bind() (10 000 bind() calls would take this process seconds of system
// time and spread the storm out), each with `Last-Event-ID` = the last id it got, while an
// event is published every --storm-live-ms; a connection closed before `ready` retries after
// 1 s (as EventSource would). Reported: `ready` within 10 s and within --storm-bound s of the
// loop's start, p50 / p99 / max time to `ready` (streams never ready count as beyond the
// bound), whether each stream ended with exactly the published ids (no gap, no duplicate, in
// order), and the kernel's TcpExtListenOverflows / ListenDrops delta over the storm
// (/proc/net/netstat: the whole machine, so another program's overflows would count too).
// --storm-drop `resume`, issue 20's storm, is bench/hostile/resume.mjs; this case runs it too.

import { compareIds, fmt, Http, lastJsonLine, listenCounters, openStream, PER_SOURCE, PUBLISH_TOKEN, quantile, sleep, sourcesFor, tail, waitForPorts, alive } from '../lib.mjs'
import { healthProbe, resumeFigures, resumeNote } from './resume.mjs'
import { busyNote, loopDelays, mib, sampler, secs, startHelper, startServer, STORM_GOAL_MS, SUB_TOKEN } from './server.mjs'

const STORM_BEFORE = 20 // events every stream gets before the drop

export const DROP_NAMES = {
  server: 'server drops all (`DELETE /clients`)',
  client: 'clients drop all (closed from their side)',
  resume: 'all resume mid-history while events are published',
}

// ---------------------------------------------------------------------------------------------
// Helper: the reconnect storm, start to finish; prints one JSON line.

export async function stormHelper(cfg) {
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

// ---------------------------------------------------------------------------------------------
// The case (both storms).

export async function caseStorm(o, drop, notes) {
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
    if (drop === 'resume') Object.assign(r, resumeFigures(r, probes, loopDelays(server.loopLog)))
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
// Its part of the report.

/** The summary table's rows of case 3, one per drop, a cell per label. */
export function stormSummaryRows(data) {
  const rows = []
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
  return rows
}

/** Case 3's part of a label's block. */
export function stormReport(o, res) {
  const out = []
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
      more.push(resumeNote(s))
      continue
    }
    more.push(
      `- ${s.drop} drop: ${fmt(s.published)} events published in all (each stream should end with every one, in order: "exact"); ${fmt(s.initialReady)} of ${fmt(s.n)} streams open before the storm; \`DELETE /clients\`: ${s.deleteStatus} \`${s.deleteBody}\`; the ${fmt(s.n)} connect() calls took ${fmt(s.fireLoopMs)} ms of the client process; closes before \`ready\`: ${JSON.stringify(s.reasons)}; statuses: ${JSON.stringify(s.statuses)}; server open files at most ${fmt(s.fdsPeak)}.`,
    )
  }
  out.push('')
  out.push(...more)
  out.push('')
  return out
}
