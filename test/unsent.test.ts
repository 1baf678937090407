// Answers in the one byte budget (src/server/http/unsent.ts, static.ts sendFile): a file is sent a
// slice at a time, so a download that reads nothing holds one slice; its unsent bytes count in
// maxUnsentBytes with the streams', and past it the oldest downloads are reset before any
// stream, while subscribers keep getting `ready` and events. Many large files on one keep-alive
// connection leave no listener behind.

import t from 'tap'
import { writeFileSync } from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import { FILE_SLICE_BYTES } from '../src/server/limits.js'
import { openStream, PUB, startServer } from './helpers.js'
import { bigFile, canReadProc, gone, MiB, neverReading, unread } from './kernel.js'
import { until } from './process.js'

t.test('past maxUnsentBytes, the oldest downloads that read nothing are reset first; streams keep getting ready and events', { skip: !canReadProc && 'no /proc/net/tcp' }, async (t) => {
  const MAX = 16 * FILE_SLICE_BYTES
  const { server, port } = await startServer(t, { publicDir: bigFile(t, 16 * MiB), maxUnsentBytes: MAX, maxBufferBytes: MAX, maxEventBytes: 1024 })
  const before = await openStream(port, `/events/${PUB}`)
  t.teardown(() => before.close())

  // 12 older downloads under way (12 slices unsent fit in the budget of 16 slices), then 20 newer
  // ones: 32 slices, over it.
  const older = await neverReading(t, port, 12, '/big.bin')
  await until(() => older.every((d) => unread(port, d.socket.localPort!) > 0), () => 'the older downloads under way', 5000)
  const newer = await neverReading(t, port, 20, '/big.bin')
  const during = await openStream(port, `/events/${PUB}`)
  t.teardown(() => during.close())
  t.pass('a stream opened meanwhile got ready')

  // The sweep (once a second) resets the oldest until what is unsent is under three quarters of
  // the budget: at most 12 slices are left.
  const keep = Math.floor((MAX * 3) / 4 / FILE_SLICE_BYTES)
  await until(() => server.stats().connections.reset >= 32 - keep, () => `resets: ${JSON.stringify(server.stats().connections)}`, 8000)
  const isGone = (d: { socket: net.Socket }): boolean => gone(port, d.socket.localPort!)
  await until(() => older.every(isGone), () => `every older download reset: ${older.filter((d) => !isGone(d)).length} left`, 3000)
  t.pass('every older download was reset first')
  const kept = newer.filter((d) => !isGone(d)).length
  t.ok(kept >= keep - 4 && kept <= keep, `the newest downloads are kept while they fit (${kept} kept, ${keep} fit)`)
  await until(() => server.stats().connections.open === 2 + kept, () => `open: both streams and ${kept} downloads; ${JSON.stringify(server.stats().connections)}`, 3000)
  t.pass('the server holds both streams and those downloads')
  t.same(server.stats().drops, { buffer: 0, stall: 0, admin: 0, shutdown: 0, revoked: 0, expired: 0 }, 'no stream was dropped')

  server.broadcast({ data: 'after the budget' })
  await before.waitFor('data: after the budget\n')
  await during.waitFor('data: after the budget\n')
  const late = await openStream(port, `/events/${PUB}`)
  late.close()
  t.pass('both streams got the event, and one more stream got ready')
})

t.test('12 large files pipelined on one keep-alive connection arrive byte-exact and leave no listener behind', async (t) => {
  const N = 12
  const SIZE = 1.5 * MiB
  const dir = bigFile(t, 1) // a folder for the files; its one-byte big.bin is not used here
  const body = Buffer.alloc(SIZE)
  for (let i = 0; i < SIZE; i++) body[i] = (i * 31 + (i >> 12)) & 0xff
  writeFileSync(path.join(dir, 'f.bin'), body)
  const warnings: string[] = []
  const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`)
  process.on('warning', onWarning)
  t.teardown(() => process.off('warning', onWarning))
  const { port } = await startServer(t, { publicDir: dir })

  const s = net.connect(port, '127.0.0.1')
  t.teardown(() => s.destroy())
  const chunks: Buffer[] = []
  let got = 0
  s.on('data', (d: Buffer) => {
    chunks.push(d)
    got += d.length
  })
  s.write('GET /f.bin HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(N))
  // Each answer is a head (without Date, the same length every time) and the file.
  await until(() => got >= N * SIZE && Buffer.concat(chunks).toString('latin1').split('HTTP/1.1 200 OK\r\n').length - 1 === N, () => `${N} answers: ${got} bytes`, 10_000)
  await new Promise((r) => setImmediate(r))
  const all = Buffer.concat(chunks)
  let at = 0
  let exact = 0
  for (let i = 0; i < N; i++) {
    const end = all.indexOf('\r\n\r\n', at)
    const head = all.subarray(at, end).toString('latin1')
    t.match(head, new RegExp(`^HTTP/1\\.1 200 OK\\r\\n[\\s\\S]*Content-Length: ${SIZE}\\r\\n`), `answer ${i + 1}: 200 with Content-Length`)
    if (all.subarray(end + 4, end + 4 + SIZE).equals(body)) exact++
    at = end + 4 + SIZE
  }
  t.equal(exact, N, `all ${N} bodies byte-exact`)
  t.equal(at, all.length, 'nothing more')
  t.same(warnings, [], 'no warning (MaxListenersExceededWarning from a listener per file)')
})

t.test('at the connection limit, the oldest download nobody reads makes room for a subscriber', { skip: !canReadProc && 'no /proc/net/tcp' }, async (t) => {
  // 8 downloads hold 16 of the 16 places (a socket and a file each): nothing waits for a head.
  const { server, port } = await startServer(t, { publicDir: bigFile(t, 16 * MiB), maxConnections: 16 })
  const downloads = await neverReading(t, port, 8, '/big.bin')
  await until(() => downloads.every((d) => unread(port, d.socket.localPort!) > 0), () => 'every download under way', 5000)
  t.equal(server.stats().connections.open, 8, 'the downloads hold every place')
  for (let k = 1; k <= 3; k++) {
    const s = await openStream(port, `/events/${PUB}`)
    t.teardown(() => s.close())
    t.pass(`subscriber ${k} got ready`)
  }
  // Each download shed frees its socket at once and its file a moment later: two places.
  const { shed, reset } = server.stats().connections
  t.ok(shed >= 1 && shed <= 3, `downloads made room (${shed} shed)`)
  t.equal(reset, shed, 'each was reset: its answer was unfinished, whatever the kernel held')
  const isGone = (d: { socket: net.Socket }): boolean => gone(port, d.socket.localPort!)
  await until(() => downloads.filter(isGone).length === shed, () => `${shed} downloads gone: ${downloads.map(isGone).join(',')}`, 3000)
  t.pass('and gone from the kernel, no orphan left')
  t.equal(server.stats().connections.refused, 0, 'nobody refused')
})
