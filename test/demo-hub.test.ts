// The hub page (public/index.html) in Debian's Chromium (/usr/bin/chromium) through
// playwright-core, against a real server on 127.0.0.1 port 0 serving the package's public/:
// the per-event-name filter (a checkbox and a count per name, kept in localStorage), the one
// connection its tabs share (RawSse with `shared: true`: the role each tab shows, one stream in
// /stats, no token in any URL the server was sent) and the favicon every page links. Like
// test/e2e.test.ts, without Chromium it says plainly that it skipped and passes; under CI=true a
// missing browser fails.

import t from 'tap'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { attachDemo } from '../src/demo.js'
import type { ErrorReply, SseServerOptions } from '../src/index.js'
import { recordingProxy } from './browser-page.js'
import { publish, PUB, startServer, type Running } from './helpers.js'
import { browserMissing, canRun, launchChromium } from './needs.js'
import { until as untilWithin, type Teardown } from './process.js'

const WAIT_MS = 8000 // how long a page may take to show something before the test fails
const TICK_MS = 100 // a fast `time` tick: several lines a second to hide

const until = <T>(probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, what: () => string, ms = WAIT_MS): Promise<T> => untilWithin(probe, what, ms)

/**
 * A server with the demo attached, serving public/ from the package directory (publicDir left
 * undefined: src/server/options.ts PACKAGE_PUBLIC), as `rawsse` does. Its error replies are
 * collected: Chromium asks for /favicon.ico from the browser process, so Playwright's request
 * events never show that request; its 404 shows only on the server and in the page's console.
 */
async function hubServer(t: Teardown, opts: SseServerOptions = {}): Promise<Running & { errorReplies: string[] }> {
  const running = await startServer(t, { publicDir: undefined, retryMs: 300, ...opts })
  t.teardown(attachDemo(running.server))
  const errorReplies: string[] = []
  running.server.on('error-reply', (r: ErrorReply) => errorReplies.push(`${r.status} ${r.method} ${r.path}`))
  return { ...running, errorReplies }
}

/** A page, what went wrong on it (console errors, uncaught errors, failed requests) and the paths it fetched. */
interface Watched {
  page: Page
  errors: string[]
  fetched: string[]
}

let browser: Browser | null = null

async function newContext(t: Teardown): Promise<BrowserContext> {
  const context = await browser!.newContext({ viewport: { width: 1000, height: 760 }, deviceScaleFactor: 1 })
  t.teardown(() => context.close())
  return context
}

/**
 * A new tab on `file`, token in the fragment: in its own context (so with empty localStorage and
 * no other tab to share a connection with), or in `context` beside its other tabs.
 */
async function open(t: Teardown, base: string, file: string, context?: BrowserContext, token = PUB): Promise<Watched> {
  const page = await (context ?? (await newContext(t))).newPage()
  const w: Watched = { page, errors: [], fetched: [] }
  page.on('console', (m) => m.type() === 'error' && w.errors.push(`console: ${m.text()}`))
  page.on('pageerror', (err) => w.errors.push(`pageerror: ${err.message}`))
  page.on('response', (r) => {
    w.fetched.push(`${r.status()} ${new URL(r.url()).pathname}`)
    if (r.status() >= 400) w.errors.push(`${r.status()} ${r.url()}`)
  })
  page.on('dialog', (d) => {
    w.errors.push(`dialog: ${d.message()}`)
    void d.dismiss().catch(() => {})
  })
  await page.goto(`${base}/${file}#token=${encodeURIComponent(token)}`)
  return w
}

/** One line of the hub's log: its event name, the id it shows, the data, and whether it is shown. */
interface Line {
  kind: string
  id: string
  data: string
  shown: boolean
}

/** Every line in the log, newest first, read in one go (the log changes ten times a second). */
const lines = async (page: Page): Promise<Line[]> =>
  (await page.evaluate(`[...document.querySelectorAll('#log li')].map((li) => ({
    kind: li.querySelector('.kind')?.textContent ?? '',
    id: li.querySelector('.id')?.textContent ?? '',
    data: li.lastChild.textContent,
    shown: li.checkVisibility(),
  }))`)) as Line[]

const shown = (all: Line[], kind: string): Line[] => all.filter((l) => l.shown && l.kind === kind)
const kept = (all: Line[], kind: string): Line[] => all.filter((l) => l.kind === kind)

const checkbox = (page: Page, name: string) => page.locator(`#listening .chip[data-event="${name}"] input[type="checkbox"]`)

/** The count on a name's chip. */
async function countOf(page: Page, name: string): Promise<number> {
  const text = await page.locator(`#listening .chip[data-event="${name}"] .count`).textContent()
  return Number.parseInt(text ?? '', 10)
}

/** Waits until `name`'s count has grown by `more` from `from`: that many more events arrived. */
async function arrive(page: Page, name: string, from: number, more: number): Promise<number> {
  let n = from
  return until(
    async () => ((n = await countOf(page, name)) >= from + more ? n : null),
    () => `${more} more ${name} events than ${from} (count now ${n})`,
  )
}

async function waitConnected(page: Page): Promise<void> {
  await until(async () => (await page.locator('#status').getAttribute('data-state')) === 'connected', () => `the hub to connect`)
}

/** The role the hub shows for its tab (`data-role`: leader, follower, alone, or '' with no connection) and its words. */
async function roleOf(page: Page): Promise<{ role: string; text: string; sharing: string }> {
  const role = (await page.locator('#role').getAttribute('data-role')) ?? ''
  return { role, text: (await page.locator('#role').textContent()) ?? '', sharing: (await page.locator('#sharing').textContent()) ?? '' }
}

async function waitRole(page: Page, role: string): Promise<void> {
  let seen = ''
  await until(async () => (seen = (await roleOf(page)).role) === role, () => `the hub to show role ${role} (shows ${JSON.stringify(seen)})`)
}

async function streamsOpen(base: string): Promise<number> {
  const res = await fetch(`${base}/stats`, { headers: { authorization: `Bearer ${PUB}` } })
  return ((await res.json()) as { clients: number }).clients
}

interface Asserts {
  same(found: unknown, wanted: unknown, message: string): unknown
}

function noTrouble(t: Asserts, w: Watched, errorReplies: string[]): void {
  t.same(w.errors, [], `no console error, script error, dialog or failed request on ${w.page.url()}`)
  t.same(errorReplies, [], 'the server answered no request with an error (no /favicon.ico 404)')
}

if (canRun(t, 'demo-hub', 'hub browser tests', await browserMissing())) {
  t.before(async () => {
    browser = await launchChromium()
  })
  t.teardown(() => browser?.close())

  t.test('the time tick can be hidden and shown by its checkbox; messages stay; the choice survives a reload', async (t) => {
    const { base, errorReplies } = await hubServer(t, { tickMs: TICK_MS })
    const hub = await open(t, base, 'index.html')
    const { page } = hub
    await waitConnected(page)

    // Until the user chooses, time is hidden: counted, not shown.
    t.equal(await checkbox(page, 'time').isChecked(), false, 'time starts unchecked')
    t.equal(await checkbox(page, 'message').isChecked(), true, 'message starts checked')
    await arrive(page, 'time', 0, 3)
    let all = await lines(page)
    t.ok(kept(all, 'time').length >= 3, 'the ticks are in the log')
    t.same(shown(all, 'time'), [], 'but none is shown')
    t.ok(shown(all, 'ready').length === 1, 'the ready line is shown: the page’s own lines are not filtered')

    // Shown, from the keyboard: focus the checkbox, press Space.
    await checkbox(page, 'time').focus()
    await page.keyboard.press('Space')
    t.equal(await checkbox(page, 'time').isChecked(), true, 'Space checks time')
    all = await lines(page)
    t.equal(shown(all, 'time').length, kept(all, 'time').length, 'every tick received so far is shown')
    let before = shown(all, 'time').length
    await until(async () => shown(await lines(page), 'time').length >= before + 3, () => 'new ticks to be shown')

    // A few messages between the ticks, published over HTTP like any publisher.
    for (const text of ['one', 'two', 'three']) t.equal((await publish(base, '', `message ${text}`)).status, 200)
    await until(async () => shown(await lines(page), 'message').length === 3, () => 'the three messages to be shown')

    // Hidden: ticks keep arriving and being counted, none is shown; the messages stay.
    await checkbox(page, 'time').click()
    t.equal(await checkbox(page, 'time').isChecked(), false, 'a click unchecks time')
    const countWhenHidden = await countOf(page, 'time')
    await arrive(page, 'time', countWhenHidden, 5)
    all = await lines(page)
    t.same(shown(all, 'time'), [], 'no tick is shown, not even the ones that arrived since')
    t.ok(kept(all, 'time').length >= countWhenHidden + 5, 'while they go on arriving')
    const messages = shown(all, 'message')
    t.same(
      messages.map((l) => l.data),
      ['message three', 'message two', 'message one'],
      'the messages are all shown, newest first',
    )
    t.ok(
      messages.every((l) => /^#\d+$/.test(l.id)),
      'each message shows its id (it changed); ids are still worked out from every event',
    )
    t.same(
      kept(all, 'time').filter((l) => l.id !== ''),
      [],
      'no tick shows an id: a tick repeats the last one',
    )
    t.match(await page.locator('#listening .chip[data-event="time"]').getAttribute('class'), /\boff\b/, 'the time chip looks off')

    // Shown again: every tick is back, including the ones that arrived while hidden.
    await checkbox(page, 'time').check()
    all = await lines(page)
    t.equal(shown(all, 'time').length, kept(all, 'time').length, 'checking time shows all its lines again')
    before = shown(all, 'time').length
    await until(async () => shown(await lines(page), 'time').length >= before + 2, () => 'new ticks to be shown again')

    // The choice is kept: checked survives a reload, and so does unchecked.
    await page.reload()
    await waitConnected(page)
    t.equal(await checkbox(page, 'time').isChecked(), true, 'after a reload time is still checked')
    await until(async () => shown(await lines(page), 'time').length >= 2, () => 'ticks to be shown after the reload')
    await checkbox(page, 'time').uncheck()
    await page.reload()
    await waitConnected(page)
    t.equal(await checkbox(page, 'time').isChecked(), false, 'after a reload time is still unchecked')
    t.equal(await checkbox(page, 'message').isChecked(), true, 'and message still checked')
    await arrive(page, 'time', 0, 3)
    t.same(shown(await lines(page), 'time'), [], 'no tick is shown after the reload')
    noTrouble(t, hub, errorReplies)
  })

  t.test('a name the user listens to gets its own checkbox and count; hidden lines leave the full log first', async (t) => {
    const { server, base, errorReplies } = await hubServer(t)
    const hub = await open(t, base, 'index.html')
    const { page } = hub
    await waitConnected(page)
    await page.locator('#event-name').fill('alert')
    await page.locator('#event-name').press('Enter')
    await until(() => checkbox(page, 'alert').count(), () => 'a checkbox for alert')
    t.equal(await checkbox(page, 'alert').isChecked(), true, 'a new name is shown')
    t.equal(await countOf(page, 'alert'), 0, 'with a count of 0')

    for (const text of ['keep me', 'and me']) server.broadcast({ data: text })
    server.broadcast({ event: 'alert', data: 'disk almost full' })
    await arrive(page, 'alert', 0, 1)
    await checkbox(page, 'alert').uncheck()
    t.same(shown(await lines(page), 'alert'), [], 'alert lines are hidden by their checkbox')

    // The log keeps 500 lines. 600 hidden events (time, from the server's own broadcast) must not
    // push the two messages out: hidden lines are the first to go.
    for (let i = 0; i < 600; i++) server.broadcast({ event: 'time', data: `burst ${i}` })
    await arrive(page, 'time', 0, 600)
    const all = await lines(page)
    t.equal(all.length, 500, 'the log is at its 500 lines')
    t.same(
      shown(all, 'message').map((l) => l.data),
      ['and me', 'keep me'],
      'both messages are still there and shown',
    )
    t.equal(shown(all, 'ready').length, 1, 'so is the ready line')
    t.equal(kept(all, 'alert').length, 0, 'the hidden alert, the oldest hidden line, went first')
    t.equal(all[0]!.data, 'burst 599', 'the newest tick is the first line')

    // Clear empties the log and starts the counts again.
    await page.locator('#clear').click()
    t.equal((await lines(page)).length, 0, 'Clear empties the log')
    t.equal(await countOf(page, 'time'), 0, 'and zeroes the counts')
    noTrouble(t, hub, errorReplies)
  })

  t.test('two hub tabs share one stream: one shows leading, the other following, /stats counts one, and no URL carries the token', async (t) => {
    // A token of its own, long enough that finding it in a request line cannot be chance. The
    // tabs reach the server through a proxy that records every request head: the server's own
    // view of the URLs (its log would redact a token in a path anyway).
    const secret = 'hub-secret-5c1e8b2d'
    const { server, port, base, errorReplies } = await hubServer(t, { publishTokens: [PUB, secret] })
    const opened: number[] = []
    server.on('connect', (c) => opened.push(c.id))
    const proxy = await recordingProxy(t, port)
    const viaProxy = `http://127.0.0.1:${proxy.port}`
    const context = await newContext(t)
    const first = await open(t, viaProxy, 'index.html', context, secret)
    await waitConnected(first.page)
    await waitRole(first.page, 'leader')
    const second = await open(t, viaProxy, 'index.html', context, secret)
    await waitConnected(second.page)
    await waitRole(second.page, 'follower')
    t.same(await roleOf(first.page), { role: 'leader', text: 'leading', sharing: 'this tab holds the 1 connection shared by this origin’s hub tabs' }, 'the first tab leads')
    t.same(
      await roleOf(second.page),
      { role: 'follower', text: 'following', sharing: 'the events come over the leading tab’s connection, 1 for this origin’s hub tabs' },
      'the second follows',
    )
    t.equal(await streamsOpen(base), 1, '/stats: one stream for the two tabs')
    t.equal(server.connections('default'), 1, 'on channel default')
    t.equal(opened.length, 1, 'and no other was ever opened')

    // A broadcast from the follower's form reaches the one stream, and both tabs show it.
    await second.page.locator('#data').fill('from the follower')
    await second.page.locator('#data').press('Enter')
    await until(async () => (await second.page.locator('#result').textContent()) === 'delivered to 1 client', () => 'the follower’s broadcast to be delivered to the one stream')
    for (const w of [first, second]) {
      await until(async () => (await lines(w.page)).some((l) => l.kind === 'message' && l.data === 'from the follower'), () => `the broadcast on ${w.page.url()}`)
    }

    // The leading tab closes: the other takes the connection over and says so, with no reload.
    await first.page.close()
    await waitRole(second.page, 'leader')
    t.equal((await roleOf(second.page)).text, 'leading', 'the remaining tab now shows leading')
    await until(async () => (await lines(second.page)).some((l) => l.kind === 'leading'), () => 'a line saying this tab took the connection over')
    await until(async () => opened.length === 2 && (await streamsOpen(base)) === 1, () => 'one stream again, the new leader’s')
    t.equal(server.connections('default'), 1, 'the first leader’s stream is gone, the new one is open')
    t.equal(server.broadcast({ data: 'after the handoff' }), 1, 'a broadcast reaches the one stream')
    await until(async () => (await lines(second.page)).some((l) => l.data === 'after the handoff'), () => 'the broadcast on the new leader')

    const streamLines = proxy.seen.lines.filter((l) => l.startsWith('GET /events'))
    t.ok(streamLines.length >= 2, `the server was sent ${streamLines.length} stream requests: ${JSON.stringify(streamLines)}`)
    // The shared leader asks for its tabs' channels, tagged (`?channel=default&tag=channel`), and for nothing else.
    const plain = /^GET \/events(\?(channel=\w+|tag=channel)(&(channel=\w+|tag=channel))*)?$/
    t.same(streamLines.filter((l) => !plain.test(l)), [], `each stream request is GET /events with channels at most: no token in the path or the query (${[...new Set(streamLines)].join(', ')})`)
    t.same(proxy.seen.lines.filter((l) => l.includes(secret)), [], 'no request line of any kind carries the token')
    const streamHeads = proxy.seen.heads.filter((h) => h.startsWith('GET /events '))
    t.ok(streamHeads.every((h) => new RegExp(`^authorization: Bearer ${secret}\r$`, 'im').test(h)), 'every stream request carries it in Authorization')
    noTrouble(t, second, errorReplies)
  })

  t.test('every page links an SVG favicon that answers 200, and no page asks for /favicon.ico', async (t) => {
    const { base, errorReplies } = await hubServer(t)
    for (const file of ['index.html', 'chat.html', 'monitor.html', 'progress.html']) {
      const repliesBefore = errorReplies.length
      const w = await open(t, base, file)
      const icons = await w.page.evaluate(`[...document.querySelectorAll('link[rel~="icon"]')].map((l) => ({ href: l.href, type: l.type }))`)
      t.same(icons, [{ href: `${base}/favicon.svg`, type: 'image/svg+xml' }], `${file} links one icon: /favicon.svg, as SVG`)
      // Once the browser has fetched an icon it has chosen it; without the link that would be a
      // request for /favicon.ico, answered 404.
      await until(
        () => w.fetched.includes('200 /favicon.svg') || errorReplies.length > repliesBefore,
        () => `Chromium to fetch an icon for ${file}; fetched: ${JSON.stringify(w.fetched)}`,
      )
      t.ok(w.fetched.includes('200 /favicon.svg'), `${file}: Chromium fetched the linked icon`)
      noTrouble(t, w, errorReplies)
    }
    const res = await fetch(`${base}/favicon.svg`)
    t.equal(res.status, 200, 'the favicon answers 200')
    t.equal(res.headers.get('content-type'), 'image/svg+xml', 'as SVG')
    t.match(await res.text(), /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, 'an SVG document')
    // There is no public/favicon.ico: any request for it would have been a 404 in errorReplies.
    t.equal((await fetch(`${base}/favicon.ico`)).status, 404, 'no /favicon.ico is served, so none was asked for')
  })
}
