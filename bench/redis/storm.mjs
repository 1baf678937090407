// Part 3 of bench/redis.mjs, the storm: a node killed under 10 000 streams, which move to the other.
//   node bench/redis.mjs --parts storm [--storm 10000] [--rounds 3] [--quick]
//
// 10 000 streams on node A (raw node:net clients in one child process of this script,
// from source addresses 127.x.y.z of this run, one per 1 000), events published through
// node B at a steady 5/s (one keep-alive connection, one at a time); once every stream has
// the latest, `kill -9` node A; each client reconnects to node B the moment its socket closes,
// from 127.0.0.1 without bind(), with `Last-Event-ID` = the last id it got (a connection
// closed before `ready` retries after 1 s). Times are from the kill: every stream `ready`
// on B, and "back": every stream has every event published before its `ready` came
// (its replay). Publishing goes on for 1 s more, then stops; every stream must end with
// exactly the ids B acknowledged, in order (no gap, no duplicate, no stranger), counted per
// stream, and none may get `event: reset`. Node B's RSS: VmRSS before the kill, sampled
// every 50 ms (peak), and VmHWM at the end; B's CPU from the kill to "back"; the machine's
// TcpExtListenOverflows delta (/proc/net/netstat; another program's would count too).
// Internal: `node bench/redis.mjs --helper storm JSON` is the storm's client process (stormHelper).

import { alive, compareIds, fmt, Http, lastJsonLine, listenCounters, median, openStream, PER_SOURCE, PUBLISH_TOKEN, quantile, sleep, sourcesFor, startProcess, tail, BENCH, waitForPorts } from '../lib.mjs'
import * as path from 'node:path'
import { busyNote, cpuOf, hwmBytes, mib, nodeStats, rss, startSetup, stopSetup, TWO } from './cluster.mjs'

const ENTRY = path.join(BENCH, 'redis.mjs') // its --helper storm mode is the storm's clients

export async function stormPart(o, notes) {
  const out = []
  for (let round = 1; round <= o.rounds; round++) {
    const what = `storm, round ${round}`
    try {
      const r = await stormRound(o, round, notes)
      out.push(r)
      process.stderr.write(
        `${what}: ${r.initialReady}/${r.n} on A; kill → all ready ${fmt(r.readyMax)} ms, all back ${fmt(r.backMax)} ms (p50 ${fmt(r.backP50)}, p99 ${fmt(r.backP99)}), not back ${r.notBack}; exact ${r.exact}/${r.n}, gaps ${r.withGap} (${r.missing} ids), dups ${r.withDup} (${r.dups}), order ${r.outOfOrder}, extra ${r.extra}, resets ${r.resets}; retries ${r.retries} ${JSON.stringify(r.statuses)}; overflows ${r.listenOverflows}; B RSS ${mib(r.rssBefore)} → ${mib(r.rssPeak)} (HWM ${mib(r.hwmEnd)}) MiB; missed/stream p50 ${r.missedP50} max ${r.missedMax}\n`,
      )
      if (r.notBack > 0 || r.exact < r.n) notes.push(`${what}: ${r.notBack} streams not back within ${o.sizes.stormBoundS} s; ${r.n - r.exact} of ${r.n} streams not exact (gaps ${r.withGap}, duplicates ${r.withDup}, out of order ${r.outOfOrder}, strangers ${r.extra})`)
      if (r.resets > 0) notes.push(`${what}: ${r.resets} streams got \`event: reset\``)
    } catch (err) {
      out.push({ round, error: err.message.split('\n')[0] })
      notes.push(`${what}: ${err.message.split('\n')[0]}`)
      process.stderr.write(`${what}: ERROR ${err.message}\n`)
    }
  }
  return out
}

async function stormRound(o, round, notes) {
  const S = o.sizes
  const waited = await waitForPorts(S.storm)
  if (waited >= 1) notes.push(`storm, round ${round}: waited ${fmt(waited)} s for ${fmt(S.storm)} free ports on 127.0.0.1 first`)
  const setup = await startSetup(o, TWO)
  let helper = null
  try {
    const [A, B] = setup.nodes
    await busyNote(`storm, round ${round}`, notes)
    const boundMs = S.stormBoundS * 1000
    const cfg = { portA: A.port, portB: B.port, n: S.storm, sources: sourcesFor(S.storm), rate: S.stormRate, boundMs }
    ;({ proc: helper } = await startProcess('storm clients', process.execPath, [ENTRY, '--helper', 'storm', JSON.stringify(cfg)], {
      ready: (out) => out.includes('"kill-me"') || undefined,
      timeoutMs: 180_000,
    }))
    // Every stream on A has the latest event, and events go on at S.stormRate through B.
    const before = { rss: rss(B.pid), hwm: hwmBytes(B.pid), cpu: cpuOf(B.pid), redisCpu: cpuOf(setup.redis.pid), stats: await nodeStats(B.port) }
    const rssSamples = []
    const sampler = setInterval(() => rssSamples.push(rss(B.pid)), 50)
    const killAt = Date.now()
    process.kill(A.pid, 'SIGKILL')
    let atBack = null
    const backWatch = (async () => {
      while (atBack === null && alive(helper)) {
        if (helper.stdout.includes('"back"')) atBack = { at: Date.now(), cpu: cpuOf(B.pid), redisCpu: cpuOf(setup.redis.pid), rss: rss(B.pid) }
        else await sleep(10)
      }
    })()
    const limitMs = boundMs + 60_000
    const outcome = await Promise.race([helper.exited, sleep(limitMs).then(() => 'timeout')])
    clearInterval(sampler)
    await backWatch
    await Promise.race([helper.closed, sleep(2000)])
    if (outcome === 'timeout') throw new Error(`the storm clients did not finish within ${limitMs / 1000} s after the kill: ${tail(helper.stderr, 300)}`)
    const h = lastJsonLine(helper.stdout)
    if (!h || h.phase !== 'result') throw new Error(`the storm clients gave no result (exit ${outcome.signal ?? outcome.code}, ${helper.stdout.length} characters out): ${tail(helper.stderr, 300)} ${tail(helper.stdout, 300)}`)
    process.stderr.write(tail(helper.stderr, 600) + '\n')
    const rel = (xs) => xs.map((t) => (t === null ? Infinity : t - killAt))
    const ready = rel(h.readyAt)
    const back = rel(h.backAt)
    const fin = (x) => (Number.isFinite(x) ? x : null)
    const r = {
      round,
      n: h.n,
      initialReady: h.initialReady,
      initialFailed: h.initialFailed,
      aKilled: (await Promise.race([A.proc.exited, sleep(2000).then(() => null)]))?.signal ?? 'not seen',
      firstCloseMs: h.firstCloseAt - killAt,
      lastCloseMs: h.lastCloseAt - killAt,
      closed: h.closed,
      readyP50: fin(quantile(ready, 0.5)),
      readyP99: fin(quantile(ready, 0.99)),
      readyMax: fin(quantile(ready, 1)),
      backP50: fin(quantile(back, 0.5)),
      backP99: fin(quantile(back, 0.99)),
      backMax: fin(quantile(back, 1)),
      notReady: ready.filter((x) => !Number.isFinite(x)).length,
      notBack: back.filter((x) => !Number.isFinite(x)).length,
      ...Object.fromEntries(['published', 'publishedBeforeKill', 'publishErrors', 'exact', 'withGap', 'missing', 'withDup', 'dups', 'outOfOrder', 'extra', 'resets', 'retries', 'closedAfterReady', 'statuses', 'reasons', 'missedP50', 'missedMax', 'helperCpuS', 'statsAfter', 'fireSpanMs'].map((k) => [k, h[k]])),
      listenOverflows: h.listenOverflows,
      listenDrops: h.listenDrops,
      rssBefore: before.rss,
      rssPeak: Math.max(before.rss, ...rssSamples.filter(Number.isFinite)),
      rssAtBack: atBack?.rss ?? NaN,
      hwmBefore: before.hwm,
      hwmEnd: hwmBytes(B.pid),
      bCpuS: atBack ? atBack.cpu - before.cpu : NaN,
      redisCpuS: atBack ? atBack.redisCpu - before.redisCpu : NaN,
      clientsBefore: before.stats?.nodes?.[0]?.clients ?? NaN,
      bAlive: alive(B.proc),
    }
    if (!r.bAlive) notes.push(`storm, round ${round}: node B exited: ${tail(B.proc.stderr, 200)}`)
    return r
  } finally {
    await helper?.stop(1000)
    await stopSetup(setup)
  }
}

// ---------------------------------------------------------------------------------------------
// The storm's clients (a child process: `--helper storm JSON`).

/**
 * The storm, on the clients' side: open n streams on A; publish through B at `rate`; say
 * `kill-me` once every stream has the latest event; reconnect each to B as its socket closes;
 * say `back` once every stream has its replay; then check every stream's ids; one JSON line.
 */
export async function stormHelper(cfg) {
  const { portA, portB, n, sources, rate, boundMs, inFlight = 256 } = cfg
  const auth = { Authorization: `Bearer ${PUBLISH_TOKEN}` }
  const log = (s) => process.stderr.write(`storm: ${s}\n`)
  // A write to a pipe may still be under way when it returns: the process exits once the last is out.
  const say = (o, then) => process.stdout.write(JSON.stringify(o) + '\n', then)
  const cpu0 = process.cpuUsage()
  const streams = Array.from({ length: n }, () => ({ ids: [], last: null, node: 'A', ready: false, readyAt: null, goal: null, backAt: null, lastEventId: null, closedAt: null, retries: 0, resets: 0, closedAfterReady: 0, stop: false, socket: null }))
  const bump = (o, k) => (o[k] = (o[k] ?? 0) + 1)
  const statuses = {}
  const reasons = {}
  const published = [] // ids B acknowledged, in order
  let publishErrors = 0
  let firstPublishError = null
  const api = new Http(portB)

  // Phase 1: every stream on A, at most inFlight connecting at a time.
  const t1 = Date.now()
  let initialReady = 0
  let initialFailed = 0
  let stormStarted = false
  let firstCloseAt = null
  let lastCloseAt = null
  let closed = 0
  let fireFirst = null
  let fireLast = null
  const onEvent = (st) => (ev) => {
    if (ev.event === 'ready') {
      st.ready = true
      if (st.node === 'B' && st.readyAt === null) {
        st.readyAt = Date.now()
        // Its replay: every event B acknowledged until now (B answers a publish once it delivered it).
        st.goal = published.at(-1) ?? null
        if (st.goal === null || (st.lastEventId !== null && Number(st.lastEventId) >= Number(st.goal))) st.backAt = st.readyAt
      }
      return
    }
    if (ev.event === 'reset') {
      st.resets++
      return
    }
    if (ev.id !== null && ev.event === 'message') {
      st.ids.push(ev.id)
      st.last = ev.id
      // At or past its goal (a gap before it is counted by the check at the end).
      if (st.backAt === null && st.goal !== null && Number(ev.id) >= Number(st.goal)) st.backAt = Date.now()
    }
  }
  await new Promise((resolve) => {
    let next = 0
    const one = () => {
      if (next >= n) return
      const i = next++
      const st = streams[i]
      let settled = false
      const settle = (ok) => {
        if (settled) return
        settled = true
        ok ? initialReady++ : initialFailed++
        if (initialReady + initialFailed === n) resolve()
        else one()
      }
      st.socket = openStream({
        port: portA,
        path: `/events/${PUBLISH_TOKEN}`,
        localAddress: sources[Math.floor(i / PER_SOURCE) % sources.length],
        onEvent: (ev) => (onEvent(st)(ev), ev.event === 'ready' && settle(true)),
        onClose: (err) => {
          if (!stormStarted) {
            st.failedA = err ?? 'closed'
            return settle(false)
          }
          onDrop(st)
        },
      })
    }
    for (let k = 0; k < Math.min(n, inFlight); k++) one()
    setTimeout(resolve, 120_000)
  })
  log(`${initialReady} of ${n} streams open on A in ${fmt((Date.now() - t1) / 1000, 1)} s (${initialFailed} failed)`)
  if (initialReady === 0) throw new Error('no stream opened on node A')

  // Phase 2: publishing through B, one at a time, at `rate`.
  let publishing = true
  let busy = false
  let k = 0
  const publishOne = async () => {
    busy = true
    try {
      const r = await api.request('POST', '/publish', { headers: auth, body: `storm ${++k}` })
      if (r.status !== 200) throw new Error(`publish: ${r.status} ${r.body}`)
      published.push(String(JSON.parse(r.body).id))
    } catch (e) {
      publishErrors++
      firstPublishError ??= e.message
    } finally {
      busy = false
    }
  }
  const pubTimer = setInterval(() => publishing && !busy && void publishOne(), 1000 / rate)
  // Every open stream has the latest event: they are live on A.
  const t2 = Date.now()
  await sleep(2000)
  while (Date.now() - t2 < 20_000) {
    const latest = published.at(-1)
    if (latest !== undefined && streams.every((st) => !st.ready || st.last === latest || Number(st.last) > Number(latest))) break
    await sleep(20)
  }
  const publishedBeforeKill = published.length
  // Phase 3: the parent kills A; each stream reconnects to B the moment it sees its socket close.
  stormStarted = true
  const counters0 = listenCounters()
  const connectB = (st) => {
    st.node = 'B'
    st.ready = false
    const now = performance.now()
    fireFirst ??= now
    fireLast = now
    st.socket = openStream({
      port: portB,
      path: `/events/${PUBLISH_TOKEN}`,
      headers: st.lastEventId === null ? {} : { 'Last-Event-ID': st.lastEventId },
      onStatus: (status) => bump(statuses, status),
      onEvent: onEvent(st),
      onClose: (err) => {
        if (st.stop) return
        if (st.ready) {
          st.closedAfterReady++
          return
        }
        bump(reasons, err ?? 'closed')
        if (Date.now() - firstCloseAt < boundMs) {
          st.retries++
          setTimeout(() => !st.stop && connectB(st), 1000)
        }
      },
    })
  }
  function onDrop(st) {
    if (st.node !== 'A' || st.stop) return
    const now = Date.now()
    firstCloseAt ??= now
    lastCloseAt = now
    closed++
    st.closedAt = now
    st.lastEventId = st.last
    connectB(st)
  }
  say({ phase: 'kill-me', t: Date.now() })
  // Until every stream is back with its replay, or the bound.
  const tracked = streams.filter((st) => st.failedA === undefined) // the streams that opened on A
  const t3 = Date.now()
  while (Date.now() - t3 < boundMs + 5000) {
    if (firstCloseAt !== null && tracked.every((st) => st.backAt !== null)) break
    if (firstCloseAt !== null && Date.now() - firstCloseAt > boundMs) break
    await sleep(10)
  }
  say({ phase: 'back', t: Date.now() })
  const counters1 = listenCounters()
  const statsAfter = await nodeStats(portB)
  // One more second of publishing, then the last event must reach every stream.
  await sleep(1000)
  publishing = false
  clearInterval(pubTimer)
  while (busy) await sleep(10)
  const lastId = published.at(-1)
  const t4 = Date.now()
  while (streams.some((st) => st.ready && st.node === 'B' && st.last !== lastId) && Date.now() - t4 < 15_000) await sleep(50)
  // B closes them (DELETE /clients), so that the TIME_WAITs are on its side, not on 127.0.0.1's client ports.
  for (const st of streams) st.stop = true
  await api.request('DELETE', '/clients', { headers: auth }).catch(() => {})
  const t5 = Date.now()
  while (streams.some((st) => st.socket && !st.socket.destroyed && !st.socket.readableEnded) && Date.now() - t5 < 10_000) await sleep(50)
  for (const st of streams) st.socket?.destroy()
  api.close()

  // Verdicts: each stream's ids against the ids B acknowledged (every stream was open before the first).
  const pos = new Map(published.map((id, i) => [id, i]))
  let exact = 0
  let withGap = 0
  let withDup = 0
  let outOfOrder = 0
  let extra = 0
  let missing = 0
  let dups = 0
  const missed = []
  for (const st of streams) {
    if (st.failedA !== undefined && st.closedAt === null) continue
    const { gap, dup, order, ...n } = compareIds(st.ids, published, pos)
    dups += n.dups
    extra += n.extra
    missing += n.missing
    if (!gap && !dup && !order && st.ids.length === published.length) exact++
    if (gap) withGap++
    if (dup) withDup++
    if (order) outOfOrder++
    // Its replay: events it got on B up to its goal (those published while it was away).
    if (st.lastEventId !== null && st.goal !== null) missed.push(Math.max(0, (pos.get(st.goal) ?? -1) - (pos.get(st.lastEventId) ?? -1)))
  }
  const cpu = process.cpuUsage(cpu0)
  const sum = (f) => streams.reduce((a, st) => a + f(st), 0)
  say({
    phase: 'result',
    n,
    initialReady,
    initialFailed,
    published: published.length,
    publishedBeforeKill,
    publishErrors,
    firstPublishError,
    firstCloseAt,
    lastCloseAt,
    closed,
    fireSpanMs: fireFirst === null ? null : Math.round(fireLast - fireFirst),
    readyAt: streams.map((st) => st.readyAt),
    backAt: streams.map((st) => st.backAt),
    exact,
    withGap,
    missing,
    withDup,
    dups,
    outOfOrder,
    extra,
    resets: sum((st) => (st.resets > 0 ? 1 : 0)),
    retries: sum((st) => st.retries),
    closedAfterReady: sum((st) => st.closedAfterReady),
    statuses,
    reasons,
    missedP50: quantile(missed, 0.5),
    missedMax: quantile(missed, 1),
    listenOverflows: counters1.overflows - counters0.overflows,
    listenDrops: counters1.drops - counters0.drops,
    statsAfter: statsAfter && { clients: statsAfter.nodes?.[0]?.clients ?? statsAfter.clients, published: statsAfter.published },
    helperCpuS: (cpu.user + cpu.system) / 1e6,
  }, () => process.exit(0))
}

// ---------------------------------------------------------------------------------------------
// Its part of the report.

/** Part 3's table in a label's block. */
export function stormReport(o, res) {
  const S = o.sizes
  const out = []
  out.push(
    `**3. Storm.** ${fmt(S.storm)} streams on node A (raw clients in one process); events through node B at ${S.stormRate}/s; \`kill -9\` A once every stream has the latest; each client reconnects to B as soon as its socket closes, with \`Last-Event-ID\`. Times in ms from the kill: "ready" = \`ready\` on B; "back" = has every event B acknowledged before its \`ready\` came (its replay). Exact = the stream's ids over the whole run (on A, then on B) are exactly B's acknowledged ids, in order. B's RSS in MiB: before the kill → sampled peak (VmHWM at the end). B CPU = node B's CPU from the kill to all back.`,
  )
  out.push('')
  out.push('| round | open on A | A\'s sockets closed (ms) | ready p50 / p99 / max | back p50 / p99 / max | not back | replay per stream p50 / max | exact | gaps | dups | order | resets | retries (statuses) | listen overflows | B RSS | B CPU s | Redis CPU s | clients CPU s | events |')
  out.push('|---:|---:|---|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|')
  for (const r of res.storm) {
    if (r.error) {
      out.push(`| ${r.round} | ERROR ${r.error} ||||||||||||||||||`)
      continue
    }
    out.push(
      `| ${r.round} | ${fmt(r.initialReady)}/${fmt(r.n)} | ${fmt(r.firstCloseMs)}–${fmt(r.lastCloseMs)} (${fmt(r.closed)}) | ${fmt(r.readyP50)} / ${fmt(r.readyP99)} / ${fmt(r.readyMax)} | ${fmt(r.backP50)} / ${fmt(r.backP99)} / ${fmt(r.backMax)} | ${fmt(r.notBack)} | ${fmt(r.missedP50)} / ${fmt(r.missedMax)} | ${fmt(r.exact)} | ${fmt(r.withGap)} | ${fmt(r.withDup)} | ${fmt(r.outOfOrder)} | ${fmt(r.resets)} | ${fmt(r.retries)} ${JSON.stringify(r.statuses).replaceAll('"', '')} | ${fmt(r.listenOverflows)} | ${mib(r.rssBefore)} → ${mib(r.rssPeak)} (${mib(r.hwmEnd)}) | ${fmt(r.bCpuS, 2)} | ${fmt(r.redisCpuS, 2)} | ${fmt(r.helperCpuS, 1)} | ${fmt(r.published)} |`,
    )
  }
  const st = res.storm.filter((r) => !r.error)
  if (st.length > 1) {
    const m = (f, d = 0) => fmt(median(st.map(f)), d)
    out.push(`| median | | | ${m((r) => r.readyP50)} / ${m((r) => r.readyP99)} / ${m((r) => r.readyMax)} | ${m((r) => r.backP50)} / ${m((r) => r.backP99)} / ${m((r) => r.backMax)} | ${m((r) => r.notBack)} | | ${m((r) => r.exact)} | | | | | | | ${mib(median(st.map((r) => r.rssBefore)))} → ${mib(median(st.map((r) => r.rssPeak)))} (${mib(median(st.map((r) => r.hwmEnd)))}) | ${m((r) => r.bCpuS, 2)} | ${m((r) => r.redisCpuS, 2)} | | |`)
  }
  out.push('')
  return out
}

/** Part 3's sentence of the summary. */
export function stormSummary(res) {
  const lines = []
  const st = res.storm.filter((r) => !r.error)
  if (st.length) {
    lines.push(
      `Storm: ${st.map((r) => `${fmt(r.n - r.notBack)}/${fmt(r.n)} back in ${fmt(r.backMax)} ms, ${fmt(r.exact)} exact`).join('; ')} (round by round); node B's peak RSS ${st.map((r) => mib(Math.max(r.rssPeak, r.hwmEnd))).join(', ')} MiB.`,
    )
  }
  return lines
}
