// What one hostile or unlucky client may cost the server, at small size over real sockets on
// 127.0.0.1 (bench/hostile.mjs runs the same cases at full size): stalled streams hold at most a
// couple of entries in Node's write queue and are dropped whole; a replay larger than
// maxBufferBytes is paced, not dropped. Each case also checks that a reading stream lost nothing.

import t from 'tap'
import type { ClientView } from '../src/index.js'
import { openStream, PUB, startServer, type RawClient } from './helpers.js'
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
  t.same(server.stats().drops, { buffer: 0, stall: 0, admin: 0, shutdown: 0 }, 'not dropped')
})
