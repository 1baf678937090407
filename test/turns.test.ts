// A storm of stream opens is shared out over event-loop turns (src/server/http/turn-gate.ts): never
// more than STREAM_OPENS_PER_TURN in one turn, so /healthz, publishes and fan-out slices run
// between them; every stream still opens, in the order its request came, with its replay.

import t from 'tap'
import * as net from 'node:net'
import type { ClientView } from '../src/index.js'
import { STREAM_OPENS_PER_TURN } from '../src/server/limits.js'
import { TurnGate } from '../src/server/http/turn-gate.js'
import { sleep, startServer, TOKEN } from './helpers.js'

t.test('a storm of stream opens is shared out over turns, each stream opened once with its replay', async (t) => {
  const { server, port } = await startServer(t)
  for (let i = 0; i < 5; i++) server.publishEvent({ data: `e${i}` }, {})
  // Opens between two of this process's check phases (the server runs in this process).
  let thisTurn = 0
  let most = 0
  let ticking = true
  const tick = (): void => {
    most = Math.max(most, thisTurn)
    thisTurn = 0
    if (ticking) setImmediate(tick)
  }
  setImmediate(tick)
  server.on('connect', (_c: ClientView) => thisTurn++)
  const n = 1000
  const got = new Array<string>(n).fill('')
  let connected = 0
  const sockets = Array.from({ length: n }, (_, i) => {
    const s = net.connect(port, '127.0.0.1', () => connected++)
    s.setEncoding('latin1')
    s.on('data', (d: string) => (got[i] += d))
    s.on('error', () => {})
    return s
  })
  t.teardown(() => sockets.forEach((s) => s.destroy()))
  while (connected < n) await sleep(10)
  await sleep(100) // and accepted by the server
  // Every head in one synchronous loop: the server's next poll phase finds them all readable.
  for (const s of sockets) s.write(`GET /events/${TOKEN} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 2\r\n\r\n`)
  const deadline = Date.now() + 20_000
  while (got.some((g) => !g.includes('data: e4\n')) && Date.now() < deadline) await sleep(20)
  ticking = false
  t.equal(server.clientCount, n, `all ${n} streams opened`)
  t.ok(
    got.every((g) => /event: ready\n[\s\S]*id: 3\ndata: e2\n[\s\S]*id: 4\ndata: e3\n[\s\S]*id: 5\ndata: e4\n/.test(g)),
    'each got ready, then exactly its replay',
  )
  t.ok(most <= 2 * STREAM_OPENS_PER_TURN, `at most ${2 * STREAM_OPENS_PER_TURN} opens between two turns (${most})`)
})

t.test('the gate: at most perTurn jobs in a turn, the rest in order in later turns', async (t) => {
  const gate = new TurnGate(3)
  const ran: number[] = []
  for (let i = 0; i < 10; i++) gate.run(() => ran.push(i))
  t.same(ran, [0, 1, 2], 'three now')
  t.equal(gate.waiting, 7, 'seven wait')
  await new Promise((r) => setImmediate(r))
  t.same(ran, [0, 1, 2, 3, 4, 5], 'three more in the next turn')
  await new Promise((r) => setImmediate(r))
  await new Promise((r) => setImmediate(r))
  t.same(ran, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'then the rest, in order')
  t.equal(gate.waiting, 0, 'none waits')
})
