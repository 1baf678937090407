// JWT verification (src/server/access/jwt.ts, jwk.ts, jws-bytes.ts) cross-checked against jose: every
// algorithm both ways, the RFC 7515 appendix A and RFC 8037 appendix A examples as written, and
// every refusal with the reason the log gets (CONTRACT "Tokens an application signs").

import t from 'tap'
import { constants, createHmac, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'
import * as jose from 'jose'
import { JwtVerifier, looksLikeJwt, type JwtConfig, type JwtResult } from '../src/server/access/jwt.js'
import { jsonObject } from '../src/server/access/jws-bytes.js'
import { JWT_CACHE_ENTRIES, MAX_JWT_BYTES } from '../src/server/limits.js'

const b64 = (x: string | Buffer): string => Buffer.from(x).toString('base64url')
const HOUR = 3600
const nowS = (): number => Math.floor(Date.now() / 1000)

// One key pair per key type; the RSA pair signs RS* and PS*.
const secret = randomBytes(64)
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' })
const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' })
const ed = generateKeyPairSync('ed25519')
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string

interface Case {
  alg: string
  priv: KeyObject | Buffer
  pub: KeyObject | Buffer
}
const CASES: Case[] = [
  ...['HS256', 'HS384', 'HS512'].map((alg) => ({ alg, priv: secret, pub: secret })),
  ...['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'].map((alg) => ({ alg, priv: rsa.privateKey, pub: rsa.publicKey })),
  { alg: 'ES256', priv: p256.privateKey, pub: p256.publicKey },
  { alg: 'ES384', priv: p384.privateKey, pub: p384.publicKey },
  { alg: 'ES512', priv: p521.privateKey, pub: p521.publicKey },
  { alg: 'EdDSA', priv: ed.privateKey, pub: ed.publicKey },
  // RFC 9864's name for EdDSA on Ed25519, which jose also signs with.
  { alg: 'Ed25519', priv: ed.privateKey, pub: ed.publicKey },
]
const pems = [rsa, p256, p384, p521, ed].map((k) => k.publicKey.export({ type: 'spki', format: 'pem' }) as string)
const byPem = new JwtVerifier({ secrets: [secret], keys: pems })
const jwks = {
  keys: [rsa, p256, p384, p521, ed].map((k, i) => ({ ...k.publicKey.export({ format: 'jwk' }), kid: `k${i}`, use: 'sig' })),
}
const kidOf = (c: Case): string | undefined => {
  const i = [rsa, p256, p384, p521, ed].findIndex((k) => k.privateKey === c.priv)
  return i < 0 ? undefined : `k${i}`
}
const byJwks = new JwtVerifier({ secrets: [secret], keys: [JSON.stringify(jwks)] })

/** A signature as Node's crypto makes it, in the JWS form of `alg` (RFC 7518 §3). */
function nodeSign(alg: string, key: KeyObject | Buffer, input: string, pssSalt?: number): Buffer {
  const data = Buffer.from(input)
  const hash = `sha${alg.slice(2)}`
  switch (alg.slice(0, 2)) {
    case 'HS':
      return createHmac(hash, key).update(data).digest()
    case 'RS':
      return sign(hash, data, { key: key as KeyObject, padding: constants.RSA_PKCS1_PADDING })
    case 'PS':
      return sign(hash, data, { key: key as KeyObject, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: pssSalt ?? Number(alg.slice(2)) / 8 })
    case 'ES':
      return sign(hash, data, { key: key as KeyObject, dsaEncoding: 'ieee-p1363' })
    default:
      return sign(null, data, key as KeyObject)
  }
}

/** A token with any header and claims (objects are JSON-encoded, strings taken as the bytes), signed with Node's crypto. */
function token(alg: string, key: KeyObject | Buffer, claims: object | string, header: object | string = { alg, typ: 'JWT' }): string {
  const enc = (x: object | string): string => b64(typeof x === 'string' ? x : JSON.stringify(x))
  const input = `${enc(header)}.${enc(claims)}`
  return `${input}.${b64(nodeSign(alg, key, input))}`
}
const hs = (claims: object | string, header?: object | string): string => token('HS256', secret, claims, header)

function reason(r: JwtResult): string {
  return r.ok ? 'accepted' : r.reason
}

const CLAIMS = { sub: 'alice', rawsse: { roles: ['publish', 'vip'], channels: ['news', 'user:alice:*'] } }

t.test('every algorithm: tokens jose signs verify here, by PEM keys and by a JWK Set with kids', async (t) => {
  for (const c of CASES) {
    const exp = nowS() + HOUR
    const signed = await new jose.SignJWT(CLAIMS).setProtectedHeader({ alg: c.alg }).setExpirationTime(exp).sign(c.priv)
    const r = byPem.verify(signed)
    t.same(r, { ok: true, identity: { user: 'alice', roles: ['publish', 'vip'], grants: ['news', 'user:alice:*'], expiresAt: exp * 1000 } }, `${c.alg} by PEM`)
    const kid = kidOf(c)
    const withKid = await new jose.SignJWT(CLAIMS).setProtectedHeader({ alg: c.alg, ...(kid === undefined ? {} : { kid }) }).sign(c.priv)
    t.equal(reason(byJwks.verify(withKid)), 'accepted', `${c.alg} by JWK Set, kid ${kid}`)
  }
})

t.test('every algorithm: tokens signed with Node crypto verify in jose and here', async (t) => {
  for (const c of CASES) {
    const signed = token(c.alg, c.priv, { ...CLAIMS, exp: nowS() + HOUR })
    const { payload, protectedHeader } = await jose.jwtVerify(signed, c.pub, { algorithms: [c.alg] })
    t.equal(protectedHeader.alg, c.alg)
    t.equal(payload.sub, 'alice', `${c.alg} in jose`)
    t.equal(reason(byPem.verify(signed)), 'accepted', `${c.alg} here`)
  }
})

t.test("jose's JWK Set and ours agree on a key's kid picking it", async (t) => {
  const local = jose.createLocalJWKSet(jwks as jose.JSONWebKeySet)
  const signed = token('ES256', p256.privateKey, { sub: 'bob' }, { alg: 'ES256', kid: 'k1' })
  t.equal((await jose.jwtVerify(signed, local)).payload.sub, 'bob')
  t.equal(reason(byJwks.verify(signed)), 'accepted')
  const wrongKid = token('ES256', p256.privateKey, { sub: 'bob' }, { alg: 'ES256', kid: 'k2' })
  await t.rejects(jose.jwtVerify(wrongKid, local))
  t.equal(reason(byJwks.verify(wrongKid)), 'no key for alg', 'k2 is a P-384 key: ES256 does not fit it')
})

// RFC 7515 appendix A: the exact strings. Their exp (1300819380) is 2011-03-22T18:43:00Z, so the
// verifier's clock is set a minute before it.
const RFC_PAYLOAD = 'eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ'
const RFC_A1 = `eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.${RFC_PAYLOAD}.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk`
const RFC_A1_KEY = 'AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow'
const RFC_A2 =
  `eyJhbGciOiJSUzI1NiJ9.${RFC_PAYLOAD}.` +
  'cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4' +
  'BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv' +
  'hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw'
const RFC_A2_N =
  'ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7' +
  'OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcD' +
  'TW9gb54h4FRWyuXpoQ'
const RFC_A3 = `eyJhbGciOiJFUzI1NiJ9.${RFC_PAYLOAD}.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q`
const RFC_A3_JWK = { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' }
const IN_2011 = (): number => (1300819380 - 60) * 1000
const RFC_IDENTITY = { user: null, roles: [], grants: null, expiresAt: 1300819380000 }

t.test('RFC 7515 A.1 (HS256): Node signs it byte for byte, and it verifies in 2011 only', (t) => {
  const key = Buffer.from(RFC_A1_KEY, 'base64url')
  const [h, p] = RFC_A1.split('.')
  t.equal(b64(nodeSign('HS256', key, `${h}.${p}`)), RFC_A1.split('.')[2])
  t.same(new JwtVerifier({ secrets: [key] }, { now: IN_2011 }).verify(RFC_A1), { ok: true, identity: RFC_IDENTITY })
  t.equal(reason(new JwtVerifier({ secrets: [key] }).verify(RFC_A1)), 'expired')
  t.end()
})

t.test('RFC 7515 A.2 (RS256) and A.3 (ES256) verify with their JWKs, as jose verifies them', async (t) => {
  const a2 = { kty: 'RSA', n: RFC_A2_N, e: 'AQAB' }
  t.same(new JwtVerifier({ keys: [{ keys: [a2] }] }, { now: IN_2011 }).verify(RFC_A2), { ok: true, identity: RFC_IDENTITY })
  t.same(new JwtVerifier({ keys: [{ keys: [RFC_A3_JWK] }] }, { now: IN_2011 }).verify(RFC_A3), { ok: true, identity: RFC_IDENTITY })
  const currentDate = new Date(IN_2011())
  await jose.jwtVerify(RFC_A2, await jose.importJWK(a2, 'RS256'), { currentDate })
  await jose.jwtVerify(RFC_A3, await jose.importJWK(RFC_A3_JWK, 'ES256'), { currentDate })
  // One bit off in the signature, or the other example's key: refused.
  const flipped = RFC_A3.slice(0, -2) + (RFC_A3.endsWith('1Q') ? '2Q' : '1Q')
  t.equal(reason(new JwtVerifier({ keys: [{ keys: [RFC_A3_JWK] }] }, { now: IN_2011 }).verify(flipped)), 'bad signature')
  t.equal(reason(new JwtVerifier({ keys: [{ keys: [RFC_A3_JWK] }] }, { now: IN_2011 }).verify(RFC_A2)), 'no key for alg')
})

// RFC 8037 A.1/A.2 (the key), A.4 (signing), A.5 (validation). Its payload is text, not claims.
const RFC8037_D = 'nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A'
const RFC8037_X = '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo'
const RFC8037_JWS =
  'eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg'

t.test('RFC 8037 A.4 and A.5 (Ed25519): Node signs it byte for byte; its signature verifies, its text payload is no JWT', async (t) => {
  const { createPrivateKey } = await import('node:crypto')
  const priv = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: RFC8037_D, x: RFC8037_X }, format: 'jwk' })
  const [h, p, s] = RFC8037_JWS.split('.')
  t.equal(b64(nodeSign('EdDSA', priv, `${h}.${p}`)), s, 'A.4: the same signature')
  const v = new JwtVerifier({ keys: [{ keys: [{ kty: 'OKP', crv: 'Ed25519', x: RFC8037_X }] }] })
  const jws = v.verifyJws(RFC8037_JWS)
  t.ok(jws.ok, 'A.5: the signature verifies')
  if (jws.ok) t.equal(jws.payload.toString(), 'Example of Ed25519 signing')
  t.equal(reason(v.verify(RFC8037_JWS)), 'claims: not JSON')
  const { payload } = await jose.flattenedVerify({ protected: h!, payload: p!, signature: s! }, await jose.importJWK({ kty: 'OKP', crv: 'Ed25519', x: RFC8037_X }, 'EdDSA'))
  t.equal(Buffer.from(payload).toString(), 'Example of Ed25519 signing', 'jose agrees')
  // A private JWK given as a key: only its public half is kept, and it verifies the same.
  const fromPrivate = new JwtVerifier({ keys: [{ keys: [{ kty: 'OKP', crv: 'Ed25519', d: RFC8037_D, x: RFC8037_X }] }] })
  t.ok(fromPrivate.verifyJws(RFC8037_JWS).ok)
})

t.test('refused: alg none, in any case, and an alg nobody knows', (t) => {
  const claims = b64(JSON.stringify({ sub: 'mallory' }))
  for (const alg of ['none', 'None', 'NONE']) {
    t.equal(reason(byPem.verify(`${b64(JSON.stringify({ alg }))}.${claims}.`)), 'alg none', alg)
    t.equal(reason(byPem.verify(`${b64(JSON.stringify({ alg }))}.${claims}.${b64(nodeSign('HS256', secret, 'x'))}`)), 'alg none')
  }
  t.equal(reason(byPem.verify(`${b64('{"alg":"HS1"}')}.${claims}.AAAA`)), 'alg unknown')
  t.equal(reason(byPem.verify(`${b64('{"typ":"JWT"}')}.${claims}.AAAA`)), 'header: no alg')
  t.end()
})

t.test('refused: HS256 "signed" with the bytes of the RSA public key, by a verifier holding that key', async (t) => {
  const forged = token('HS256', Buffer.from(rsaPem), { sub: 'mallory' })
  t.equal(reason(new JwtVerifier({ keys: [rsaPem] }).verify(forged)), 'no key for alg', 'an HMAC alg is never checked against a public key')
  t.equal(reason(new JwtVerifier({ secrets: [secret], keys: [rsaPem] }).verify(forged)), 'bad signature', 'only the secrets are tried')
  await t.rejects(jose.jwtVerify(forged, rsa.publicKey), 'jose refuses it too')
})

t.test('refused: expired and not yet valid, each past 30 s of leeway; accepted within it', (t) => {
  const now = nowS()
  t.equal(reason(byPem.verify(hs({ exp: now - 31 }))), 'expired')
  t.equal(reason(byPem.verify(hs({ exp: now - 29 }))), 'accepted')
  t.equal(reason(byPem.verify(hs({ nbf: now + 31 }))), 'not yet valid')
  t.equal(reason(byPem.verify(hs({ nbf: now + 29 }))), 'accepted')
  t.equal(reason(byPem.verify(hs({ exp: 'tomorrow' }))), 'claims: bad exp or nbf')
  t.equal(reason(byPem.verify(hs({ nbf: null }))), 'claims: bad exp or nbf')
  t.end()
})

t.test('refused: a wrong issuer or audience; aud may be a list that contains ours', (t) => {
  const v = new JwtVerifier({ secrets: [secret], issuer: 'https://app.example', audience: 'rawsse' })
  const iss = 'https://app.example'
  t.equal(reason(v.verify(hs({ iss, aud: 'rawsse' }))), 'accepted')
  t.equal(reason(v.verify(hs({ iss, aud: ['other', 'rawsse'] }))), 'accepted')
  t.equal(reason(v.verify(hs({ iss: 'https://evil.example', aud: 'rawsse' }))), 'wrong issuer')
  t.equal(reason(v.verify(hs({ aud: 'rawsse' }))), 'wrong issuer')
  t.equal(reason(v.verify(hs({ iss, aud: 'other' }))), 'wrong audience')
  t.equal(reason(v.verify(hs({ iss, aud: ['other'] }))), 'wrong audience')
  t.equal(reason(v.verify(hs({ iss }))), 'wrong audience')
  t.end()
})

t.test('refused: an unknown kid, and a kid holding ../ or NUL is just unknown', (t) => {
  const es = (kid: unknown): string => token('ES256', p256.privateKey, { sub: 'x' }, { alg: 'ES256', kid })
  t.equal(reason(byJwks.verify(es('k1'))), 'accepted')
  for (const kid of ['nope', '../../../etc/passwd', '..\\k1', 'k1\u0000', '\u0000', 'k1/../k1', '__proto__', 'constructor']) {
    t.equal(reason(byJwks.verify(es(kid))), 'unknown kid', JSON.stringify(kid))
  }
  t.equal(reason(byJwks.verify(es(1))), 'header: kid not a string')
  // Keys without ids: a kid picks nothing, and every key of the alg is tried.
  t.equal(reason(byPem.verify(es('anything'))), 'accepted')
  t.end()
})

t.test('refused: a token over the head limit, before any work; at the limit it is looked at', (t) => {
  const v = new JwtVerifier({ secrets: [secret] })
  const head = b64('{"alg":"HS256"}')
  const pad = (n: number): string => `${head}.${'A'.repeat(n - head.length - 2 - 43)}.${'A'.repeat(43)}`
  t.equal(reason(v.verify(pad(MAX_JWT_BYTES + 1))), 'too long')
  t.equal(reason(v.verify('x'.repeat(10 * MAX_JWT_BYTES))), 'too long')
  t.equal(v.counts.verified, 0)
  const at = pad(MAX_JWT_BYTES - (MAX_JWT_BYTES - head.length - 2 - 43) % 4) // a length base64url allows
  t.ok(at.length <= MAX_JWT_BYTES)
  t.not(reason(v.verify(at)), 'too long')
  t.end()
})

t.test('refused: header or claims not JSON, not an object, or nested 10 000 deep; nothing thrown', (t) => {
  const claims = b64('{}')
  const sig = b64(Buffer.alloc(32))
  for (const [header, why] of [
    ['{alg', 'header: not JSON'],
    ['', 'header: not JSON'],
    ['[1]', 'header: not an object'],
    ['"HS256"', 'header: not an object'],
    ['null', 'header: not an object'],
    ['{"alg":"HS256","x":' + '['.repeat(10_000), 'header: too deeply nested'],
    ['{"alg":"HS256","x":' + '[{"a":'.repeat(16) + '0' + '}]'.repeat(16) + '}', 'header: too deeply nested'],
  ] as const) {
    t.equal(reason(byPem.verify(`${b64(header)}.${claims}.${sig}`)), why, header.slice(0, 40))
  }
  t.equal(reason(byPem.verify(`${b64(Buffer.from([0x7b, 0xff, 0x7d]))}.${claims}.${sig}`)), 'header: not UTF-8')
  // Signed properly: the claims are looked at only once the signature holds.
  t.equal(reason(byPem.verify(hs('{"sub":'))), 'claims: not JSON')
  t.equal(reason(byPem.verify(hs('["sub"]'))), 'claims: not an object')
  t.equal(reason(byPem.verify(hs('42'))), 'claims: not an object')
  const deep = hs('['.repeat(10_000))
  t.ok(deep.length < MAX_JWT_BYTES, 'ten thousand brackets fit under the limit')
  t.equal(reason(byPem.verify(deep)), 'claims: too deeply nested')
  t.equal(reason(byPem.verify(hs('{"a":' + '['.repeat(5_000) + ']'.repeat(5_000) + '}'))), 'claims: too deeply nested')
  // A string that merely holds brackets is no nesting.
  t.equal(reason(byPem.verify(hs({ sub: 'x', note: '['.repeat(1000) + '\\"[' }))), 'accepted')
  t.end()
})

t.test('the JSON guard: 10 000 levels of valid JSON are refused without a stack overflow', (t) => {
  t.equal(jsonObject(Buffer.from('['.repeat(10_000) + ']'.repeat(10_000))), 'too deeply nested')
  t.equal(jsonObject(Buffer.from('{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000))), 'too deeply nested')
  t.same(jsonObject(Buffer.from('{"a":' + '['.repeat(30) + ']'.repeat(30) + '}')), { a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]] })
  t.end()
})

t.test('refused: a signature of the wrong length, for every algorithm', (t) => {
  for (const c of CASES) {
    const good = token(c.alg, c.priv, { sub: 'x' })
    const [h, p, s] = good.split('.')
    const sig = Buffer.from(s!, 'base64url')
    for (const wrong of [sig.subarray(0, sig.length - 1), Buffer.concat([sig, Buffer.from([0])]), Buffer.alloc(0)]) {
      t.equal(reason(byPem.verify(`${h}.${p}.${b64(wrong)}`)), 'signature length', `${c.alg}, ${wrong.length} bytes`)
    }
  }
  // ES256 in DER, as OpenSSL signs by default, instead of r‖s.
  const input = `${b64('{"alg":"ES256"}')}.${b64('{}')}`
  const der = sign('sha256', Buffer.from(input), p256.privateKey)
  t.equal(reason(byPem.verify(`${input}.${b64(der)}`)), 'signature length')
  t.end()
})

t.test('refused: a PS token with a salt length other than the hash length, here and in jose', async (t) => {
  for (const [alg, salt] of [['PS256', 20], ['PS256', 0], ['PS384', 32], ['PS512', 32]] as const) {
    const input = `${b64(JSON.stringify({ alg }))}.${b64('{"sub":"x"}')}`
    const forged = `${input}.${b64(nodeSign(alg, rsa.privateKey, input, salt))}`
    t.equal(reason(byPem.verify(forged)), 'bad signature', `${alg} salted ${salt}`)
    await t.rejects(jose.jwtVerify(forged, rsa.publicKey), `${alg} salted ${salt} in jose`)
  }
})

t.test('refused: anything that is not strict base64url in three parts', (t) => {
  const good = hs({ sub: 'x' })
  const [h, p, s] = good.split('.')
  t.equal(reason(byPem.verify(good)), 'accepted')
  for (const bad of [
    `${h}.${p}.${s}=`,
    `${h}=.${p}.${s}`,
    `${h}.${p}.+${s!.slice(1)}`,
    `${h}.${p}./${s!.slice(1)}`,
    `${h}.${p}.${s!.slice(0, -1)}+`,
    `${h}.${p} .${s}`,
    `${h}.${p}.${s!.slice(0, -1)}${String.fromCharCode(s!.charCodeAt(s!.length - 1) + 1)}`, // stray bits
    `${h}.${p}.${s}AA`, // a lone sextet
    `${h}.${p}.${s}é`,
  ]) {
    t.equal(reason(byPem.verify(bad)), 'bad base64url', bad.slice(-8))
  }
  for (const bad of [`${h}.${p}`, `${h}.${p}.${s}.${s}`, 'nodots', '']) t.equal(reason(byPem.verify(bad)), 'not three parts')
  t.equal(reason(byPem.verify(`${h}.${p}.${s!.slice(0, -4)}AAAA`)), 'bad signature')
  t.end()
})

t.test('refused: an alg the key type does not allow, crit, and claims of the wrong shape', (t) => {
  const edOnly = new JwtVerifier({ keys: [ed.publicKey] })
  t.equal(reason(edOnly.verify(token('ES256', p256.privateKey, {}))), 'no key for alg')
  t.equal(reason(edOnly.verify(token('RS256', rsa.privateKey, {}))), 'no key for alg')
  t.equal(reason(new JwtVerifier({ keys: [p384.publicKey] }).verify(token('ES256', p256.privateKey, {}))), 'no key for alg')
  const rs256only = new JwtVerifier({ keys: [{ keys: [{ ...rsa.publicKey.export({ format: 'jwk' }), alg: 'RS256' }] }] })
  t.equal(reason(rs256only.verify(token('RS256', rsa.privateKey, {}))), 'accepted')
  t.equal(reason(rs256only.verify(token('PS256', rsa.privateKey, {}))), 'no key for alg', "a JWK's alg names its one algorithm")
  t.equal(reason(byPem.verify(hs({}, { alg: 'HS256', crit: ['exp'], exp: 1 }))), 'header: crit not understood')
  for (const claims of [{ sub: 7 }, { sub: '' }, { sub: 'a\nb' }, { sub: 'x'.repeat(257) }]) t.equal(reason(byPem.verify(hs(claims))), 'claims: bad sub')
  for (const rawsse of [null, [], 'admin', { roles: 'admin' }, { roles: [1] }, { channels: [''] }, { channels: Array(257).fill('c') }]) {
    t.equal(reason(byPem.verify(hs({ rawsse }))), 'claims: bad rawsse', JSON.stringify(rawsse).slice(0, 40))
  }
  t.same(byPem.verify(hs({})), { ok: true, identity: { user: null, roles: [], grants: null, expiresAt: null } }, 'no claims: anonymous, every channel')
  t.same(byPem.verify(hs({ rawsse: { channels: [] } })), { ok: true, identity: { user: null, roles: [], grants: [], expiresAt: null } }, 'an empty list: no channel')
  t.end()
})

t.test('an identical token verified twice costs one verification; a hit still checks exp and nbf', (t) => {
  let now = Date.now()
  const exp = Math.floor(now / 1000) + 60
  const tok = token('ES256', p256.privateKey, { sub: 'a', exp, nbf: exp - 120 })
  const es = new JwtVerifier({ keys: [p256.publicKey] }, { now: () => now })
  const first = es.verify(tok)
  t.equal(reason(first), 'accepted')
  t.equal(es.verify(tok), first, 'the same result, not a copy')
  t.same(es.counts, { verified: 1, cached: 1 })
  now = (exp + 31) * 1000
  t.equal(reason(es.verify(tok)), 'expired', 'a cached token expires with its exp')
  t.same(es.counts, { verified: 1, cached: 1 })
  now = (exp - 120 - 31) * 1000
  t.equal(reason(es.verify(tok)), 'not yet valid', 'and verifies afresh once dropped: nbf')
  t.equal(es.counts.verified, 2)
  now = Date.now()
  t.equal(reason(es.verify(tok)), 'accepted')
  t.equal(reason(es.verify(tok)), 'accepted')
  t.same(es.counts, { verified: 3, cached: 2 })
  // Refusals are not remembered: a wrong token costs its check each time.
  const bad = tok.slice(0, -4) + 'AAAA'
  es.verify(bad)
  es.verify(bad)
  t.equal(es.counts.verified, 5)
  t.end()
})

t.test('the cache is bounded: past its entries, the least recently used token is verified again', (t) => {
  const v = new JwtVerifier({ secrets: [secret] })
  const first = hs({ n: -1 })
  v.verify(first)
  for (let i = 0; i < JWT_CACHE_ENTRIES; i++) v.verify(hs({ n: i }))
  t.equal(v.counts.verified, JWT_CACHE_ENTRIES + 1)
  v.verify(first)
  t.equal(v.counts.verified, JWT_CACHE_ENTRIES + 2, 'the first token was dropped')
  v.verify(hs({ n: JWT_CACHE_ENTRIES - 1 }))
  t.equal(v.counts.cached, 1, 'a recent one was kept')
  t.end()
})

t.test('reload: a new verifier; stillAccepts says which identities it would give again', (t) => {
  const other = randomBytes(32)
  const v1 = new JwtVerifier({ secrets: [secret, other], keys: [ed.publicKey] })
  const bySecret = v1.verify(hs({ sub: 'a' }))
  const byOther = v1.verify(token('HS256', other, { sub: 'b' }))
  const byEd = v1.verify(token('EdDSA', ed.privateKey, { sub: 'c', iss: 'app' }))
  if (!bySecret.ok || !byOther.ok || !byEd.ok) throw new Error('setup')
  const v2 = v1.reload({ secrets: [other], keys: [ed.publicKey.export({ type: 'spki', format: 'pem' })] })
  t.not(v2, v1)
  t.equal(v2.stillAccepts(bySecret.identity), false, 'its secret is gone')
  t.equal(v2.stillAccepts(byOther.identity), true)
  t.equal(v2.stillAccepts(byEd.identity), true, 'the same key from a PEM this time')
  t.equal(v1.reload({ secrets: [secret], issuer: 'app' }).stillAccepts(bySecret.identity), false, 'no iss')
  t.equal(v1.reload({ keys: [ed.publicKey], issuer: 'app' }).stillAccepts(byEd.identity), true)
  t.equal(v2.stillAccepts({ user: 'x', roles: [], grants: null, expiresAt: null }), undefined, 'not from a verifier')
  t.equal(reason(v2.verify(hs({ sub: 'a' }))), 'bad signature')
  t.equal(reason(v1.verify(hs({ sub: 'a' }))), 'accepted', 'the old one is left as it was')
  t.end()
})

t.test('looksLikeJwt: three dot-separated parts', (t) => {
  for (const s of ['a.b.c', 'a.b.', 'a..c', hs({})]) t.ok(looksLikeJwt(s), s)
  for (const s of ['abc', 'a.b', 'a.b.c.d', '.b.c', '', '..']) t.notOk(looksLikeJwt(s), s)
  t.end()
})

t.test('configuration errors say what is wrong and never print a secret', (t) => {
  const make = (config: JwtConfig) => () => new JwtVerifier(config)
  const short = 's3cret-but-short-0123456789abcd' // 31 bytes
  t.throws(make({ secrets: [short] }), /jwt secret 1 is 31 bytes: a JWT secret must be at least 32 bytes/)
  try {
    make({ secrets: [short] })()
  } catch (err) {
    t.notMatch((err as Error).message, short)
  }
  t.doesNotThrow(make({ secrets: [short + 'x'] }), '32 bytes is enough')
  t.throws(make({ keys: [generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey] }), /1024-bit RSA key: at least 2048 bits/)
  t.throws(make({ keys: [generateKeyPairSync('ed448').publicKey] }), /ed448/)
  t.throws(make({ keys: [generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey] }), /P-256, P-384 or P-521/)
  t.throws(make({ keys: ['{"keys":[{"kty":"oct","k":"AAAA"}]}'] }), /symmetric key/)
  t.throws(make({ keys: ['{"kty":"EC"}'] }), /must be a JWK Set/)
  t.throws(make({ keys: ['{"keys":[]}'] }), /holds no key for signatures/)
  t.throws(make({ keys: ['not a key'] }), /neither a PEM key nor a JWK Set/)
  t.throws(make({ keys: ['-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'] }), /not a usable PEM key/)
  t.throws(make({ keys: [{ keys: [{ kty: 'EC', crv: 'P-256', x: RFC_A3_JWK.x }] }] }), /"y" must be a string/)
  t.throws(make({ keys: [{ keys: [{ ...RFC_A3_JWK, alg: 'ES384' }] }] }), /"alg" "ES384" does not fit this key/)
  // An encryption key in an identity provider's set is passed over, not an error.
  const mixed = new JwtVerifier({ keys: [{ keys: [{ ...RFC_A3_JWK, use: 'enc' }, { kty: 'OKP', crv: 'Ed25519', x: RFC8037_X }] }] })
  t.equal(mixed.keyCount, 1)
  // The same key twice is held once; a private key PEM gives its public half.
  const twice = new JwtVerifier({ secrets: [secret, Buffer.from(secret)], keys: [ed.publicKey, ed.publicKey.export({ type: 'spki', format: 'pem' })] })
  t.equal(twice.keyCount, 2)
  t.equal(reason(twice.verify(token('HS256', randomBytes(32), {}))), 'bad signature')
  t.equal(twice.counts.verified, 1, 'one HMAC for the secret given twice')
  t.equal(new JwtVerifier({ keys: [p256.privateKey.export({ type: 'pkcs8', format: 'pem' })] }).keyCount, 1)
  t.end()
})
