// Who is connected where (src/server/bus/presence.ts) and the counts under it
// (src/server/fanout/counts.ts): what a target reaches, a channel's and a user's 0↔1 edges for
// the whole cluster, a node's snapshot applied as a difference (a user who stays connected never
// goes offline in between), and a worker's message that closes and reopens one stream id.

import t from 'tap'
import { Counts } from '../src/server/fanout/counts.js'
import { Presence, StreamNews } from '../src/server/bus/presence.js'
import type { StreamFacts } from '../src/server/bus/wire.js'
import { ClusterPrimary } from '../src/server/bus/workers/primary.js'

const stream = (id: number, user: string | null, channels: string[], roles: string[] = []): StreamFacts => ({ id, user, roles, channels })

/** What a Redis node read of the others' snapshots in one exchange: node → its streams. */
const snapshots = (...nodes: Array<[string, StreamFacts[]]>): Map<string, StreamFacts[]> => new Map(nodes)

/** A presence whose edges are written down as `+user:ann`, `-channel:news`. */
function watched<N>(): { presence: Presence<N>; edges: string[] } {
  const presence = new Presence<N>()
  const edges: string[] = []
  presence.watch((kind, name, present) => edges.push(`${present ? '+' : '-'}${kind}:${name}`))
  return { presence, edges }
}

t.test('counts: a channel or a user is told when it goes from no stream to one and back, not in between', async (t) => {
  const counts = new Counts()
  const edges: string[] = []
  counts.onEdge = (kind, name, present) => edges.push(`${present ? '+' : '-'}${kind}:${name}`)
  const a = stream(1, 'ann', ['news', 'chat'])
  const b = stream(2, 'ann', ['news'])
  counts.add(a)
  counts.add(b)
  t.same(edges, ['+channel:news', '+channel:chat', '+user:ann'], 'the first stream of each, once')
  t.same([counts.channel('news'), counts.channel('chat'), counts.hasUser('ann')], [2, 1, true])
  counts.remove(a)
  t.same(edges.slice(3), ['-channel:chat'], 'ann and news keep a stream: only chat goes')
  counts.remove(b)
  t.same(edges.slice(4), ['-channel:news', '-user:ann'])
  counts.remove(b)
  t.same(edges.length, 6, 'removing what is not counted tells nothing')
  t.same(counts.channels(), {}, 'and leaves no zero behind')
})

t.test('counts: what a target reaches when the counts alone say it; -1 when the streams must be looked at', async (t) => {
  const counts = new Counts()
  counts.add(stream(1, 'ann', ['news']))
  counts.add(stream(2, null, ['news', 'chat']))
  t.same(
    [{}, { channel: 'news' }, { channel: 'sport' }, { user: 'ann' }, { user: 'bob' }, { role: 'admin' }, { client: 1 }, { channel: 'news', user: 'ann' }].map((target) => counts.reach(target, 2)),
    [2, 2, 0, 1, 0, -1, -1, -1],
  )
})

t.test('presence: what a target reaches in the cluster, who holds a stream, who is online', async (t) => {
  const presence = new Presence<string>()
  presence.set('a', stream(1, 'ann', ['news'], ['admin']))
  presence.set('a', stream(2, 'bob', ['news', 'chat']))
  presence.set('b', stream(3, 'ann', ['chat']))
  t.equal(presence.size, 3)
  t.same(presence.channels(), { news: 2, chat: 2 })
  const targets = [{}, { channel: 'chat' }, { user: 'ann' }, { role: 'admin' }, { client: 3 }, { client: 3, channel: 'news' }, { channel: 'chat', user: 'ann' }, { client: 9 }]
  t.same(
    targets.map((target) => presence.count(target)),
    [3, 2, 2, 1, 1, 0, 1, 0],
  )
  t.same([presence.nodeOf(3), presence.nodeOf(9)], ['b', undefined])
  t.same([presence.userOnline('bob'), presence.userOnline('eve')], [true, false])
  t.same(
    presence.streamsOf('a').map((s) => s.id),
    [1, 2],
  )
  presence.nodeGone('a')
  t.same([presence.size, presence.userOnline('bob'), presence.count({ user: 'ann' })], [1, false, 1], 'a node gone takes its streams with it')
})

t.test('presence: edges are the whole cluster’s: a user on two nodes goes offline with the last of its streams', async (t) => {
  const { presence, edges } = watched<string>()
  presence.set('a', stream(1, 'ann', ['news']))
  presence.set('b', stream(2, 'ann', ['news']))
  presence.delete(1)
  t.same(edges, ['+channel:news', '+user:ann'], 'ann still has a stream on b')
  presence.nodeGone('b')
  t.same(edges, ['+channel:news', '+user:ann', '-channel:news', '-user:ann'])
})

t.test('presence: a snapshot read again is applied as a difference: a user who closed one stream and opened another stays online', async (t) => {
  const { presence, edges } = watched<string>()
  presence.replace(snapshots(['b', [stream(1, 'ann', ['news']), stream(2, 'bob', ['chat'])]]))
  t.same(edges, ['+channel:news', '+user:ann', '+channel:chat', '+user:bob'])
  edges.length = 0

  // The same snapshot again (another version, nothing of these streams changed): nothing moves.
  presence.replace(snapshots(['b', [stream(2, 'bob', ['chat']), stream(1, 'ann', ['news'])]]))
  t.same(edges, [], 'no stream dropped and added again')

  // Ann reconnected between two snapshots: stream 1 gone, stream 3 new. She never goes offline.
  presence.replace(snapshots(['b', [stream(2, 'bob', ['chat']), stream(3, 'ann', ['news'])]]))
  t.same(edges, [], 'ann stays online, news keeps a stream')
  t.same([presence.nodeOf(1), presence.nodeOf(3), presence.count({ user: 'ann' })], [undefined, 'b', 1])

  // Bob's stream now on chat and sport (its channels changed): only sport is new, bob stays.
  presence.replace(snapshots(['b', [stream(2, 'bob', ['sport', 'chat']), stream(3, 'ann', ['news'])]]))
  t.same(edges, ['+channel:sport'])
  t.same(presence.channels(), { news: 1, chat: 1, sport: 1 })

  // Everyone gone from b's snapshot.
  edges.length = 0
  presence.replace(snapshots(['b', []]))
  t.same(edges.sort(), ['-channel:chat', '-channel:news', '-channel:sport', '-user:ann', '-user:bob'])
  t.equal(presence.size, 0)
})

t.test('presence: snapshots of one exchange are applied together: a user whose stream moved to another node, or off a node that died, stays online', async (t) => {
  const { presence, edges } = watched<string>()
  presence.replace(snapshots(['a', [stream(1, 'ann', ['news'])]], ['b', []]))
  edges.length = 0
  // a's snapshot (read first) no longer has ann; b's (read second) has her new stream.
  presence.replace(snapshots(['a', []], ['b', [stream(2, 'ann', ['news'])]]))
  t.same(edges, [], 'moved from a to b: no edge')
  t.same([presence.nodeOf(1), presence.nodeOf(2)], [undefined, 'b'])
  // b is killed (its snapshot expires); ann was already back on a.
  presence.replace(snapshots(['a', [stream(3, 'ann', ['news'])]]), ['b'])
  t.same(edges, [], 'b gone, ann on a: no edge')
  t.same([presence.size, presence.nodeOf(3), presence.count({ user: 'ann' })], [1, 'a', 1])
  presence.replace(snapshots(), ['a'])
  t.same(edges, ['-channel:news', '-user:ann'], 'the last node holding her gone: offline')
})

t.test('closed, then opened again under one id in one turn: the primary keeps the stream, with its new facts, and no edge flaps', async (t) => {
  const primary = new ClusterPrimary({ history: 10, historyBytes: 1 << 20, lastEventId: 0, maxEventBytes: 1 << 16 })
  t.teardown(() => primary.leave(1))
  const { presence } = primary
  const edges: string[] = []
  presence.watch((kind, name, present) => edges.push(`${present ? '+' : '-'}${kind}:${name}`))
  const news = new StreamNews() // what a worker tells its primary once per turn
  news.opened(stream(7, 'ann', ['news']))
  primary.onMessage(1, { t: 'presence', ...news.take() })
  t.same(edges, ['+channel:news', '+user:ann'])

  news.closed(7)
  news.opened(stream(7, 'ann', ['news', 'chat']))
  const told = news.take()
  t.same(told, { opened: [stream(7, 'ann', ['news', 'chat'])], closed: [] }, 'the turn’s last word for 7: its new facts')
  primary.onMessage(1, { t: 'presence', ...told })
  t.same([presence.size, presence.nodeOf(7), presence.channels()], [1, 1, { news: 1, chat: 1 }], 'stream 7 is there, on news and chat')
  t.same(edges, ['+channel:news', '+user:ann', '+channel:chat'], 'ann and news never went offline')

  // Opened and closed in one turn: told as closed, so the primary never counts it.
  news.opened(stream(8, 'bob', ['news']))
  news.closed(8)
  primary.onMessage(1, { t: 'presence', ...news.take() })
  t.same([presence.size, presence.userOnline('bob')], [1, false])

  // A message that names one id in both lists (not what a worker sends) ends with the stream open.
  primary.onMessage(1, { t: 'presence', opened: [stream(7, 'ann', ['chat'])], closed: [7] })
  t.same([presence.size, presence.channels(), presence.count({ user: 'ann' })], [1, { chat: 1 }, 1])
  primary.onMessage(1, { t: 'presence', opened: [], closed: [7] })
  t.same([presence.size, presence.userOnline('ann')], [0, false])
})
