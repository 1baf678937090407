// `rawsse listen` and `rawsse publish` (src/commands/listen.ts, publish.ts) as real child processes of the built
// dist/cli.js (`npx tsc -p .` first), against a rawsse server on port 0 in this process, or a raw
// node:net server. Exact output lines, standard input, signals and exit codes 0, 1 and 2.

import t from 'tap'
import * as net from 'node:net'
import { SseClient, type SseEvent } from '../src/index.js'
import { PUB, publish, sleep, startServer, TOKEN } from './helpers.js'
import { Child, CLI, until, type Exit, type Teardown } from './process.js'


// The environment of every child: no token from the developer's shell.
const ENV = { ...process.env }
delete ENV.RAWSSE_TOKEN

/** `node dist/cli.js ARGS`, output collected; killed by its own PID at the test's end if still running. */
class Cli extends Child {
  constructor(t: Teardown, args: readonly string[], env: NodeJS.ProcessEnv = ENV) {
    super(t, process.execPath, [CLI, ...args], { env })
  }

  /** Complete stdout lines so far. */
  get lines(): string[] {
    const all = this.stdout.split('\n')
    all.pop()
    return all
  }

  waitLines(n: number): Promise<string[]> {
    return until(
      () => {
        if (this.exit !== null && this.lines.length < n) throw new Error(`exited ${JSON.stringify(this.exit)} before ${n} lines; stdout ${JSON.stringify(this.stdout)}; stderr ${JSON.stringify(this.stderr)}`)
        return this.lines.length >= n && this.lines
      },
      () => `${n} lines; stdout ${JSON.stringify(this.stdout)}; stderr ${JSON.stringify(this.stderr)}`,
    )
  }

}

/** Run to the end; stdin gets `input` (then EOF). */
async function run(t: Teardown, args: readonly string[], input = '', env: NodeJS.ProcessEnv = ENV): Promise<{ exit: Exit; stdout: string; stderr: string }> {
  const cli = new Cli(t, args, env)
  cli.proc.stdin!.end(input)
  const exit = await cli.waitExit()
  return { exit, stdout: cli.stdout, stderr: cli.stderr }
}

const EXIT_0 = { code: 0, signal: null }
const EXIT_1 = { code: 1, signal: null }
const EXIT_2 = { code: 2, signal: null }

const readyLine = (client: number, lastId: string | null = null): string =>
  JSON.stringify({ event: 'ready', id: lastId, data: JSON.stringify({ client, user: null, channels: ['default'], key: 'KEY' }) })

/** A printed line with the random stream key of a ready event (live channels) replaced by KEY. */
const keyless = (lines: readonly string[]): string[] => lines.map((l) => l.replace(/("key\\?":\\?")[\w-]{22}/, '$1KEY'))

/** An in-process client of the server, to see what `publish` sent. */
async function listenInProcess(t: Teardown, url: string): Promise<SseEvent[]> {
  const events: SseEvent[] = []
  const client = new SseClient(url)
  t.teardown(() => client.close())
  client.on('message', (e) => events.push(e))
  await until(() => events.length > 0, () => 'the ready event')
  return events
}

// ------------------------------------------------------------------ listen

t.test('listen --json prints exactly one {"event","id","data"} object per line; Ctrl-C exits 0', async (t) => {
  const { base } = await startServer(t)
  const cli = new Cli(t, ['listen', `${base}/events/${TOKEN}`, '--json'])
  await cli.waitLines(1)
  await publish(base, 'event=greet&id=a1', 'hello')
  await publish(base, 'id=a2', 'l1\nl2')
  await publish(base, 'event=say', 'quote " backslash \\ ü 😀')
  const lines = await cli.waitLines(4)
  t.same(keyless(lines.slice(0, 3)), [readyLine(1), '{"event":"greet","id":"a1","data":"hello"}', '{"event":"message","id":"a2","data":"l1\\nl2"}'])
  // Published without an id: the server assigns one.
  t.match(lines[3], /^\{"event":"say","id":"\d+","data":"quote \\" backslash \\\\ ü 😀"\}$/)
  cli.kill('SIGINT')
  t.same(await cli.waitExit(), EXIT_0)
  t.match(cli.stderr, /^rawsse listen: connected to http:\/\/127\.0\.0\.1:\d+\/events\/tok\n$/)
})

t.test('listen prints a readable line per event, with line breaks and control characters escaped', async (t) => {
  const { base } = await startServer(t)
  const cli = new Cli(t, ['listen', `${base}/events/${TOKEN}`])
  await cli.waitLines(1)
  await publish(base, 'event=greet&id=a1', 'hello world')
  await publish(base, 'id=a2', 'l1\nl2\\x')
  await publish(base, 'id=a3&event=evil', '\x1b[31mred\x07')
  const lines = await cli.waitLines(4)
  t.same(keyless(lines), ['ready: {"client":1,"user":null,"channels":["default"],"key":"KEY"}', 'greet #a1: hello world', 'message #a2: l1\\nl2\\\\x', 'evil #a3: \\x1b[31mred\\x07'])
  cli.kill('SIGTERM')
  t.same(await cli.waitExit(), EXIT_0)
})

t.test('listen --last-event-id resumes after that event', async (t) => {
  const { base } = await startServer(t)
  for (const id of ['1', '2', '3']) await publish(base, `id=${id}`, `event ${id}`)
  const cli = new Cli(t, ['listen', `${base}/events/${TOKEN}`, '--last-event-id', '1', '--json'])
  const lines = await cli.waitLines(3)
  t.same(keyless(lines), [
    readyLine(1, '1'), // the ready event has no id: it carries the last event id, the one we resume from
    '{"event":"message","id":"2","data":"event 2"}',
    '{"event":"message","id":"3","data":"event 3"}',
  ])
  cli.kill('SIGINT')
  t.same(await cli.waitExit(), EXIT_0)
})

t.test('listen reconnects after DELETE /clients/ID and goes on', async (t) => {
  const { base } = await startServer(t, { retryMs: 50 })
  const cli = new Cli(t, ['listen', `${base}/events/${TOKEN}`, '--json'])
  await cli.waitLines(1)
  await publish(base, 'id=x1', 'before')
  await cli.waitLines(2)
  const res = await fetch(`${base}/clients/1`, { method: 'DELETE', headers: { authorization: `Bearer ${PUB}` } })
  t.equal(res.status, 200)
  await cli.waitLines(3)
  await publish(base, 'id=x2', 'after')
  const lines = await cli.waitLines(4)
  t.same(keyless(lines), [readyLine(1), '{"event":"message","id":"x1","data":"before"}', readyLine(2, 'x1'), '{"event":"message","id":"x2","data":"after"}'])
  t.match(cli.stderr, /the server ended the stream; reconnecting in \d+\.\d s\n/)
  cli.kill('SIGINT')
  t.same(await cli.waitExit(), EXIT_0)
})

t.test('listen exits 1 with the status on stderr when the server refuses the stream', async (t) => {
  const { base } = await startServer(t)
  const { exit, stdout, stderr } = await run(t, ['listen', `${base}/events/wrong-token`])
  t.same(exit, EXIT_1)
  t.equal(stdout, '')
  t.match(stderr, /^rawsse listen: HTTP 401 Unauthorized: .+\n$/)
})

t.test('listen exits 0 when the server answers 204 No Content', async (t) => {
  const server = net.createServer((s) => {
    s.on('error', () => {})
    s.once('data', () => s.end('HTTP/1.1 204 No Content\r\n\r\n'))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const { exit, stdout, stderr } = await run(t, ['listen', `http://127.0.0.1:${port}/events`])
  t.same(exit, EXIT_0)
  t.equal(stdout, '')
  t.equal(stderr, '')
})

t.test('listen exits 0 when the reader of its output goes away', async (t) => {
  const { base } = await startServer(t)
  const cli = new Cli(t, ['listen', `${base}/events/${TOKEN}`])
  await cli.waitLines(1)
  cli.proc.stdout!.destroy()
  // Keep publishing until a write hits the closed pipe.
  for (let i = 0; i < 50 && cli.exit === null; i++) {
    await publish(base, '', `line ${i}`)
    await sleep(20)
  }
  t.same(await cli.waitExit(), EXIT_0)
})

for (const [args, why] of [
  [['listen'], /missing URL/],
  [['listen', 'ftp://127.0.0.1/'], /unsupported protocol ftp:/],
  [['listen', 'not a url'], /not a valid URL/],
  [['listen', 'http://127.0.0.1:1/', '--bogus'], /unknown flag: --bogus/],
  [['listen', 'http://127.0.0.1:1/', '--last-event-id'], /--last-event-id needs a value/],
  [['listen', 'http://127.0.0.1:1/', '--json=yes'], /--json takes no value/],
  [['listen', 'http://127.0.0.1:1/', 'extra'], /unexpected argument: extra/],
] as const) {
  t.test(`listen ${args.slice(1).join(' ') || '(no arguments)'}: one line on stderr, exit 2`, async (t) => {
    const { exit, stdout, stderr } = await run(t, args)
    t.same(exit, EXIT_2)
    t.equal(stdout, '')
    t.match(stderr, why)
    t.equal(stderr.split('\n').length, 2, 'one line')
  })
}

// ------------------------------------------------------------------ publish

t.test('publish DATA prints the JSON answer, exits 0, and the stream gets the event', async (t) => {
  const { base } = await startServer(t)
  const events = await listenInProcess(t, `${base}/events/${TOKEN}?channel=news`)
  const { exit, stdout, stderr } = await run(t, ['publish', base, '--token', PUB, '--channel', 'news', '--event', 'greet', '--id', 'p1', 'hello world'])
  t.same(exit, EXIT_0)
  t.equal(stdout, '{"id":"p1","delivered":1}\n')
  t.equal(stderr, '')
  await until(() => events.length === 2, () => 'the event')
  t.same(events[1], { event: 'greet', data: 'hello world', id: 'p1' })
})

t.test('publish - reads the data from standard input, one trailing line break removed', async (t) => {
  const { base } = await startServer(t)
  const events = await listenInProcess(t, `${base}/events/${TOKEN}`)
  const a = await run(t, ['publish', `${base}/publish`, '--token', PUB, '--id', 's1', '-'], 'line1\nline2\n')
  t.same(a.exit, EXIT_0)
  t.equal(a.stdout, '{"id":"s1","delivered":1}\n')
  const b = await run(t, ['publish', `${base}/`, `--token=${PUB}`, '--id=s2', '-'], 'ends with a blank line\r\n\r\n')
  t.same(b.exit, EXIT_0)
  const c = await run(t, ['publish', base, '--token', PUB, '--id', 's3', '--', '-starts with a dash'])
  t.same(c.exit, EXIT_0)
  await until(() => events.length === 4, () => `3 events; got ${JSON.stringify(events)}`)
  t.same(
    events.slice(1).map((e) => e.data),
    ['line1\nline2', 'ends with a blank line\n', '-starts with a dash'],
  )
})

t.test('publish targets one stream with --client, and reads the token from RAWSSE_TOKEN', async (t) => {
  const { base } = await startServer(t)
  const events = await listenInProcess(t, `${base}/events/${TOKEN}`)
  const client = (JSON.parse(events[0]!.data) as { client: number }).client
  const { exit, stdout } = await run(t, ['publish', base, '--client', String(client), 'just you'], '', { ...ENV, RAWSSE_TOKEN: PUB })
  t.same(exit, EXIT_0)
  t.match(stdout, /^\{"id":"\d+","delivered":1\}\n$/)
  await until(() => events.length === 2, () => 'the event')
  t.equal(events[1]!.data, 'just you')
})

t.test("publish exits 1 with the server's error on stderr", async (t) => {
  const { base } = await startServer(t)
  const cases: Array<[string[], RegExp]> = [
    [['--token', 'wrong'], /^rawsse publish: HTTP 401 Unauthorized: \{"error":"a valid bearer token is required"\}\n$/],
    [['--token', TOKEN], /^rawsse publish: HTTP 403 Forbidden: \{"error":"the token lacks the publish role"\}\n$/],
    [['--token', PUB, '--user', 'nobody'], /^rawsse publish: HTTP 404 Not Found: \{"delivered":0,"error":"offline"\}\n$/],
    [['--token', PUB, '--event', 'a\nb'], /^rawsse publish: HTTP 400 Bad Request: .+\n$/],
  ]
  for (const [flags, stderr] of cases) {
    const r = await run(t, ['publish', base, ...flags, 'data'])
    t.same(r.exit, EXIT_1, flags.join(' '))
    t.equal(r.stdout, '', 'nothing on stdout')
    t.match(r.stderr, stderr)
  }
})

t.test('publish exits 1 when nothing listens on the port', async (t) => {
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const { exit, stderr } = await run(t, ['publish', `http://127.0.0.1:${port}`, '--token', 'x', 'data'])
  t.same(exit, EXIT_1)
  t.match(stderr, /^rawsse publish: http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED.*\n$/)
})

for (const [args, why] of [
  [['publish'], /missing URL/],
  [['publish', 'http://127.0.0.1:1', 'data'], /--token is required/],
  [['publish', 'http://127.0.0.1:1', '--token', 't', '--bogus', 'x'], /unknown flag: --bogus/],
  [['publish', 'http://127.0.0.1:1', '--token', 't', '-x'], /unknown flag: -x/],
  [['publish', 'http://127.0.0.1:1', '--token', 't', '--event'], /--event needs a value/],
  [['publish', 'http://127.0.0.1:1', '--token', 't', 'one', 'two'], /unexpected argument: two/],
  [['publish', 'mailto:a@b', '--token', 't'], /unsupported protocol mailto:/],
] as const) {
  t.test(`publish ${args.slice(1).join(' ') || '(no arguments)'}: one line on stderr, exit 2`, async (t) => {
    const { exit, stdout, stderr } = await run(t, args)
    t.same(exit, EXIT_2)
    t.equal(stdout, '')
    t.match(stderr, why)
    t.equal(stderr.split('\n').length, 2, 'one line')
  })
}

t.test('--help of listen, publish and the server', async (t) => {
  for (const [args, first] of [
    [['listen', '--help'], /^Usage: rawsse listen URL/],
    [['publish', '--help'], /^Usage: rawsse publish URL --token T/],
  ] as const) {
    const r = await run(t, args)
    t.same(r.exit, EXIT_0)
    t.match(r.stdout, first)
    t.equal(r.stderr, '')
  }
  const server = await run(t, ['--help'])
  t.same(server.exit, EXIT_0)
  t.match(server.stdout, /rawsse listen URL/, 'the server help mentions the client commands')
})
