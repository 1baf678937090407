// One cookie's value out of a request's `Cookie` header (RFC 6265 §4.2, §5.4), read in place:
// the header is already within the head's limits, and this makes no string but the value.

const SEMICOLON = 59
const COMMA = 44
const SP = 32
const HTAB = 9
const DQUOTE = 34

/** Whether `name` is an RFC 6265 cookie-name (an RFC 9110 token: visible ASCII but separators). */
export function isCookieName(name: string): boolean {
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)
}

/**
 * The value of the first cookie called `name` in `header` (a browser sends the one with the
 * longest path first), without the double quotes a value may wear; null when there is none or
 * it is empty. Pairs are split at `;` and also at `,`: a repeated `Cookie` field arrives joined
 * with ", " (head.ts), and a cookie-value never holds a comma.
 */
export function cookieValue(header: string | undefined, name: string): string | null {
  if (header === undefined) return null
  const n = header.length
  let i = 0
  while (i < n) {
    while (i < n && isSpace(header.charCodeAt(i))) i++
    let end = i
    while (end < n && !isSeparator(header.charCodeAt(end))) end++
    const eq = header.indexOf('=', i)
    if (eq !== -1 && eq < end && eq - i === name.length && header.startsWith(name, i)) {
      let from = eq + 1
      let to = end
      while (to > from && isSpace(header.charCodeAt(to - 1))) to--
      if (to - from >= 2 && header.charCodeAt(from) === DQUOTE && header.charCodeAt(to - 1) === DQUOTE) {
        from++
        to--
      }
      return to > from ? header.slice(from, to) : null
    }
    i = end + 1
  }
  return null
}

function isSpace(c: number): boolean {
  return c === SP || c === HTAB
}

function isSeparator(c: number): boolean {
  return c === SEMICOLON || c === COMMA
}
