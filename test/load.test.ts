// `rawsse bench` (src/load/) as a child process of the built dist/cli.js
// (`npx tsc -p .` first), against rawsse on port 0 in this process, or against a raw node:net
// SSE server that drops and repeats events on purpose. Counts must match exactly; no timings.

import t, { type Test } from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as net from 'node:net'
import { PUB, rng, startServer, TOKEN } from './helpers.js'
import { Histogram } from '../src/load/stats.js'
import { STREAMS_PER_SOURCE_ADDRESS } from '../src/load/limits.js'
import { sourceAddress } from '../src/load/worker.js'
import { Child, CLI, type Exit, type Teardown } from './process.js'
import type { BenchReport } from '../src/load/report.js'
import { progressLine } from '../src/load/live.js'

/** A bench run is short, but starts node once or thrice (workers). */
const RUN_MS = 20_000

interface Run {
  exit: Exit
  stdout: string
  stderr: string
}

async function bench(t: Teardown, args: readonly string[]): Promise<Run> {
  const child = new Child(t, process.execPath, [CLI, 'bench', ...args], { stdin: 'ignore' })
  const exit = await child.waitExit(RUN_MS)
  return { exit, stdout: child.stdout, stderr: child.stderr }
}

/** The --json report: exactly one line, one object, nothing else on stdout. */
function report(t: Test, run: Run): BenchReport {
  t.same(run.exit, { code: 0, signal: null }, `exit 0; stderr: ${run.stderr}`)
  const lines = run.stdout.split('\n')
  t.equal(lines.length, 2, 'one line on stdout')
  t.equal(lines[1], '')
  return JSON.parse(lines[0]!) as BenchReport
}

/** A loopback port nothing listens on (taken from the kernel, then let go). */
async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as net.AddressInfo
  await new Promise((resolve) => s.close(resolve))
  return port
}

async function rawsse(t: Teardown): Promise<{ stream: string; publish: string[] }> {
  const { base } = await startServer(t)
  return { stream: `${base}/events/${TOKEN}`, publish: ['--publish', `${base}/publish`, '--publish-header', `Authorization: Bearer ${PUB}`] }
}

t.test('counts every delivery of a closed-loop run exactly', async (t) => {
  const s = await rawsse(t)
  const r = report(t, await bench(t, [s.stream, '--streams', '50', ...s.publish, '--events', '200', '--window', '4', '--json']))
  t.match(r, {
    streams: 50,
    connected: 50,
    connectErrors: 0,
    streamErrors: 0,
    published: 200,
    publishErrors: 0,
    expectedDeliveries: 10_000,
    received: 10_000,
    lost: 0,
    duplicates: 0,
    workers: 1,
  })
  t.ok(r.deliveriesPerSecond > 0)
  t.ok(r.latencyMs.p50! >= 0 && r.latencyMs.p50! <= r.latencyMs.p90! && r.latencyMs.p90! <= r.latencyMs.p99! && r.latencyMs.p99! <= r.latencyMs.max!, 'percentiles in order')
  t.ok(r.benchCpu.userMs + r.benchCpu.systemMs > 0, 'reports its own CPU')
})

t.test('publishes at a fixed rate and stops after --events', async (t) => {
  const s = await rawsse(t)
  const r = report(t, await bench(t, [s.stream, '--streams', '20', ...s.publish, '--rate', '1000', '--events', '100', '--json']))
  t.match(r, { connected: 20, published: 100, expectedDeliveries: 2000, received: 2000, lost: 0, duplicates: 0 })
})

t.test('reports a lost event as lost and a repeated one as a duplicate', async (t) => {
  // An SSE server that publishes what is POSTed to it, but never sends seq 7 to its first
  // stream and sends seq 9 twice to its second. Pipelined POSTs are answered in order.
  const SKIP = 7
  const TWICE = 9
  const streams: net.Socket[] = []
  const server = net.createServer((socket) => {
    let buf = Buffer.alloc(0)
    socket.on('error', () => {})
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      for (;;) {
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const head = buf.toString('latin1', 0, end)
        if (head.startsWith('GET ')) {
          socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n')
          streams.push(socket)
          buf = Buffer.alloc(0)
          return
        }
        const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0)
        if (buf.length < end + 4 + length) return
        const body = buf.toString('utf8', end + 4, end + 4 + length)
        buf = buf.subarray(end + 4 + length)
        const seq = Number(body.split(' ')[0])
        const event = `data: ${body}\n\n`
        const chunk = `${Buffer.byteLength(event).toString(16)}\r\n${event}\r\n`
        streams.forEach((s, i) => {
          if (i === 0 && seq === SKIP) return
          s.write(i === 1 && seq === TWICE ? chunk + chunk : chunk)
        })
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of streams) s.destroy()
    server.close()
  })
  const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const r = report(t, await bench(t, [`${base}/sse`, '--streams', '5', '--publish', `${base}/pub`, '--events', '20', '--json']))
  t.match(r, { connected: 5, published: 20, expectedDeliveries: 100, received: 99, lost: 1, duplicates: 1 })
})

t.test('splits streams over worker processes and sums their counts exactly', async (t) => {
  const s = await rawsse(t)
  const r = report(t, await bench(t, [s.stream, '--streams', '51', '--workers', '2', ...s.publish, '--events', '100', '--window', '8', '--json']))
  t.match(r, { workers: 2, streams: 51, connected: 51, published: 100, expectedDeliveries: 5100, received: 5100, lost: 0, duplicates: 0 })
})

t.test('without --publish, connects every stream and holds them', async (t) => {
  const { server, base } = await startServer(t)
  const child = new Child(t, process.execPath, [CLI, 'bench', `${base}/events/${TOKEN}`, '--streams', '25', '--duration', '1', '--json'], { stdin: 'ignore' })
  // While it holds them, the server sees every stream open.
  const deadline = Date.now() + RUN_MS
  while (server.clientCount < 25 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  t.equal(server.clientCount, 25)
  await child.waitExit(RUN_MS)
  const r = report(t, { exit: child.exit!, stdout: child.stdout, stderr: child.stderr })
  t.match(r, { streams: 25, connected: 25, connectErrors: 0, published: 0, received: 0, lost: 0, latencyMs: { p50: null, max: null } })
})

t.test('counts refused streams as connect errors and exits 1 when none connected', async (t) => {
  const { base } = await startServer(t)
  const run = await bench(t, [`${base}/events/wrong`, '--streams', '3', '--duration', '0', '--json'])
  t.same(run.exit, { code: 1, signal: null })
  t.match(JSON.parse(run.stdout) as BenchReport, { connected: 0, connectErrors: 3 })
  t.match(run.stderr, /3 streams failed to connect; first: HTTP 401/)
})

t.test('a publish target that refuses stops the run at once: one line, exit 1, no hammering', async (t) => {
  const s = await rawsse(t)
  const started = Date.now()
  const wrong = ['--publish', s.publish[1]!, '--publish-header', 'Authorization: Bearer wrong']
  const run = await bench(t, [s.stream, '--streams', '5', ...wrong, '--duration', '10', '--window', '4', '--json'])
  t.same(run.exit, { code: 1, signal: null }, 'exit 1')
  t.ok(Date.now() - started < 8_000, 'stopped long before --duration 10')
  const lines = run.stderr.split('\n').filter(Boolean)
  t.equal(lines.length, 1, `one line on standard error: ${run.stderr}`)
  t.match(lines[0], /^rawsse bench: publishing failed, run stopped: http:\/\/127\.0\.0\.1:\d+\/publish answered HTTP 401 Unauthorized "\{"error":"[^"]+"\}"$/)
  const r = JSON.parse(run.stdout) as BenchReport
  t.equal(r.published, 0)
  t.ok(r.publishErrors >= 1 && r.publishErrors <= 4, `at most one window of refused publishes (${r.publishErrors})`)
})

t.test('a publish target that refuses connections stops the run after 2 s of failures, one line, exit 1', async (t) => {
  const s = await rawsse(t)
  const closed = await freePort()
  const run = await bench(t, [s.stream, '--streams', '5', '--publish', `http://127.0.0.1:${closed}/publish`, '--duration', '10', '--json'])
  t.same(run.exit, { code: 1, signal: null }, 'exit 1')
  const lines = run.stderr.split('\n').filter(Boolean)
  t.equal(lines.length, 1, `one line on standard error: ${run.stderr}`)
  t.match(lines[0], /^rawsse bench: publishing failed, run stopped: no publish succeeded for 2 s; the last: connection closed: connect ECONNREFUSED/)
  const r = JSON.parse(run.stdout) as BenchReport
  t.equal(r.published, 0)
  t.ok(r.publishErrors <= 40, `publishes are retried after a pause, not in a loop (${r.publishErrors} in 2 s)`)
})

t.test('an answer that is not an event stream is quoted on one short line', async (t) => {
  const page = `<!doctype html>\n<html>\n  <head><title>Welcome</title></head>\n  <body>${'<p>lorem ipsum</p>\n'.repeat(300)}</body>\n</html>\n`
  const server = net.createServer((socket) => {
    socket.once('data', () => socket.end(`HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: ${Buffer.byteLength(page)}\r\n\r\n${page}`))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as net.AddressInfo
  const run = await bench(t, [`http://127.0.0.1:${port}/`, '--streams', '2', '--duration', '0', '--json'])
  t.same(run.exit, { code: 1, signal: null })
  const lines = run.stderr.split('\n').filter(Boolean)
  t.equal(lines.length, 1, 'one line')
  t.match(lines[0], /^rawsse bench: 2 streams failed to connect; first: Content-Type text\/html, not text\/event-stream "<!doctype html> <html> <head><title>Welcome<\/title><\/head> <body><p>lorem[^"]*…"$/)
  const quote = /"(.*)"$/.exec(lines[0]!)![1]!
  t.ok(quote.length <= 80, `the quote is cut to 80 characters (${quote.length}), from a page of ${page.length}`)
})

t.test('--out writes one JSON line per second whose deliveries add up to the report', async (t) => {
  const s = await rawsse(t)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-out-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const out = path.join(dir, 'run.jsonl')
  const r = report(t, await bench(t, [s.stream, '--streams', '20', ...s.publish, '--rate', '200', '--duration', '2.5', '--warmup', '0', '--out', out, '--json']))
  const lines = readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
  t.ok(lines.length >= 3, `a line a second and a last one (${lines.length})`)
  for (const l of lines) t.same(Object.keys(l), ['t', 'phase', 'open', 'published', 'deliveries', 'lost', 'p50Ms', 'p99Ms', 'maxMs', 'errors'])
  t.equal(lines.reduce((n, l) => n + (l.deliveries as number), 0), r.received, 'the seconds\' deliveries add up to the report\'s')
  t.ok(lines.some((l) => typeof l.p99Ms === 'number' && l.p99Ms >= (l.p50Ms as number)), 'latency quantiles for seconds with deliveries')
  t.ok(lines.every((l) => l.lost === 0 && l.errors === 0), 'nothing lost on a healthy run')
})

t.test('the progress line fits 80 columns whatever the counts', async (t) => {
  const big = { phase: 'connecting', streams: 1_000_000, connected: 999_999, connectErrors: 123_456, open: 999_999, published: 0, publishErrors: 0, received: 0 }
  for (const phase of ['connecting', 'publishing', 'draining', 'holding']) {
    const line = progressLine({ ...big, phase, published: 123_456_789, publishErrors: 99_999, open: 900_000 }, 12_345_678, 80)
    t.ok(line.length < 80, `${phase}: ${line.length} characters: ${line}`)
  }
  t.equal(progressLine({ ...big, phase: 'publishing' }, 0, 30).length, 29, 'cut to a narrow terminal')
})

t.test('a bad command line is one line on standard error and exit 2', async (t) => {
  const u = 'http://127.0.0.1:1/events/x'
  const cases: string[][] = [
    [],
    [u, '--streams', '0'],
    [u, '--streams', 'many'],
    [u, '--bogus'],
    [u, '--rate', '10'], // needs --publish
    [u, '--publish', u, '--rate', '10', '--window', '2'],
    [u, '--publish', u, '--body', 'no placeholders'],
    [u, '--header', 'no colon'],
    ['ftp://example.com/'],
    [u, u],
  ]
  for (const args of cases) {
    const run = await bench(t, args)
    t.same(run.exit, { code: 2, signal: null }, args.join(' '))
    t.equal(run.stdout, '')
    t.match(run.stderr, /^rawsse bench: [^\n]+\n$/)
  }
  const help = await bench(t, ['--help'])
  t.same(help.exit, { code: 0, signal: null })
  t.match(help.stdout, /^Usage: rawsse bench URL/)
})

t.test('latency quantiles are within 1/128 of the exact ones', async (t) => {
  const next = rng(6)
  for (const scale of [100, 10_000, 5_000_000]) {
    const h = new Histogram()
    const samples: number[] = []
    for (let i = 0; i < 20_000; i++) {
      // Long-tailed, like latencies: most small, a few far out.
      const us = Math.floor(scale * -Math.log(1 - next()))
      samples.push(us)
      h.record(us)
    }
    samples.sort((a, b) => a - b)
    t.equal(h.count, samples.length)
    t.equal(h.max, samples[samples.length - 1])
    for (const q of [0.5, 0.9, 0.99, 0.999, 1]) {
      const exact = samples[Math.max(1, Math.ceil(q * samples.length)) - 1]!
      const got = h.quantile(q)
      t.ok(got >= exact && got <= exact + Math.max(0, Math.floor(exact / 128)), `scale ${scale} q ${q}: ${got} µs for exact ${exact} µs`)
    }
  }
  // Merging another worker's buckets gives the same quantiles as recording into one.
  const a = new Histogram()
  const b = new Histogram()
  const both = new Histogram()
  for (let i = 0; i < 5_000; i++) {
    const us = Math.floor(1_000_000 * next())
    ;(i % 2 ? a : b).record(us)
    both.record(us)
  }
  a.add(Array.from(b.counts), b.count, b.max)
  for (const q of [0.5, 0.99, 1]) t.equal(a.quantile(q), both.quantile(q), `merged q ${q}`)
})

t.test('streams past 14 000 come from the next loopback source address', async (t) => {
  t.equal(sourceAddress(0), null, 'the first block: the kernel picks 127.0.0.1')
  t.equal(sourceAddress(STREAMS_PER_SOURCE_ADDRESS - 1), null)
  t.equal(sourceAddress(STREAMS_PER_SOURCE_ADDRESS), '127.0.0.2')
  t.equal(sourceAddress(2 * STREAMS_PER_SOURCE_ADDRESS - 1), '127.0.0.2')
  t.equal(sourceAddress(2 * STREAMS_PER_SOURCE_ADDRESS), '127.0.0.3')
  t.equal(sourceAddress(255 * STREAMS_PER_SOURCE_ADDRESS), '127.0.1.0')
  // A bound block must fit in the half of this machine's ephemeral ports that bind() to port 0
  // searches first (the even ones), or its last streams each search long for a port.
  const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
  t.ok(STREAMS_PER_SOURCE_ADDRESS <= (hi! - lo! + 1) / 2, `a block of ${STREAMS_PER_SOURCE_ADDRESS} fits in half the ephemeral ports ${lo}–${hi}`)
  // The kernel takes such an address as a source for a 127.0.0.1 server: the server sees it.
  const seen = new Promise<string | undefined>((resolve) => {
    const server = net.createServer((s) => {
      resolve(s.remoteAddress)
      s.destroy()
      server.close()
    })
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      net.connect({ port, host: '127.0.0.1', localAddress: sourceAddress(STREAMS_PER_SOURCE_ADDRESS)! }).on('error', () => {})
    })
  })
  t.equal(await seen, '127.0.0.2')
})
