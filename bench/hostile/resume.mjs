// Case 3 of bench/hostile.mjs, --storm-drop resume (issue 20's storm): every stream resumes
// mid-history at once while events are published.
//   node bench/hostile.mjs --cases 3 --storm-drop resume [--storm 10000] [--storm-history 1000]
//       [--storm-resume-at 500] [--storm-live-count 200] [--storm-resume-live-ms 50] [--storm-sources 0]
//
// --storm-history numbered events (~10 bytes of data
// each) are published first; then all --storm streams connect in one loop with
// `Last-Event-ID` = the --storm-resume-at-th of them, while --storm-live-count more are
// published one at a time, --storm-resume-live-ms apart (--storm-sources K > 0: the streams
// connect from K source addresses of this run, round robin). Each should end with exactly the
// events after its id. Reported besides: `GET /healthz` every 20 ms from this process
// (p50 / p99 / max while the storm lasts), the live publishes' answer times, and the longest
// block of the server's own event loop (bench/loop-monitor.mjs).

import { compareIds, fmt, Http, listenCounters, openStream, PUBLISH_TOKEN, quantile, sleep } from '../lib.mjs'
import { STORM_GOAL_MS, SUB_TOKEN, msOrS, secs } from './server.mjs'

// Helper: the resume storm of case 3 (issue 20): `history` numbered events are published first;
// then all n streams connect in one loop, each with Last-Event-ID = the `resumeAt`-th of them,
// while `liveCount` more are published one at a time, `livePeriodMs` apart. Every stream should
// end with exactly the events after its Last-Event-ID. Prints one JSON line.

export async function resumeStormHelper(cfg) {
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

/** GET /healthz every 20 ms on one keep-alive connection until stop(): [epoch ms, round trip ms]. */
export function healthProbe(port) {
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

/**
 * What the case adds to the helper's figures while the storm lasted: the `GET /healthz` probes
 * (healthProbe) and the server's longest event-loop block (bench/loop-monitor.mjs's lines).
 */
export function resumeFigures(r, probes, delays) {
  const f = {}
  const during = (t) => t >= r.fireEpoch && t <= r.endEpoch
  const rtts = probes.filter(([t]) => during(t)).map(([, ms]) => ms)
  f.healthProbes = rtts.length
  f.healthP50 = quantile(rtts, 0.5)
  f.healthP99 = quantile(rtts, 0.99)
  f.healthMax = quantile(rtts, 1)
  // The loop monitor's lines cover the 100 ms before their time stamp.
  f.loopMaxMs = Math.max(0, ...delays.filter(([t]) => t >= r.fireEpoch && t - 100 <= r.endEpoch).map(([, ms]) => ms))
  return f
}

/** The resume storm's line under the case 3 table. */
export function resumeNote(s) {
  return `- resume: ${fmt(s.history)} events published first; every stream connects with \`Last-Event-ID\` = the ${fmt(s.resumeAt)}th, while ${fmt(s.liveCount)} more are published one at a time ${s.livePeriodMs} ms apart, so each should get exactly ${fmt(s.expected)}; \`reset\`s: ${fmt(s.resets)}; the ${fmt(s.n)} connect() calls took ${fmt(s.fireLoopMs)} ms of the client process; all delivered ${secs(s.deliveredMs, 2)} after the first connect. While the storm lasted: \`GET /healthz\` every 20 ms from another process, p50 / p99 / max ${msOrS(s.healthP50)} / ${msOrS(s.healthP99)} / ${msOrS(s.healthMax)} (${fmt(s.healthProbes)} probes); the live publishes' answers p50 / p99 ${msOrS(s.publishP50)} / ${msOrS(s.publishP99)}; the server's event loop blocked at most ${msOrS(s.loopMaxMs)} (its own monitor, 10 ms resolution); closes before \`ready\`: ${JSON.stringify(s.reasons)}; statuses: ${JSON.stringify(s.statuses)}; server open files at most ${fmt(s.fdsPeak)}.`
}
