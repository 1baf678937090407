// The README's page examples ("In the browser", its two ```html blocks), run as printed in Debian's
// Chromium (/usr/bin/chromium, through playwright-core) with only the address and the token swapped
// for a test server's: the RawSse page, and the same page on the browser's own EventSource (the
// README gives only the line that differs; the listeners are the RawSse page's). Each gets `ready`
// on every connection, a named event and an unnamed one reach their listeners, and after a cut
// that the history no longer covers it hears `reset`. Like test/e2e.test.ts, without Chromium it
// says plainly that it skipped and passes; under CI=true a missing browser fails.

import t, { type Test } from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type { Browser } from 'playwright-core'
import { publish, startServer, TOKEN } from './helpers.js'
import { browserMissing, canRun, launchChromium } from './needs.js'
import { ROOT, until } from './process.js'

const WAIT_MS = 8000

/** The ```html blocks of the README's "In the browser" section: what the test runs is what readers copy. */
function readmePages(): { rawSse: string; eventSource: string } {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf('\n## In the browser\n')
  if (start === -1) throw new Error('README.md has no "## In the browser" section')
  const end = readme.indexOf('\n## ', start + 1)
  const blocks = [...readme.slice(start, end === -1 ? undefined : end).matchAll(/\n```html\n([\s\S]*?)\n```\n/g)].map((m) => m[1]!)
  if (blocks.length !== 2) throw new Error(`README.md "In the browser" has ${blocks.length} \`\`\`html blocks, not two`)
  const [rawSse, eventSource] = blocks as [string, string]
  return { rawSse, eventSource }
}

/** `text` with every `from` replaced; a placeholder the README no longer has is an error, not a silent no-op. */
function swap(text: string, from: string | RegExp, to: string): string {
  if (typeof from === 'string' ? !text.includes(from) : !from.test(text)) {
    throw new Error(`the README's page example no longer contains ${String(from)}; update test/readme-page.test.ts`)
  }
  return typeof from === 'string' ? text.replaceAll(from, to) : text.replace(from, to)
}

/**
 * The EventSource page as the README describes it: its own `<script>` and constructor line in
 * place of the RawSse page's script tag, import and constructor, and the same listeners after.
 */
function eventSourcePage(rawSse: string, eventSource: string): string {
  const constructor = /^ {2}const sse = new EventSource\(.*\)/m.exec(eventSource)?.[0]
  if (constructor === undefined) throw new Error("the README's EventSource block has no `const sse = new EventSource(…)` line")
  let page = swap(rawSse, '<script type="module">', '<script>')
  page = swap(page, /^ {2}import \{ RawSse \} from '\/rawsse-client\.js'\n/m, '')
  return swap(page, /^ {2}const sse = new RawSse\(.*\)$/m, constructor)
}

let browser: Browser | null = null

/**
 * The snippet in a page of its own, served at `/` by a fresh server; then the README's story, step
 * by step. Returns the stream requests the page made: the part of each URL after the origin.
 */
async function run(t: Test, snippet: (base: string) => string): Promise<string[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-readme-page-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // history 2: after a cut, three more events push the page's last one out of replay.
  const { server, base } = await startServer(t, { publicDir: dir, retryMs: 200, history: 2 })
  // An empty icon: no /favicon.ico request to 404.
  writeFileSync(path.join(dir, 'index.html'), `<!doctype html>\n<meta charset="utf-8">\n<title>rawsse</title>\n<link rel="icon" href="data:,">\n${snippet(base)}\n`)

  const context = await browser!.newContext()
  t.teardown(() => context.close())
  const tab = await context.newPage()
  const streams: string[] = []
  tab.on('request', (r) => new URL(r.url()).pathname.startsWith('/events') && streams.push(r.url().slice(base.length)))
  const logs: string[] = []
  const errors: string[] = []
  tab.on('console', (m) => (m.type() === 'error' ? errors : logs).push(m.text()))
  tab.on('pageerror', (err) => errors.push(err.message))
  const seen = (line: string | RegExp, times = 1) =>
    until(() => logs.filter((l) => (typeof line === 'string' ? l === line : line.test(l))).length >= times, () => `${times}× ${line} in the page's console: ${JSON.stringify(logs)}`, WAIT_MS)
  await tab.goto(`${base}/`)

  await seen(/^stream \d+$/)
  t.same((await publish(base, 'channel=news&event=greet&id=7', 'hi')).json, { id: '7', delivered: 1 }, 'the publish of the README reaches the page')
  await seen('greet 7 hi')
  await publish(base, 'channel=news', 'plain')
  await seen('message plain')
  t.notOk(logs.some((l) => l.startsWith('greet') && l !== 'greet 7 hi'), 'the named event reached its own listener once')
  t.notOk(logs.some((l) => l === 'message hi'), 'and not onmessage')

  // Cut: the server closes every stream; three events while the page is away push its last one
  // (id 8) out of a history of 2, so the reconnection with Last-Event-ID 8 gets reset first. All in
  // one tick: over HTTP, a slow machine let the page reconnect (after retry: 200) between publishes.
  t.equal(server.closeAll(), 1, "closing every stream closed the page's")
  for (const data of ['a', 'b', 'c']) server.publish('news', { data })
  await seen('disconnected; reconnecting')
  await seen(/^stream \d+$/, 2)
  await seen('missed for good {"reason":"history-gap"}')
  t.notOk(logs.includes('message a'), 'the events that fell out of the history are not replayed')
  await publish(base, 'channel=news', 'after')
  await seen('message after')
  t.same(errors, [], 'no script error on the page')
  return streams
}

if (canRun(t, 'readme-page', "the README's page examples", await browserMissing())) {
  t.before(async () => {
    browser = await launchChromium()
  })
  t.teardown(() => browser?.close())

  t.test("the README's RawSse page gets ready, its named and unnamed events, and reset after a gap", async (t) => {
    const { rawSse } = readmePages()
    // Same origin: the page imports /rawsse-client.js and streams from /events of the server that serves it.
    const streams = await run(t, () => swap(rawSse, "token: 'TOKEN'", `token: '${TOKEN}'`))
    t.same([...new Set(streams)], ['/events?channel=news'], 'its stream URLs hold no token: it went in the Authorization header')
  })

  t.test("the README's EventSource page, the same listeners, gets the same", async (t) => {
    const { rawSse, eventSource } = readmePages()
    const streams = await run(t, (base) => {
      let page = eventSourcePage(rawSse, eventSource)
      page = swap(page, 'http://127.0.0.1:6500', base)
      return swap(page, '/events/TOKEN?', `/events/${TOKEN}?`)
    })
    t.same([...new Set(streams)], [`/events/${TOKEN}?channel=news`], 'its stream URL holds the token: EventSource has nowhere else to put it')
  })
}
