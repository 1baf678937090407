// Live channels in one process (CONTRACT "Live channels"): `ready.key`; POST /clients/ID/channels
// and SseServer.setChannels; the `channels` event at one point of the stream's sequence, whether
// the stream is reading, blocked, or behind a fan-out still being written; `since` replay;
// counts and listeners following; every refusal, with nothing changed and other clients served;
// SseClient.setChannels and its reconnection; a small page-flip storm. Real sockets throughout.

import t from 'tap'
import * as net from 'node:net'
import type { ClientView } from '../src/index.js'
import { SseClient, type SseEvent } from '../src/index.js'
import { MAX_CHANGE_BODY_BYTES, MAX_CHANNELS_PER_CHANGE, MAX_CHANNELS_PER_STREAM, MAX_NAME_BYTES } from '../src/server/limits.js'
import { chunk, ev, PUB, publish, rng, sleep, startServer, TOKEN } from './helpers.js'
import { change, channelsData, cutProblems, EventReader, postChannels, segments, type Pub } from './live.js'

const CHANNELS = (channels: readonly string[]): string => chunk(`event: channels\ndata: ${channelsData(channels)}\n\n`)
const RESET = chunk('event: reset\ndata: {"reason":"history-gap"}\n\n')

/** What a stream received after its head and `ready` chunk, as bytes. */
function rawAfterReady(r: EventReader): string {
  // The reader keeps events; the exact bytes are rebuilt from them as the server frames each one.
  return r.after.map((e) => chunk(`${e.id === null ? '' : `id: ${e.id}\n`}${e.event === 'message' ? '' : `event: ${e.event}\n`}data: ${e.data}\n\n`)).join('')
}

t.test('ready carries a key: 128 random bits as 22 base64url characters, another for every stream, in no /stats, /metrics or error log', async (t) => {
  const r = await startServer(t)
  const logged: string[] = []
  r.server.on('error-reply', (e) => logged.push(JSON.stringify(e)))
  const streams = await Promise.all(Array.from({ length: 20 }, () => EventReader.open(r.port, `/events/${TOKEN}?channel=a`)))
  t.teardown(() => streams.forEach((s) => s.close()))
  const keys = streams.map((s) => s.key)
  t.ok(keys.every((k) => /^[A-Za-z0-9_-]{22}$/.test(k)), 'each key is 22 base64url characters (16 bytes)')
  t.equal(new Set(keys).size, keys.length, 'each stream its own key')
  t.equal(streams[0]!.events[0]!.data, `{"client":${streams[0]!.client},"user":null,"channels":["a"],"key":"${keys[0]}"}`, 'ready data: client, user, channels, key')
  // A refused change with a key in its header: the error log says nothing of it.
  t.equal((await postChannels(r.port, 999_999, '{"add":["b"]}', keys[0]!)).status, 404)
  t.equal((await postChannels(r.port, streams[1]!.client, '{"add":["b"]}', keys[0]!)).status, 401)
  const stats = await fetch(`${r.base}/stats`, { headers: { authorization: `Bearer ${PUB}` } }).then((x) => x.text())
  const metrics = await fetch(`${r.base}/metrics`, { headers: { authorization: `Bearer ${PUB}` } }).then((x) => x.text())
  for (const k of keys) {
    if (stats.includes(k) || metrics.includes(k) || logged.some((l) => l.includes(k))) t.fail(`key ${k} shows`)
  }
  t.ok(logged.length >= 2, 'the refusals were logged')
  t.pass('no key in /stats, /metrics or the error log')
})

t.test('a change: 200 with the new set; the stream gets `channels` where it takes effect, then only events of its new set; counts and listeners follow', async (t) => {
  const r = await startServer(t)
  const seen: string[][] = []
  r.server.on('disconnect', (c: ClientView) => seen.push([...c.channels]))
  const s = await EventReader.open(r.port, `/events/${TOKEN}?channel=a&channel=b`)
  const other = await EventReader.open(r.port, `/events/${TOKEN}?channel=a`)
  await publish(r.base, 'channel=a', 'a1')
  await publish(r.base, 'channel=b', 'b1')
  const res = await change(r.port, s, { add: ['c'], remove: ['a'] })
  t.same([res.status, res.json], [200, { channels: ['b', 'c'] }], '200 {"channels":["b","c"]}: kept first, then added')
  t.equal(res.headers['content-type'], 'application/json; charset=utf-8')
  await publish(r.base, 'channel=a', 'a2')
  await publish(r.base, 'channel=c', 'c1')
  await publish(r.base, 'channel=b', 'b2')
  await s.until(() => s.after.length === 5, 3000, 'five events')
  t.equal(rawAfterReady(s), ev('1', 'a1') + ev('2', 'b1') + CHANNELS(['b', 'c']) + ev('4', 'c1') + ev('5', 'b2'), 'a1, b1, channels, then c1 and b2: not a2')
  await other.until(() => other.after.length === 2, 3000, 'the other stream')
  t.equal(rawAfterReady(other), ev('1', 'a1') + ev('3', 'a2'), 'another stream is untouched')
  t.same([r.server.connections('a'), r.server.connections('b'), r.server.connections('c')], [1, 1, 1], 'connections() per channel')
  const stats = (await fetch(`${r.base}/stats`, { headers: { authorization: `Bearer ${PUB}` } }).then((x) => x.json())) as { channels: Record<string, number> }
  t.same(stats.channels, { a: 1, b: 1, c: 1 }, '/stats channels')
  const pub = await publish(r.base, 'channel=c', 'c2')
  t.equal(pub.json.delivered, 1, 'a publish to c counts the changed stream')
  s.close()
  await s.until(() => seen.length === 1, 3000, 'disconnect')
  t.same(seen, [['b', 'c']], 'the disconnect listener sees the channels it had last')
  other.close()
})

t.test('SseServer.setChannels: the new set at once in one process; the same errors as the route', async (t) => {
  const r = await startServer(t)
  const s = await EventReader.open(r.port, `/events/${TOKEN}?channel=a`)
  t.same(r.server.setChannels(s.client, { add: ['b', 'b'], remove: ['x'] }), ['a', 'b'], 'returns the set (a name twice counts once; removing one it has not is nothing)')
  await s.until(() => s.after.length === 1, 3000, 'channels')
  t.equal(rawAfterReady(s), CHANNELS(['a', 'b']))
  const status = (f: () => unknown): unknown => {
    try {
      f()
      return 'no error'
    } catch (err) {
      return (err as { status?: unknown }).status
    }
  }
  t.equal(status(() => r.server.setChannels(999_999, { add: ['c'] })), 404, 'no such stream: 404')
  t.equal(status(() => r.server.setChannels(s.client, { add: ['a'], remove: ['a'] })), 400, 'in add and remove: 400')
  t.equal(status(() => r.server.setChannels(s.client, { add: [''] })), 400, 'an empty name: 400')
  t.equal(status(() => r.server.setChannels(s.client, { remove: ['a', 'b'] })), 400, 'no channel left: 400')
  t.same(r.server.setChannels(s.client, {}), ['a', 'b'], 'an empty change is made, and shown')
  s.close()
})

// ------------------------------------------------------------------ the point where it lands

for (const blocked of [false, true]) {
  t.test(
    `add and remove while 1 000 events are published at full speed${blocked ? ', the stream reading nothing until the end (blocked: its events wait in the backlog)' : ''}: before the change it is the old set's stream, after it the new set's, no gap, no duplicate`,
    async (t) => {
      const r = await startServer(t, { maxBufferBytes: 512 * 1024 * 1024, maxUnsentBytes: 1024 * 1024 * 1024, history: 2000 })
      const views = new Map<number, ClientView & { blocked?: boolean }>()
      r.server.on('connect', (c: ClientView) => views.set(c.id, c))
      const s = await EventReader.open(r.port, `/events/${TOKEN}?channel=a&channel=b`)
      const oldSet = await EventReader.open(r.port, `/events/${TOKEN}?channel=a&channel=b`)
      const newSet = await EventReader.open(r.port, `/events/${TOKEN}?channel=b&channel=c`)
      t.teardown(() => [s, oldSet, newSet].forEach((x) => x.close()))
      if (blocked) s.socket.pause()

      // 1 000 publishes pipelined on one connection, 20 in flight (each answer lets the next go),
      // round robin over a, b, c and d (d: nobody's).
      const N = 1000
      const pad = blocked ? 'x'.repeat(16 * 1024) : ''
      const chans = ['a', 'b', 'c', 'd']
      const published: Pub[] = []
      const pubConn = net.connect(r.port, '127.0.0.1')
      let answers = ''
      let sent = 0
      let hold = false
      const oks = (): number => answers.split('HTTP/1.1 200 OK').length - 1
      const more = (): void => {
        let req = ''
        for (; !hold && sent < N && sent - oks() < 20; ) {
          const i = ++sent
          const ch = chans[i % 4]!
          const body = `${ch}${i}${pad}`
          published.push({ id: i, channel: ch })
          req += `POST /publish?channel=${ch} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nContent-Length: ${body.length}\r\n\r\n${body}`
        }
        if (req !== '') pubConn.write(req)
      }
      pubConn.setEncoding('latin1').on('data', (d: string) => {
        answers += d
        more()
      })
      more()
      // The change in the middle of the burst (and, for the blocked stream, once it is blocked).
      await s.until(() => oks() >= 300 && (!blocked || views.get(s.client)?.blocked === true), 20_000, 'the middle of the burst')
      // A moment's hold, so that every event published so far has been answered: ids 1 to
      // answeredBefore were published before the change was asked. Then on at full speed with it.
      // The blocked stream must owe events from the backlog by then (its kernel buffers may still
      // take some: a few more publishes until they do not).
      const stream = views.get(s.client) as unknown as { blocked: boolean; unsent: number; socket: net.Socket }
      const owed = (): number => (stream.blocked ? stream.unsent - stream.socket.writableLength : 0)
      for (;;) {
        hold = true
        await s.until(() => oks() === sent, 10_000, 'the publishes in flight')
        if (!blocked || owed() > 0 || sent > N - 200) break
        hold = false
        more() // twenty more
        hold = true
        await s.until(() => oks() === sent, 10_000, 'a few more publishes')
      }
      const wasBlocked = stream.blocked
      const owedAtChange = owed()
      const answeredBefore = oks()
      const asked = change(r.port, s, { add: ['c'], remove: ['a'] })
      hold = false
      more()
      const res = await asked
      t.same([res.status, res.json], [200, { channels: ['b', 'c'] }])
      const atAnswer = oks()
      const sentBefore = sent // ids past this were published after the answer
      await s.until(() => oks() === N, 30_000, 'every publish answered')
      pubConn.destroy()
      t.ok(atAnswer < N, `the change was answered while the burst went on (${atAnswer} of ${N} publishes answered)`)
      if (blocked) {
        t.ok(wasBlocked, 'the stream was blocked when the change came')
        t.ok(owedAtChange > 0, `and owed events from the backlog (${owedAtChange} bytes)`)
        s.socket.resume()
      }
      const lastOf = (set: string[]): string => String(published.filter((p) => set.includes(p.channel)).at(-1)!.id)
      await newSet.until(() => newSet.after.at(-1)?.id === lastOf(['b', 'c']), 30_000, 'the new set stream done')
      await oldSet.until(() => oldSet.after.at(-1)?.id === lastOf(['a', 'b']), 30_000, 'the old set stream done')
      await s.until(() => s.after.at(-1)?.id === lastOf(['b', 'c']), 30_000, 'the changed stream done')

      const cut = s.after.findIndex((e) => e.event === 'channels')
      t.equal(s.after.filter((e) => e.event === 'channels').length, 1, 'one channels event')
      const pre = s.after.slice(0, cut)
      const post = s.after.slice(cut + 1)
      t.ok(pre.length > 0 && post.length > 0, `events on both sides of the change (${pre.length} before, ${post.length} after)`)
      t.same(pre, oldSet.after.slice(0, pre.length), 'before the change: event for event what a stream on a and b got')
      t.same(post, newSet.after.slice(newSet.after.length - post.length), 'after it: event for event what a stream on b and c got from there on')
      t.same(cutProblems(published, segments(s)), [], 'and the cut is one place: no gap, no duplicate between the two')
      t.equal(post.filter((e) => e.data.startsWith('a')).length, 0, 'no event of a after the change')
      const ids = (evs: typeof pre, set: string[]): number[] => evs.filter((e) => set.includes(e.data[0]!)).map((e) => Number(e.id))
      const onOld = published.filter((p) => p.id <= answeredBefore && p.channel !== 'c' && p.channel !== 'd').map((p) => p.id)
      t.same(ids(pre, ['a', 'b']).slice(0, onOld.length), onOld, `every event of a and b published before the change was asked (1 to ${answeredBefore}) came before it`)
      t.ok(ids(post, ['c']).every((id) => id > answeredBefore), 'no event of c published before the change was asked came after it')
      const onNew = published.filter((p) => p.id > sentBefore && (p.channel === 'b' || p.channel === 'c')).map((p) => p.id)
      t.same(ids(post, ['b', 'c']).slice(-onNew.length), onNew, `every event of b and c published after the answer (${sentBefore + 1} on) came after it`)
    },
  )
}

t.test('a change in the turn a fan-out starts, and while it is written a slice per turn, lands after that fan-out for the stream it has not reached yet', async (t) => {
  const { server, port } = await startServer(t)
  const n = 700 // more than one slice (FANOUT_SLICE_WRITES, 500)
  const readers: EventReader[] = []
  for (let i = 0; i < n; i += 100) readers.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => EventReader.open(port, `/events/${TOKEN}?channel=a`)))))
  t.teardown(() => readers.forEach((x) => x.close()))
  const last = readers.at(-1)!
  const next = readers.at(-2)!

  // In one turn: a1 queued, the change, then a2 and b1: the stream gets a1, channels, b1.
  server.publish('a', { data: 'a1' })
  t.same(server.setChannels(last.client, { add: ['b'], remove: ['a'] }), ['b'])
  server.publish('a', { data: 'a2' })
  server.publish('b', { data: 'b1' })
  // Next: a3 is written a slice per turn; the change comes after the first slice, before it reaches the stream.
  await sleep(50)
  server.publish('a', { data: 'a3' })
  server.publish('b', { data: 'b2' })
  await new Promise((resolve) => setImmediate(resolve))
  t.same(server.setChannels(next.client, { add: ['b'], remove: ['a'] }), ['b'])
  server.publish('a', { data: 'a4' })
  server.publish('b', { data: 'b3' })
  await last.until(() => last.after.length === 5, 5000, 'the last stream')
  await next.until(() => next.after.length === 5, 5000, 'the one before it')
  t.same(last.after.map((e) => e.data), ['a1', channelsData(['b']), 'b1', 'b2', 'b3'], 'a1 (queued before the change), channels, then b1: not a2')
  t.same(next.after.map((e) => e.data), ['a1', 'a2', 'a3', channelsData(['b']), 'b3'], 'a3 (its fan-out under way), channels, then b3: not a4')
  await readers[0]!.until(() => readers[0]!.after.length === 4, 5000, 'a stream on a')
  t.same(readers[0]!.after.map((e) => e.data), ['a1', 'a2', 'a3', 'a4'], 'the others got every event of a')
})
