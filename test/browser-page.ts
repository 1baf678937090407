// What the browser client's tests (browser-client, browser-shared) and bench/browser.mjs share: a
// test page that imports /rawsse-client.js and logs what its RawSse dispatches, tabs of one
// Chromium context on it, and a TCP proxy that records every request line and head the server
// was sent (the server's own view of the URLs, which its log redacts).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { until, type Teardown } from './process.js'

/**
 * The page: `start(options)` makes `window.sse`; `window.log` gets one line per event ("TYPE
 * LASTEVENTID DATA"), "open", and "error READYSTATE". `tokenFrom: URL` makes the token a function
 * that fetches it and counts its calls in `window.tokenCalls`.
 */
export const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>rawsse browser test</title>
<link rel="icon" href="data:,">
<script type="module">
import { RawSse } from '/rawsse-client.js'
window.RawSse = RawSse
window.log = []
window.tokenCalls = 0
window.start = (o = {}) => {
  const options = { ...o }
  if (o.tokenFrom) options.token = () => { window.tokenCalls++; return fetch(o.tokenFrom).then((r) => r.text()) }
  const sse = new RawSse(o.url ?? '/events', options)
  for (const type of ['message', 'ready', 'reset', 'channels', 'expiring', 'greet', 'time']) {
    sse.addEventListener(type, (e) => window.log.push(type + ' ' + e.lastEventId + ' ' + e.data))
  }
  sse.addEventListener('open', () => window.log.push('open'))
  sse.addEventListener('error', () => window.log.push('error ' + sse.readyState))
  window.sse = sse
}
window.loaded = true
</script>
`

/** A folder holding the page as index.html (and `token`, its content the argument), for --public; removed at the test's end. */
export function pageDir(t: Teardown, token = 'tok'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-browser-'))
  writeFileSync(path.join(dir, 'index.html'), PAGE)
  writeFileSync(path.join(dir, 'token'), token)
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface Tab {
  page: Page
  /** Uncaught errors and console errors of the page. */
  errors: string[]
  /** Its console's info lines. */
  info: string[]
}

/** A new tab on `base`'s page, loaded (the module imported). */
export async function openTab(context: BrowserContext, base: string): Promise<Tab> {
  const page = await context.newPage()
  const tab: Tab = { page, errors: [], info: [] }
  page.on('pageerror', (e) => tab.errors.push(e.message))
  page.on('console', (m) => (m.type() === 'error' ? tab.errors : tab.info).push(m.text()))
  await page.goto(`${base}/`)
  await page.waitForFunction(() => (globalThis as unknown as { loaded?: boolean }).loaded === true)
  return tab
}

export interface StartOptions {
  url?: string
  channels?: string[]
  token?: string
  tokenFrom?: string
  shared?: boolean
  lastEventId?: string
}

export function start(tab: Tab, o: StartOptions): Promise<void> {
  return tab.page.evaluate((o) => (globalThis as unknown as { start(o: unknown): void }).start(o), o)
}

/** What the page's RawSse has dispatched so far. */
export function logOf(tab: Tab): Promise<string[]> {
  return tab.page.evaluate(() => (globalThis as unknown as { log: string[] }).log)
}

/** The ids of its `message` events, in order. */
export async function messageIds(tab: Tab): Promise<string[]> {
  return (await logOf(tab)).filter((l) => l.startsWith('message ')).map((l) => l.split(' ')[1]!)
}

export function sse<T>(tab: Tab, read: (s: { readyState: number; lastEventId: string; role: string; channels: string[] }) => T): Promise<T> {
  return tab.page.evaluate(`(${read.toString()})(window.sse)`) as Promise<T>
}

/** Waits until the tab's log has `n` lines matching `line`. */
export function seen(tab: Tab, line: RegExp, n = 1, ms = 8000): Promise<string[]> {
  return until(
    async () => {
      const log = await logOf(tab)
      return log.filter((l) => line.test(l)).length >= n ? log : null
    },
    () => `${n}× ${line} in the tab's log`,
    ms,
  )
}

export interface Recorded {
  /** `METHOD TARGET` of every request, in order. */
  lines: string[]
  /** The whole head of every request. */
  heads: string[]
  /** TCP connections made through the proxy. */
  connections: number
}

/**
 * A TCP proxy on 127.0.0.1 port 0 in front of `port`: what the browser sends, the server gets,
 * and the request heads are recorded on the way.
 */
export async function recordingProxy(t: Teardown, port: number): Promise<{ port: number; seen: Recorded }> {
  const seen: Recorded = { lines: [], heads: [], connections: 0 }
  const sockets = new Set<net.Socket>()
  const server = net.createServer((c) => {
    seen.connections++
    const up = net.connect(port, '127.0.0.1')
    for (const s of [c, up]) {
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => sockets.delete(s))
    }
    c.pipe(up)
    up.pipe(c)
    let buf = ''
    let body = 0 // bytes of the last request's body still to come: skipped, or a head behind a body is missed
    c.on('data', (d: Buffer) => {
      buf += d.toString('latin1')
      for (;;) {
        const skip = Math.min(body, buf.length)
        buf = buf.slice(skip)
        body -= skip
        const end = buf.indexOf('\r\n\r\n')
        if (body > 0 || end === -1) break
        const head = buf.slice(0, end + 4)
        const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]\r\n/.exec(head)
        if (m !== null) {
          seen.lines.push(`${m[1]} ${m[2]}`)
          seen.heads.push(head)
        }
        body = Number(/^content-length: *(\d+)\r$/im.exec(head)?.[1] ?? 0)
        buf = buf.slice(end + 4)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { port: (server.address() as net.AddressInfo).port, seen }
}
