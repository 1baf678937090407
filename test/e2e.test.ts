// The demo pages in public/ driven end to end in Debian's Chromium (/usr/bin/chromium) through
// playwright-core: each page against a real server on 127.0.0.1 port 0 with the demo attached
// (src/demo.ts), and once through the real CLI. Takes a screenshot of each page; with
// UPDATE_SCREENSHOTS=1 they go to public/screenshots/ for the README (otherwise to a temporary
// folder, so a plain test run leaves the work tree as it was).
//
// The demo's server side is also tested over raw sockets, which runs everywhere. Without
// Chromium the browser tests say so and pass (a plain `npm test` on a laptop); under CI=true a
// missing browser fails, so CI can never go green without having run them.

import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page, Request } from 'playwright-core'
import { attachDemo, type DemoOptions } from '../src/demo.js'
import type { ClientView, SseServerOptions } from '../src/index.js'
import { clientId, openStream, PUB, sleep, startServer, TOKEN, type RawClient, type Running } from './helpers.js'
import { browserMissing, canRun, launchChromium } from './needs.js'
import { until as untilWithin, type Teardown } from './process.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const PUBLIC = path.join(ROOT, 'public')
const SHOTS = process.env.UPDATE_SCREENSHOTS === '1' ? path.join(PUBLIC, 'screenshots') : mkdtempSync(path.join(tmpdir(), 'rawsse-shots-'))
const CLI = path.join(ROOT, 'dist', 'cli.js')
const WAIT_MS = 8000 // how long a page may take to show something before the test fails


/** Polls `probe` until it returns something truthy, for as long as a page may take. */
const until = <T>(probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, what: () => string, ms = WAIT_MS): Promise<T> => untilWithin(probe, what, ms)

/** What a page did that a test should know about: dialogs (there must be none) and uncaught errors. */
interface Watched {
  page: Page
  dialogs: string[]
  errors: string[]
}

class Pages {
  readonly all: Watched[] = []
  constructor(
    readonly context: BrowserContext,
    private readonly base: string,
  ) {}

  /** A new tab on `file` of the server, with the publish token in the fragment, as the CLI prints it. */
  async open(file: string, token = PUB): Promise<Watched> {
    const page = await this.context.newPage()
    const w: Watched = { page, dialogs: [], errors: [] }
    page.on('dialog', (d) => {
      w.dialogs.push(`${d.type()}: ${d.message()}`)
      void d.dismiss().catch(() => {})
    })
    page.on('pageerror', (err) => w.errors.push(err.message))
    page.on('response', (r) => {
      if (r.status() >= 400) w.errors.push(`${r.status()} ${r.url()}`)
    })
    await page.goto(`${this.base}/${file}#token=${encodeURIComponent(token)}`)
    this.all.push(w)
    return w
  }
}

let browser: Browser | null = null

async function newContext(t: Teardown, base: string): Promise<Pages> {
  // A phone-to-laptop middle size: what the README screenshots show.
  const context = await browser!.newContext({ viewport: { width: 1000, height: 760 }, deviceScaleFactor: 1 })
  t.teardown(() => context.close())
  return new Pages(context, base)
}

async function demoServer(t: Teardown, opts: SseServerOptions = {}, demo: DemoOptions = {}): Promise<Running> {
  const running = await startServer(t, { publicDir: PUBLIC, retryMs: 300, ...opts })
  const detach = attachDemo(running.server, demo)
  t.teardown(detach)
  return running
}

const texts = (page: Page, selector: string): Promise<string[]> => page.locator(selector).allTextContents()
const attr = (page: Page, selector: string, name: string): Promise<string | null> => page.locator(selector).getAttribute(name)

async function waitStatus(page: Page, state: string): Promise<void> {
  await until(async () => (await attr(page, '#status', 'data-state')) === state, () => `#status to be ${state} on ${page.url()}`)
}

/** Waits until some element matching `selector` has text containing `text`; returns all texts. */
async function waitText(page: Page, selector: string, text: string): Promise<string[]> {
  let seen: string[] = []
  return until(
    async () => {
      seen = await texts(page, selector)
      return seen.some((s) => s.includes(text)) ? seen : null
    },
    () => `"${text}" in ${selector} on ${page.url()}; seen: ${JSON.stringify(seen.slice(0, 10))}`,
  )
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true })
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true })
}

/** Join the chat as `name` with the keyboard: type the name, press Enter. */
async function joinChat(w: Watched, name: string): Promise<void> {
  await w.page.locator('#name').fill(name)
  await w.page.locator('#name').press('Enter')
  await waitStatus(w.page, 'connected')
  await until(async () => !(await w.page.locator('#text').isDisabled()), () => `${name}'s message box to be enabled (hello posted)`)
}

async function say(w: Watched, text: string): Promise<void> {
  await w.page.locator('#text').fill(text)
  await w.page.locator('#text').press('Enter')
  await until(async () => (await w.page.locator('#text').inputValue()) === '', () => `"${text}" to be sent (the box clears on 200)`)
}

const chatMessages = (w: Watched): Promise<string[]> => texts(w.page, '#messages li.msg .text')

interface Asserts {
  same(found: unknown, wanted: unknown, message: string): unknown
}

function noTrouble(t: Asserts, pages: Pages): void {
  for (const w of pages.all) {
    t.same(w.dialogs, [], `no dialog opened on ${w.page.url()}`)
    t.same(w.errors, [], `no script error or failed request on ${w.page.url()}`)
  }
}

// ------------------------------------------------------------------ the demo's server side
// Raw sockets, no browser: these run on every machine.

/** The `data:` of every event named `name` a raw stream has received, parsed as JSON. */
function eventsNamed(c: RawClient, name: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = []
  for (const m of c.received.matchAll(new RegExp(`event: ${name}\ndata: (.*)\n`, 'g'))) out.push(JSON.parse(m[1]!) as Record<string, unknown>)
  return out
}

/** The `presence` events a raw stream has received, in order. */
const presenceOf = (c: RawClient): Array<Record<string, unknown>> => eventsNamed(c, 'presence')

/** The `data:` text of the n-th `presence` event a raw stream has received, as sent. */
function presenceText(c: RawClient, n: number): string {
  const all = [...c.received.matchAll(/event: presence\ndata: (.*)\n/g)]
  if (all[n] === undefined) throw new Error(`no presence event #${n}; received: ${JSON.stringify(c.received)}`)
  return all[n][1]!
}

const presenceCount = (n: number) => (s: string) => s.split('event: presence\n').length - 1 >= n

// Roles in startServer (test/helpers.ts): TOKEN has none (subscribe only); PUB has `publish` and
// `admin`; the `--users` entries below have what they list.
const ANN = { token: 'ann-secret', user: 'ann', roles: ['publish'] }

t.test('demo: publish streams on chat get presence as deltas (a snapshot, then joins and leaves), never kept; others get none', async (t) => {
  const { server, port } = await demoServer(t, { users: [ANN] })
  const bystander = await openStream(port, `/events/${PUB}`)
  t.teardown(() => bystander.close())
  const a = await openStream(port, `/events/${PUB}?channel=chat`)
  t.teardown(() => a.close())
  const idA = clientId(a)
  await a.waitFor(presenceCount(2))
  t.same(
    presenceOf(a),
    [
      { type: 'snapshot', online: [idA], users: {} },
      { type: 'join', client: idA, user: null },
    ],
    'a stream gets the room (itself in it), then its own join, right after its ready',
  )
  t.match(a.received, /event: ready\ndata: [^\n]*\n\n\r\n[0-9a-f]+\r\nid: \d+\nevent: presence\ndata: \{"type":"snapshot"/, 'the snapshot is the first event after ready')

  const b = await openStream(port, `/events/${ANN.token}?channel=chat`)
  const idB = clientId(b)
  await a.waitFor(presenceCount(3))
  t.same(presenceOf(a)[2], { type: 'join', client: idB, user: 'ann' }, 'the others get the join alone: no online list')
  await b.waitFor(presenceCount(2))
  t.same(
    presenceOf(b),
    [
      { type: 'snapshot', online: [idA, idB], users: { [idB]: 'ann' } },
      { type: 'join', client: idB, user: 'ann' },
    ],
    'the newcomer’s snapshot lists the room oldest first, with the user names there are',
  )
  b.close()
  await a.waitFor(presenceCount(4))
  t.same(presenceOf(a)[3], { type: 'leave', client: idB, user: 'ann', reason: 'closed' }, 'and the leave, with its reason')

  const late = await openStream(port, `/events/${PUB}?channel=chat&lastEventId=0`)
  t.teardown(() => late.close())
  const idLate = clientId(late)
  await late.waitFor(presenceCount(2))
  t.same(
    presenceOf(late),
    [
      { type: 'snapshot', online: [idA, idLate], users: {} },
      { type: 'join', client: idLate, user: null },
    ],
    'presence is not kept: a replay from the start holds none; the snapshot says who is here now',
  )
  t.equal(server.stats().history.events, 0, 'nothing of it went into the history')
  t.equal(bystander.received.includes('presence'), false, 'a stream on channel default got no presence')
  t.equal(server.connections('chat'), 2)
})

t.test('demo: no leave is sent at shutdown', async (t) => {
  const { server, port } = await demoServer(t)
  const a = await openStream(port, `/events/${PUB}?channel=chat`)
  const b = await openStream(port, `/events/${PUB}?channel=chat`)
  await a.waitFor(presenceCount(3))
  await server.stop()
  await a.waitClosed()
  await b.waitClosed()
  t.notMatch(a.received + b.received, /"type":"leave"/, 'closing streams get only their last chunk, no presence')
})

t.test('demo: a subscribe-only chat stream opening and closing 50 times writes no history and no presence', async (t) => {
  const { server, port } = await demoServer(t)
  const member = await openStream(port, `/events/${PUB}?channel=chat`)
  t.teardown(() => member.close())
  await member.waitFor(presenceCount(2))
  const reader = await openStream(port, `/events/${TOKEN}?channel=chat`)
  t.teardown(() => reader.close())
  const history = server.stats().history
  t.equal(history.events, 0, 'the history is empty to begin with')

  for (let i = 0; i < 50; i++) {
    const s = await openStream(port, `/events/${TOKEN}?channel=chat`)
    s.close()
    await until(() => server.connections('chat') === 2, () => `subscribe-only stream ${i} to close`)
  }
  // A barrier: a publish stream's join and leave reach the member after anything sent before them.
  const marker = await openStream(port, `/events/${PUB}?channel=chat`)
  const idMarker = clientId(marker)
  marker.close()
  await member.waitFor(presenceCount(4))
  t.same(
    presenceOf(member).slice(1).map((p) => `${p.type} ${p.client}`),
    [`join ${clientId(member)}`, `join ${idMarker}`, `leave ${idMarker}`],
    'the member saw only publish streams come and go',
  )
  t.same(server.stats().history, history, 'server.stats().history is unchanged: events and bytes')
  server.publish('chat', { event: 'chat', data: 'barrier' })
  await reader.waitFor('data: barrier\n')
  t.equal(reader.received.includes('event: presence'), false, 'a subscribe-only stream gets no presence either')
  t.equal(reader.received.includes('event: chat'), true, 'but it gets the room’s messages')
})

t.test('demo: presence bytes do not grow with the room: a join is a delta, the snapshot goes to the newcomer alone', async (t) => {
  const { port } = await demoServer(t)
  const streams: RawClient[] = []
  t.teardown(() => streams.forEach((c) => c.close()))
  for (let i = 0; i < 21; i++) {
    const c = await openStream(port, `/events/${PUB}?channel=chat`)
    streams.push(c)
    await c.waitFor(presenceCount(2))
  }
  const [first, second] = streams
  const last = streams[20]!
  const ids = streams.map(clientId)
  await first!.waitFor(presenceCount(22))
  // presence #0 is first's snapshot, #1 its own join, #2 the 2nd stream's join ... #21 the 21st's.
  const joinOf2nd = presenceText(first!, 2)
  const joinOf21st = presenceText(first!, 21)
  t.equal(joinOf2nd, `{"type":"join","client":${ids[1]},"user":null}`)
  t.equal(joinOf21st, `{"type":"join","client":${ids[20]},"user":null}`)
  t.equal(
    Buffer.byteLength(joinOf21st) - String(ids[20]).length,
    Buffer.byteLength(joinOf2nd) - String(ids[1]).length,
    'with 20 streams open the 21st’s join is as big as the 2nd’s was (but for its id’s digits)',
  )
  t.same(presenceOf(last)[0], { type: 'snapshot', online: ids, users: {} }, 'the newcomer’s snapshot lists all 21, oldest first')
  t.same(presenceOf(second!)[0], { type: 'snapshot', online: ids.slice(0, 2), users: {} }, 'each snapshot was the room as it was then')
  for (const c of streams.slice(0, 20)) {
    t.equal(c.received.split('"type":"snapshot"').length - 1, 1, `stream ${clientId(c)} got one snapshot: its own`)
  }
})
t.test('demo: a task stream gets progress 0..100 % and complete, and no other stream does', async (t) => {
  const { server, port } = await demoServer(t, {}, { taskStepMs: 5 })
  const other = await openStream(port, `/events/${TOKEN}?channel=task&channel=x`)
  t.teardown(() => other.close())
  await other.waitFor('event: complete\n')
  const task = await openStream(port, `/events/${TOKEN}?channel=task`)
  t.teardown(() => task.close())
  const bystander = await openStream(port, `/events/${TOKEN}?channel=x`)
  t.teardown(() => bystander.close())
  await task.waitFor('event: complete\n')
  const id = clientId(task)
  t.same(
    eventsNamed(task, 'progress'),
    [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100].map((percent) => ({ task: id, percent })),
    'eleven steps, in order, for this task',
  )
  t.same(eventsNamed(task, 'complete'), [{ task: id, status: 'done' }])
  t.equal(eventsNamed(other, 'progress').length, 11, 'the earlier task stream got only its own task')
  t.equal(bystander.received.includes('progress'), false, 'a stream on another channel got none of it')
  const replay = await openStream(port, `/events/${TOKEN}?channel=x&lastEventId=0`)
  t.teardown(() => replay.close())
  t.equal(replay.received.includes('progress'), false, 'task events are not kept for replay')
  t.equal(server.connections('task'), 2, 'the server leaves the stream open: the page closes it')
})

t.test('demo: a task stops when its stream closes', async (t) => {
  const { server, port } = await demoServer(t, {}, { taskStepMs: 50 })
  const task = await openStream(port, `/events/${TOKEN}?channel=task`)
  await task.waitFor('"percent":10}')
  task.close()
  await until(() => server.connections('task') === 0, () => 'the task stream to close')
  const before = server.stats().published
  await sleep(200)
  t.equal(server.stats().published, before, 'no progress is sent after the stream is gone')
})

t.test('demo: admin monitor streams get stats only while one is open, and samples are not kept', async (t) => {
  const { server, port } = await demoServer(t, {}, { monitorMs: 20 })
  const m = await openStream(port, `/events/${PUB}?channel=monitor`)
  await m.waitFor((s) => s.split('event: stats').length >= 4)
  const sample = eventsNamed(m, 'stats')[0]!
  t.same(Object.keys(sample).sort(), ['bytesPerSecond', 'channels', 'clients', 'eventsPerSecond', 'heapUsedBytes', 'loopDelayMs', 'rssBytes', 'time'])
  t.equal(sample.clients, 1)
  t.same(sample.channels, { monitor: 1 })
  t.same(Object.keys(sample.loopDelayMs as object).sort(), ['max', 'mean', 'p99'])

  // The samples keep coming while the replay stream opens, and it gets them live too: only the
  // bytes before this marker are its ready and replay. The marker is sent from `connect`, right
  // after the replay was queued and before any timer can run, so no live sample precedes it.
  const onConnect = (c: ClientView): void => void server.send(c.id, { event: 'replay-ends', data: 'here' })
  server.on('connect', onConnect)
  const replay = await openStream(port, `/events/${PUB}?channel=monitor&lastEventId=0`)
  server.off('connect', onConnect)
  await replay.waitFor('event: replay-ends\n')
  const replayed = replay.received.slice(0, replay.received.indexOf('event: replay-ends\n'))
  t.equal(replayed.includes('event: stats'), false, 'a replay holds no old samples')
  t.equal(server.stats().history.events, 0, 'samples never go into the history')
  await replay.waitFor((s) => s.split('event: stats').length >= 2)
  t.pass('a second admin stream gets samples live')
  replay.close()
  m.close()
  await until(() => server.connections('monitor') === 0, () => 'the monitor streams to close')
  const before = server.stats().published
  await sleep(150)
  t.equal(server.stats().published, before, 'the feed stops when nobody watches')
})

t.test('demo: a monitor stream without the admin role gets one denied event and no stats', async (t) => {
  const { server, port } = await demoServer(t, { users: [ANN] }, { monitorMs: 20 })
  const denied = { reason: 'the monitor feed needs a token with the admin role' }
  const plain = await openStream(port, `/events/${TOKEN}?channel=monitor`)
  t.teardown(() => plain.close())
  await plain.waitFor('event: denied\n')
  t.match(plain.received, /event: ready\ndata: [^\n]*\n\n\r\n[0-9a-f]+\r\nid: \d+\nevent: denied\n/, 'denied is the first event after ready')
  const before = server.stats().published
  await sleep(150)
  t.equal(server.stats().published, before, 'no timer runs for a watcher without the admin role')

  const publisher = await openStream(port, `/events/${ANN.token}?channel=monitor`)
  t.teardown(() => publisher.close())
  const admin = await openStream(port, `/events/${PUB}?channel=monitor`)
  t.teardown(() => admin.close())
  await admin.waitFor((s) => s.split('event: stats').length >= 6)
  t.same(eventsNamed(plain, 'denied'), [denied], 'the subscribe-only stream got exactly one denied')
  t.same(eventsNamed(publisher, 'denied'), [denied], 'so did a stream whose token may publish but not administer')
  for (const c of [plain, publisher]) t.equal(c.received.includes('event: stats'), false, 'and no sample, while the admin stream gets them')
  t.equal(admin.received.includes('event: denied'), false, 'the admin stream is not denied')

  admin.close()
  await until(() => server.connections('monitor') === 2, () => 'the admin stream to close')
  const after = server.stats().published
  await sleep(150)
  t.equal(server.stats().published, after, 'the timer stops with the last admin watcher, though two others are open')
})

t.test('demo: detaching stops listening', async (t) => {
  const { server, port } = await startServer(t, { publicDir: PUBLIC })
  const detach = attachDemo(server, { monitorMs: 20 })
  detach()
  const s = await openStream(port, `/events/${PUB}?channel=chat&channel=monitor&channel=task`)
  t.teardown(() => s.close())
  await sleep(100)
  t.equal(s.received.split('event: ').length, 2, 'only the ready event arrived')
})

// ------------------------------------------------------------------ in the browser

if (canRun(t, 'e2e', 'browser tests', await browserMissing())) {
  t.before(async () => {
    browser = await launchChromium()
  })
  t.teardown(() => browser?.close())

  t.test('every page loads, connects, fits a phone screen and works from the keyboard', async (t) => {
    const { server, base } = await demoServer(t, { tickMs: 200 })
    const pages = await newContext(t, base)
    const requests: Request[] = []
    pages.context.on('request', (r) => requests.push(r))

    const hub = await pages.open('index.html')
    await waitStatus(hub.page, 'connected')
    await waitText(hub.page, '#log li', 'ready')
    await waitText(hub.page, '#client', 'client #')
    const tick = await waitText(hub.page, '#log li .kind', 'time')
    t.ok(tick.includes('time'), 'the hub logs the named event time')

    const chat = await pages.open('chat.html')
    await joinChat(chat, 'kay')
    const monitor = await pages.open('monitor.html')
    await waitStatus(monitor.page, 'connected')
    const progress = await pages.open('progress.html')
    t.equal(await progress.page.locator('#start').isEnabled(), true, 'the progress page is ready to start a task')

    t.equal(server.connections('default'), 1, 'the hub streams on channel default')
    t.equal(server.connections('chat'), 1, 'the chat page streams on channel chat')
    t.equal(server.connections('monitor'), 1, 'the monitor page streams on channel monitor')
    t.equal(server.connections('task'), 0, 'the progress page opens no stream before a task starts')
    await until(async () => (await attr(hub.page, '#role', 'data-role')) === 'leader', () => 'the hub, the one hub tab, to show that it leads')

    // The hub and the chat read their streams with RawSse: fetch(), GET /events, the token in
    // Authorization. The monitor keeps the browser's own EventSource, which can only carry it in
    // the URL's path.
    const streams = await Promise.all(
      requests
        .filter((r) => new URL(r.url()).pathname.startsWith('/events'))
        .map(async (r) => `${r.resourceType()} ${r.url().slice(base.length)} ${(await r.allHeaders()).authorization ?? '(no authorization)'}`),
    )
    t.same(
      streams.sort(),
      ['eventsource /events/pub?channel=monitor (no authorization)', 'fetch /events?channel=chat Bearer pub', 'fetch /events?channel=default&tag=channel Bearer pub'],
      'one stream request per page: RawSse’s with a header, EventSource’s with the token in the path',
    )

    // The hub's connect and disconnect buttons, by keyboard.
    await hub.page.locator('#disconnect').focus()
    await hub.page.keyboard.press('Enter')
    await waitStatus(hub.page, 'disconnected')
    await until(() => server.connections('default') === 0, () => 'the hub stream to close on the server')
    t.equal(await hub.page.locator('#connect').isEnabled(), true, 'connect is enabled once disconnected')
    await hub.page.locator('#connect').focus()
    await hub.page.keyboard.press('Space')
    await waitStatus(hub.page, 'connected')
    t.equal(server.connections('default'), 1, 'connect opens a new stream')

    // A user-typed event name: add "alert", publish one, see it in the log.
    await hub.page.locator('#event-name').fill('alert')
    await hub.page.locator('#event-name').press('Enter')
    await waitText(hub.page, '#listening .chip', 'alert')
    server.broadcast({ event: 'alert', data: 'disk almost full' })
    await waitText(hub.page, '#log li', 'disk almost full')
    t.pass('a named event the user typed is shown')

    // The token came from the fragment and stays in the tab, not in the address bar.
    t.notMatch(hub.page.url(), /token=/, 'the token is taken out of the address bar')
    t.match(await attr(hub.page, 'nav a[href^="chat.html"]', 'href'), /#token=pub$/, 'links carry the token for tabs opened from them')

    // Readable on a phone: nothing is wider than a 360 px screen.
    for (const w of pages.all) {
      await w.page.setViewportSize({ width: 360, height: 740 })
      const overflow = (await w.page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth')) as number
      t.equal(overflow, 0, `no sideways scrolling at 360 px on ${w.page.url()}`)
    }
    noTrouble(t, pages)
  })

  t.test('a broadcast from one page and one from the console reach two open hub tabs, over the one stream they share', async (t) => {
    const { server, base } = await demoServer(t, { tickMs: 1000 })
    const pages = await newContext(t, base)
    const a = await pages.open('index.html')
    const b = await pages.open('index.html')
    await waitStatus(a.page, 'connected')
    await waitStatus(b.page, 'connected')

    await a.page.locator('#data').fill('hello from page A')
    await a.page.locator('#data').press('Enter')
    const result = await waitText(a.page, '#result', 'delivered to')
    t.same(result, ['delivered to 1 client'], 'the form shows how many streams the broadcast reached: the one both tabs share')
    for (const w of [a, b]) await waitText(w.page, '#log li', 'hello from page A')

    t.equal(server.broadcast({ data: 'hello from the console' }), 1, 'server.broadcast reaches the shared stream')
    for (const w of [a, b]) {
      const lines = await waitText(w.page, '#log li', 'hello from the console')
      t.equal(lines.filter((l) => l.includes('hello from')).length, 2, 'each page shows each broadcast once')
    }
    // Something in the named-event and typed-name parts of the log for the screenshot.
    await a.page.locator('#event-name').fill('alert')
    await a.page.locator('#event-name').press('Enter')
    server.broadcast({ event: 'alert', data: '{"level":"warning","text":"disk 91% full"}' })
    await waitText(a.page, '#log li', 'disk 91% full')
    await waitText(a.page, '#log li .kind', 'time')
    await a.page.locator('#event-name').blur()
    await shot(a.page, 'index.png')
    noTrouble(t, pages)
  })

  // Pages.open gives each page PUB, which has the publish and admin roles: what the chat's
  // presence and the monitor's samples need (the CLI's printed URL carries such a token too).
  t.test('two chat pages see each other in order, with presence, and markup stays text', async (t) => {
    const { server, base } = await demoServer(t)
    const pages = await newContext(t, base)
    const ann = await pages.open('chat.html')
    await joinChat(ann, 'ann')
    const bob = await pages.open('chat.html')
    await joinChat(bob, 'bob')

    await waitText(ann.page, '#messages li', 'bob joined')
    await waitText(ann.page, '#roster', 'Online (2)')
    await waitText(bob.page, '#roster', 'ann')

    const XSS = '<img src=x onerror=alert(1)>'
    await say(ann, 'hi bob')
    await say(bob, XSS)
    await say(ann, 'see you')
    const expected = ['hi bob', XSS, 'see you']
    for (const w of [ann, bob]) {
      const got = await until(async () => {
        const m = await chatMessages(w)
        return m.length >= 3 ? m : null
      }, () => 'three messages on both pages')
      t.same(got, expected, 'every tab shows the messages in the same order')
      t.equal(await w.page.locator('#messages img').count(), 0, 'the typed <img> did not become an element')
    }
    const who = await texts(bob.page, '#messages li.msg .who')
    t.same(who, ['ann', 'bob', 'ann'], 'each message carries its sender name')

    const annInRoom = await texts(ann.page, '#roster')
    t.match(annInRoom[0], /ann \(you\), bob|bob, ann \(you\)/, 'the roster lists both names')

    // Presence on leave, from the server's disconnect event.
    await bob.page.locator('#leave').click()
    await waitText(ann.page, '#messages li', 'bob left')
    await waitText(ann.page, '#roster', 'Online (1)')
    t.equal(server.connections('chat'), 1, 'one chat stream left')
    await bob.page.locator('#name').fill('bob')
    await bob.page.locator('#name').press('Enter')
    await waitText(ann.page, '#messages li', 'bob joined')
    await waitText(ann.page, '#roster', 'Online (2)')
    await waitText(bob.page, '#roster', 'Online (2)')
    await say(bob, 'back again')
    await waitText(ann.page, '#messages li.msg .text', 'back again')

    // Give the dialog handler a moment: onerror would fire as the broken image fails to load.
    await sleep(300)
    await shot(ann.page, 'chat.png')
    noTrouble(t, pages)
  })

  t.test('the monitor charts move while watched, and the feed stops when nobody watches', async (t) => {
    const { server, base, port } = await demoServer(t, {}, { monitorMs: 250 })
    const pages = await newContext(t, base)
    const hub = await pages.open('index.html')
    await waitStatus(hub.page, 'connected')
    const monitor = await pages.open('monitor.html')
    await waitStatus(monitor.page, 'connected')
    t.equal(server.connections('monitor'), 1, 'one monitor stream')

    const CHARTS = ['clients', 'events', 'bytes', 'memory', 'heap', 'loop']
    const pixels = async (): Promise<string[]> =>
      (await monitor.page.evaluate(`[${CHARTS.map((c) => `document.getElementById('chart-${c}').toDataURL()`).join(',')}]`)) as string[]
    await waitText(monitor.page, '#updated', 'last sample')
    const first = await pixels()

    // Traffic between samples: streams come and go, events go out, so the lines have a shape.
    // The extra streams are raw sockets, not tabs: Chromium opens at most 6 HTTP/1.1
    // connections per host, and each open EventSource holds one of them.
    const extra: RawClient[] = []
    t.teardown(() => extra.forEach((c) => c.close()))
    for (let i = 0; i < 10; i++) {
      for (let j = 0; j < 20 * (i % 3); j++) server.broadcast({ data: `burst ${i}.${j} `.repeat(20) })
      if (i % 6 < 3) extra.push(await openStream(port, `/events/${TOKEN}`))
      else extra.pop()!.close()
      await sleep(250)
    }
    const later = await pixels()
    CHARTS.forEach((c, i) => t.not(later[i], first[i], `the ${c} chart changed over time`))
    const clients = await texts(monitor.page, '#chart-clients')
    t.equal(clients.length, 1, 'the clients chart exists')
    t.match(await attr(monitor.page, '#chart-clients', 'aria-label'), /^Clients: \d+$/, 'the chart says its value in words too')
    await waitText(monitor.page, '#channels td', 'monitor')
    await shot(monitor.page, 'monitor.png')
    noTrouble(t, pages)

    // Nobody watching: the samples stop, so published (which counts each sample) stops growing.
    await monitor.page.close()
    await until(() => server.connections('monitor') === 0, () => 'the monitor stream to close')
    const before = server.stats().published
    await sleep(1000)
    t.equal(server.stats().published, before, 'no samples are sent while no monitor is open')
  })

  t.test('the progress bar reaches 100 % on the page that started the task and nowhere else', async (t) => {
    const { server, base } = await demoServer(t, {}, { taskStepMs: 120 })
    const pages = await newContext(t, base)
    const one = await pages.open('progress.html')
    const two = await pages.open('progress.html')
    const hub = await pages.open('index.html')
    await waitStatus(hub.page, 'connected')
    // The hub listens to the task's event names too: a leak would show in its log.
    for (const name of ['progress', 'complete']) {
      await hub.page.locator('#event-name').fill(name)
      await hub.page.locator('#event-name').press('Enter')
    }
    await waitText(hub.page, '#listening .chip', 'complete')

    const started: ClientView[] = []
    server.on('connect', (c) => c.channels.includes('task') && started.push(c))
    await one.page.locator('#start').click()
    await waitText(one.page, '#state', 'done')
    t.same(await texts(one.page, '#percent'), ['100 %'], 'the bar shows 100 %')
    t.equal(await attr(one.page, '#bar', 'aria-valuenow'), '100', 'and says so to screen readers')
    const steps = (await texts(one.page, '#events li .kind')).filter((k) => k === 'progress').length
    t.equal(steps, 11, 'eleven progress events: 0, 10 ... 100 %')
    t.equal(started.length, 1, 'one task stream was opened')
    await until(() => server.connections('task') === 0, () => 'the page to close its task stream on complete')

    t.same(await texts(two.page, '#percent'), ['0 %'], 'the other progress page stays at 0 %')
    t.equal(await attr(two.page, '#bar', 'aria-valuenow'), '0', 'its bar did not move')
    t.same(await texts(two.page, '#state'), ['idle'], 'and it never started')
    const hubKinds = await texts(hub.page, '#log li .kind')
    t.notOk(hubKinds.includes('progress') || hubKinds.includes('complete'), 'a stream on another channel got none of it')
    // The bar eases to its width; the screenshot should show where it ends.
    const filled = "document.getElementById('bar').getBoundingClientRect().width / document.getElementById('bar').parentElement.clientWidth"
    await until(async () => ((await one.page.evaluate(filled)) as number) > 0.99, () => 'the bar to finish its animation')
    await shot(one.page, 'progress.png')
    noTrouble(t, pages)
  })

  t.test('a chat stream closed by DELETE /clients/ID reconnects and shows what it missed once', async (t) => {
    // A retry long enough that the messages below are surely published while the page is away.
    const { server, base } = await demoServer(t, { retryMs: 1500 })
    const chatIds: number[] = []
    server.on('connect', (c) => c.channels.includes('chat') && chatIds.push(c.id))
    const pages = await newContext(t, base)
    const ann = await pages.open('chat.html')
    await joinChat(ann, 'ann')
    const bob = await pages.open('chat.html')
    await joinChat(bob, 'bob')
    await say(ann, 'before the cut')
    await waitText(bob.page, '#messages li.msg .text', 'before the cut')

    const annId = chatIds[0]!
    const del = await fetch(`${base}/clients/${annId}`, { method: 'DELETE', headers: { authorization: `Bearer ${PUB}` } })
    t.same(await del.json(), { closed: 1 }, 'DELETE /clients/ID closes ann’s stream')
    await waitText(ann.page, '#messages li', 'reconnecting')
    for (const text of ['missed 1', 'missed 2', 'missed 3']) await say(bob, text)
    t.equal(server.connections('chat'), 1, 'the messages went out while ann was away')

    await until(() => chatIds.length === 3, () => 'ann’s page to reconnect by itself')
    await waitStatus(ann.page, 'connected')
    await waitText(ann.page, '#messages li.msg .text', 'missed 3')
    await until(async () => !(await ann.page.locator('#text').isDisabled()), () => 'ann’s box to be enabled again')
    await say(ann, 'after the cut')
    await waitText(bob.page, '#messages li.msg .text', 'after the cut')
    await waitText(ann.page, '#messages li.msg .text', 'after the cut')
    t.same(await chatMessages(ann), ['before the cut', 'missed 1', 'missed 2', 'missed 3', 'after the cut'], 'each message once, in order')
    const lines = await texts(ann.page, '#messages li')
    const divider = lines.findIndex((l) => l.includes('messages you missed follow'))
    const firstMissed = lines.findIndex((l) => l.includes('missed 1'))
    t.ok(divider !== -1 && divider < firstMissed, 'the missed messages follow the "reconnected" line')
    // Presence is not kept for replay, so ann's page does not learn why her old stream closed;
    // it saw the cut, and the new stream's snapshot gives the room as it is.
    t.ok(lines.some((l) => l.includes('connection lost; reconnecting')), 'ann’s page saw the cut')
    t.notOk(lines.some((l) => l.includes('history gap')), 'no reset: the last id was in history')
    await waitText(ann.page, '#roster', 'Online (2)')
    await waitText(bob.page, '#messages li', 'ann left (closed by the server: admin)')
    noTrouble(t, pages)
  })

  t.test('a chat page whose last event was presence resumes from that id with RawSse’s own reconnect: no gap, missed messages once', async (t) => {
    // Presence goes to one stream at a time and is not kept, but the server knows where its ids
    // fell (CONTRACT "Details"): the page needs no reconnect of its own.
    const { server, base, port } = await demoServer(t)
    const chatIds: number[] = []
    server.on('connect', (c) => c.channels.includes('chat') && chatIds.push(c.id))
    const lastTo = new Map<number, string>() // stream → id of the last event sent to it alone
    server.on('publish', (p) => p.target.client !== undefined && lastTo.set(p.target.client, p.id))
    const pages = await newContext(t, base)
    const streams: Request[] = []
    pages.context.on('request', (r) => new URL(r.url()).pathname === '/events' && streams.push(r))
    const ann = await pages.open('chat.html')
    await joinChat(ann, 'ann')
    const bob = await pages.open('chat.html')
    await joinChat(bob, 'bob')
    await say(ann, 'before the cut')
    await waitText(ann.page, '#messages li.msg .text', 'before the cut')

    // A stream comes and goes: the last events ann's page gets are a join and a leave.
    const carol = await openStream(port, `/events/${PUB}?channel=chat`)
    const carolId = clientId(carol)
    carol.close()
    await waitText(ann.page, '#messages li', `#${carolId} left`)
    await waitText(ann.page, '#roster', 'Online (2)')

    const annId = chatIds[0]!
    const presenceId = lastTo.get(annId)
    t.ok(presenceId, 'the last event ann’s stream got went to it alone')
    t.equal(server.closeClient(annId), true, 'ann’s stream is closed by the server')
    await waitText(ann.page, '#messages li', 'reconnecting')
    for (const text of ['missed 1', 'missed 2']) await say(bob, text)
    t.equal(server.connections('chat'), 1, 'the messages went out while ann was away')

    await waitStatus(ann.page, 'connected')
    await waitText(ann.page, '#messages li.msg .text', 'missed 2')
    await until(async () => !(await ann.page.locator('#text').isDisabled()), () => 'ann’s box to be enabled again')
    t.same(await chatMessages(ann), ['before the cut', 'missed 1', 'missed 2'], 'each message once, in order')
    const lines = await texts(ann.page, '#messages li')
    t.notOk(lines.some((l) => l.includes('history gap')), 'no reset')
    t.equal((await streams.at(-1)!.allHeaders())['last-event-id'], presenceId, 'the page resumed with the presence event’s id as Last-Event-ID')
    await waitText(ann.page, '#roster', 'Online (2)')
    noTrouble(t, pages)
  })

  t.test('a monitor page whose token lacks the admin role says why instead of drawing charts', async (t) => {
    const { server, base } = await demoServer(t, {}, { monitorMs: 100 })
    const pages = await newContext(t, base)
    const monitor = await pages.open('monitor.html', TOKEN)
    await waitText(monitor.page, '#error', 'the monitor feed needs a token with the admin role')
    await waitStatus(monitor.page, 'disconnected')
    t.equal(await monitor.page.locator('#charts').isVisible(), false, 'no charts are shown')
    t.equal(await monitor.page.locator('#channels').isVisible(), false, 'nor the channel table')
    await until(() => server.connections('monitor') === 0, () => 'the page to close its stream')
    const before = server.stats().published
    await sleep(300)
    t.equal(server.stats().published, before, 'no samples were taken for it')
    noTrouble(t, pages)
  })

  t.test('through the CLI: the printed demo URL connects, stdin lines arrive, the demo is attached', async (t) => {
    if (!existsSync(CLI)) {
      t.fail(`${CLI} is missing: build first (npm test does)`)
      return
    }
    const child: ChildProcess = spawn(process.execPath, [CLI, '--port', '0', '--stdin', '--tick', '0'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let exited = false
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr!.resume()
    child.on('exit', () => (exited = true))
    t.teardown(() => {
      if (!exited && child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
    })
    const url = await until(() => /^demo page: (\S+)$/m.exec(stdout)?.[1], () => `the demo page line; stdout: ${JSON.stringify(stdout)}`)
    const base = new URL(url).origin
    const pages = await newContext(t, base)
    const page = await pages.context.newPage()
    await page.goto(url)
    await waitStatus(page, 'connected')
    child.stdin!.write('typed at the console\n')
    await waitText(page, '#log li', 'typed at the console')
    t.pass('a line on the CLI’s standard input reached the page')

    await page.locator('nav a[href^="monitor.html"]').click()
    await waitStatus(page, 'connected')
    await waitText(page, '#updated', 'last sample')
    t.pass('the CLI feeds the monitor page: attachDemo is wired in')
    await page.close()
    child.kill('SIGTERM')
    await until(() => exited, () => 'the CLI to exit on SIGTERM')
  })
}
