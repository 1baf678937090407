// The browser client (src/browser, issue 25 "Measure") in Debian's Chromium through
// playwright-core, against rawsse as a library from dist/ on 127.0.0.1: the connections 8 tabs
// hold, shared and not; the main-thread time a following tab spends per event, beside a leading
// tab and a tab on plain EventSource (Chromium's own Performance.getMetrics, TaskDuration, per
// tab, less the same tab's idle rate); and the handoff time, from closing the leading tab to the
// new leader's stream at the server, over 20 closes. Writes the `browser` section of RESULTS.md.
//
//   npm run build && node bench/browser.mjs [--events 2000] [--rate 200] [--closes 20] [--out bench/RESULTS.md]
//
// About a minute. The tabs of one test share one browser context (one origin, as a user's tabs
// do); each tab has a renderer process of its own, so its metrics are its own.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { chromium } from 'playwright-core'
import { SseServer } from '../dist/index.js'
import { BENCH, flagReader, fmt, machine, machineMarkdown, median, sleep, writeSection } from './lib.mjs'

const flags = flagReader(process.argv.slice(2))
const EVENTS = flags.num('events', 2000)
const RATE = flags.num('rate', 200)
const CLOSES = flags.num('closes', 20)
const OUT = flags.get('out') ?? path.join(BENCH, 'RESULTS.md')
flags.done()

const TOKEN = 'bench-token'
const PUB = 'bench-publish'
const CHROMIUM = '/usr/bin/chromium'

// One page for every kind of tab: `go(kind)` starts a RawSse (shared or not) or an EventSource,
// and counts the events it gets (no other work, so the figures are the client's own).
const PAGE = `<!doctype html><meta charset="utf-8"><title>rawsse bench</title><link rel="icon" href="data:,">
<script type="module">
import { RawSse } from '/rawsse-client.js'
window.n = 0
window.go = (kind, channels = ['news']) => {
  const s = kind === 'eventsource' ? new EventSource('/events/${TOKEN}?channel=news')
    : new RawSse('/events', { channels, token: '${TOKEN}', shared: kind !== 'alone' })
  s.onmessage = () => window.n++
  window.s = s
}
window.loaded = true
</script>`

const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-bench-browser-'))
writeFileSync(path.join(dir, 'index.html'), PAGE)
const server = new SseServer({ port: 0, host: '127.0.0.1', tokens: [TOKEN], publishTokens: [PUB], publicDir: dir, tickMs: 0, heartbeatMs: 0, retryMs: 300, firstEventId: 1 })
const { port } = await server.listen()
const base = `http://127.0.0.1:${port}`
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})

async function tab(context) {
  const page = await context.newPage()
  await page.goto(`${base}/`)
  await page.waitForFunction(() => window.loaded === true)
  return page
}

const until = async (probe, ms = 10_000) => {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(10)) if (await probe()) return
  throw new Error(`timed out: ${probe}`)
}

async function stats() {
  const r = await fetch(`${base}/stats`, { headers: { authorization: `Bearer ${PUB}` } })
  return r.json()
}

// ------------------------------------------------------------------ connections

/** Tabs on three channel sets: one stream for the union all the same. */
const MIXED = [['news'], ['news', 'sport'], ['weather']]

/** 8 tabs of one kind: the streams and TCP connections the server holds once they settle. */
async function connections(kind) {
  const context = await browser.newContext()
  const pages = []
  for (let i = 0; i < 8; i++) pages.push(await tab(context))
  for (const [i, p] of pages.entries()) await p.evaluate(([k, ch]) => window.go(k, ch), [kind, kind === 'mixed' ? MIXED[i % 3] : ['news']])
  await sleep(2000)
  const s = await stats()
  const open = (await Promise.all(pages.map((p) => p.evaluate(() => window.s.readyState)))).filter((r) => r === 1).length
  await context.close()
  await sleep(300)
  return { kind, streams: s.clients, tcp: s.connections.open, open }
}

// ------------------------------------------------------------------ CPU per event

async function taskSeconds(cdp) {
  const { metrics } = await cdp.send('Performance.getMetrics')
  return metrics.find((m) => m.name === 'TaskDuration').value
}

/** A leading tab, a following tab and an EventSource tab get the same EVENTS events at RATE/s. */
async function cpuPerEvent() {
  const context = await browser.newContext()
  const [leader, follower, plain] = [await tab(context), await tab(context), await tab(context)]
  await leader.evaluate(() => window.go('shared'))
  await until(() => leader.evaluate(() => window.s.readyState === 1 && window.s.role === 'leader'))
  await follower.evaluate(() => window.go('shared'))
  await plain.evaluate(() => window.go('eventsource'))
  await until(async () => (await follower.evaluate(() => window.s.readyState)) === 1 && (await plain.evaluate(() => window.s.readyState)) === 1)
  const tabs = { leading: leader, following: follower, EventSource: plain }
  const cdps = {}
  for (const [name, page] of Object.entries(tabs)) {
    cdps[name] = await context.newCDPSession(page)
    await cdps[name].send('Performance.enable')
  }
  const read = async () => Object.fromEntries(await Promise.all(Object.entries(cdps).map(async ([k, c]) => [k, await taskSeconds(c)])))
  // Idle: what each tab spends with no event, over as long as the events will take.
  const seconds = EVENTS / RATE
  const idle0 = await read()
  await sleep(seconds * 1000)
  const idle1 = await read()
  const data = 'x'.repeat(100)
  const t0 = Date.now()
  const before = await read()
  for (let i = 0; i < EVENTS; i++) {
    await fetch(`${base}/publish?channel=news`, { method: 'POST', headers: { authorization: `Bearer ${PUB}` }, body: data })
    const due = t0 + ((i + 1) * 1000) / RATE
    if (due > Date.now()) await sleep(due - Date.now())
  }
  for (const page of Object.values(tabs)) await until(() => page.evaluate((n) => window.n >= n, EVENTS))
  const after = await read()
  const elapsed = (Date.now() - t0) / 1000
  const out = {}
  for (const k of Object.keys(tabs)) {
    const idleRate = (idle1[k] - idle0[k]) / seconds
    out[k] = ((after[k] - before[k] - idleRate * elapsed) * 1e6) / EVENTS
  }
  await context.close()
  return out
}

// ------------------------------------------------------------------ handoff

/** Closes the leading tab CLOSES times, with two others open; ms from close() to the new stream's connect. */
async function handoffs() {
  const context = await browser.newContext()
  const pages = []
  const add = async () => {
    const p = await tab(context)
    await p.evaluate(() => window.go('shared'))
    await until(() => p.evaluate(() => window.s.readyState === 1))
    pages.push(p)
  }
  for (let i = 0; i < 3; i++) await add()
  const times = []
  for (let i = 0; i < CLOSES; i++) {
    const roles = await Promise.all(pages.map((p) => p.evaluate(() => window.s.role)))
    const leader = pages[roles.indexOf('leader')]
    const connected = new Promise((resolve) => server.once('connect', () => resolve(performance.now())))
    const from = performance.now()
    await leader.close()
    times.push((await connected) - from)
    pages.splice(pages.indexOf(leader), 1)
    await add()
  }
  await context.close()
  return times
}

// ------------------------------------------------------------------ run and write

const m = machine()
const load = os.loadavg()[0]
const conns = [await connections('shared'), await connections('mixed'), await connections('alone')]
const cpu = await cpuPerEvent()
const times = await handoffs()
await browser.close()
await server.stop()
rmSync(dir, { recursive: true, force: true })

const chromiumVersion = browser.version()
const sorted = [...times].sort((a, b) => a - b)
const md = `## The browser client (issue 25, "Measure")

\`npm run build && node bench/browser.mjs --events ${EVENTS} --rate ${RATE} --closes ${CLOSES}\` (Chromium ${chromiumVersion}, headless, through playwright-core; rawsse from dist/ in the same process; ${m.cpus} CPUs, load average ${fmt(load, 2)} when it began; read the CPU figures as a comparison of tabs within one run).

${machineMarkdown(m)}

**Connections for 8 tabs**, after 2 s:

| tabs | streams at the server | TCP connections open | tabs open |
|---|---:|---:|---:|
${conns.map((c) => `| ${{ shared: '\`shared: true\`, one channel', mixed: '\`shared: true\`, on 3 channel sets (news; news + sport; weather)', alone: 'each its own (\`shared: false\`), one channel' }[c.kind]} | ${c.streams} | ${c.tcp} | ${c.open} of 8 |`).join('\n')}

(The TCP connections include the keep-alive ones the pages were loaded on. Without sharing, the browser's six connections per host are six streams, and the seventh and eighth tabs wait.)

**Main-thread time per event** (Performance.getMetrics TaskDuration of each tab's renderer, less its idle rate; ${EVENTS} events of 100 bytes at ${RATE}/s, the same events to each tab):

| tab | µs per event |
|---|---:|
${Object.entries(cpu).map(([k, v]) => `| ${k === 'following' ? 'a following tab (`RawSse`, `shared: true`)' : k === 'leading' ? 'the leading tab (reads the stream, relays it)' : 'a tab on `EventSource`'} | ${fmt(v, 1)} |`).join('\n')}

**Handoff**, from closing the leading tab (of three) to the new leader's stream at the server, ${CLOSES} closes: p50 ${fmt(median(times))} ms, max ${fmt(sorted.at(-1))} ms (all: ${times.map((t) => fmt(t)).join(', ')}). It includes the ${150} ms the new leader waits to hear where every tab is (COLLECT_MS in src/browser/limits.ts).
`
writeSection(OUT, 'browser', md, ['fanout', 'http', 'hostile', 'downloads', 'browser'])
process.stdout.write(md)
