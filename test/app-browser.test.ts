// The auth cookie over CORS in Debian's Chromium (CONTRACT "Tokens an application signs", the
// cookie way): an application on one origin sets an HttpOnly cookie holding a JWT; its page opens
// an `EventSource` with `withCredentials` to rawsse on another origin (--auth-cookie, a specific
// --cors-origin) and gets its events with no token in any URL. The page renews its cookie on
// `expiring`; after `expired` the EventSource reconnects by itself, with the new cookie and
// Last-Event-ID, and misses nothing. With `*` as the origin a browser sends no credentials: the
// page gets an error. Like test/e2e.test.ts, without Chromium it says so and passes; under
// CI=true a missing browser fails.

import t from 'tap'
import { randomBytes } from 'node:crypto'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as jose from 'jose'
import type { Browser } from 'playwright-core'
import { publish, startServer } from './helpers.js'
import { browserMissing, canRun, launchChromium } from './needs.js'
import { until, type Teardown } from './process.js'

const WAIT_MS = 10_000
const SECRET = randomBytes(48)

/**
 * The application: `/` is its page; `/renew` sets a fresh cookie. Each cookie holds a JWT for
 * `user` that lives `lifeS` seconds (the first one) or an hour (a renewed one).
 */
async function app(t: Teardown, rawsseBase: () => string, lifeS: number): Promise<{ origin: string; renewed: () => number }> {
  let renewed = 0
  const cookie = async (life: number): Promise<string> => {
    const token = await new jose.SignJWT({ sub: 'page-user', rawsse: { channels: ['news'] }, exp: Math.floor(Date.now() / 1000) + life })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(SECRET)
    return `sse=${token}; Path=/; HttpOnly; SameSite=Strict`
  }
  const page = (): string => `<!doctype html><meta charset="utf-8"><title>app</title><link rel="icon" href="data:,">
<script>
  window.log = []
  const es = new EventSource('${rawsseBase()}/events?channel=news', { withCredentials: true })
  es.addEventListener('ready', (e) => log.push('ready ' + JSON.parse(e.data).user))
  es.addEventListener('message', (e) => log.push('message ' + e.lastEventId + ' ' + e.data))
  // Renew before the end: the next connection carries the new cookie.
  es.addEventListener('expiring', () => { log.push('expiring'); fetch('/renew', { method: 'POST' }) })
  es.addEventListener('expired', () => log.push('expired'))
  es.onerror = () => log.push('error ' + es.readyState)
</script>`
  const server = http.createServer((req, res) => {
    void (async () => {
      if (req.url === '/renew') {
        renewed++
        res.writeHead(204, { 'Set-Cookie': await cookie(3600) }).end()
      } else {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Set-Cookie': await cookie(lifeS) }).end(page())
      }
    })()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, renewed: () => renewed }
}

if (canRun(t, 'app-browser', 'the auth cookie over CORS in Chromium', await browserMissing())) {
  let browser: Browser | null = null
  t.before(async () => {
    browser = await launchChromium()
  })
  t.teardown(() => browser?.close())

  /** The page's log, read afresh by each call; `last` is what the last call read (for messages). */
  const pageLog = async (t: Teardown, origin: string): Promise<{ (): Promise<string[]>; last: string[] }> => {
    const context = await browser!.newContext()
    t.teardown(() => context.close())
    const tab = await context.newPage()
    await tab.goto(`${origin}/`)
    const read = async (): Promise<string[]> => (read.last = await tab.evaluate(() => (globalThis as unknown as { log: string[] }).log))
    read.last = [] as string[]
    return read
  }

  t.test('a page on another origin reads the stream with the cookie; renews on expiring; resumes after expired with nothing missed', async (t) => {
    let base = ''
    const application = await app(t, () => base, 3)
    const r = await startServer(t, { jwt: { secrets: [SECRET] }, authCookie: 'sse', corsOrigin: application.origin, retryMs: 300 })
    base = r.base
    const log = await pageLog(t, application.origin)
    const seen = (line: string): Promise<boolean> => until(async () => (await log()).includes(line), () => `${line} in ${JSON.stringify(log.last)}`, WAIT_MS)
    await seen('ready page-user')
    await publish(r.base, 'channel=news', 'one')
    await seen('message 1 one')
    await seen('expiring')
    await seen('expired')
    // Published while the page is between connections.
    await publish(r.base, 'channel=news', 'two')
    await until(async () => (await log()).filter((l) => l === 'ready page-user').length === 2, () => `a second ready: ${JSON.stringify(log.last)}`, WAIT_MS)
    await publish(r.base, 'channel=news', 'three')
    await seen('message 3 three')
    const lines = await log()
    t.same(
      lines.filter((l) => l.startsWith('message')),
      ['message 1 one', 'message 2 two', 'message 3 three'],
      'every event once, in order',
    )
    t.equal(application.renewed(), 1, 'the cookie was renewed once')
    t.equal(r.server.stats().drops.expired, 1)
  })

  t.test('with `*` as the origin a browser carries no credentials: the page gets an error, no stream', async (t) => {
    let base = ''
    const application = await app(t, () => base, 3600)
    const r = await startServer(t, { jwt: { secrets: [SECRET] }, authCookie: 'sse', retryMs: 300 })
    base = r.base
    const log = await pageLog(t, application.origin)
    await until(async () => (await log()).some((l) => l.startsWith('error')), () => `an error: ${JSON.stringify(log.last)}`, WAIT_MS)
    t.notOk((await log()).some((l) => l.startsWith('ready')), 'no ready reached the page')
  })
}
