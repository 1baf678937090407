// The browser client's parser (src/browser/parse.ts) in Node, without a browser: the hard cases of
// WHATWG HTML §9.2.5–9.2.6 fed whole, at every split point and byte by byte; then a differential
// run against the Node client's SseParser (the other reader of our streams; the two must agree on
// every event, id and retry) and eventsource-parser, on 3 000 random streams split at random points.

import t, { type Test } from 'tap'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { eventStreamParser } from '../src/browser/parse.js'
import { SseParser } from '../src/client/sse-parse.js'
import { rng } from './helpers.js'

/** Events and retries in order: "E type data lastEventId own" / "R ms". */
function parse(bytes: Uint8Array, cuts: readonly number[] = [], lastEventId = ''): string[] {
  const log: string[] = []
  const p = eventStreamParser(
    {
      event: (type, data, id, own) => log.push(`E ${JSON.stringify(type)} ${JSON.stringify(data)} ${JSON.stringify(id)} ${own}`),
      retry: (ms) => log.push(`R ${ms}`),
    },
    lastEventId,
  )
  let from = 0
  for (const to of [...cuts, bytes.length]) {
    p.feed(bytes.subarray(from, to))
    from = to
  }
  return log
}

/** The same log at every single split point, and byte by byte, as whole. */
function everySplit(t: Test, bytes: Uint8Array, want: string[], what: string): void {
  t.same(parse(bytes), want, `${what}: whole`)
  let bad = -1
  for (let i = 1; i < bytes.length && bad === -1; i++) if (JSON.stringify(parse(bytes, [i])) !== JSON.stringify(want)) bad = i
  t.equal(bad, -1, `${what}: split at every point (first bad split: ${bad})`)
  t.same(
    parse(
      bytes,
      Array.from({ length: bytes.length - 1 }, (_, i) => i + 1),
    ),
    want,
    `${what}: byte by byte`,
  )
}

const b = (s: string): Uint8Array => new TextEncoder().encode(s)
const E = (type: string, data: string, id = '', own = false): string => `E ${JSON.stringify(type)} ${JSON.stringify(data)} ${JSON.stringify(id)} ${own}`

t.test('reads rawsse first chunk and events: retry, ready, id, named and default events', async (t) => {
  const stream = b('retry: 3417\nevent: ready\ndata: {"client":1}\n\nid: 7\nevent: greet\ndata: hi\n\nid: 8\ndata: plain\n\n')
  everySplit(t, stream, ['R 3417', E('ready', '{"client":1}'), E('greet', 'hi', '7', true), E('message', 'plain', '8', true)], 'rawsse stream')
})

t.test('CRLF, CR and LF each end a line; a CR ending a read is not followed by an empty line', async (t) => {
  everySplit(t, b('data: a\r\ndata: b\rdata: c\n\r\n'), [E('message', 'a\nb\nc')], 'mixed line ends')
  everySplit(t, b('data: x\r\r'), [E('message', 'x')], 'CR CR: a line and a blank line')
  // A CR that ends one read and an LF that starts the next are one line end, not two.
  t.same(parse(b('data: 1\r\ndata: 2\n\n'), [8]), [E('message', '1\n2')], 'CRLF split between reads')
})

t.test('a BOM at the start is dropped, also when split; UTF-8 split across reads is whole', async (t) => {
  everySplit(t, new Uint8Array([0xef, 0xbb, 0xbf, ...b('data: é€😀\n\n')]), [E('message', 'é€😀')], 'BOM and multibyte text')
  everySplit(t, b('data: \ufeffx\n\n'), [E('message', '\ufeffx')], 'a BOM inside a value is text')
})

t.test('ids: NUL ignored, kept across events, moved by an id-only block, empty resets; own only when the block set it', async (t) => {
  everySplit(t, b('id: 1\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\nid: 5\n\ndata: d\n\nid\ndata: e\n\n'), [E('message', 'a', '1', true), E('message', 'b', '1'), E('message', 'c', '1'), E('message', 'd', '5'), E('message', 'e', '', true)], 'ids')
  t.same(parse(b('data: a\n\n'), [], '41'), [E('message', 'a', '41')], 'the id it starts from is the last event id')
})

t.test('fields: one space removed, no colon is an empty value, unknown fields and comments ignored, bad retry ignored', async (t) => {
  everySplit(
    t,
    b(':comment\ndata:  two\ndata\nfoo: bar\nretry: 12x\nretry: -1\nretry:  5\nretry:\nevent\n\ndata: z\nevent: e\n\n'),
    [E('message', ' two\n'), E('e', 'z')],
    'fields',
  )
  everySplit(t, b('event: only\n\ndata:\n\n'), [E('message', '')], 'an event block with no data dispatches nothing; empty data dispatches ""')
  t.same(parse(b('data: never ends')), [], 'an event without its blank line is not dispatched')
})

// ------------------------------------------------------------------ differential

const NAMES = ['data', 'data', 'data', 'event', 'id', 'retry', 'Data', 'dat', '', ' data', 'x']
const PIECES: Array<string | number[]> = ['a', ' ', ':', 'é', '€', '😀', '\0', '1', '9', '\t', [0xff], [0xe2, 0x82]]
const SEPARATORS = [':', ': ', ': ', ':  ', '']
const LINE_ENDS = ['\n', '\n', '\r\n', '\r']

function randomStream(rand: () => number): Uint8Array {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!
  const out: number[] = []
  const add = (p: string | number[]): number => out.push(...(typeof p === 'string' ? b(p) : p))
  if (rand() < 0.1) add([0xef, 0xbb, 0xbf])
  const lines = 1 + Math.floor(rand() * 24)
  for (let i = 0; i < lines; i++) {
    const r = rand()
    if (r < 0.25) {
      // a blank line
    } else if (r < 0.3) {
      add(':c')
    } else {
      add(pick(NAMES) + pick(SEPARATORS))
      for (let n = Math.floor(rand() * 6); n > 0; n--) add(pick(PIECES))
    }
    if (i < lines - 1 || rand() < 0.7) add(pick(LINE_ENDS))
  }
  return new Uint8Array(out)
}

/** The Node client's parser on the same bytes, logged the same way. */
function nodeParser(bytes: Uint8Array, cuts: readonly number[]): string[] {
  const log: string[] = []
  const p = new SseParser({
    onEvent: (type, data, start, end) => log.push(`E ${JSON.stringify(type)} ${JSON.stringify(data.toString('utf8', start, end))} ${JSON.stringify(p.lastEventId)}`),
    onRetry: (ms) => log.push(`R ${ms}`),
  })
  let from = 0
  for (const to of [...cuts, bytes.length]) {
    p.feed(Buffer.from(bytes.subarray(from, to)))
    from = to
  }
  return log
}

function reference(bytes: Uint8Array, cuts: readonly number[]): string[] {
  const log: string[] = []
  const p = createParser({
    onEvent: (e: EventSourceMessage) => log.push(`E ${JSON.stringify(e.event ?? 'message')} ${JSON.stringify(e.data)}`),
    onRetry: (ms: number) => log.push(`R ${ms}`),
  })
  const decoder = new TextDecoder()
  let from = 0
  for (const to of [...cuts, bytes.length]) {
    p.feed(decoder.decode(bytes.subarray(from, to), { stream: true }))
    from = to
  }
  return log
}

t.test('reads 3 000 random streams split at random points as SseParser (events, ids, retries) and eventsource-parser (events, retries) do', async (t) => {
  const rand = rng(20_250_125)
  let mismatches = 0
  let first = ''
  let events = 0
  for (let n = 0; n < 3_000; n++) {
    // A stream ending in CR: we dispatch at once, eventsource-parser waits to know it is not half
    // a CRLF. A final LF settles both.
    const bytes = new Uint8Array([...randomStream(rand), 10])
    const cuts = [...new Set(Array.from({ length: Math.floor(rand() * 4) }, () => Math.floor(rand() * bytes.length)))].sort((x, y) => x - y)
    const ours = parse(bytes, cuts)
    events += ours.length
    const withIds = ours.map((l) => l.replace(/ (true|false)$/, ''))
    const noIds = ours.map((l) => (l.startsWith('E ') ? l.replace(/ "(?:[^"\\]|\\.)*" (true|false)$/, '') : l))
    const node = nodeParser(bytes, cuts)
    const ref = reference(bytes, cuts)
    if (JSON.stringify(withIds) !== JSON.stringify(node) || JSON.stringify(noIds) !== JSON.stringify(ref)) {
      mismatches++
      first ||= `${JSON.stringify(Buffer.from(bytes).toString('latin1'))} cuts ${cuts}: ours ${JSON.stringify(ours)} node ${JSON.stringify(node)} ref ${JSON.stringify(ref)}`
    }
  }
  t.ok(events > 2_000, `the streams held events (${events})`)
  t.equal(mismatches, 0, first)
})
