// Verifying the JWTs an application signs (RFC 7519 on RFC 7515's compact form, algorithms of
// RFC 7518 §3 and RFC 8037): node:crypto only, one KeyObject per key, a verified token cached.
// CONTRACT "Tokens an application signs". The keys themselves are jwk.ts's.

import { createHmac, constants, timingSafeEqual, verify as cryptoVerify } from 'node:crypto'
import { ALGORITHMS, isAlg, publicKeys, secretKey, type Alg, type AlgSpec, type JwtKeySource, type VerifyKey } from './jwk.js'
import { isBase64url, jsonObject, type JsonRefusal } from './jws-bytes.js'
import { JWT_CACHE_BYTES, JWT_CACHE_ENTRIES, JWT_LEEWAY_MS, MAX_JWT_BYTES, MAX_NAME_BYTES, MAX_TOKEN_GRANTS } from '../limits.js'

export type { JwtKeySource } from './jwk.js'

/** What the server needs to know about whom a token (or a ticket) lets in. */
export interface AppIdentity {
  /** `sub`; null when the token has none. */
  readonly user: string | null
  /** `rawsse.roles`; empty when absent. */
  readonly roles: readonly string[]
  /** `rawsse.channels`: channel names, or prefixes ending in `*`; null (no claim) = every channel. */
  readonly grants: readonly string[] | null
  /** `exp` in ms since the epoch; null when the token never expires. */
  readonly expiresAt: number | null
}

/** `jwt` of the library's options; the CLI's `--jwt-*` flags, with key files already read. */
export interface JwtConfig {
  /** HS256/384/512 secrets, each at least 32 bytes. */
  secrets?: readonly (string | Buffer)[]
  /** PEM public keys or JWK Sets (text, bytes or parsed), or KeyObjects. */
  keys?: readonly JwtKeySource[]
  /** When given, `iss` must equal it. */
  issuer?: string
  /** When given, `aud` must be it or contain it. */
  audience?: string
}

export interface JwtVerifierOptions {
  /** The clock, in ms since the epoch (tests set it back to the RFCs' 2011). */
  now?: () => number
}

/** Why a token was refused: for the log only (it never holds the token), the client gets one 401 whatever it says. */
export type JwtRefusal =
  | 'too long'
  | 'not three parts'
  | 'bad base64url'
  | `header: ${JsonRefusal}`
  | 'header: no alg'
  | 'alg none'
  | 'alg unknown'
  | 'header: crit not understood'
  | 'header: kid not a string'
  | 'unknown kid'
  | 'no key for alg'
  | 'signature length'
  | 'bad signature'
  | `claims: ${JsonRefusal}`
  | 'claims: bad exp or nbf'
  | 'claims: bad sub'
  | 'claims: bad rawsse'
  | 'expired'
  | 'not yet valid'
  | 'wrong issuer'
  | 'wrong audience'

export interface JwtAccepted {
  readonly ok: true
  readonly identity: AppIdentity
}
export interface JwtRefused {
  readonly ok: false
  readonly reason: JwtRefusal
}
export type JwtResult = JwtAccepted | JwtRefused

/** A compact JWS whose signature checks out, before any claim is looked at. */
export interface JwsVerified {
  readonly ok: true
  readonly header: Readonly<Record<string, unknown>>
  readonly alg: Alg
  /** The JWS payload's bytes (for a JWT, its claims' JSON). */
  readonly payload: Buffer
  readonly key: VerifyKey
}

// Refusals carry no detail, so each is one frozen object: refusing allocates nothing.
const refusals = new Map<JwtRefusal, JwtRefused>()
function refuse(reason: JwtRefusal): JwtRefused {
  let r = refusals.get(reason)
  if (r === undefined) refusals.set(reason, (r = Object.freeze({ ok: false, reason })))
  return r
}

/** True when `s` has the shape of a compact JWS (three parts, two dots): it is then tried as a JWT. */
export function looksLikeJwt(s: string): boolean {
  const a = s.indexOf('.')
  if (a <= 0) return false
  const b = s.indexOf('.', a + 1)
  return b > 0 && s.indexOf('.', b + 1) < 0
}

// How a token was verified, for stillAccepts() after a reload. Weak, as auth.ts's digests: it
// lives as long as someone holds the identity.
interface Provenance {
  fingerprint: string
  alg: Alg
  iss: unknown
  aud: unknown
}
const provenance = new WeakMap<AppIdentity, Provenance>()

interface CacheEntry {
  result: JwtAccepted
  notBefore: number // ms; -Infinity without `nbf`
  expires: number // ms; Infinity without `exp`
}

/**
 * Checks tokens against one configuration. Build a new one to reload (SIGHUP): reload() does, and
 * stillAccepts() then tells which identities the old one handed out the new one would give again.
 */
export class JwtVerifier {
  /** Signatures checked, and tokens answered from the cache instead (for /stats and the bench). */
  readonly counts = { verified: 0, cached: 0 }
  private readonly now: () => number
  private readonly issuer: string | null
  private readonly audience: string | null
  private readonly byAlg = new Map<Alg, VerifyKey[]>()
  private readonly byKid = new Map<string, VerifyKey[]>()
  private readonly byFingerprint = new Map<string, VerifyKey>()
  // Insertion order is recency: a hit is moved to the end, the first entry is the least recent.
  private readonly cache = new Map<string, CacheEntry>()
  private cacheBytes = 0

  /** Throws an Error saying what is wrong with a secret or key (never printing a secret). */
  constructor(
    config: JwtConfig,
    private readonly options: JwtVerifierOptions = {},
  ) {
    this.now = options.now ?? Date.now
    this.issuer = config.issuer ?? null
    this.audience = config.audience ?? null
    const keys: VerifyKey[] = []
    config.secrets?.forEach((s, i) => keys.push(secretKey(s, `jwt secret ${i + 1}`)))
    config.keys?.forEach((k, i) => keys.push(...publicKeys(k, `jwt key ${i + 1}`)))
    const seen = new Set<string>()
    for (const key of keys) {
      // The same key given twice (a PEM and a JWK of it, say) is tried once.
      const id = `${key.fingerprint} ${key.kid ?? ''}`
      if (seen.has(id)) continue
      seen.add(id)
      this.byFingerprint.set(key.fingerprint, key)
      for (const alg of key.algs) push(this.byAlg, alg, key)
      if (key.kid !== null) push(this.byKid, key.kid, key)
    }
  }

  /** A verifier for a new configuration, on the same clock; this one is left as it was. */
  reload(config: JwtConfig): JwtVerifier {
    return new JwtVerifier(config, this.options)
  }

  /** How many keys and secrets it holds. */
  get keyCount(): number {
    return this.byFingerprint.size
  }

  /** The identity in `token`, or why not. Never throws. */
  verify(token: string): JwtResult {
    if (token.length > MAX_JWT_BYTES) return refuse('too long')
    const now = this.now()
    const hit = this.cache.get(token)
    if (hit !== undefined) {
      const late = timeRefusal(hit.notBefore, hit.expires, now)
      this.cache.delete(token)
      if (late !== null) {
        this.cacheBytes -= token.length
        return late
      }
      this.cache.set(token, hit)
      this.counts.cached++
      return hit.result
    }
    const jws = this.verifyJws(token)
    if (!jws.ok) return jws
    const claims = jsonObject(jws.payload)
    if (typeof claims === 'string') return refuse(`claims: ${claims}`)
    const checked = this.claimsRefusal(claims, now)
    if (checked !== null) return checked
    const identity = identityOf(claims)
    if (typeof identity === 'string') return refuse(identity)
    provenance.set(identity, { fingerprint: jws.key.fingerprint, alg: jws.alg, iss: claims.iss, aud: claims.aud })
    const result: JwtAccepted = Object.freeze({ ok: true, identity })
    this.remember(token, {
      result,
      notBefore: typeof claims.nbf === 'number' ? claims.nbf * 1000 : -Infinity,
      expires: typeof claims.exp === 'number' ? claims.exp * 1000 : Infinity,
    })
    return result
  }

  /**
   * The signature step alone: a compact JWS whose `alg` the key's type allows and whose signature
   * is right, claims not looked at (RFC 8037's examples sign a payload that is not JSON).
   */
  verifyJws(token: string): JwsVerified | JwtRefused {
    if (token.length > MAX_JWT_BYTES) return refuse('too long')
    const d1 = token.indexOf('.')
    const d2 = d1 < 0 ? -1 : token.indexOf('.', d1 + 1)
    if (d2 < 0 || token.indexOf('.', d2 + 1) >= 0) return refuse('not three parts')
    if (!isBase64url(token, 0, d1) || !isBase64url(token, d1 + 1, d2) || !isBase64url(token, d2 + 1, token.length)) {
      return refuse('bad base64url')
    }
    const header = jsonObject(Buffer.from(token.slice(0, d1), 'base64url'))
    if (typeof header === 'string') return refuse(`header: ${header}`)
    const alg = header.alg
    if (typeof alg !== 'string') return refuse('header: no alg')
    if (alg.toLowerCase() === 'none') return refuse('alg none')
    if (!isAlg(alg)) return refuse('alg unknown')
    // RFC 7515 §4.1.11: an extension a recipient does not understand makes the JWS invalid; we understand none.
    if (header.crit !== undefined) return refuse('header: crit not understood')
    const candidates = this.candidates(header.kid, alg)
    if (typeof candidates === 'string') return refuse(candidates)

    const spec = ALGORITHMS[alg]
    const signature = Buffer.from(token.slice(d2 + 1), 'base64url')
    if (spec.kind !== 'rsa' && spec.kind !== 'pss' && signature.length !== spec.bytes) return refuse('signature length')
    const input = Buffer.from(token.slice(0, d2), 'latin1')
    let wrongLength = false
    for (const key of candidates) {
      if (key.rsaBytes !== 0 && signature.length !== key.rsaBytes) {
        wrongLength = true
        continue
      }
      this.counts.verified++
      if (signatureHolds(spec, key, input, signature)) {
        return { ok: true, header, alg, payload: Buffer.from(token.slice(d1 + 1, d2), 'base64url'), key }
      }
    }
    return refuse(wrongLength ? 'signature length' : 'bad signature')
  }

  /**
   * After a reload: whether this verifier would still accept the token behind `identity` (its key
   * is still here for its alg, and the issuer and audience still fit); undefined for an identity no
   * JwtVerifier handed out. Expiry is not looked at: the stream's timer does that.
   */
  stillAccepts(identity: AppIdentity): boolean | undefined {
    const from = provenance.get(identity)
    if (from === undefined) return undefined
    const key = this.byFingerprint.get(from.fingerprint)
    if (key === undefined || !key.algs.has(from.alg)) return false
    return (this.issuer === null || from.iss === this.issuer) && (this.audience === null || audienceHolds(from.aud, this.audience))
  }

  /** The keys a token may have been signed with, or why there is none. */
  private candidates(kid: unknown, alg: Alg): readonly VerifyKey[] | JwtRefusal {
    const forAlg = this.byAlg.get(alg)
    if (kid !== undefined && this.byKid.size > 0) {
      // Keys carry ids: the token's kid picks among them. It is only ever a Map key, so `../`
      // or a NUL in it is just a kid nobody has.
      if (typeof kid !== 'string') return 'header: kid not a string'
      const named = this.byKid.get(kid)
      if (named === undefined) return 'unknown kid'
      const fit = named.filter((k) => k.algs.has(alg))
      return fit.length > 0 ? fit : 'no key for alg'
    }
    return forAlg === undefined ? 'no key for alg' : forAlg
  }

  private claimsRefusal(claims: Record<string, unknown>, now: number): JwtRefused | null {
    const { exp, nbf } = claims
    if ((exp !== undefined && !Number.isFinite(exp)) || (nbf !== undefined && !Number.isFinite(nbf))) return refuse('claims: bad exp or nbf')
    const late = timeRefusal(nbf === undefined ? -Infinity : (nbf as number) * 1000, exp === undefined ? Infinity : (exp as number) * 1000, now)
    if (late !== null) return late
    if (this.issuer !== null && claims.iss !== this.issuer) return refuse('wrong issuer')
    if (this.audience !== null && !audienceHolds(claims.aud, this.audience)) return refuse('wrong audience')
    return null
  }

  private remember(token: string, entry: CacheEntry): void {
    this.cache.set(token, entry)
    this.cacheBytes += token.length
    while (this.cache.size > JWT_CACHE_ENTRIES || this.cacheBytes > JWT_CACHE_BYTES) {
      const oldest = this.cache.keys().next().value as string
      this.cache.delete(oldest)
      this.cacheBytes -= oldest.length
    }
  }
}

function push<K>(map: Map<K, VerifyKey[]>, k: K, key: VerifyKey): void {
  const list = map.get(k)
  if (list === undefined) map.set(k, [key])
  else list.push(key)
}

/** `exp` (now must be before it) and `nbf` (now must not be before it), each with JWT_LEEWAY_MS. */
function timeRefusal(notBefore: number, expires: number, now: number): JwtRefused | null {
  if (now >= expires + JWT_LEEWAY_MS) return refuse('expired')
  if (now < notBefore - JWT_LEEWAY_MS) return refuse('not yet valid')
  return null
}

function audienceHolds(aud: unknown, audience: string): boolean {
  return aud === audience || (Array.isArray(aud) && aud.includes(audience))
}

function signatureHolds(spec: AlgSpec, key: VerifyKey, input: Buffer, signature: Buffer): boolean {
  try {
    switch (spec.kind) {
      case 'hmac':
        // Equal lengths were checked: timingSafeEqual then takes the same time wherever they differ.
        return timingSafeEqual(createHmac(spec.hash, key.key).update(input).digest(), signature)
      case 'rsa':
        return cryptoVerify(spec.hash, input, { key: key.key, padding: constants.RSA_PKCS1_PADDING }, signature)
      case 'pss':
        return cryptoVerify(spec.hash, input, { key: key.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: spec.bytes }, signature)
      case 'ec':
        return cryptoVerify(spec.hash, input, { key: key.key, dsaEncoding: 'ieee-p1363' }, signature)
      case 'ed':
        return cryptoVerify(null, input, key.key, signature)
    }
  } catch {
    // OpenSSL refusing the input outright (a value out of range, say) is a bad signature too.
    return false
  }
}

/** The identity the claims grant, or why they cannot. */
function identityOf(claims: Record<string, unknown>): AppIdentity | JwtRefusal {
  const { sub, rawsse, exp } = claims
  if (sub !== undefined && !isName(sub)) return 'claims: bad sub'
  let roles: readonly string[] = []
  let grants: readonly string[] | null = null
  if (rawsse !== undefined) {
    if (rawsse === null || typeof rawsse !== 'object' || Array.isArray(rawsse)) return 'claims: bad rawsse'
    const own = rawsse as Record<string, unknown>
    if (own.roles !== undefined) {
      if (!isNameList(own.roles)) return 'claims: bad rawsse'
      roles = Object.freeze([...own.roles])
    }
    if (own.channels !== undefined) {
      if (!isNameList(own.channels)) return 'claims: bad rawsse'
      grants = Object.freeze([...own.channels])
    }
  }
  return Object.freeze({
    user: sub === undefined ? null : (sub as string),
    roles,
    grants,
    expiresAt: typeof exp === 'number' ? exp * 1000 : null,
  })
}

/** A user, role or channel name as the routes take one: 1 to MAX_NAME_BYTES, no CR or LF. */
export function isName(v: unknown): v is string {
  return typeof v === 'string' && v !== '' && Buffer.byteLength(v) <= MAX_NAME_BYTES && !/[\r\n]/.test(v)
}

/** A claim's or a ticket's `roles` or `channels`: at most MAX_TOKEN_GRANTS names. */
export function isNameList(v: unknown): v is string[] {
  return Array.isArray(v) && v.length <= MAX_TOKEN_GRANTS && v.every(isName)
}
