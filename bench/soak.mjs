// Churn soak: thousands of connect / publish / disconnect cycles against one server, bounded in
// rounds and time, then memory before and after.
//
//   npm install && node --expose-gc bench/soak.mjs [--rounds 20] [--streams 500] [--events 40] [--seconds 120]
//
// Each round opens `streams` streams on 127.0.0.1 (readers spread over four channels; every 25th
// one reads nothing and listens on channel `slow`, so it must be dropped as a slow consumer), publishes `events` events of 32 KiB
// (broadcasts and channel events), checks that every reading stream received exactly what it was
// owed, then disconnects them all in mixed ways: a plain close, a TCP reset, DELETE /clients/ID.
// Memory (RSS and V8 heap after a full GC) is taken after three warm-up rounds (the history ring
// is full by then) and after the last round. Server and clients share this process, so the figures bound the server's own use.

import * as net from 'node:net'
import { SseServer } from '../dist/index.js'

const args = process.argv.slice(2)
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`)
  return i === -1 ? def : Number(args[i + 1])
}
const ROUNDS = arg('rounds', 20)
const STREAMS = arg('streams', 500)
const EVENTS = arg('events', 40)
const SECONDS = arg('seconds', 120)
const CHANNELS = ['a', 'b', 'c', 'd']
const DATA = 'x'.repeat(32 * 1024)
const SLOW_EVENTS = 200 // 6.4 MiB to each slow consumer per round

const gc = globalThis.gc ?? (() => {})
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function memory() {
  for (let i = 0; i < 3; i++) gc()
  const m = process.memoryUsage()
  return { rssBytes: m.rss, heapUsedBytes: m.heapUsed }
}

function openStream(port, channel, reads) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    const st = { socket: s, channel, reads, ids: 0, id: 0, text: '' }
    s.on('error', () => {})
    s.on('data', (d) => {
      if (!reads) return
      const t = d.toString('latin1')
      if (st.id === 0) {
        st.text += t
        const m = /"client":(\d+)/.exec(st.text)
        if (m) {
          st.id = Number(m[1])
          resolve(st)
        }
      }
      // Count event ids; an `id: ` never spans two reads here in a way that matters: count whole lines.
      st.ids += (t.match(/\nid: /g) ?? []).length + (t.startsWith('id: ') ? 1 : 0)
    })
    s.once('connect', () => {
      s.write(`GET /events/tok?channel=${channel} HTTP/1.1\r\nHost: x\r\n\r\n`)
      if (!reads) {
        s.pause() // a slow consumer: reads nothing after connecting
        setTimeout(() => resolve(st), 20)
      }
    })
    const timer = setTimeout(() => reject(new Error('stream did not open')), 5000)
    const settle = resolve
    resolve = (v) => {
      clearTimeout(timer)
      settle(v)
    }
  })
}

async function del(port, id) {
  const res = await fetch(`http://127.0.0.1:${port}/clients/${id}`, { method: 'DELETE', headers: { authorization: 'Bearer pub' } })
  await res.arrayBuffer()
}

async function main() {
  const server = new SseServer({ port: 0, tokens: ['tok'], publishTokens: ['pub'], tickMs: 0, heartbeatMs: 0, maxBufferBytes: 64 * 1024, history: 100, publicDir: null })
  const { port } = await server.listen()
  const deadline = Date.now() + SECONDS * 1000
  let before = null
  let rounds = 0
  let cycles = 0
  let lost = 0
  let published = 0

  for (let r = 0; r < ROUNDS && Date.now() < deadline; r++) {
    const streams = []
    for (let i = 0; i < STREAMS; i += 50) {
      const batch = []
      for (let j = i; j < Math.min(STREAMS, i + 50); j++) {
        const reads = j % 25 !== 24
        batch.push(openStream(port, reads ? CHANNELS[j % 4] : 'slow', reads))
      }
      streams.push(...(await Promise.all(batch)))
    }
    const owed = new Map(CHANNELS.map((c) => [c, 0]))
    for (let e = 0; e < EVENTS; e++) {
      if (e % 2 === 0) {
        server.broadcast({ data: DATA })
        for (const c of CHANNELS) owed.set(c, owed.get(c) + 1)
      } else {
        const ch = CHANNELS[e % 4]
        server.publish(ch, { data: DATA })
        owed.set(ch, owed.get(ch) + 1)
      }
      published++
      await sleep(1)
    }
    // The slow consumers' own channel: more than the kernel's socket buffers hold (about 4 MiB
    // here), so each of them passes maxBufferBytes and must be dropped; nobody else waits.
    for (let e = 0; e < SLOW_EVENTS; e++) server.publish('slow', { data: DATA })
    // Wait (bounded) until every reading stream has what it is owed.
    const readers = streams.filter((s) => s.reads)
    for (let w = 0; w < 200 && readers.some((s) => s.ids < owed.get(s.channel)); w++) await sleep(10)
    for (const s of readers) lost += Math.max(0, owed.get(s.channel) - s.ids)

    for (const [k, s] of streams.entries()) {
      if (k % 3 === 0) s.socket.destroy()
      else if (k % 3 === 1) s.socket.resetAndDestroy()
      else if (s.reads) await del(port, s.id)
      else s.socket.destroy()
    }
    cycles += streams.length
    for (let w = 0; w < 200 && server.clientCount > 0; w++) await sleep(10)
    rounds++
    // Measure after the history ring (100 events) is full, so it does not count as growth.
    if (r === 2) before = memory()
    if (process.env.SOAK_TRACE) console.error(`round ${r}: heap ${memory().heapUsedBytes}`)
  }
  await sleep(200)
  const after = memory()
  const stats = server.stats()
  await server.stop()
  const summary = {
    date: new Date().toISOString(),
    node: process.version,
    rounds,
    streamsPerRound: STREAMS,
    cycles,
    eventsPublished: published,
    eventsLostByReadingStreams: lost,
    slowConsumers: rounds * Math.floor(STREAMS / 25),
    slowConsumersDropped: stats.drops.buffer,
    adminCloses: stats.drops.admin,
    clientsLeft: stats.clients,
    memoryAfterWarmup: before,
    memoryAfterSoak: after,
  }
  console.log(JSON.stringify(summary, null, 2))
  process.exit(lost === 0 && stats.clients === 0 && stats.drops.buffer === summary.slowConsumers ? 0 : 1)
}

await main()
