// Part 1 of bench/redis.mjs, the cost: server CPU per delivery, 2 nodes on Redis against one process.
//   node bench/redis.mjs --parts cost [--rounds 3] [--quick]
//
// N = 1 000 and 10 000 streams, closed loop W = 1 and W = 8, 8 s runs. CPU is
// utime+stime (/proc/PID/stat) of each server process (and children), of redis-server and
// of the load tools, read each time the publishing tool's `--out` writes its once-a-second
// line: a window of whole publishing seconds, the first (partial) second and 1 more left out.
// Deliveries in the window are the publishing tool's (its lines) plus the holding tool's (its
// lines' running total, interpolated to the same instants). Server CPU µs/delivery = both
// nodes' CPU (or the one process's) / deliveries; × 1 process = the cluster's ÷ the one
// process's at the same N and W (issue 13's target: ≤ 1.2×). Deliveries per write = deliveries
// / the nodes' write system calls (/proc/PID/io syscw): how many events a write carries. Redis
// µs/event = redis-server's CPU / events published in the window, from /proc/PID/stat and,
// finer (10 ms ticks are coarse against Redis's few % of a core), from the sum of
// /proc/PID/task/*/schedstat (ns); and that less its idle CPU, read over 3 s when each cluster
// starts (both nodes up, nothing published). Also: the holding half's delivery latency (how
// far node B, outside the closed loop, lags), lost and duplicated deliveries of both halves.

import { alive, fmt, median, ratio, tail, waitForPorts } from '../lib.mjs'
import { busyNote, ONE, REDIS_IDLE_MS, startSetup, stopSetup, TWO } from './cluster.mjs'
import { good, med, pairRun, spr, medL, WARMUP_S } from './pair.mjs'

export async function costPart(o, notes) {
  const S = o.sizes
  const out = []
  for (let round = 1; round <= o.rounds; round++) {
    const kinds = round % 2 ? [ONE, TWO] : [TWO, ONE]
    for (const n of S.costNs) {
      for (const kind of kinds) {
        await waitForPorts(n)
        let setup
        try {
          setup = await startSetup(o, kind)
        } catch (err) {
          notes.push(`cost, round ${round}, ${kind}, N = ${fmt(n)}: did not start: ${err.message.split('\n')[0]}`)
          continue
        }
        try {
          for (const w of S.windows) {
            const what = `cost, round ${round}, ${kind}, N = ${fmt(n)}, W = ${w}`
            await busyNote(what, notes)
            const r = { round, kind, n, w, ...(await pairRun(o, setup, { perTool: n / 2, window: w, duration: S.duration })) }
            out.push(r)
            const x = r.window
            process.stderr.write(
              `${what}: ${r.error ? `ERROR ${r.error}` : `${fmt(x?.deliveriesPerSecond)} deliveries/s (${fmt(x?.pubPerSecond)} + ${fmt(x?.holdPerSecond)}), ${fmt(x?.usPerDelivery, 2)} µs/delivery, nodes ${x?.perNodePct.map((p) => fmt(p)).join(' + ')} %, redis ${fmt(x?.redisPct)} % (${fmt(x?.redisUsPerEvent, 1)} µs/event; schedstat ${fmt(x?.redisNsUsPerEvent, 1)}, above idle ${fmt(x?.redisAboveIdleUsPerEvent, 1)}), ${fmt(x?.deliveriesPerWrite, 2)} deliveries/write, tools ${fmt(x?.toolsPct)} %, lost ${r.pub.lost}+${r.hold.lost}, dup ${r.pub.duplicates}+${r.hold.duplicates}, hold p99 ${r.hold.latencyMs.p99} ms, spread ${r.spreadOver?.join('/')}`}\n`,
            )
            if (r.error) notes.push(`${what}: ${r.error}`)
            else if (!x) notes.push(`${what}: publishing too short for a measured window`)
            if (r.pub && r.hold && (r.pub.lost || r.hold.lost || r.pub.duplicates || r.hold.duplicates || r.pub.connected + r.hold.connected < n))
              notes.push(`${what}: connected ${r.pub.connected}+${r.hold.connected}/${n}, lost ${r.pub.lost}+${r.hold.lost}, duplicates ${r.pub.duplicates}+${r.hold.duplicates} (publishing + holding half)`)
            for (const node of setup.nodes) if (!alive(node.proc)) notes.push(`${what}: ${node.name} exited: ${tail(node.proc.stderr, 200)}`)
            if (setup.nodes.some((node) => !alive(node.proc))) break
          }
        } finally {
          await stopSetup(setup)
        }
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Its part of the report.

/** Part 1's table in a label's block. */
export function costReport(o, res) {
  const S = o.sizes
  const out = []
  out.push(
    `**1. Cost.** Closed loop, ${S.duration} s runs, the window leaving out the first ${1 + WARMUP_S} s. CPU = utime+stime (/proc/PID/stat) over the window; server µs/delivery = both nodes' CPU (or the one process's) / deliveries; × 1 process = ÷ the one process's at the same N and W (target ≤ 1.2×); deliveries/write = deliveries / the nodes' write system calls (/proc/PID/io syscw: how many events one write to a stream carried, on average); + Redis = (nodes + redis-server) / deliveries; Redis µs/event = redis-server's CPU / events published in the window, from /proc/PID/stat (10 ms ticks: a window holds only 1–20 of them) and from /proc/PID/task/*/schedstat (the same CPU time in ns), and that less redis-server's idle CPU (measured over ${REDIS_IDLE_MS / 1000} s with both nodes up before the cluster's first run: their blocking reads, the once-a-second presence exchange, its own cron; ${fmt(median(res.cost.filter((r) => r.window).map((r) => r.window.redisIdlePct).filter((x) => x > 0)), 2)} % of a core, median). CPU % is of one core (200 % = both). Holding half p99 = delivery latency of the holding half (node B, or the same process), after its warm-up: with two nodes, how far B, outside the closed loop, lags.`,
  )
  out.push('')
  out.push('| N | W | server | deliveries/s | spread | of them the holding half | server CPU µs/delivery | spread | × 1 process | deliveries/write | nodes CPU % (A + B) | tools CPU % | events/s | + Redis µs/delivery | Redis CPU % | Redis µs/event | (schedstat) | above idle | holding half p99 ms | lost | dup | streams per node |')
  out.push('|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|')
  for (const n of S.costNs) {
    for (const w of S.windows) {
      const base = med(res.cost.filter((r) => r.n === n && r.w === w && r.kind === ONE), (r) => r.window.usPerDelivery)
      for (const kind of [ONE, TWO]) {
        const runs = res.cost.filter((r) => r.n === n && r.w === w && r.kind === kind)
        if (!runs.length) continue
        const us = med(runs, (r) => r.window.usPerDelivery)
        const two = kind === TWO
        const sp = runs.find((r) => r.spreadOver?.length)?.spreadOver
        const perNode = two ? `${fmt(med(runs, (r) => r.window.perNodePct[0]))} + ${fmt(med(runs, (r) => r.window.perNodePct[1]))}` : fmt(med(runs, (r) => r.window.serverPct))
        out.push(
          `| ${fmt(n)} | ${w} | ${kind} | ${fmt(med(runs, (r) => r.window.deliveriesPerSecond))} | ${spr(runs, (r) => r.window.deliveriesPerSecond)} | ${fmt(med(runs, (r) => r.window.holdPerSecond))} | ${fmt(us, 2)} | ${spr(runs, (r) => r.window.usPerDelivery, 2)} | ${two ? ratio(us, base) : '1.00×'} | ${fmt(med(runs, (r) => r.window.deliveriesPerWrite), 2)} | ${perNode} | ${fmt(med(runs, (r) => r.window.toolsPct))} | ${fmt(med(runs, (r) => r.window.eventsPerSecond))} | ${two ? fmt(med(runs, (r) => r.window.allUsPerDelivery), 2) : '–'} | ${two ? fmt(med(runs, (r) => r.window.redisNsPct), 1) : '–'} | ${two ? fmt(med(runs, (r) => r.window.redisUsPerEvent)) : '–'} | ${two ? fmt(med(runs, (r) => r.window.redisNsUsPerEvent)) : '–'} | ${two ? fmt(med(runs, (r) => r.window.redisAboveIdleUsPerEvent)) : '–'} | ${fmt(medL(runs, (r) => r.hold.latencyMs.p99), 1)} | ${fmt(median(good(runs).map((r) => r.pub.lost + r.hold.lost)))} | ${fmt(median(good(runs).map((r) => r.pub.duplicates + r.hold.duplicates)))} | ${sp ? sp.map((x) => fmt(x)).join(' / ') : '–'} |`,
        )
      }
    }
  }
  out.push('')
  return out
}

/** Part 1's sentence of the summary: the ratio to one process, Redis's CPU per event. */
export function costSummary(o, res) {
  const S = o.sizes
  const lines = []
  if (res.cost.length) {
    const us = (kind, n, w) => med(res.cost.filter((r) => r.kind === kind && r.n === n && r.w === w), (r) => r.window.usPerDelivery)
    const redisUs = (n, w, f) => med(res.cost.filter((r) => r.kind === TWO && r.n === n && r.w === w), f)
    const parts = S.costNs.flatMap((n) => S.windows.map((w) => `${ratio(us(TWO, n, w), us(ONE, n, w))} at N = ${fmt(n)}, W = ${w}`))
    const perEvent = S.windows.map((w) => `${fmt(redisUs(S.costNs[0], w, (r) => r.window.redisNsUsPerEvent))} at W = ${w} (${fmt(redisUs(S.costNs[0], w, (r) => r.window.redisAboveIdleUsPerEvent))} above idle; /proc/PID/stat: ${fmt(redisUs(S.costNs[0], w, (r) => r.window.redisUsPerEvent))})`)
    lines.push(`Server CPU per delivery, 2 nodes on Redis / one process: ${parts.join('; ')} (target ≤ 1.2×). redis-server's CPU per published event, N = ${fmt(S.costNs[0])} (the most events per window): ${perEvent.join(', ')} µs.`)
  }
  return lines
}
