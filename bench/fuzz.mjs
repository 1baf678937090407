// Fuzz the request-head parser and the server's routes with random and mutated requests.
//
//   npm install && node bench/fuzz.mjs [--cases 100000] [--socket-cases 20000] [--seed 1]
//
// Part 1 feeds parseHead() (in process, no sockets) random and mutated heads, whole and split at
// a random point. A case fails ("crash") if the parser throws anything but an HttpError with a
// 4xx/5xx status, returns a length past the buffer, or answers a prefix differently than the
// whole (a parser must never complete on part of a head and then change its mind).
// Part 2 sends mutated requests (heads and POST /publish with random fields and bodies) over
// real sockets to a server on 127.0.0.1 port 0, several at a time, while a canary stream stays
// open; a case fails if the server answers 500, sends something that is not an HTTP response,
// or the canary misses an event. It ends by itself after the cases; prints a JSON summary.

import * as net from 'node:net'
import { parseHead } from '../dist/server/http/head.js'
import { HttpError } from '../dist/server/http/errors.js'
import { SseServer } from '../dist/index.js'
import { rng } from './lib.mjs'

const args = process.argv.slice(2)
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`)
  return i === -1 ? def : Number(args[i + 1])
}

const SEEDS = [
  'GET /events/tok HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET /events/tok?channel=a&channel=b&lastEventId=3 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 2\r\n\r\n',
  'POST /publish?channel=a&event=e HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pub\r\nContent-Length: 5\r\n\r\nhello',
  'POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pub\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pub\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\ndata=x&event=y&id=77',
  'GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pub\r\n\r\n',
  'DELETE /clients/999 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pub\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n',
  'HEAD /events/tok HTTP/1.0\r\n\r\n',
  'GET http://x/index.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/"1-2"\r\n\r\n',
]

const SPECIAL = [0, 9, 10, 13, 32, 58, 0x7f, 0x80, 0xff, 0x25, 0x2f, 0x5c, 0x2e, 0x3f, 0x3d, 0x26]
const TOKENS = ['\r\n', '\n', '\r', ' ', ':', 'Content-Length: 3\r\n', 'Transfer-Encoding: chunked\r\n', 'Host: y\r\n', '%00', '%2e%2e/', '..', 'HTTP/1.1', 'HTTP/2.0', '\t', '0\r\n\r\n', 'ffffffff\r\n']

/** One fuzz case: a random mutation chain of a seed, or (sometimes) pure random bytes. */
export function makeCase(rand) {
  const pick = (arr) => arr[Math.floor(rand() * arr.length)]
  if (rand() < 0.05) {
    const n = Math.floor(rand() * 200)
    const b = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256)
    return b
  }
  let b = Buffer.from(pick(SEEDS), 'latin1')
  const steps = 1 + Math.floor(rand() * 4)
  for (let s = 0; s < steps; s++) {
    const at = Math.floor(rand() * (b.length + 1))
    switch (Math.floor(rand() * 7)) {
      case 0: // flip a byte
        if (b.length) b[Math.min(at, b.length - 1)] = Math.floor(rand() * 256)
        break
      case 1: // a special byte
        b = Buffer.concat([b.subarray(0, at), Buffer.from([pick(SPECIAL)]), b.subarray(at)])
        break
      case 2: // delete a run
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(rand() * 8))])
        break
      case 3: // insert a token
        b = Buffer.concat([b.subarray(0, at), Buffer.from(pick(TOKENS), 'latin1'), b.subarray(at)])
        break
      case 4: // repeat a run (long lines, header floods)
        {
          const len = 1 + Math.floor(rand() * 40)
          const run = b.subarray(at, at + len)
          const times = Math.floor(rand() * (rand() < 0.1 ? 2000 : 20))
          b = Buffer.concat([b.subarray(0, at), ...Array(times).fill(run), b.subarray(at)])
        }
        break
      case 5: // truncate
        b = b.subarray(0, at)
        break
      default: // splice two seeds
        b = Buffer.concat([b.subarray(0, at), Buffer.from(pick(SEEDS), 'latin1')])
    }
  }
  return b
}

function parseOutcome(buf) {
  try {
    const r = parseHead(buf)
    if (r === null) return { kind: 'more' }
    if (!(r.length > 0 && r.length <= buf.length)) return { kind: 'bad', why: `length ${r.length} of ${buf.length}` }
    return { kind: 'head', length: r.length, head: JSON.stringify(r.head) }
  } catch (err) {
    if (err instanceof HttpError && err.status >= 400 && err.status < 600) return { kind: 'error', status: err.status }
    return { kind: 'bad', why: String(err && err.stack) }
  }
}

/** Part 1: the parser alone. Returns { cases, crashes, outcomes, firstCrash }. */
export function fuzzParser(cases, seed = 1) {
  const rand = rng(seed)
  /** @type {Record<string, number>} */
  const outcomes = {}
  let crashes = 0
  let firstCrash = null
  for (let i = 0; i < cases; i++) {
    const buf = makeCase(rand)
    const whole = parseOutcome(buf)
    let bad = whole.kind === 'bad' ? whole.why : null
    // The same bytes split in two: the prefix must say "need more", or the same thing as the whole.
    if (bad === null && buf.length > 1) {
      const cut = 1 + Math.floor(rand() * (buf.length - 1))
      const part = parseOutcome(buf.subarray(0, cut))
      if (part.kind === 'bad') bad = part.why
      else if (part.kind === 'head' && (whole.kind !== 'head' || part.head !== whole.head || part.length !== whole.length)) bad = `prefix of ${cut} parsed differently`
    }
    const key = whole.kind === 'error' ? String(whole.status) : whole.kind
    outcomes[key] = (outcomes[key] ?? 0) + 1
    if (bad !== null) {
      crashes++
      firstCrash ??= { case: i, bytes: buf.toString('latin1').slice(0, 300), why: bad }
    }
  }
  return { cases, crashes, outcomes, firstCrash }
}

const PUBLISH_FIELDS = ['channel', 'event', 'id', 'user', 'role', 'client', 'data', 'x']
const PUBLISH_VALUES = ['', 'a', 'chat', '1', '999999', 'x\ny', 'x\r\ny', '%0a', '%00', 'é', '\u2028', 'a'.repeat(300), '0', '-1', 'admin', 'alice']

/** A random POST /publish: random fields in the query and/or a form body, random content types. */
export function makePublish(rand) {
  const pick = (arr) => arr[Math.floor(rand() * arr.length)]
  const q = new URLSearchParams()
  const form = new URLSearchParams()
  for (let i = Math.floor(rand() * 5); i > 0; i--) (rand() < 0.5 ? q : form).append(pick(PUBLISH_FIELDS), pick(PUBLISH_VALUES))
  const asForm = rand() < 0.4
  let body = asForm ? Buffer.from(form.toString()) : Buffer.from(pick(PUBLISH_VALUES) + pick(PUBLISH_VALUES))
  if (rand() < 0.1) body = Buffer.from([0xff, 0xfe, 0x80, 0x41]) // invalid UTF-8
  const type = asForm ? 'application/x-www-form-urlencoded' : pick(['text/plain', 'application/json', 'application/x-www-form-urlencoded', ''])
  const auth = pick(['Bearer pub', 'Bearer pub', 'Bearer pub', 'Bearer tok', 'Bearer nope', 'Basic x', ''])
  const query = q.toString()
  let head = `POST /publish${query ? '?' + query : ''} HTTP/1.1\r\nHost: x\r\n`
  if (auth) head += `Authorization: ${auth}\r\n`
  if (type) head += `Content-Type: ${type}\r\n`
  if (rand() < 0.2) {
    head += 'Transfer-Encoding: chunked\r\n\r\n'
    return Buffer.concat([Buffer.from(head), Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')])
  }
  return Buffer.concat([Buffer.from(head + `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`), body])
}

function exchange(port, bytes, timeoutMs = 3000) {
  return new Promise((resolve) => {
    const chunks = []
    const s = net.connect(port, '127.0.0.1', () => s.end(bytes))
    const done = () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString('latin1'))
    }
    const timer = setTimeout(() => s.destroy(), timeoutMs)
    s.on('data', (d) => chunks.push(d))
    s.on('error', () => {})
    s.on('close', done)
  })
}

/** Part 2: over sockets, against a live server with a canary stream. */
export async function fuzzServer(cases, seed = 2, concurrency = 16) {
  const server = new SseServer({
    port: 0,
    tokens: ['tok'],
    publishTokens: ['pub'],
    users: [{ token: 'alice-token', user: 'alice', roles: ['admin'] }],
    tickMs: 0,
    heartbeatMs: 0,
    headTimeoutMs: 1000,
    publicDir: new URL('../public', import.meta.url).pathname,
  })
  const { port } = await server.listen()
  const canary = net.connect(port, '127.0.0.1')
  let canaryBytes = ''
  canary.on('data', (d) => (canaryBytes += d.toString('latin1')))
  canary.write('GET /events/tok?channel=canary HTTP/1.1\r\nHost: x\r\n\r\n')
  await new Promise((r) => setTimeout(r, 100))

  const rand = rng(seed)
  /** @type {Record<string, number>} */
  const statuses = {}
  let crashes = 0
  let firstCrash = null
  let canaryIds = 0
  let next = 0
  const rssBefore = process.memoryUsage.rss()
  const worker = async () => {
    while (next < cases) {
      const i = next++
      const bytes = rand() < 0.5 ? makeCase(rand) : makePublish(rand)
      const reply = await exchange(port, bytes)
      // Streams opened by the fuzz (a seed is a valid stream request) are cut by the timeout.
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(reply)
      const status = m === null ? (reply === '' ? 'closed' : 'garbage') : m[1]
      statuses[status] = (statuses[status] ?? 0) + 1
      if (status === '500' || status === 'garbage') {
        crashes++
        firstCrash ??= { case: i, sent: bytes.toString('latin1').slice(0, 300), reply: reply.slice(0, 300) }
      }
      if (i % 500 === 0) {
        server.publish('canary', { data: `c${canaryIds}`, id: `canary-${canaryIds}` })
        canaryIds++
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  await new Promise((r) => setTimeout(r, 200))
  let canaryMissed = 0
  for (let k = 0; k < canaryIds; k++) if (!canaryBytes.includes(`id: canary-${k}\ndata: c${k}\n`)) canaryMissed++
  canary.destroy()
  const clientsLeft = server.clientCount
  await server.stop()
  return { cases, crashes, statuses, canaryEvents: canaryIds, canaryMissed, firstCrash, rssBefore, rssAfter: process.memoryUsage.rss(), clientsLeftBeforeStop: clientsLeft }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const started = Date.now()
  const parser = fuzzParser(arg('cases', 100_000), arg('seed', 1))
  const sockets = await fuzzServer(arg('socket-cases', 20_000), arg('seed', 1) + 1)
  const summary = { date: new Date().toISOString(), node: process.version, seconds: (Date.now() - started) / 1000, parser, sockets }
  console.log(JSON.stringify(summary, null, 2))
  process.exit(parser.crashes === 0 && sockets.crashes === 0 && sockets.canaryMissed === 0 ? 0 : 1)
}
