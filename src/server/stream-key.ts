// A stream's key (CONTRACT "Live channels"): the secret `ready` hands its reader, which proves on
// `POST /clients/ID/channels` that the request comes from whoever reads that stream. Made from a
// pool of random bytes, carried between processes only as a digest, compared in constant time.

import { createHash, randomFillSync, timingSafeEqual } from 'node:crypto'
import { STREAM_KEY_BYTES } from './limits.js'

// Random bytes for 256 keys at a time: one call into the CSPRNG per 256 streams opened.
const pool = Buffer.alloc(STREAM_KEY_BYTES * 256)
let taken = pool.length

/** A new key: STREAM_KEY_BYTES random bytes as base64url (22 characters for 128 bits). */
export function newStreamKey(): string {
  if (taken === pool.length) {
    randomFillSync(pool)
    taken = 0
  }
  const key = pool.toString('base64url', taken, taken + STREAM_KEY_BYTES)
  taken += STREAM_KEY_BYTES
  return key
}

/**
 * What a request presented as a key, as it travels to the process holding the stream: its
 * SHA-256, so the key itself never leaves the process that received it (IPC, Redis pub/sub).
 */
export function keyDigest(presented: string): string {
  return createHash('sha256').update(presented).digest('base64url')
}

/** Whether `digest` is the digest of `key`. timingSafeEqual: the time taken says nothing of how much matched. */
export function sameKey(digest: string, key: string): boolean {
  const a = Buffer.from(digest, 'base64url')
  const b = createHash('sha256').update(key).digest()
  return a.length === b.length && timingSafeEqual(a, b)
}
