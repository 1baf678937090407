// Closes that leave unsent bytes behind reset the connection (src/server/http/close.ts): the kernel
// keeps no orphan in FIN_WAIT1 with the send queue of a client that reads nothing, and the peer
// learns that the connection is gone. A close with nothing unsent stays a FIN, and a graceful
// stream end stays `0\r\n\r\n` then FIN. Orphans are read from /proc/net/tcp for the server's own
// port (another test on this machine may make orphans of its own, which /proc/net/sockstat counts
// too): a socket with no owner (inode 0) that is not in TIME_WAIT.

import t from 'tap'
import type { ClientView, SseServer } from '../src/index.js'
import { openStream, PUB, startServer, type RawClient } from './helpers.js'
import { bigFile, canReadProc, gone, kernelSockets, MiB, neverReading, orphans, sockstat, type KernelSocket } from './kernel.js'
import { until } from './process.js'

t.test('never-read downloads closed at their send deadline are reset: no orphan in the kernel, and each client sees the close', { skip: !canReadProc && 'no /proc/net/tcp' }, async (t) => {
  const N = 300
  const SIZE = 16 * MiB
  const { server, port } = await startServer(t, { publicDir: bigFile(t, SIZE), sendTimeoutMs: 500 })
  t.comment(`before: ${sockstat()}`)
  const downloads = await neverReading(t, port, N, '/big.bin')
  // Each server-side socket is either still the server's (it holds an inode) or waiting in the
  // accept queue (ESTABLISHED, no inode yet), until its deadline closes it.
  const serving = (): KernelSocket[] => kernelSockets(port).filter((s) => s.localPort === port && s.remotePort !== 0 && (s.inode !== 0 || s.state === '01'))
  await until(() => serving().length === 0, () => `every download past its deadline: ${JSON.stringify(serving())} left; ${JSON.stringify(server.stats().connections)}`, 20_000)
  t.comment(`after the deadlines: ${sockstat()}`)
  // The kernel frees a reset socket at once; a FIN would have left one orphan per download.
  const left = orphans(port).length
  t.ok(left <= N / 100, `no orphaned sockets on the server's port (${left} for ${N} downloads)`)
  t.equal(server.stats().connections.reset, N, `every download was reset (connections.reset ${server.stats().connections.reset})`)

  // The clients, reading at last, find the connection closed, with most of the file never sent.
  for (const d of downloads) d.socket.resume()
  await until(() => downloads.every((d) => d.closed), () => `every client to see the close: ${downloads.filter((d) => !d.closed).length} still open`, 10_000)
  t.ok(downloads.every((d) => d.received < SIZE), 'none got the whole file')
})

/** The server-side Stream behind the next stream to open (a ClientView is the server's Stream). */
function nextView(server: SseServer): Promise<ClientView> {
  return new Promise((resolve) => server.once('connect', resolve))
}

/** Publish big events to a stream that reads nothing until the server drops it. */
async function fillUntilDropped(server: SseServer, s: RawClient, reason: 'buffer' | 'stall'): Promise<void> {
  s.socket.pause()
  const data = 'b'.repeat(500_000)
  await until(
    async () => {
      if (server.stats().drops[reason] > 0) return true
      server.broadcast({ data })
      await new Promise((r) => setImmediate(r))
      return false
    },
    () => `a ${reason} drop: ${JSON.stringify(server.stats().drops)}`,
    10_000,
  )
}

t.test('a stream dropped for its buffer is reset: the kernel keeps no orphan and the client gets ECONNRESET', { skip: !canReadProc && 'no /proc/net/tcp' }, async (t) => {
  const { server, port } = await startServer(t, { maxBufferBytes: 4 * MiB, maxEventBytes: MiB })
  const reader = await openStream(port, `/events/${PUB}?channel=other`)
  t.teardown(() => reader.close())
  const view = nextView(server)
  const slow = await openStream(port, `/events/${PUB}`)
  t.teardown(() => slow.close())
  await view
  const localPort = slow.socket.localPort!
  await fillUntilDropped(server, slow, 'buffer')
  await until(() => gone(port, localPort), () => `the connection to leave the kernel: ${JSON.stringify(kernelSockets(port).filter((s) => s.remotePort === localPort || s.localPort === localPort))}`, 3000)
  t.pass('neither end of it is left in the kernel: no FIN_WAIT1 orphan on the server, no ESTABLISHED client')
  t.equal(server.stats().connections.reset, 1, 'connections.reset 1')
  // Linux keeps the reset for the client's next call on the socket: a write reports it.
  const err = await new Promise<string>((resolve) => {
    slow.socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
    slow.socket.write('x')
  })
  t.equal(err, 'ECONNRESET', 'the client is told ECONNRESET')
  server.publish('other', { data: 'still here' })
  await reader.waitFor('data: still here\n')
})

t.test('an admin close of a stream that reads nothing is reset after the linger; one that reads gets 0\\r\\n\\r\\n and a FIN', { skip: !canReadProc && 'no /proc/net/tcp' }, async (t) => {
  const { server, port } = await startServer(t, { maxBufferBytes: 64 * MiB, maxEventBytes: MiB, stallTimeoutMs: 60_000 })
  const readerView = nextView(server)
  const reader = await openStream(port, `/events/${PUB}?channel=other`)
  t.teardown(() => reader.close())
  const readerId = (await readerView).id
  let ended = false
  let error: string | null = null
  reader.socket.on('end', () => (ended = true))
  reader.socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? null))

  const view = nextView(server)
  const deaf = await openStream(port, `/events/${PUB}`)
  t.teardown(() => deaf.close())
  const deafView = (await view) as ClientView & { blocked: boolean }
  deaf.socket.pause()
  const data = 'd'.repeat(900_000)
  for (let i = 0; i < 200 && !deafView.blocked; i++) {
    server.broadcast({ data })
    await new Promise((r) => setImmediate(r))
  }
  t.ok(deafView.blocked, 'the deaf stream is blocked: the kernel takes no more')
  const localPort = deaf.socket.localPort!
  t.ok(server.closeClient(deafView.id), 'admin close of the deaf stream')
  await until(() => gone(port, localPort), () => `the deaf connection to leave the kernel: ${JSON.stringify(kernelSockets(port).filter((s) => s.remotePort === localPort || s.localPort === localPort))}`, 5000)
  t.pass('reset after the linger: no orphan left for it')
  t.equal(server.stats().connections.reset, 1, 'connections.reset 1')

  t.ok(server.closeClient(readerId), 'admin close of the reading stream')
  await reader.waitClosed()
  t.ok(reader.received.endsWith('0\r\n\r\n'), 'the reader got the last chunk')
  t.ok(ended && error === null, 'then a FIN, no reset')
  t.equal(server.stats().connections.reset, 1, 'no reset counted for it')
  t.equal(server.stats().drops.admin, 2)
})
