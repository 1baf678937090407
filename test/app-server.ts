// The application rawsse asks and tells, in the tests: a real node:http server on 127.0.0.1
// port 0 that records every request (method, path, headers, body) and answers what the test
// says; and the 20-line webhook receiver's signature check, as docs/hooks.md prints it.

import { createHmac, timingSafeEqual } from 'node:crypto'
import * as http from 'node:http'
import type * as net from 'node:net'

export interface AppRequestSeen {
  method: string
  path: string
  headers: http.IncomingHttpHeaders
  body: string
  /** When it came (Date.now()). */
  at: number
}

/** What to answer one request: a status, headers and a body; or 'hang' (never answer). */
export type AppAnswer = { status: number; headers?: Record<string, string>; body?: string } | 'hang'

export interface App {
  port: number
  url: string
  requests: AppRequestSeen[]
  /** How the next requests are answered (replace it at any time). */
  answer: (req: AppRequestSeen) => AppAnswer | Promise<AppAnswer>
  /** Stop listening and end every connection (the application down); listen() again on the same port. */
  down(): Promise<void>
  up(): Promise<void>
}

/** An application on loopback, stopped at the test's end. */
export async function startApp(t: { teardown(fn: () => unknown): void }, answer: App['answer'] = () => ({ status: 200 })): Promise<App> {
  const sockets = new Set<net.Socket>()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (d: Buffer) => chunks.push(d))
    req.on('end', () => {
      const seen: AppRequestSeen = { method: req.method!, path: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() }
      app.requests.push(seen)
      void Promise.resolve(app.answer(seen)).then((a) => {
        if (a === 'hang') return
        res.writeHead(a.status, a.headers ?? {})
        res.end(a.body ?? '')
      })
    })
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  const listen = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject)
        resolve((server.address() as net.AddressInfo).port)
      })
    })
  const close = (): Promise<void> =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy()
      if (!server.listening) return resolve()
      server.close(() => resolve())
    })
  const port = await listen(0)
  const app: App = {
    port,
    url: `http://127.0.0.1:${port}/`,
    requests: [],
    answer,
    down: close,
    up: async () => void (await listen(port)),
  }
  t.teardown(close)
  return app
}

/** The receiver's check of `Rawsse-Signature: t=…,v1=…` (docs/hooks.md): HMAC-SHA256 of `t.BODY`, compared in constant time, t within 5 minutes. */
export function signatureValid(secret: string, header: string | undefined, body: string, nowSeconds = Math.floor(Date.now() / 1000)): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '')
  if (m === null || Math.abs(nowSeconds - Number(m[1])) > 300) return false
  const expected = createHmac('sha256', secret).update(`${m[1]}.${body}`).digest()
  return timingSafeEqual(expected, Buffer.from(m[2]!, 'hex'))
}
