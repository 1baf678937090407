// Delivery guarantees: Last-Event-ID replay (header, query, reset, targets, capacity), replay
// while events are published at full speed, slow and stalled consumers, heartbeat, tick,
// retry jitter and stop(). Every stream is read as raw bytes and split into chunks here: ids,
// gaps and duplicates are counted from the wire, never taken from the server's word.

import t from 'tap'
import * as net from 'node:net'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import { EventSource } from 'eventsource'
import type { SseServer } from '../src/index.js'
import { MAX_HISTORY_MARKS } from '../src/server/limits.js'
import { startServer, openStream, RawClient, clientId, publish, chunk, STREAM_HEAD, TOKEN, PUB, sleep } from './helpers.js'

// ------------------------------------------------------------------ wire helpers

const READY_RE = /^retry: (\d+)\nevent: ready\ndata: \{"client":(\d+),"user":(null|"[^"]*"),"channels":\[[^\]]*\],"key":"[\w-]{22}"\}\n\n$/
const RESET = 'event: reset\ndata: {"reason":"history-gap"}\n\n'
const HEARTBEAT_CHUNK = '3\r\n:\n\n\r\n'
const LAST_CHUNK = '0\r\n\r\n'

/** The text of an event with an id and one data line, as the server must encode it. */
const ev = (id: number | string, data: string): string => `id: ${id}\ndata: ${data}\n\n`

interface Parsed {
  /** Payloads of the complete chunks, in order (the last chunk `0` not included). */
  chunks: string[]
  /** Bytes after the last complete chunk (a half chunk, or anything after `0\r\n\r\n`). */
  rest: string
  /** The last chunk `0\r\n\r\n` was seen. */
  ended: boolean
}

/** Split a chunked body (latin1, after the head) into payloads; throws on bad framing. */
function parseChunks(body: string): Parsed {
  const chunks: string[] = []
  let pos = 0
  for (;;) {
    const eol = body.indexOf('\r\n', pos)
    if (eol === -1) break
    const sizeText = body.slice(pos, eol)
    if (!/^[0-9a-f]+$/.test(sizeText)) throw new Error(`bad chunk size line ${JSON.stringify(sizeText)} at ${pos}`)
    const size = parseInt(sizeText, 16)
    const end = eol + 2 + size
    if (body.length < end + 2) break
    if (body.slice(end, end + 2) !== '\r\n') throw new Error(`chunk at ${pos} not followed by CRLF`)
    if (size === 0) return { chunks, rest: body.slice(end + 2), ended: true }
    chunks.push(body.slice(eol + 2, end))
    pos = end + 2
  }
  return { chunks, rest: body.slice(pos), ended: false }
}

/** A RawClient's stream split into chunks; throws if it does not start with the exact head. */
function chunksOf(c: RawClient): Parsed {
  if (!c.received.startsWith(STREAM_HEAD)) throw new Error(`not a stream head: ${JSON.stringify(c.received.slice(0, 300))}`)
  return parseChunks(c.received.slice(STREAM_HEAD.length))
}

/** Publish a live marker over HTTP, wait for it on `c`, and return every chunk of `c` so far. */
async function untilLive(c: RawClient, base: string, query = ''): Promise<{ chunks: string[]; marker: string }> {
  const r = await publish(base, query, 'live')
  if (r.status !== 200) throw new Error(`publish answered ${r.status}`)
  const marker = ev(String(r.json.id), 'live')
  await c.waitFor(chunk(marker))
  const p = chunksOf(c)
  if (p.rest !== '' || p.ended) throw new Error(`unexpected bytes after the marker: ${JSON.stringify(p.rest)}`)
  return { chunks: p.chunks, marker }
}

/** Resolves to `value` after `ms`, without keeping the process alive (for Promise.race deadlines). */
const after = <T>(ms: number, value: T): Promise<T> => new Promise((r) => setTimeout(() => r(value), ms).unref())

/** GET /stats with the admin token. */
async function stats(base: string): Promise<Record<string, any>> {
  const res = await fetch(`${base}/stats`, { headers: { authorization: `Bearer ${PUB}` } })
  if (res.status !== 200) throw new Error(`/stats answered ${res.status}`)
  return (await res.json()) as Record<string, any>
}

/** Poll `cond` until true or `timeoutMs` (then false). For conditions no event announces. */
async function eventually(cond: () => boolean, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) return false
    await sleep(everyMs)
  }
  return true
}

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

/** Whether the object behind `ref` is garbage-collected after a few full collections. */
async function collected(ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 10 && ref.deref() !== undefined; i++) {
    await new Promise((r) => setImmediate(r)) // a WeakRef target lives at least until the job ends
    gc()
  }
  return ref.deref() === undefined
}

/** The server-side socket of every stream, by client id, taken from the `connect` event. */
function serverSockets(server: SseServer): Map<number, net.Socket> {
  const map = new Map<number, net.Socket>()
  server.on('connect', (c) => map.set(c.id, (c as unknown as { socket: net.Socket }).socket))
  return map
}

/**
 * A stream reader that keeps no text: it splits chunks as they come, checks each event against
 * `expect`, and records ids. Used where megabytes flow.
 */
class IdReader {
  readonly socket: net.Socket
  readonly ids: number[] = []
  readonly problems: string[] = []
  closed = false
  ended = false
  readyClient = -1
  private buf = ''
  private headSeen = false
  private waiters: Array<() => void> = []

  constructor(
    port: number,
    path: string,
    headers: Record<string, string>,
    /** Is this payload the right one for this id? */
    private readonly expect: (id: number, payload: string) => boolean,
    /** Called after each event; return false to stop reading (the socket is destroyed). */
    private readonly onEvent: (id: number) => boolean = () => true,
    /** Read at most `bytes` every `everyMs` (a slow but steady reader), instead of at once. */
    paced?: { bytes: number; everyMs: number },
  ) {
    if (paced === undefined) {
      this.socket = net.connect(port, '127.0.0.1')
      this.socket.on('data', (d: Buffer) => this.onData(d.toString('latin1')))
    } else {
      // With `onread`, returning false really stops reading (readStop) until resume().
      const socket: net.Socket = net.connect({
        port,
        host: '127.0.0.1',
        onread: {
          buffer: Buffer.alloc(paced.bytes),
          callback: (n: number, buf: Uint8Array) => {
            this.onData(Buffer.from(buf.buffer, buf.byteOffset, n).toString('latin1'))
            setTimeout(() => socket.resume(), paced.everyMs).unref()
            return false
          },
        },
      })
      this.socket = socket
    }
    let head = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
    this.socket.write(head + '\r\n')
    this.socket.on('error', () => {})
    this.socket.on('close', () => {
      this.closed = true
      this.wake()
    })
  }

  get lastId(): number {
    return this.ids.length === 0 ? 0 : this.ids[this.ids.length - 1]!
  }

  async waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!cond()) {
      const left = deadline - Date.now()
      if (left <= 0 || this.closed) throw new Error(`${this.closed ? 'closed' : 'timed out'} waiting for ${what}; last id ${this.lastId}; problems ${JSON.stringify(this.problems.slice(0, 3))}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  private onData(text: string): void {
    if (this.socket.destroyed) return
    this.buf += text
    if (!this.headSeen) {
      const end = this.buf.indexOf('\r\n\r\n')
      if (end === -1) return
      const head = this.buf.slice(0, end + 4)
      if (head !== STREAM_HEAD) this.problems.push(`head ${JSON.stringify(head)}`)
      this.headSeen = true
      this.buf = this.buf.slice(end + 4)
    }
    let p: Parsed
    try {
      p = parseChunks(this.buf)
    } catch (e) {
      this.problems.push(String(e))
      this.socket.destroy()
      return
    }
    this.buf = p.rest
    if (p.ended) this.ended = true
    for (const payload of p.chunks) {
      if (this.readyClient === -1) {
        const m = READY_RE.exec(payload)
        if (m === null) this.problems.push(`first chunk is not ready: ${JSON.stringify(payload)}`)
        else this.readyClient = Number(m[2])
        continue
      }
      const m = /^id: (\d+)\n/.exec(payload)
      if (m === null) {
        this.problems.push(`chunk without id: ${JSON.stringify(payload.slice(0, 80))}`)
        continue
      }
      const id = Number(m[1])
      if (!this.expect(id, payload)) this.problems.push(`wrong payload for id ${id}: ${JSON.stringify(payload.slice(0, 80))}`)
      this.ids.push(id)
      if (!this.onEvent(id)) {
        this.socket.destroy()
        break
      }
    }
    this.wake()
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}

/** Where a sequence of ids first differs from 1..n, with counts of gaps and duplicates. */
function checkSequence(ids: readonly number[], n: number): { firstMismatch: number; duplicates: number; missing: number; length: number } {
  let firstMismatch = -1
  for (let i = 0; i < Math.max(ids.length, n); i++) {
    if (ids[i] !== i + 1) {
      firstMismatch = i
      break
    }
  }
  const seen = new Set<number>()
  let duplicates = 0
  for (const id of ids) {
    if (seen.has(id)) duplicates++
    seen.add(id)
  }
  let missing = 0
  for (let i = 1; i <= n; i++) if (!seen.has(i)) missing++
  return { firstMismatch, duplicates, missing, length: ids.length }
}

const cleanSequence = (n: number) => ({ firstMismatch: -1, duplicates: 0, missing: 0, length: n })

// ------------------------------------------------------------------ 1. replay and reset

t.test('Last-Event-ID replay', async (t) => {
  /** A server holding events 1..5 (`e1`..`e5`) on channel default. */
  async function withFive(t: { teardown(fn: () => unknown): void }) {
    const s = await startServer(t)
    for (let i = 1; i <= 5; i++) s.server.broadcast({ data: `e${i}` })
    return s
  }

  t.test('a Last-Event-ID header replays every later retained event, then live ones', async (t) => {
    const { port, base } = await withFive(t)
    const c = await openStream(port, '/events/tok', { 'Last-Event-ID': '2' })
    const { chunks, marker } = await untilLive(c, base)
    t.match(chunks[0], READY_RE)
    t.same(chunks.slice(1), [ev(3, 'e3'), ev(4, 'e4'), ev(5, 'e5'), marker])
    t.equal(marker, ev(6, 'live'), 'live ids go on after the replayed ones')
    c.close()
  })

  t.test('a lastEventId query parameter replays the same way', async (t) => {
    const { port, base } = await withFive(t)
    const c = await openStream(port, '/events/tok?lastEventId=2')
    const { chunks, marker } = await untilLive(c, base)
    t.match(chunks[0], READY_RE)
    t.same(chunks.slice(1), [ev(3, 'e3'), ev(4, 'e4'), ev(5, 'e5'), marker])
    c.close()
  })

  t.test('the header wins over the query when both are sent', async (t) => {
    const { port, base } = await withFive(t)
    const a = await openStream(port, '/events/tok?lastEventId=1', { 'Last-Event-ID': '4' })
    const b = await openStream(port, '/events/tok?lastEventId=4', { 'Last-Event-ID': '1' })
    // A header the server cannot place still wins over a query it could place.
    const c = await openStream(port, '/events/tok?lastEventId=1', { 'Last-Event-ID': 'not-ours' })
    const r = await untilLive(a, base)
    t.same(r.chunks.slice(1), [ev(5, 'e5'), r.marker], 'header 4, query 1: from 5')
    await b.waitFor(chunk(r.marker))
    t.same(chunksOf(b).chunks.slice(1), [ev(2, 'e2'), ev(3, 'e3'), ev(4, 'e4'), ev(5, 'e5'), r.marker], 'header 1, query 4: from 2')
    await c.waitFor(chunk(r.marker))
    t.same(chunksOf(c).chunks.slice(1), [RESET, r.marker], 'an unplaceable header: reset, though the query could be placed')
    a.close()
    b.close()
    c.close()
  })

  t.test('lastEventId=0 (query or header) means every retained event', async (t) => {
    const { port, base } = await withFive(t)
    const q = await openStream(port, '/events/tok?lastEventId=0')
    const h = await openStream(port, '/events/tok', { 'Last-Event-ID': '0' })
    const r = await untilLive(q, base)
    const all = [1, 2, 3, 4, 5].map((i) => ev(i, `e${i}`))
    t.same(r.chunks.slice(1), [...all, r.marker])
    await h.waitFor(chunk(r.marker))
    t.same(chunksOf(h).chunks.slice(1), [...all, r.marker])
    q.close()
    h.close()
  })

  t.test('an id the publisher gave, in UTF-8, is placed from the header and from the query', async (t) => {
    const { server, port, base } = await startServer(t)
    server.broadcast({ data: 'a', id: 'évé-1' })
    server.broadcast({ data: 'b', id: 'évé-2' })
    server.broadcast({ data: 'c' })
    const h = await openStream(port, '/events/tok', { 'Last-Event-ID': 'évé-1' })
    const q = await openStream(port, `/events/tok?lastEventId=${encodeURIComponent('évé-1')}`)
    const r = await untilLive(h, base)
    // The stream is read as latin1: compare with the UTF-8 bytes of the expected text.
    const wire = (text: string) => Buffer.from(text).toString('latin1')
    t.same(r.chunks.slice(1), [wire(ev('évé-2', 'b')), ev(1, 'c'), r.marker])
    await q.waitFor(chunk(r.marker))
    t.same(chunksOf(q).chunks.slice(1), [wire(ev('évé-2', 'b')), ev(1, 'c'), r.marker])
    h.close()
    q.close()
  })

  t.test('the newest id replays nothing and needs no reset', async (t) => {
    const { port, base } = await withFive(t)
    const c = await openStream(port, '/events/tok', { 'Last-Event-ID': '5' })
    const r = await untilLive(c, base)
    t.same(r.chunks.slice(1), [r.marker])
    c.close()
  })

  t.test('history keeps only the last N events: history 5, ten published, 0 replays 6..10', async (t) => {
    const { server, port, base } = await startServer(t, { history: 5 })
    for (let i = 1; i <= 10; i++) server.broadcast({ data: `e${i}` })
    const c = await openStream(port, '/events/tok?lastEventId=0')
    // The oldest retained id is placed (the one before it is not: see the reset tests).
    const oldest = await openStream(port, '/events/tok', { 'Last-Event-ID': '6' })
    const r = await untilLive(c, base)
    t.same(r.chunks.slice(1), [6, 7, 8, 9, 10].map((i) => ev(i, `e${i}`)).concat(r.marker))
    await oldest.waitFor(chunk(r.marker))
    t.same(chunksOf(oldest).chunks.slice(1), [7, 8, 9, 10].map((i) => ev(i, `e${i}`)).concat(r.marker))
    c.close()
    oldest.close()
  })

  const resets: Array<[string, string]> = [
    ['an id older than the retained history', '5'],
    ['an id newer than the newest', '11'],
    ['an id that was never ours', 'abc-123'],
  ]
  for (const [what, id] of resets) {
    t.test(`${what} starts the stream with its own reset chunk, then live events`, async (t) => {
      const { server, port, base } = await startServer(t, { history: 5 })
      for (let i = 1; i <= 10; i++) server.broadcast({ data: `e${i}` })
      const c = await openStream(port, '/events/tok', { 'Last-Event-ID': id })
      const r = await untilLive(c, base)
      t.match(r.chunks[0], READY_RE)
      // The whole stream, byte for byte: head, ready, the reset chunk, the live event.
      t.equal(c.received, STREAM_HEAD + chunk(r.chunks[0]!) + chunk(RESET) + chunk(ev(11, 'live')))
      c.close()
    })
  }

  t.test('an id sent before any event was published gets a reset', async (t) => {
    const { port, base } = await startServer(t)
    const c = await openStream(port, '/events/tok?lastEventId=1')
    const r = await untilLive(c, base)
    t.same(r.chunks.slice(1), [RESET, ev(1, 'live')])
    c.close()
  })
})

// ------------------------------------------------------------------ 2. replay applies targets

t.test('a replay sends only what the stream would have received live', async (t) => {
  const { server, port, base } = await startServer(t, {
    users: [
      { token: 'ta', user: 'alice', roles: ['vip'] },
      { token: 'tb', user: 'bob', roles: ['staff'] },
    ],
  })
  // Live streams present while the events are published: what they get is the reference.
  const bobLive = await openStream(port, '/events/tb?channel=a')
  const aliceLive = await openStream(port, '/events/ta?channel=a&channel=b')
  const anonLive = await openStream(port, '/events/tok?channel=a')
  const bobId = clientId(bobLive)

  const sent: Array<[string, () => number]> = [
    ['1 channel a', () => server.publish('a', { data: 'to-a' })],
    ['2 channel b', () => server.publish('b', { data: 'to-b' })],
    ['3 user alice', () => server.sendToUser('alice', { data: 'to-alice' })],
    ['4 user bob', () => server.sendToUser('bob', { data: 'to-bob' })],
    ['5 role vip', () => server.publishEvent({ data: 'to-vip' }, { role: 'vip' }).delivered],
    ['6 role staff', () => server.publishEvent({ data: 'to-staff' }, { role: 'staff' }).delivered],
    ['7 role staff on channel b', () => server.publishEvent({ data: 'to-staff-b' }, { role: 'staff', channel: 'b' }).delivered],
    ['8 client bobLive', () => server.send(bobId, { data: 'to-client' })],
    ['9 everyone', () => server.broadcast({ data: 'all' })],
    ['10 filter alice', () => server.broadcast({ data: 'f-alice' }, (c) => c.user === 'alice')],
    ['11 filter bob', () => server.broadcast({ data: 'f-bob' }, (c) => c.user === 'bob')],
  ]
  const delivered = sent.map(([, f]) => f())
  t.same(delivered, [3, 1, 1, 1, 1, 1, 0, 1, 3, 1, 1], 'live deliveries per event')
  const data = ['to-a', 'to-b', 'to-alice', 'to-bob', 'to-vip', 'to-staff', 'to-staff-b', 'to-client', 'all', 'f-alice', 'f-bob']
  const evs = (ids: number[]) => ids.map((i) => ev(i, data[i - 1]!))

  // Live reference (the marker goes to channel a, which all three have).
  const bob = await openStream(port, '/events/tb?channel=a&lastEventId=0')
  const alice = await openStream(port, '/events/ta?channel=a&channel=b&lastEventId=0')
  const anon = await openStream(port, '/events/tok?channel=a&lastEventId=0')
  const r = await untilLive(bob, base, 'channel=a')
  for (const c of [bobLive, aliceLive, anonLive, alice, anon]) await c.waitFor(chunk(r.marker))

  t.same(chunksOf(bobLive).chunks.slice(1), [...evs([1, 4, 6, 8, 9, 11]), r.marker], 'bob live')
  t.same(chunksOf(bob).chunks.slice(1), [...evs([1, 4, 6, 9, 11]), r.marker], 'bob replay: as live, minus the event to one client')
  t.same(chunksOf(aliceLive).chunks.slice(1), [...evs([1, 2, 3, 5, 9, 10]), r.marker], 'alice live')
  t.same(chunksOf(alice).chunks.slice(1), [...evs([1, 2, 3, 5, 9, 10]), r.marker], 'alice replay: as live')
  t.same(chunksOf(anonLive).chunks.slice(1), [...evs([1, 9]), r.marker], 'anonymous live')
  t.same(chunksOf(anon).chunks.slice(1), [...evs([1, 9]), r.marker], 'anonymous replay: as live')

  // The id of an event sent to one client is placed (CONTRACT "Details"): what was kept after it follows.
  const again = await openStream(port, '/events/tb?channel=a', { 'Last-Event-ID': '8' })
  const r2 = await untilLive(again, base, 'channel=a')
  t.same(r2.chunks.slice(1), [...evs([9, 11]), r.marker, r2.marker], 'the id of a client-targeted event: the kept events after it, no reset')
  // An id of ours that this stream never saw (an event of another channel) is still placed.
  const other = await openStream(port, '/events/tb?channel=a', { 'Last-Event-ID': '2' })
  await other.waitFor(chunk(r2.marker))
  t.same(chunksOf(other).chunks.slice(1), [...evs([4, 6, 9, 11]), r.marker, r2.marker], 'from 2, an event of channel b: no reset')
  // Replays from an id in the middle apply targets too.
  const mid = await openStream(port, '/events/tb?channel=a', { 'Last-Event-ID': '4' })
  await mid.waitFor(chunk(r2.marker))
  t.same(chunksOf(mid).chunks.slice(1), [...evs([6, 9, 11]), r.marker, r2.marker], 'from 4: 6, 9, 11 and the markers')
  for (const c of [bobLive, aliceLive, anonLive, bob, alice, anon, again, other, mid]) c.close()
})

t.test('a client resuming from the id of an event sent to it alone gets what was kept after it: no reset', async (t) => {
  t.test('the kept events published after it, each once, then live ones', async (t) => {
    const { server, port, base } = await startServer(t)
    const alone = await openStream(port, '/events/tok')
    const id = clientId(alone)
    server.broadcast({ data: 'before' }) // 1
    t.equal(server.send(id, { data: 'just you' }), 1) // 2: not kept
    server.send(id, { data: 'you again', id: 'dm-1' }) // a publisher's id, not kept either
    server.broadcast({ data: 'after' }) // 3
    server.publish('elsewhere', { data: 'other channel' }) // 4: not for this stream
    const r = await publish(base, `client=${id}`, 'over http') // 5: POST /publish?client=
    t.same(r, { status: 200, json: { id: '5', delivered: 1 } })
    server.broadcast({ data: 'last' }) // 6
    await alone.waitFor(chunk(ev(6, 'last')))
    t.same(chunksOf(alone).chunks.slice(1), [ev(1, 'before'), ev(2, 'just you'), ev('dm-1', 'you again'), ev(3, 'after'), ev(5, 'over http'), ev(6, 'last')], 'live')
    alone.close()

    const markers: string[] = [] // each resume below publishes one, kept
    for (const [from, kept] of [['2', [ev(3, 'after'), ev(6, 'last')]], ['dm-1', [ev(3, 'after'), ev(6, 'last')]], ['5', [ev(6, 'last')]]] as const) {
      const back = await openStream(port, '/events/tok', { 'Last-Event-ID': from })
      const l = await untilLive(back, base)
      t.same(l.chunks.slice(1), [...kept, ...markers, l.marker], `from ${from}: the kept events after it, no reset`)
      markers.push(l.marker)
      back.close()
    }
    // The newest event went to one client: nothing kept follows it, and nothing is missing.
    const lastOne = await openStream(port, '/events/tok')
    server.send(clientId(lastOne), { data: 'newest', id: 'dm-2' })
    const back = await openStream(port, '/events/tok?lastEventId=dm-2')
    const l = await untilLive(back, base)
    t.same(l.chunks.slice(1), [l.marker], 'from the newest: only live events')
    // Its id is held like a kept one's: a second event with it would make a resume ambiguous.
    t.equal((await publish(base, 'id=dm-1', 'again')).status, 409, 'a repeat of its id: 409')
    for (const c of [lastOne, back]) c.close()
  })

  t.test('its place is forgotten with the kept event after it: then reset', async (t) => {
    const { server, port, base } = await startServer(t, { history: 3 })
    const c = await openStream(port, '/events/tok')
    server.broadcast({ data: 'a' }) // 1
    server.send(clientId(c), { data: 'dm' }) // 2, placed before 3
    for (const d of ['b', 'c', 'd']) server.broadcast({ data: d }) // 3, 4, 5: history holds 3..5
    const whole = await openStream(port, '/events/tok', { 'Last-Event-ID': '2' })
    const w = await untilLive(whole, base) // 6: history holds 4..6, 3 is gone
    t.same(w.chunks.slice(1), [ev(3, 'b'), ev(4, 'c'), ev(5, 'd'), w.marker], 'while 3 is kept: 3, 4, 5')
    const gone = await openStream(port, '/events/tok', { 'Last-Event-ID': '2' })
    const g = await untilLive(gone, base)
    t.same(g.chunks.slice(1), [RESET, g.marker], 'once 3 is forgotten: reset, as for a kept id as old')
    for (const s of [c, whole, gone]) s.close()
  })

  t.test(`at most ${MAX_HISTORY_MARKS} such places: the oldest goes first`, async (t) => {
    const { server, port, base } = await startServer(t)
    const c = await openStream(port, '/events/tok')
    const id = clientId(c)
    server.broadcast({ data: 'kept' }) // 1
    for (let i = 0; i < MAX_HISTORY_MARKS; i++) server.send(id, { data: 'x' }) // 2 .. N+1
    const newest = String(MAX_HISTORY_MARKS + 1)
    await c.waitFor(chunk(ev(newest, 'x')))
    const first = await openStream(port, '/events/tok', { 'Last-Event-ID': '2' })
    const f = await untilLive(first, base) // N+2
    t.same(f.chunks.slice(1), [f.marker], `${MAX_HISTORY_MARKS} places: the oldest is still placed`)
    server.send(id, { data: 'x' }) // N+3: one place too many
    const dropped = await openStream(port, '/events/tok', { 'Last-Event-ID': '2' })
    const d = await untilLive(dropped, base)
    t.same(d.chunks.slice(1), [RESET, d.marker], `${MAX_HISTORY_MARKS + 1}: the oldest is forgotten, reset`)
    const second = await openStream(port, '/events/tok', { 'Last-Event-ID': '3' })
    const s2 = await untilLive(second, base)
    t.same(s2.chunks.slice(1), [f.marker, d.marker, s2.marker], 'the next oldest is still placed')
    for (const s of [c, first, dropped, second]) s.close()
  })
})

t.test('time tick events are not kept for replay', async (t) => {
  const { server, port } = await startServer(t, { tickMs: 50 })
  const live = await openStream(port, '/events/tok')
  await live.waitFor((s) => s.split('event: time\n').length > 2) // two ticks before the event
  server.broadcast({ data: 'one' })
  await live.waitFor(chunk(ev(1, 'one')))
  await live.waitFor((s) => s.slice(s.indexOf('id: 1\n')).split('event: time\n').length > 2) // two after
  const openedAt = Date.now()
  const c = await openStream(port, '/events/tok?lastEventId=0')
  await c.waitFor('event: time\n')
  const p = chunksOf(c)
  t.match(p.chunks[0], READY_RE)
  t.equal(p.chunks[1], ev(1, 'one'), 'the first event after ready is the published one: no tick before it was replayed')
  for (const payload of p.chunks.slice(2)) {
    const m = /^event: time\ndata: (.+)\n\n$/.exec(payload)
    t.ok(m, `a live tick: ${JSON.stringify(payload)}`)
    if (m !== null) t.ok(Date.parse(m[1]!) >= openedAt - 1, `tick ${m[1]} is from after the stream opened, not a replayed one`)
  }
  // A tick has no id, so a reconnect can never name one: a client sends the published id.
  live.close()
  c.close()
})

// ------------------------------------------------------------------ 3. replay under load

t.test('reconnecting clients see 1..N with no gap and no duplicate while events are published at full speed', async (t) => {
  const N = 3000
  const CLIENTS = 10
  const { server, port } = await startServer(t, { history: N + 100, retryMs: 20 })
  const expect = (id: number, payload: string) => payload === ev(id, `e${id}`)
  const rand = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1))
  let publishing = true

  interface Run {
    ids: number[]
    problems: string[]
    connects: number
    connectsWhilePublishing: number
    /** The first connection is registered (its ready arrived). */
    ready: Promise<void>
    /** Id N arrived. */
    done: Promise<void>
  }

  /** A raw client that drops its connection every 20..200 events and comes back with the last id it saw. */
  function rawRun(index: number): Run {
    let readyResolve: () => void = () => {}
    let doneResolve: () => void = () => {}
    const run: Run = {
      ids: [],
      problems: [],
      connects: 0,
      connectsWhilePublishing: 0,
      ready: new Promise<void>((r) => (readyResolve = r)),
      done: new Promise<void>((r) => (doneResolve = r)),
    }
    const connect = (): void => {
      run.connects++
      if (publishing) run.connectsWhilePublishing++
      // Alternate header and query; with nothing seen yet, 0 asks for everything retained.
      const headers: Record<string, string> = {}
      let path = '/events/tok'
      if (run.connects > 1) {
        const last = String(run.ids.length === 0 ? 0 : run.ids[run.ids.length - 1]!)
        if ((run.connects + index) % 2 === 0) path += `?lastEventId=${last}`
        else headers['Last-Event-ID'] = last
      }
      let budget = rand(20, 200)
      let finished = false
      const r = new IdReader(port, path, headers, expect, (id) => {
        run.ids.push(id)
        if (id === N) {
          finished = true
          return false
        }
        return --budget > 0
      })
      r.socket.on('data', () => {
        if (r.readyClient !== -1) readyResolve()
      })
      r.socket.on('close', () => {
        run.problems.push(...r.problems)
        if (finished) return doneResolve()
        // Either we cut it (budget spent) or the server did; both come back with the last id.
        setTimeout(connect, rand(0, 5))
      })
    }
    connect()
    return run
  }

  const runs: Run[] = []
  for (let i = 0; i < CLIENTS; i++) runs.push(rawRun(i))
  await Promise.all(runs.map((r) => r.ready))

  // One EventSource (the eventsource package) beside them: the server closes it every
  // 100..400 events, it reconnects by itself with the Last-Event-ID header.
  const esIds: number[] = []
  const esProblems: string[] = []
  let esConnects = 0
  let esClient = -1
  let esBudget = 0
  const es = new EventSource(`http://127.0.0.1:${port}/events/${TOKEN}`)
  const esDone = new Promise<void>((resolve) => {
    es.addEventListener('ready', (e) => {
      esConnects++
      esClient = (JSON.parse(e.data) as { client: number }).client
      esBudget = rand(100, 400)
    })
    es.addEventListener('message', (e) => {
      const id = Number(e.lastEventId)
      if (e.data !== `e${id}`) esProblems.push(`id ${e.lastEventId} data ${e.data}`)
      esIds.push(id)
      if (id === N) return resolve()
      if (--esBudget === 0) server.closeClient(esClient)
    })
    es.addEventListener('reset', () => esProblems.push('reset'))
  })
  await new Promise<void>((resolve) => es.addEventListener('ready', () => resolve(), { once: true }))

  // The publisher: batches of 25 per turn of the event loop, as fast as it goes.
  let published = 0
  await new Promise<void>((resolve) => {
    const step = () => {
      for (let i = 0; i < 25 && published < N; i++) {
        published++
        if (published % 2 === 0) server.broadcast({ data: `e${published}` })
        else server.publish('default', { data: `e${published}` })
      }
      if (published < N) setImmediate(step)
      else resolve()
    }
    step()
  })
  publishing = false

  const all = Promise.all([...runs.map((r) => r.done), esDone])
  const outcome = await Promise.race([all.then(() => 'done'), after(20_000, 'timeout')])
  es.close()
  t.equal(outcome, 'done', 'every client reached id N')

  runs.forEach((run, i) => {
    t.same(checkSequence(run.ids, N), cleanSequence(N), `raw client ${i}: ids are exactly 1..${N} (${run.connects} connections)`)
    t.same(run.problems, [], `raw client ${i}: every chunk well formed, no reset`)
    t.ok(run.connects >= 4, `raw client ${i} reconnected several times`)
  })
  t.same(checkSequence(esIds, N), cleanSequence(N), `EventSource: ids are exactly 1..${N} (${esConnects} connections)`)
  t.same(esProblems, [], 'EventSource: data matches ids, no reset')
  t.ok(esConnects >= 4, 'the EventSource reconnected several times')
  t.comment(`connections opened while publishing: ${runs.map((r) => r.connectsWhilePublishing).join(', ')}`)
})

// ------------------------------------------------------------------ 4. slow consumer

t.test('a consumer that reads nothing is dropped at maxBufferBytes; a fast one beside it loses nothing', async (t) => {
  const MAX_BUFFER = 64 * 1024
  const { server, port, base } = await startServer(t, { maxBufferBytes: MAX_BUFFER })
  const sockets = serverSockets(server)
  const reasons = new Map<number, string>()
  server.on('disconnect', (c, reason) => reasons.set(c.id, reason))

  const slow = await openStream(port, '/events/tok')
  slow.socket.pause() // reads nothing from here on
  const slowId = clientId(slow)
  const data = 'x'.repeat(4096)
  const fast = new IdReader(port, '/events/tok', {}, (id, payload) => payload === ev(id, data))
  await fast.waitFor(() => fast.readyClient !== -1, 3000, 'ready')
  t.equal(server.clientCount, 2)

  // Batches of 8 events (about 32 KiB, half the limit); the fast client catches up after each.
  // Loopback kernel buffers take a few MiB for the slow one first: 96 MiB is the bound.
  let sent = 0
  const BOUND = 24 * 1024
  while (server.stats().drops.buffer === 0 && sent < BOUND) {
    for (let i = 0; i < 8; i++) {
      server.broadcast({ data })
      sent++
    }
    await fast.waitFor(() => fast.lastId === sent, 5000, `event ${sent}`)
  }
  t.equal(server.stats().drops.buffer, 1, `the slow stream was dropped (after ${sent} events of 4 KiB)`)
  t.equal(reasons.get(slowId), 'buffer', 'its disconnect reason is buffer')
  t.equal(server.clientCount, 1, 'one stream left')
  t.notOk(fast.closed, 'the fast stream is open')

  // The server lets go of it: socket destroyed, its queue released, nothing more written to it,
  // and nothing in the server still refers to it (the garbage collector takes it).
  let slowSocket: net.Socket | null = sockets.get(slowId)!
  sockets.delete(slowId)
  t.ok(slowSocket.destroyed, 'the server destroyed the slow socket')
  if (!slowSocket.closed) await new Promise((r) => slowSocket!.once('close', r))
  t.equal(slowSocket.writableLength, 0, 'no unsent bytes held for the dropped stream')
  const weak = new WeakRef(slowSocket)
  slowSocket = null
  t.ok(await collected(weak), 'the dropped stream\'s socket and its queue are garbage-collected')
  t.equal(server.broadcast({ data }), 1, 'the next event reaches only the fast stream')
  sent++
  await fast.waitFor(() => fast.lastId === sent, 5000, `event ${sent}`)
  t.same(checkSequence(fast.ids, sent), cleanSequence(sent), 'the fast stream got every event, in order, once')
  t.same(fast.problems, [], 'every fast chunk well formed')
  const st = await stats(base)
  t.equal(st.clients, 1, '/stats clients')
  t.same(st.channels, { default: 1 }, '/stats channels')
  t.same(st.drops, { buffer: 1, stall: 0, admin: 0, shutdown: 0, revoked: 0, expired: 0 }, '/stats drops')

  // The slow client, once it reads, finds the connection closed by the server.
  slow.socket.resume()
  await slow.waitClosed(10_000)
  t.ok(slow.closed, 'the slow socket was closed by the server')
  t.notOk(slow.received.endsWith(LAST_CHUNK), 'a dropped slow stream is cut, not ended politely')

  // It can come back with the last id it saw and continue where it was cut.
  const seen = [...slow.received.matchAll(/id: (\d+)\ndata: x{4096}\n\n\r\n/g)].map((m) => Number(m[1]))
  const lastSeen = seen.length === 0 ? 0 : seen[seen.length - 1]!
  t.ok(lastSeen > 0 && lastSeen < sent, `the slow client saw events 1..${lastSeen} before the cut`)
  const back = new IdReader(port, '/events/tok', { 'Last-Event-ID': String(lastSeen) }, (id, payload) => payload === ev(id, data))
  await back.waitFor(() => back.lastId === sent, 10_000, 'the replay up to the newest')
  t.same(back.ids[0], lastSeen + 1, 'the replay starts right after its last id')
  t.equal(back.ids.length, sent - lastSeen, 'no gap, no duplicate after coming back')
  back.socket.destroy()
  fast.socket.destroy()
})

// ------------------------------------------------------------------ 5. stalled stream

t.test('a stream whose unsent bytes the kernel takes none of is dropped after stallTimeoutMs', async (t) => {
  const { server, port, base } = await startServer(t, { stallTimeoutMs: 1500, maxBufferBytes: 1024 * 1024 * 1024 })
  const sockets = serverSockets(server)
  const slow = await openStream(port, '/events/tok')
  slow.socket.pause()
  const slowSocket = sockets.get(clientId(slow))!
  const big = 'y'.repeat(256 * 1024)
  const fast = new IdReader(port, '/events/tok', {}, (id, payload) => payload === ev(id, big))
  await fast.waitFor(() => fast.readyClient !== -1, 3000, 'ready')

  // Big events until the kernel refuses more for the slow stream (bounded: 256 events, 64 MiB).
  let sent = 0
  while (slowSocket.writableLength === 0 && sent < 256) {
    server.broadcast({ data: big })
    sent++
    await fast.waitFor(() => fast.lastId === sent, 5000, `event ${sent}`)
  }
  t.ok(slowSocket.writableLength > 0, `the slow stream has unsent bytes (after ${sent} events of 256 KiB)`)
  t.equal(server.stats().drops.stall, 0, 'not dropped yet')

  t.ok(await eventually(() => server.stats().drops.stall === 1, 8000), 'dropped as stalled')
  t.ok(slowSocket.destroyed, 'the server destroyed it')
  t.equal(server.clientCount, 1, 'the reading stream stays')
  t.notOk(fast.closed, 'the reading stream is open')
  // The reading stream is not dropped on a later sweep either, and still gets events.
  await sleep(1700)
  server.broadcast({ data: big })
  sent++
  await fast.waitFor(() => fast.lastId === sent, 5000, `event ${sent}`)
  t.same(checkSequence(fast.ids, sent), cleanSequence(sent), 'the reading stream got every event')
  t.same((await stats(base)).drops, { buffer: 0, stall: 1, admin: 0, shutdown: 0, revoked: 0, expired: 0 }, '/stats drops')

  slow.socket.resume()
  await slow.waitClosed(10_000)
  t.ok(slow.closed, 'the stalled socket was closed by the server')
  fast.socket.destroy()
})

t.test('a late sweep (the event loop stopped) blames no stream; the next on-time sweep does', async (t) => {
  // The sweep is driven by hand with chosen clocks, in one tick, so the server's own timer (60 s
  // stall, a sweep a second) cannot interleave; the socket and its unsent bytes are real.
  const { server, port } = await startServer(t, { stallTimeoutMs: 60_000, maxBufferBytes: 1024 * 1024 * 1024 })
  const sockets = serverSockets(server)
  const slow = await openStream(port, '/events/tok')
  slow.socket.pause()
  const slowSocket = sockets.get(clientId(slow))!
  const big = 'y'.repeat(256 * 1024)
  for (let sent = 0; slowSocket.writableLength === 0 && sent < 256; sent++) {
    server.broadcast({ data: big })
    await sleep(5)
  }
  t.ok(slowSocket.writableLength > 0, 'the stream has unsent bytes its peer takes none of')
  const streams = (server as unknown as { streams: { dropStalled(now: number, stallMs: number, everyMs: number): void } }).streams
  const STALL = 1000
  const t0 = Date.now() + 10_000
  streams.dropStalled(t0, STALL, STALL) // late after the server's own last sweep: samples only
  streams.dropStalled(t0 + 500, STALL, STALL)
  t.equal(server.stats().drops.stall, 0, 'half the stall timeout without progress: kept')
  streams.dropStalled(t0 + 500 + 3 * STALL, STALL, STALL)
  t.equal(server.stats().drops.stall, 0, 'a sweep 3 s late: not dropped, though no byte was taken for 3.5 s of the clock')
  streams.dropStalled(t0 + 500 + 4 * STALL, STALL, STALL)
  t.equal(server.stats().drops.stall, 1, 'the next sweep, on time, still finding nothing taken: dropped as stalled')
  slow.socket.destroy()
})

t.test('stall is measured from the last byte the kernel took', async (t) => {
  const data = 'z'.repeat(64 * 1024)
  const COUNT = 192 // 12 MiB: more than loopback kernel buffers take at once
  const expect = (id: number, payload: string) => payload === ev(id, data)
  // 32 KiB every 10 ms: the kernel takes bytes all the time, though the queue lasts seconds.
  const PACE = { bytes: 32 * 1024, everyMs: 10 }

  t.test('a new stream that reads nothing of a large replay is not dropped before stallTimeoutMs', async (t) => {
    const STALL = 2500
    const { server, port } = await startServer(t, { stallTimeoutMs: STALL, maxBufferBytes: 1024 * 1024 * 1024, history: COUNT })
    for (let i = 0; i < COUNT; i++) server.broadcast({ data })
    let droppedAfter = -1
    let reason = ''
    let openedAt = 0
    server.on('connect', () => (openedAt = Date.now()))
    server.on('disconnect', (_c, r) => {
      droppedAfter = Date.now() - openedAt
      reason = r
    })
    const c = await RawClient.open(port)
    c.socket.pause()
    c.write('GET /events/tok?lastEventId=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    t.ok(await eventually(() => droppedAfter !== -1, STALL + 6000), 'dropped in the end')
    t.equal(reason, 'stall', 'as stalled')
    // Its bytes cannot have sat untaken for STALL ms when the stream is younger than that.
    t.ok(droppedAfter >= STALL, `dropped ${droppedAfter} ms after it opened; stallTimeoutMs is ${STALL}`)
    c.close()
  })

  t.test('a stream reading a large replay slowly but steadily is not dropped', async (t) => {
    const { server, port } = await startServer(t, { stallTimeoutMs: 1000, maxBufferBytes: 1024 * 1024 * 1024, history: COUNT })
    for (let i = 0; i < COUNT; i++) server.broadcast({ data })
    const r = new IdReader(port, '/events/tok?lastEventId=0', {}, expect, undefined, PACE)
    await r.waitFor(() => r.lastId === COUNT, 20_000, 'the whole replay').catch((e: unknown) => t.fail(String(e)))
    t.same(checkSequence(r.ids, COUNT), cleanSequence(COUNT), 'every replayed event arrived')
    t.same(server.stats().drops, { buffer: 0, stall: 0, admin: 0, shutdown: 0, revoked: 0, expired: 0 }, 'no drop')
    t.notOk(r.closed, 'the stream is still open')
    r.socket.destroy()
  })

  t.test('a stream reading a burst of live events slowly but steadily is not dropped', async (t) => {
    // Node writes the first event, queues the rest, then hands the whole queue to the kernel as
    // one write that completes only when its last byte is taken: seconds, with bytes taken all along.
    const BURST = 256 // 16 MiB
    const { server, port } = await startServer(t, { stallTimeoutMs: 1000, maxBufferBytes: 1024 * 1024 * 1024 })
    const r = new IdReader(port, '/events/tok', {}, expect, undefined, PACE)
    await r.waitFor(() => r.readyClient !== -1, 3000, 'ready')
    for (let i = 0; i < BURST; i++) server.broadcast({ data })
    await r.waitFor(() => r.lastId === BURST, 20_000, 'every event').catch((e: unknown) => t.fail(String(e)))
    t.same(checkSequence(r.ids, BURST), cleanSequence(BURST), 'every event arrived')
    t.same(server.stats().drops, { buffer: 0, stall: 0, admin: 0, shutdown: 0, revoked: 0, expired: 0 }, 'no drop')
    t.notOk(r.closed, 'the stream is still open')
    r.socket.destroy()
  })
})

// ------------------------------------------------------------------ 6. heartbeat, tick, retry

t.test('a heartbeat is the comment chunk 3\\r\\n:\\n\\n\\r\\n, every heartbeatMs', async (t) => {
  const { port } = await startServer(t, { heartbeatMs: 100 })
  const c = await openStream(port, '/events/tok')
  await c.waitFor((s) => s.split(HEARTBEAT_CHUNK).length > 2)
  const p = chunksOf(c)
  t.match(p.chunks[0], READY_RE)
  t.ok(p.chunks.length >= 3)
  t.same(p.chunks.slice(1), p.chunks.slice(1).map(() => ':\n\n'), 'nothing but heartbeats after ready')
  t.equal(c.received, STREAM_HEAD + chunk(p.chunks[0]!) + HEARTBEAT_CHUNK.repeat(p.chunks.length - 1) + p.rest)
  c.close()
})

t.test('a tick is event time with an ISO date and no id', async (t) => {
  const { port } = await startServer(t, { tickMs: 100 })
  const before = Date.now()
  const c = await openStream(port, '/events/tok')
  await c.waitFor((s) => s.split('event: time\n').length > 2)
  const after = Date.now()
  const p = chunksOf(c)
  t.match(p.chunks[0], READY_RE)
  const ticks = p.chunks.slice(1)
  t.ok(ticks.length >= 2, 'two ticks')
  for (const payload of ticks) {
    const m = /^event: time\ndata: (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\n\n$/.exec(payload)
    t.ok(m, `exactly event and data, no id: ${JSON.stringify(payload)}`)
    if (m === null) continue
    const when = Date.parse(m[1]!)
    t.equal(new Date(when).toISOString(), m[1], 'a valid ISO time')
    t.ok(when >= before - 1 && when <= after + 1, 'the server time when sent')
  }
  c.close()
})

t.test('retry: at stream start is jittered within [retryMs, 1.5 x retryMs]', async (t) => {
  const { port } = await startServer(t, { retryMs: 1000 })
  const values: number[] = []
  for (let i = 0; i < 20; i++) {
    const c = await openStream(port, '/events/tok')
    const p = chunksOf(c)
    const m = READY_RE.exec(p.chunks[0] ?? '')
    t.ok(m, 'the first chunk starts with retry:')
    if (m !== null) values.push(Number(m[1]))
    c.close()
  }
  t.equal(values.length, 20)
  t.ok(values.every((v) => v >= 1000 && v <= 1500), `all in range: ${values.join(' ')}`)
  t.ok(new Set(values).size > 1, 'not all equal')
})

// ------------------------------------------------------------------ 7. stop()

t.test('stop() ends every open stream with 0\\r\\n\\r\\n, counts them, and resolves', async (t) => {
  const COUNT = 300
  const { server, port } = await startServer(t, { retryMs: 1000 })
  const clients: RawClient[] = []
  for (let i = 0; i < COUNT; i += 50) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(50, COUNT - i) }, () => openStream(port, '/events/tok')))))
  }
  t.equal(server.clientCount, COUNT)
  const ended = new Set<RawClient>()
  for (const c of clients) c.socket.once('end', () => ended.add(c))

  const stopped = server.stop().then(() => 'resolved')
  t.equal(await Promise.race([stopped, after(10_000, 'still pending')]), 'resolved', 'stop() resolves within the grace')
  await Promise.all(clients.map((c) => c.waitClosed(5000)))

  let wellEnded = 0
  const bad: string[] = []
  for (const c of clients) {
    const p = chunksOf(c)
    const okReady = READY_RE.test(p.chunks[0] ?? '')
    const extra = p.chunks.slice(1)
    const retryOnly = extra.length === 1 ? /^retry: (\d+)\n\n$/.exec(extra[0]!) : null
    const okExtra = extra.length === 0 || (retryOnly !== null && Number(retryOnly[1]) >= 1000 && Number(retryOnly[1]) <= 1500)
    if (okReady && okExtra && p.ended && p.rest === '' && c.closed && ended.has(c)) wellEnded++
    else if (bad.length < 3) bad.push(JSON.stringify(c.received.slice(STREAM_HEAD.length)))
  }
  t.equal(wellEnded, COUNT, 'every stream: ready, maybe a retry-only chunk, then 0\\r\\n\\r\\n last, then FIN from the server')
  t.same(bad, [])
  t.equal(server.stats().drops.shutdown, COUNT, 'drops.shutdown counts every stream')
  t.equal(server.clientCount, 0)
})

t.test('a Last-Event-ID from before a restart gets reset, even once as many events were published again', async (t) => {
  // Default ids (no firstEventId): they start at boot time × 1000, so they never repeat across restarts.
  const first = await startServer(t, { firstEventId: undefined })
  const before = await publish(first.base, '', 'before the restart')
  await first.server.stop()
  t.ok(Number(before.json.id) > Date.now() * 1000 - 60_000_000, 'ids start at boot time × 1000')

  const second = await startServer(t, { firstEventId: undefined })
  for (let i = 0; i < 3; i++) await publish(second.base, '', `after ${i}`)
  const s = await openStream(second.port, `/events/tok?lastEventId=${String(before.json.id)}`)
  t.teardown(() => s.close())
  await s.waitFor('event: reset\n')
  t.ok(s.received.includes(chunk('event: reset\ndata: {"reason":"history-gap"}\n\n')), 'the stream says it missed something')
})
