// POST /tickets and the stream a ticket opens, in one process (CONTRACT "Tickets"): 201 with the
// ticket and its expiry, single use, its TTL, roles and channels capped at the caller's, who may
// ask, bodies refused, and the library's createTicket(). Across --workers and Redis:
// test/app-cluster.test.ts.

import t from 'tap'
import { randomBytes } from 'node:crypto'
import * as jose from 'jose'
import type { ErrorReply } from '../src/index.js'
import { MAX_TICKET_BODY_BYTES } from '../src/server/limits.js'
import { ev, openStream, parseResponse, PUB, publish, RawClient, rawRequest, sleep, startServer, TOKEN } from './helpers.js'

const SECRET = randomBytes(48)
const UNKNOWN_401 = 'HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\nConnection: close\r\n\r\nunknown token\n'

interface Answer {
  status: number
  json: Record<string, unknown>
}

/** POST /tickets with `body` (an object is sent as JSON, a string as is, undefined as none). */
async function ticket(base: string, token: string | null, body?: object | string): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (token !== null) headers.authorization = `Bearer ${token}`
  const res = await fetch(`${base}/tickets`, { method: 'POST', headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

const get = (port: number, target: string): Promise<string> => rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
const readyOf = (c: RawClient): unknown => JSON.parse(/event: ready\ndata: (\{[^\n]*\})\n/.exec(c.received)![1]!)

t.test('POST /tickets: 201 with a ticket and its expiry; it opens one stream, then it is spent', async (t) => {
  const r = await startServer(t, { users: [{ token: 'backend', user: 'app', roles: ['publish', 'vip'] }] })
  const replies: ErrorReply[] = []
  r.server.on('error-reply', (e) => replies.push(e))
  const before = Date.now()
  const a = await ticket(r.base, 'backend', { user: 'alice', roles: ['vip'], channels: ['news'] })
  t.equal(a.status, 201)
  t.same(Object.keys(a.json), ['ticket', 'expiresAt'])
  const tk = a.json.ticket as string
  t.match(tk, /^[A-Za-z0-9_-]{32}$/, '192 random bits, URL-safe')
  const ends = Date.parse(a.json.expiresAt as string)
  t.ok(ends >= before + 30_000 - 1000 && ends <= Date.now() + 30_000 + 1000, `expiresAt 30 s ahead: ${a.json.expiresAt as string}`)
  t.equal(new Date(ends).toISOString(), a.json.expiresAt, 'an ISO time')

  const s = await openStream(r.port, `/events/${tk}?channel=news`)
  const rd = readyOf(s) as { client: number; key: string }
  t.same(rd, { client: rd.client, user: 'alice', channels: ['news'], key: rd.key })
  t.equal(await get(r.port, `/events/${tk}?channel=news`), UNKNOWN_401, 'presented again: 401')
  t.equal(replies.at(-1)?.refusal, 'ticket: unknown, spent or expired', 'the log says why')
  t.same(await publish(r.base, 'role=vip', 'for vips', PUB), { status: 200, json: { id: '1', delivered: 1 } }, 'its roles are the stream\'s')
  await s.waitFor(ev('1', 'for vips'))
  s.close()
})

t.test('a ticket presented twice at the same moment opens exactly one stream', async (t) => {
  const r = await startServer(t)
  const tk = (await ticket(r.base, PUB)).json.ticket as string
  const answers = await Promise.all([get(r.port, `/events/${tk}`), get(r.port, `/events/${tk}`)].map((p) => p.catch(() => '')))
  // The stream one stays open until rawRequest's timeout; the other is refused at once.
  t.equal(answers.filter((a) => a.startsWith('HTTP/1.1 200 ')).length, 1, 'one stream')
  t.equal(answers.filter((a) => a === UNKNOWN_401).length, 1, 'one 401')
})

t.test('TTL: a ticket unused past ttlSeconds is refused; the stream a ticket opened outlives it', async (t) => {
  const r = await startServer(t)
  const late = (await ticket(r.base, PUB, { ttlSeconds: 1 })).json.ticket as string
  const used = (await ticket(r.base, PUB, { ttlSeconds: 1 })).json.ticket as string
  const s = await openStream(r.port, `/events/${used}`)
  await sleep(1300)
  t.equal(await get(r.port, `/events/${late}`), UNKNOWN_401, 'expired unused: 401')
  await publish(r.base, '', 'after the ttl', PUB)
  await s.waitFor(ev('1', 'after the ttl'))
  t.notOk(s.closed, 'the stream it opened stays open')
  s.close()
})

t.test("roles and channels are capped at the caller's; who may ask", async (t) => {
  const jwt = (claims: jose.JWTPayload): Promise<string> => new jose.SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(SECRET)
  const r = await startServer(t, {
    jwt: { secrets: [SECRET] },
    users: [
      { token: 'pub-only', user: 'p', roles: ['publish'] },
      { token: 'admin-only', user: 'a', roles: ['admin'] },
    ],
  })
  t.same(await ticket(r.base, 'pub-only', { roles: ['admin'] }), { status: 403, json: { error: 'role not allowed', role: 'admin' } })
  t.equal((await ticket(r.base, 'pub-only', { roles: ['publish'] })).status, 201, 'its own role')
  t.equal((await ticket(r.base, 'admin-only')).status, 201, 'the admin role may ask too')
  t.same(await ticket(r.base, TOKEN), { status: 403, json: { error: 'the token lacks the publish or admin role' } }, 'a stream-only token')
  t.same(await ticket(r.base, null), { status: 401, json: { error: 'a valid bearer token is required' } }, 'no token')

  const newsDesk = await jwt({ rawsse: { roles: ['publish'], channels: ['news', 'desk:*'] } })
  t.same(await ticket(r.base, newsDesk, { channels: ['sports'] }), { status: 403, json: { error: 'channel not allowed', channel: 'sports' } })
  t.equal((await ticket(r.base, newsDesk, { channels: ['desk:east', 'desk:w*'] })).status, 201, 'names and prefixes within its prefix')
  const inherited = (await ticket(r.base, newsDesk)).json.ticket as string
  const refused = parseResponse(await get(r.port, `/events/${inherited}?channel=sports`))
  t.same([refused.status, JSON.parse(refused.body)], [403, { error: 'channel not allowed', channel: 'sports' }], "no channels asked: the caller's")
})

t.test('a body that is not what the contract says: 400; too big: 413; none: the defaults', async (t) => {
  const r = await startServer(t)
  t.equal((await ticket(r.base, PUB)).status, 201, 'no body')
  t.equal((await ticket(r.base, PUB, '{"user":')).status, 400, 'not JSON')
  t.equal((await ticket(r.base, PUB, '[]')).status, 400, 'not an object')
  t.equal((await ticket(r.base, PUB, { color: 'red' })).status, 400, 'an unknown field')
  t.same(await ticket(r.base, PUB, { ttlSeconds: 301 }), { status: 400, json: { error: 'ttlSeconds must be a whole number from 1 to 300' } })
  t.equal((await ticket(r.base, PUB, { user: 'a\nb' })).status, 400, 'a user with LF')
  const big = JSON.stringify({ user: 'x'.repeat(MAX_TICKET_BODY_BYTES) })
  const answer = await rawRequest(r.port, `POST /tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nContent-Length: ${big.length}\r\n\r\n`)
  t.match(answer, /^HTTP\/1\.1 413 [\s\S]*Connection: close\r\n/, 'over the limit: 413 before the body is read')
  const anon = await rawRequest(r.port, `POST /tickets HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n`)
  t.match(anon, /^HTTP\/1\.1 401 /, 'no token: 401 before the body is read')
  t.equal((await ticket(r.base, PUB)).status, 201, 'the server serves on')
})

t.test('a ticket opens a stream only: POST /publish and HEAD neither take it nor spend it', async (t) => {
  const r = await startServer(t, { authCookie: 'sse' })
  const tk = (await ticket(r.base, PUB, { roles: ['publish'] })).json.ticket as string
  t.equal((await publish(r.base, '', 'x', tk)).status, 401, 'not a bearer for a publish')
  t.match(await rawRequest(r.port, `HEAD /events/${tk} HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 401 /, 'HEAD: 401')
  const s = await openStream(r.port, '/events', { Cookie: `sse=${tk}` })
  t.same((readyOf(s) as { user: unknown }).user, null, 'still good for a stream, from the cookie')
  s.close()
  const viaHeader = (await ticket(r.base, PUB)).json.ticket as string
  const s2 = await openStream(r.port, '/events', { Authorization: `Bearer ${viaHeader}` })
  s2.close()
})

t.test('createTicket(): the library makes one with any role; a bad request rejects with status 400', async (t) => {
  const r = await startServer(t)
  const made = await r.server.createTicket({ user: 'lib', roles: ['admin'], channels: ['ops'], ttlSeconds: 60 })
  t.match(made.ticket, /^[A-Za-z0-9_-]{32}$/)
  t.ok(made.expiresAt > Date.now() + 59_000)
  const s = await openStream(r.port, `/events/${made.ticket}?channel=ops`)
  t.same((readyOf(s) as { user: unknown }).user, 'lib')
  s.close()
  const statusOf = (p: Promise<unknown>): Promise<unknown> => p.then(
    () => 'resolved',
    (e: { status?: number }) => e.status,
  )
  t.equal(await statusOf(r.server.createTicket({ ttlSeconds: 0 })), 400)
  t.equal(await statusOf(r.server.createTicket({ roles: 'admin' } as never)), 400)
})
