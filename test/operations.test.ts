// Running rawsse in production (issue 15), over real sockets and processes: `GET /healthz`, the
// bearer header on /events (tokens out of URLs), settings from a --config file and RAWSSE_*
// variables with flags > file > environment, and secrets from there never shown in `ps` or in
// an error line.

import t from 'tap'
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import * as tls from 'node:tls'
import { rawRequest, startServer, TOKEN } from './helpers.js'
import { Child, CLI, readyStream, START_MS, startCli, until, type Teardown, type TextStream } from './process.js'

function tempDir(t: Teardown): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-ops-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const undate = (s: string): string => s.replace(/\r\nDate: [^\r]*/g, '')

t.test('GET /healthz needs no token: 200 {"status":"ok"}', async (t) => {
  const { port } = await startServer(t)
  const reply = await rawRequest(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.equal(
    undate(reply),
    'HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 15\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{"status":"ok"}',
  )
  const head = await rawRequest(port, 'HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  t.match(undate(head), /^HTTP\/1\.1 200 OK\r\n[\s\S]*Content-Length: 15\r\n[\s\S]*\r\n\r\n$/, 'HEAD: the head alone')
  const post = await rawRequest(port, 'POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n')
  t.match(post, /^HTTP\/1\.1 405 Method Not Allowed\r\n[\s\S]*Allow: GET, HEAD, OPTIONS\r\n/, 'other methods: 405')
})

t.test('GET /healthz answers 503 once the server is stopping', async (t) => {
  // A request pipelined behind a large file is answered after stop() began: the connection is
  // busy with the file, so stop() lets it finish, and /healthz then says the node is going.
  const dir = tempDir(t)
  writeFileSync(path.join(dir, 'big.bin'), Buffer.alloc(8 * 1024 * 1024, 1))
  const { server, port } = await startServer(t, { publicDir: dir })
  const net = await import('node:net')
  const s = net.connect(port, '127.0.0.1')
  let got = ''
  s.setEncoding('latin1')
  s.on('data', (d: string) => (got += d))
  s.pause()
  s.write('GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
  await until(() => got.length > 0 || s.readableLength > 0, () => 'the file to start', 5000)
  const stopped = server.stop()
  s.resume()
  await new Promise<void>((resolve) => s.on('close', () => resolve()))
  await stopped
  const second = got.slice(got.lastIndexOf('HTTP/1.1 '))
  t.equal(
    undate(second),
    'HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 21\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{"status":"stopping"}',
  )
})

t.test('GET /events with Authorization: Bearer opens the stream; a token in the path wins', async (t) => {
  const { port } = await startServer(t, { users: [{ token: 'alice-secret', user: 'alice', roles: [] }] })
  const viaHeader = await rawRequest(port, 'GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice-secret\r\n\r\n', 500).catch((e: Error) => e.message)
  t.match(viaHeader, /^HTTP\/1\.1 200 OK\r\n[\s\S]*event: ready\ndata: \{"client":\d+,"user":"alice","channels":\["default"\],"key":"[\w-]{22}"\}\n/, 'GET /events + bearer: alice')
  const slash = await rawRequest(port, 'GET /events/?channel=x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice-secret\r\n\r\n', 500).catch((e: Error) => e.message)
  t.match(slash, /"user":"alice","channels":\["x"\]/, 'GET /events/?channel=x + bearer')
  const both = await rawRequest(port, `GET /events/${TOKEN} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice-secret\r\n\r\n`, 500).catch((e: Error) => e.message)
  t.match(both, /"user":null/, 'the path token wins over the header')
  const none = await rawRequest(port, 'GET /events HTTP/1.1\r\nHost: x\r\n\r\n')
  t.match(none, /^HTTP\/1\.1 401 Unauthorized\r\n/, 'no token anywhere: 401')
  const bad = await rawRequest(port, 'GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n')
  t.match(bad, /^HTTP\/1\.1 401 Unauthorized\r\n/, 'an unknown bearer: 401')
})

// ------------------------------------------------------------------ settings outside argv


async function runToExit(t: Teardown, args: readonly string[], env: NodeJS.ProcessEnv): Promise<Child> {
  const child = new Child(t, process.execPath, [CLI, ...args], { stdin: 'ignore', env: { ...process.env, ...env } })
  await child.waitExit(START_MS)
  return child
}

t.test('settings come from flags, then --config, then RAWSSE_* variables', async (t) => {
  const dir = tempDir(t)
  const config = path.join(dir, 'rawsse.json')
  writeFileSync(config, JSON.stringify({ 'publish-token': ['file-secret'], heartbeat: 100, tick: 0, 'cors-origin': 'https://file.example' }))
  const env = { RAWSSE_PORT: '0', RAWSSE_PUBLISH_TOKEN: 'env-secret', RAWSSE_HEARTBEAT: '7777', RAWSSE_CORS_ORIGIN: 'https://env.example', RAWSSE_RETRY: '1234' }

  // Environment alone.
  const a = await startCli(t, [], { env: { ...env, RAWSSE_TICK: '0' } })
  t.match(a.lines[3], /Bearer env-secret/, 'RAWSSE_PUBLISH_TOKEN is the publish token')
  const ra = await rawRequest(a.port, 'GET /events/env-secret HTTP/1.1\r\nHost: x\r\n\r\n', 500).catch((e: Error) => e.message)
  t.match(ra, /Access-Control-Allow-Origin: https:\/\/env\.example\r\n[\s\S]*retry: 1(2[3-9]\d|[3-8]\d\d)\n/, 'RAWSSE_CORS_ORIGIN and RAWSSE_RETRY (1234, jittered up to 1.5×) apply')

  // The file over the environment; the environment still fills what the file lacks.
  const b = await startCli(t, ['--config', config], { env })
  t.match(b.lines[3], /Bearer file-secret/, 'the file wins over the environment')
  const rb = await rawRequest(b.port, 'GET /events/file-secret HTTP/1.1\r\nHost: x\r\n\r\n', 400).catch((e: Error) => e.message)
  t.match(rb, /Access-Control-Allow-Origin: https:\/\/file\.example\r\n/, 'cors-origin from the file')
  t.match(rb, /retry: 1(2[3-9]\d|[3-8]\d\d)\n/, 'retry from the environment, which the file does not set')
  t.match(rb, /\r\n3\r\n:\n\n\r\n/, 'heartbeat 100 from the file (a comment chunk within 400 ms), not 7777 from the environment')
  const envToken = await rawRequest(b.port, 'GET /events/env-secret HTTP/1.1\r\nHost: x\r\n\r\n')
  t.match(envToken, /^HTTP\/1\.1 401 /, 'a repeatable flag is taken whole from one place: the environment’s token is not added')

  // Flags over both; RAWSSE_CONFIG names the file.
  const c = await startCli(t, ['--publish-token', 'flag-secret', '--cors-origin', 'https://flag.example'], { env: { ...env, RAWSSE_CONFIG: config } })
  t.match(c.lines[3], /Bearer flag-secret/, 'the flag wins over file and environment')
  const rc = await rawRequest(c.port, 'GET /events/flag-secret HTTP/1.1\r\nHost: x\r\n\r\n', 300).catch((e: Error) => e.message)
  t.match(rc, /Access-Control-Allow-Origin: https:\/\/flag\.example\r\n/, 'cors-origin from the flag')
})

t.test('a token from the environment or a file is not in the process’s argv (ps) nor in an error line', async (t) => {
  const dir = tempDir(t)
  const { child } = await startCli(t, ['--port', '0', '--tick', '0'], { env: { RAWSSE_PUBLISH_TOKEN: 'ps-must-not-show-this' } })
  const cmdline = readFileSync(`/proc/${child.proc.pid}/cmdline`, 'utf8')
  t.notMatch(cmdline, /ps-must-not-show-this/, 'not in /proc/PID/cmdline')

  const badUsers = path.join(dir, 'users.json')
  writeFileSync(badUsers, '[{"token": "users-secret-123", "user": "x", roles: []}]')
  const u = await runToExit(t, ['--port', '0', '--users', badUsers], {})
  t.equal(u.exit?.code, 2, 'a users file that is not JSON: exit 2')
  t.notMatch(u.stderr, /users-secret-123/, `the error line does not quote the file: ${JSON.stringify(u.stderr)}`)

  const badConfig = path.join(dir, 'config.json')
  writeFileSync(badConfig, '{"publish-token": ["config-secret-456"], port: 1}')
  const c = await runToExit(t, ['--config', badConfig], {})
  t.equal(c.exit?.code, 2, 'a config file that is not JSON: exit 2')
  t.match(c.stderr, /^rawsse: --config [^\n]*: not valid JSON[^\n]*\n$/, 'one line saying so')
  t.notMatch(c.stderr, /config-secret-456/, 'without quoting the file')

  const unknown = path.join(dir, 'unknown.json')
  writeFileSync(unknown, JSON.stringify({ 'publish-tokens': ['x'] }))
  const k = await runToExit(t, ['--config', unknown], {})
  t.equal(k.exit?.code, 2)
  t.match(k.stderr, /^rawsse: --config [^\n]*: unknown key "publish-tokens"/, 'an unknown key is named')
  const e = await runToExit(t, ['--port', '0'], { RAWSSE_STDIN: 'maybe' })
  t.equal(e.exit?.code, 2)
  t.match(e.stderr, /^rawsse: RAWSSE_STDIN must be 1, true, 0 or false\n$/, 'a switch variable with another value')
})

t.test('--help says where settings come from', async (t) => {
  const h = await runToExit(t, ['--help'], {})
  t.match(h.stdout, /--config FILE/)
  t.match(h.stdout, /RAWSSE_PUBLISH_TOKEN/)
  t.match(h.stdout, /Flags win over the file, the file over the environment/)
})

// ------------------------------------------------------------------ logs

t.test('--log text: a line per start, stream opened and closed, error answer and stop; tokens never', async (t) => {
  const { child, port } = await startCli(t, ['--port', '0', '--tick', '0', '--log-publish'], { env: { RAWSSE_PUBLISH_TOKEN: 'log-secret-1' } })
  await until(() => /^\S+ start host=127\.0\.0\.1 port=\d+ pid=\d+ version=\S+\n/m.test(child.stderr), () => `the start line: ${child.stderr}`, 5000)
  const stream = await rawRequest(port, 'GET /events/log-secret-1?channel=a&channel=b HTTP/1.1\r\nHost: x\r\n\r\n', 300).catch((e: Error) => e.message)
  t.match(stream, /event: ready\n/)
  await until(() => /stream-close /.test(child.stderr), () => `the close line: ${child.stderr}`, 5000)
  await rawRequest(port, 'GET /events/wrong-secret-2 HTTP/1.1\r\nHost: x\r\n\r\n')
  await rawRequest(port, 'POST /publish?channel=a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer log-secret-1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi')
  await until(() => /error-reply /.test(child.stderr) && / publish /.test(child.stderr), () => `the error and publish lines: ${child.stderr}`, 5000)
  child.kill('SIGTERM')
  await child.waitExit(10_000)
  const lines = child.stderr.trim().split('\n')
  const line = (event: string): string => lines.find((l) => l.split(' ')[1] === event) ?? ''
  t.match(line('stream-open'), /^\S+Z stream-open client=\d+ user=null channels=a,b remote=127\.0\.0\.1$/)
  t.match(line('stream-close'), /^\S+Z stream-close client=\d+ user=null channels=a,b remote=127\.0\.0\.1 seconds=[\d.]+ events=0 bytes=\d+ reason=closed$/)
  t.match(line('error-reply'), /^\S+Z error-reply status=401 reason="unknown token" method=GET path=\/events\/\*\*\* remote=127\.0\.0\.1$/)
  t.match(line('publish'), /^\S+Z publish id=\d+ channel=a delivered=0 bytes=\d+$/)
  t.match(line('stop'), /^\S+Z stop streams=0$/)
  t.notMatch(child.stderr, /log-secret-1|wrong-secret-2/, 'no token in any line')
})

t.test('--log json: one object per line; --log off: nothing', async (t) => {
  const j = await startCli(t, ['--port', '0', '--tick', '0', '--log', 'json', '--publish-token', 'json-secret'], { env: {} })
  await rawRequest(j.port, 'GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  await until(() => j.child.stderr.includes('error-reply'), () => `an error line: ${j.child.stderr}`, 5000)
  const objects = j.child.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(objects[0], { event: 'start', host: '127.0.0.1', port: j.port })
  t.match(objects.find((o) => o.event === 'error-reply'), { status: 401, reason: 'a valid bearer token is required', method: 'GET', path: '/stats' })
  const o = await startCli(t, ['--port', '0', '--tick', '0', '--log', 'off'], { env: {} })
  await rawRequest(o.port, 'GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
  o.child.kill('SIGTERM')
  await o.child.waitExit(10_000)
  t.equal(o.child.stderr, '', 'nothing on stderr')
  const bad = await runToExit(t, ['--log', 'loud'], {})
  t.equal(bad.exit?.code, 2)
  t.match(bad.stderr, /^rawsse: --log must be text, json, off, not 'loud'\n$/)
})

// ------------------------------------------------------------------ TLS

/** A self-signed certificate for 127.0.0.1 from openssl, or null when openssl is missing. */
function makeCert(dir: string, name: string): { cert: string; key: string } | null {
  const cert = path.join(dir, `${name}.crt`)
  const key = path.join(dir, `${name}.key`)
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { encoding: 'utf8' })
  if (r.error !== undefined) return null
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`)
  return { cert, key }
}

/** The CN of the certificate a new TLS connection to `port` is shown. */
function servedName(port: number, ca: Buffer[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca }, () => {
      resolve(String(s.getPeerCertificate().subject.CN))
      s.destroy()
    })
    s.on('error', reject)
  })
}

t.test('--tls-cert/--tls-key: HTTPS with the same HTTP; SseClient, listen and publish speak it; SIGHUP takes new files without dropping a stream', async (t) => {
  const dir = tempDir(t)
  const one = makeCert(dir, 'first')
  if (one === null) {
    t.ok(process.env.CI !== 'true', 'openssl is installed (.ci/run installs it)')
    t.pass('TLS not tested: openssl is not installed; under CI=true this is a failure')
    return
  }
  const two = makeCert(dir, 'second')!
  const certPath = path.join(dir, 'live.crt')
  const keyPath = path.join(dir, 'live.key')
  copyFileSync(one.cert, certPath)
  copyFileSync(one.key, keyPath)
  const ca = [readFileSync(one.cert), readFileSync(two.cert)]
  const { child, port, lines } = await startCli(t, ['--port', '0', '--tick', '0', '--tls-cert', certPath, '--tls-key', keyPath], { env: { RAWSSE_PUBLISH_TOKEN: 'tls-secret' } })
  t.equal(lines[0], `rawsse listening on https://127.0.0.1:${port}`, 'the start-up lines say https')
  // A self-signed certificate: the printed curl names it with --cacert, so it works as printed.
  const curlLine = lines.find((l) => l.startsWith('publish:   curl '))
  t.equal(curlLine, `publish:   curl --cacert '${certPath}' -X POST -H 'Authorization: Bearer tls-secret' --data-binary 'hello' 'https://127.0.0.1:${port}/publish'`)

  const { SseClient } = await import('../src/index.js')
  const client = new SseClient(`https://127.0.0.1:${port}/events/tls-secret`, { tls: { ca } })
  t.teardown(() => client.close())
  const got: string[] = []
  client.on('message', (e) => got.push(`${e.event}:${e.data}`))
  await until(() => got.some((g) => g.startsWith('ready:')), () => 'ready over TLS', 10_000)

  const curl = spawnSync('sh', ['-c', curlLine!.slice('publish:   '.length)], { encoding: 'utf8', timeout: 10_000 })
  t.match(curl, { status: 0, stdout: /^\{"id":"\d+","delivered":1\}$/ }, `the printed curl publishes over TLS: ${curl.stderr}`)
  await until(() => got.includes('message:hello'), () => 'the event of the printed curl', 5000)

  const extraCa = path.join(dir, 'both.pem')
  writeFileSync(extraCa, Buffer.concat(ca))
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: extraCa }
  const pub = new Child(t, process.execPath, [CLI, 'publish', `https://127.0.0.1:${port}`, '--token', 'tls-secret', 'over tls'], { stdin: 'ignore', env })
  t.same(await pub.waitExit(START_MS), { code: 0, signal: null }, `rawsse publish over https: ${pub.stderr}`)
  await until(() => got.includes('message:over tls'), () => 'the event over TLS', 5000)

  const listen = new Child(t, process.execPath, [CLI, 'listen', `https://127.0.0.1:${port}/events/tls-secret`], { stdin: 'ignore', env })
  await until(() => listen.stdout.includes('ready: '), () => `listen over https: ${listen.stderr}`, START_MS)
  listen.kill('SIGINT')

  t.equal(await servedName(port, ca), 'first')
  copyFileSync(two.cert, certPath)
  copyFileSync(two.key, keyPath)
  child.kill('SIGHUP')
  await until(() => / reload revoked=0 tls=true\n/.test(child.stderr), () => `the reload line: ${child.stderr}`, 5000)
  t.equal(await servedName(port, ca), 'second', 'a new connection gets the new certificate')
  const pub2 = new Child(t, process.execPath, [CLI, 'publish', `https://127.0.0.1:${port}`, '--token', 'tls-secret', 'after reload'], { stdin: 'ignore', env })
  t.same(await pub2.waitExit(START_MS), { code: 0, signal: null })
  await until(() => got.includes('message:after reload'), () => 'the old stream still gets events', 5000)
  t.equal(client.readyState, 'open', 'the stream opened before the reload is still open')

  writeFileSync(keyPath, 'not a key')
  child.kill('SIGHUP')
  await until(() => / reload-failed revoked=0 tls=true /.test(child.stderr), () => `the failed reload line: ${child.stderr}`, 5000)
  t.equal(await servedName(port, ca), 'second', 'a bad file keeps the certificate in use')
})

t.test('the printed curl gets --cacert only for a certificate no public CA issued', async (t) => {
  const { startupLines } = await import('../src/commands/serve.js')
  const addr = { host: '127.0.0.1', port: 6500 }
  const curlOf = (cert: string): string => startupLines({ publishTokens: ['p'], tls: { cert, key: '' } }, null, addr, 'cert.pem').split('\n')[3]!
  const dir = tempDir(t)
  const own = makeCert(dir, 'own')
  if (own !== null) t.match(curlOf(readFileSync(own.cert, 'utf8')), `curl --cacert '${path.resolve('cert.pem')}' -X POST `, 'self-signed: --cacert')
  // A certificate that one of Node's bundled roots issued (here a root itself) needs no --cacert.
  t.match(curlOf(tls.rootCertificates[0]!), /^publish: {3}curl -X POST /, 'a public CA: none')
  t.match(startupLines({ publishTokens: ['p'] }, null, addr).split('\n')[3], /^publish: {3}curl -X POST -H 'Authorization: Bearer p' --data-binary 'hello' 'http:\/\/127\.0\.0\.1:6500\/publish'$/, 'no TLS: none')
})

// ------------------------------------------------------------------ SIGHUP: users reload

t.test('SIGHUP re-reads --users: streams whose token went or lost a role are closed as revoked; a bad file keeps the old table', async (t) => {
  const dir = tempDir(t)
  const users = path.join(dir, 'users.json')
  const entries = [
    { token: 'admin-tok', user: 'root', roles: ['publish', 'admin'] },
    { token: 'alice-tok', user: 'alice', roles: ['publish'] },
    { token: 'bob-tok', user: 'bob', roles: [] },
    { token: 'carol-tok', user: 'carol', roles: ['publish'] },
  ]
  writeFileSync(users, JSON.stringify(entries))
  const { child, port } = await startCli(t, ['--port', '0', '--tick', '0', '--heartbeat', '0', '--users', users], { env: {} })
  const open = (token: string): Promise<TextStream> => readyStream(t, port, `/events/${token}`)
  const alice = await open('alice-tok')
  const bob = await open('bob-tok')
  const carol = await open('carol-tok')

  // bob removed, alice loses publish, carol unchanged.
  writeFileSync(users, JSON.stringify([entries[0], { ...entries[1], roles: [] }, entries[3]]))
  child.kill('SIGHUP')
  await until(() => / reload revoked=2 tls=false\n/.test(child.stderr), () => `the reload line: ${child.stderr}`, 5000)
  await until(() => alice.closed() && bob.closed(), () => 'alice and bob closed', 5000)
  t.match(bob.text(), /\r\n0\r\n\r\n$/, 'a revoked stream gets the last chunk')
  t.notOk(carol.closed(), 'carol keeps her stream')
  const denied = await rawRequest(port, 'GET /events/bob-tok HTTP/1.1\r\nHost: x\r\n\r\n')
  t.match(denied, /^HTTP\/1\.1 401 /, 'bob’s token no longer opens a stream')
  const stats = JSON.parse((await rawRequest(port, 'GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-tok\r\nConnection: close\r\n\r\n')).split('\r\n\r\n')[1]!) as { drops: Record<string, number> }
  t.equal(stats.drops.revoked, 2, '/stats drops.revoked')
  t.match(child.stderr, /stream-close client=\d+ user=bob [^\n]* reason=revoked\n/, 'logged with its reason')

  writeFileSync(users, '[{"token": "new-tok", broken')
  child.kill('SIGHUP')
  await until(() => / reload-failed reason=/.test(child.stderr), () => `the failed reload line: ${child.stderr}`, 5000)
  t.notMatch(child.stderr, /new-tok/, 'the line does not quote the file')
  t.notOk(carol.closed(), 'carol still has her stream')
  const still = await rawRequest(port, 'GET /events/carol-tok HTTP/1.1\r\nHost: x\r\n\r\n', 300).catch((e: Error) => e.message)
  t.match(still, /event: ready/, 'the old table is still in use')
})

t.test('SIGHUP revokes at every reload: carol, kept by the first, is closed by the second; dave by the third', async (t) => {
  const dir = tempDir(t)
  const users = path.join(dir, 'users.json')
  const admin = { token: 'admin-tok', user: 'root', roles: ['publish', 'admin'] }
  const carol = { token: 'carol-tok', user: 'carol', roles: ['publish'] }
  const dave = { token: 'dave-tok', user: 'dave', roles: [] }
  writeFileSync(users, JSON.stringify([admin, carol, dave]))
  const { child, port } = await startCli(t, ['--port', '0', '--tick', '0', '--heartbeat', '0', '--users', users], { env: {} })
  const open = (token: string): Promise<TextStream> => readyStream(t, port, `/events/${token}`)
  const carolStream = await open('carol-tok')
  const daveStream = await open('dave-tok')
  const reloads = (): number => child.stderr.split(' reload ').length - 1
  const reloadTo = async (entries: object[], revoked: number): Promise<void> => {
    const before = reloads()
    writeFileSync(users, JSON.stringify(entries))
    child.kill('SIGHUP')
    await until(() => reloads() > before, () => `reload ${before + 1}: ${child.stderr}`, 5000)
    t.match(child.stderr.split(' reload ').at(-1), new RegExp(`^revoked=${revoked} tls=false\n`), `reload ${before + 1}: revoked ${revoked}`)
  }

  await reloadTo([admin, carol, dave], 0)
  t.notOk(carolStream.closed() || daveStream.closed(), 'reload 1 keeps both streams')
  await reloadTo([admin, dave], 1)
  await until(() => carolStream.closed(), () => 'carol’s stream closed', 5000)
  t.match(carolStream.text(), /\r\n0\r\n\r\n$/, 'carol’s stream ends with the last chunk')
  t.notOk(daveStream.closed(), 'dave keeps his')
  await reloadTo([admin], 1)
  await until(() => daveStream.closed(), () => 'dave’s stream closed', 5000)
  t.match(daveStream.text(), /\r\n0\r\n\r\n$/, 'dave’s stream ends with the last chunk')
  const stats = JSON.parse((await rawRequest(port, 'GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-tok\r\nConnection: close\r\n\r\n')).split('\r\n\r\n')[1]!) as { drops: Record<string, number> }
  t.equal(stats.drops.revoked, 2, '/stats drops.revoked')
})

// ------------------------------------------------------------------ first contact

t.test('-h, -v and -p are short for --help, --version and --port', async (t) => {
  const h = await runToExit(t, ['-h'], {})
  t.same(h.exit, { code: 0, signal: null })
  t.match(h.stdout, /^Usage: rawsse \[flags\]/)
  t.match(h.stdout, /\n  -p, --port N +TCP port/, 'the help shows the short form')
  const v = await runToExit(t, ['-v'], {})
  t.equal(v.stdout.trim(), (JSON.parse(readFileSync(path.join(path.dirname(CLI), '..', 'package.json'), 'utf8')) as { version: string }).version)
  const p = await startCli(t, ['-p', '0', '--tick', '0'], { env: {} })
  t.ok(p.port > 0, `-p 0 picks a free port (${p.port})`)
  for (const sub of ['listen', 'publish', 'bench']) {
    const s = await runToExit(t, [sub, '-h'], {})
    t.match(s.stdout, new RegExp(`^Usage: rawsse ${sub}`), `${sub} -h`)
  }
  const x = await runToExit(t, ['-x'], {})
  t.equal(x.exit?.code, 2, 'an unknown short flag is still a usage error')
})

t.test('input that is not a terminal, without --stdin, gets one line saying it is ignored', async (t) => {
  const child = new Child(t, process.execPath, [CLI, '--port', '0', '--tick', '0', '--log', 'off'], { stdin: 'pipe' })
  await until(() => child.stdout.includes('publish:'), () => `the start-up lines: ${child.stderr}`, START_MS)
  child.proc.stdin!.write('hello\n')
  await until(() => child.stderr.includes('\n'), () => 'the notice', 5000)
  child.proc.stdin!.write('more\n')
  await new Promise((r) => setTimeout(r, 200))
  t.equal(child.stderr, 'rawsse: standard input is not a terminal and --stdin is not given: input is ignored\n', 'once')
  t.equal(child.exit, null, 'still running')
})

t.test('rawsse listen --max-retries N gives up with exit 1 after N failed reconnections', async (t) => {
  // A port nobody listens on: every attempt fails at once.
  const net = await import('node:net')
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as import('node:net').AddressInfo).port
      s.close(() => resolve(p))
    })
  })
  const child = new Child(t, process.execPath, [CLI, 'listen', `http://127.0.0.1:${port}/events/x`, '--max-retries', '2'], { stdin: 'ignore' })
  t.same(await child.waitExit(30_000), { code: 1, signal: null }, 'exit 1')
  const notices = child.stderr.trim().split('\n')
  t.equal(notices.filter((l) => /reconnecting in/.test(l)).length, 2, `2 reconnections: ${child.stderr}`)
  t.match(notices.at(-1), /giving up after 2 retries \(--max-retries\)$/)
})

t.test('the package: a LICENSE, source maps whose sources ship, no screenshots, the docs, engines stated', async (t) => {
  const pkg = JSON.parse(readFileSync(path.join(path.dirname(CLI), '..', 'package.json'), 'utf8')) as { files: string[]; engines: { node: string }; license: string }
  t.equal(pkg.license, 'MIT')
  t.match(readFileSync(path.join(path.dirname(CLI), '..', 'LICENSE'), 'utf8'), /^MIT License\n/)
  t.equal(pkg.engines.node, '>=20.19', 'engines: from the Node it is tested on (20, 22 and 24 in .ci/run) up')
  const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: path.join(path.dirname(CLI), '..'), encoding: 'utf8' })
  t.equal(pack.status, 0, pack.stderr)
  const files = (JSON.parse(pack.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path)
  t.ok(files.includes('LICENSE'), 'LICENSE is packed')
  t.notOk(files.some((f) => f.startsWith('public/screenshots/')), 'no screenshots in the tarball')
  // The README is the front page; the rest of the manual is docs/, which a user of the package needs too.
  const readme = readFileSync(path.join(path.dirname(CLI), '..', 'README.md'), 'utf8')
  const pages = [...new Set([...readme.matchAll(/\]\((docs\/[^)#\s]+)/g)].map((m) => m[1]!))]
  t.ok(pages.length >= 5, `the README links the docs/ pages: ${pages.join(', ')}`)
  t.same(pages.filter((p) => !files.includes(p)), [], "every docs/ page the README links is packed")
  // Every source a shipped map names is shipped too.
  const missing: string[] = []
  for (const map of files.filter((f) => f.endsWith('.js.map'))) {
    const m = JSON.parse(readFileSync(path.join(path.dirname(CLI), '..', map), 'utf8')) as { sources: string[] }
    for (const src of m.sources) {
      const p = path.posix.normalize(path.posix.join(path.posix.dirname(map), src))
      if (!files.includes(p)) missing.push(`${map} → ${p}`)
    }
  }
  t.same(missing, [], 'no map points at a file that is not shipped')
})
