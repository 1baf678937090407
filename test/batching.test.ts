// Fan-out batching (src/server/fanout/streams.ts queue/flush): events published in one event-loop turn reach
// each stream in one write, each stream gets exactly its own events in order, whatever mix of
// targets and framings, and order holds around sends to one stream.

import t from 'tap'
import { afterReady, chunk, clientId, countWrites, openStream, RawClient, startServer } from './helpers.js'


t.test('a burst published in one turn reaches each stream in one write, with exactly its events', async (t) => {
  const { server, port } = await startServer(t, { users: [{ token: 'ann', user: 'ann', roles: ['staff'] }] })
  const writes = countWrites(server)
  const a = await openStream(port, '/events/tok?channel=a')
  const b = await openStream(port, '/events/tok?channel=b')
  const ab = await openStream(port, '/events/tok?channel=a&channel=b')
  const ann = await openStream(port, '/events/ann?channel=b')
  // An HTTP/1.0 stream gets the same events without chunk framing.
  const old = await RawClient.open(port)
  old.write('GET /events/tok?channel=a HTTP/1.0\r\n\r\n')
  await old.waitFor('event: ready\n')
  t.teardown(() => [a, b, ab, ann, old].forEach((c) => c.close()))
  for (const id of writes.keys()) writes.set(id, 0)

  const counts = [
    server.publish('a', { data: 'a1' }),
    server.publish('b', { data: 'b1' }),
    server.broadcast({ data: 'all' }),
    server.sendToUser('ann', { data: 'to ann' }),
    server.publishEvent({ data: 'staff only' }, { role: 'staff' }).delivered,
    server.publish('a', { data: 'a2', event: 'x' }),
  ]
  t.same(counts, [3, 3, 5, 1, 1, 3], 'each publish says how many streams it is for')

  const ev = (id: number, data: string, event?: string): string => chunk(`id: ${id}\n${event ? `event: ${event}\n` : ''}data: ${data}\n\n`)
  const want = {
    a: ev(1, 'a1') + ev(3, 'all') + ev(6, 'a2', 'x'),
    b: ev(2, 'b1') + ev(3, 'all'),
    ab: ev(1, 'a1') + ev(2, 'b1') + ev(3, 'all') + ev(6, 'a2', 'x'),
    ann: ev(2, 'b1') + ev(3, 'all') + ev(4, 'to ann') + ev(5, 'staff only'),
  }
  for (const [name, c] of Object.entries({ a, b, ab, ann })) {
    await c.waitFor((s) => afterReady({ received: s } as RawClient).length >= want[name as keyof typeof want].length)
    t.equal(afterReady(c), want[name as keyof typeof want], `${name} got exactly its events, in order`)
  }
  await old.waitFor('data: a2\n\n')
  t.ok(old.received.endsWith('id: 1\ndata: a1\n\nid: 3\ndata: all\n\nid: 6\nevent: x\ndata: a2\n\n'), 'the HTTP/1.0 stream got its events unframed')
  for (const c of [a, b, ab, ann]) t.equal(writes.get(clientId(c)), 1, `one write to stream ${clientId(c)} for the whole burst`)
})

t.test('a send to one stream keeps its place between queued broadcasts', async (t) => {
  const { server, port } = await startServer(t)
  const s = await openStream(port, '/events/tok')
  t.teardown(() => s.close())
  const id = clientId(s)
  server.broadcast({ data: 'first' })
  server.send(id, { data: 'just you' })
  server.broadcast({ data: 'last' })
  const want = chunk('id: 1\ndata: first\n\n') + chunk('id: 2\ndata: just you\n\n') + chunk('id: 3\ndata: last\n\n')
  await s.waitFor((r) => r.endsWith(chunk('id: 3\ndata: last\n\n')))
  t.equal(afterReady(s), want)
})

t.test('events queued when a stream closes by admin reach it before its last chunk', async (t) => {
  const { server, port } = await startServer(t)
  const s = await openStream(port, '/events/tok')
  server.broadcast({ data: 'before the close' })
  t.equal(server.closeClient(clientId(s)), true)
  await s.waitClosed()
  t.equal(afterReady(s), chunk('id: 1\ndata: before the close\n\n') + '0\r\n\r\n')
})

t.test('a burst longer than one batch (30 events) arrives whole and in order', async (t) => {
  const { server, port } = await startServer(t)
  const s = await openStream(port, '/events/tok?channel=c')
  t.teardown(() => s.close())
  let want = ''
  for (let i = 1; i <= 100; i++) {
    server.publish(i % 2 === 0 ? 'c' : 'other', { data: `n${i}` })
    if (i % 2 === 0) want += chunk(`id: ${i}\ndata: n${i}\n\n`)
  }
  await s.waitFor((r) => r.endsWith(chunk('id: 100\ndata: n100\n\n')))
  t.equal(afterReady(s), want)
})
