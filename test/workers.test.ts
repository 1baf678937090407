// `rawsse --workers N` as real processes: a primary and N workers on one port, streams landing on
// different workers (told apart by their client ids: each worker draws ids from its own block of
// 65 536, and /stats `nodes`), answering as one process: one order and one id sequence, replay on
// any worker, client= and DELETE /clients/ID across workers, a killed worker replaced, SIGTERM to
// the primary ending every stream, a worker that cannot listen ending the cluster once.

import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import * as net from 'node:net'
import { clientId, openStream, parseResponse, RawClient, rawRequest, sleep } from './helpers.js'
import { Child, CLI, startCli, START_MS, until, type Cli } from './process.js'

const SUB = 'sub-token'
const PUB = 'pub-token'
/** Stream ids come in blocks of this size, one block per worker at a time (CLIENT_ID_BLOCK, src/server/limits.ts). */
const BLOCK = 1 << 16

async function cluster(t: Test, workers: number, extra: readonly string[] = []): Promise<Cli> {
  return startCli(t, ['--port', '0', '--workers', String(workers), '--token', SUB, '--publish-token', PUB, '--tick', '0', '--heartbeat', '0', '--log', 'off', ...extra])
}

/** One request on a connection of its own (so the primary hands it to the next worker). */
async function request(port: number, method: string, path: string, body = '', timeoutMs = 3000): Promise<{ status: number; json: Record<string, unknown> }> {
  const raw = await rawRequest(
    port,
    `${method} ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    timeoutMs,
  )
  const r = parseResponse(raw)
  return { status: r.status, json: JSON.parse(r.body) as Record<string, unknown> }
}

/**
 * Wait until worker `pid` (killed) has a replacement in /stats. A connection the primary hands
 * to a worker in the moment it dies is never answered nor closed (Node's round-robin handoff
 * waits for an answer from the dead worker), so each probe gives up after 2 s; the bound is
 * a bound, not a figure: a worker starting on a loaded CI machine took over 10 s once.
 */
async function replaced(cli: Cli, pid: number): Promise<void> {
  let nodes: unknown = null
  await until(
    async () => {
      const n = (await request(cli.port, 'GET', '/stats', '', 2000).catch(() => null))?.json.nodes as Array<{ pid: number }> | undefined
      nodes = n ?? nodes
      return n !== undefined && n.length === 2 && !n.some((x) => x.pid === pid)
    },
    () => `the replacement of worker ${pid}; /stats nodes last seen: ${JSON.stringify(nodes)}; stderr: ${JSON.stringify(cli.child.stderr.slice(-2000))}`,
    30_000,
  )
}

/** The ids and data of the events a stream got, in order (ready and comments left out). */
function events(c: RawClient): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const m of c.received.matchAll(/id: ([^\n]+)\ndata: ([^\n]*)\n\n/g)) out.push([m[1]!, m[2]!])
  return out
}

/** Open streams until they sit on `n` different workers (round robin spreads them); at most 4n tries. */
async function spread(t: Test, port: number, n: number, path = `/events/${SUB}`): Promise<RawClient[]> {
  const out: RawClient[] = []
  const blocks = new Set<number>()
  for (let i = 0; i < 4 * n && blocks.size < n; i++) {
    const c = await openStream(port, path)
    t.teardown(() => c.close())
    out.push(c)
    blocks.add(Math.floor((clientId(c) - 1) / BLOCK))
  }
  t.equal(blocks.size, n, `streams on ${n} different workers (id blocks ${[...blocks].join(', ')})`)
  return out
}

t.test('--workers 3: every stream gets every event, published through any worker, with the same ids in the same order', async (t) => {
  const cli = await cluster(t, 3)
  t.match(cli.lines[0], /^rawsse listening on http:\/\/127\.0\.0\.1:\d+$/, 'the start-up lines once')
  t.equal(cli.child.stdout.split('rawsse listening on').length - 1, 1)
  const streams = await spread(t, cli.port, 3)
  const stats = await request(cli.port, 'GET', '/stats')
  const nodes = stats.json.nodes as Array<{ node: string; clients: number; pid: number }>
  t.equal(nodes.length, 3, '/stats lists 3 nodes')
  t.equal(stats.json.clients, streams.length, '/stats clients is the sum')
  t.equal(nodes.reduce((n, x) => n + x.clients, 0), streams.length)
  t.equal(new Set(nodes.map((x) => x.pid)).size, 3, 'three worker processes')

  const answers: Array<{ status: number; json: Record<string, unknown> }> = []
  // Several at once, each on its own connection: different workers publish concurrently.
  for (let round = 0; round < 5; round++) {
    answers.push(...(await Promise.all([0, 1, 2, 3].map((k) => request(cli.port, 'POST', '/publish', `e${round}-${k}`)))))
  }
  t.ok(answers.every((a) => a.status === 200 && a.json.delivered === streams.length), 'every publish: 200, delivered to every stream')
  const ids = answers.map((a) => Number(a.json.id))
  t.equal(new Set(ids).size, 20, '20 distinct ids')
  await until(() => streams.every((c) => events(c).length === 20), () => 'every stream has 20 events', 5000)
  const first = events(streams[0]!)
  for (const c of streams) t.same(events(c), first, `stream ${clientId(c)}: the same events, ids and order`)
  const seen = first.map(([id]) => Number(id))
  t.same(seen, [...seen].sort((a, b) => a - b), 'ids increase in delivery order')
  t.same([...seen].sort((a, b) => a - b), [...ids].sort((a, b) => a - b), 'the ids the publishers were given')
})

t.test('--workers 2: replay on another worker while events are published: no gap, no duplicate', async (t) => {
  const cli = await cluster(t, 2)
  let sent = 0
  let publishing = true
  const publisher = (async () => {
    while (publishing) {
      await request(cli.port, 'POST', '/publish', `p${++sent}`)
      await sleep(5)
    }
  })()
  t.teardown(() => {
    publishing = false // should a wait below fail
  })
  const got: Array<[string, string]> = []
  let last: string | null = null
  for (let hop = 0; hop < 6; hop++) {
    const c = await openStream(cli.port, `/events/${SUB}`, last === null ? {} : { 'Last-Event-ID': last })
    t.notMatch(c.received, /event: reset/, `hop ${hop}: no reset`)
    await until(() => events(c).length >= 3, () => `hop ${hop}: three events`, 5000)
    c.close()
    const e = events(c)
    got.push(...e)
    last = e.at(-1)![0]
  }
  publishing = false
  await publisher
  const ids = got.map(([id]) => Number(id))
  t.equal(new Set(ids).size, ids.length, 'no duplicate')
  const datas = got.map(([, d]) => Number(d.slice(1)))
  t.same(datas, Array.from({ length: datas.length }, (_, i) => datas[0]! + i), `no gap: ${datas.length} events in a row across 6 reconnections`)
})

t.test('--workers 2: client= and DELETE /clients/ID reach a stream on another worker; 404 for one connected nowhere', async (t) => {
  const cli = await cluster(t, 2)
  const streams = await spread(t, cli.port, 2)
  const [a, b] = [streams[0]!, streams.at(-1)!]
  for (const target of [a, b]) {
    // Published from several connections (both workers): each stream gets only its own.
    for (let k = 0; k < 2; k++) {
      const r = await request(cli.port, 'POST', `/publish?client=${clientId(target)}`, `for-${clientId(target)}-${k}`)
      t.same([r.status, r.json.delivered], [200, 1])
    }
  }
  await until(() => events(a).length === 2 && events(b).length === 2, () => 'two events each', 5000)
  t.ok(events(a).every(([, d]) => d.startsWith(`for-${clientId(a)}-`)) && events(b).every(([, d]) => d.startsWith(`for-${clientId(b)}-`)), 'each got only its own')
  t.same(await request(cli.port, 'POST', '/publish?client=999999', 'x'), { status: 404, json: { delivered: 0, error: 'offline' } })
  t.same(await request(cli.port, 'POST', '/publish?user=nobody', 'x'), { status: 404, json: { delivered: 0, error: 'offline' } })
  for (const target of [a, b]) {
    t.same(await request(cli.port, 'DELETE', `/clients/${clientId(target)}`), { status: 200, json: { closed: 1 } }, `DELETE /clients/${clientId(target)}`)
    await target.waitClosed(5000)
    t.ok(target.received.endsWith('0\r\n\r\n'), 'the stream ended with the last chunk')
  }
  t.same(await request(cli.port, 'DELETE', `/clients/${clientId(a)}`), { status: 404, json: { closed: 0, error: 'unknown client' } })
  const all = await request(cli.port, 'DELETE', '/clients')
  t.same(all, { status: 200, json: { closed: streams.length - 2 } }, 'DELETE /clients closes the rest, on both workers')
})

t.test('--workers 2: kill -9 of a worker: it is replaced, and its clients come back with Last-Event-ID and miss nothing', async (t) => {
  const cli = await cluster(t, 2)
  const streams = await spread(t, cli.port, 2)
  const nodes = (await request(cli.port, 'GET', '/stats')).json.nodes as Array<{ pid: number; clients: number }>
  const victim = nodes.find((n) => n.clients > 0)!
  for (let i = 1; i <= 3; i++) t.equal((await request(cli.port, 'POST', '/publish', `before-${i}`)).status, 200)
  await until(() => streams.every((c) => events(c).length === 3), () => 'three events everywhere', 5000)
  process.kill(victim.pid, 'SIGKILL')
  await until(() => streams.some((c) => c.closed), () => 'the victim’s streams cut', 5000)
  // Publish once the replacement is up, while the victim's clients are still away.
  await replaced(cli, victim.pid)
  t.pass('the killed worker was replaced')
  for (let i = 1; i <= 3; i++) t.equal((await request(cli.port, 'POST', '/publish', `during-${i}`)).status, 200)
  const back: RawClient[] = []
  for (const c of streams.filter((s) => s.closed)) {
    const last = events(c).at(-1)![0]
    const again = await openStream(cli.port, `/events/${SUB}`, { 'Last-Event-ID': last })
    t.teardown(() => again.close())
    back.push(again)
  }
  t.ok(back.length > 0, `${back.length} streams came back`)
  for (const c of back) {
    await until(() => events(c).length === 3, () => 'the three missed events', 5000)
    t.same(events(c).map(([, d]) => d), ['during-1', 'during-2', 'during-3'], 'exactly what it missed')
  }
})

t.test('--workers 2, once up: a replacement killed before it listens is forked again after a delay; the cluster stays up', async (t) => {
  const cli = await cluster(t, 2)
  const primary = cli.child.proc.pid!
  const children = (): number[] =>
    execFileSync('ps', ['-o', 'pid=', '--ppid', String(primary)], { encoding: 'utf8' })
      .split('\n')
      .map(Number)
      .filter((n) => n > 0)
  const before = children()
  t.equal(before.length, 2, 'two workers')
  process.kill(before[0]!, 'SIGKILL')
  // The replacement, caught between its fork and its listen (starting Node takes far longer than a poll).
  const early = await until(() => children().find((pid) => !before.includes(pid)), () => 'the replacement process', 10_000)
  process.kill(early, 'SIGKILL')
  await until(() => /worker-1 exited before it listened \(SIGKILL\); another in 1000 ms|worker-2 exited before it listened \(SIGKILL\); another in 1000 ms/.test(cli.child.stderr), () => `the warning; stderr: ${cli.child.stderr}`, 10_000)
  t.equal(cli.child.exit, null, 'the primary is still running')
  await until(
    async () => {
      const n = (await request(cli.port, 'GET', '/stats').catch(() => null))?.json.nodes as Array<{ pid: number }> | undefined
      return n !== undefined && n.length === 2 && !n.some((x) => x.pid === before[0] || x.pid === early)
    },
    () => 'a third worker in /stats',
    20_000,
  )
  const [a, b] = await spread(t, cli.port, 2)
  const sent = await request(cli.port, 'POST', '/publish', 'still one cluster')
  t.equal(sent.status, 200)
  for (const c of [a!, b!]) await c.waitFor('data: still one cluster\n', 5000)
  t.pass('both workers serve')
})

t.test('--workers 2: a worker that joins while events are published has the same history: a full replay on any worker, no gap, no duplicate', async (t) => {
  const cli = await cluster(t, 2, ['--history', '100000'])
  let sent = 0
  let publishing = true
  const publisher = (async () => {
    // A request cut by the kill is not counted (the next one lands on the other worker).
    while (publishing) if ((await request(cli.port, 'POST', '/publish', `h${sent + 1}`).catch(() => null))?.status === 200) sent++
  })()
  // Should a wait below fail, the publisher stops all the same (else it keeps the file alive past tap's timeout).
  t.teardown(() => {
    publishing = false
  })
  await until(() => sent > 20, () => 'some events published', 5000)
  // Replace both workers, one after the other, while the publisher goes on.
  for (let round = 0; round < 2; round++) {
    const nodes = (await request(cli.port, 'GET', '/stats')).json.nodes as Array<{ pid: number }>
    process.kill(nodes[0]!.pid, 'SIGKILL')
    await replaced(cli, nodes[0]!.pid)
  }
  await until(() => sent > 60, () => 'more events published', 5000)
  publishing = false
  await publisher
  // lastEventId=0: every retained event, from each worker in turn.
  const streams = await spread(t, cli.port, 2, `/events/${SUB}?lastEventId=0`)
  const expected = (c: RawClient): number => events(c).length
  await sleep(200)
  for (const c of streams) {
    const ids = events(c).map(([id]) => Number(id))
    t.equal(new Set(ids).size, ids.length, `stream ${clientId(c)}: no duplicate in ${ids.length} replayed events`)
    t.same(ids, [...ids].sort((a, b) => a - b), 'in order')
    const other = events(streams[0]!).map(([id]) => Number(id))
    t.equal(expected(c), expected(streams[0]!), `the same history as the other worker (${ids.length}: ${ids[0]}…${ids.at(-1)} vs ${other.length}: ${other[0]}…${other.at(-1)}; missing ${other.filter((x) => !ids.includes(x)).slice(0, 5).join(',')} extra ${ids.filter((x) => !other.includes(x)).slice(0, 5).join(',')})`)
  }
})

t.test('--workers 2: resuming from the id of an event sent to one client works on every worker, a replacement too: no reset', async (t) => {
  const cli = await cluster(t, 2)
  const [a] = await spread(t, cli.port, 2)
  const dm = await request(cli.port, 'POST', `/publish?client=${clientId(a!)}`, 'just you')
  t.same([dm.status, dm.json.delivered], [200, 1])
  const kept = await request(cli.port, 'POST', '/publish', 'for all')
  await until(() => events(a!).length === 2, () => 'both events at the stream', 5000)
  t.same(events(a!), [[dm.json.id, 'just you'], [kept.json.id, 'for all']])
  const want: Array<[unknown, string]> = [[kept.json.id, 'for all']]

  // Each worker marked where the event fell; the resumed streams get the kept events after it.
  const resumeEverywhere = async (when: string): Promise<void> => {
    const back = await spread(t, cli.port, 2, `/events/${SUB}?lastEventId=${String(dm.json.id)}`)
    const marker = await request(cli.port, 'POST', '/publish', `marker ${when}`)
    want.push([marker.json.id, `marker ${when}`])
    for (const c of back) {
      await until(() => events(c).some(([id]) => id === marker.json.id), () => `the marker at ${clientId(c)}`, 5000)
      t.notMatch(c.received, /event: reset/, `${when}, stream ${clientId(c)}: no reset`)
      t.same(events(c), want, `${when}, stream ${clientId(c)}: the kept events after it, then live`)
      c.close()
    }
  }
  await resumeEverywhere('at first')
  // A worker that starts later gets the places with the history.
  const nodes = (await request(cli.port, 'GET', '/stats')).json.nodes as Array<{ pid: number }>
  process.kill(nodes[0]!.pid, 'SIGKILL')
  await replaced(cli, nodes[0]!.pid)
  await resumeEverywhere('after a replacement')
})

t.test('--workers 2: the primary survives asking a worker that has just died (its message fails with EPIPE)', async (t) => {
  const cli = await cluster(t, 2)
  // A keep-alive connection: the worker that answers its first request (the one whose count of
  // open connections has it) answers the next one too.
  const conn = await RawClient.open(cli.port)
  t.teardown(() => conn.close())
  const ask = `GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\n\r\n`
  conn.write(ask)
  await until(() => /\r\n\r\n\{.*\}$/s.test(conn.received), () => 'the first /stats', 5000)
  const nodes = JSON.parse(conn.received.slice(conn.received.indexOf('\r\n\r\n') + 4)) as { nodes: Array<{ pid: number; connections: { open: number } }> }
  const victim = nodes.nodes.find((n) => n.connections.open === 0)
  t.ok(victim !== undefined, 'the other worker holds no connection')
  conn.received = ''
  // The primary stopped: the survivor's question for /stats waits in its pipe, then the victim
  // dies; resumed, the primary reads the question before the victim's end and asks it too.
  cli.child.kill('SIGSTOP')
  try {
    conn.write(ask)
    await sleep(300)
    process.kill(victim!.pid, 'SIGKILL')
    await sleep(300)
  } finally {
    cli.child.kill('SIGCONT')
  }
  await until(() => /\r\n\r\n\{.*\}$/s.test(conn.received) || cli.child.exit, () => 'the second /stats', 10_000)
  t.equal(cli.child.exit, null, `the primary is still running; stderr: ${cli.child.stderr}`)
  t.match(conn.received, /^HTTP\/1\.1 200 /, 'and the question was answered')
  await replaced(cli, victim!.pid)
  t.equal((await request(cli.port, 'POST', '/publish', 'after')).status, 200, 'the cluster serves on')
})

t.test('--workers 2: publishes pipelined on one connection are answered in order, ids in request order, with other requests between them', async (t) => {
  const cli = await cluster(t, 2)
  const streams = await spread(t, cli.port, 2)
  const post = (data: string): string => `POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nContent-Type: text/plain\r\nContent-Length: ${data.length}\r\n\r\n${data}`
  const requests = [post('q1'), post('q2'), post('q3'), 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', post('q4'), `${post('q5').replace('HTTP/1.1\r\n', 'HTTP/1.1\r\nConnection: close\r\n')}`]
  const raw = await rawRequest(cli.port, requests.join(''), 5000)
  const answers = raw.split(/(?=HTTP\/1\.1 )/).map((r) => parseResponse(r))
  t.same(answers.map((a) => a.status), [200, 200, 200, 200, 200, 200], 'six answers, all 200')
  t.same(JSON.parse(answers[3]!.body), { status: 'ok' }, 'the health check in its place')
  const ids = [0, 1, 2, 4, 5].map((i) => Number((JSON.parse(answers[i]!.body) as { id: string }).id))
  t.same(ids, [...ids].sort((a, b) => a - b), `ids in request order (${ids.join(', ')})`)
  await until(() => streams.every((c) => events(c).length === 5), () => 'five events at every stream', 5000)
  for (const c of streams) t.same(events(c).map(([, d]) => d), ['q1', 'q2', 'q3', 'q4', 'q5'], `stream ${clientId(c)}: each once, in order`)
})

t.test('--workers 2: SIGTERM to the primary ends every stream with the last chunk and exits 0 within 5 s', async (t) => {
  const cli = await cluster(t, 2)
  const streams = await spread(t, cli.port, 2)
  const started = Date.now()
  cli.child.proc.kill('SIGTERM')
  const exit = await cli.child.waitExit(6000)
  t.same(exit, { code: 0, signal: null }, 'exit 0')
  t.ok(Date.now() - started < 5000, `within 5 s (${Date.now() - started} ms)`)
  for (const c of streams) {
    await c.waitClosed(2000)
    t.ok(c.received.endsWith('0\r\n\r\n'), `stream ${clientId(c)} got 0\\r\\n\\r\\n`)
  }
})

t.test('--workers 2: the time tick reaches each stream once per period; /metrics carries a node label', async (t) => {
  const cli = await cluster(t, 2, ['--tick', '200'])
  const streams = await spread(t, cli.port, 2)
  await sleep(1100)
  for (const c of streams) {
    const ticks = c.received.split('event: time\n').length - 1
    t.ok(ticks >= 3 && ticks <= 7, `stream ${clientId(c)}: ${ticks} ticks in 1.1 s at one per 200 ms`)
  }
  const raw = await rawRequest(cli.port, `GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${PUB}\r\nConnection: close\r\n\r\n`)
  t.match(raw, /rawsse_clients\{node="worker-1",channel="default"\} \d+/)
  t.match(raw, /rawsse_clients\{node="worker-2",channel="default"\} \d+/)
})

t.test('--workers 2 on a port already taken: one clear error line and exit 1, no restart loop', async (t) => {
  const blocker = net.createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => blocker.close())
  const { port } = blocker.address() as net.AddressInfo
  const child = new Child(t, process.execPath, [CLI, '--port', String(port), '--workers', '2', '--token', SUB, '--log', 'off'], { stdin: 'ignore' })
  const exit = await child.waitExit(START_MS)
  t.same(exit, { code: 1, signal: null }, 'exit 1')
  const lines = child.stderr.split('\n').filter(Boolean)
  t.equal(lines.length, 1, `one line: ${child.stderr}`)
  t.match(lines[0], new RegExp(`^rawsse: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`))
  t.equal(child.stdout, '', 'no start-up lines')
})

t.test('--workers 2 --stdin: a line over --max-event-bytes is refused with the same one line on stderr as one process; the next line is broadcast', async (t) => {
  // 200 bytes of data is 208 encoded (`data: ` + the line + LF + the blank line).
  const refused = 'rawsse: a line of 200 bytes was not broadcast: event is 208 bytes encoded; the limit is 100\n'
  for (const workers of [1, 2]) {
    const cli = await startCli(t, ['--port', '0', '--workers', String(workers), '--token', SUB, '--publish-token', PUB, '--tick', '0', '--heartbeat', '0', '--log', 'off', '--stdin', '--max-event-bytes', '100'], { stdin: 'pipe' })
    const [s] = await spread(t, cli.port, 1)
    const stdin = cli.child.proc.stdin!
    stdin.write('x'.repeat(200) + '\n')
    await until(() => cli.child.stderr.includes('\n'), () => `--workers ${workers}: a line on stderr; stderr: ${JSON.stringify(cli.child.stderr)}`)
    t.equal(cli.child.stderr, refused, `--workers ${workers}: exactly that line`)
    stdin.write('short line\n')
    await until(() => events(s!).length === 1, () => `--workers ${workers}: the short line on the stream; got ${JSON.stringify(s!.received.slice(-300))}`)
    t.same(events(s!).map(([, d]) => d), ['short line'], `--workers ${workers}: the stream got the short line and nothing of the long one`)
    t.equal(cli.child.stderr, refused, `--workers ${workers}: still that one line on stderr`)
    t.equal(cli.child.exit, null, `--workers ${workers}: still running`)
  }
})
