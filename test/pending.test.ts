// Answers owed for pipelined publishes on a bus that answers later (src/server/http/pending-answers.ts,
// connection.ts), on real processes: a refused request pipelined behind a publish gets its own
// status after the publish's answer, in request order, and the worker lives on (`--workers 2`);
// an answer that Redis keeps waiting (SIGSTOP) is never cut by the keep-alive idle timer.

import t, { type Test } from 'tap'
import { SseServer } from '../src/index.js'
import { KEEP_ALIVE_IDLE_MS } from '../src/server/limits.js'
import { clientId, openStream, parseResponse, rawRequest, RawClient, sleep } from './helpers.js'
import { canRun } from './needs.js'
import { startCli, until, type Cli } from './process.js'
import { redisMissing, startRedis } from './redis-server.js'

const SUB = 'sub-token'
const PUB = 'pub-token'

/** A publish request, keep-alive unless `close`: more may be pipelined behind it. */
function publishRequest(data: string, query = '', close = false): string {
  return `POST /publish${query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(data)}\r\n${close ? 'Connection: close\r\n' : ''}\r\n${data}`
}

/** The whole responses in `raw`, in order (each with a Content-Length), as sent. */
function responses(raw: string): Array<{ status: number; body: string; raw: string }> {
  const out: Array<{ status: number; body: string; raw: string }> = []
  let rest = raw
  while (rest.includes('\r\n\r\n')) {
    const r = parseResponse(rest)
    const headLength = rest.indexOf('\r\n\r\n') + 4
    const end = headLength + Number(r.headers['content-length'] ?? 0)
    if (rest.length < end) break
    out.push({ status: r.status, body: rest.slice(headLength, end), raw: rest.slice(0, end) })
    rest = rest.slice(end)
  }
  return out
}

async function workerPids(port: number): Promise<number[]> {
  const r = parseResponse(await rawRequest(port, `GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nConnection: close\r\n\r\n`))
  return ((JSON.parse(r.body) as { nodes: Array<{ pid: number }> }).nodes ?? []).map((n) => n.pid).sort()
}

async function cluster(t: Test): Promise<{ cli: Cli; streams: RawClient[] }> {
  const cli = await startCli(t, ['--port', '0', '--workers', '2', '--token', SUB, '--publish-token', PUB, '--tick', '0', '--heartbeat', '0', '--log', 'off'])
  // Streams on both workers (each worker draws its ids from its own block of 65 536).
  const streams: RawClient[] = []
  const blocks = new Set<number>()
  for (let i = 0; i < 8 && blocks.size < 2; i++) {
    const c = await openStream(cli.port, `/events/${SUB}`)
    t.teardown(() => c.close())
    streams.push(c)
    blocks.add(Math.floor((clientId(c) - 1) / 65536))
  }
  t.equal(blocks.size, 2, 'streams on both workers')
  return { cli, streams }
}

t.test('--workers 2: a request refused behind a publish in one write gets its status after the publish’s 200, and no worker dies', async (t) => {
  const { cli, streams } = await cluster(t)
  const pids = await workerPids(cli.port)
  t.equal(pids.length, 2, 'two workers')
  const cases: Array<[string, string, RegExp]> = [
    // Refused by its route with an answer of its own (JSON, and the connection may go on).
    ['a publish with a line feed in its event name', publishRequest('bad', '?event=a%0Ab', true), /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*\r\n\r\n\{"error":"event contains CR or LF"\}$/],
    // Refused by the parser: its error waits in line behind the publish's answer.
    ['a head with two different Content-Lengths', 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*Connection: close\r\n\r\n/],
    // Another kind of request waits until every publish before it is answered, then is refused by its route.
    ['a stream with an unknown token', `GET /events/nobody HTTP/1.1\r\nHost: x\r\n\r\n`, /^HTTP\/1\.1 401 Unauthorized\r\nContent-Type: text\/plain; charset=utf-8\r\nContent-Length: 14\r\nConnection: close\r\n\r\nunknown token\n$/],
  ]
  let n = 0
  for (const [what, second, refusal] of cases) {
    // Both workers each time: the primary hands connections to its workers in turn.
    for (let k = 0; k < 2; k++) {
      n++
      const raw = await rawRequest(cli.port, publishRequest(`ok-${n}`) + second, 5000)
      const [first, next, ...more] = responses(raw)
      t.equal(first?.status, 200, `${what} (${k + 1}): the publish first, 200`)
      t.match(next?.raw, refusal, `then ${what} refused`)
      t.same(more, [], 'nothing more')
    }
  }
  t.same(await workerPids(cli.port), pids, 'the same two workers: none died')
  const last = await rawRequest(cli.port, publishRequest('after', '', true), 5000)
  t.equal(responses(last)[0]?.status, 200, 'a publish after them: 200')
  for (const c of streams) await c.waitFor('data: after\n', 5000)
  t.pass(`every stream (${streams.length}, on both workers) got the events after`)
  for (const c of streams) t.equal(c.received.split('data: ok-').length - 1, n, `stream ${clientId(c)}: each accepted publish once`)
  t.notMatch(cli.child.stderr, /worker-exit|unhandled|Unhandled/, 'no worker exit, no unhandled rejection')
})

t.test('an answer owed by a Redis that hangs (SIGSTOP) outlasts the keep-alive idle timer: 200 or 503, never an empty reply', async (t) => {
  if (!canRun(t, 'test/pending.test.ts', 'the Redis case', redisMissing())) return
  const redis = await startRedis(t)
  const server = new SseServer({ port: 0, host: '127.0.0.1', redis: redis.url, redisPrefix: 'pending', tokens: [SUB], publishTokens: [PUB], tickMs: 0, heartbeatMs: 0, publicDir: null })
  const { port } = await server.listen()
  t.teardown(() => server.stop())
  const stream = await openStream(port, `/events/${SUB}`)
  t.teardown(() => stream.close())

  const publisher = await RawClient.open(port)
  t.teardown(() => publisher.close())
  process.kill(redis.pid, 'SIGSTOP')
  try {
    publisher.write(publishRequest('while redis hangs'))
    await sleep(KEEP_ALIVE_IDLE_MS + 1500)
    t.notOk(publisher.closed, `the connection is still open after ${KEEP_ALIVE_IDLE_MS + 1500} ms, its answer owed`)
  } finally {
    process.kill(redis.pid, 'SIGCONT')
  }
  await until(() => responses(publisher.received).length > 0 || publisher.closed, () => 'an answer', 10_000)
  const [answer, ...more] = responses(publisher.received)
  if (answer === undefined) return t.fail(`an empty reply: ${JSON.stringify(publisher.received)}, closed ${publisher.closed}`)
  t.same(more, [], 'one answer')
  t.ok(answer.status === 200 || answer.status === 503, `the publish got its answer: ${answer.status} ${answer.body}`)
  if (answer.status !== 200) return

  await stream.waitFor('data: while redis hangs\n', 5000)
  // The connection goes on as after any answer: the next request on it is answered too.
  publisher.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`)
  await until(() => responses(publisher.received).length === 2, () => `the next answer: ${JSON.stringify(publisher.received)}`, 5000)
  t.equal(responses(publisher.received)[1]!.status, 200, 'the next request on the same connection: 200')
})
