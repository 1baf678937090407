// One cookie's value out of a Cookie header (src/server/http/cookie.ts, RFC 6265 §4.2): names
// matched whole, the first of two, quotes, spaces, a repeated field joined with ", ", and what is
// no cookie at all.

import t from 'tap'
import { cookieValue, isCookieName } from '../src/server/http/cookie.js'

t.test('the value of the named cookie, matched by its whole name', (t) => {
  t.equal(cookieValue('sse=abc', 'sse'), 'abc')
  t.equal(cookieValue('a=1; sse=abc; b=2', 'sse'), 'abc')
  t.equal(cookieValue('xsse=no; ssex=no; sse=yes', 'sse'), 'yes', 'a name that contains it is another cookie')
  t.equal(cookieValue('sse=first; sse=second', 'sse'), 'first', 'the first (a browser sends the longest path first)')
  t.equal(cookieValue('  sse = abc ', 'sse'), null, 'a space before = makes another name')
  t.equal(cookieValue('a=1;sse=abc', 'sse'), 'abc', 'no space after ;')
  t.equal(cookieValue('sse="a.b.c"', 'sse'), 'a.b.c', 'double quotes are taken off')
  t.equal(cookieValue('sse=abc  ', 'sse'), 'abc', 'trailing spaces')
  t.equal(cookieValue('a=1, sse=abc', 'sse'), 'abc', 'two Cookie fields joined with ", "')
  t.equal(cookieValue('sse=a=b', 'sse'), 'a=b', 'an = in the value is the value')
  t.end()
})

t.test('none: no header, no such cookie, an empty value, a bare name', (t) => {
  t.equal(cookieValue(undefined, 'sse'), null)
  t.equal(cookieValue('', 'sse'), null)
  t.equal(cookieValue('other=1', 'sse'), null)
  t.equal(cookieValue('sse=', 'sse'), null)
  t.equal(cookieValue('sse=""', 'sse'), null)
  t.equal(cookieValue('sse; other=1', 'sse'), null)
  t.equal(cookieValue(';;;,,,', 'sse'), null)
  t.end()
})

t.test('a cookie name is an RFC 9110 token', (t) => {
  for (const ok of ['sse', '__Host-sse', 'a.b', "x!#$%&'*+-.^_`|~9"]) t.ok(isCookieName(ok), ok)
  for (const bad of ['', 'a b', 'a;b', 'a=b', 'a,b', 'a"b', 'é']) t.notOk(isCookieName(bad), JSON.stringify(bad))
  t.end()
})
