// One run of parts 1 and 2 of bench/redis.mjs (cost, latency): two load tools at once, a holding
// one on the last node, then a publishing one on the first; the window measured between them; the
// medians over the rounds of such runs.
//
// The load tool is the build's own `rawsse bench`, which targets one URL. So every run of parts 1
// and 2 uses two of them, each with half the streams: a holding one (no --publish: it opens and
// holds its streams, counting and timing the events that reach them) started first, then the
// publishing one, which publishes to its own server and runs the closed (--window W) or open
// (--rate R) loop over its own streams. With two nodes, the publishing tool's streams are on node
// A and it publishes to A; the holding tool's are on node B, reached only through Redis. With one
// process both tools are on it: the same tools, the same split, only the server differs. The
// holding tool is stopped with SIGINT (it then reports) once it has every event the other
// published, or 8 s after the publisher ended.

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { alive, fmt, lastJsonLine, median, PUBLISH_TOKEN, sleep, spread, startProcess, tail } from '../lib.mjs'
import { attempt, cpuSample, nodeStats } from './cluster.mjs'

export const WARMUP_S = 1
export const BODY = '{seq} {ts}' // rawsse bench's default: the holding tool (no --publish) reads it
const AUTH = `Authorization: Bearer ${PUBLISH_TOKEN}`
const HOLD_AFTER_MS = 8000 // the holding tool gets this long after the publisher's end to receive the rest

const readLines = (file) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(0, -1).map((l) => JSON.parse(l)) : [])

/**
 * Runs the two load tools against `setup` (publishing on nodes[0], holding on nodes.at(-1)).
 * Resolves to { pub, hold, window, spreadOver, error }: both tools' JSON reports and the window's figures.
 */
export async function pairRun(o, setup, { perTool, window, rate, duration }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-redis-bench-'))
  const holdOut = path.join(dir, 'hold.jsonl')
  const pubOut = path.join(dir, 'pub.jsonl')
  const pubNode = setup.nodes[0]
  const holdNode = setup.nodes.at(-1)
  const connectS = perTool / 2000
  // Its warm-up ends after the publisher's: it starts first, then waits for that one to connect.
  const holdWarmup = Math.ceil(connectS + 3)
  // No --body without --publish (the tool refuses it): it reads the default template, which is BODY.
  const holdArgs = [o.cli, 'bench', holdNode.stream, '--streams', String(perTool), '--duration', '3600', '--warmup', String(holdWarmup), '--out', holdOut, '--json']
  const pubArgs = [o.cli, 'bench', pubNode.stream, '--streams', String(perTool), '--body', BODY, '--publish', pubNode.publish, '--publish-header', AUTH]
  pubArgs.push(...(rate !== undefined ? ['--rate', String(rate)] : ['--window', String(window)]), '--duration', String(duration), '--warmup', String(WARMUP_S), '--out', pubOut, '--json')
  let hold
  let pub
  const samples = [] // the publisher's lines, each with the CPU read when it appeared
  const holdSeen = [] // the holding tool's lines: when each appeared and the deliveries so far
  let holdCum = 0
  let holdRead = 0
  const readHold = () => {
    const lines = readLines(holdOut)
    for (; holdRead < lines.length; holdRead++) {
      holdCum += lines[holdRead].deliveries
      holdSeen.push({ at: Date.now(), cum: holdCum, line: lines[holdRead] })
    }
  }
  try {
    ;({ proc: hold } = await startProcess('rawsse bench (holding)', process.execPath, holdArgs, { ready: () => true }))
    const connectBound = Date.now() + (connectS + 30) * 1000
    for (;;) {
      readHold()
      if (holdSeen.some((s) => s.line.phase === 'holding')) break
      if (!alive(hold)) return { error: `the holding load tool exited while connecting: ${tail(hold.stderr || hold.stdout, 300)}` }
      if (Date.now() > connectBound) return { error: `the holding load tool was still connecting after ${fmt(connectS + 30)} s: ${JSON.stringify(holdSeen.at(-1)?.line)}` }
      await sleep(20)
    }
    const holdOpen = holdSeen.at(-1).line.open
    ;({ proc: pub } = await startProcess('rawsse bench (publishing)', process.execPath, pubArgs, { ready: () => true }))
    const toolPids = [pub.pid, hold.pid]
    const boundS = connectS + duration + 60
    let outcome = null
    void Promise.race([pub.exited, sleep(boundS * 1000).then(() => 'timeout')]).then((x) => (outcome = x))
    let seen = 0
    let spreadOver = null
    for (let finished = false; !finished; ) {
      finished = outcome !== null // one more read once it has ended: its last lines
      const lines = readLines(pubOut).slice(0) // the last piece (unfinished) is never parsed: readLines drops it
      for (; seen < lines.length; seen++) {
        samples.push({ line: lines[seen], sample: cpuSample(setup, toolPids) })
        if (lines[seen].phase === 'publishing' && spreadOver === null) {
          spreadOver = []
          for (const n of setup.nodes) {
            const st = await nodeStats(n.port)
            spreadOver.push(st ? (st.nodes?.[0]?.clients ?? st.clients) : NaN) // a node's own entry comes first
          }
        }
      }
      readHold()
      if (!finished) await sleep(20)
    }
    await Promise.race([pub.closed, sleep(2000)])
    if (outcome === 'timeout') return { error: `the publishing load tool did not finish within ${fmt(boundS)} s; its last line: ${JSON.stringify(samples.at(-1)?.line)}` }
    const pubJson = lastJsonLine(pub.stdout)
    if (!pubJson) return { error: `the publishing load tool exited ${outcome.signal ?? outcome.code} without a report: ${tail(pub.stderr || pub.stdout, 300)}` }
    // The holding half: wait (its lines come once a second) until it has every event, then SIGINT: it reports.
    const expected = pubJson.published * holdOpen
    const t0 = Date.now()
    while (holdCum < expected && Date.now() - t0 < HOLD_AFTER_MS && alive(hold)) {
      readHold()
      await sleep(50)
    }
    await sleep(100)
    readHold()
    attempt(() => process.kill(hold.pid, 'SIGINT'))
    await Promise.race([hold.closed, sleep(10_000)])
    const holdJson = lastJsonLine(hold.stdout)
    if (!holdJson) return { error: `the holding load tool gave no report: ${tail(hold.stderr || hold.stdout, 300)}`, pub: pubJson }
    holdJson.lost = Math.max(0, pubJson.published * holdJson.connected - holdJson.received)
    return { pub: pubJson, hold: holdJson, window: windowOf(samples, holdSeen, setup.redisIdleNsPerS ?? 0), spreadOver, holdStderr: tail(hold.stderr, 300), pubStderr: tail(pub.stderr, 300) }
  } catch (err) {
    return { error: err.message.split('\n')[0] }
  } finally {
    await pub?.stop(1000)
    await hold?.stop(1000)
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The holding tool's deliveries so far at instant `t`, interpolated between its lines. */
function holdAt(holdSeen, t) {
  for (let i = 1; i < holdSeen.length; i++) {
    const p = holdSeen[i - 1]
    const q = holdSeen[i]
    if (t >= p.at && t <= q.at) return q.at === p.at ? q.cum : p.cum + ((q.cum - p.cum) * (t - p.at)) / (q.at - p.at)
  }
  return NaN
}

/**
 * The measured window: from the publisher's line that ends its warm-up (the first publishing line
 * covers part of a second, then WARMUP_S more) to its last publishing line. CPU, deliveries and
 * events published between the two readings; null when publishing was too short to have one.
 */
function windowOf(samples, holdSeen, redisIdleNsPerS) {
  const pub = samples.filter((s) => s.line.phase === 'publishing')
  const a = pub[Math.ceil(WARMUP_S)]
  const b = pub.at(-1)
  if (!a || b === a) return null
  const pubDeliveries = pub.slice(pub.indexOf(a) + 1).reduce((n, s) => n + s.line.deliveries, 0)
  const holdDeliveries = holdAt(holdSeen, b.sample.at) - holdAt(holdSeen, a.sample.at)
  const deliveries = pubDeliveries + holdDeliveries
  const seconds = (b.sample.at - a.sample.at) / 1000
  const events = b.line.published - a.line.published
  const d = (k) => b.sample[k] - a.sample[k]
  return {
    seconds, events, eventsPerSecond: events / seconds,
    deliveries, deliveriesPerSecond: deliveries / seconds, pubPerSecond: pubDeliveries / seconds, holdPerSecond: holdDeliveries / seconds,
    usPerDelivery: (d('nodes') * 1e6) / deliveries,
    allUsPerDelivery: ((d('nodes') + d('redis')) * 1e6) / deliveries,
    redisUsPerEvent: (d('redis') * 1e6) / events,
    redisNsUsPerEvent: d('redisNs') / 1e3 / events,
    redisAboveIdleUsPerEvent: (d('redisNs') - redisIdleNsPerS * seconds) / 1e3 / events,
    redisIdlePct: redisIdleNsPerS / 1e7,
    deliveriesPerWrite: deliveries / d('writes'),
    serverPct: (100 * d('nodes')) / seconds,
    perNodePct: b.sample.perNode.map((x, i) => (100 * (x - a.sample.perNode[i])) / seconds),
    redisPct: (100 * d('redis')) / seconds,
    redisNsPct: d('redisNs') / 1e7 / seconds,
    toolsPct: (100 * d('tools')) / seconds,
  }
}

// ---------------------------------------------------------------------------------------------
// Medians over the rounds: of the runs with a window (CPU, deliveries), and of those with both
// tools' reports (latency, losses).

export const ok = (runs) => runs.filter((r) => !r.error && r.window)
export const med = (runs, f) => median(ok(runs).map(f))
export const spr = (runs, f, d = 0) => spread(ok(runs).map(f), d)
export const good = (runs) => runs.filter((r) => !r.error && r.pub && r.hold)
export const medL = (runs, f) => median(good(runs).map(f))
export const sprL = (runs, f, d = 2) => spread(good(runs).map(f), d)
