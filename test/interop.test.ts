// Real readers of our bytes: the WHATWG-compliant `eventsource` npm client, and `curl -N`
// (HTTP/1.1 chunked, and HTTP/1.0 close-delimited) parsed by `eventsource-parser`. Each must
// read back exactly the events, names, ids and data that were published.

import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { EventSource } from 'eventsource'
import { createParser } from 'eventsource-parser'
import { PUB, publish, startServer, TOKEN, type Running } from './helpers.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** One event as a reader saw it: type (`message` when unnamed), id, data. */
interface Seen {
  type: string
  id: string
  data: string
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function until(test: () => boolean, ms: number, what: () => string): Promise<void> {
  const deadline = Date.now() + ms
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what()}`)
    await sleep(20)
  }
}

/** What is published: the query and body of POST /publish, and the type and data a reader must see. */
interface Case {
  what: string
  query: string
  body: string
  type: string
  data: string
  contentType?: string
}

const CASES: Case[] = [
  { what: 'default message', query: '', body: 'plain text', type: 'message', data: 'plain text' },
  { what: 'named event', query: 'event=greet', body: 'hi there', type: 'greet', data: 'hi there' },
  { what: 'event=message is the default', query: 'event=message', body: 'explicit default', type: 'message', data: 'explicit default' },
  {
    what: 'multi-line data with LF, CRLF and CR',
    query: '',
    body: 'line one\nline two\r\nline three\rline four',
    type: 'message',
    data: 'line one\nline two\nline three\nline four',
  },
  { what: 'an empty line inside data', query: 'event=greet', body: 'before\n\nafter', type: 'greet', data: 'before\n\nafter' },
  { what: 'data ending in a line break', query: '', body: 'trailing\r\n', type: 'message', data: 'trailing\n' },
  { what: 'empty data', query: '', body: '', type: 'message', data: '' },
  { what: 'a publisher-given id', query: 'id=order-7%2Fa', body: 'with my id', type: 'message', data: 'with my id' },
  { what: 'unicode data and event name', query: 'event=%C3%A9v%C3%A9nement', body: 'héllo wörld ✓ 日本語 🎉', type: 'événement', data: 'héllo wörld ✓ 日本語 🎉' },
  { what: 'leading spaces and field-like lines in data', query: '', body: '  two spaces\nid: 99\ndata: fake\n: not a comment', type: 'message', data: '  two spaces\nid: 99\ndata: fake\n: not a comment' },
  { what: 'a form body', query: '', body: 'event=greet&data=from+a+form', contentType: 'application/x-www-form-urlencoded', type: 'greet', data: 'from a form' },
  { what: 'a server id after a given one', query: '', body: 'last', type: 'message', data: 'last' },
]

/** Publishes every case in order; returns what each reader must see, with the ids the server answered. */
async function publishAll(t: Test, run: Running, delivered: number): Promise<Seen[]> {
  const expected: Seen[] = []
  for (const c of CASES) {
    const r = await publish(run.base, c.query, c.body, PUB, c.contentType === undefined ? {} : { 'content-type': c.contentType })
    t.equal(r.status, 200, `published: ${c.what}`)
    t.equal(r.json.delivered, delivered, `${c.what}: delivered to every reader`)
    expected.push({ type: c.type, id: String(r.json.id), data: c.data })
  }
  return expected
}

/** An `eventsource` client collecting every event but `ready`. */
function openEventSource(t: Teardown, url: string, types: readonly string[]): { es: EventSource; seen: Seen[]; readies: string[] } {
  const es = new EventSource(url)
  t.teardown(() => es.close())
  const seen: Seen[] = []
  const readies: string[] = []
  es.addEventListener('ready', (e) => readies.push(e.data))
  for (const type of types) es.addEventListener(type, (e) => seen.push({ type: e.type, id: e.lastEventId, data: e.data }))
  return { es, seen, readies }
}

/** `curl -N ARGS URL`, its output fed through eventsource-parser. */
function openCurl(t: Teardown, url: string, args: readonly string[]): { seen: Seen[]; readies: string[]; errors: string[]; output: () => string } {
  const child = spawn('curl', ['-N', '-s', '-S', '--max-time', '30', ...args, url], { stdio: ['ignore', 'pipe', 'pipe'] })
  let exited = false
  child.on('exit', () => (exited = true))
  const pid = child.pid
  t.teardown(() => {
    if (!exited && pid !== undefined) {
      try {
        process.kill(pid, 'SIGTERM')
      } catch {
        // already gone
      }
    }
  })
  const seen: Seen[] = []
  const readies: string[] = []
  const errors: string[] = []
  let raw = ''
  const parser = createParser({
    onEvent: (e) => {
      if (e.event === 'ready') readies.push(e.data)
      else seen.push({ type: e.event ?? 'message', id: e.id ?? '', data: e.data })
    },
    onError: (err) => errors.push(err.message),
  })
  const decoder = new TextDecoder()
  child.stdout.on('data', (d: Buffer) => {
    raw += d.toString('latin1')
    parser.feed(decoder.decode(d, { stream: true }))
  })
  child.stderr.on('data', (d: Buffer) => errors.push(`curl: ${d.toString()}`))
  return { seen, readies, errors, output: () => raw }
}

t.test('eventsource and curl -N read back exactly the published events, ids and data', async (t) => {
  const run = await startServer(t)
  const url = `${run.base}/events/${TOKEN}`
  const types = [...new Set(['message', 'reset', ...CASES.map((c) => c.type)])]
  const es = openEventSource(t, url, types)
  const curl11 = openCurl(t, url, [])
  const curl10 = openCurl(t, url, ['--http1.0'])
  await until(
    () => es.readies.length === 1 && curl11.readies.length === 1 && curl10.readies.length === 1,
    5000,
    () => `three ready events (eventsource ${es.readies.length}, curl ${curl11.readies.length}, curl --http1.0 ${curl10.readies.length})`,
  )
  t.equal(run.server.clientCount, 3, 'three readers connected')

  const expected = await publishAll(t, run, 3)
  t.equal(expected.find((e) => e.data === 'with my id')?.id, 'order-7/a', 'the given id is kept')

  const readers = { eventsource: es, 'curl -N': curl11, 'curl -N --http1.0': curl10 }
  await until(
    () => Object.values(readers).every((r) => r.seen.length >= expected.length),
    5000,
    () => `every reader to see ${expected.length} events: ${Object.entries(readers).map(([n, r]) => `${n} ${r.seen.length}`).join(', ')}`,
  )
  for (const [name, r] of Object.entries(readers)) t.strictSame(r.seen, expected, `${name} read exactly what was published`)
  t.same(curl11.errors, [], 'eventsource-parser found nothing wrong in the chunked stream')
  t.same(curl10.errors, [], 'eventsource-parser found nothing wrong in the HTTP/1.0 stream')
  t.match(curl11.output(), /^retry: \d+\nevent: ready\n|^event: ready\n[^]*retry: \d+\n/, 'curl received the retry: field')
  const ready = JSON.parse(es.readies[0]!) as { client: number; user: unknown; channels: unknown }
  t.same({ user: ready.user, channels: ready.channels }, { user: null, channels: ['default'] }, 'eventsource read the ready data as JSON')
})

t.test('eventsource reconnects after DELETE /clients/ID and, with Last-Event-ID, gets what it missed exactly once', async (t) => {
  // Streams opened with this token are known only to the authenticate hook, which sees each request.
  const lastEventIds: Array<string | null> = []
  // Shut while the reader is away, so its reconnection waits for the events it must miss: after
  // retry: 500 alone, a slow machine could let it back in between two publishes.
  let gate: Promise<void> = Promise.resolve()
  let openGate = () => {}
  const run = await startServer(t, {
    retryMs: 500,
    authenticate: async (token, req) => {
      if (token !== 'watcher') return null
      await gate
      lastEventIds.push(req.headers['last-event-id'] ?? null)
      return { user: 'watcher', roles: [] }
    },
  })
  const { es, seen, readies } = openEventSource(t, `${run.base}/events/watcher`, ['message', 'reset'])
  let errors = 0
  es.addEventListener('error', () => errors++)
  await until(() => readies.length === 1, 5000, () => 'the first ready event')
  const first = JSON.parse(readies[0]!) as { client: number; user: string }
  t.equal(first.user, 'watcher', 'ready.user comes from the hook')

  const before: Seen[] = []
  for (const data of ['one', 'two']) {
    const r = await publish(run.base, '', data, PUB)
    t.same(r, { status: 200, json: { id: r.json.id, delivered: 1 } }, `${data}: delivered live`)
    before.push({ type: 'message', id: String(r.json.id), data })
  }
  await until(() => seen.length === 2, 5000, () => `two live events, got ${JSON.stringify(seen)}`)

  gate = new Promise((resolve) => (openGate = resolve))
  const del = await fetch(`${run.base}/clients/${first.client}`, { method: 'DELETE', headers: { authorization: `Bearer ${PUB}` } })
  t.same({ status: del.status, json: await del.json() }, { status: 200, json: { closed: 1 } }, 'DELETE /clients/ID closes the stream')

  const away: Seen[] = []
  for (const data of ['three', 'four (with\r\nlines)']) {
    const r = await publish(run.base, '', data, PUB)
    // delivered 0: the reader has not reconnected yet, so these can only come back by replay.
    t.same(r, { status: 200, json: { id: r.json.id, delivered: 0 } }, `${JSON.stringify(data)}: published while the reader was away`)
    away.push({ type: 'message', id: String(r.json.id), data: data.replace('\r\n', '\n') })
  }
  openGate()

  await until(() => readies.length === 2, 5000, () => 'the reconnect (a second ready event)')
  t.same(lastEventIds, [null, before[1]!.id], 'the reconnect sent Last-Event-ID with the last id it saw')
  t.not((JSON.parse(readies[1]!) as { client: number }).client, first.client, 'a new stream')

  const r = await publish(run.base, '', 'five', PUB)
  t.same(r, { status: 200, json: { id: r.json.id, delivered: 1 } }, 'five: delivered live after the reconnect')
  const after = { type: 'message', id: String(r.json.id), data: 'five' }
  // The replay comes before any live event, so once `five` is in, any duplicate would be too.
  await until(() => seen.some((e) => e.data === 'five'), 5000, () => `five, got ${JSON.stringify(seen)}`)
  t.strictSame(seen, [...before, ...away, after], 'every event exactly once, in order, no reset')
  t.ok(errors >= 1, 'the client noticed the closed stream')
})
