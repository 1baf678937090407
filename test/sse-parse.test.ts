// SseParser (src/client/sse-parse.ts) against the WHATWG "Parsing an event stream" rules, fed whole, at
// every split point, in three pieces and byte by byte, through a buffer the caller reuses (so a
// view kept past feed() shows up as garbage); then a differential run against eventsource-parser
// and a literal reading of the spec, on 10 000 random streams split at random points.

import t from 'tap'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { SseParser, type SseParserOptions } from '../src/client/sse-parse.js'
import { rng } from './helpers.js'

interface Ev {
  event: string
  data: string
  id: string | null
}

interface Run {
  events: Ev[]
  retries: number[]
  comments: string[]
  errors: string[]
  /** Events and retries in the order they came: "E type data id" / "R ms". */
  log: string[]
  /** The same without the ids, to compare with eventsource-parser (whose ids mean something else). */
  logNoId: string[]
  parser: SseParser
}

function newRun(options: SseParserOptions = {}): Run {
  const run = { events: [], retries: [], comments: [], errors: [], log: [], logNoId: [] } as unknown as Run
  run.parser = new SseParser(
    {
      onEvent(type, data, start, end) {
        const id = run.parser.lastEventId
        const text = data.toString('utf8', start, end)
        run.events.push({ event: type, data: text, id: id === '' ? null : id })
        run.log.push(`E ${JSON.stringify(type)} ${JSON.stringify(text)} ${JSON.stringify(id)}`)
        run.logNoId.push(`E ${JSON.stringify(type)} ${JSON.stringify(text)}`)
      },
      onRetry(ms) {
        run.retries.push(ms)
        run.log.push(`R ${ms}`)
        run.logNoId.push(`R ${ms}`)
      },
      onComment(text, start, end) {
        run.comments.push(text.toString('utf8', start, end))
      },
      onError(err) {
        run.errors.push(err.type)
      },
    },
    options,
  )
  return run
}

/**
 * Feed `bytes` cut at `cuts`. Each piece is copied into one buffer that is reused and then
 * scribbled over, the way a socket's memory may be: a view kept past feed() reads garbage.
 */
const shared = Buffer.alloc(1 << 16)
function feedPieces(run: Run, bytes: Buffer, cuts: readonly number[]): void {
  let from = 0
  for (const to of [...cuts, bytes.length]) {
    const n = bytes.copy(shared, 7, from, to)
    run.parser.feed(shared, 7, 7 + n)
    shared.fill(0x58, 0, 7 + n + 1) // 'X'
    from = to
  }
}

function parse(bytes: Buffer, cuts: readonly number[] = [], options: SseParserOptions = {}): Run {
  const run = newRun(options)
  feedPieces(run, bytes, cuts)
  return run
}

/** Every way of cutting `bytes` that the tests try: whole, each split in two, in three, byte by byte. */
function* cutsOf(length: number): Generator<number[]> {
  yield []
  for (let i = 0; i <= length; i++) yield [i]
  for (let i = 1; i < length; i++) for (let j = i; j < length; j++) yield [i, j]
  yield Array.from({ length: length - 1 }, (_, i) => i + 1)
}

const b = (s: string): Buffer => Buffer.from(s, 'utf8')

interface Case {
  name: string
  input: Buffer
  events: Array<[string, string, string | null]>
  retries?: number[]
}

const CASES: Case[] = [
  { name: 'dispatches on a blank line, type "message" and id null by default', input: b('data: hi\n\n'), events: [['message', 'hi', null]] },
  { name: 'joins data lines with LF', input: b('data: a\ndata: b\ndata:\n\n'), events: [['message', 'a\nb\n', null]] },
  {
    name: 'reads CRLF, CR and LF line ends, mixed',
    input: b('event: x\r\ndata: 1\rdata: 2\n\r\ndata: 3\r\r'),
    events: [
      ['x', '1\n2', null],
      ['message', '3', null],
    ],
  },
  {
    name: 'reads a CR-only stream',
    input: b('data: a\rdata: b\r\rid: 4\rdata: c\r\r'),
    events: [
      ['message', 'a\nb', null],
      ['message', 'c', '4'],
    ],
  },
  { name: 'strips a leading BOM', input: b('\uFEFFdata: x\n\n'), events: [['message', 'x', null]] },
  { name: 'strips only one BOM: a second one makes the first field name unknown', input: b('\uFEFF\uFEFFdata: x\n\ndata: y\n\n'), events: [['message', 'y', null]] },
  { name: 'keeps a BOM that is not at the start', input: b('data: \uFEFFx\n\n'), events: [['message', '\uFEFFx', null]] },
  {
    name: 'EF BB 80 at the start is not a BOM: its line is an unknown field and the stream goes on',
    input: Buffer.concat([Buffer.from([0xef, 0xbb, 0x80]), b('\ndata: x\n\n')]),
    events: [['message', 'x', null]],
  },
  { name: 'a field without a colon has an empty value', input: b('data\ndata\n\nevent\ndata: x\n\n'), events: [['message', '\n', null], ['message', 'x', null]] },
  {
    name: 'removes one space after the colon, only one',
    input: b('data:  two\n\ndata:none\n\ndata: \n\n'),
    events: [
      ['message', ' two', null],
      ['message', 'none', null],
      ['message', '', null],
    ],
  },
  { name: 'keeps colons inside the value', input: b('data: a:b: c\n\n'), events: [['message', 'a:b: c', null]] },
  { name: 'ignores comments', input: b(': hello\ndata: x\n:\n\n'), events: [['message', 'x', null]] },
  {
    name: 'ignores an id containing NUL',
    input: b('id: 1\ndata: a\n\nid: 2\0\ndata: b\n\nid: \0\ndata: c\n\n'),
    events: [
      ['message', 'a', '1'],
      ['message', 'b', '1'],
      ['message', 'c', '1'],
    ],
  },
  {
    name: 'keeps the last id for later events; an empty id clears it',
    input: b('id: 5\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 6\ndata: d\n\nid:\ndata: e\n\n'),
    events: [
      ['message', 'a', '5'],
      ['message', 'b', '5'],
      ['message', 'c', null],
      ['message', 'd', '6'],
      ['message', 'e', null],
    ],
  },
  { name: 'an id in a block without data still moves the last event id on', input: b('id: 9\n\ndata: a\n\n'), events: [['message', 'a', '9']] },
  { name: 'an id after the data lines of its block is the id of that event', input: b('data: a\nid: 3\n\n'), events: [['message', 'a', '3']] },
  {
    name: 'sets retry only from ASCII digits',
    input: b('retry: 1500\nretry: 12x\nretry:\nretry\nretry: -1\nretry:  7\nretry: 1.5\nretry:7\ndata: x\n\n'),
    events: [['message', 'x', null]],
    retries: [1500, 7],
  },
  {
    name: 'forgets the event type after each event, and on an empty event field',
    input: b('event: a\ndata: 1\n\ndata: 2\n\nevent: b\nevent:\ndata: 3\n\n'),
    events: [
      ['a', '1', null],
      ['message', '2', null],
      ['message', '3', null],
    ],
  },
  { name: 'a block without data dispatches nothing and leaks no type', input: b('event: a\n\ndata: b\n\n'), events: [['message', 'b', null]] },
  { name: 'discards a last event without its blank line', input: b('data: a\n\ndata: b\n'), events: [['message', 'a', null]] },
  { name: 'discards a last line without its line end', input: b('data: a\n\ndata: b'), events: [['message', 'a', null]] },
  {
    name: 'compares field names literally and ignores unknown ones',
    input: b('Data: x\nDATA: y\nfoo: z\n data: w\ndata : v\ndat: u\n\ndata: ok\n\n'),
    events: [['message', 'ok', null]],
  },
  { name: 'decodes UTF-8, also a character split across reads', input: b('event: ünï\ndata: é€😀\n\n'), events: [['ünï', 'é€😀', null]] },
  { name: 'keeps NUL in data', input: b('data: a\0b\n\n'), events: [['message', 'a\0b', null]] },
  {
    name: 'replaces invalid UTF-8 with U+FFFD',
    input: Buffer.concat([b('data: '), Buffer.from([0xff, 0x41, 0xe2, 0x82]), b('\n\n')]),
    events: [['message', '\uFFFDA\uFFFD', null]],
  },
  {
    name: 'a CRLF split after its CR is one line end, not a blank line',
    input: b('data: a\r\ndata: b\r\n\r\n'),
    events: [['message', 'a\nb', null]],
  },
]

for (const c of CASES) {
  t.test(c.name, (t) => {
    let tried = 0
    let failed = 0
    for (const cuts of cutsOf(c.input.length)) {
      tried++
      const run = parse(c.input, cuts)
      const got = run.events.map((e) => [e.event, e.data, e.id])
      const ok = JSON.stringify(got) === JSON.stringify(c.events) && JSON.stringify(run.retries) === JSON.stringify(c.retries ?? [])
      if (!ok && failed++ < 3) t.same({ events: got, retries: run.retries }, { events: c.events, retries: c.retries ?? [] }, `cut at ${JSON.stringify(cuts)}`)
    }
    t.equal(failed, 0, `the same events at all ${tried} cuts`)
    t.end()
  })
}

t.test('dispatches at a CR CR ending a read, without waiting for the next byte', (t) => {
  const run = parse(b('data: x\r\r'))
  t.same(run.events, [{ event: 'message', data: 'x', id: null }])
  run.parser.feed(b('\ndata: y\n\n')) // the LF after that CR is its other half, not a blank line
  t.same(run.events.map((e) => e.data), ['x', 'y'])
  t.end()
})

t.test('hands comments over without the colon and one space', (t) => {
  const run = parse(b(': hello\n:no-space\n:\n:  two\n'))
  t.same(run.comments, ['hello', 'no-space', '', ' two'])
  t.end()
})

t.test('an event that arrives whole is handed over as a view of the fed chunk, not a copy', (t) => {
  const chunk = Buffer.from('id: 1\ndata: {"n":1}\n\n')
  const seen: Array<{ same: boolean; text: string }> = []
  const p = new SseParser({ onEvent: (_type, data, s, e) => seen.push({ same: data === chunk, text: data.toString('utf8', s, e) }) })
  p.feed(chunk)
  t.same(seen, [{ same: true, text: '{"n":1}' }])
  t.end()
})

t.test('reset() from inside a handler stops the feed in progress', (t) => {
  const events: string[] = []
  const p: SseParser = new SseParser({
    onEvent: (_type, data, s, e) => {
      events.push(data.toString('utf8', s, e))
      if (events.length === 1) p.reset()
    },
  })
  p.feed(b('data: 1\n\ndata: 2\n\ndata: 3'))
  t.same(events, ['1'], 'the rest of that chunk is dropped')
  p.feed(b('data: 4\n\n'))
  t.same(events, ['1', '4'], 'the next stream parses')
  t.end()
})

t.test('the last event id outlives the chunk it came in, also when a handler resets mid-chunk', (t) => {
  const run = newRun()
  const original = run.parser
  let resets = 0
  run.parser = new SseParser({
    // The id is not read during the call: decoded later, it must come from a copy.
    onEvent: (type, data, s, e) => {
      run.events.push({ event: type, data: data.toString('utf8', s, e), id: null })
      if (resets++ === 0) run.parser.reset()
    },
  })
  t.not(run.parser, original)
  feedPieces(run, b('id: 5\ndata: a\n\nid: 6\ndata: b\n\n'), [])
  t.equal(run.parser.lastEventId, '5', 'read after the chunk was scribbled over')
  feedPieces(run, b('data: c\n\n'), [])
  t.same(run.events.map((e) => e.data), ['a', 'c'])
  t.end()
})

t.test('reset() forgets a partial event, keeps the last event id, and expects a BOM again', (t) => {
  const run = parse(b('id: 1\ndata: a\n\nid: 2\ndata: b\n'))
  run.parser.reset()
  t.equal(run.parser.lastEventId, '1', 'the id of an event without its blank line is not committed')
  run.parser.feed(b('\uFEFF\ndata: c\n\n'))
  t.same(run.events, [
    { event: 'message', data: 'a', id: '1' },
    { event: 'message', data: 'c', id: '1' },
  ])
  t.end()
})

t.test('starts from the lastEventId option', (t) => {
  const run = parse(b('data: a\n\nid: 2\ndata: b\n\n'), [], { lastEventId: 'x1' })
  t.same(run.events.map((e) => e.id), ['x1', '2'])
  t.throws(() => new SseParser({ onEvent: () => {} }, { lastEventId: 'a\nb' }), RangeError)
  t.end()
})

t.test('maxEventBytes: a line of N bytes passes and N+1 stops the parser, at every cut', (t) => {
  const N = 24
  const ok = b(`data: ${'x'.repeat(N - 6)}\n\n`)
  const over = b(`data: ${'x'.repeat(N - 5)}\n\n`)
  let bad = 0
  for (const cuts of cutsOf(ok.length)) {
    const run = parse(ok, cuts, { maxEventBytes: N })
    if (run.errors.length !== 0 || run.events.length !== 1) bad++
  }
  for (const cuts of cutsOf(over.length)) {
    const run = parse(over, cuts, { maxEventBytes: N })
    if (JSON.stringify(run.errors) !== '["too-large"]' || run.events.length !== 0) bad++
  }
  t.equal(bad, 0, 'same answer at every cut')
  const run = parse(over, [], { maxEventBytes: N })
  run.parser.feed(b('data: later\n\n'))
  t.equal(run.events.length, 0, 'input is ignored after the error')
  run.parser.reset()
  run.parser.feed(b('data: after reset\n\n'))
  t.same(run.events.map((e) => e.data), ['after reset'])
  t.end()
})

t.test('maxEventBytes: event data of N bytes over several lines passes and N+1 stops', (t) => {
  const N = 20
  // Lines of 4 bytes joined with LF: 4 lines are 19 bytes; 4 lines + "x" are 20; one more byte is 21.
  const lines = (extra: string): Buffer => b(`data: aaaa\ndata: aaaa\ndata: aaaa\ndata: aaaa${extra}\n\n`)
  let bad = 0
  for (const cuts of cutsOf(lines('x').length)) {
    const run = parse(lines('x'), cuts, { maxEventBytes: N })
    if (run.errors.length !== 0 || run.events[0]?.data.length !== N) bad++
  }
  for (const cuts of cutsOf(lines('xy').length)) {
    const run = parse(lines('xy'), cuts, { maxEventBytes: N })
    if (JSON.stringify(run.errors) !== '["too-large"]' || run.events.length !== 0) bad++
  }
  t.equal(bad, 0, 'same answer at every cut')
  t.end()
})

// ------------------------------------------------------------------ differential



const NAMES = ['data', 'data', 'data', 'event', 'id', 'retry', 'Data', 'dat', 'datas', '', ' data', 'ID', 'x']
const VALUE_PIECES: Array<string | Buffer> = ['a', 'b', ' ', ':', 'é', '€', '😀', '\0', '1', '0', '9', 'x', '\t', Buffer.from([0xff]), Buffer.from([0xe2, 0x82])]
const SEPARATORS = [':', ': ', ': ', ':  ', '']
const LINE_ENDS = ['\n', '\n', '\r\n', '\r']

function randomStream(rand: () => number): Buffer {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!
  const parts: Buffer[] = []
  if (rand() < 0.1) parts.push(Buffer.from([0xef, 0xbb, 0xbf]))
  const lines = 1 + Math.floor(rand() * 24)
  for (let i = 0; i < lines; i++) {
    const r = rand()
    if (r < 0.25) {
      // a blank line
    } else if (r < 0.3) {
      parts.push(b(':' + 'c'.repeat(Math.floor(rand() * 3))))
    } else {
      const name = pick(NAMES)
      parts.push(b(name + pick(SEPARATORS)))
      const n = Math.floor(rand() * 6)
      for (let j = 0; j < n; j++) {
        const piece = pick(VALUE_PIECES)
        parts.push(typeof piece === 'string' ? b(piece) : piece)
      }
    }
    if (i < lines - 1 || rand() < 0.7) parts.push(b(pick(LINE_ENDS)))
  }
  return Buffer.concat(parts)
}

/** eventsource-parser on the same bytes, through a streaming TextDecoder (which strips the BOM). */
function reference(bytes: Buffer, cuts: readonly number[]): { log: string[]; ids: Array<string | undefined> } {
  const log: string[] = []
  const ids: Array<string | undefined> = []
  const p = createParser({
    onEvent: (e: EventSourceMessage) => {
      log.push(`E ${JSON.stringify(e.event ?? 'message')} ${JSON.stringify(e.data)}`)
      ids.push(e.id)
    },
    onRetry: (ms: number) => log.push(`R ${ms}`),
  })
  const decoder = new TextDecoder('utf-8')
  let from = 0
  for (const to of [...cuts, bytes.length]) {
    p.feed(decoder.decode(bytes.subarray(from, to), { stream: true }))
    from = to
  }
  p.feed(decoder.decode())
  return { log, ids }
}

/** The spec's steps read literally, on the whole decoded text: the last event id comes from here. */
function literal(bytes: Buffer): string[] {
  const log: string[] = []
  const lines = new TextDecoder('utf-8').decode(bytes).split(/\r\n|\r|\n/)
  lines.pop() // the text after the last line end is not a line
  let data = ''
  let type = ''
  let idBuffer = ''
  let lastId = ''
  for (const line of lines) {
    if (line === '') {
      lastId = idBuffer
      if (data !== '') {
        if (data.endsWith('\n')) data = data.slice(0, -1)
        log.push(`E ${JSON.stringify(type === '' ? 'message' : type)} ${JSON.stringify(data)} ${JSON.stringify(lastId)}`)
      }
      data = ''
      type = ''
      continue
    }
    if (line.startsWith(':')) continue
    const colon = line.indexOf(':')
    const name = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (name === 'event') type = value
    else if (name === 'data') data += value + '\n'
    else if (name === 'id' && !value.includes('\0')) idBuffer = value
    else if (name === 'retry' && /^[0-9]+$/.test(value)) log.push(`R ${Number(value)}`)
  }
  return log
}

t.test('parses 10 000 random streams, split at random points, as eventsource-parser and the spec do', (t) => {
  const STREAMS = 10_000
  const SEED = 20_240_607
  const rand = rng(SEED)
  let mismatches = 0
  let events = 0
  let first = ''
  for (let n = 0; n < STREAMS; n++) {
    // A stream ending in CR: we dispatch at once, eventsource-parser waits for the next byte to
    // know it is not half a CRLF. A final LF settles both, so the same bytes are compared.
    const bytes = Buffer.concat([randomStream(rand), b('\n')])
    const pieces = Math.floor(rand() * 6)
    const cuts = Array.from({ length: pieces }, () => Math.floor(rand() * (bytes.length + 1))).sort((x, y) => x - y)
    const ours = parse(bytes, cuts)
    const theirs = reference(bytes, cuts)
    const spec = literal(bytes)
    let same = JSON.stringify(ours.logNoId) === JSON.stringify(theirs.log) && JSON.stringify(ours.log) === JSON.stringify(spec)
    // eventsource-parser reports the id set in the event's own block (WHATWG keeps the last one
    // across blocks); where it reports one, it must be ours.
    theirs.ids.forEach((id, i) => {
      if (id !== undefined && ours.events[i]?.id !== (id === '' ? null : id)) same = false
    })
    events += ours.events.length
    if (!same) {
      mismatches++
      if (first === '') {
        first = JSON.stringify({ n, bytes: bytes.toString('base64'), cuts, ours: ours.log, theirs: theirs.log, spec })
      }
    }
  }
  t.equal(mismatches, 0, first === '' ? `all ${STREAMS} streams agree (seed ${SEED})` : `first mismatch: ${first}`)
  t.ok(events > STREAMS, `the streams dispatched events (${events})`)
  t.end()
})
