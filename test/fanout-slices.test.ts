// A fan-out to more streams than one slice (src/server/fanout/job.ts) is written over several
// event-loop turns, and meanwhile streams join with a replay, leave, are closed by an admin, get
// events of their own, block and drain: every stream still gets exactly its events, in order,
// once. Real sockets, two slices and a bit: ~1 300 streams (~2 600 descriptors in this one process).

import t from 'tap'
import * as net from 'node:net'
import type { ClientView } from '../src/index.js'
import { encodeEvent } from '../src/server/fanout/sse-encode.js'
import { FANOUT_SLICE_WRITES } from '../src/server/limits.js'
import { rng, sleep, startServer } from './helpers.js'

const ID = /(?:^|\n)id: (\d+)\n/g

/** A stream read as bytes: the ids of its events, in arrival order. */
class Reader {
  readonly socket: net.Socket
  ids: number[] = []
  client = -1
  ended = false
  closed = false
  private text = ''

  constructor(port: number, path: string, headers = '') {
    this.socket = net.connect(port, '127.0.0.1', () => this.socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`))
    this.socket.setEncoding('latin1')
    this.socket.on('data', (d: string) => this.read(d))
    this.socket.on('error', () => {})
    this.socket.on('close', () => (this.closed = true))
  }

  private read(d: string): void {
    this.text += d
    if (this.text.endsWith('\r\n0\r\n\r\n')) this.ended = true
    // Keep only an unfinished event: a complete one ends with "\n\n".
    const end = this.text.lastIndexOf('\n\n')
    if (end === -1) return
    const done = this.text.slice(0, end + 2)
    this.text = this.text.slice(end + 2)
    if (this.client === -1) {
      const m = /event: ready\ndata: \{"client":(\d+)/.exec(done)
      if (m !== null) this.client = Number(m[1])
    }
    for (const m of done.matchAll(ID)) this.ids.push(Number(m[1]))
    // The last chunk follows the last event's chunk: what is left is its CRLF and `0\r\n\r\n`.
    if (this.text.endsWith('\r\n0\r\n\r\n')) this.ended = true
  }
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

async function openMany(port: number, n: number, path: string): Promise<Reader[]> {
  const all: Reader[] = []
  for (let i = 0; i < n; i += 200) {
    const batch = Array.from({ length: Math.min(200, n - i) }, () => new Reader(port, path))
    await until(() => batch.every((r) => r.client !== -1), 20_000, 'ready')
    all.push(...batch)
  }
  return all
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r))

t.test('a fan-out to more streams than one slice is written over several turns, and reaches every stream once', async (t) => {
  const { server, port } = await startServer(t)
  const n = FANOUT_SLICE_WRITES * 2 + 100
  const readers = await openMany(port, n, '/events/tok')
  t.teardown(() => readers.forEach((r) => r.socket.destroy()))
  const frame = encodeEvent({ id: '1', data: 'x' })
  const before = server.stats().bytesOut
  const { delivered } = server.publishEvent({ data: 'x' }, {})
  t.equal(delivered, n, 'counted for every stream')
  await turn() // the turn in which the fan-out started: one slice only
  t.equal(server.stats().bytesOut - before, FANOUT_SLICE_WRITES * frame.chunk.length, 'one slice written in the first turn')
  await turn()
  await turn()
  await until(() => readers.every((r) => r.ids.length === 1), 10_000, 'every stream')
  t.equal(server.stats().bytesOut - before, n * frame.chunk.length, 'and every stream once, in the end')
  t.ok(readers.every((r) => r.ids[0] === 1), 'each got the event')
})

t.test('while slices run, streams join, leave, block, drain and get their own events: each gets exactly its events in order', async (t) => {
  const { server, port } = await startServer(t, { maxBufferBytes: 64 * 1024 * 1024 })
  const random = rng(7)
  const pick = <T>(a: readonly T[]): T => a[Math.floor(random() * a.length)]!
  const views = new Map<number, ClientView & { blocked?: boolean }>()
  server.on('connect', (c: ClientView) => views.set(c.id, c))

  const readers = await openMany(port, FANOUT_SLICE_WRITES * 2 + 200, '/events/tok?channel=all')
  // Streams that read nothing for a while: blocked by big events on their own channel first.
  const slow = await openMany(port, 40, '/events/tok?channel=all&channel=slow')
  t.teardown(() => [...readers, ...slow].forEach((r) => r.socket.destroy()))
  for (const r of slow) r.socket.pause()

  interface Sent {
    id: number
    channel?: string
    client?: number
  }
  const sent: Sent[] = []
  const send = (data: string, target: { channel?: string; client?: number }): void => {
    const { id } = server.publishEvent({ data }, target)
    sent.push({ id: Number(id), ...target })
  }
  const big = 'b'.repeat(256 * 1024)
  for (let i = 0; i < 40 && !slow.every((r) => views.get(r.client)?.blocked === true); i++) {
    send(big, { channel: 'slow' })
    await sleep(20)
  }
  t.ok(
    slow.every((r) => views.get(r.client)?.blocked === true),
    'the slow streams are blocked',
  )

  // Which streams each reader is, and where it started (a late joiner: after its Last-Event-ID).
  const start = new Map<Reader, number>()
  const channelsOf = new Map<Reader, string[]>()
  for (const r of readers) (start.set(r, 0), channelsOf.set(r, ['all']))
  for (const r of slow) (start.set(r, 0), channelsOf.set(r, ['all', 'slow']))
  const joiners: Reader[] = []
  const closedByClient = new Set<Reader>()
  const closedByAdmin = new Set<Reader>()
  const live = (): Reader[] => [...readers, ...slow, ...joiners].filter((r) => r.client !== -1 && !closedByClient.has(r) && !closedByAdmin.has(r))

  for (let round = 0; round < 30; round++) {
    send(`all ${round}`, { channel: 'all' })
    send(`all ${round}b`, {})
    await turn() // a slice has run: most streams have not had these yet
    // An event to one stream, perhaps one the fan-out has not reached: it must come after them.
    send(`own ${round}`, { client: pick(live()).client })
    // Leave, from the client's side and by an admin.
    for (let k = 0; k < 10; k++) {
      const r = pick(live())
      closedByClient.add(r)
      r.socket.destroy()
    }
    // One that reads: a stream whose reader is paused is reset LINGER_MS after an admin close
    // (subscriptions.ts), by design, so its last chunk would be a race with this loop's pace.
    const a = pick(live().filter((r) => !r.socket.isPaused()))
    closedByAdmin.add(a)
    server.closeClient(a.client)
    // Join with a Last-Event-ID a few events back: replay, then live, no gap, no duplicate.
    const from = sent.length > 3 ? sent[sent.length - 3]!.id : 0
    for (let k = 0; k < 5; k++) {
      const j = new Reader(port, '/events/tok?channel=all', `Last-Event-ID: ${from}\r\n`)
      start.set(j, from)
      channelsOf.set(j, ['all'])
      joiners.push(j)
    }
    // A slow stream reads again now and then: it drains while a fan-out is under way.
    if (round % 3 === 0) {
      const s = pick(slow)
      s.socket.resume()
    }
    await turn()
    await sleep(round % 4 === 0 ? 0 : 10)
  }
  for (const r of slow) r.socket.resume()
  await until(() => joiners.every((j) => j.client !== -1), 10_000, 'joiners').catch(() => {})
  t.equal(joiners.filter((j) => j.client !== -1).length, 150, 'every joiner opened')
  send('last', {})
  const lastId = sent[sent.length - 1]!.id

  const expected = (r: Reader): number[] =>
    sent
      .filter((e) => e.id > start.get(r)! && (e.client !== undefined ? e.client === r.client : e.channel === undefined || channelsOf.get(r)!.includes(e.channel)))
      .map((e) => e.id)
  const open = live()
  await until(() => open.every((r) => r.ids.at(-1) === lastId), 30_000, 'the last event everywhere').catch((e: unknown) => t.fail(String(e)))
  let exact = 0
  const wrong: string[] = []
  for (const r of open) {
    const want = expected(r)
    if (JSON.stringify(r.ids) === JSON.stringify(want)) exact++
    else if (wrong.length < 3) wrong.push(`client ${r.client} (from ${start.get(r)}): got ${r.ids.length} [${r.ids.slice(0, 12).join(',')}…], want ${want.length} [${want.slice(0, 12).join(',')}…]`)
  }
  t.same(wrong, [], 'no stream with a gap, a duplicate or an event out of order')
  t.equal(exact, open.length, `all ${open.length} open streams got exactly their events`)
  // Those closed meanwhile got a prefix of theirs; an admin close ends with the last chunk.
  const prefixOk = [...closedByAdmin, ...closedByClient].every((r) => {
    const want = expected(r)
    return r.ids.every((id, i) => id === want[i])
  })
  t.ok(prefixOk, 'closed streams got an exact prefix of their events')
  await until(() => [...closedByAdmin].every((r) => r.ended), 5_000, 'admin closes').catch((e: unknown) => t.fail(String(e)))
  t.ok([...closedByAdmin].every((r) => r.ended), 'each admin-closed stream got 0\\r\\n\\r\\n')
  const stats = server.stats()
  t.equal(stats.drops.buffer + stats.drops.stall, 0, 'no stream dropped as slow')
})
