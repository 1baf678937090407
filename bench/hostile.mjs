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
// Each case is a file of bench/hostile/, whose header says how it is made and measured:
//   1. stall.mjs    dropping stalled streams (--stalled, --publish-seconds, --publish-rate, …)
//   2. flood.mjs    floods at the file-descriptor limit (--flood, --floods, …)
//   3. storm.mjs    the reconnect storm (--storm, --storm-drop server,client);
//      resume.mjs   --storm-drop resume, every stream resuming mid-history (issue 20)
// server.mjs holds what they share: the server under test, its /proc samples, the helpers.
// This file reads the flags, runs the cases and writes the RESULTS.md section.
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
import { readFileSync } from 'node:fs'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import { BENCH, buildAt, buildCommit, BUSY_LIMIT, CLI, ephemeralPorts, flagReader, fmt, killAll, machine, machineMarkdown, placeSectionAfter, readSection, run, shellJoin, writeSection } from './lib.mjs'
import { caseFlood, floodHelper, floodReport, floodSummaryRows, FLOOD_NAMES } from './hostile/flood.mjs'
import { resumeStormHelper } from './hostile/resume.mjs'
import { FD_LIMIT, LOAD_CORE, mib, msOrS, secs, SERVER_CORE, serverArgv } from './hostile/server.mjs'
import { canaryHelper, caseStall, STALL_TIMEOUT_S, stallReport, stallSummaryRows } from './hostile/stall.mjs'
import { caseStorm, DROP_NAMES, stormHelper, stormReport, stormSummaryRows } from './hostile/storm.mjs'

const readProc = (p) => {
  try {
    return readFileSync(p, 'utf8').trim()
  } catch {
    return '?'
  }
}

// ---------------------------------------------------------------------------------------------
// Which build is measured (its commit: buildCommit of lib.mjs, or --commit).

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

function summaryTable(blocks) {
  const labels = [...blocks.keys()].sort((a, b) => {
    const ia = LABEL_ORDER.indexOf(a)
    const ib = LABEL_ORDER.indexOf(b)
    return (ia === -1 ? 99 : ia) - (ib === -1 ? 99 : ib) || a.localeCompare(b)
  })
  const data = labels.map((l) => blocks.get(l).data ?? {})
  const rows = [...stallSummaryRows(data), ...floodSummaryRows(data), ...stormSummaryRows(data)]
  const out = [`| case | figure | goal (issue 14) | ${labels.join(' | ')} |`, `|---|---|---|${labels.map(() => '---|').join('')}`]
  for (const r of rows) out.push(`| ${r.join(' | ')} |`)
  return out.join('\n')
}

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
  if (res.stall) out.push(...stallReport(o, res))
  if (res.flood) out.push(...floodReport(o, res))
  if (res.storm) out.push(...stormReport(o, res))
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
    '`node bench/hostile.mjs --cli PATH --label NAME` writes this section (do not edit it by hand): one block per label, each replaced only by a run with its label; the table puts the labels side by side. The headers of bench/hostile.mjs and of its case files in bench/hostile/ say in full how each case is made. Figures are from a shared 2-core VM; treat differences under about 20 % as noise.',
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
