// Every route failing once, as a bug in a hook or in the server would make it fail: thrown, or
// as a rejected promise. The request gets a whole `500` and its connection closes, the failure is
// warned (never silent), and the process goes on serving streams and publishes. The other half
// of the rule: no unhandled rejection in any test process (test/setup.ts ends the file on one).

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import t from 'tap'
import { SseServer } from '../src/index.js'
import { ev, openStream, PUB, publish, rawRequest, startServer, TOKEN } from './helpers.js'

const INTERNAL = 'HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 15\r\nConnection: close\r\n\r\ninternal error\n'

/** What is made to fail: a test-only reach into the server, since no request can make its own code throw. */
type Target = Record<string, unknown>

/** The next call of `obj[key]` throws (or returns a rejected promise); the original is back at once. */
function failOnce(obj: Target, key: string, how: 'throw' | 'reject'): void {
  const original = obj[key]
  obj[key] = (): unknown => {
    obj[key] = original
    const err = new Error(`${key} failed (test)`)
    if (how === 'throw') throw err
    return Promise.reject(err)
  }
}

/** The next read of the getter `obj[key]` throws; the original getter is back at once. */
function failGetterOnce(obj: Target, key: string): void {
  const original = Object.getOwnPropertyDescriptor(obj, key)!
  Object.defineProperty(obj, key, {
    configurable: true,
    get() {
      Object.defineProperty(obj, key, original)
      throw new Error(`${key} failed (test)`)
    },
  })
}

t.test('the setup that fails a file on an unhandled rejection is loaded in this test process', async (t) => {
  t.ok(
    process.listeners('unhandledRejection').some((f) => f.name === 'failOnUnhandledRejection'),
    'test/setup.ts, through package.json "tap" "node-arg"',
  )
})

t.test('every route that fails once answers a whole 500 and closes; the process warns and serves on', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-failures-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'index.html'), '<p>hi</p>\n')
  const { server, port, base } = await startServer(t, {
    publicDir: dir,
    // The hook is user code: it may throw, or, when it is `async`, reject.
    authenticate: (token) => {
      if (token === 'boom') throw new Error('authenticate failed (test)')
      if (token === 'later') return Promise.reject(new Error('an async authenticate failed (test)')) as never
      return null
    },
  })
  // Private fields, reached in this test only: the route context and the connection host.
  const routes = (server as unknown as { routes: Target }).routes
  const host = (server as unknown as { host: Target }).host
  const warnings: string[] = []
  const onWarning = (w: Error): number => warnings.push(w.message)
  process.on('warning', onWarning)
  t.teardown(() => process.off('warning', onWarning))

  const get = (target: string, headers = ''): string => `GET ${target} HTTP/1.1\r\nHost: x\r\n${headers}\r\n`
  const post = (target: string, token: string, body: string): string =>
    `POST ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${body.length}\r\n\r\n${body}`
  const admin = `Authorization: Bearer ${PUB}\r\n`
  const cases: Array<[name: string, request: string, arm: () => void]> = [
    ['GET /events: the authenticate hook throws', get('/events/boom'), () => {}],
    ['GET /events: an async authenticate hook rejects', get('/events/later'), () => {}],
    ['GET /events with Last-Event-ID: waiting to place the id rejects', get(`/events/${TOKEN}`, 'Last-Event-ID: 7\r\n'), () => failOnce(routes, 'catchUp', 'reject')],
    ['POST /publish: the hook throws on the bearer, before the body', post('/publish', 'boom', 'x'), () => {}],
    ['POST /publish: publishing throws', post('/publish', PUB, 'x'), () => failOnce(routes, 'publish', 'throw')],
    ['POST /publish: publishing rejects (as a cluster bus answers)', post('/publish', PUB, 'x'), () => failOnce(routes, 'publish', 'reject')],
    ['GET /stats: the figures throw', get('/stats', admin), () => failOnce(routes, 'stats', 'throw')],
    ['GET /metrics: the figures reject', get('/metrics', admin), () => failOnce(routes, 'stats', 'reject')],
    ['GET /healthz: reading the state throws', get('/healthz'), () => failGetterOnce(routes, 'stopping')],
    ['DELETE /clients: closing every stream throws', `DELETE /clients HTTP/1.1\r\nHost: x\r\n${admin}\r\n`, () => failOnce(routes, 'closeAll', 'throw')],
    ['DELETE /clients/ID: closing one rejects', `DELETE /clients/1 HTTP/1.1\r\nHost: x\r\n${admin}\r\n`, () => failOnce(routes, 'closeClient', 'reject')],
    ['OPTIONS: the route throws', 'OPTIONS /publish HTTP/1.1\r\nHost: x\r\n\r\n', () => failOnce(host, 'route', 'throw')],
    ['OPTIONS: the route rejects', 'OPTIONS /events HTTP/1.1\r\nHost: x\r\n\r\n', () => failOnce(host, 'route', 'reject')],
    ['GET /index.html: reading the file rejects', get('/index.html'), () => failOnce(routes.statics as Target, 'serve', 'reject')],
  ]
  for (const [i, [name, request, arm]] of cases.entries()) {
    arm()
    const before = warnings.length
    t.equal(await rawRequest(port, request), INTERNAL, `${name}: 500, and the connection closes`)
    t.equal(warnings.length, before + 1, `${name}: one warning`)
    t.match(warnings.at(-1), /^rawsse: Error: [\w ]+ failed \(test\)/, `${name}: the warning says what failed`)
    // Still serving, the failed part included.
    const s = await openStream(port, `/events/${TOKEN}`)
    const r = await publish(base, '', `after ${i}`)
    t.equal(r.status, 200, `${name}: a publish afterwards`)
    await s.waitFor(ev(String(r.json.id), `after ${i}`))
    s.close()
  }
  const page = await rawRequest(port, get('/index.html', 'Connection: close\r\n'))
  t.match(page, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n<p>hi<\/p>\n$/, 'the file is served again')
  t.match(await rawRequest(port, get('/healthz', 'Connection: close\r\n')), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\{"status":"ok"\}$/, '/healthz answers again')
  t.equal(server.clientCount, 0)
})

t.test('a library whose filter throws: the broadcast throws to its caller, and the server serves on', async (t) => {
  const { server, port, base } = await startServer(t)
  const s = await openStream(port, `/events/${TOKEN}`)
  t.throws(
    () =>
      server.broadcast({ data: 'x' }, () => {
        throw new Error('filter failed (test)')
      }),
    /filter failed/,
  )
  const r = await publish(base, '', 'after')
  t.equal(r.status, 200)
  await s.waitFor('data: after\n')
  s.close()
})

// The library has no promise of its own to lose: stop() on a server whose listen() failed resolves.
t.test('listen() on a taken port rejects to its caller; stop() afterwards resolves', async (t) => {
  const { port } = await startServer(t)
  const second = new SseServer({ port, host: '127.0.0.1', tokens: [TOKEN], tickMs: 0, heartbeatMs: 0, publicDir: null })
  await t.rejects(second.listen(), /EADDRINUSE/)
  await second.stop()
})
