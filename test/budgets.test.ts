// What one hostile or unlucky client may cost the server, at small size over real sockets on
// 127.0.0.1 (bench/hostile.mjs runs the same cases at full size): stalled streams hold at most a
// couple of entries in Node's write queue and are dropped whole; a replay larger than
// maxBufferBytes is paced, not dropped; floods of idle, slow or keep-alive connections at the
// connection limit make room for subscribers; an answer nobody reads is not kept for ever. Each case also checks that a reading stream lost nothing.

import t, { type Test } from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import type { ClientView } from '../src/index.js'
import { openStream, PUB, rawRequest, startServer, type RawClient } from './helpers.js'
import { until } from './process.js'

/** Node's own write queue of the server-side socket behind a stream (a ClientView is the server's Stream). */
function writeQueue(c: ClientView): () => number {
  const socket = (c as unknown as { socket: { writableBuffer: unknown[] } }).socket
  return () => socket.writableBuffer.length
}

/** How many `data: ` lines of `payload` a raw stream has received. */
function countEvents(c: RawClient, payload: string): number {
  return c.received.split(`data: ${payload}\n`).length - 1
}

t.test('streams that read nothing hold at most 2 entries of Node’s write queue, and a stall drops them whole', async (t) => {
  const STALLED = 10
  const EVENTS = 6_000 // × 1 KiB: more than the kernel takes for one loopback socket that reads nothing
  const { server, port } = await startServer(t, { stallTimeoutMs: 1_000, maxBufferBytes: 1024 * 1024 * 1024 })
  const views: ClientView[] = []
  server.on('connect', (c) => views.push(c))
  const stalled: RawClient[] = []
  for (let i = 0; i < STALLED; i++) {
    const s = await openStream(port, `/events/${PUB}`)
    s.socket.pause()
    t.teardown(() => s.close())
    stalled.push(s)
  }
  const reader = await openStream(port, `/events/${PUB}`)
  t.teardown(() => reader.close())
  const queues = views.slice(0, STALLED).map(writeQueue)

  const data = 'x'.repeat(1_000)
  let most = 0
  // Bursts across event-loop turns: each turn is one fan-out write per stream.
  for (let sent = 0; sent < EVENTS; sent += 100) {
    for (let i = 0; i < 100; i++) server.broadcast({ data })
    await new Promise((r) => setImmediate(r))
    for (const q of queues) most = Math.max(most, q())
  }
  t.ok(most <= 2, `at most 2 entries waiting in a stalled socket's write queue (saw ${most})`)
  t.equal(server.stats().drops.stall, 0, 'none dropped before the stall timeout')
  await until(() => server.stats().drops.stall === STALLED, () => `${STALLED} stall drops`, 8_000)
  t.equal(server.clientCount, 1, 'only the reader is left')
  await until(() => countEvents(reader, data) === EVENTS, () => `${EVENTS} events at the reader`, 10_000)
  t.pass(`the reader got all ${EVENTS} events`)
  for (const s of stalled) {
    s.socket.resume()
    await s.waitClosed(10_000)
  }
  t.pass('the stalled sockets were closed by the server')
})

t.test('a blocked stream owed megabytes is written the shared Buffers, a slice per drain, never a copy of its own', async (t) => {
  const EVENTS = 16_000 // × 1 KiB: far more than the kernel takes for a loopback socket that reads nothing
  const { server, port } = await startServer(t, { stallTimeoutMs: 10_000, maxBufferBytes: 64 * 1024 * 1024 })
  const views: ClientView[] = []
  server.on('connect', (c) => views.push(c))
  const slow = await openStream(port, `/events/${PUB}`)
  t.teardown(() => slow.close())
  slow.socket.pause()
  // Every Buffer the server hands the socket: a stream that copied all it is owed into one write
  // would hold that copy in Node's queue, per stream (3 000 such streams draining were 2 GiB).
  const socket = (views[0] as unknown as { socket: net.Socket }).socket
  const write = socket.write.bind(socket) as (b: Buffer) => boolean
  let largest = 0
  ;(socket as unknown as { write: (b: Buffer) => boolean }).write = (b: Buffer) => {
    largest = Math.max(largest, b.length)
    return write(b)
  }
  const data = 'y'.repeat(1_000)
  for (let sent = 0; sent < EVENTS; sent += 20) {
    for (let i = 0; i < 20; i++) server.broadcast({ data })
    await new Promise((r) => setImmediate(r))
  }
  slow.socket.resume()
  await until(() => countEvents(slow, data) === EVENTS, () => `${EVENTS} events at the slow stream`, 20_000)
  // The largest Buffer is a fan-out burst (20 events, concatenated once for every stream alike).
  t.ok(largest <= 21 * 1024, `no Buffer larger than one burst of 20 events (largest ${largest} bytes)`)
  t.same(server.stats().drops, { buffer: 0, stall: 0, admin: 0, shutdown: 0, revoked: 0, expired: 0 }, 'not dropped')
})

t.test('a replay larger than maxBufferBytes reaches a slow reader whole, paced by its reads', async (t) => {
  const EVENTS = 200
  const SIZE = 64 * 1024
  const { server, port } = await startServer(t, { maxBufferBytes: 256 * 1024, history: EVENTS, stallTimeoutMs: 5_000 })
  const data = 'r'.repeat(SIZE)
  for (let i = 0; i < EVENTS; i++) server.broadcast({ data })
  // 12.5 MiB behind, read in small bites with pauses: a slow phone catching up.
  const c = await openStream(port, `/events/${PUB}?lastEventId=0`)
  t.teardown(() => c.close())
  const reading = setInterval(() => {
    c.socket.pause()
    setTimeout(() => c.socket.resume(), 5)
  }, 10)
  t.teardown(() => clearInterval(reading))
  // A live event published mid-replay comes after the replay, in order.
  server.broadcast({ data: 'live' })
  // until(), not waitFor(): a failure message must not quote 12 MiB of stream.
  await until(() => c.received.includes('data: live\n') || c.closed, () => 'the live event', 30_000)
  t.notOk(c.closed, 'the stream is still open')
  clearInterval(reading)
  c.socket.resume()
  t.equal(countEvents(c, data), EVENTS, 'every replayed event arrived')
  t.ok(c.received.indexOf('data: live\n') > c.received.lastIndexOf(`data: ${data}\n`), 'the live event after the whole replay')
  t.same(server.stats().drops, { buffer: 0, stall: 0, admin: 0, shutdown: 0, revoked: 0, expired: 0 }, 'not dropped')
})

// ------------------------------------------------------------------ the connection budget

/** `n` connections that do `what` to the server, kept in `into`; resolves once all are connected. */
async function flood(t: Test, port: number, n: number, what: (s: net.Socket) => void): Promise<net.Socket[]> {
  const sockets: net.Socket[] = []
  await Promise.all(
    Array.from({ length: n }, () => new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        what(s)
        resolve()
      })
      s.on('error', () => resolve())
      sockets.push(s)
    })),
  )
  t.teardown(() => {
    for (const s of sockets) s.destroy()
  })
  return sockets
}

/** Try `attempts` new subscribers one after another; how many got `ready`. */
async function subscribers(t: Test, port: number, attempts: number): Promise<number> {
  let ready = 0
  for (let i = 0; i < attempts; i++) {
    try {
      const s = await openStream(port, `/events/${PUB}`)
      t.teardown(() => s.close())
      ready++
    } catch {
      // counted as not ready
    }
  }
  return ready
}

const FLOOD = 60

for (const [name, act] of [
  ['idle connections that send nothing', (_s: net.Socket): void => {}],
  ['slow-loris heads, a byte at a time', (s: net.Socket): void => {
    s.write('GET /index.html HTTP/1.1\r\nHost: x\r\n')
    const drip = setInterval(() => s.write('X'), 100)
    s.on('close', () => clearInterval(drip))
  }],
  ['keep-alive connections asking OPTIONS * again and again', (s: net.Socket): void => {
    const ask = (): boolean => s.write('OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n')
    ask()
    const again = setInterval(ask, 200)
    s.on('data', () => {})
    s.on('close', () => clearInterval(again))
  }],
] as const) {
  t.test(`at the connection limit, ${name} make room for subscribers with a token`, async (t) => {
    const { server, port } = await startServer(t, { maxConnections: FLOOD })
    const reader = await openStream(port, `/events/${PUB}`)
    t.teardown(() => reader.close())
    await flood(t, port, FLOOD, act)
    await until(() => server.stats().connections.open >= FLOOD, () => 'the flood to fill the budget')
    t.equal(await subscribers(t, port, 10), 10, '10 of 10 new subscribers got ready')
    const st = server.stats()
    t.ok(st.connections.shed >= 10, `flood connections were closed to make room (${st.connections.shed})`)
    t.ok(st.connections.open <= FLOOD, `never more than the limit open (${st.connections.open})`)
    t.equal(server.clientCount, 11, 'the reader and the 10 new streams')
    server.broadcast({ data: 'after the flood' })
    await reader.waitFor('data: after the flood\n')
  })
}

t.test('when every connection is a stream, one more is refused with 503 and counted', async (t) => {
  const { server, port } = await startServer(t, { maxConnections: 3 })
  for (let i = 0; i < 3; i++) {
    const s = await openStream(port, `/events/${PUB}`)
    t.teardown(() => s.close())
  }
  const reply = await rawRequest(port, `GET /events/${PUB} HTTP/1.1\r\nHost: x\r\n\r\n`, 3000)
  t.equal(reply, 'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 30\r\nConnection: close\r\n\r\nno connection free; try again\n')
  t.match(server.stats().connections, { shed: 0, refused: 1 })
})

// ------------------------------------------------------------------ answers the client does not take

t.test('an answer the client takes nothing of closes the connection after sendTimeoutMs, file included', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-budget-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'big.bin'), Buffer.alloc(32 * 1024 * 1024, 7)) // streamed, not cached
  writeFileSync(path.join(dir, 'small.txt'), 'y'.repeat(100_000))
  const { server, port } = await startServer(t, { publicDir: dir, sendTimeoutMs: 500 })
  const reader = await openStream(port, `/events/${PUB}`)
  t.teardown(() => reader.close())

  // A download never read, and a pipeline of small answers never read.
  const stuck = await flood(t, port, 2, () => {})
  stuck[0]!.write('GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n')
  stuck[0]!.pause()
  stuck[1]!.write('GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(200))
  stuck[1]!.pause()
  await until(() => server.stats().connections.open === 1, () => 'both stuck connections to be closed', 15_000)
  t.pass('the server closed both; only the stream is left')
  server.broadcast({ data: 'still here' })
  await reader.waitFor('data: still here\n')
})

// ------------------------------------------------------------------ reconnect storm

t.test('streams closed together and reconnecting at once with Last-Event-ID each get exactly what they missed', async (t) => {
  const N = 400
  const { server, port } = await startServer(t, { backlog: 1024 })
  const first: RawClient[] = []
  for (let i = 0; i < N; i++) first.push(await openStream(port, `/events/${PUB}`))
  for (let i = 1; i <= 3; i++) server.broadcast({ data: `before ${i}` })
  for (const c of first) await c.waitFor('data: before 3\n')
  const lastId = /id: (\d+)\ndata: before 3\n/.exec(first[0]!.received)![1]!
  t.equal(server.closeAll(), N, 'every stream closed by the server')
  for (const c of first) await c.waitClosed()
  for (let i = 1; i <= 3; i++) server.broadcast({ data: `missed ${i}` })

  // All at once: N connections in one turn, while two more events are published.
  const again = await Promise.all(Array.from({ length: N }, () => openStream(port, `/events/${PUB}`, { 'Last-Event-ID': lastId })))
  for (const c of again) t.teardown(() => c.close())
  server.broadcast({ data: 'live 1' })
  server.broadcast({ data: 'live 2' })
  let exact = 0
  for (const c of again) {
    await c.waitFor('data: live 2\n')
    const got = [...c.received.matchAll(/data: ([a-z]+ \d)\n/g)].map((m) => m[1])
    if (JSON.stringify(got) === JSON.stringify(['missed 1', 'missed 2', 'missed 3', 'live 1', 'live 2'])) exact++
  }
  t.equal(exact, N, `all ${N} got the 3 missed events, then the live ones, once each, in order`)
})

// ------------------------------------------------------------------ the backlog of blocked streams

/**
 * A stream that reads nothing, published to until the server says it is blocked (loopback takes
 * several MiB, up to tens, for a socket that reads nothing). A ClientView is the server's Stream.
 */
async function blockedStream(t: Test, port: number, server: import('../src/index.js').SseServer, channel: string): Promise<RawClient> {
  let view: { blocked: boolean } | null = null
  const onConnect = (c: ClientView): void => {
    if (c.channels.includes(channel)) view = c as unknown as { blocked: boolean }
  }
  server.on('connect', onConnect)
  const s = await openStream(port, `/events/${PUB}?channel=${channel}`)
  server.off('connect', onConnect)
  s.socket.pause()
  t.teardown(() => s.close())
  const data = 'b'.repeat(900_000)
  for (let i = 0; i < 200 && view !== null && !(view as { blocked: boolean }).blocked; i++) {
    server.publish(channel, { data })
    await new Promise((r) => setImmediate(r))
  }
  t.ok(view !== null && (view as { blocked: boolean }).blocked, `the ${channel} stream is blocked`)
  return s
}

t.test('a blocked stream gets a filtered broadcast once it drains, and the filter ran once for it', async (t) => {
  const { server, port } = await startServer(t, { maxBufferBytes: 64 * 1024 * 1024, maxEventBytes: 1024 * 1024 })
  const s = await blockedStream(t, port, server, 'slow')
  const calls = new Map<number, number>()
  const n = server.broadcast({ data: 'filtered' }, (c) => {
    calls.set(c.id, (calls.get(c.id) ?? 0) + 1)
    return c.channels.includes('slow')
  })
  t.equal(n, 1, 'counted for the blocked stream')
  t.same([...calls.values()], [1], 'the filter ran once for the one stream')
  s.socket.resume()
  await until(() => s.received.includes('data: filtered\n'), () => 'the filtered event after the drain', 15_000)
  t.same([...calls.values()], [1], 'and not again when the stream collected it')
})

t.test('a stream blocked while more than the backlog keeps goes by is dropped as slow, the others lose nothing', async (t) => {
  const { server, port } = await startServer(t, { maxBufferBytes: 64 * 1024 * 1024, maxEventBytes: 1024 * 1024, stallTimeoutMs: 60_000 })
  const reader = await openStream(port, `/events/${PUB}?channel=busy`)
  t.teardown(() => reader.close())
  await blockedStream(t, port, server, 'quiet')
  // 70 MiB on another channel: the blocked stream is owed none of it, but the backlog keeps it
  // for as long as that stream is blocked, up to its limit (64 MiB).
  const data = 'z'.repeat(1_000_000)
  for (let i = 0; i < 70; i++) {
    server.publish('busy', { data })
    if (i % 10 === 9) await new Promise((r) => setImmediate(r))
  }
  await until(() => server.stats().drops.buffer === 1, () => 'the blocked stream to be dropped', 10_000)
  t.equal(server.clientCount, 1, 'the reader is left')
  // Its length first (a growing string's length is free; counting 70 MB of it every 10 ms would be
  // the test's own load, and on a busy machine it slowed the reader past the wait), then the count.
  await until(() => reader.received.length >= 70 * data.length, () => `the reader to get 70 MB (${reader.received.length} bytes)`, 20_000)
  await until(() => countEvents(reader, data) === 70, () => 'the reader to get all 70', 5_000)
  t.pass('the reader got every event')
})

t.test('past maxUnsentBytes for all streams together, the streams holding the most are dropped, each under its own limit', async (t) => {
  const MiB = 1024 * 1024
  const { server, port } = await startServer(t, { maxBufferBytes: 16 * MiB, maxUnsentBytes: 6 * MiB, maxEventBytes: MiB, stallTimeoutMs: 60_000 })
  const reader = await openStream(port, `/events/${PUB}?channel=m`)
  t.teardown(() => reader.close())
  for (let i = 0; i < 3; i++) await blockedStream(t, port, server, `m${i}`)
  // Each blocked stream is now owed 3 MiB more: 9 MiB in all, 3 each, far under 16 MiB each.
  const data = 'u'.repeat(1_000_000)
  for (let k = 0; k < 3; k++) for (let i = 0; i < 3; i++) server.publish(`m${i}`, { data })
  await until(() => server.stats().drops.buffer >= 2, () => `two streams dropped for the total: ${JSON.stringify(server.stats().drops)}`, 5_000)
  t.equal(server.stats().drops.stall, 0, 'none as stalled')
  t.equal(server.clientCount, 2, 'the reader and one blocked stream are left: 3 MiB is under three quarters of 6 MiB')
  server.publish('m', { data: 'after' })
  await reader.waitFor('data: after\n')
})
