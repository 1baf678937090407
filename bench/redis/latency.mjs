// Part 2 of bench/redis.mjs, the latency: the Redis hop.
//   node bench/redis.mjs --parts latency [--rounds 3] [--quick]
//
// N = 1 000 and N = 10 (half per tool), open loop at 20 events/s for 10 s; p50/p99
// of delivery latency (the body's CLOCK_MONOTONIC stamp to the read, one clock for every
// process) after the warm-up, of each half; the Redis hop = the cluster's p99 − the one
// process's, per half (target ≤ 2 ms). At 1 000 a stream's latency is mostly its place in
// its process's fan-out, which two nodes halve; at 10 the fan-out is negligible and what is
// left is the Redis round trips. The holding tool's warm-up is longer (it starts first), so
// both halves leave out the start of publishing.

import { fmt, median, waitForPorts } from '../lib.mjs'
import { busyNote, ONE, startSetup, stopSetup, TWO } from './cluster.mjs'
import { good, med, medL, pairRun, sprL } from './pair.mjs'

export async function latencyPart(o, notes) {
  const S = o.sizes
  const out = []
  for (let round = 1; round <= o.rounds; round++) {
    for (const kind of round % 2 ? [ONE, TWO] : [TWO, ONE]) {
      const what = `latency, round ${round}, ${kind}`
      await waitForPorts(Math.max(...S.latencyNs))
      let setup
      try {
        setup = await startSetup(o, kind)
      } catch (err) {
        notes.push(`${what}: did not start: ${err.message.split('\n')[0]}`)
        continue
      }
      try {
        for (const n of S.latencyNs) {
        await busyNote(`${what}, N = ${fmt(n)}`, notes)
        const r = { round, kind, n, ...(await pairRun(o, setup, { perTool: n / 2, rate: S.latencyRate, duration: S.latencyDuration })) }
        out.push(r)
        process.stderr.write(
          `${what}, N = ${fmt(n)}: ${r.error ? `ERROR ${r.error}` : `publishing half p50 ${r.pub.latencyMs.p50} p99 ${r.pub.latencyMs.p99} ms, other half p50 ${r.hold.latencyMs.p50} p99 ${r.hold.latencyMs.p99} ms, ${fmt(r.window?.eventsPerSecond, 1)} events/s, lost ${r.pub.lost}+${r.hold.lost}, dup ${r.pub.duplicates}+${r.hold.duplicates}`}\n`,
        )
        if (r.error) notes.push(`${what}, N = ${fmt(n)}: ${r.error}`)
        if (r.pub && r.hold && (r.pub.lost || r.hold.lost || r.pub.duplicates || r.hold.duplicates)) notes.push(`${what}, N = ${fmt(n)}: lost ${r.pub.lost}+${r.hold.lost}, duplicates ${r.pub.duplicates}+${r.hold.duplicates}`)
        }
      } finally {
        await stopSetup(setup)
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Its part of the report.

/** Part 2's table in a label's block. */
export function latencyReport(o, res) {
  const S = o.sizes
  const out = []
  out.push(
    `**2. Latency.** N = ${S.latencyNs.map((n) => fmt(n)).join(' and ')} streams (half per tool), open loop at ${S.latencyRate} events/s for ${S.latencyDuration} s; latency = the event's CLOCK_MONOTONIC stamp (written by the publishing tool) to its read, after each tool's warm-up, in ms. Hop = the cluster's figure − the one process's (target: ≤ 2 ms at p99). At N = ${fmt(S.latencyNs[0])} a stream's latency is mostly its place in the fan-out (each process writes its streams one after another, and the tools read theirs the same way), which two nodes halve; at N = ${fmt(S.latencyNs.at(-1))} the fan-out is negligible and the difference is the Redis round trips alone.`,
  )
  out.push('')
  out.push('| N | server | publishing half p50 | p99 | spread p99 | holding half p50 | p99 | spread p99 | max (both) | events/s | lost | dup |')
  out.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const n of S.latencyNs) for (const kind of [ONE, TWO]) {
    const runs = res.latency.filter((r) => r.kind === kind && r.n === n)
    if (!runs.length) continue
    out.push(
      `| ${fmt(n)} | ${kind} | ${fmt(medL(runs, (r) => r.pub.latencyMs.p50), 2)} | ${fmt(medL(runs, (r) => r.pub.latencyMs.p99), 2)} | ${sprL(runs, (r) => r.pub.latencyMs.p99)} | ${fmt(medL(runs, (r) => r.hold.latencyMs.p50), 2)} | ${fmt(medL(runs, (r) => r.hold.latencyMs.p99), 2)} | ${sprL(runs, (r) => r.hold.latencyMs.p99)} | ${fmt(medL(runs, (r) => Math.max(r.pub.latencyMs.max, r.hold.latencyMs.max)), 1)} | ${fmt(med(runs, (r) => r.window.eventsPerSecond), 1)} | ${fmt(median(good(runs).map((r) => r.pub.lost + r.hold.lost)))} | ${fmt(median(good(runs).map((r) => r.pub.duplicates + r.hold.duplicates)))} |`,
    )
  }
  out.push('')
  return out
}

/** Part 2's sentences of the summary: the hop at each N. */
export function latencySummary(o, res) {
  const S = o.sizes
  const lines = []
  if (res.latency.length) {
    const sign = (x) => (x >= 0 ? `+${fmt(x, 2)}` : fmt(x, 2))
    for (const n of S.latencyNs) {
      const p = (kind, f) => medL(res.latency.filter((r) => r.kind === kind && r.n === n), f)
      const hop = (half, q) => sign(p(TWO, (r) => r[half].latencyMs[q]) - p(ONE, (r) => r[half].latencyMs[q]))
      lines.push(`Latency at ${S.latencyRate} events/s to ${fmt(n)} streams: two nodes on Redis add ${hop('pub', 'p99')} ms at p99 to the publishing node's streams and ${hop('hold', 'p99')} ms to the other node's (p50: ${hop('pub', 'p50')} and ${hop('hold', 'p50')} ms); target ≤ 2 ms at p99.`)
    }
  }
  return lines
}
