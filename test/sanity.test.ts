import t from 'tap'
import { startServer, openStream, publish, chunk, STREAM_HEAD } from './helpers.js'
t.test('a published event reaches an open stream as one chunk', async (t) => {
  const { port, base } = await startServer(t)
  const s = await openStream(port, '/events/tok')
  t.ok(s.received.startsWith(STREAM_HEAD))
  const r = await publish(base, 'event=greet', 'hi')
  t.same(r, { status: 200, json: { id: '1', delivered: 1 } })
  await s.waitFor(chunk('id: 1\nevent: greet\ndata: hi\n\n'))
  s.close()
})
