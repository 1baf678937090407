// Tickets (src/server/access/tickets.ts): what POST /tickets may ask for (400 and 403 with their bodies),
// and the in-process store: single use, TTL on an injected clock, and its bound (CONTRACT "Tickets").

import t from 'tap'
import { MemoryTicketStore, TICKET_CHARS, TicketRefused, grantCovers, looksLikeTicket, ticketDigest, ticketRequest, type TicketCaller } from '../src/server/access/tickets.js'
import { TICKET_DEFAULT_TTL_S, TICKET_MAX_TTL_S, TICKET_SWEEP_MS } from '../src/server/limits.js'

const backend: TicketCaller = { roles: ['publish', 'admin', 'vip'] }
const alice: TicketCaller = { roles: ['publish', 'vip'], grants: ['news', 'user:alice:*'] }

/** What ticketRequest() throws, as status and body; 'ok' when it does not. */
function refusal(body: unknown, caller: TicketCaller = backend): unknown {
  try {
    ticketRequest(body, caller)
    return 'ok'
  } catch (err) {
    if (!(err instanceof TicketRefused)) throw err
    return { status: err.status, body: err.body }
  }
}

function clock(start = 1_700_000_000_000) {
  const c = { now: start, fn: () => c.now }
  return c
}

t.test('a ticket is spent on first use: the second presentation, even at once, gets nothing', (t) => {
  const store = new MemoryTicketStore()
  const { ticket } = store.create(ticketRequest({ user: 'alice', roles: ['vip'], channels: ['news'] }, backend))
  t.same(store.spend(ticket), { user: 'alice', roles: ['vip'], grants: ['news'], expiresAt: null }, 'the stream stays open: no expiresAt')
  t.equal(store.spend(ticket), null)
  t.equal(store.size, 0)
  const two = store.create(ticketRequest(undefined, backend)).ticket
  const spends = [store.spend(two), store.spend(two)]
  t.equal(spends.filter((s) => s !== null).length, 1)
  t.end()
})

t.test('a ticket is random, URL-safe, at least 128 bits, and kept only by its digest', (t) => {
  const store = new MemoryTicketStore()
  const a = store.create(ticketRequest({}, backend)).ticket
  const b = store.create(ticketRequest({}, backend)).ticket
  t.not(a, b)
  t.equal(a.length, TICKET_CHARS)
  t.ok(TICKET_CHARS * 6 >= 128)
  t.match(a, /^[A-Za-z0-9_-]+$/)
  t.ok(looksLikeTicket(a))
  const held = [...(store as unknown as { live: Map<string, unknown> }).live.keys()]
  t.same(held.sort(), [ticketDigest(a), ticketDigest(b)].sort())
  t.notOk(held.includes(a))
  for (const s of ['', 'x', a + 'A', a.slice(1), 'eyJhbGciOiJIUzI1NiJ9.e30.' + 'A'.repeat(8), a.slice(0, -1) + '+']) t.equal(store.spend(s), null)
  t.ok(store.spend(a))
  t.end()
})

t.test('TTL: default 30 s, at most 300; spent after it expires gets nothing', (t) => {
  const c = clock()
  const store = new MemoryTicketStore({ now: c.fn })
  const short = store.create(ticketRequest({}, backend))
  t.equal(short.expiresAt, c.now + TICKET_DEFAULT_TTL_S * 1000)
  const long = store.create(ticketRequest({ ttlSeconds: TICKET_MAX_TTL_S }, backend))
  t.equal(long.expiresAt, c.now + TICKET_MAX_TTL_S * 1000)
  const tiny = store.create(ticketRequest({ ttlSeconds: 1 }, backend))
  c.now += 999
  t.ok(store.spend(tiny.ticket), 'a millisecond before it expires')
  c.now = short.expiresAt
  t.equal(store.spend(short.ticket), null, 'at expiresAt it is spent')
  c.now = long.expiresAt - 1
  t.ok(store.spend(long.ticket))
  for (const ttlSeconds of [0, -1, TICKET_MAX_TTL_S + 1, 1.5, '30', Infinity]) {
    t.same(refusal({ ttlSeconds }), { status: 400, body: { error: `ttlSeconds must be a whole number from 1 to ${TICKET_MAX_TTL_S}` } }, String(ttlSeconds))
  }
  t.end()
})

t.test('roles are capped at the caller\'s: asking for more is 403', (t) => {
  t.equal(refusal({ roles: ['vip', 'publish'] }, alice), 'ok')
  t.same(refusal({ roles: ['vip', 'admin'] }, alice), { status: 403, body: { error: 'role not allowed', role: 'admin' } })
  t.same(refusal({ roles: ['admin'] }, { roles: [] }), { status: 403, body: { error: 'role not allowed', role: 'admin' } })
  t.same(ticketRequest({}, backend).roles, [], 'no roles asked: none, not the caller\'s')
  t.end()
})

t.test("channels are capped at the caller's grants: names and prefixes within them, else 403", (t) => {
  t.equal(refusal({ channels: ['news', 'user:alice:inbox', 'user:alice:*', 'user:alice:x*'] }, alice), 'ok')
  t.same(refusal({ channels: ['sports'] }, alice), { status: 403, body: { error: 'channel not allowed', channel: 'sports' } })
  t.same(refusal({ channels: ['user:*'] }, alice), { status: 403, body: { error: 'channel not allowed', channel: 'user:*' } })
  t.same(refusal({ channels: ['news*'] }, alice), { status: 403, body: { error: 'channel not allowed', channel: 'news*' } })
  t.same(ticketRequest({}, alice).channels, ['news', 'user:alice:*'], "none asked: the caller's")
  t.equal(ticketRequest({}, backend).channels, null, 'a caller with every channel hands on every channel')
  t.equal(refusal({ channels: ['anything', 'x*'] }, backend), 'ok')
  t.ok(grantCovers(['*'], 'a') && grantCovers(['*'], 'b*') && !grantCovers([], 'a') && !grantCovers(['a'], 'a*'))
  t.end()
})

t.test('a body that is not what the contract says is 400', (t) => {
  for (const [body, error] of [
    [[], 'the body must be a JSON object'],
    ['alice', 'the body must be a JSON object'],
    [{ ttl: 30 }, 'unknown field "ttl"'],
    [{ user: '' }, 'user must be 1 to 256 bytes without CR or LF'],
    [{ user: 'a\r\nb' }, 'user must be 1 to 256 bytes without CR or LF'],
    [{ user: 7 }, 'user must be 1 to 256 bytes without CR or LF'],
    [{ roles: 'vip' }, 'roles must be an array of at most 256 names'],
    [{ roles: [''] }, 'roles must be an array of at most 256 names'],
    [{ channels: {} }, 'channels must be an array of at most 256 names'],
    [{ channels: Array(257).fill('c') }, 'channels must be an array of at most 256 names'],
  ] as const) {
    t.same(refusal(body), { status: 400, body: { error } }, JSON.stringify(body).slice(0, 40))
  }
  t.same(ticketRequest({ user: null, ttlSeconds: null }, backend), { user: null, roles: [], channels: null, ttlSeconds: TICKET_DEFAULT_TTL_S }, 'null is not given')
  t.end()
})

t.test('the store is bounded: full, it sweeps the expired; still full, 503 with Retry-After', (t) => {
  const c = clock()
  const store = new MemoryTicketStore({ now: c.fn, maxLive: 3 })
  const req = (ttlSeconds: number) => ticketRequest({ ttlSeconds }, backend)
  store.create(req(10))
  store.create(req(60))
  store.create(req(60))
  let refused: unknown = null
  try {
    store.create(req(30))
  } catch (err) {
    refused = err
  }
  t.ok(refused instanceof TicketRefused)
  t.equal((refused as TicketRefused).status, 503)
  t.same((refused as TicketRefused).body, { error: 'too many tickets' })
  t.same((refused as TicketRefused).headers, [['Retry-After', '10']], 'until the soonest one expires')
  t.equal(store.size, 3)
  c.now += 10_000
  t.doesNotThrow(() => store.create(req(30)), 'the expired one was swept')
  t.equal(store.size, 3)
  t.end()
})

t.test('expired tickets are swept as tickets are made, at most every TICKET_SWEEP_MS', (t) => {
  const c = clock()
  const store = new MemoryTicketStore({ now: c.fn })
  const t0 = c.now
  store.create(ticketRequest({}, backend)) // sweeps (the first time), at t0
  c.now = t0 + 500
  for (let i = 0; i < 100; i++) store.create(ticketRequest({ ttlSeconds: 1 }, backend)) // expire at t0 + 1500
  c.now = t0 + TICKET_SWEEP_MS
  store.create(ticketRequest({}, backend)) // sweeps: nothing has expired yet
  t.equal(store.size, 102)
  c.now = t0 + 1_600
  store.create(ticketRequest({}, backend))
  t.equal(store.size, 103, 'the hundred have expired, but the last sweep was less than TICKET_SWEEP_MS ago')
  c.now = t0 + 2 * TICKET_SWEEP_MS
  store.create(ticketRequest({}, backend))
  t.equal(store.size, 4, 'the hundred expired ones are gone')
  t.equal(store.sweep(), t0 + TICKET_DEFAULT_TTL_S * 1000, 'sweep() tells when the soonest live one expires')
  t.end()
})
