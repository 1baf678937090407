// Static files under the publicDir option (docs/wire.md "Routes"): types,
// Content-Length, ETag and 304, HEAD, 404, and never a byte from outside the folder, whatever
// the spelling of the path. Fixtures live in a fresh temp folder:
//
//   <tmp>/x                  a secret beside the public folder
//   <tmp>/secret.txt         another one
//   <tmp>/public/...         what may be served

import { promises as fs } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import t, { type Test } from 'tap'
import type { SseServerOptions } from '../src/index.js'
import { STATIC_CACHE_MAX_FILE_BYTES } from '../src/server/limits.js'
import { chunk, openStream, parseResponse, publish, RawClient, rawRequest, startServer, TOKEN, type Running } from './helpers.js'

const SECRET = 'TOP-SECRET-7f3a9c'
const INDEX = '<!doctype html>\n<title>rawsse</title>\n<p>héllo</p>\n'
const CSS = 'body { color: #123456 }\n'
const JS = 'console.log("rawsse")\n'
const JSON_TEXT = '{"a":[1,2,3]}\n'
// A real PNG signature and every byte value, so a text-mode mangling would show.
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from(Array.from({ length: 256 }, (_, i) => i))])

/** A patterned buffer, so a misplaced or lost range of bytes shows up in a comparison. */
function pattern(size: number): Buffer {
  const b = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) b[i] = (i * 7 + (i >> 10)) & 0xff
  return b
}
const BIG = pattern(STATIC_CACHE_MAX_FILE_BYTES + 12_345)
const AT_LIMIT = pattern(STATIC_CACHE_MAX_FILE_BYTES)
const OVER_BY_ONE = pattern(STATIC_CACHE_MAX_FILE_BYTES + 1)

interface Fixture {
  dir: string
  pub: string
}

async function makeFixture(t: Test): Promise<Fixture> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rawsse-static-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const pub = path.join(dir, 'public')
  await fs.mkdir(path.join(pub, 'sub'), { recursive: true })
  await fs.mkdir(path.join(pub, 'a'), { recursive: true })
  await fs.writeFile(path.join(dir, 'x'), SECRET)
  await fs.writeFile(path.join(dir, 'secret.txt'), SECRET)
  await fs.writeFile(path.join(pub, 'index.html'), INDEX)
  await fs.writeFile(path.join(pub, 'style.css'), CSS)
  await fs.writeFile(path.join(pub, 'app.js'), JS)
  await fs.writeFile(path.join(pub, 'data.json'), JSON_TEXT)
  await fs.writeFile(path.join(pub, 'img.png'), PNG)
  await fs.writeFile(path.join(pub, 'big.bin'), BIG)
  await fs.writeFile(path.join(pub, 'at-limit.bin'), AT_LIMIT)
  await fs.writeFile(path.join(pub, 'over-by-one.bin'), OVER_BY_ONE)
  await fs.writeFile(path.join(pub, 'sub', 'index.html'), '<p>sub</p>\n')
  await fs.writeFile(path.join(pub, 'sub', 'page.txt'), 'page\n')
  // Symlinks: out to a file, out to the parent folder, and one that stays inside.
  await fs.symlink(path.join(dir, 'x'), path.join(pub, 'leak'))
  await fs.symlink('../secret.txt', path.join(pub, 'leak-relative.txt'))
  await fs.symlink('..', path.join(pub, 'up'))
  await fs.symlink(path.join(pub, 'sub', 'page.txt'), path.join(pub, 'inside.txt'))
  return { dir, pub }
}

interface Parsed {
  status: number
  statusLine: string
  headers: Record<string, string>
  body: Buffer
  raw: string
}

function parse(raw: string): Parsed {
  const r = parseResponse(raw)
  return { status: r.status, statusLine: r.statusLine, headers: r.headers, body: Buffer.from(r.body, 'latin1'), raw }
}

/** One request on its own connection with `Connection: close`; the target is sent as is. */
async function get(port: number, target: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Parsed> {
  let head = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n`
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
  return parse(await rawRequest(port, head + '\r\n'))
}

/**
 * Wait until a keep-alive connection holds one complete response per entry of `headOnly` after
 * offset `from` (true: a HEAD answer, no body); returns them parsed.
 */
async function responses(c: RawClient, from: number, headOnly: boolean[], timeoutMs = 5000): Promise<Parsed[]> {
  const split = (s: string): Parsed[] | null => {
    const out: Parsed[] = []
    let pos = from
    for (const noBody of headOnly) {
      const end = s.indexOf('\r\n\r\n', pos)
      if (end === -1) return null
      const head = parse(s.slice(pos, end + 4))
      const len = noBody || head.status === 304 ? 0 : Number(head.headers['content-length'] ?? 0)
      if (s.length < end + 4 + len) return null
      out.push(parse(s.slice(pos, end + 4 + len)))
      pos = end + 4 + len
    }
    return out
  }
  await c.waitFor((s) => split(s) !== null, timeoutMs)
  return split(c.received)!
}

async function serve(t: Test, opts: SseServerOptions = {}): Promise<Running & Fixture> {
  const fx = await makeFixture(t)
  const r = await startServer(t, { publicDir: fx.pub, ...opts })
  return { ...r, ...fx }
}

t.test('/ is index.html with Content-Type, Content-Length and ETag', async (t) => {
  const r = await serve(t)
  const res = await get(r.port, '/')
  t.equal(res.statusLine, 'HTTP/1.1 200 OK')
  t.equal(res.headers['content-type'], 'text/html; charset=utf-8')
  t.equal(res.headers['content-length'], String(Buffer.byteLength(INDEX)))
  t.match(res.headers.etag, /^(W\/)?"[^"]+"$/, 'a quoted entity tag')
  t.equal(res.body.toString('utf8'), INDEX)
  const again = await get(r.port, '/index.html')
  t.equal(again.body.toString('utf8'), INDEX)
  t.equal(again.headers.etag, res.headers.etag, 'same file, same ETag')
  const sub = await get(r.port, '/sub/')
  t.equal(sub.status, 200, 'a folder with a trailing slash serves its index.html')
  t.equal(sub.body.toString(), '<p>sub</p>\n')
})

t.test('If-None-Match with the ETag is 304 without a body; a changed file gets a new ETag', async (t) => {
  const r = await serve(t)
  const first = await get(r.port, '/style.css')
  const etag = first.headers.etag!
  t.ok(etag, 'has an ETag')
  for (const inm of [etag, `"nope", ${etag}`, '*']) {
    const res = await get(r.port, '/style.css', { 'If-None-Match': inm })
    t.equal(res.statusLine, 'HTTP/1.1 304 Not Modified', `If-None-Match: ${inm}`)
    t.equal(res.body.length, 0, 'no body')
    t.equal(res.headers.etag, etag)
    t.notOk('content-length' in res.headers && res.headers['content-length'] !== String(CSS.length), 'no misleading length')
  }
  const other = await get(r.port, '/style.css', { 'If-None-Match': '"something-else"' })
  t.equal(other.status, 200)
  t.equal(other.body.toString(), CSS)

  // On a keep-alive connection, the 304 has no body that could be read as the next response.
  const c = await RawClient.open(r.port)
  c.write(`GET /style.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${etag}\r\n\r\nGET /app.js HTTP/1.1\r\nHost: x\r\n\r\n`)
  const [notModified, js] = await responses(c, 0, [false, false])
  t.equal(notModified!.status, 304)
  t.equal(js!.status, 200)
  t.equal(js!.body.toString(), JS)
  c.close()

  await fs.writeFile(path.join(r.pub, 'style.css'), CSS + '/* changed, and longer */\n')
  const changed = await get(r.port, '/style.css', { 'If-None-Match': etag })
  t.equal(changed.status, 200, 'the old ETag no longer matches')
  t.not(changed.headers.etag, etag)
  t.equal(changed.body.toString(), CSS + '/* changed, and longer */\n', 'the new content, not a cached copy')
})

t.test('each type gets its Content-Type and its exact bytes', async (t) => {
  const r = await serve(t)
  const cases: Array<[string, string, Buffer]> = [
    ['/style.css', 'text/css; charset=utf-8', Buffer.from(CSS)],
    ['/app.js', 'text/javascript; charset=utf-8', Buffer.from(JS)],
    ['/data.json', 'application/json; charset=utf-8', Buffer.from(JSON_TEXT)],
    ['/img.png', 'image/png', PNG],
    ['/sub/page.txt', 'text/plain; charset=utf-8', Buffer.from('page\n')],
  ]
  for (const [p, type, body] of cases) {
    const res = await get(r.port, p)
    t.equal(res.status, 200, p)
    t.equal(res.headers['content-type'], type, p)
    t.equal(res.headers['content-length'], String(body.length), p)
    t.ok(res.headers.etag, `${p} ETag`)
    t.ok(res.body.equals(body), `${p} body`)
  }
})

t.test('HEAD sends the headers of GET and no body; the connection goes on', async (t) => {
  const r = await serve(t)
  const c = await RawClient.open(r.port)
  c.write('HEAD /img.png HTTP/1.1\r\nHost: x\r\n\r\n')
  const [head] = await responses(c, 0, [true])
  t.equal(head!.status, 200)
  t.equal(head!.headers['content-type'], 'image/png')
  t.equal(head!.headers['content-length'], String(PNG.length), 'the length GET would send')
  t.ok(head!.headers.etag)
  t.equal(c.received.length, head!.raw.length, 'nothing after the head')
  const mark = c.received.length
  c.write('HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /style.css HTTP/1.1\r\nHost: x\r\n\r\n')
  const [bigHead, css] = await responses(c, mark, [true, false])
  t.equal(bigHead!.headers['content-length'], String(BIG.length), 'HEAD of a streamed file')
  t.equal(css!.status, 200, 'the next response follows right after the head')
  t.equal(css!.body.toString(), CSS)
  c.close()
})

t.test('a missing file is 404', async (t) => {
  const r = await serve(t)
  for (const p of ['/missing.html', '/sub/missing', '/style.css/more', '/nope/']) {
    const res = await get(r.port, p)
    t.equal(res.status, 404, p)
  }
  const withQuery = await get(r.port, '/style.css?v=3')
  t.equal(withQuery.status, 200, 'the query is not part of the file name')
  t.equal(withQuery.body.toString(), CSS)
})

t.test('no path ever leaves the public folder', async (t) => {
  const r = await serve(t)
  const attempts = [
    '/../x',
    '/../secret.txt',
    '/%2e%2e/x',
    '/%2E%2E/x',
    '/.%2e/x',
    '/sub/../../x',
    '/sub/%2e%2e/%2e%2e/x',
    '/a%2f..%2f..%2fx',
    '/a%2F..%2F..%2Fx',
    '/..%2fx',
    '/%5c..%5cx',
    '/a%5c..%5c..%5cx',
    '/..\\x',
    '/a%00b',
    '/index.html%00.png',
    '/x%00',
    '/leak',
    '/leak-relative.txt',
    '/up/x',
    '/up/secret.txt',
    `/${encodeURIComponent(path.join(r.dir, 'x'))}`,
    `/${path.join(r.dir, 'x')}`,
    '//etc/passwd',
  ]
  for (const p of attempts) {
    const raw = await rawRequest(r.port, `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
    t.notMatch(raw, SECRET, `${p}: the secret never appears`)
    t.match(raw, /^HTTP\/1\.1 404 Not Found\r\n/, `${p}: 404`)
  }
  // A symlink that stays inside the folder is served: the refusals above are about leaving it.
  const inside = await get(r.port, '/inside.txt')
  t.equal(inside.status, 200)
  t.equal(inside.body.toString(), 'page\n')
  // And the server still serves, and streams still get their events.
  t.equal((await get(r.port, '/')).body.toString('utf8'), INDEX)
  const s = await openStream(r.port, `/events/${TOKEN}`)
  await publish(r.base, '', 'still here')
  await s.waitFor(chunk('id: 1\ndata: still here\n\n'))
  s.close()
})

t.test('a file larger than the in-memory limit is served whole and the connection answers the next request', async (t) => {
  const r = await serve(t)
  const c = await RawClient.open(r.port)
  c.write('GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n')
  const [big] = await responses(c, 0, [false])
  t.equal(big!.status, 200)
  t.equal(big!.headers['content-type'], 'application/octet-stream')
  t.equal(big!.headers['content-length'], String(BIG.length))
  t.ok(big!.headers.etag)
  t.ok(big!.body.equals(BIG), 'every byte, in order')
  t.notOk(c.closed)
  const mark = c.received.length
  c.write('GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n')
  const [css] = await responses(c, mark, [false])
  t.equal(css!.status, 200)
  t.equal(css!.body.toString(), CSS)
  t.equal(c.received.length, mark + css!.raw.length, 'nothing extra on the connection')

  // If-None-Match works for a streamed file too.
  const nm = await get(r.port, '/big.bin', { 'If-None-Match': big!.headers.etag! })
  t.equal(nm.status, 304)
  t.equal(nm.body.length, 0)
  c.close()
})

t.test('files at the in-memory limit and one byte over are both served whole', async (t) => {
  const r = await serve(t)
  const c = await RawClient.open(r.port)
  let mark = 0
  for (const [p, body] of [
    ['/at-limit.bin', AT_LIMIT],
    ['/over-by-one.bin', OVER_BY_ONE],
    ['/at-limit.bin', AT_LIMIT], // now from the cache
  ] as const) {
    c.write(`GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`)
    const [res] = await responses(c, mark, [false])
    t.equal(res!.status, 200, p)
    t.equal(res!.headers['content-length'], String(body.length), p)
    t.ok(res!.body.equals(body), `${p} body`)
    mark += res!.raw.length
  }
  c.close()
})

t.test('a request pipelined behind a large file is answered in order', async (t) => {
  // docs/wire.md "Routes": pipelined requests are answered in order. The second request is already in the
  // server's buffer when the file ends; a server that waits for more bytes instead answers it
  // with 408 once the head deadline (shortened here, so the file runs in seconds) passes.
  const r = await serve(t, { headTimeoutMs: 2000 })
  const c = await RawClient.open(r.port)
  c.write('GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /style.css HTTP/1.1\r\nHost: x\r\n\r\n')
  const answers = await responses(c, 0, [false, false]).catch((e: Error) => {
    t.fail(`both answers did not arrive: ${e.message.slice(0, 80)}; after the file: ${JSON.stringify(c.received.slice(-200))}`)
    return null
  })
  if (answers !== null) {
    const [big, css] = answers
    t.equal(big!.status, 200)
    t.ok(big!.body.equals(BIG), 'the large file first, whole')
    t.equal(css!.status, 200)
    t.equal(css!.body.toString(), CSS)
  }
  c.close()
})

t.test('without a publicDir, every other path is 404', async (t) => {
  const r = await startServer(t, { publicDir: null })
  for (const p of ['/', '/index.html', '/../x']) t.equal((await get(r.port, p)).status, 404, p)
})
