// `tag=channel` (docs/wire.md "Tagged streams"): on a stream that asks for it, each event published
// to a channel carries `channel: NAME\n` first, in the same chunk, however it reaches the stream
// (live, one turn's batch, a write to one client, a blocked stream's backlog, a Last-Event-ID or a
// live channels `since` replay, HTTP/1.0, --workers, --redis); every other byte, and every byte of
// a stream that does not ask, as before. Real sockets, exact bytes.

import t from 'tap'
import type { Socket } from 'node:net'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import type { ClientView, SseServer } from '../src/index.js'
import { afterReady, chunk, clientId, countWrites, ev, openStream, parseResponse, publish, rawRequest, RawClient, requestAlone, sleep, startServer, streamKey, TOKEN } from './helpers.js'
import { postChannels } from './live.js'
import { canRun } from './needs.js'
import { startCli, until } from './process.js'
import { redisMissing, startRedis } from './redis-server.js'

const FILE = 'test/channel-tag.test.ts'
const ANN = { token: 'ann', user: 'ann', roles: ['staff'] }

/** The chunk of an event published to `channel`, on a tagged stream: the tag line, then what every stream gets. */
function tagged(channel: string, id: string | number, data: string, event?: string): string {
  return chunk(`channel: ${channel}\nid: ${id}\n${event === undefined ? '' : `event: ${event}\n`}data: ${data}\n\n`)
}

const CHANNELS = (channels: readonly string[]): string => chunk(`event: channels\ndata: ${JSON.stringify({ channels })}\n\n`)
const RESET = chunk('event: reset\ndata: {"reason":"history-gap"}\n\n')

/** One published event as the expectations need it: whom it went to and what it was. */
interface Pub {
  id: number
  data: string
  event?: string
  channel?: string
  user?: string
  client?: number
}

/** What a stream on `channels` (of `user`, stream id `client`) gets of `pubs`, in its framing. */
function expected(pubs: readonly Pub[], s: { channels: string[]; user?: string; client?: number; tag: boolean; chunked?: boolean }): string {
  let out = ''
  for (const p of pubs) {
    if (p.channel !== undefined && !s.channels.includes(p.channel)) continue
    if (p.user !== undefined && p.user !== s.user) continue
    if (p.client !== undefined && p.client !== s.client) continue
    const text = `${s.tag && p.channel !== undefined ? `channel: ${p.channel}\n` : ''}id: ${p.id}\n${p.event === undefined ? '' : `event: ${p.event}\n`}data: ${p.data}\n\n`
    out += s.chunked === false ? text : chunk(text)
  }
  return out
}

/** A chunked body back to its text (what a browser's fetch reader sees). */
function unchunk(body: string): string {
  let text = ''
  for (let at = 0; at < body.length; ) {
    const line = body.indexOf('\r\n', at)
    const size = parseInt(body.slice(at, line), 16)
    text += body.slice(line + 2, line + 2 + size)
    at = line + 2 + size + 2
  }
  return text
}

/** The events an EventSource-conformant parser (eventsource-parser) reads from `text`. */
function parsed(text: string): Array<Pick<EventSourceMessage, 'id' | 'event' | 'data'>> {
  const out: Array<Pick<EventSourceMessage, 'id' | 'event' | 'data'>> = []
  const p = createParser({ onEvent: (e) => out.push({ id: e.id, event: e.event, data: e.data }) })
  p.feed(text)
  return out
}

/** The server's Stream for each stream id, as the `connect` listener sees it (for its `blocked` and its socket). */
function streamsOf(server: SseServer): Map<number, ClientView & { blocked: boolean; socket: Socket }> {
  const m = new Map<number, ClientView & { blocked: boolean; socket: Socket }>()
  server.on('connect', (c: ClientView) => m.set(c.id, c as ClientView & { blocked: boolean; socket: Socket }))
  return m
}

t.test('a tagged stream gets `channel: NAME` first on events published to a channel and only on those; an untagged one beside it, the bytes it always got', async (t) => {
  const r = await startServer(t, { users: [ANN] })
  const tag = await openStream(r.port, '/events/ann?channel=a&channel=b&tag=channel')
  const plain = await openStream(r.port, '/events/ann?channel=a&channel=b')
  t.teardown(() => [tag, plain].forEach((c) => c.close()))
  t.same(parseResponse(tag.received).headLines, parseResponse(plain.received).headLines, 'the same response head')
  const tagId = clientId(tag)
  const plainId = clientId(plain)

  // One publish per request: each is a fan-out of its own, or a write to one client.
  const sends: Array<[string, string]> = [
    ['channel=a', 'a1'],
    ['channel=b&event=x', 'b1'],
    ['', 'all'],
    ['user=ann', 'to ann'],
    ['role=staff', 'staff only'],
    [`client=${tagId}`, 'just tagged'],
    [`client=${plainId}`, 'just plain'],
    ['channel=a&user=ann', 'a to ann'],
    ['channel=c', 'nobody'],
    [`channel=b&client=${tagId}`, 'b to tagged'],
  ]
  for (const [q, data] of sends) t.equal((await publish(r.base, q, data)).status, 200, `publish ${q || '(everyone)'}`)

  const wantTagged =
    tagged('a', 1, 'a1') + tagged('b', 2, 'b1', 'x') + ev('3', 'all') + ev('4', 'to ann') + ev('5', 'staff only') + ev('6', 'just tagged') + tagged('a', 8, 'a to ann') + tagged('b', 10, 'b to tagged')
  const wantPlain = ev('1', 'a1') + ev('2', 'b1', 'x') + ev('3', 'all') + ev('4', 'to ann') + ev('5', 'staff only') + ev('7', 'just plain') + ev('8', 'a to ann')
  await tag.waitFor((s) => s.endsWith(tagged('b', 10, 'b to tagged')))
  await plain.waitFor((s) => s.endsWith(ev('8', 'a to ann')))
  await sleep(50) // nothing more comes
  t.equal(afterReady(tag), wantTagged, 'tagged: the tag line first only on the events published to a channel, each chunk sized with it')
  t.equal(afterReady(plain), wantPlain, 'untagged: byte for byte what it always got')

  // An EventSource reads the same events from both: it ignores the field it does not know.
  const read = parsed(unchunk(afterReady(tag)))
  t.same(
    read.map((e) => [e.id, e.event, e.data]),
    [
      ['1', undefined, 'a1'],
      ['2', 'x', 'b1'],
      ['3', undefined, 'all'],
      ['4', undefined, 'to ann'],
      ['5', undefined, 'staff only'],
      ['6', undefined, 'just tagged'],
      ['8', undefined, 'a to ann'],
      ['10', undefined, 'b to tagged'],
    ],
    'eventsource-parser reads the tagged stream as plain events',
  )
})

t.test('heartbeats, the time tick and the last retry: at shutdown are never tagged', async (t) => {
  const r = await startServer(t, { heartbeatMs: 50, tickMs: 50 })
  const tag = await openStream(r.port, `/events/${TOKEN}?tag=channel`)
  t.teardown(() => tag.close())
  await tag.waitFor((s) => s.includes('3\r\n:\n\n\r\n') && s.includes('event: time\n'))
  r.server.publish('default', { data: 'd1' })
  await tag.waitFor('data: d1\n')
  await r.server.stop()
  await tag.waitClosed()
  const body = afterReady(tag)
  t.match(body, /^(?:3\r\n:\n\n\r\n|[0-9a-f]+\r\nevent: time\ndata: [^\n]+\n\n\r\n|[0-9a-f]+\r\nchannel: default\nid: 1\ndata: d1\n\n\r\n)+[0-9a-f]+\r\nretry: \d+\n\n\r\n0\r\n\r\n$/, 'heartbeats, ticks, the one tagged event, then retry: and the last chunk')
  t.equal(body.split('channel: ').length - 1, 1, 'one tag line: the published event\'s')
})

t.test('a Last-Event-ID replay is tagged as the live events are; a reset is not', async (t) => {
  const r = await startServer(t, { users: [ANN] })
  const pubs: Pub[] = [
    { id: 1, data: 'a1', channel: 'a' },
    { id: 2, data: 'b1', channel: 'b', event: 'x' },
    { id: 3, data: 'all' },
    { id: 4, data: 'c1', channel: 'c' },
    { id: 5, data: 'to ann', user: 'ann' },
    { id: 6, data: 'a to ann', channel: 'a', user: 'ann' },
  ]
  for (const p of pubs) {
    const target = { ...(p.channel === undefined ? {} : { channel: p.channel }), ...(p.user === undefined ? {} : { user: p.user }) }
    r.server.publishEvent({ data: p.data, ...(p.event === undefined ? {} : { event: p.event }) }, target)
  }
  const back = await openStream(r.port, '/events/ann?channel=a&channel=b&tag=channel', { 'Last-Event-ID': '1' })
  const plain = await openStream(r.port, '/events/ann?channel=a&channel=b', { 'Last-Event-ID': '1' })
  const lost = await openStream(r.port, '/events/ann?channel=a&tag=channel&lastEventId=nowhere')
  t.teardown(() => [back, plain, lost].forEach((c) => c.close()))
  r.server.publish('a', { data: 'a2' })
  pubs.push({ id: 7, data: 'a2', channel: 'a' })
  const me = { channels: ['a', 'b'], user: 'ann' }
  await back.waitFor((s) => s.endsWith(tagged('a', 7, 'a2')))
  await plain.waitFor((s) => s.endsWith(ev('7', 'a2')))
  await lost.waitFor((s) => s.endsWith(tagged('a', 7, 'a2')))
  t.equal(afterReady(back), expected(pubs.slice(1), { ...me, tag: true }), 'the replay after 1, then live: tagged where published to a channel')
  t.equal(afterReady(plain), expected(pubs.slice(1), { ...me, tag: false }), 'the untagged replay as before')
  t.equal(afterReady(lost), RESET + tagged('a', 7, 'a2'), 'reset untagged, then live tagged')
})

t.test('an HTTP/1.0 tagged stream gets the tagged text with no chunk framing, replay and live', async (t) => {
  const r = await startServer(t)
  r.server.publish('a', { data: 'a1' })
  r.server.broadcast({ data: 'all' })
  const c = await RawClient.open(r.port)
  t.teardown(() => c.close())
  c.write(`GET /events/${TOKEN}?channel=a&tag=channel HTTP/1.0\r\nLast-Event-ID: 0\r\n\r\n`)
  await c.waitFor('data: all\n\n')
  r.server.publish('a', { data: 'a2', event: 'x' })
  r.server.publish('b', { data: 'b1' })
  r.server.broadcast({ data: 'end' })
  await c.waitFor('data: end\n\n')
  const res = parseResponse(c.received)
  t.equal(res.headers['transfer-encoding'], undefined, 'no chunked coding')
  t.equal(res.headers.connection, 'close')
  const m = /^retry: \d+\nevent: ready\ndata: [^\n]+\n\n/.exec(res.body)
  t.ok(m, 'ready first, bare')
  t.equal(res.body.slice(m![0].length), 'channel: a\nid: 1\ndata: a1\n\nid: 2\ndata: all\n\nchannel: a\nid: 3\nevent: x\ndata: a2\n\nid: 5\ndata: end\n\n', 'the replay and the live events, tagged where published to a channel')
})

t.test('a blocked tagged stream gets every event it was owed, tagged, in order, no gap, once it reads', async (t) => {
  const r = await startServer(t, { maxBufferBytes: 64 * 1024 * 1024, users: [ANN] })
  const streams = streamsOf(r.server)
  const slow = await openStream(r.port, '/events/ann?channel=a&channel=b&tag=channel')
  const fast = await openStream(r.port, '/events/ann?channel=a&channel=b')
  t.teardown(() => [slow, fast].forEach((c) => c.close()))
  const slowId = clientId(slow)
  const stream = streams.get(slowId)!
  const [slowBase, fastBase] = [slow.received.length, fast.received.length]
  slow.socket.pause()

  const big = 'x'.repeat(16 * 1024)
  const pubs: Pub[] = []
  let id = 0
  // Publishes a turn's worth of events: to a, to b, to c (neither stream), to everyone.
  const burst = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const channel = [undefined, 'a', 'b', 'c'][id % 4]
      const p: Pub = { id: ++id, data: `${id}:${big}` }
      if (channel !== undefined) p.channel = channel
      pubs.push(p)
      if (channel === undefined) r.server.broadcast({ data: p.data })
      else r.server.publish(channel, { data: p.data })
    }
  }
  // Until the kernel's buffers are full and the server keeps what the stream is owed.
  for (let turns = 0; !stream.blocked; turns++) {
    if (turns > 2000) throw new Error('the stream never blocked')
    burst(8)
    await sleep(1)
  }
  const blockedAt = id
  // Owed now, from the backlog: several fan-outs (a burst over one set of 30), and writes to it alone.
  for (let k = 0; k < 5; k++) {
    burst(40)
    const p: Pub = { id: ++id, data: `to it alone ${id}`, channel: 'a', client: slowId }
    pubs.push(p)
    r.server.publishEvent({ data: p.data }, { channel: 'a', client: slowId })
    await sleep(5)
  }
  t.ok(stream.blocked, `still blocked (it blocked at event ${blockedAt}; ${id} published)`)
  const me = { channels: ['a', 'b'], user: 'ann', tag: true, client: slowId }
  const want = expected(pubs, me)
  const wantFast = expected(pubs, { ...me, tag: false, client: -1 })
  slow.socket.resume()
  // By length (a test on the text would copy megabytes at every read), and saying so, not the text, when it fails.
  await until(() => slow.received.length >= slowBase + want.length, () => `${want.length} bytes owed; ${slow.received.length - slowBase} came`, 30_000)
  await until(() => fast.received.length >= fastBase + wantFast.length, () => `${wantFast.length} bytes; ${fast.received.length - fastBase} came`, 10_000)
  await sleep(50) // nothing more comes
  t.equal(r.server.stats().drops.buffer, 0, 'not dropped')
  const got = afterReady(slow)
  t.equal(got.length, want.length, 'every byte owed, nothing more')
  t.ok(got === want, 'every event tagged, in order, no gap, no duplicate')
  t.ok(afterReady(fast) === wantFast, 'the untagged stream beside it: its events, untagged')
})

t.test('live channels: a channel added with since on a tagged stream replays its events tagged; channels and reset are not', async (t) => {
  const r = await startServer(t)
  const s = await openStream(r.port, `/events/${TOKEN}?channel=a&tag=channel`)
  t.teardown(() => s.close())
  r.server.publish('a', { data: 'a0' }) // 1
  r.server.publish('c', { data: 'c1' }) // 2
  r.server.publish('b', { data: 'b1' }) // 3
  r.server.publish('c', { data: 'c2', event: 'x' }) // 4
  await s.waitFor(tagged('a', 1, 'a0'))
  const res = await postChannels(r.port, clientId(s), JSON.stringify({ add: ['c'], since: '1' }), streamKey(s))
  t.same([res.status, res.json], [200, { channels: ['a', 'c'] }])
  r.server.publish('c', { data: 'c3' }) // 5
  await s.waitFor(tagged('c', 5, 'c3'))
  const lost = await postChannels(r.port, clientId(s), JSON.stringify({ add: ['b'], since: 'nowhere' }), streamKey(s))
  t.equal(lost.status, 200)
  r.server.publish('b', { data: 'b2' }) // 6
  await s.waitFor(tagged('b', 6, 'b2'))
  t.equal(
    afterReady(s),
    tagged('a', 1, 'a0') + CHANNELS(['a', 'c']) + tagged('c', 2, 'c1') + tagged('c', 4, 'c2', 'x') + tagged('c', 5, 'c3') + CHANNELS(['a', 'c', 'b']) + RESET + tagged('b', 6, 'b2'),
  )
})

t.test('events published in one turn reach tagged and untagged streams on different channel sets: each exactly its own, with the right tags', async (t) => {
  const r = await startServer(t, { users: [ANN] })
  const writes = countWrites(r.server)
  const specs = {
    tagAB: { path: `/events/${TOKEN}?channel=a&channel=b&tag=channel`, channels: ['a', 'b'], tag: true },
    tagB: { path: `/events/${TOKEN}?channel=b&tag=channel`, channels: ['b'], tag: true },
    plainAB: { path: `/events/${TOKEN}?channel=a&channel=b`, channels: ['a', 'b'], tag: false },
    plainA: { path: `/events/${TOKEN}?channel=a`, channels: ['a'], tag: false },
    annBC: { path: '/events?channel=b&channel=c&tag=channel', channels: ['b', 'c'], tag: true, user: 'ann', headers: { Authorization: 'Bearer ann' } },
  }
  const open: Record<string, RawClient> = {}
  const base: Record<string, number> = {}
  for (const [name, s] of Object.entries(specs)) {
    open[name] = await openStream(r.port, s.path, 'headers' in s ? s.headers : {})
    base[name] = open[name].received.length
  }
  const old = await RawClient.open(r.port)
  old.write(`GET /events/${TOKEN}?channel=a&tag=channel HTTP/1.0\r\n\r\n`)
  await old.waitFor('event: ready\n')
  t.teardown(() => [...Object.values(open), old].forEach((c) => c.close()))
  for (const k of writes.keys()) writes.set(k, 0)

  const pubs: Pub[] = [
    { id: 1, data: 'a1', channel: 'a' },
    { id: 2, data: 'b1', channel: 'b' },
    { id: 3, data: 'all' },
    { id: 4, data: 'to ann', user: 'ann' },
    { id: 5, data: 'c1', channel: 'c' },
    { id: 6, data: 'a2', channel: 'a', event: 'x' },
    { id: 7, data: 'b to ann', channel: 'b', user: 'ann' },
  ]
  const send = (p: Pub): void => {
    const target = { ...(p.channel === undefined ? {} : { channel: p.channel }), ...(p.user === undefined ? {} : { user: p.user }) }
    r.server.publishEvent({ data: p.data, ...(p.event === undefined ? {} : { event: p.event }) }, target)
  }
  pubs.forEach(send)
  const last = (name: keyof typeof specs, list: readonly Pub[]): string => {
    const s = specs[name]
    return expected(list, { channels: s.channels, tag: s.tag, ...('user' in s ? { user: s.user } : {}) })
  }
  for (const name of Object.keys(specs) as Array<keyof typeof specs>) {
    const want = last(name, pubs)
    await open[name]!.waitFor((x) => x.endsWith(want))
    t.equal(afterReady(open[name]!), want, `${name}: exactly its events, tagged: ${specs[name].tag}`)
    t.equal(writes.get(clientId(open[name]!)), 1, `${name}: the burst in one write`)
  }

  // A burst over two sets (30 events a set) on top: the shares of each set, per framing.
  const more: Pub[] = []
  for (let id = 8; id < 8 + 45; id++) {
    const channel = ['a', 'b', 'c', undefined][id % 4]
    more.push({ id, data: `n${id}`, ...(channel === undefined ? {} : { channel }), ...(id % 7 === 0 ? { user: 'ann' } : {}) })
  }
  more.forEach(send)
  const all = [...pubs, ...more]
  for (const name of Object.keys(specs) as Array<keyof typeof specs>) {
    const want = last(name, all)
    await open[name]!.waitFor((x) => x.length >= base[name]! + want.length)
    t.equal(afterReady(open[name]!), want, `${name}: the long burst too`)
  }
  const want10 = expected(all, { channels: ['a'], tag: true, chunked: false })
  await old.waitFor((x) => x.endsWith(want10))
  t.equal(old.received.slice(old.received.length - want10.length), want10, 'the HTTP/1.0 tagged stream: its events, tagged, unframed')
})

t.test('tag with another value, or given twice, is a 400; the server serves the next client', async (t) => {
  const r = await startServer(t)
  const refusal = (message: string): string =>
    `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${message.length + 1}\r\nConnection: close\r\n\r\n${message}\n`
  for (const q of ['tag=other', 'tag=', 'tag=Channel', 'channel=a&tag=channels']) {
    t.equal(await rawRequest(r.port, `GET /events/${TOKEN}?${q} HTTP/1.1\r\nHost: x\r\n\r\n`), refusal('tag must be "channel"'), q)
  }
  t.equal(await rawRequest(r.port, `GET /events/${TOKEN}?tag=channel&channel=a&tag=channel HTTP/1.1\r\nHost: x\r\n\r\n`), refusal('tag given more than once'), 'twice')
  t.equal(r.server.clientCount, 0, 'no stream opened')
  const s = await openStream(r.port, `/events/${TOKEN}?channel=a&tag=channel`)
  t.teardown(() => s.close())
  r.server.publish('a', { data: 'after' })
  await s.waitFor(tagged('a', 1, 'after'))
  t.equal(afterReady(s), tagged('a', 1, 'after'), 'another client still gets its event')
})

const SUB = 'sub-token'
const PUB_TOKEN = 'pub-token'
const QUIET = ['--token', SUB, '--publish-token', PUB_TOKEN, '--tick', '0', '--heartbeat', '0', '--log', 'off']

/** Publishes `sends` one request each (a connection each: a primary hands them round the workers); the ids, in order. */
async function publishAll(ports: readonly number[], sends: ReadonlyArray<[string, string]>): Promise<string[]> {
  const ids: string[] = []
  for (const [i, [q, data]] of sends.entries()) {
    const a = await requestAlone(ports[i % ports.length]!, 'POST', `/publish${q === '' ? '' : '?' + q}`, data, PUB_TOKEN)
    if (a.status !== 200) throw new Error(`publish ${q}: ${a.status} ${a.body}`)
    ids.push(String(a.json!.id))
  }
  return ids
}

const CLUSTER_SENDS: ReadonlyArray<[string, string]> = [
  ['channel=a', 'a1'],
  ['', 'all'],
  ['channel=b&event=x', 'b1'],
  ['channel=c', 'c1'],
  ['channel=a', 'a2'],
  ['channel=b', 'b2'],
]

/** What a tagged (or not) stream on a and b gets of CLUSTER_SENDS with these ids. */
function clusterWant(ids: readonly string[], tag: boolean): string {
  const [a1, all, b1, , a2, b2] = ids
  const t = (ch: string, id: string, data: string, event?: string): string => (tag ? tagged(ch, id, data, event) : ev(id, data, event))
  return t('a', a1!, 'a1') + ev(all!, 'all') + t('b', b1!, 'b1', 'x') + t('a', a2!, 'a2') + t('b', b2!, 'b2')
}

t.test('--workers 2: tagged streams on either worker get tagged events, however published; a replay there too', async (t) => {
  const cli = await startCli(t, ['--port', '0', '--workers', '2', ...QUIET])
  // Each on a connection of its own: the primary hands them to the workers in turn.
  const tags: RawClient[] = []
  const workerOf = (c: RawClient): number => Math.floor((clientId(c) - 1) / (1 << 16))
  while (tags.length < 2 || (new Set(tags.map(workerOf)).size < 2 && tags.length < 8)) tags.push(await openStream(cli.port, `/events/${SUB}?channel=a&channel=b&tag=channel`))
  const plain = await openStream(cli.port, `/events/${SUB}?channel=a&channel=b`)
  t.teardown(() => [...tags, plain].forEach((c) => c.close()))
  t.equal(new Set(tags.map(workerOf)).size, 2, 'tagged streams on both workers')
  const ids = await publishAll([cli.port], CLUSTER_SENDS)
  const want = clusterWant(ids, true)
  for (const c of tags) {
    await c.waitFor((s) => s.endsWith(want.slice(-30)), 10_000)
    t.equal(afterReady(c), want, `stream ${clientId(c)}: tagged`)
  }
  await plain.waitFor((s) => s.endsWith(clusterWant(ids, false).slice(-30)), 10_000)
  t.equal(afterReady(plain), clusterWant(ids, false), 'the untagged stream: as before')
  const back = await openStream(cli.port, `/events/${SUB}?channel=a&channel=b&tag=channel`, { 'Last-Event-ID': ids[0]! })
  t.teardown(() => back.close())
  const rest = want.slice(tagged('a', ids[0]!, 'a1').length)
  await back.waitFor((s) => s.endsWith(rest.slice(-30)), 10_000)
  t.equal(afterReady(back), rest, 'a Last-Event-ID replay on a worker: tagged')
})

if (canRun(t, FILE, 'the Redis tests', redisMissing())) {
  t.test('--redis: a tagged stream on one process gets tagged events published through the other', async (t) => {
    const redis = await startRedis(t)
    const [x, y] = await Promise.all([startCli(t, ['--port', '0', '--redis', redis.url, ...QUIET]), startCli(t, ['--port', '0', '--redis', redis.url, ...QUIET])])
    const tag = await openStream(x!.port, `/events/${SUB}?channel=a&channel=b&tag=channel`)
    const plain = await openStream(x!.port, `/events/${SUB}?channel=a&channel=b`)
    t.teardown(() => [tag, plain].forEach((c) => c.close()))
    const ids = await publishAll([y!.port, x!.port], CLUSTER_SENDS)
    const want = clusterWant(ids, true)
    await tag.waitFor((s) => s.endsWith(want.slice(-30)), 10_000)
    t.equal(afterReady(tag), want, 'tagged, published through either process')
    await plain.waitFor((s) => s.endsWith(clusterWant(ids, false).slice(-30)), 10_000)
    t.equal(afterReady(plain), clusterWant(ids, false), 'the untagged stream: as before')
    const back = await openStream(y!.port, `/events/${SUB}?channel=a&channel=b&tag=channel`, { 'Last-Event-ID': ids[0]! })
    t.teardown(() => back.close())
    const rest = want.slice(tagged('a', ids[0]!, 'a1').length)
    await back.waitFor((s) => s.endsWith(rest.slice(-30)), 10_000)
    t.equal(afterReady(back), rest, 'a Last-Event-ID replay on the other process: tagged')
  })
}
