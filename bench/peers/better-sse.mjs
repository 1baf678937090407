// better-sse on node:http, one channel, as a fan-out peer for bench/fanout.mjs.
//
//   node bench/peers/better-sse.mjs [--port 0]
//
// GET /events: createSession(req, res) and channel.register(session). POST /publish: reads the
// body and channel.broadcast(body); answers 200 {"delivered":N}. Used as its README shows, with
// two options changed so it does the same work as the others: a serializer that writes the body
// as is (the default is JSON.stringify, which would quote it) and no keep-alive comments (rawsse
// runs with --heartbeat 0). Each broadcast still gets better-sse's own random UUID event id.
// The first line on standard output is `better-sse listening on http://127.0.0.1:PORT`.

import * as http from 'node:http'
import { createChannel, createSession } from 'better-sse'

const args = process.argv.slice(2)
const portArg = args.indexOf('--port')
const PORT = portArg === -1 ? 0 : Number(args[portArg + 1])

const channel = createChannel()
const sessionOptions = { keepAlive: null, serializer: (data) => String(data) }

const server = http.createServer(async (req, res) => {
  const url = req.url ?? '/'
  if (req.method === 'GET' && (url === '/events' || url.startsWith('/events?') || url.startsWith('/events/'))) {
    try {
      const session = await createSession(req, res, sessionOptions)
      channel.register(session) // deregistered by better-sse when the connection closes
    } catch {
      res.destroy()
    }
    return
  }
  if (req.method === 'POST' && url.split('?')[0] === '/publish') {
    const parts = []
    for await (const part of req) parts.push(part)
    const body = Buffer.concat(parts).toString('utf8')
    const delivered = channel.sessionCount
    channel.broadcast(body)
    const json = JSON.stringify({ delivered })
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) })
    res.end(json)
    return
  }
  res.writeHead(404, { 'Content-Type': 'text/plain' })
  res.end('not found\n')
})

server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`better-sse listening on http://127.0.0.1:${server.address().port}\n`)
})
const stop = () => process.exit(0)
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
