// A naive SSE server on node:http, the baseline peer for bench/fanout.mjs and bench/http.mjs.
//
//   node bench/peers/node-http.mjs [--port 0] [--public DIR] [--publish-token T]
//
// What a first attempt on node:http looks like: GET /events (or /events/ANYTHING) keeps `res` in
// an array with the usual SSE headers; POST /publish reads the body and res.write()s
// `data: BODY\n\n` to each, ignoring write()'s return value (no slow-consumer handling), then
// answers 200 {"id":"N","delivered":N} like rawsse (with --publish-token, only to
// `Authorization: Bearer T`, compared in constant time as rawsse does; else 401). Any other GET is a static file under --public
// (default: rawsse's public/), doing what rawsse's static.ts does: realpath, stat on every
// request, a weak ETag from size and mtime, 304 on If-None-Match, the body cached until the file
// changes. The first line on standard output is `node-http listening on http://127.0.0.1:PORT`.

import { timingSafeEqual } from 'node:crypto'
import * as fs from 'node:fs/promises'
import * as http from 'node:http'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'

const args = process.argv.slice(2)
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`)
  return i === -1 ? def : args[i + 1]
}
const PORT = Number(arg('port', '0'))
const ROOT = path.resolve(arg('public', path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'public')))
const PUBLISH_TOKEN = arg('publish-token', undefined)
const EXPECTED_AUTH = PUBLISH_TOKEN === undefined ? null : Buffer.from(`Bearer ${PUBLISH_TOKEN}`)
const MIME = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.png': 'image/png', '.json': 'application/json' }

const streams = []
let nextId = 1
const cache = new Map() // real path -> { size, mtimeMs, body }

async function serveFile(req, res, urlPath) {
  let rel
  try {
    rel = decodeURIComponent(urlPath.split('?')[0])
  } catch {
    rel = '\0'
  }
  if (rel.endsWith('/')) rel += 'index.html'
  if (rel.includes('\0')) return notFound(res)
  const file = path.join(ROOT, path.normalize(rel))
  let real, st
  try {
    real = await fs.realpath(file)
    if (real !== ROOT && !real.startsWith(ROOT + path.sep)) return notFound(res)
    st = await fs.stat(real)
  } catch {
    return notFound(res)
  }
  if (!st.isFile()) return notFound(res)
  const etag = `W/"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`
  const headers = { ETag: etag, 'Cache-Control': 'no-cache', 'Content-Type': MIME[path.extname(real)] ?? 'application/octet-stream' }
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers)
    return res.end()
  }
  let hit = cache.get(real)
  if (hit === undefined || hit.mtimeMs !== st.mtimeMs || hit.size !== st.size) {
    const body = await fs.readFile(real)
    hit = { size: body.length, mtimeMs: st.mtimeMs, body }
    cache.set(real, hit)
  }
  headers['Content-Length'] = hit.body.length
  res.writeHead(200, headers)
  res.end(req.method === 'HEAD' ? undefined : hit.body)
}

function notFound(res) {
  res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' })
  res.end('not found\n')
}

const server = http.createServer(async (req, res) => {
  const url = req.url ?? '/'
  if (req.method === 'GET' && (url === '/events' || url.startsWith('/events?') || url.startsWith('/events/'))) {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    })
    res.write('retry: 3000\n\n')
    streams.push(res)
    res.on('close', () => {
      const i = streams.indexOf(res)
      if (i !== -1) streams.splice(i, 1)
    })
    return
  }
  if (req.method === 'POST' && url.split('?')[0] === '/publish') {
    if (EXPECTED_AUTH !== null) {
      const got = Buffer.from(req.headers.authorization ?? '')
      if (got.length !== EXPECTED_AUTH.length || !timingSafeEqual(got, EXPECTED_AUTH)) {
        res.writeHead(401, { 'Content-Type': 'text/plain; charset=utf-8' })
        return res.end('unauthorized\n')
      }
    }
    const parts = []
    for await (const part of req) parts.push(part)
    const id = String(nextId++)
    const event = `id: ${id}\ndata: ${Buffer.concat(parts).toString('utf8')}\n\n`
    for (const r of streams) r.write(event)
    const json = JSON.stringify({ id, delivered: streams.length })
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) })
    res.end(json)
    return
  }
  if (req.method === 'GET' || req.method === 'HEAD') return serveFile(req, res, url)
  res.writeHead(405, { Allow: 'GET, HEAD, POST' })
  res.end()
})

server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`node-http listening on http://127.0.0.1:${server.address().port}\n`)
})
const stop = () => process.exit(0)
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
