// The bytes of a compact JWS that nobody has vouched for yet (RFC 7515 §7.1): strict base64url,
// and JSON parsed only when its nesting is bounded. Never throws.

import { isUtf8 } from 'node:buffer'
import { MAX_JWT_JSON_DEPTH } from '../limits.js'

/** Why a part is not a JSON object. */
export type JsonRefusal = 'not UTF-8' | 'not JSON' | 'not an object' | 'too deeply nested'

// RFC 7515 §2: base64url without padding. Node's decoder skips what it does not know, so every
// character is checked here first, against this table.
const BASE64URL = new Uint8Array(128)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_') BASE64URL[c.charCodeAt(0)] = 1

/**
 * Strict base64url of s[from, to): its alphabet only, no `=`, no length that leaves a lone
 * character, and no stray bits in the last character (RFC 4648 §3.5), so that one value has one
 * spelling and a signature cannot be altered without changing what it decodes to.
 */
export function isBase64url(s: string, from: number, to: number): boolean {
  const n = to - from
  if (n % 4 === 1) return false
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c >= 128 || BASE64URL[c] === 0) return false
  }
  if (n % 4 === 0) return true
  const last = sextet(s.charCodeAt(to - 1))
  return n % 4 === 2 ? (last & 0x0f) === 0 : (last & 0x03) === 0
}

function sextet(c: number): number {
  if (c >= 97) return c - 71 // a-z: 26..51
  if (c >= 65) return c - 65 // A-Z: 0..25
  if (c >= 48) return c + 4 // 0-9: 52..61
  return c === 45 ? 62 : 63 // - _
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_BRACE = 0x7b
const OPEN_BRACKET = 0x5b
const CLOSE_BRACE = 0x7d
const CLOSE_BRACKET = 0x5d

/**
 * A JSON object from bytes nobody vouched for yet, or why not. Nesting is counted before
 * JSON.parse sees it, so that no depth of brackets costs more than one pass, and nothing thrown
 * gets out. UTF-8 never encodes another character with an ASCII byte, so the bytes can be scanned as is.
 */
export function jsonObject(bytes: Buffer): Record<string, unknown> | JsonRefusal {
  if (!isUtf8(bytes)) return 'not UTF-8'
  let depth = 0
  let inString = false
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!
    if (inString) {
      if (b === BACKSLASH) i++
      else if (b === QUOTE) inString = false
    } else if (b === QUOTE) inString = true
    else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      if (++depth > MAX_JWT_JSON_DEPTH) return 'too deeply nested'
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) depth--
  }
  let value: unknown
  try {
    value = JSON.parse(bytes.toString('utf8'))
  } catch {
    return 'not JSON'
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'not an object'
  return value as Record<string, unknown>
}
