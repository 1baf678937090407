// Live channels in one process (CONTRACT "Live channels"): `ready.key`; POST /clients/ID/channels
// and SseServer.setChannels; the `channels` event at one point of the stream's sequence, whether
// the stream is reading, blocked, or behind a fan-out still being written; `since` replay;
// counts and listeners following; every refusal, with nothing changed and other clients served;
// SseClient.setChannels and its reconnection; a small page-flip storm. Real sockets throughout.

import t from 'tap'
import * as net from 'node:net'
import type { BusNode, ClientView } from '../src/index.js'
import { LocalBus, SseClient, type SseEvent } from '../src/index.js'
import { MAX_ABSENCES_PER_CHANNEL, MAX_CHANGE_BODY_BYTES, MAX_CHANNELS_PER_CHANGE, MAX_CHANNELS_PER_STREAM, MAX_NAME_BYTES } from '../src/server/limits.js'
import { chunk, ev, PUB, publish, RawClient, rng, sleep, startServer, TOKEN } from './helpers.js'
import { change, channelsData, cutProblems, EventReader, postChannels, segments, type Pub } from './live.js'
import { until } from './process.js'

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
  // Not s.until(): that one stops at the socket's own close, which may come before the server's disconnect.
  await until(() => seen.length === 1, () => 'disconnect', 3000)
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

// ------------------------------------------------------------------ since

t.test('since: the added channels\' retained events after that id come right after `channels`, interleaved in id order, each once; then live', async (t) => {
  const r = await startServer(t, { users: [{ token: 'bob-secret', user: 'bob', roles: [] }] })
  const s = await EventReader.open(r.port, `/events/${TOKEN}?channel=a`)
  const bob = await EventReader.open(r.port, '/events/bob-secret?channel=a')
  const order: Array<[string, string]> = [
    ['channel=a', 'a1'], // 1
    ['channel=b', 'b1'], // 2
    ['channel=a', 'a2'], // 3
    ['channel=b', 'b2'], // 4
    ['channel=c', 'c1'], // 5
    ['channel=b&user=bob', 'b-bob'], // 6: bob's alone
    ['channel=d', 'd1'], // 7: not added
    ['', 'all'], // 8: every stream, had already
    ['channel=b', 'b3'], // 9
  ]
  for (const [q, d] of order) t.equal((await publish(r.base, q, d)).status, 200)
  await s.until(() => s.after.length === 3, 3000, 'a1, a2, all')
  const res = await change(r.port, s, { add: ['b', 'c'], since: '1' })
  t.same(res.json, { channels: ['a', 'b', 'c'] })
  await publish(r.base, 'channel=c', 'c2') // 10
  await publish(r.base, 'channel=a', 'a3') // 11
  await s.until(() => s.after.length === 10, 3000, 'the replay and two live events')
  t.equal(
    rawAfterReady(s),
    ev('1', 'a1') + ev('3', 'a2') + ev('8', 'all') + CHANNELS(['a', 'b', 'c']) + ev('2', 'b1') + ev('4', 'b2') + ev('5', 'c1') + ev('9', 'b3') + ev('10', 'c2') + ev('11', 'a3'),
    'b1, b2, c1, b3 after it in id order: not a2 or all (had), not b-bob (not its), not d1 (not added)',
  )
  const bobRes = await change(r.port, bob, { add: ['b'], since: '0' })
  t.equal(bobRes.status, 200)
  await bob.until(() => bob.after.some((e) => e.data === 'b3'), 3000, 'bob\'s replay')
  t.same(
    bob.after.slice(bob.after.findIndex((e) => e.event === 'channels') + 1).map((e) => e.data),
    ['b1', 'b2', 'b-bob', 'b3'],
    'since 0: every retained event of b that bob would have had, his own included',
  )
  bob.close()

  // Leave b, miss b4, come back with a `since` older than what it had: b4 only, nothing twice.
  t.equal((await change(r.port, s, { remove: ['b'] })).status, 200)
  await publish(r.base, 'channel=b', 'b4') // 12
  await publish(r.base, 'channel=a', 'a4') // 13
  t.equal((await change(r.port, s, { add: ['b'], since: '1' })).status, 200)
  await publish(r.base, 'channel=b', 'b5') // 14
  await s.until(() => s.after.some((e) => e.data === 'b5'), 3000, 'b5')
  t.equal(
    rawAfterReady(s).slice(rawAfterReady(s).indexOf(ev('11', 'a3')) + ev('11', 'a3').length),
    CHANNELS(['a', 'c']) + ev('13', 'a4') + CHANNELS(['a', 'c', 'b']) + ev('12', 'b4') + ev('14', 'b5'),
    'back on b since 1: only b4, which it missed while away (b1, b2, b3 it had)',
  )
  const ids = s.after.flatMap((e) => (e.id === null ? [] : [e.id]))
  t.equal(new Set(ids).size, ids.length, 'no event twice')
  s.close()
})

t.test('a since that cannot be placed: the change is made, and `reset` follows `channels` for the added channels\' part', async (t) => {
  const r = await startServer(t, { history: 3 })
  const s = await EventReader.open(r.port, `/events/${TOKEN}?channel=a`)
  for (const d of ['b1', 'b2', 'b3', 'b4', 'b5']) await publish(r.base, 'channel=b', d)
  const unknown = await change(r.port, s, { add: ['b'], since: 'nope' })
  t.same([unknown.status, unknown.json], [200, { channels: ['a', 'b'] }], 'an id never published: the change is made')
  await publish(r.base, 'channel=b', 'b6')
  t.equal((await change(r.port, s, { add: ['c'], since: '1' })).status, 200, 'an id older than the history (3 events)')
  await publish(r.base, 'channel=c', 'c1')
  await s.until(() => s.after.length === 6, 3000, 'six events')
  t.equal(rawAfterReady(s), CHANNELS(['a', 'b']) + RESET + ev('6', 'b6') + CHANNELS(['a', 'b', 'c']) + RESET + ev('7', 'c1'))
  // A since with no channel added replays nothing: there is nothing to place.
  t.equal((await change(r.port, s, { remove: ['c'], since: 'nope' })).status, 200)
  await s.until(() => s.after.length === 7, 3000, 'seven')
  t.equal(s.after.at(-1)!.data, channelsData(['a', 'b']), 'channels alone, no reset')
  s.close()
})

t.test('since after several absences from one channel: every event it missed in each, nothing it had, each once', async (t) => {
  const r = await startServer(t)
  const s = await EventReader.open(r.port, `/events/${TOKEN}?channel=a`)
  const step = async (change_: Parameters<typeof change>[2], ...pubs: string[]): Promise<void> => {
    t.equal((await change(r.port, s, change_)).status, 200)
    for (const d of pubs) t.equal((await publish(r.base, 'channel=b', d)).status, 200)
  }
  t.equal((await publish(r.base, 'channel=b', 'b1')).status, 200) // 1: before it ever came to b
  await step({ add: ['b'] }, 'b2') // 2: had live
  await step({ remove: ['b'] }, 'b3') // 3: missed
  await step({ add: ['b'], since: '2' }, 'b4') // 3 replayed; 4 had live
  await step({ remove: ['b'] }, 'b5') // 5: missed
  await step({ add: ['b'] }, 'b6') // 6: had live
  await step({ remove: ['b'] }, 'b7') // 7: missed
  await step({ add: ['b'], since: '0' }, 'b8')
  await s.until(() => s.after.some((e) => e.data === 'b8'), 3000, 'b8')
  const raw = rawAfterReady(s)
  t.equal(
    raw.slice(raw.lastIndexOf(CHANNELS(['a', 'b']))),
    CHANNELS(['a', 'b']) + ev('1', 'b1') + ev('5', 'b5') + ev('7', 'b7') + ev('8', 'b8'),
    'since 0: b1 (before it came), b5 and b7 (its last two absences); not b3 (replayed before), nor b2, b4, b6 (had)',
  )
  const ids = s.after.flatMap((e) => (e.id === null ? [] : [e.id]))
  t.same(ids, ['2', '3', '4', '6', '1', '5', '7', '8'], 'every event of b once')
  s.close()
})

t.test(`past ${MAX_ABSENCES_PER_CHANNEL} absences from one channel the oldest is forgotten: a since before its end gets reset, then what it knows it missed`, async (t) => {
  const r = await startServer(t)
  const s = await EventReader.open(r.port, `/events/${TOKEN}?channel=a&channel=b`)
  const absences = MAX_ABSENCES_PER_CHANNEL + 2
  for (let i = 1; i <= absences; i++) {
    t.equal((await change(r.port, s, { remove: ['b'] })).status, 200)
    await publish(r.base, 'channel=b', `missed${i}`) // id 2i - 1
    if (i === absences) break
    t.equal((await change(r.port, s, { add: ['b'] })).status, 200)
    await publish(r.base, 'channel=b', `had${i}`) // id 2i
  }
  t.equal((await change(r.port, s, { add: ['b'], since: '0' })).status, 200)
  await publish(r.base, 'channel=b', 'live')
  await s.until(() => s.after.some((e) => e.data === 'live'), 3000, 'live')
  const raw = rawAfterReady(s)
  const kept = Array.from({ length: MAX_ABSENCES_PER_CHANNEL }, (_, k) => absences - MAX_ABSENCES_PER_CHANNEL + 1 + k)
  t.equal(
    raw.slice(raw.lastIndexOf(CHANNELS(['a', 'b']))),
    CHANNELS(['a', 'b']) + RESET + kept.map((i) => ev(String(2 * i - 1), `missed${i}`)).join('') + ev(String(2 * absences), 'live'),
    `reset, then the events of the last ${MAX_ABSENCES_PER_CHANNEL} absences: nothing it had, nothing twice`,
  )
  s.close()
})

// ------------------------------------------------------------------ refusals

t.test('every refusal has its own answer and changes nothing; another client is still served', async (t) => {
  const grants = new Map([['granted', ['a', 'b', 'news:*']]])
  const r = await startServer(t, {
    authenticate: (token) => (grants.has(token) ? { user: 'g', roles: [], grants: grants.get(token)! } : null),
  })
  const s = await EventReader.open(r.port, `/events/${TOKEN}?channel=a`)
  const other = await EventReader.open(r.port, `/events/${TOKEN}?channel=a`)
  const g = await EventReader.open(r.port, '/events/granted?channel=a')
  const post = (body: string, bearer: string | null = s.key, id: number | string = s.client, headers: Record<string, string> = {}) => postChannels(r.port, id, body, bearer, headers)
  const name257 = 'n'.repeat(MAX_NAME_BYTES + 1)
  const many = (n: number): string[] => Array.from({ length: n }, (_, i) => `m${i}`)
  const cases: Array<[string, Promise<Awaited<ReturnType<typeof post>>>, number, Record<string, unknown>]> = [
    ['no Authorization', post('{"add":["b"]}', null), 401, { error: "a bearer is required: the stream's key, or an admin token" }],
    ['a wrong key', post('{"add":["b"]}', 'x'.repeat(22)), 401, { error: "the bearer is neither this stream's key nor an admin token" }],
    ['the key of another stream', post('{"add":["b"]}', other.key), 401, { error: "the bearer is neither this stream's key nor an admin token" }],
    ['a token that may only open streams', post('{"add":["b"]}', TOKEN), 403, { error: 'the token lacks the admin role' }],
    ['an unknown stream', post('{"add":["b"]}', PUB, 999_999), 404, { error: 'unknown client' }],
    ['an id that is no stream id', post('{"add":["b"]}', PUB, 'x1'), 404, { error: 'unknown client' }],
    ['an unknown stream, with a key', post('{"add":["b"]}', s.key, 999_999), 404, { error: 'unknown client' }],
    ['an empty body', post(''), 400, { error: 'a change needs a JSON body: {"add":[...],"remove":[...]}' }],
    ['not JSON', post('{add:'), 400, { error: 'body is not JSON' }],
    ['not UTF-8', post(Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1')), 400, { error: 'body is not JSON' }],
    ['an array', post('["b"]'), 400, { error: 'a change is a JSON object: {"add":[...],"remove":[...],"since":"ID"}' }],
    ['an unknown field', post('{"add":["b"],"remvoe":["a"]}'), 400, { error: 'unknown field "remvoe"' }],
    ['add not an array', post('{"add":"b"}'), 400, { error: 'add must be an array of channel names' }],
    ['a name not a string', post('{"remove":[1]}'), 400, { error: 'remove must be an array of channel names' }],
    ['an empty name', post('{"add":[""]}'), 400, { error: `channel must be 1 to ${MAX_NAME_BYTES} bytes` }],
    ['a name over 256 bytes', post(JSON.stringify({ add: [name257] })), 400, { error: `channel must be 1 to ${MAX_NAME_BYTES} bytes` }],
    ['a name with LF', post('{"add":["b\\nc"]}'), 400, { error: 'channel contains CR or LF' }],
    ['the same channel in add and remove', post('{"add":["b","c"],"remove":["c"]}'), 400, { error: 'channel "c" is in both add and remove' }],
    [`${MAX_CHANNELS_PER_CHANGE + 1} names in one change`, post(JSON.stringify({ add: many(40), remove: many(MAX_CHANNELS_PER_CHANGE + 1).slice(40) })), 400, { error: `at most ${MAX_CHANNELS_PER_CHANGE} channels in one change` }],
    [`a result over ${MAX_CHANNELS_PER_STREAM} channels`, post(JSON.stringify({ add: many(MAX_CHANNELS_PER_STREAM) })), 400, { error: `at most ${MAX_CHANNELS_PER_STREAM} channels per stream` }],
    ['no channel left', post('{"remove":["a"]}'), 400, { error: 'a stream keeps at least one channel' }],
    ['since not a string', post('{"add":["b"],"since":7}'), 400, { error: 'since must be an event id of 1 to 256 bytes' }],
    ['a channel the token is not granted', post('{"add":["b","secret"]}', g.key, g.client), 403, { error: 'channel not allowed', channel: 'secret' }],
    ['over 16 KiB', post(JSON.stringify({ add: ['b'], since: 'x'.repeat(MAX_CHANGE_BODY_BYTES) })), 413, { error: `a change is at most ${MAX_CHANGE_BODY_BYTES} bytes` }],
  ]
  for (const [what, answer, status, json] of cases) {
    const a = await answer
    t.same([a.status, a.json], [status, json], `${what}: ${status}`)
  }
  // A chunked body over the cap is read (up to 1 MiB) and refused the same way.
  const big = JSON.stringify({ add: ['b'], since: 'y'.repeat(MAX_CHANGE_BODY_BYTES) })
  const chunked = await postChannels(r.port, s.client, `${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`, s.key, { 'Transfer-Encoding': 'chunked' })
  t.same([chunked.status, chunked.json], [413, { error: `a change is at most ${MAX_CHANGE_BODY_BYTES} bytes` }], 'a chunked body over 16 KiB: 413')
  // At the limits: 64 names, 32 channels, and a body of exactly 16 KiB are accepted.
  const at64 = await post(JSON.stringify({ add: many(31), remove: many(MAX_CHANNELS_PER_CHANGE).slice(31) }))
  t.same([at64.status, (at64.json?.channels as string[] | undefined)?.length], [200, MAX_CHANNELS_PER_STREAM], `${MAX_CHANNELS_PER_CHANGE} names, ${MAX_CHANNELS_PER_STREAM} channels: 200`)
  const back = JSON.stringify({ remove: many(31) })
  const exact = back + ' '.repeat(MAX_CHANGE_BODY_BYTES - back.length) // JSON allows the spaces
  t.equal(Buffer.byteLength(exact), MAX_CHANGE_BODY_BYTES, 'a body of exactly 16 KiB…')
  t.same([(await post(exact)).status], [200], '…is accepted')
  t.equal((await post('{"add":["news:1"]}', g.key, g.client)).status, 200, 'a granted prefix: 200')
  t.equal((await post('{"add":["b"]}', PUB)).status, 200, 'an admin token may change any stream')

  // Nothing else changed: s got only the three accepted changes' events; other nothing; both still served.
  await s.until(() => s.after.length === 3, 3000, 'three channels events')
  t.same(s.after.map((e) => e.event), ['channels', 'channels', 'channels'], 'the refused changes left no trace in the stream')
  t.same(JSON.parse(s.after.at(-1)!.data), { channels: ['a', 'b'] })
  await publish(r.base, 'channel=a', 'still')
  await other.until(() => other.after.length === 1, 3000, 'the other stream')
  t.same(other.after.map((e) => e.data), ['still'], 'another client still gets its event')
  await s.until(() => s.after.length === 4, 3000, 'and the stream itself')
  t.same([r.server.connections('a'), r.server.connections('b'), r.server.connections('secret')], [3, 1, 0])
  for (const x of [s, other, g]) x.close()
})

t.test('the route: POST only (405 with Allow), OPTIONS preflight; a keep-alive connection goes on after a refusal', async (t) => {
  const r = await startServer(t)
  const s = await EventReader.open(r.port, `/events/${TOKEN}?channel=a`)
  const get = await fetch(`${r.base}/clients/${s.client}/channels`)
  t.same([get.status, get.headers.get('allow')], [405, 'POST, OPTIONS'])
  const pre = await fetch(`${r.base}/clients/${s.client}/channels`, { method: 'OPTIONS' })
  t.equal(pre.status, 204)
  t.match(pre.headers.get('access-control-allow-headers') ?? '', /Authorization, Content-Type/)
  // Two requests on one connection: a 400 (JSON, the connection kept), then a 200.
  const c = net.connect(r.port, '127.0.0.1')
  let got = ''
  c.setEncoding('latin1').on('data', (d: string) => (got += d))
  const req = (body: string): string => `POST /clients/${s.client}/channels HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.key}\r\nContent-Length: ${body.length}\r\n\r\n${body}`
  c.write(req('{"add":1}') + req('{"add":["b"]}'))
  await s.until(() => got.split('HTTP/1.1 ').length === 3 && got.endsWith('}'), 3000, 'two answers')
  t.match(got, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*\{"error":"add must be an array of channel names"\}HTTP\/1\.1 200 OK\r\n[\s\S]*\{"channels":\["a","b"\]\}$/)
  c.destroy()
  s.close()
})

t.test('an HTTP/1.0 stream gets the channels event unframed', async (t) => {
  const r = await startServer(t)
  const c = await RawClient.open(r.port)
  c.write(`GET /events/${TOKEN}?channel=a HTTP/1.0\r\n\r\n`)
  await c.waitFor(/"key":"[\w-]{22}"\}\n\n/)
  const m = /"client":(\d+),.*"key":"([\w-]{22})"/.exec(c.received)!
  t.equal((await postChannels(r.port, m[1]!, '{"add":["b"],"remove":["a"]}', m[2]!)).status, 200)
  await publish(r.base, 'channel=b', 'x')
  await c.waitFor('data: x\n\n')
  t.ok(c.received.endsWith(`"}\n\nevent: channels\ndata: {"channels":["b"]}\n\nid: 1\ndata: x\n\n`), 'right after ready, with no chunk sizes around it')
  c.close()
})

// ------------------------------------------------------------------ SseClient

t.test('SseClient.setChannels: the change with the key of ready; a reconnection asks for the new set and resumes with Last-Event-ID', async (t) => {
  const r = await startServer(t, { retryMs: 20 })
  const client = new SseClient(`${r.base}/events/${TOKEN}?channel=a`)
  t.teardown(() => client.close())
  const got: SseEvent[] = []
  client.on('message', (e) => got.push(e))
  await expect(() => got.length === 1)
  await t.rejects(client.setChannels({ add: ['b'], remove: ['b'] }), { name: 'SetChannelsError', status: 400 }, 'a refusal rejects with its status')
  t.same(await client.setChannels({ add: ['b'], remove: ['a'] }), ['b'])
  await publish(r.base, 'channel=a', 'a1')
  await publish(r.base, 'channel=b', 'b1')
  await expect(() => got.some((e) => e.data === 'b1'))
  t.same(got.slice(1).map((e) => [e.event, e.data]), [['channels', channelsData(['b'])], ['message', 'b1']])

  // The stream ends (an admin closes it); b2 is published while it is away; it reconnects on b.
  const res = await fetch(`${r.base}/clients/${JSON.parse(got[0]!.data).client}`, { method: 'DELETE', headers: { authorization: `Bearer ${PUB}` } })
  t.equal(res.status, 200)
  await publish(r.base, 'channel=b', 'b2')
  await publish(r.base, 'channel=a', 'a2')
  await expect(() => got.filter((e) => e.event === 'ready').length === 2 && got.some((e) => e.data === 'b2'))
  const ready = JSON.parse(got.filter((e) => e.event === 'ready')[1]!.data) as { channels: string[] }
  t.same(ready.channels, ['b'], 'the reconnection asked for b')
  t.same(got.slice(got.findIndex((e, i) => i > 0 && e.event === 'ready') + 1).map((e) => e.data), ['b2'], 'and got b2 from its Last-Event-ID, not a2')
  t.same(await client.setChannels({ add: ['c'] }), ['b', 'c'], 'the new stream is changed with its own key')
  client.close()
  await t.rejects(client.setChannels({ add: ['d'] }), /no stream is open/, 'closed: rejected')

  async function expect(f: () => boolean): Promise<void> {
    for (let i = 0; i < 300 && !f(); i++) await sleep(10)
    if (!f()) throw new Error(`not yet: ${JSON.stringify(got)}`)
  }
})

// ------------------------------------------------------------------ a page-flip storm, small

t.test('a page-flip storm: 200 streams each changing channels 5 times while events are published: every stream, cut at its changes, has exactly its sets\' events', async (t) => {
  const r = await startServer(t, { history: 10_000 })
  const random = rng(24)
  const pages = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5']
  const readers: EventReader[] = []
  for (let i = 0; i < 200; i += 50) readers.push(...(await Promise.all(Array.from({ length: 50 }, (_, k) => EventReader.open(r.port, `/events/${TOKEN}?channel=news&channel=${pages[(i + k) % 6]}`)))))
  t.teardown(() => readers.forEach((x) => x.close()))
  const published: Pub[] = []
  let publishing = true
  const publisher = (async () => {
    for (let n = 0; publishing; n++) {
      const channel = n % 3 === 0 ? 'news' : pages[n % 6]!
      const a = await publish(r.base, `channel=${channel}`, `${channel} ${n}`)
      published.push({ id: Number(a.json.id), channel })
    }
  })()
  const failures: string[] = []
  await Promise.all(
    readers.map(async (x) => {
      for (let k = 0; k < 5; k++) {
        await sleep(Math.floor(random() * 40))
        const now = JSON.parse(x.after.filter((e) => e.event === 'channels').at(-1)?.data ?? x.events[0]!.data).channels as string[]
        const page = now.find((c) => c !== 'news')!
        const to = pages[Math.floor(random() * 6)]!
        const a = await change(r.port, x, to === page ? {} : { add: [to], remove: [page] })
        if (a.status !== 200) failures.push(`${x.client}: ${a.status} ${a.body}`)
      }
    }),
  )
  publishing = false
  await publisher
  const fence = await publish(r.base, '', 'fence')
  for (const x of readers) await x.until(() => x.after.at(-1)?.data === 'fence', 10_000, 'the fence')
  t.same(failures, [], 'every change: 200')
  t.ok(published.length > 50, `${published.length} events published meanwhile`)
  const problems = readers.flatMap((x) => cutProblems(published, segments(x, (e) => e.data === 'fence')).map((p) => `stream ${x.client}: ${p}`))
  t.same(problems, [], 'each stream: the events of each of its sets between its changes, no gap, no duplicate')
  t.ok(readers.every((x) => x.after.filter((e) => e.event === 'channels').length === 5), 'five channels events each')
  t.equal(fence.json.delivered, 200)
  const stats = r.server.stats()
  t.equal(Object.values(stats.channels).reduce((a, b) => a + b, 0), 400, 'the counts: two channels per stream')
  t.equal(stats.channels.news, 200)
})

t.test('a stream that opens between two events queued in one turn gets the second (the events before it go out as a fan-out of their own)', async (t) => {
  // The first event is queued in the very turn the stream opens, just before it joins: a bus whose
  // nextClientId (asked by the opening stream) delivers it then.
  class EarlyBus extends LocalBus {
    held: BusNode | null = null
    early: (() => void) | null = null
    override attach(node: BusNode): void {
      super.attach(node)
      this.held = node
    }
    override nextClientId(): number {
      this.early?.()
      this.early = null
      return super.nextClientId()
    }
  }
  const bus = new EarlyBus()
  const { server, port } = await startServer(t, { bus })
  bus.early = () => bus.held!.deliver({ message: { data: 'before', id: 'x1' }, target: { channel: 'a' }, keep: true })
  server.once('connect', () => server.publish('a', { data: 'after', id: 'x2' })) // the same turn, once it has joined
  const s = await EventReader.open(port, `/events/${TOKEN}?channel=a`)
  await s.until(() => s.after.length >= 1, 3000, 'an event')
  await sleep(50)
  t.same(s.after.map((e) => e.data), ['after'], 'not the event from before it opened; the one after it')
  s.close()
})
