// GET /rawsse-client.js over raw sockets (src/server/http/client-script.ts): built in whatever
// --public holds, no token, text/javascript, a strong ETag and 304, HEAD, and the file itself:
// the one `npm run build` made, the one `rawsse/browser` exports, at most 16 KB.

import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import * as os from 'node:os'
import * as path from 'node:path'
import { rawRequest, startServer } from './helpers.js'
import { ROOT } from './process.js'

const BUILT = path.join(ROOT, 'dist', 'browser', 'rawsse-client.js')
const MAX_BYTES = 16 * 1024

const get = (port: number, extra = '', method = 'GET'): Promise<string> =>
  rawRequest(port, `${method} /rawsse-client.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`)

function head(reply: string): { status: string; headers: Map<string, string>; body: string } {
  const end = reply.indexOf('\r\n\r\n')
  const [status, ...lines] = reply.slice(0, end).split('\r\n')
  return { status: status!, headers: new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()])), body: reply.slice(end + 4) }
}

t.test('is served with no public dir and no token: text/javascript, a strong ETag, no-cache, the built file', async (t) => {
  const { port } = await startServer(t, { publicDir: null })
  const r = head(await get(port))
  const file = readFileSync(BUILT)
  t.equal(r.status, 'HTTP/1.1 200 OK')
  t.equal(r.headers.get('content-type'), 'text/javascript; charset=utf-8')
  t.equal(r.headers.get('content-length'), String(file.length))
  t.match(r.headers.get('etag'), /^"[A-Za-z0-9_-]{22}"$/, 'a strong ETag from the content')
  t.equal(r.headers.get('cache-control'), 'no-cache')
  t.equal(r.headers.get('x-content-type-options'), 'nosniff')
  t.equal(r.body, file.toString('latin1'), 'the body is dist/browser/rawsse-client.js')
  t.ok(file.length <= MAX_BYTES, `the file is at most 16 KB (${file.length} bytes)`)
  t.match(r.body, /^export class RawSse extends EventTarget/m, 'an ES module exporting RawSse')
  t.notMatch(r.body, /^\s*import /m, 'one file: it imports nothing')
})

t.test('answers 304 to its ETag (also weak, also in a list), and HEAD with the headers only', async (t) => {
  const { port } = await startServer(t, { publicDir: null })
  const etag = head(await get(port)).headers.get('etag')!
  for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const r = head(await get(port, `If-None-Match: ${inm}\r\n`))
    t.equal(r.status, 'HTTP/1.1 304 Not Modified', `If-None-Match: ${inm}`)
    t.equal(r.headers.get('etag'), etag)
    t.equal(r.body, '')
  }
  t.equal(head(await get(port, 'If-None-Match: "stale"\r\n')).status, 'HTTP/1.1 200 OK', 'another ETag gets the file')
  const h = head(await get(port, '', 'HEAD'))
  t.equal(h.status, 'HTTP/1.1 200 OK')
  t.equal(h.headers.get('content-length'), String(readFileSync(BUILT).length))
  t.equal(h.body, '', 'HEAD: no body')
  const post = head(await get(port, 'Content-Length: 0\r\n', 'POST'))
  t.equal(post.status, 'HTTP/1.1 405 Method Not Allowed')
  t.equal(post.headers.get('allow'), 'GET, HEAD, OPTIONS')
})

t.test('the built-in file wins over a rawsse-client.js in --public; the other files are still served', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-public-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'rawsse-client.js'), 'not the client')
  writeFileSync(path.join(dir, 'page.js'), 'a page')
  const { port } = await startServer(t, { publicDir: dir })
  t.equal(head(await get(port)).body, readFileSync(BUILT, 'latin1'))
  t.equal(head(await rawRequest(port, 'GET /page.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).body, 'a page')
})

t.test('the package exports the same file as rawsse/browser, with its types', async (t) => {
  const require = createRequire(path.join(ROOT, 'package.json'))
  t.equal(require.resolve('rawsse/browser'), BUILT)
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, { types: string }> }
  const types = readFileSync(path.join(ROOT, pkg.exports['./browser']!.types), 'utf8')
  t.match(types, /export declare class RawSse extends EventTarget/)
  t.match(types, /subscribe\(\.\.\.channels: string\[\]\): void/)
})
