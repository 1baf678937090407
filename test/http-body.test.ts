// Unit tests of the request body reader (src/server/http/body.ts): Content-Length and chunked bodies
// (RFC 9112 §6–§7) fed whole, byte by byte and at every split point; each limit at N and N+1.

import t from 'tap'
import { statusOf } from './helpers.js'
import { BodyReader } from '../src/server/http/body.js'
import { HttpError } from '../src/server/http/errors.js'
import { MAX_BODY_BYTES, MAX_REQUEST_CHUNK_LINE_BYTES } from '../src/server/limits.js'

const b = (s: string): Buffer => Buffer.from(s, 'latin1')


/** Bytes of the next pipelined request, which a body must never take. */
const NEXT = 'GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n'

interface Outcome {
  consumed: number
  done: boolean
  body: string
  /** Set when feed() left bytes of a piece unconsumed before the body was done. */
  stalled: boolean
  /** Set when done was already true before all of the body's bytes had been fed. */
  early: boolean
}

/**
 * Feed `wire` cut at `cuts` the way the server does: piece by piece until done; whatever a
 * feed leaves belongs to the next request. `bodyLen` is where the body's bytes end in `wire`.
 */
function run(reader: BodyReader, wire: Buffer, cuts: number[], bodyLen: number): Outcome {
  const edges = [0, ...cuts, wire.length]
  let consumed = 0
  let stalled = false
  let early = false
  for (let k = 0; k + 1 < edges.length && !reader.done; k++) {
    const piece = wire.subarray(edges[k]!, edges[k + 1]!)
    const n = reader.feed(piece)
    consumed += n
    if (n < piece.length && !reader.done) stalled = true
    if (reader.done && consumed < bodyLen) early = true
  }
  return { consumed, done: reader.done, body: reader.done ? reader.body().toString('latin1') : '', stalled, early }
}

const whole = (want: string, bodyLen: number): Outcome => ({ consumed: bodyLen, done: true, body: want, stalled: false, early: false })

interface Asserts {
  same(found: unknown, wanted: unknown, msg: string): boolean
  equal(found: unknown, wanted: unknown, msg: string): boolean
}

/** Whole, at every split point, at every pair of split points (small bodies only) and byte by byte. */
function checkAllFeeds(t: Asserts, make: () => BodyReader, bodyWire: string, want: string, pairs: boolean): void {
  const wire = b(bodyWire + NEXT)
  const len = bodyWire.length
  t.same(run(make(), wire, [], len), whole(want, len), 'fed whole, with the next request after it')
  t.same(run(make(), b(bodyWire), [], len), whole(want, len), 'fed whole, alone')

  const badSplits: number[] = []
  const doneTooSoon: number[] = []
  for (let i = 1; i < wire.length; i++) {
    const first = make()
    if (i < len) {
      first.feed(wire.subarray(0, i))
      if (first.done) doneTooSoon.push(i)
    }
    if (JSON.stringify(run(make(), wire, [i], len)) !== JSON.stringify(whole(want, len))) badSplits.push(i)
  }
  t.same(badSplits, [], 'the same body at every split point')
  t.same(doneTooSoon, [], 'not done before its last byte')

  if (pairs) {
    const badPairs: Array<[number, number]> = []
    for (let i = 1; i < len; i++) {
      for (let j = i + 1; j <= len; j++) {
        if (JSON.stringify(run(make(), wire, [i, j], len)) !== JSON.stringify(whole(want, len))) badPairs.push([i, j])
      }
    }
    t.same(badPairs, [], 'the same body at every pair of split points')
  }

  const everyByte = Array.from({ length: wire.length - 1 }, (_, i) => i + 1)
  t.same(run(make(), wire, everyByte, len), whole(want, len), 'fed byte by byte')
}

const chunkedReader = (): BodyReader => new BodyReader(true, -1)

// --- Content-Length ---

t.test('reads a Content-Length body and leaves the next request', (t) => {
  const r = new BodyReader(false, 5)
  t.equal(r.done, false)
  t.equal(r.feed(b('hello' + NEXT)), 5)
  t.equal(r.done, true)
  t.equal(r.body().toString(), 'hello')
  t.equal(r.feed(b(NEXT)), 0, 'once done, feed takes nothing')
  t.end()
})

t.test('reads a Content-Length body the same whole, byte by byte and at every split point', (t) => {
  const body = 'a\r\n\r\nb 0\r\n\r\nhello'
  checkAllFeeds(t, () => new BodyReader(false, body.length), body, body, true)
  t.end()
})

t.test('is not done until the last Content-Length byte', (t) => {
  const r = new BodyReader(false, 5)
  t.equal(r.feed(b('hell')), 4)
  t.equal(r.done, false)
  t.equal(r.feed(b('o')), 1)
  t.equal(r.done, true)
  t.equal(r.body().toString(), 'hello')
  t.end()
})

t.test('is done at once with Content-Length 0 and takes no bytes', (t) => {
  const r = new BodyReader(false, 0)
  t.equal(r.done, true)
  t.equal(r.body().length, 0)
  t.equal(r.feed(b(NEXT)), 0)
  t.end()
})

t.test('accepts Content-Length MAX_BODY_BYTES and refuses one more with 413 at construction', (t) => {
  const r = new BodyReader(false, MAX_BODY_BYTES)
  t.equal(r.feed(Buffer.alloc(MAX_BODY_BYTES + 10, 0x78)), MAX_BODY_BYTES)
  t.equal(r.done, true)
  t.equal(r.body().length, MAX_BODY_BYTES)
  t.equal(statusOf(() => new BodyReader(false, MAX_BODY_BYTES + 1)), 413)
  t.equal(statusOf(() => new BodyReader(false, Number.MAX_SAFE_INTEGER)), 413)
  t.end()
})

// --- chunked ---

const CHUNKED: Record<string, [wire: string, body: string]> = {
  'a simple chunked body': ['5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n', 'hello world'],
  'chunk extensions': ['5;foo=bar\r\nhello\r\n6 ; name="quoted;value"\r\n world\r\n0;last\r\n\r\n', 'hello world'],
  trailers: ['5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n', 'hello'],
  'LF-only line ends': ['5\nhello\n6\n world\n0\nX-T: 1\n\n', 'hello world'],
  'upper-case hex and leading zeros': ['A\r\n0123456789\r\n1F\r\n' + 'z'.repeat(31) + '\r\n000b\r\nhello world\r\n0\r\n\r\n', '0123456789' + 'z'.repeat(31) + 'hello world'],
  'framing bytes inside chunk data': ['7\r\n0\r\n\r\nab\r\n0\r\n\r\n', '0\r\n\r\nab'],
  'only the last chunk': ['0\r\n\r\n', ''],
}

for (const [name, [wire, want]] of Object.entries(CHUNKED)) {
  t.test(`reads a chunked body with ${name} whole, byte by byte and at every split point`, (t) => {
    checkAllFeeds(t, chunkedReader, wire, want, wire.length <= 64)
    t.end()
  })
}

t.test('is not done before the blank line that ends the chunked body', (t) => {
  const r = chunkedReader()
  t.equal(r.feed(b('5\r\nhello\r\n0\r\n')), 13)
  t.equal(r.done, false)
  t.equal(r.feed(b('X: y\r\n')), 6)
  t.equal(r.done, false)
  t.equal(r.feed(b('\r\n' + NEXT)), 2)
  t.equal(r.done, true)
  t.equal(r.body().toString(), 'hello')
  t.end()
})

t.test('refuses a malformed chunk size with 400', (t) => {
  for (const size of ['xyz', '', '0x5', '-5', '+5', ' 5', '5 5', 'g', '5,', '\x005']) {
    const wire = b(`${size}\r\nhello\r\n0\r\n\r\n`)
    t.equal(statusOf(() => chunkedReader().feed(wire)), 400, JSON.stringify(size))
    t.equal(
      statusOf(() => {
        const r = chunkedReader()
        for (let i = 0; i < wire.length; i++) r.feed(wire.subarray(i, i + 1))
      }),
      400,
      `${JSON.stringify(size)} byte by byte`,
    )
  }
  t.end()
})

t.test('refuses chunk data not followed by its line end with 400', (t) => {
  const cases: Record<string, string> = {
    'another byte': '5\r\nhelloX\r\n0\r\n\r\n',
    'more data than the size': '5\r\nhello world\r\n0\r\n\r\n',
    'the next size line at once': '5\r\nhello0\r\n\r\n',
    'CR CR LF': '5\r\nhello\r\r\n0\r\n\r\n',
    'CR then another byte': '5\r\nhello\rX0\r\n\r\n',
  }
  for (const [name, wire] of Object.entries(cases)) {
    const buf = b(wire)
    t.equal(statusOf(() => chunkedReader().feed(buf)), 400, name)
    t.equal(
      statusOf(() => {
        const r = chunkedReader()
        for (let i = 0; i < buf.length; i++) r.feed(buf.subarray(i, i + 1))
      }),
      400,
      `${name}, byte by byte`,
    )
  }
  t.end()
})

/** Feed a whole chunked body: once, or byte by byte. Returns the body or the refusal's status. */
function readChunked(wire: Buffer, byteByByte: boolean): string | number {
  const r = chunkedReader()
  try {
    if (byteByByte) {
      for (let i = 0; i < wire.length && !r.done; i++) r.feed(wire.subarray(i, i + 1))
    } else {
      r.feed(wire)
    }
  } catch (err) {
    if (err instanceof HttpError) return err.status
    throw err
  }
  return r.done ? r.body().toString('latin1') : 'not done'
}

t.test('accepts a chunk-size line of MAX_REQUEST_CHUNK_LINE_BYTES and refuses one byte more with 400', (t) => {
  // The line's length without its line end (CRLF or LF), as for every other line limit.
  const sizeLine = (n: number): string => '5;x=' + 'e'.repeat(n - 4)
  t.equal(sizeLine(MAX_REQUEST_CHUNK_LINE_BYTES).length, MAX_REQUEST_CHUNK_LINE_BYTES)
  for (const eol of ['\r\n', '\n']) {
    const at = b(`${sizeLine(MAX_REQUEST_CHUNK_LINE_BYTES)}${eol}hello${eol}0${eol}${eol}`)
    const over = b(`${sizeLine(MAX_REQUEST_CHUNK_LINE_BYTES + 1)}${eol}hello${eol}0${eol}${eol}`)
    const tag = JSON.stringify(eol)
    t.equal(readChunked(at, false), 'hello', `at the limit, ${tag}`)
    t.equal(readChunked(at, true), 'hello', `at the limit, ${tag}, byte by byte`)
    t.equal(readChunked(over, false), 400, `one byte over, ${tag}`)
    t.equal(readChunked(over, true), 400, `one byte over, ${tag}, byte by byte`)
  }
  t.end()
})

t.test('accepts a trailer line of MAX_REQUEST_CHUNK_LINE_BYTES and refuses one byte more with 400', (t) => {
  const trailer = (n: number): string => 'X-T: ' + 'v'.repeat(n - 5)
  t.equal(trailer(MAX_REQUEST_CHUNK_LINE_BYTES).length, MAX_REQUEST_CHUNK_LINE_BYTES)
  for (const eol of ['\r\n', '\n']) {
    const at = b(`5${eol}hello${eol}0${eol}${trailer(MAX_REQUEST_CHUNK_LINE_BYTES)}${eol}${eol}`)
    const over = b(`5${eol}hello${eol}0${eol}${trailer(MAX_REQUEST_CHUNK_LINE_BYTES + 1)}${eol}${eol}`)
    const tag = JSON.stringify(eol)
    t.equal(readChunked(at, false), 'hello', `at the limit, ${tag}`)
    t.equal(readChunked(at, true), 'hello', `at the limit, ${tag}, byte by byte`)
    t.equal(readChunked(over, false), 400, `one byte over, ${tag}`)
    t.equal(readChunked(over, true), 400, `one byte over, ${tag}, byte by byte`)
  }
  t.end()
})

t.test('refuses an unfinished chunk line already over MAX_REQUEST_CHUNK_LINE_BYTES with 400', (t) => {
  const long = b('5;x=' + 'e'.repeat(MAX_REQUEST_CHUNK_LINE_BYTES))
  t.equal(statusOf(() => chunkedReader().feed(long)), 400, 'in one read')
  t.equal(
    statusOf(() => {
      const r = chunkedReader()
      r.feed(long.subarray(0, 100))
      r.feed(long.subarray(100))
    }),
    400,
    'in two reads',
  )
  t.end()
})

/** `count` chunks of `size` bytes, then the last chunk. */
function chunks(count: number, size: number, extra = ''): Buffer {
  const data = 'x'.repeat(size)
  const one = `${size.toString(16)}\r\n${data}\r\n`
  return b(one.repeat(count) + extra + '0\r\n\r\n')
}

t.test('accepts chunks summing to MAX_BODY_BYTES and refuses one byte more with 413', (t) => {
  const size = 64 * 1024
  const count = MAX_BODY_BYTES / size
  t.equal(count * size, MAX_BODY_BYTES)
  const at = chunks(count, size)
  const r = chunkedReader()
  t.equal(r.feed(at), at.length)
  t.equal(r.done, true)
  t.equal(r.body().length, MAX_BODY_BYTES)

  t.equal(statusOf(() => chunkedReader().feed(chunks(count, size, '1\r\nx\r\n'))), 413, 'one more byte in a last chunk')

  const one = chunkedReader()
  t.equal(one.feed(b(`${MAX_BODY_BYTES.toString(16)}\r\n`)), MAX_BODY_BYTES.toString(16).length + 2, 'one chunk of MAX_BODY_BYTES')
  t.equal(one.feed(Buffer.alloc(MAX_BODY_BYTES, 0x78)), MAX_BODY_BYTES)
  t.equal(one.feed(b('\r\n0\r\n\r\n')), 7)
  t.equal(one.done, true)
  t.equal(one.body().length, MAX_BODY_BYTES)

  t.equal(
    statusOf(() => chunkedReader().feed(b(`${(MAX_BODY_BYTES + 1).toString(16)}\r\n`))),
    413,
    'one chunk of MAX_BODY_BYTES + 1 is refused at its size line, before its data',
  )
  t.end()
})

t.test('refuses a huge hex chunk size with 413', (t) => {
  for (const size of ['ffffffffffff', 'FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF', '1' + '0'.repeat(100)]) {
    t.equal(statusOf(() => chunkedReader().feed(b(`${size}\r\n`))), 413, size.slice(0, 20))
    t.equal(statusOf(() => chunkedReader().feed(b(`5\r\nhello\r\n${size};ext\r\n`))), 413, `${size.slice(0, 20)} after a chunk`)
  }
  t.end()
})
