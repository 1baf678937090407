// The `rawsse` command with the JWT flags, as a real process (CONTRACT "Tokens an application
// signs"): --jwt-secret from the environment and the config file, --jwt-key files (PEM, JWK Set),
// bad values exit 2 with one line, the log says why a token was refused and never the token,
// SIGHUP re-reads keys and secrets and closes the streams that depended on one taken away.

import t from 'tap'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import * as jose from 'jose'
import { rawRequest } from './helpers.js'
import { readyStream, runCli, startCli, until, type Teardown, type TextStream } from './process.js'

const SECRET_A = randomBytes(40).toString('base64url')
const SECRET_B = randomBytes(40).toString('base64url')
const es = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const ed = generateKeyPairSync('ed25519')

const hs = (secret: string, claims: jose.JWTPayload): Promise<string> =>
  new jose.SignJWT({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }).setProtectedHeader({ alg: 'HS256' }).sign(Buffer.from(secret))

function tempDir(t: Teardown): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-app-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const userOf = (s: TextStream): unknown => (JSON.parse(/event: ready\ndata: (\{[^\n]*\})\n/.exec(s.text())![1]!) as { user: unknown }).user

t.test('bad JWT flags: one line on standard error, exit 2, and no secret in it', async (t) => {
  const dir = tempDir(t)
  const notKey = path.join(dir, 'not-a-key.pem')
  writeFileSync(notKey, 'hello')
  const cases: Array<[string, string[], RegExp]> = [
    ['a short secret', ['--jwt-secret', 'short-secret'], /^rawsse: --jwt-secret is 12 bytes: a JWT secret must be at least 32 bytes\n$/],
    ['a second short secret', ['--jwt-secret', SECRET_A, '--jwt-secret', 'x'], /^rawsse: --jwt-secret #2 is 1 bytes: a JWT secret must be at least 32 bytes\n$/],
    ['a key file that is none', ['--jwt-key', notKey], /^rawsse: --jwt-key \S+not-a-key\.pem is neither a PEM key nor a JWK Set\n$/],
    ['a key file that is missing', ['--jwt-key', path.join(dir, 'nope')], /^rawsse: --jwt-key \S+nope: ENOENT\n$/],
    ['an issuer without keys', ['--jwt-issuer', 'app'], /^rawsse: --jwt-issuer and --jwt-audience need --jwt-secret or --jwt-key\n$/],
    ['a bad cookie name', ['--auth-cookie', 'a;b'], /^rawsse: --auth-cookie must be a cookie name/],
  ]
  for (const [what, args, line] of cases) {
    const { exit, stdout, stderr } = await runCli(t, ['--port', '0', ...args])
    t.same(exit, { code: 2, signal: null }, `${what}: exit 2`)
    t.equal(stdout, '', `${what}: nothing on standard output`)
    t.match(stderr, line, `${what}: ${stderr.trim()}`)
    t.notMatch(stderr, /short-secret/, `${what}: never the secret`)
  }
})

t.test('--jwt-secret from RAWSSE_JWT_SECRET and --jwt-key files (PEM, JWK Set) open streams; a refusal is logged with why, never the token', async (t) => {
  const dir = tempDir(t)
  const pemFile = path.join(dir, 'es.pem')
  writeFileSync(pemFile, es.publicKey.export({ type: 'spki', format: 'pem' }))
  const jwksFile = path.join(dir, 'keys.json')
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed-1' }] }))
  const { child, port } = await startCli(t, ['--port', '0', '--tick', '0', '--jwt-key', pemFile, '--jwt-key', jwksFile, '--jwt-issuer', 'app'], {
    env: { RAWSSE_JWT_SECRET: SECRET_A },
  })
  const claims = { sub: 'x', iss: 'app', exp: Math.floor(Date.now() / 1000) + 600 }
  const byHs = await readyStream(t, port, `/events/${await hs(SECRET_A, { ...claims, sub: 'hs' })}`)
  const byEs = await readyStream(t, port, `/events/${await new jose.SignJWT({ ...claims, sub: 'es' }).setProtectedHeader({ alg: 'ES256' }).sign(es.privateKey)}`)
  const byEd = await readyStream(t, port, `/events/${await new jose.SignJWT({ ...claims, sub: 'ed' }).setProtectedHeader({ alg: 'EdDSA', kid: 'ed-1' }).sign(ed.privateKey)}`)
  t.same([userOf(byHs), userOf(byEs), userOf(byEd)], ['hs', 'es', 'ed'])

  const wrongIss = await hs(SECRET_A, { ...claims, iss: 'other' })
  const answer = await rawRequest(port, `GET /events/${wrongIss} HTTP/1.1\r\nHost: x\r\n\r\n`)
  t.match(answer, /^HTTP\/1\.1 401 Unauthorized\r\n[\s\S]*\r\n\r\nunknown token\n$/)
  await until(() => /error-reply status=401/.test(child.stderr), () => `the error line: ${child.stderr}`, 5000)
  t.match(child.stderr, /\S+Z error-reply status=401 reason="unknown token" why="jwt: wrong issuer" method=GET path=\/events\/\*\*\* remote=127\.0\.0\.1\n/)
  t.notOk(child.stderr.includes(wrongIss.split('.')[2]!), 'the log never holds the token')
  t.notOk(child.stderr.includes(SECRET_A), 'nor the secret')
})

t.test('SIGHUP re-reads secrets and keys: streams of a secret taken away are closed (revoked); a bad key keeps the old ones', async (t) => {
  const dir = tempDir(t)
  const config = path.join(dir, 'rawsse.json')
  const keyFile = path.join(dir, 'es.pem')
  writeFileSync(keyFile, es.publicKey.export({ type: 'spki', format: 'pem' }))
  writeFileSync(config, JSON.stringify({ 'jwt-secret': [SECRET_A, SECRET_B], 'jwt-key': [keyFile], 'publish-token': ['admin'] }))
  const { child, port } = await startCli(t, ['--port', '0', '--tick', '0', '--heartbeat', '0', '--config', config])
  const a = await readyStream(t, port, `/events/${await hs(SECRET_A, { sub: 'a' })}`)
  const b = await readyStream(t, port, `/events/${await hs(SECRET_B, { sub: 'b' })}`)
  const e = await readyStream(t, port, `/events/${await new jose.SignJWT({ sub: 'e' }).setProtectedHeader({ alg: 'ES256' }).sign(es.privateKey)}`)
  const s = await readyStream(t, port, '/events/admin')

  writeFileSync(config, JSON.stringify({ 'jwt-secret': [SECRET_B], 'jwt-key': [keyFile], 'publish-token': ['admin'] }))
  child.kill('SIGHUP')
  await until(() => / reload revoked=1 tls=false\n/.test(child.stderr), () => `the reload line: ${child.stderr}`, 5000)
  await until(() => a.closed(), () => 'the stream of secret A closed', 5000)
  t.match(a.text(), /\r\n0\r\n\r\n$/, 'it got the last chunk')
  t.notOk(b.closed() || e.closed() || s.closed(), 'the others stay')
  t.match(child.stderr, /stream-close client=\d+ user=a [^\n]* reason=revoked\n/)
  t.match(await rawRequest(port, `GET /events/${await hs(SECRET_A, { sub: 'a' })} HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 401 /, 'secret A no longer opens one')

  // A key file that no longer reads: the reload fails and what was in use stays.
  writeFileSync(keyFile, 'garbage')
  child.kill('SIGHUP')
  await until(() => / reload-failed reason=/.test(child.stderr), () => `the failed reload line: ${child.stderr}`, 5000)
  t.notOk(e.closed(), 'the ES256 stream stays')

  // The key file gone from the config: its streams go too.
  writeFileSync(config, JSON.stringify({ 'jwt-secret': [SECRET_B], 'publish-token': ['admin'] }))
  child.kill('SIGHUP')
  await until(() => e.closed(), () => 'the ES256 stream closed', 5000)
  t.notOk(b.closed(), 'secret B still holds')
  const stats = JSON.parse((await rawRequest(port, 'GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin\r\nConnection: close\r\n\r\n')).split('\r\n\r\n')[1]!) as { drops: Record<string, number> }
  t.equal(stats.drops.revoked, 2, '/stats drops.revoked')
})

t.test('--auth-cookie with a specific --cors-origin: a cookie opens GET /events, with Allow-Credentials', async (t) => {
  const { port } = await startCli(t, ['--port', '0', '--tick', '0', '--auth-cookie', 'sse', '--cors-origin', 'https://app.example', '--token', 'tok'])
  const s = net.connect(port, '127.0.0.1')
  let text = ''
  s.setEncoding('latin1')
  s.on('data', (d: string) => (text += d))
  t.teardown(() => s.destroy())
  s.write('GET /events?channel=news HTTP/1.1\r\nHost: x\r\nCookie: a=1; sse=tok\r\n\r\n')
  await until(() => text.includes('event: ready'), () => `ready: ${text}`, 5000)
  t.match(text, /\r\nAccess-Control-Allow-Origin: https:\/\/app\.example\r\nAccess-Control-Allow-Credentials: true\r\n\r\n/)
})
