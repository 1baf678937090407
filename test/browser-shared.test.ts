// RawSse with `shared: true` across the tabs of one Chromium context (src/browser/shared.ts,
// leader.ts), against a real SseServer on 127.0.0.1 port 0: one stream for every tab, each tab
// only its channels, the seventh unshared tab waiting for a connection, a new leader after the
// leading tab closes or crashes with no gap and no duplicate in any tab, a change of channels in
// one tab changing only that tab, a frozen tab keeping its place, and the fallback where Web Locks
// are missing. Without Chromium it says so and passes; under CI=true that fails (test/needs.ts).

import t, { type Test } from 'tap'
import type { Browser, BrowserContext } from 'playwright-core'
import { publish, PUB, sleep, startServer, TOKEN } from './helpers.js'
import { logOf, messageIds, openTab, pageDir, seen, sse, start, type Tab } from './browser-page.js'
import { browserMissing, canRun, launchChromium } from './needs.js'
import { until, type Teardown } from './process.js'

let browser: Browser | null = null

async function context(t: Teardown): Promise<BrowserContext> {
  const c = await browser!.newContext()
  t.teardown(() => c.close())
  return c
}

async function tabs(t: Teardown, base: string, n: number): Promise<Tab[]> {
  const c = await context(t)
  const out: Tab[] = []
  for (let i = 0; i < n; i++) out.push(await openTab(c, base))
  return out
}

async function streams(base: string): Promise<{ clients: number; channels: Record<string, number> }> {
  const res = await fetch(`${base}/stats`, { headers: { authorization: `Bearer ${PUB}` } })
  return (await res.json()) as { clients: number; channels: Record<string, number> }
}

const open = (tab: Tab): Promise<boolean> => sse(tab, (s) => s.readyState === 1)
const role = (tab: Tab): Promise<string> => sse(tab, (s) => s.role)

/** 1..n as strings: the ids a stream of a server with firstEventId 1 gets. */
const range = (from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => String(from + i))

/** Every id once, each one more than the last: no gap, no duplicate. */
function consecutive(ids: string[]): boolean {
  return ids.every((id, i) => i === 0 || Number(id) === Number(ids[i - 1]) + 1)
}

/**
 * Publishes to `channel` every 50 ms (20 events/s) until stop(); the server assigns the ids.
 * Returns the last id published.
 */
function publisher(base: string, channel: string): { stop(): Promise<number> } {
  let last = 0
  let running = true
  const done = (async () => {
    while (running) {
      const r = await publish(base, `channel=${channel}`, `e${last + 1}`)
      last = Number(r.json.id)
      await sleep(50)
    }
  })()
  return {
    async stop() {
      running = false
      await done
      return last
    },
  }
}

/** Close or crash the leading tab while 20 events/s are published; the rest carry on without a gap. */
async function handoff(t: Test, how: 'close' | 'crash'): Promise<void> {
  const { base, server } = await startServer(t, { publicDir: pageDir(t), retryMs: 300 })
  const all = await tabs(t, base, 4)
  for (const tab of all) await start(tab, { channels: ['news'], token: TOKEN, shared: true })
  for (const tab of all) await until(() => open(tab), () => 'every tab open')
  const pub = publisher(base, 'news')
  await sleep(600)
  const roles = await Promise.all(all.map(role))
  const leader = all[roles.indexOf('leader')]!
  t.equal(roles.filter((r) => r === 'leader').length, 1, `one leader: ${roles.join(', ')}`)
  const rest = all.filter((tab) => tab !== leader)

  const reconnected = new Promise<number>((resolve) => server.once('connect', () => resolve(Date.now())))
  const from = Date.now()
  if (how === 'close') {
    await leader.page.close()
  } else {
    const crashed = new Promise<void>((resolve) => leader.page.once('crash', () => resolve()))
    const cdp = await leader.page.context().newCDPSession(leader.page)
    void cdp.send('Page.crash').catch(() => {})
    await crashed
    t.pass('the leading tab\'s renderer crashed')
  }
  const handoffMs = (await reconnected) - from
  t.ok(handoffMs < 2000, `a new leader's stream within 2 s (${handoffMs} ms)`)
  t.comment(`handoff after ${how}: ${handoffMs} ms`)
  await sleep(600)
  const last = await pub.stop()
  const newRoles = await Promise.all(rest.map(role))
  t.equal(newRoles.filter((r) => r === 'leader').length, 1, `one new leader: ${newRoles.join(', ')}`)
  t.equal((await streams(base)).clients, 1, 'one stream again')
  for (const [i, tab] of rest.entries()) {
    await until(async () => (await messageIds(tab)).at(-1) === String(last), () => `tab ${i} got the last event ${last}`)
    const ids = await messageIds(tab)
    t.ok(consecutive(ids) && ids.length === last - Number(ids[0]) + 1, `tab ${i}: ${ids.length} events, ${ids[0]}..${ids.at(-1)}, no gap, no duplicate${consecutive(ids) ? '' : `: ${ids.join(',')}`}`)
    t.same(tab.errors, [], `tab ${i}: no page errors`)
  }
}

if (canRun(t, 'browser-shared', 'the shared browser client tests', await browserMissing())) {
  t.before(async () => {
    browser = await launchChromium()
  })
  t.teardown(() => browser?.close())

  t.test('8 tabs sharing: /stats shows one stream, and every tab gets every event in order', async (t) => {
    const { base } = await startServer(t, { publicDir: pageDir(t), retryMs: 300 })
    const all = await tabs(t, base, 8)
    for (const tab of all) await start(tab, { channels: ['news'], token: TOKEN, shared: true })
    for (const tab of all) await until(() => open(tab), () => 'every tab open')
    const stats = await streams(base)
    t.equal(stats.clients, 1, 'one stream for 8 tabs')
    t.same(stats.channels, { news: 1 })
    const roles = await Promise.all(all.map(role))
    t.equal(roles.filter((r) => r === 'leader').length, 1, 'one leader, 7 followers')
    for (let i = 1; i <= 20; i++) await publish(base, 'channel=news', `n${i}`)
    for (const [i, tab] of all.entries()) {
      await until(async () => (await messageIds(tab)).length === 20, () => `tab ${i}: 20 events`)
      t.same(await messageIds(tab), range(1, 20), `tab ${i}: every event, in order, once`)
      t.same(tab.errors, [])
    }
  })

  t.test('tabs with different channels see only theirs, on one stream for the union of their channels, changed live as tabs come and go', async (t) => {
    const { base } = await startServer(t, { publicDir: pageDir(t), retryMs: 300 })
    const all = await tabs(t, base, 6)
    const sets = [['a'], ['a', 'b'], ['a'], ['b'], ['a', 'b'], ['a']]
    for (const [i, tab] of all.entries()) await start(tab, { channels: sets[i], token: TOKEN, shared: true })
    for (const tab of all) await until(() => open(tab), () => 'every tab open')
    let last = ''
    await until(async () => (last = JSON.stringify((await streams(base)).channels)) === '{"a":1,"b":1}', () => `the union a, b: ${last}`)
    t.equal((await streams(base)).clients, 1, 'three channel sets, one stream')
    for (let i = 1; i <= 10; i++) await publish(base, `channel=${i % 2 === 1 ? 'a' : 'b'}`, `x${i}`)
    const want = (set: string[]): string[] => range(1, 10).filter((id) => set.includes(Number(id) % 2 === 1 ? 'a' : 'b'))
    for (const [i, tab] of all.entries()) {
      await until(async () => (await messageIds(tab)).length === want(sets[i]!).length, () => `tab ${i}: its events`)
      await sleep(50)
      t.same(await messageIds(tab), want(sets[i]!), `tab ${i} (${sets[i]}): its channels' events only, in order`)
    }
    // A tab on a channel nobody has: the one stream takes it on, live, and lets it go when the tab closes.
    const extra = await openTab(all[0]!.page.context(), base)
    await start(extra, { channels: ['c'], token: TOKEN, shared: true })
    await until(async () => (await streams(base)).channels.c === 1, () => 'c joins the union')
    t.equal((await streams(base)).clients, 1, 'still one stream')
    await until(() => open(extra), () => 'the new tab open')
    await publish(base, 'channel=c', 'c1')
    await seen(extra, /^message 11 c1$/)
    t.same(await messageIds(extra), ['11'], 'the new tab: its channel only')
    await sleep(100)
    t.same(await messageIds(all[0]!), want(['a']), 'the others: nothing of c')
    await extra.page.close()
    await until(async () => (await streams(base)).channels.c === undefined, () => 'c leaves the union')
    t.same((await streams(base)).channels, { a: 1, b: 1 }, 'back to a, b, on the same stream')
  })

  t.test('8 tabs without sharing: six streams open, the seventh waits for a connection', async (t) => {
    const { base } = await startServer(t, { publicDir: pageDir(t), retryMs: 300 })
    // The pages load first: once six streams hold the browser's six connections, nothing more loads.
    const all = await tabs(t, base, 8)
    for (const tab of all) await start(tab, { channels: ['news'], token: TOKEN })
    await until(async () => (await streams(base)).clients === 6, () => 'six streams')
    await sleep(1500)
    const states = await Promise.all(all.map((tab) => sse(tab, (s) => s.readyState)))
    t.same(states.filter((s) => s === 1).length, 6, `six open: ${states.join(', ')}`)
    t.same(states.filter((s) => s === 0).length, 2, 'two still connecting')
    t.equal((await streams(base)).clients, 6, 'the server has six')
  })

  t.test('the leading tab closes during 20 events/s: another leads within 2 s, no tab has a gap or a duplicate', (t) => handoff(t, 'close'))

  t.test('the leading tab crashes during 20 events/s: another leads within 2 s, no tab has a gap or a duplicate', (t) => handoff(t, 'crash'))

  t.test('subscribe and unsubscribe in one shared tab change what that tab sees and nothing else', async (t) => {
    const { base } = await startServer(t, { publicDir: pageDir(t), retryMs: 300 })
    const all = await tabs(t, base, 3)
    for (const tab of all) await start(tab, { channels: ['a'], token: TOKEN, shared: true })
    for (const tab of all) await until(() => open(tab), () => 'every tab open')
    const [one, two, three] = all as [Tab, Tab, Tab]
    await publish(base, 'channel=a', 'a1')
    await seen(one, /^message 1 a1$/)
    await one.page.evaluate(() => (globalThis as unknown as { sse: { subscribe(c: string): void } }).sse.subscribe('b'))
    await seen(one, /^channels 1 \{"channels":\["a","b"\]\}$/)
    await publish(base, 'channel=b', 'b1')
    await publish(base, 'channel=a', 'a2')
    await seen(one, /^message 3 a2$/)
    await two.page.evaluate(() => (globalThis as unknown as { sse: { unsubscribe(c: string): void } }).sse.unsubscribe('a'))
    await seen(two, /^channels \d* \{"channels":\[\]\}$/)
    await publish(base, 'channel=a', 'a3')
    await publish(base, 'channel=b', 'b2')
    await seen(one, /^message 5 b2$/)
    await seen(three, /^message 4 a3$/)
    await sleep(300)
    t.same(await messageIds(one), ['1', '2', '3', '4', '5'], 'the tab that subscribed to b: a and b')
    t.same(await messageIds(two), ['1', '3'], 'the tab that left a: nothing of a after, no b')
    t.same(await messageIds(three), ['1', '3', '4'], 'the third tab: a only, as before')
    t.same(
      (await logOf(three)).filter((l) => l.startsWith('channels')),
      [],
      'and no `channels` event in the tab that changed nothing',
    )
  })

  t.test('a tab that comes with an old lastEventId is caught up on a stream of its own, then joins the shared one', async (t) => {
    const { base } = await startServer(t, { publicDir: pageDir(t), retryMs: 300 })
    const [one, two, late] = await tabs(t, base, 3)
    for (const tab of [one!, two!]) await start(tab, { channels: ['news'], token: TOKEN, shared: true })
    for (const tab of [one!, two!]) await until(() => open(tab), () => 'both tabs open')
    for (let i = 1; i <= 10; i++) await publish(base, 'channel=news', `n${i}`)
    await until(async () => (await messageIds(two!)).length === 10, () => 'ten events')
    // Its place (3) is in every tab's ring, so the leader catches it up from the ring.
    await start(late!, { channels: ['news'], token: TOKEN, shared: true, lastEventId: '3' })
    await until(async () => (await messageIds(late!)).length === 7, () => 'the late tab has 4..10')
    t.equal((await streams(base)).clients, 1, 'from the ring: no stream of its own')
    await late!.page.close()
    // A place no tab's ring holds (the page kept it from an earlier visit): the server replays it.
    const old = await openTab(one!.page.context(), base)
    await start(old, { channels: ['news'], token: TOKEN, shared: true, lastEventId: 'gone' })
    await seen(old, /^reset gone \{"reason":"history-gap"\}$/)
    t.equal((await streams(base)).clients, 2, 'a catch-up stream of its own, with a `reset` only it sees')
    const { stop } = publisher(base, 'news')
    await sleep(800)
    const last = await stop()
    await until(async () => (await streams(base)).clients === 1, () => 'the catch-up stream closed once it met the shared one')
    for (const tab of [one!, two!, old]) await until(async () => (await messageIds(tab)).at(-1) === String(last), () => `every tab got ${last}`)
    t.same(await messageIds(old), range(11, last), 'the late tab: every event from when it came, once')
    t.same(await messageIds(one!), range(1, last), 'the others: unchanged')
    t.same((await logOf(one!)).filter((l) => l.startsWith('reset')), [], 'and no `reset` for them')
  })

  t.test('a late tab whose place is in the ring but whose channel nobody has: caught up from its place on a stream of its own, then on the shared one once it carries that channel', async (t) => {
    const { base } = await startServer(t, { publicDir: pageDir(t), retryMs: 300 })
    const [one, two, late] = await tabs(t, base, 3)
    for (const tab of [one!, two!]) await start(tab, { channels: ['a'], token: TOKEN, shared: true })
    for (const tab of [one!, two!]) await until(() => open(tab), () => 'both tabs open')
    for (const [channel, data] of [['a', 'a1'], ['b', 'b1'], ['a', 'a2'], ['b', 'b2']]) await publish(base, `channel=${channel}`, data!)
    await until(async () => (await messageIds(two!)).length === 2, () => 'a1 and a2')
    // Its place, 1, is in the ring; the ring has nothing of b, which the shared stream does not carry.
    await start(late!, { channels: ['b'], token: TOKEN, shared: true, lastEventId: '1' })
    await until(async () => (await messageIds(late!)).length === 2, () => 'b1 and b2, from the server')
    t.same(await messageIds(late!), ['2', '4'], 'b since its place: replayed by a stream of its own')
    await until(async () => (await streams(base)).channels.b === 2, () => 'b on the shared stream too')
    for (const [channel, data] of [['b', 'b3'], ['a', 'a3'], ['b', 'b4']]) await publish(base, `channel=${channel}`, data!)
    await until(async () => (await streams(base)).clients === 1, () => 'the catch-up closed once it met the shared one')
    await until(async () => (await messageIds(late!)).length === 4, () => 'b3 and b4')
    await sleep(100)
    t.same(await messageIds(late!), ['2', '4', '5', '7'], 'the late tab: every b event once, in order, nothing of a')
    t.same(await messageIds(one!), ['1', '3', '6'], 'the others: a only')
    t.same(await messageIds(two!), ['1', '3', '6'])
  })

  t.test('a frozen tab keeps its place: after 3 s frozen while events flow, it has every one of them, once', async (t) => {
    const { base } = await startServer(t, { publicDir: pageDir(t), retryMs: 300 })
    const all = await tabs(t, base, 3)
    for (const tab of all) await start(tab, { channels: ['news'], token: TOKEN, shared: true })
    for (const tab of all) await until(() => open(tab), () => 'every tab open')
    const roles = await Promise.all(all.map(role))
    const follower = all[roles.indexOf('follower')]!
    const cdp = await follower.page.context().newCDPSession(follower.page)
    const pub = publisher(base, 'news')
    await sleep(300)
    await cdp.send('Page.setWebLifecycleState', { state: 'frozen' })
    await sleep(3000)
    await cdp.send('Page.setWebLifecycleState', { state: 'active' })
    await sleep(300)
    const last = await pub.stop()
    await until(async () => (await messageIds(follower)).at(-1) === String(last), () => `the frozen tab got the last event ${last}`)
    t.same(await messageIds(follower), range(1, last), `all ${last} events, in order, once`)
  })

  t.test('without Web Locks each tab connects on its own, and says so once in the console', async (t) => {
    const { base } = await startServer(t, { publicDir: pageDir(t), retryMs: 300 })
    const c = await context(t)
    await c.addInitScript(() => Object.defineProperty((globalThis as unknown as { Navigator: { prototype: object } }).Navigator.prototype, 'locks', { get: () => undefined }))
    const [one, two] = [await openTab(c, base), await openTab(c, base)]
    for (const tab of [one, two]) await start(tab, { channels: ['news'], token: TOKEN, shared: true })
    // A second RawSse in the same page: the console was told already.
    await one.page.evaluate(() => new (globalThis as unknown as { RawSse: new (u: string, o: object) => unknown }).RawSse('/events', { shared: true, token: 'tok' }))
    await until(async () => (await streams(base)).clients === 3, () => 'three streams')
    t.equal(await role(one), 'alone')
    t.same(
      one.info.filter((l) => l.startsWith('rawsse:')).length,
      1,
      `one console line per page: ${one.info.join(' | ')}`,
    )
  })
}
