// rawsse behind nginx (issue 15): the nginx configuration of docs/production.md's "Behind a proxy" section,
// run as printed (only its ports and paths swapped for temporary ones) in front of the real CLI.
// Streams through it are unbuffered, Last-Event-ID and the bearer pass through, the access log
// never holds a token, and browsers' HTTP/2 reaches rawsse as HTTP/1.1.
//
// nginx (Debian's) runs in the foreground from a temporary prefix and is stopped by its PID.
// Without nginx or openssl the file says what it skipped and passes; under CI=true it fails, so
// CI can never go green without having run it.

import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as https from 'node:https'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import * as tls from 'node:tls'
import { canRun, UNDER_CI } from './needs.js'
import { Child, ROOT, START_MS, startCli, until, type Teardown } from './process.js'

const SUB = `sub-${randomBytes(12).toString('hex')}` // may open streams; must never reach the access log
const PUB = `pub-${randomBytes(12).toString('hex')}` // may publish
const PROMPT_MS = 1000 // an unbuffered event crosses loopback in milliseconds; a buffered one never comes
// CI=true (GitHub Actions, GitLab and most others); CI=1 on a few.

/** The nginx command that runs (on PATH, else Debian's /usr/sbin/nginx, not on a non-root PATH), or null. */
function findNginx(): string | null {
  return ['nginx', '/usr/sbin/nginx'].find((bin) => spawnSync(bin, ['-v']).status === 0) ?? null
}

function whyNot(nginx: string | null): string | null {
  if (nginx === null) return 'nginx is not installed (Debian: apt-get install nginx)'
  if (spawnSync('openssl', ['version']).status !== 0) return 'openssl is not installed, so no certificate for TLS (Debian: apt-get install openssl)'
  return null
}

/** Where readers find the configuration (docs/production.md, "Behind a proxy"). */
const PAGE = 'docs/production.md'

/** The ```nginx blocks of docs/production.md's "Behind a proxy" section: what the test runs is what readers copy. */
function pageNginx(): string {
  const page = readFileSync(path.join(ROOT, PAGE), 'utf8')
  const start = page.indexOf('\n## Behind a proxy\n')
  if (start === -1) throw new Error(`${PAGE} has no "## Behind a proxy" section`)
  const end = page.indexOf('\n## ', start + 1)
  const blocks = [...page.slice(start, end === -1 ? undefined : end).matchAll(/\n```nginx\n([\s\S]*?)\n```\n/g)].map((m) => m[1]!)
  if (blocks.length === 0) throw new Error(`${PAGE} "Behind a proxy" has no \`\`\`nginx block`)
  return blocks.join('\n')
}

/** `conf` with every `from` replaced; a placeholder the page no longer has is an error, not a silent no-op. */
function swap(conf: string, from: string, to: string): string {
  if (!conf.includes(from)) throw new Error(`the nginx block of ${PAGE} no longer contains ${JSON.stringify(from)}; update test/proxy.test.ts`)
  return conf.replaceAll(from, to)
}

/** The page's block inside a main context of our own: one worker, and every file nginx writes inside `dir`. */
function nginxConf(dir: string, port: number, upstream: number, cert: string, key: string): string {
  let conf = pageNginx()
  conf = swap(conf, 'listen 443 ', `listen 127.0.0.1:${port} `)
  conf = swap(conf, '127.0.0.1:8080', `127.0.0.1:${upstream}`)
  conf = swap(conf, '/etc/ssl/sse.example.com.crt', cert)
  conf = swap(conf, '/etc/ssl/sse.example.com.key', key)
  conf = swap(conf, '/var/log/nginx/', `${dir}/`)
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((k) => `    ${k}_temp_path ${dir}/${k};`).join('\n')
  return `worker_processes 1;\nevents { worker_connections 256; }\nhttp {\n${temp}\n    access_log ${dir}/access.log;\n${conf}\n}\n`
}

/** A self-signed certificate for 127.0.0.1 (as in test/operations.test.ts). */
function makeCert(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'proxy.crt')
  const key = path.join(dir, 'proxy.key')
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=proxy', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`)
  return { cert, key }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })
}

/** Children of a process, from /proc: nginx's worker, killed too if the master will not stop. */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** nginx in the foreground on `dir/nginx.conf`; stopped by its PID, then `dir` removed, at the test's end. */
function startNginx(t: Teardown, bin: string, dir: string): { stderr: () => string; exited: () => boolean } {
  const proc = spawn(bin, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', 'stderr', '-g', `daemon off; pid ${dir}/nginx.pid; error_log stderr;`], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  let exited = false
  proc.stderr.setEncoding('utf8')
  proc.stderr.on('data', (d: string) => (stderr += d))
  proc.on('exit', () => (exited = true))
  proc.on('error', (err) => ((stderr += `spawn error: ${err.message}\n`), (exited = true)))
  t.teardown(async () => {
    const pid = proc.pid
    if (!exited && pid !== undefined) {
      const workers = childPids(pid)
      // SIGTERM is nginx's fast shutdown; SIGQUIT would wait for every open stream to end.
      process.kill(pid, 'SIGTERM')
      await until(() => exited, () => 'nginx to exit on SIGTERM').catch(() => {
        for (const p of [pid, ...workers]) {
          try {
            process.kill(p, 'SIGKILL')
          } catch {
            // already gone
          }
        }
      })
    }
    rmSync(dir, { recursive: true, force: true })
  })
  return { stderr: () => stderr, exited: () => exited }
}

/** One request through nginx with node:https (HTTP/1.1, the certificate trusted), answered in full. */
function request(port: number, ca: Buffer, method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, method, path: target, headers, ca, agent: false }, (res) => {
      let b = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (b += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** The chunked body of a raw response, decoded as far as whole chunks go (nginx re-chunks what rawsse sent). */
function dechunk(raw: string): string {
  let out = ''
  let i = raw.indexOf('\r\n\r\n') + 4
  for (;;) {
    const eol = raw.indexOf('\r\n', i)
    if (eol === -1) return out
    const size = parseInt(raw.slice(i, eol), 16)
    if (!(size > 0) || eol + 2 + size + 2 > raw.length) return out
    out += raw.slice(eol + 2, eol + 2 + size)
    i = eol + 2 + size + 2
  }
}

/** What a stream's text holds after its `ready` event: the replay and live events, byte for byte. */
function afterReady(text: string): string {
  const ready = text.indexOf('event: ready\n')
  return ready === -1 ? '' : text.slice(text.indexOf('\n\n', ready) + 2)
}

/** A stream read over raw TLS (HTTP/1.1, as non-browser clients read it): the bytes nginx sends. */
class TlsStream {
  raw = ''
  closed = false

  private constructor(readonly socket: tls.TLSSocket) {
    socket.on('data', (d: Buffer) => (this.raw += d.toString('latin1')))
    socket.on('error', () => {})
    socket.on('close', () => (this.closed = true))
  }

  /** GET `target` through nginx and wait for the `ready` event. */
  static async open(t: Teardown, port: number, ca: Buffer, target: string, headers: Record<string, string> = {}): Promise<TlsStream> {
    const s = new TlsStream(tls.connect({ host: '127.0.0.1', port, ca, ALPNProtocols: ['http/1.1'] }))
    t.teardown(() => s.socket.destroy())
    let head = `GET ${target} HTTP/1.1\r\nHost: sse.example.com\r\n`
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
    s.socket.write(head + '\r\n')
    // nginx and rawsse are up already: a stream that takes longer is one nginx is holding back.
    await s.waitFor((text) => text.includes('event: ready\n'), 5000, 'the ready event through nginx')
    return s
  }

  get head(): string {
    return this.raw.slice(0, this.raw.indexOf('\r\n\r\n') + 4)
  }

  /** The stream's SSE text so far. */
  get text(): string {
    return dechunk(this.raw)
  }

  waitFor(test: (text: string) => boolean, ms: number, what: string): Promise<true> {
    return until(
      () => {
        if (test(this.text)) return true
        if (this.closed) throw new Error(`stream closed before ${what}: ${JSON.stringify(this.raw)}`)
        return false
      },
      () => `${what}; received ${JSON.stringify(this.raw)}`,
      ms,
    )
  }
}

const nginx = findNginx()
if (canRun(t, 'proxy', 'nginx tests', whyNot(nginx))) {
  // Heartbeat and tick off: nothing but the event under test can push bytes through nginx.
  const rawsse = await startCli(t, ['--port', '0', '--tick', '0', '--heartbeat', '0', '--token', SUB, '--publish-token', PUB])
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-proxy-'))
  // Running as root, nginx's worker runs as nobody and must get into the folder of its temp files.
  chmodSync(dir, 0o755)
  const { cert, key } = makeCert(dir)
  const ca = readFileSync(cert)
  const port = await freePort()
  writeFileSync(path.join(dir, 'nginx.conf'), nginxConf(dir, port, rawsse.port, cert, key))
  const proxy = startNginx(t, nginx!, dir)
  await until(
    async () => {
      if (proxy.exited()) throw new Error(`nginx exited: ${proxy.stderr()}`)
      return (await request(port, ca, 'GET', '/healthz').catch(() => null))?.status === 200
    },
    () => `GET /healthz through nginx; nginx said: ${proxy.stderr()}`,
    START_MS,
  )
  const version = spawnSync(nginx!, ['-v'], { encoding: 'utf8' }).stderr.trim()
  t.comment(`${version} in front of rawsse on port ${rawsse.port}`)

  /** POST /publish through nginx; the id rawsse gave the event. */
  const publish = async (query: string, data: string): Promise<string> => {
    const r = await request(port, ca, 'POST', `/publish?${query}`, { authorization: `Bearer ${PUB}`, 'content-type': 'text/plain' }, data)
    if (r.status !== 200) throw new Error(`publish ${query}: ${r.status} ${r.body}`)
    return (JSON.parse(r.body) as { id: string }).id
  }

  t.test('a stream through nginx gets ready, then a published event at once: nginx does not buffer it', async (t) => {
    const s = await TlsStream.open(t, port, ca, `/events/${SUB}?channel=news`)
    t.match(s.head, /^HTTP\/1\.1 200 OK\r\n/)
    t.match(s.head, /\r\nContent-Type: text\/event-stream; charset=utf-8\r\n/)
    t.match(s.head, /\r\nTransfer-Encoding: chunked\r\n/)
    t.notMatch(s.head, /X-Accel-Buffering/i, 'nginx reads X-Accel-Buffering and does not pass it on')
    t.match(s.text, /^retry: \d+\nevent: ready\ndata: \{"client":\d+,"user":null,"channels":\["news"\],"key":"[\w-]{22}"\}\n\n$/)
    const id = await publish('channel=news&event=greet', 'hello')
    const want = `id: ${id}\nevent: greet\ndata: hello\n\n`
    await s.waitFor((text) => afterReady(text) === want, PROMPT_MS, `the event within ${PROMPT_MS} ms`)
    t.equal(afterReady(s.text), want)
  })

  t.test('Last-Event-ID through nginx replays exactly the missed events, then live ones', async (t) => {
    const ids: string[] = []
    for (const data of ['one', 'two', 'three']) ids.push(await publish('channel=replay', data))
    const s = await TlsStream.open(t, port, ca, `/events/${SUB}?channel=replay`, { 'Last-Event-ID': ids[0]! })
    const replay = `id: ${ids[1]}\ndata: two\n\nid: ${ids[2]}\ndata: three\n\n`
    await s.waitFor((text) => afterReady(text).length >= replay.length, START_MS, 'the replay')
    t.equal(afterReady(s.text), replay, 'two and three, not one')
    // A live event after the replay shows nothing else came between: no duplicate, no gap.
    const four = await publish('channel=replay', 'four')
    await s.waitFor((text) => afterReady(text).length > replay.length && text.endsWith('\n\n'), PROMPT_MS, 'event four')
    t.equal(afterReady(s.text), `${replay}id: ${four}\ndata: four\n\n`)
  })

  t.test('GET /events with Authorization: Bearer through nginx opens the stream', async (t) => {
    t.equal((await request(port, ca, 'GET', '/events?channel=bearer')).status, 401, 'no bearer, no stream')
    const s = await TlsStream.open(t, port, ca, '/events?channel=bearer', { Authorization: `Bearer ${SUB}` })
    t.match(s.text, /event: ready\ndata: \{"client":\d+,"user":null,"channels":\["bearer"\],"key":"[\w-]{22}"\}\n\n$/)
    const id = await publish('channel=bearer', 'by header')
    await s.waitFor((text) => afterReady(text) !== '', PROMPT_MS, 'the event')
    t.equal(afterReady(s.text), `id: ${id}\ndata: by header\n\n`)
  })

  t.test('HTTP/2 from the client to nginx: curl --http2 reads the stream', async (t) => {
    const curlV = spawnSync('curl', ['-V'], { encoding: 'utf8' })
    if (curlV.status !== 0 || !/^Features:.*\bHTTP2\b/m.test(curlV.stdout)) {
      const reason = curlV.status !== 0 ? 'curl is not installed' : 'this curl has no HTTP2 feature'
      t.comment(`HTTP/2 not tested: ${reason}; the HTTP/1.1 cases above ran`)
      process.stderr.write(`proxy: HTTP/2 case skipped: ${reason}\n`)
      t.ok(!UNDER_CI, `curl with HTTP2 is available (.ci/run installs curl): ${reason}`)
      return
    }
    // -D -: the response head on stdout before the body, so its status line shows the protocol.
    const curl = new Child(t, 'curl', ['--http2', '--cacert', cert, '-N', '-s', '-S', '-D', '-', `https://127.0.0.1:${port}/events/${SUB}?channel=h2`], { stdin: 'ignore' })
    await until(() => curl.stdout.includes('event: ready\n'), () => `ready over HTTP/2; curl: ${JSON.stringify(curl.stdout + curl.stderr)}`, START_MS)
    t.match(curl.stdout, /^HTTP\/2 200 \r\n/, 'the answer came over HTTP/2')
    t.match(curl.stdout, /\r\ncontent-type: text\/event-stream; charset=utf-8\r\n/)
    const id = await publish('channel=h2', 'over h2')
    await until(() => curl.stdout.endsWith('\n\n') && afterReady(curl.stdout) !== '', () => `the event over HTTP/2; curl: ${JSON.stringify(curl.stdout)}`, PROMPT_MS)
    t.equal(afterReady(curl.stdout), `id: ${id}\ndata: over h2\n\n`)
    curl.kill('SIGTERM')
    await curl.waitExit()
  })

  t.test("the log format of docs/production.md keeps tokens out of nginx's access log", async (t) => {
    const s = await TlsStream.open(t, port, ca, `/events/${SUB}?channel=logged`)
    s.socket.destroy()
    const file = path.join(dir, 'rawsse.access.log')
    // nginx writes a stream's line when the stream ends, here when it notices the client left.
    const log = await until(
      () => {
        const text = readFileSync(file, 'utf8')
        return text.includes('"GET /events/***?channel=logged HTTP/1.1"') ? text : null
      },
      () => `the closed stream's line in ${file}: ${JSON.stringify(readFileSync(file, 'utf8'))}`,
    )
    t.notOk(log.includes(SUB), 'the stream token is in no line')
    t.notOk(log.includes(PUB), 'nor the publish token')
    t.match(log, /"POST \/publish\?channel=news&event=greet HTTP\/1\.1" 200 /, 'other requests are logged whole')
    t.match(log, /"GET \/events\?channel=bearer HTTP\/1\.1" /, 'a bearer stream is logged as requested')
    t.equal(readFileSync(path.join(dir, 'access.log'), 'utf8'), '', 'no request went to the default log')
  })
}
