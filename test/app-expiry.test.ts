// A stream whose token ends (CONTRACT "Tokens an application signs", expiry on an open stream):
// `expiring` before `exp`, `expired` and the terminating chunk at it (drops.expired), and a
// reconnection with a fresh token and Last-Event-ID that gets exactly what it missed; a token
// accepted within the leeway after its `exp`; an `exp` too far to matter; many streams on the one
// shared timer.

import t from 'tap'
import { randomBytes } from 'node:crypto'
import * as jose from 'jose'
import { afterReady, chunk, ev, openStream, publish, sleep, startServer, type RawClient } from './helpers.js'
import { until } from './process.js'

const SECRET = randomBytes(48)
const jwt = (claims: jose.JWTPayload): Promise<string> => new jose.SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(SECRET)
const iso = (expS: number): string => new Date(expS * 1000).toISOString()
const expiring = (expS: number): string => chunk(`event: expiring\ndata: {"expiresAt":"${iso(expS)}"}\n\n`)
const expired = (expS: number): string => chunk(`event: expired\ndata: {"expiresAt":"${iso(expS)}"}\n\n`)
const LAST = '0\r\n\r\n'

t.test('a token that lives 3 s: expiring, then expired and the end; a new token and Last-Event-ID miss nothing', async (t) => {
  const r = await startServer(t, { jwt: { secrets: [SECRET] } })
  // exp is in whole seconds: the next second boundary at least 3 s away.
  const exp = Math.ceil(Date.now() / 1000) + 3
  const s = await openStream(r.port, `/events/${await jwt({ sub: 'ann', exp })}?channel=news`)
  const openedAt = Date.now()
  await publish(r.base, 'channel=news', 'one', 'pub')
  await s.waitFor(expiring(exp), 5000)
  const warnedAt = Date.now()
  // 60 s before, or at half the remaining life when that is shorter: half of 3 to 4 s.
  t.ok(warnedAt < exp * 1000, 'expiring comes before exp')
  t.ok(warnedAt - openedAt >= 1000, `expiring at about half the life (${warnedAt - openedAt} ms after the open)`)
  await publish(r.base, 'channel=news', 'two', 'pub')
  await s.waitClosed(5000)
  t.ok(Date.now() >= exp * 1000, 'expired comes at exp, not before')
  t.equal(afterReady(s), ev('1', 'one') + expiring(exp) + ev('2', 'two') + expired(exp) + LAST, 'every byte after ready')
  t.equal(r.server.stats().drops.expired, 1, 'drops.expired')
  t.match((await (await fetch(`${r.base}/metrics`, { headers: { authorization: 'Bearer pub' } })).text()), /\nrawsse_drops_total\{reason="expired"\} 1\n/)

  // Published while the page was renewing its token: a reconnection resumes after "two".
  await publish(r.base, 'channel=news', 'three', 'pub')
  await publish(r.base, 'channel=news', 'four', 'pub')
  const again = await openStream(r.port, `/events/${await jwt({ sub: 'ann', exp: Math.ceil(Date.now() / 1000) + 3600 })}?channel=news`, { 'Last-Event-ID': '2' })
  await again.waitFor(ev('4', 'four'))
  t.equal(afterReady(again), ev('3', 'three') + ev('4', 'four'), 'exactly what it missed, no reset')
  again.close()
})

t.test('a token accepted within the leeway after its exp: ready and its replay, then expired at once', async (t) => {
  const r = await startServer(t, { jwt: { secrets: [SECRET] } })
  await publish(r.base, '', 'kept', 'pub')
  const exp = Math.floor(Date.now() / 1000) - 10
  const s = await openStream(r.port, `/events/${await jwt({ exp })}`, { 'Last-Event-ID': '0' })
  await s.waitClosed(3000)
  t.equal(afterReady(s), ev('1', 'kept') + expired(exp) + LAST, 'no expiring: its time has passed too')
  t.equal(r.server.stats().drops.expired, 1)
})

t.test('an exp too far away to matter (1e300 s) is taken as none: the stream stays', async (t) => {
  const r = await startServer(t, { jwt: { secrets: [SECRET] } })
  const s = await openStream(r.port, `/events/${await jwt({ sub: 'far', exp: 1e300 })}`)
  await publish(r.base, '', 'still here', 'pub')
  await s.waitFor(ev('1', 'still here'))
  t.notOk(s.closed)
  s.close()
})

t.test("the authenticate hook's expiresAt ends a stream the same way", async (t) => {
  const ends = Date.now() + 1500
  const r = await startServer(t, { authenticate: () => ({ user: 'hooked', roles: [], expiresAt: ends }) })
  const s = await openStream(r.port, '/events/from-the-hook')
  await s.waitClosed(4000)
  const at = new Date(ends).toISOString()
  t.equal(afterReady(s), chunk(`event: expiring\ndata: {"expiresAt":"${at}"}\n\n`) + chunk(`event: expired\ndata: {"expiresAt":"${at}"}\n\n`) + LAST)
})

t.test('300 streams ending together share one timer, and all of them get their end', async (t) => {
  const r = await startServer(t, { jwt: { secrets: [SECRET] } })
  const timers = (): number => process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length
  const before = timers()
  const exp = Math.ceil(Date.now() / 1000) + 2
  const token = await jwt({ exp })
  const streams: RawClient[] = []
  for (let i = 0; i < 300; i++) streams.push(await openStream(r.port, `/events/${token}`))
  t.ok(timers() - before <= 3, `timers before ${before}, with 300 streams ${timers()}`)
  await until(() => streams.every((s) => s.closed), () => `${streams.filter((s) => !s.closed).length} streams still open`, 8000)
  for (const s of streams) if (afterReady(s) !== expiring(exp) + expired(exp) + LAST) t.fail(`stream got ${JSON.stringify(afterReady(s))}`)
  t.equal(r.server.stats().drops.expired, 300)
})

t.test('a stream that goes before its token ends is forgotten: nothing is sent or counted later', async (t) => {
  const r = await startServer(t, { jwt: { secrets: [SECRET] } })
  const exp = Math.ceil(Date.now() / 1000) + 1
  const s = await openStream(r.port, `/events/${await jwt({ exp })}`)
  s.close()
  await sleep(exp * 1000 - Date.now() + 300)
  t.equal(r.server.stats().drops.expired, 0)
  t.equal(r.server.clientCount, 0)
})
