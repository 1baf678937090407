// Live channels across a cluster, as real processes: `--workers 3`, the change asked through a
// worker other than the one holding the stream; two processes on one real redis-server, the
// change asked through the other process. In both, the change lands in the one order of events:
// every event published before it was asked is on the old side, every event published after its
// answer on the new side, and the stream is cut at one place with no gap and no duplicate; the
// cluster's /stats channel counts follow.

import t, { type Test } from 'tap'
import * as net from 'node:net'
import { parseResponse, requestAlone } from './helpers.js'
import { EventReader, channelsData, cutProblems, segments, type Answer, type Pub } from './live.js'
import { canRun } from './needs.js'
import { startCli, until, type Cli } from './process.js'
import { redisMissing, startRedis } from './redis-server.js'

const SUB = 'sub-token'
const PUB = 'pub-token'
const FILE = 'test/live-channels-cluster.test.ts'
/** Stream ids come in blocks of this size, one block per worker (CLIENT_ID_BLOCK, src/server/limits.ts). */
const BLOCK = 1 << 16
const QUIET = ['--token', SUB, '--publish-token', PUB, '--tick', '0', '--heartbeat', '0', '--log', 'off']

/** One request on a connection of its own (so a primary hands each to the next worker). */
async function request(port: number, method: string, target: string, body = '', token = PUB): Promise<Answer> {
  return requestAlone(port, method, target, body, token)
}

/**
 * A change on a fresh connection, then a stream opened on that same connection: the stream's id
 * block names the worker that answered the change.
 */
async function changeAndSee(port: number, s: EventReader, change: object): Promise<{ answer: Answer; worker: number }> {
  const body = JSON.stringify(change)
  const c = net.connect(port, '127.0.0.1')
  let got = ''
  c.setEncoding('latin1').on('data', (d: string) => (got += d))
  c.write(
    `POST /clients/${s.client}/channels HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${s.key}\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
      `GET /events/${SUB}?channel=probe HTTP/1.1\r\nHost: x\r\n\r\n`,
  )
  try {
    await until(() => /event: ready\ndata: \{"client":\d+/.test(got), () => `the answer and the probe stream; got ${JSON.stringify(got)}`, 10_000)
  } finally {
    c.destroy()
  }
  const answer = parseResponse(got.slice(0, got.indexOf('HTTP/1.1 200 OK', 1)))
  const probe = Number(/"client":(\d+)/.exec(got.slice(got.indexOf('event: ready')))![1])
  return { answer: { status: answer.status, headers: answer.headers, json: JSON.parse(answer.body) as Record<string, unknown>, body: answer.body }, worker: workerOf(probe) }
}

const workerOf = (client: number): number => Math.floor((client - 1) / BLOCK)

/** Every /stats (on each port) says `channels` equals `want` (shared counts are up to 2 s old). */
async function channelsSettle(ports: readonly number[], want: Record<string, number>): Promise<void> {
  let seen: unknown[] = []
  await until(
    async () => {
      seen = await Promise.all(ports.map(async (p) => (await request(p, 'GET', '/stats')).json?.channels))
      const sorted = (c: unknown): string => JSON.stringify(Object.entries((c ?? {}) as object).sort())
      return seen.every((c) => sorted(c) === sorted(want))
    },
    () => `/stats channels ${JSON.stringify(want)}; saw ${JSON.stringify(seen)}`,
    5000,
  )
}

/**
 * Publishes one event at a time on `ports` in turn, on channels a, b, c, d in turn, while `changes`
 * run: each change is asked after the events answered so far (`acked`: the highest id before it
 * was asked) and before the next publish after its answer (`after`). Then: the stream's cut places
 * lie between the two, and each part is exactly its set's events.
 */
async function changesWhilePublishing(t: Test, ports: readonly number[], s: EventReader, changes: Array<() => Promise<Answer>>): Promise<void> {
  const published: Pub[] = []
  /** For each published id, how many changes had been answered when its publish began. */
  const began = new Map<number, number>()
  let answered = 0
  let publishing = true
  let highest = 0
  const publisher = (async () => {
    for (let n = 0; publishing; n++) {
      const channel = 'abcd'[n % 4]!
      const changesBefore = answered
      const a = await request(ports[n % ports.length]!, 'POST', `/publish?channel=${channel}`, `${channel}${n}`)
      if (a.status !== 200) throw new Error(`publish: ${a.status} ${a.body}`)
      published.push({ id: Number(a.json!.id), channel })
      began.set(Number(a.json!.id), changesBefore)
      highest = Math.max(highest, Number(a.json!.id))
    }
  })()
  // Should a wait below fail: the publisher stops, and its end is no unhandled rejection.
  t.teardown(() => {
    publishing = false
  })
  publisher.catch(() => {})
  // Eight publishes between two changes, whatever the machine's pace: each part has events of its set (a..d in turn).
  const eightMore = async (): Promise<void> => {
    const from = published.length
    await until(() => published.length >= from + 8, () => `8 publishes (${published.length - from} so far)`, 10_000)
  }
  const acked: number[] = []
  for (const change of changes) {
    await eightMore()
    acked.push(highest)
    const a = await change()
    t.equal(a.status, 200, `the change is made: ${a.body}`)
    answered++
  }
  await eightMore()
  publishing = false
  await publisher
  const fence = await request(ports[0]!, 'POST', '/publish', 'fence')
  await s.until(() => s.after.at(-1)?.data === 'fence', 10_000, 'the fence')
  t.equal(fence.status, 200)
  published.sort((x, y) => x.id - y.id)

  const segs = segments(s, (e) => e.data === 'fence')
  t.equal(segs.length, changes.length + 1, 'one channels event per change')
  t.same(cutProblems(published, segs), [], 'each part: exactly its set\'s events, no gap, no duplicate')
  for (const [k, w] of acked.entries()) {
    // Published after the answer: a publish that began once change k had been answered (one still
    // in flight then may land on either side).
    const after = Math.min(...published.filter((p) => began.get(p.id)! > k).map((p) => p.id))
    const late = segs.slice(k + 1).flatMap((x) => x.ids).filter((id) => id <= w)
    const early = segs.slice(0, k + 1).flatMap((x) => x.ids).filter((id) => id >= after)
    t.same([late, early], [[], []], `change ${k + 1}: nothing published before it was asked came after it (ids to ${w}), nothing published after its answer before it (ids from ${after})`)
  }
  t.ok(segs.every((x) => x.ids.length > 0), `events in every part (${segs.map((x) => x.ids.length).join(', ')})`)
}

t.test('--workers 3: a change asked through a worker that does not hold the stream lands in the one order of events; since replays there; /stats follows', async (t) => {
  const cli: Cli = await startCli(t, ['--port', '0', '--workers', '3', ...QUIET])
  const s = await EventReader.open(cli.port, `/events/${SUB}?channel=a`)
  t.teardown(() => s.close())
  const holder = workerOf(s.client)

  const a1 = await request(cli.port, 'POST', '/publish?channel=a', 'a1')
  const b1 = await request(cli.port, 'POST', '/publish?channel=b', 'b1')
  await s.until(() => s.after.length === 1, 5000, 'a1')
  // Round robin hands each new connection to the next worker: a few tries find one that is not the holder.
  let seen = { answer: null as Answer | null, worker: holder }
  for (let i = 0; i < 6 && seen.worker === holder; i++) seen = await changeAndSee(cli.port, s, { add: ['b'], remove: ['a'], since: String(a1.json!.id) })
  t.not(seen.worker, holder, `the change was answered by worker ${seen.worker}; the stream is on worker ${holder}`)
  t.same([seen.answer!.status, seen.answer!.json], [200, { channels: ['b'] }], '200 with the new set')
  await request(cli.port, 'POST', '/publish?channel=a', 'a2')
  const b2 = await request(cli.port, 'POST', '/publish?channel=b', 'b2')
  await s.until(() => s.after.some((e) => e.id === String(b2.json!.id)), 5000, 'b2')
  const tail = s.after.slice(s.after.findIndex((e) => e.event === 'channels'))
  const changesMade = s.after.filter((e) => e.event === 'channels').length
  t.same(
    s.after.filter((e) => e.event !== 'channels').map((e) => e.data),
    ['a1', 'b1', 'b2'],
    'a1; then (since a1) b1, replayed once however many tries it took; then b2; never a2',
  )
  t.same(tail[0], { id: null, event: 'channels', data: channelsData(['b']) }, 'the channels event first')
  t.ok(changesMade >= 1 && b1.status === 200, `${changesMade} change(s) asked`)
  await channelsSettle([cli.port], { b: 1 })

  // Under way: changes through any worker while events are published through every worker.
  const s2 = await EventReader.open(cli.port, `/events/${SUB}?channel=b`)
  t.teardown(() => s2.close())
  const other = (): Promise<Answer> => changeAndSee(cli.port, s2, flip()).then((x) => x.answer)
  let on = 'b'
  const flip = (): object => {
    const to = on === 'b' ? 'c' : 'b'
    const c = { add: [to], remove: [on] }
    on = to
    return c
  }
  await changesWhilePublishing(t, [cli.port, cli.port, cli.port], s2, [other, other, other, other])
})

if (canRun(t, FILE, 'the Redis tests', redisMissing())) {
  t.test('two processes on one redis-server: a change asked through the other process lands in the one order of events; since replays there; /stats follows', async (t) => {
    const redis = await startRedis(t)
    const [x, y] = await Promise.all([startCli(t, ['--port', '0', '--redis', redis.url, ...QUIET]), startCli(t, ['--port', '0', '--redis', redis.url, ...QUIET])])
    const s = await EventReader.open(x!.port, `/events/${SUB}?channel=a`)
    t.teardown(() => s.close())
    // At once, before the other process has read x's snapshot: it asks every node.
    const first = await request(y!.port, 'POST', `/clients/${s.client}/channels`, JSON.stringify({ add: ['c'] }), s.key)
    t.same([first.status, first.json], [200, { channels: ['a', 'c'] }], 'a stream opened a moment ago on x is changed through y')

    const a1 = await request(y!.port, 'POST', '/publish?channel=a', 'a1')
    const b1 = await request(x!.port, 'POST', '/publish?channel=b', 'b1')
    t.same([a1.status, b1.status], [200, 200], 'a1 and b1 published')
    await s.until(() => s.after.some((e) => e.data === 'a1'), 5000, 'a1')
    const res = await request(y!.port, 'POST', `/clients/${s.client}/channels`, JSON.stringify({ add: ['b'], remove: ['a'], since: String(a1.json!.id) }), s.key)
    t.same([res.status, res.json], [200, { channels: ['c', 'b'] }], 'through y again, with since')
    await request(x!.port, 'POST', '/publish?channel=a', 'a2')
    const b2 = await request(y!.port, 'POST', '/publish?channel=b', 'b2')
    await s.until(() => s.after.some((e) => e.id === String(b2.json!.id)), 5000, 'b2')
    t.same(
      s.after.map((e) => (e.event === 'channels' ? e.data : e.data)),
      [channelsData(['a', 'c']), 'a1', channelsData(['c', 'b']), 'b1', 'b2'],
      'channels, a1, channels, then b1 (since a1), b2; never a2',
    )
    await channelsSettle([x!.port, y!.port], { b: 1, c: 1 })
    t.equal((await request(y!.port, 'POST', `/clients/${s.client}/channels`, '{"add":["d"]}', 'wrong-key-xxxxxxxxxxxx')).status, 401, 'a wrong key through y: 401')
    t.equal((await request(y!.port, 'POST', '/clients/999999/channels', '{"add":["d"]}', PUB)).status, 404, 'a stream nowhere: 404')
    t.equal((await request(y!.port, 'POST', `/clients/${s.client}/channels`, '{"add":["d"]}', PUB)).status, 200, 'an admin token through y')

    const s2 = await EventReader.open(x!.port, `/events/${SUB}?channel=b`)
    t.teardown(() => s2.close())
    let on = 'b'
    const viaY = (): Promise<Answer> => {
      const to = on === 'b' ? 'a' : 'b'
      const body = JSON.stringify({ add: [to], remove: [on] })
      on = to
      return request(y!.port, 'POST', `/clients/${s2.client}/channels`, body, s2.key)
    }
    await changesWhilePublishing(t, [x!.port, y!.port], s2, [viaY, viaY, viaY, viaY])
  })
}
