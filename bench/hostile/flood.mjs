// Case 2 of bench/hostile.mjs, floods at the file-descriptor limit:
//   node bench/hostile.mjs --cases 2 [--flood 20000] [--flood-procs 4] [--flood-seconds 30] [--floods keepalive,idle,loris]
//
// The limit is 20 000 open files per process, the server's too. For
// each flood (--floods), --flood connections from --flood-procs helper processes try to hold
// every descriptor the server has, each reopened when the server closes it (after 0.5 s if it
// lived under 1 s): `keepalive` sends `OPTIONS * HTTP/1.1` on each every 4 s (under the 5 s
// keep-alive idle close), `idle` sends nothing, `loris` trickles a request head a byte every
// 3 s. Once the flood is up, every second for --flood-seconds a new subscriber with a valid
// token sends `GET /events/TOKEN` and waits at most 10 s: attempts, how many got `ready`
// within 2 s, p50 / max time to `ready` of those that got it, and what happened to the others.

import * as net from 'node:net'
import { alive, fdCount, fmt, lastJsonLine, median, PER_SOURCE, quantile, sleep, sourcesFor, subscribeAttempt } from '../lib.mjs'
import { busyNote, FD_LIMIT, msOrS, sampler, startHelper, startServer, SUB_TOKEN } from './server.mjs'

const SUBSCRIBE_WAIT_MS = 10_000 // how long one new subscriber waits for `ready`
const READY_GOAL_MS = 2_000 // the goal
export const FLOOD_NAMES = { keepalive: 'keep-alive `OPTIONS *` every 4 s', idle: 'idle', loris: 'slow-loris' }

// ---------------------------------------------------------------------------------------------
// Helper: one flood process. Holds `count` connections from `source`, reopening each
// the server closes; prints its counts every second.

export async function floodHelper(cfg) {
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
// The case.

export async function caseFlood(o, mode, notes) {
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
      attempts.push(subscribeAttempt({ port: server.port, path: `/events/${SUB_TOKEN}`, waitMs: SUBSCRIBE_WAIT_MS }))
      await sleep(1000)
    }
    r.attempts = await Promise.all(attempts)
    const window = smp.samples.filter((s) => s.t >= t0)
    r.serverFdsMedian = median(window.map((s) => s.fds))
    r.serverFdsMin = Math.min(...window.map((s) => s.fds))
    r.serverFdsMax = Math.max(...window.map((s) => s.fds))
    r.helpers = helpers.map((h) => lastJsonLine(h.stdout))
    r.serverAlive = alive(server.proc)
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
// Its part of the report.

/** The summary table's rows of case 2, one per flood, a cell per label. */
export function floodSummaryRows(data) {
  const rows = []
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
  return rows
}

/** Case 2's part of a label's block. */
export function floodReport(o, res) {
  const out = []
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
  return out
}
