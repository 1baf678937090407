// The keys a JWT verifier holds (RFC 7518 §3, RFC 7517, RFC 8037): secrets, PEM public keys and
// JWK Sets turned once into KeyObjects, each with the algorithms its type alone allows.

import { createHash, createPublicKey, createSecretKey, KeyObject, type JsonWebKey } from 'node:crypto'
import { MIN_JWT_RSA_BITS, MIN_JWT_SECRET_BYTES } from '../limits.js'

/** How each `alg` is checked (RFC 7518 §3.1, RFC 8037 §3.1). `Ed25519` is RFC 9864's name for EdDSA on that curve. */
export const ALGORITHMS = {
  HS256: { kind: 'hmac', hash: 'sha256', bytes: 32 },
  HS384: { kind: 'hmac', hash: 'sha384', bytes: 48 },
  HS512: { kind: 'hmac', hash: 'sha512', bytes: 64 },
  RS256: { kind: 'rsa', hash: 'sha256', bytes: 0 },
  RS384: { kind: 'rsa', hash: 'sha384', bytes: 0 },
  RS512: { kind: 'rsa', hash: 'sha512', bytes: 0 },
  // PSS's salt is as long as the hash (RFC 7518 §3.5); `bytes` is that length here.
  PS256: { kind: 'pss', hash: 'sha256', bytes: 32 },
  PS384: { kind: 'pss', hash: 'sha384', bytes: 48 },
  PS512: { kind: 'pss', hash: 'sha512', bytes: 64 },
  // ECDSA signatures are r‖s, each as long as the curve's order (RFC 7518 §3.4): 2 × 32, 48, 66.
  ES256: { kind: 'ec', hash: 'sha256', bytes: 64 },
  ES384: { kind: 'ec', hash: 'sha384', bytes: 96 },
  ES512: { kind: 'ec', hash: 'sha512', bytes: 132 },
  EdDSA: { kind: 'ed', hash: null, bytes: 64 },
  Ed25519: { kind: 'ed', hash: null, bytes: 64 },
} as const

export type Alg = keyof typeof ALGORITHMS
export type AlgSpec = (typeof ALGORITHMS)[Alg]

const HMAC_ALGS: readonly Alg[] = ['HS256', 'HS384', 'HS512']
const RSA_ALGS: readonly Alg[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
const PSS_ALGS: readonly Alg[] = ['PS256', 'PS384', 'PS512']
const ED_ALGS: readonly Alg[] = ['EdDSA', 'Ed25519']
const EC_CURVES: Readonly<Record<string, Alg>> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }
const JWK_CURVES: Readonly<Record<string, string>> = { 'P-256': 'prime256v1', 'P-384': 'secp384r1', 'P-521': 'secp521r1' }

export function isAlg(name: string): name is Alg {
  return Object.hasOwn(ALGORITHMS, name)
}

/** One configured key: made once, used for every token it may check. */
export interface VerifyKey {
  readonly key: KeyObject
  /** The JWK's `kid`, or null (secrets, PEM keys, JWKs without one). */
  readonly kid: string | null
  /** What a token signed with this key may name as its `alg`: follows from the key's type alone. */
  readonly algs: ReadonlySet<Alg>
  /** The signature length an RSA key makes (its modulus in bytes); 0 for other keys. */
  readonly rsaBytes: number
  /** SHA-256 of the key material: the same key, whatever file or reload it came from. */
  readonly fingerprint: string
}

/** A `keys` entry: PEM text, JWK Set JSON text (or the file's bytes), a parsed JWK Set, or a KeyObject. */
export type JwtKeySource = string | Buffer | KeyObject | { keys: readonly unknown[] }

/** An HS256/384/512 secret. Throws when it is shorter than MIN_JWT_SECRET_BYTES. */
export function secretKey(secret: string | Buffer, what: string): VerifyKey {
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret
  if (bytes.length < MIN_JWT_SECRET_BYTES) {
    throw new Error(`${what} is ${bytes.length} bytes: a JWT secret must be at least ${MIN_JWT_SECRET_BYTES} bytes`)
  }
  return {
    key: createSecretKey(bytes),
    kid: null,
    algs: new Set(HMAC_ALGS),
    rsaBytes: 0,
    fingerprint: 'secret:' + createHash('sha256').update(bytes).digest('base64url'),
  }
}

/** The verifying keys of one `keys` entry. Throws an Error naming `what` when a key cannot be used. */
export function publicKeys(source: JwtKeySource, what: string): VerifyKey[] {
  if (source instanceof KeyObject) return [asymmetric(source, null, null, what)]
  if (typeof source === 'string' || Buffer.isBuffer(source)) {
    const text = typeof source === 'string' ? source : source.toString('utf8')
    const start = text.trimStart()
    if (start.startsWith('{')) {
      let parsed: unknown
      try {
        parsed = JSON.parse(text)
      } catch {
        throw new Error(`${what} is neither a PEM key nor valid JSON`)
      }
      return jwkSet(parsed, what)
    }
    if (!start.startsWith('-----BEGIN ')) throw new Error(`${what} is neither a PEM key nor a JWK Set`)
    let key: KeyObject
    try {
      key = createPublicKey(text)
    } catch (err) {
      throw new Error(`${what}: not a usable PEM key (${(err as Error).message})`)
    }
    return [asymmetric(key, null, null, what)]
  }
  return jwkSet(source, what)
}

function jwkSet(json: unknown, what: string): VerifyKey[] {
  const keys = (json as { keys?: unknown } | null)?.keys
  if (json === null || typeof json !== 'object' || !Array.isArray(keys)) throw new Error(`${what} must be a JWK Set: {"keys":[…]}`)
  const out: VerifyKey[] = []
  keys.forEach((jwk: unknown, i) => {
    const key = fromJwk(jwk, `${what} keys[${i}]`)
    if (key !== null) out.push(key)
  })
  if (out.length === 0) throw new Error(`${what} holds no key for signatures`)
  return out
}

/** A JWK's verifying key, or null for a key meant for encryption (an identity provider's set often holds both). */
function fromJwk(value: unknown, what: string): VerifyKey | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${what} is not an object`)
  const jwk = value as Record<string, unknown>
  if (jwk.use === 'enc') return null
  if (jwk.use !== undefined && jwk.use !== 'sig') throw new Error(`${what}: "use" must be "sig"`)
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return null
  if (jwk.kid !== undefined && typeof jwk.kid !== 'string') throw new Error(`${what}: "kid" must be a string`)
  if (jwk.alg !== undefined && typeof jwk.alg !== 'string') throw new Error(`${what}: "alg" must be a string`)
  if (jwk.kty === 'oct') throw new Error(`${what} is a symmetric key: give secrets as jwt secrets, not keys`)
  if (jwk.kty !== 'RSA' && jwk.kty !== 'EC' && jwk.kty !== 'OKP') throw new Error(`${what}: "kty" must be RSA, EC or OKP`)
  if (jwk.kty === 'EC' && (typeof jwk.crv !== 'string' || !Object.hasOwn(JWK_CURVES, jwk.crv))) throw new Error(`${what}: an EC key's "crv" must be P-256, P-384 or P-521`)
  if (jwk.kty === 'OKP' && jwk.crv !== 'Ed25519') throw new Error(`${what}: an OKP key's "crv" must be Ed25519`)
  // Only the public members: a private JWK given by mistake still yields just its public half.
  const members = jwk.kty === 'RSA' ? ['kty', 'n', 'e'] : jwk.kty === 'EC' ? ['kty', 'crv', 'x', 'y'] : ['kty', 'crv', 'x']
  const pub: Record<string, unknown> = {}
  for (const m of members) {
    if (typeof jwk[m] !== 'string') throw new Error(`${what}: "${m}" must be a string`)
    pub[m] = jwk[m]
  }
  let key: KeyObject
  try {
    key = createPublicKey({ key: pub as JsonWebKey, format: 'jwk' })
  } catch (err) {
    throw new Error(`${what}: not a usable key (${(err as Error).message})`)
  }
  return asymmetric(key, (jwk.kid as string | undefined) ?? null, (jwk.alg as string | undefined) ?? null, what)
}

/** A public (or private: its public half) KeyObject with the algorithms its type allows, narrowed to a JWK's `alg`. */
function asymmetric(given: KeyObject, kid: string | null, onlyAlg: string | null, what: string): VerifyKey {
  if (given.type === 'secret') throw new Error(`${what} is a symmetric key: give secrets as jwt secrets, not keys`)
  const key = given.type === 'private' ? createPublicKey(given) : given
  const details = key.asymmetricKeyDetails ?? {}
  let algs: readonly Alg[]
  let rsaBytes = 0
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss': {
      const bits = details.modulusLength ?? 0
      if (bits < MIN_JWT_RSA_BITS) throw new Error(`${what} is a ${bits}-bit RSA key: at least ${MIN_JWT_RSA_BITS} bits`)
      rsaBytes = Math.ceil(bits / 8)
      // An RSASSA-PSS key may pin its hash; it then signs with that PS* alone.
      const pinned = details.hashAlgorithm
      algs = key.asymmetricKeyType === 'rsa' ? RSA_ALGS : PSS_ALGS.filter((a) => pinned === undefined || ALGORITHMS[a].hash === pinned)
      break
    }
    case 'ec': {
      const alg = EC_CURVES[details.namedCurve ?? '']
      if (alg === undefined) throw new Error(`${what}: EC keys must be on P-256, P-384 or P-521`)
      algs = [alg]
      break
    }
    case 'ed25519':
      algs = ED_ALGS
      break
    default:
      throw new Error(`${what}: a ${key.asymmetricKeyType ?? 'unknown'} key signs no JWT rawsse checks (RSA, EC P-256/384/521, Ed25519)`)
  }
  if (onlyAlg !== null) {
    // RFC 7517 §4.4: a JWK's `alg` names the one algorithm it is for.
    if (!isAlg(onlyAlg) || !algs.includes(onlyAlg)) throw new Error(`${what}: "alg" ${JSON.stringify(onlyAlg)} does not fit this key`)
    algs = onlyAlg === 'EdDSA' || onlyAlg === 'Ed25519' ? ED_ALGS : [onlyAlg]
  }
  const der = key.export({ type: 'spki', format: 'der' })
  return { key, kid, algs: new Set(algs), rsaBytes, fingerprint: 'spki:' + createHash('sha256').update(der).digest('base64url') }
}
