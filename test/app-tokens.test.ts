// Tokens an application signs, through the server over real sockets (CONTRACT "Tokens an
// application signs"): one stream per key type signed by jose, every refusal the same 401 (the
// reason in the log only) and the server serving on, where a token comes from (path, bearer,
// cookie), channel rules for a stream and a publish, CORS with credentials, the hook first, and a
// reload taking a key away. Expiry on an open stream is test/app-expiry.test.ts.

import t from 'tap'
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import * as jose from 'jose'
import type { ErrorReply, SseServerOptions } from '../src/index.js'
import { MAX_HEAD_BYTES } from '../src/server/limits.js'
import type { Teardown } from './process.js'
import { afterReady, clientId, ev, openStream, parseResponse, publish, RawClient, rawRequest, startServer, STREAM_HEAD, TOKEN, type Running } from './helpers.js'

const SECRET = randomBytes(48)
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' })
const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' })
const ed = generateKeyPairSync('ed25519')
const pem = (k: { publicKey: KeyObject }): string => k.publicKey.export({ type: 'spki', format: 'pem' }) as string
const KEYS = [pem(rsa), pem(p256), pem(p384), pem(p521), pem(ed)]

const UNKNOWN_401 = 'HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\nConnection: close\r\n\r\nunknown token\n'
const nowS = (): number => Math.floor(Date.now() / 1000)
const b64 = (x: string | Buffer): string => Buffer.from(x).toString('base64url')

/** A JWT signed by jose: claims, alg and key; an hour of life unless the claims say otherwise. */
async function jwt(claims: jose.JWTPayload, alg = 'HS256', key: KeyObject | Uint8Array = SECRET, header: Partial<jose.JWTHeaderParameters> = {}): Promise<string> {
  return new jose.SignJWT({ exp: nowS() + 3600, ...claims }).setProtectedHeader({ alg, ...header }).sign(key)
}

/** A server that takes JWTs (every key type) and remembers the error replies it sent. */
async function appServer(t: Teardown, opts: SseServerOptions = {}): Promise<Running & { replies: ErrorReply[] }> {
  const r = await startServer(t, { jwt: { secrets: [SECRET], keys: KEYS }, ...opts })
  const replies: ErrorReply[] = []
  r.server.on('error-reply', (e) => replies.push(e))
  return { ...r, replies }
}

/** The data of a stream's `ready` event. */
function ready(c: RawClient): { client: number; user: string | null; channels: string[]; key: string } {
  const m = /event: ready\ndata: (\{[^\n]*\})\n/.exec(c.received)
  if (m === null) throw new Error(`no ready in ${JSON.stringify(c.received)}`)
  return JSON.parse(m[1]!) as { client: number; user: string | null; channels: string[]; key: string }
}

/** A raw request's whole answer (the server closes after a refusal). */
const get = (port: number, target: string, headers = ''): Promise<string> => rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`)

t.test('every key type: a stream opens with a token jose signed, ready.user is its sub', async (t) => {
  const r = await appServer(t)
  const cases: Array<[string, KeyObject | Uint8Array]> = [
    ['HS256', SECRET],
    ['HS384', SECRET],
    ['HS512', SECRET],
    ['RS256', rsa.privateKey],
    ['PS256', rsa.privateKey],
    ['ES256', p256.privateKey],
    ['ES384', p384.privateKey],
    ['ES512', p521.privateKey],
    ['EdDSA', ed.privateKey],
  ]
  for (const [alg, key] of cases) {
    const token = await jwt({ sub: `user-${alg}` }, alg, key)
    const s = await openStream(r.port, `/events/${token}?channel=news`)
    t.ok(s.received.startsWith(STREAM_HEAD), `${alg}: the stream head`)
    t.same(ready(s), { client: ready(s).client, user: `user-${alg}`, channels: ['news'], key: ready(s).key }, `${alg}: ready`)
    s.close()
  }
  t.same(r.replies, [], 'nothing refused')
})

t.test('every refusal is the same 401, the reason goes to the log only, and the server serves on', async (t) => {
  const r = await appServer(t, { jwt: { secrets: [SECRET], keys: [pem(rsa), JSON.stringify({ keys: [{ ...p256.publicKey.export({ format: 'jwk' }), kid: 'p256' }] })], issuer: 'app', audience: 'rawsse' } })
  const good = { iss: 'app', aud: 'rawsse' }
  const rsaPub = Buffer.from(pem(rsa))
  const parts = (await jwt(good)).split('.')
  const hsWith = async (header: object, claims: object | string): Promise<string> => {
    const input = `${b64(JSON.stringify(header))}.${b64(typeof claims === 'string' ? claims : JSON.stringify(claims))}`
    const { createHmac } = await import('node:crypto')
    return `${input}.${b64(createHmac('sha256', SECRET).update(input).digest())}`
  }
  // As deep as fits in a head (10 000 deep does not: below, 431).
  const deep = '['.repeat(4_000) + ']'.repeat(4_000)
  const cases: Array<[string, string, string]> = [
    ['alg none', `${b64('{"alg":"none"}')}.${b64(JSON.stringify({ ...good, exp: nowS() + 60 }))}.`, 'jwt: alg none'],
    ['HS256 signed with the RSA public key', await jwt(good, 'HS256', rsaPub), 'jwt: bad signature'],
    ['expired past the leeway', await jwt({ ...good, exp: nowS() - 60 }), 'jwt: expired'],
    ['nbf in the future', await jwt({ ...good, nbf: nowS() + 60 }), 'jwt: not yet valid'],
    ['a wrong iss', await jwt({ ...good, iss: 'other' }), 'jwt: wrong issuer'],
    ['a wrong aud', await jwt({ ...good, aud: ['x', 'y'] }), 'jwt: wrong audience'],
    ['an unknown kid', await jwt(good, 'ES256', p256.privateKey, { kid: 'nope' }), 'jwt: unknown kid'],
    ['a kid holding ../', await jwt(good, 'ES256', p256.privateKey, { kid: '../../etc/passwd' }), 'jwt: unknown kid'],
    ['a kid holding NUL', await jwt(good, 'ES256', p256.privateKey, { kid: 'p256\u0000' }), 'jwt: unknown kid'],
    ['a header that is not JSON', `${b64('{alg')}.${parts[1]}.${parts[2]}`, 'jwt: header: not JSON'],
    ['a header that is not an object', `${b64('["HS256"]')}.${parts[1]}.${parts[2]}`, 'jwt: header: not an object'],
    ['claims that are not JSON', await hsWith({ alg: 'HS256' }, 'not json'), 'jwt: claims: not JSON'],
    ['claims that are not an object', await hsWith({ alg: 'HS256' }, '42'), 'jwt: claims: not an object'],
    ['claims nested 4 000 deep', await hsWith({ alg: 'HS256' }, `{"a":${deep}}`), 'jwt: claims: too deeply nested'],
    ['a signature of the wrong length', `${parts[0]}.${parts[1]}.${b64(randomBytes(31))}`, 'jwt: signature length'],
  ]
  for (const [what, token, why] of cases) {
    r.replies.length = 0
    // In the header: the path could not hold the deep one.
    const answer = await get(r.port, '/events', `Authorization: Bearer ${token}\r\n`)
    t.equal(answer, UNKNOWN_401, `${what}: the one 401`)
    t.same(
      r.replies.map((e) => [e.status, e.detail, e.refusal]),
      [[401, 'unknown token', why]],
      `${what}: the log is told ${why}`,
    )
    t.notOk(JSON.stringify(r.replies).includes(token), `${what}: the log never holds the token`)
  }
  // The path too, and a publish: the same refusal in each route's words.
  const expired = await jwt({ ...good, exp: nowS() - 60, rawsse: { roles: ['publish'] } })
  t.equal(await get(r.port, `/events/${expired}`), UNKNOWN_401, 'in the path')
  const p = await publish(r.base, '', 'x', expired)
  t.same([p.status, p.json], [401, { error: 'a valid bearer token is required' }], 'a publish: its usual 401')
  t.equal(r.replies.at(-1)?.refusal, 'jwt: expired')
  t.equal(r.replies.at(-2)?.path, '/events/***', 'a path with a token is redacted')

  // A token over the head limit never reaches the verifier: 431 (in a header; in the path, whose
  // head is over its limit too, 414 or 431), as for claims nested 10 000 deep.
  const huge = (await jwt(good)) + 'A'.repeat(MAX_HEAD_BYTES)
  t.match(await get(r.port, '/events', `Authorization: Bearer ${huge}\r\n`), /^HTTP\/1\.1 431 /, 'a header over the head limit: 431')
  t.match(await get(r.port, `/events/${huge}`), /^HTTP\/1\.1 (414|431) /, 'a path over the target limit: 414 or 431')
  const deeper = await hsWith({ alg: 'HS256' }, `{"a":${'['.repeat(10_000)}${']'.repeat(10_000)}}`)
  t.match(await get(r.port, '/events', `Authorization: Bearer ${deeper}\r\n`), /^HTTP\/1\.1 431 /, 'claims nested 10 000 deep: 431')

  const ok = await openStream(r.port, `/events/${await jwt({ ...good, sub: 'still' }, 'ES256', p256.privateKey, { kid: 'p256' })}`)
  t.equal(ready(ok).user, 'still', 'after all of them, a good token opens a stream')
  ok.close()
})

t.test('a token comes from the path, else Authorization: Bearer, else the auth cookie; none is 401', async (t) => {
  const r = await appServer(t, { authCookie: 'sse' })
  const [a, b, c] = await Promise.all(['from-path', 'from-header', 'from-cookie'].map((sub) => jwt({ sub })))
  const userOf = async (target: string, headers: Record<string, string>): Promise<string | null> => {
    const s = await openStream(r.port, target, headers)
    const u = ready(s).user
    s.close()
    return u
  }
  t.equal(await userOf(`/events/${a}`, { Authorization: `Bearer ${b}`, Cookie: `sse=${c}` }), 'from-path', 'the path wins')
  t.equal(await userOf('/events', { Authorization: `Bearer ${b}`, Cookie: `sse=${c}` }), 'from-header', 'then the header')
  t.equal(await userOf('/events?channel=x', { Cookie: `other=1; sse=${c}; more=2` }), 'from-cookie', 'then the cookie, among others')
  t.equal(await userOf('/events/', { Cookie: `sse="${c}"` }), 'from-cookie', 'a quoted cookie value, on /events/')
  t.equal(await userOf('/events', { Cookie: `sse=${TOKEN}` }), null, 'a static token in the cookie too')
  // The first present wins, good or not: a bad header is not rescued by a good cookie.
  t.equal(await get(r.port, '/events', `Authorization: Bearer nope\r\nCookie: sse=${c}\r\n`), UNKNOWN_401)
  t.equal(await get(r.port, '/events'), UNKNOWN_401, 'GET /events with none: 401')
  t.equal(await get(r.port, '/events', 'Cookie: other=1\r\n'), UNKNOWN_401, 'another cookie only: 401')
  // Without --auth-cookie the cookie is nobody's token.
  const plain = await appServer(t)
  t.equal(await get(plain.port, '/events', `Cookie: sse=${c}\r\n`), UNKNOWN_401, 'no auth cookie configured: 401')
})

t.test('the auth cookie speaks for a publish from no Origin, our own, or --cors-origin; not for another site', async (t) => {
  const r = await appServer(t, { authCookie: 'sse', corsOrigin: 'https://app.example' })
  const pub = await jwt({ rawsse: { roles: ['publish'] } })
  const post = (origin: string | null): Promise<{ status: number; json: Record<string, unknown> }> =>
    publish(r.base, '', 'x', null, { cookie: `sse=${pub}`, ...(origin === null ? {} : { origin }) })
  t.equal((await post(null)).status, 200, 'no Origin (curl, a backend)')
  t.equal((await post('https://app.example')).status, 200, 'the --cors-origin')
  t.equal((await post(`http://127.0.0.1:${r.port}`)).status, 200, 'our own origin')
  const other = await post('https://evil.example')
  t.same([other.status, other.json], [401, { error: 'a valid bearer token is required' }], 'another site: as if there were no cookie')
})

t.test('channel rules: a stream and a publish outside the token\'s channels get 403 with the channel; prefixes hold', async (t) => {
  const r = await appServer(t)
  const alice = await jwt({ sub: 'alice', rawsse: { roles: ['publish'], channels: ['news', 'user:alice:*'] } })
  const s = await openStream(r.port, `/events/${alice}?channel=news&channel=user:alice:inbox`)
  t.same(ready(s).channels, ['news', 'user:alice:inbox'], 'a name and a prefix')
  const refused = parseResponse(await get(r.port, `/events/${alice}?channel=news&channel=user:bob:inbox`))
  t.same([refused.status, JSON.parse(refused.body)], [403, { error: 'channel not allowed', channel: 'user:bob:inbox' }])
  const noChannel = parseResponse(await get(r.port, `/events/${alice}`))
  t.same([noChannel.status, JSON.parse(noChannel.body)], [403, { error: 'channel not allowed', channel: 'default' }], 'no channel is `default`, which it lacks')

  t.same(await publish(r.base, 'channel=user:alice:inbox', 'hi', alice), { status: 200, json: { id: '1', delivered: 1 } })
  t.same(await publish(r.base, 'channel=sports', 'x', alice), { status: 403, json: { error: 'channel not allowed', channel: 'sports' } })
  // A publish naming no channel reaches every stream: not for a token held to some channels.
  t.same(await publish(r.base, '', 'x', alice), { status: 403, json: { error: 'channel not allowed', channel: null } }, 'a broadcast')
  t.same(await publish(r.base, 'user=alice', 'x', alice), { status: 403, json: { error: 'channel not allowed', channel: null } }, 'a user target without a channel')
  t.same(await publish(r.base, 'channel=news&user=alice', 'y', alice), { status: 200, json: { id: '2', delivered: 1 } }, 'a user target within a channel')
  const everything = await jwt({ rawsse: { roles: ['publish'], channels: ['*'] } })
  t.same(await publish(r.base, '', 'z', everything), { status: 200, json: { id: '3', delivered: 1 } }, '`*` is every channel: it may broadcast')
  await s.waitFor(ev('3', 'z'))
  t.equal(afterReady(s), ev('1', 'hi') + ev('2', 'y') + ev('3', 'z'), 'the stream got what was allowed, nothing refused')
  s.close()
  const streamOnly = await jwt({ rawsse: { channels: ['news'] } })
  t.equal((await publish(r.base, 'channel=news', 'x', streamOnly)).status, 403, 'no publish role: 403')
})

t.test('CORS with credentials: an auth cookie and a specific origin add Allow-Credentials to the stream, answers and preflight', async (t) => {
  const withCreds = await appServer(t, { authCookie: 'sse', corsOrigin: 'https://app.example' })
  const token = await jwt({ sub: 'c' })
  const s = await openStream(withCreds.port, '/events', { Cookie: `sse=${token}` })
  t.match(s.received, /\r\nAccess-Control-Allow-Origin: https:\/\/app\.example\r\nAccess-Control-Allow-Credentials: true\r\n\r\n/, 'the stream head')
  s.close()
  const health = await rawRequest(withCreds.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(health, /\r\nAccess-Control-Allow-Credentials: true\r\n/, 'an answer')
  const pre = await rawRequest(withCreds.port, 'OPTIONS /events HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nConnection: close\r\n\r\n')
  t.match(pre, /^HTTP\/1\.1 204 [\s\S]*\r\nAccess-Control-Allow-Credentials: true\r\n/, 'the preflight')
  // `*` cannot carry credentials (the Fetch standard refuses it): never said then.
  const star = await appServer(t, { authCookie: 'sse' })
  const s2 = await openStream(star.port, '/events', { Cookie: `sse=${token}` })
  t.ok(s2.received.startsWith(STREAM_HEAD), 'with `*`: the head as always')
  s2.close()
  const noCookie = await appServer(t, { corsOrigin: 'https://app.example' })
  t.notMatch(await rawRequest(noCookie.port, 'OPTIONS /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /Credentials/, 'no auth cookie: not said')
})

t.test('a refusal read by a page on another origin: with Origin, the 401 carries the CORS headers; without, its bytes as always', async (t) => {
  const cors = 'Access-Control-Allow-Origin: https://app.example\r\nAccess-Control-Allow-Credentials: true\r\n'
  const withCreds = await appServer(t, { authCookie: 'sse', corsOrigin: 'https://app.example' })
  const from = (origin: string): string => `GET /events?channel=a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong${origin}\r\nConnection: close\r\n\r\n`
  t.equal(await rawRequest(withCreds.port, from('\r\nOrigin: https://app.example')), UNKNOWN_401.replace('\r\n', '\r\n' + cors), 'the 401, readable by the page')
  t.equal(await rawRequest(withCreds.port, from('')), UNKNOWN_401, 'no Origin: the same bytes as ever')
  const star = await appServer(t, {})
  t.equal(await rawRequest(star.port, from('\r\nOrigin: https://elsewhere.example')), UNKNOWN_401.replace('\r\n', '\r\nAccess-Control-Allow-Origin: *\r\n'), 'with `*`: no credentials said')
  const s = await openStream(star.port, `/events/${TOKEN}`)
  t.ok(s.received.startsWith(STREAM_HEAD), 'and another client is served after')
  s.close()
})

t.test('the authenticate hook comes first; a JWT is tried when it says no', async (t) => {
  const seen: string[] = []
  const r = await appServer(t, {
    authenticate: (token) => {
      seen.push(token)
      return token.startsWith('hook.') ? { user: 'from-hook', roles: [] } : null
    },
  })
  const hookToken = 'hook.a.b'
  const s1 = await openStream(r.port, `/events/${hookToken}`)
  t.equal(ready(s1).user, 'from-hook', 'a three-part token the hook knows is the hook\'s')
  const signed = await jwt({ sub: 'from-jwt' })
  const s2 = await openStream(r.port, `/events/${signed}`)
  t.equal(ready(s2).user, 'from-jwt', 'the hook said no: the JWT')
  t.same(seen, [hookToken, signed], 'the hook was asked first, each time')
  s1.close()
  s2.close()
})

t.test('updateJwt() taking a secret away closes the streams that depended on it (revoked); others stay', async (t) => {
  const r = await appServer(t, { jwt: { secrets: [SECRET], keys: [pem(p256)] } })
  const byHs = await openStream(r.port, `/events/${await jwt({ sub: 'hs' })}`)
  const byEs = await openStream(r.port, `/events/${await jwt({ sub: 'es' }, 'ES256', p256.privateKey)}`)
  const byStatic = await openStream(r.port, `/events/${TOKEN}`)
  t.equal(r.server.updateJwt({ secrets: [SECRET], keys: [pem(p256)] }), 0, 'the same keys: nothing closed')
  t.equal(r.server.updateJwt({ keys: [pem(p256)] }), 1, 'the secret gone: one stream closed')
  await byHs.waitClosed()
  t.match(byHs.received, /\r\n0\r\n\r\n$/, 'it got the last chunk')
  t.equal(r.server.clientCount, 2)
  t.equal(r.server.stats().drops.revoked, 1)
  t.equal(await get(r.port, `/events/${await jwt({ sub: 'hs' })}`), UNKNOWN_401, 'an HS256 token is refused now')
  t.throws(() => r.server.updateJwt({ secrets: ['short'] }), /jwt: jwt secret 1 is 5 bytes/, 'a bad secret throws')
  t.equal(r.server.clientCount, 2, 'and changes nothing')
  t.ok(clientId(byEs) > 0)
  byEs.close()
  byStatic.close()
})

t.test('an identical token verified twice costs one verification', async (t) => {
  const r = await appServer(t)
  const token = await jwt({ sub: 'twice' }, 'ES256', p256.privateKey)
  const before = r.server.jwtCounts
  for (let i = 0; i < 3; i++) (await openStream(r.port, `/events/${token}`)).close()
  const after = r.server.jwtCounts
  t.same({ verified: after.verified - before.verified, cached: after.cached - before.cached }, { verified: 1, cached: 2 })
})

t.test('the library refuses a short secret and a bad cookie name with a RangeError', async (t) => {
  const { SseServer } = await import('../src/index.js')
  t.throws(() => new SseServer({ jwt: { secrets: ['x'.repeat(31)] } }), { name: 'RangeError', message: /jwt: jwt secret 1 is 31 bytes: a JWT secret must be at least 32 bytes/ })
  t.throws(() => new SseServer({ authCookie: 'a b' }), RangeError)
  t.doesNotThrow(() => new SseServer({ jwt: { secrets: ['x'.repeat(32)] }, authCookie: '__Host-sse' }))
})
