// `--redis URL` measured (issue 13, "Measure"): one build of rawsse, nodes on one Redis against one plain process.
//
//   node bench/redis.mjs [--cli PATH|COMMIT] [--rounds 3] [--label NAME] [--parts cost,latency,storm] [--storm 10000] [--quick]
//       [--out bench/RESULTS.md]
//
// Every Redis is Debian's redis-server, started here on a free loopback port with a temporary
// dir (`--save '' --appendonly no`), one per cluster started, stopped by its PID. Every rawsse is
// fresh (`--tick 0 --heartbeat 0 --max-clients 20000 --history 1000`, a publish token); a cluster
// is two processes given the same `--redis redis://127.0.0.1:PORT` and a `--redis-prefix` made
// afresh for it (`bench-…`). Nothing is pinned: servers, Redis and load tools share both cores, and
// what is compared is CPU time per unit of work. Before each part the script waits until the
// 1-minute load average is under 0.8 (at most 5 min, then it goes on and says so) and notes it.
// Within a part, rounds are interleaved (round 1 of every figure, then round 2, …; the order of
// the two servers alternates from round to round); tables give medians and min–max.
//
// Each part is a file of bench/redis/, whose header says how it is made and measured:
//   1. cost.mjs       server CPU per delivery, 2 nodes on Redis against one process
//   2. latency.mjs    the Redis hop's latency
//   3. storm.mjs      a `kill -9` storm of 10 000 streams moving to the other node
// cluster.mjs holds the processes measured and their /proc readings; pair.mjs the two load tools
// of parts 1 and 2. This file reads the flags, runs the parts and writes the RESULTS.md section.
//
// It writes its section of bench/RESULTS.md (`<!-- redis:begin -->` … `<!-- redis:end -->`,
// after the workers section), one block per --label, each replaced only by a run with its label.
// The run is bounded (45 min, of which up to 15 waiting for the load to fall; --quick 8 min) and
// takes about 11 min (more while it waits for the load); every process it starts is stopped by
// its PID, also on errors and Ctrl-C. --quick: a few hundred streams, 3 s runs, a 1 000-stream
// storm, one round: a check of the script, written nowhere unless --out is given. --storm N: the
// storm's streams (e.g. a full-size storm in a quick run). --cli PATH|COMMIT: another build's
// dist/cli.js (server and load tool), or a commit, built in a temporary git worktree removed at
// the end. --label NAME: default `current` (`quick` with --quick).
// Internal: `node bench/redis.mjs --helper storm JSON` is the storm's client process.

import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import { BENCH, buildAt, buildCommit, CLI, flagReader, fmt, killAll, labelBlocks, labelledSection, machine, machineMarkdown, placeSectionAfter, readSection, ROOT, run, shellJoin, tail, writeSection } from './lib.mjs'
import { redisBin, waitForQuiet } from './redis/cluster.mjs'
import { costPart, costReport, costSummary } from './redis/cost.mjs'
import { latencyPart, latencyReport, latencySummary } from './redis/latency.mjs'
import { BODY } from './redis/pair.mjs'
import { stormHelper, stormPart, stormReport, stormSummary } from './redis/storm.mjs'

const FULL = {
  costNs: [1000, 10_000], windows: [1, 8], duration: 8,
  latencyNs: [1000, 10], latencyRate: 20, latencyDuration: 10,
  storm: 10_000, stormRate: 5, stormBoundS: 60,
}
const QUICK = {
  costNs: [200, 400], windows: [1, 8], duration: 3,
  latencyNs: [200, 10], latencyRate: 20, latencyDuration: 4,
  storm: 1000, stormRate: 5, stormBoundS: 30,
}

// ---------------------------------------------------------------------------------------------
// The report: one block per label in the redis section.

function labelBlock(o, m, command, build, res, notes) {
  const S = o.sizes
  const out = [`### ${o.label}${o.quick ? ' (QUICK SMOKE RUN: small sizes; not results)' : ''}`, '']
  out.push(machineMarkdown(m))
  out.push(`- Redis: ${run(redisBin() ?? 'redis-server', ['--version']) ?? 'not installed'}; one per cluster, on a free loopback port, \`--save '' --appendonly no\`, a temporary dir`)
  out.push(`- Build measured: \`${o.cli.startsWith(ROOT + path.sep) ? path.relative(ROOT, o.cli) : o.cli}\`, git ${build}; command: \`${command}\`; the run took ${fmt(res.minutes, 1)} min`)
  out.push(
    `- ${o.rounds} round(s), interleaved within each part (the two servers' order alternating); nothing pinned; servers \`--tick 0 --heartbeat 0 --max-clients 20000 --history 1000\`, a cluster = 2 processes with \`--redis redis://127.0.0.1:PORT --redis-prefix bench-<random>\`; body \`${BODY}\`; figures are medians, spread min–max over rounds.`,
  )
  out.push(
    '- The load tool (`rawsse bench`) targets one URL, so parts 1 and 2 run two at once, each with half the streams: a holding one (no `--publish`; it holds its streams and counts and times what reaches them; stopped with SIGINT, which makes it report, once it has every event or 8 s after publishing ended), then a publishing one that runs the closed or open loop over its own half. 2 nodes: the publishing half is on node A, which it publishes to; the holding half on node B (its events come only through Redis, and B is outside the closed loop). One process: both halves on it. Deliveries = both halves (the holding one\'s count interpolated to the publisher\'s once-a-second lines).',
  )
  out.push('')
  if (o.parts.has('cost')) out.push(...costReport(o, res))
  if (o.parts.has('latency')) out.push(...latencyReport(o, res))
  if (o.parts.has('storm')) out.push(...stormReport(o, res))
  out.push(...summary(o, res).map((l) => `- ${l}`))
  for (const n of notes) out.push(`- ${n}`)
  const data = { label: o.label, date: m.date, build, quick: o.quick, rounds: o.rounds, minutes: res.minutes, ...compact(res) }
  out.push('', `<!-- redis-data ${JSON.stringify(data).replaceAll('--', '\\u002d\\u002d') /* `--` may not appear in an HTML comment; only strings hold it */} -->`)
  return `<!-- redis-label:${o.label}:begin -->\n${out.join('\n')}\n<!-- redis-label:${o.label}:end -->`
}

/** The sentences that answer the issue: the ratio, the hop, the storm. */
function summary(o, res) {
  return [...costSummary(o, res), ...latencySummary(o, res), ...stormSummary(res)]
}

/** Per-round figures for later readers (the tables keep medians). */
function compact(res) {
  const n = (x, d = 0) => (Number.isFinite(x) ? +x.toFixed(d) : null)
  const w = ({ window: x }) =>
    x && {
      dps: n(x.deliveriesPerSecond), holdDps: n(x.holdPerSecond), us: n(x.usPerDelivery, 3), usAll: n(x.allUsPerDelivery, 3), perWrite: n(x.deliveriesPerWrite, 2), eps: n(x.eventsPerSecond), pct: x.perNodePct.map((p) => n(p)), tools: n(x.toolsPct),
      redisPct: n(x.redisNsPct, 2), redisUs: n(x.redisUsPerEvent, 1), redisNsUs: n(x.redisNsUsPerEvent, 1), redisAboveIdleUs: n(x.redisAboveIdleUsPerEvent, 1), redisIdlePct: n(x.redisIdlePct, 2),
    }
  const lat = (r) => r.pub && r.hold && { pub: r.pub.latencyMs, hold: r.hold.latencyMs, lost: [r.pub.lost, r.hold.lost], dup: [r.pub.duplicates, r.hold.duplicates], connected: [r.pub.connected, r.hold.connected] }
  return {
    cost: res.cost.map((r) => ({ round: r.round, kind: r.kind, n: r.n, w: r.w, error: r.error, spread: r.spreadOver, ...w(r), ...lat(r) })),
    latency: res.latency.map((r) => ({ round: r.round, kind: r.kind, n: r.n, error: r.error, ...lat(r) })),
    storm: res.storm,
  }
}

function sectionText(blocks) {
  return labelledSection('## Across machines: `--redis URL` (issue 13, "Measure")', '`node bench/redis.mjs --label NAME` writes this section (do not edit it by hand), one block per label; the headers of bench/redis.mjs and of its parts in bench/redis/ say how each figure is made. Figures are from a shared 2-core VM on which the rawsse nodes, redis-server and the load tools all share both cores (a real cluster would have a machine per node); treat differences under about 20 % as noise.', blocks)
}

// ---------------------------------------------------------------------------------------------
// The run.

function parseFlags(argv) {
  const quick = argv.includes('--quick')
  const { get, num, list, done } = flagReader(argv, ['quick'])
  const o = {
    quick,
    sizes: quick ? QUICK : FULL,
    cli: get('cli') ?? CLI,
    rounds: num('rounds', quick ? 1 : 3),
    parts: new Set(list('parts', 'cost,latency,storm')),
    storm: get('storm'),
    label: get('label') ?? (quick ? 'quick' : 'current'),
    // A quick run checks the script: it writes nowhere unless told where.
    out: get('out') !== undefined ? path.resolve(get('out')) : quick ? null : path.join(BENCH, 'RESULTS.md'),
  }
  done()
  if (o.storm !== undefined) {
    const n = Number(o.storm)
    if (!Number.isInteger(n) || n < 1 || n > 18_000) throw new Error('--storm must be a whole number of streams from 1 to 18 000 (one client process, 20 000 open files)')
    o.sizes = { ...o.sizes, storm: n }
  }
  if (!/^[\w.-]+$/.test(o.label)) throw new Error(`--label must be letters, digits, . _ or -, not '${o.label}'`)
  o.cli = buildAt(o.cli) // a file as is, else a commit built in a temporary worktree (lib.mjs)
  if (!Number.isInteger(o.rounds) || o.rounds < 1) throw new Error('--rounds must be a whole number ≥ 1')
  for (const p of o.parts) if (!['cost', 'latency', 'storm'].includes(p)) throw new Error(`--parts: cost, latency, storm; not '${p}'`)
  return o
}

async function main() {
  const argv = process.argv.slice(2)
  const o = parseFlags(argv)
  const help = spawnSync(process.execPath, [o.cli, 'bench', '--help'], { encoding: 'utf8' })
  if (help.status !== 0) throw new Error(`the load tool is missing: \`node ${o.cli} bench --help\` failed\n${tail(help.stderr || help.stdout, 300)}`)
  if (!redisBin()) throw new Error('redis-server is not installed (apt-get install redis-server)')
  const limitS = o.quick ? 480 : 2700
  setTimeout(() => {
    process.stderr.write(`redis: the run passed its ${limitS} s bound; stopping every process started here\n`)
    killAll()
    process.exit(3)
  }, limitS * 1000).unref()
  const m = machine()
  const build = buildCommit(o.cli)
  const command = `node bench/redis.mjs${argv.length ? ' ' + shellJoin(argv) : ''}`
  process.stderr.write(`redis: ${o.cli} (git ${build}), label ${o.label}, ${o.rounds} round(s), parts ${[...o.parts].join(',')}\n`)
  const notes = []
  const res = { cost: [], latency: [], storm: [] }
  const t0 = Date.now()
  if (o.parts.has('cost')) {
    await waitForQuiet(o, 'cost', notes)
    res.cost = await costPart(o, notes)
  }
  if (o.parts.has('latency')) {
    await waitForQuiet(o, 'latency', notes)
    res.latency = await latencyPart(o, notes)
  }
  if (o.parts.has('storm')) {
    await waitForQuiet(o, 'storm', notes)
    res.storm = await stormPart(o, notes)
  }
  res.minutes = (Date.now() - t0) / 60000
  const block = labelBlock(o, m, command, build, res, notes)
  process.stdout.write(block + '\n')
  if (o.out === null) {
    process.stderr.write('--quick without --out: nothing written\n')
  } else {
    placeSectionAfter(o.out, 'redis', 'workers')
    const blocks = labelBlocks(readSection(o.out, 'redis'), 'redis')
    blocks.set(o.label, block)
    writeSection(o.out, 'redis', sectionText(blocks))
    process.stderr.write(`wrote the ${o.label} block of the redis section of ${path.relative(process.cwd(), o.out) || o.out}\n`)
  }
  killAll()
  process.exit(0)
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  if (process.argv[2] === '--helper') {
    const [, , , mode, json] = process.argv
    if (mode !== 'storm') {
      process.stderr.write(`redis: unknown helper '${mode}'\n`)
      process.exit(2)
    }
    stormHelper(JSON.parse(json)).catch((err) => {
      process.stderr.write(`storm: ${err.stack ?? err.message}\n`)
      process.exit(1)
    })
  } else {
    main().catch((err) => {
      process.stderr.write(`redis: ${err.message}\n`)
      killAll()
      process.exit(1)
    })
  }
}
