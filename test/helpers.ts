// Shared test helpers: a server on 127.0.0.1 port 0, raw sockets, streams read as bytes.
// Every helper talks real TCP; nothing is mocked.

import * as net from 'node:net'
import { HttpError } from '../src/server/http/errors.js'
import { SseServer, type ClientView, type SseServerOptions } from '../src/index.js'

export const TOKEN = 'tok' // may open streams
export const PUB = 'pub' // may open streams, publish and administer

export interface Running {
  server: SseServer
  port: number
  base: string
}

interface Teardown {
  teardown(fn: () => unknown): void
}

/** A server on port 0 with quiet defaults (no tick, no heartbeat); stopped at the test's end. */
export async function startServer(t: Teardown, opts: SseServerOptions = {}): Promise<Running> {
  const server = new SseServer({
    port: 0,
    host: '127.0.0.1',
    tokens: [TOKEN],
    publishTokens: [PUB],
    tickMs: 0,
    heartbeatMs: 0,
    publicDir: null,
    firstEventId: 1, // readable bytes in assertions; the default starts at boot time (see src/server/options.ts)
    ...opts,
  })
  const { port } = await server.listen()
  t.teardown(() => server.stop())
  return { server, port, base: `http://127.0.0.1:${port}` }
}

/** Everything the server sends until it closes the connection (or `timeoutMs`), as latin1. */
export function rawRequest(port: number, bytes: string | Buffer, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes))
    const timer = setTimeout(() => {
      s.destroy()
      resolve(Buffer.concat(chunks).toString('latin1'))
    }, timeoutMs)
    s.on('data', (d) => chunks.push(d))
    s.on('error', (e) => {
      clearTimeout(timer)
      // A reset after the reply is still a reply: return what arrived.
      if (chunks.length > 0) resolve(Buffer.concat(chunks).toString('latin1'))
      else reject(e)
    })
    s.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString('latin1'))
    })
  })
}

/** A raw connection whose received bytes can be awaited. */
export class RawClient {
  readonly socket: net.Socket
  received = ''
  closed = false
  private waiters: Array<() => void> = []

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1')
    this.socket.on('data', (d) => {
      this.received += d.toString('latin1')
      this.wake()
    })
    this.socket.on('error', () => {})
    this.socket.on('close', () => {
      this.closed = true
      this.wake()
    })
  }

  static async open(port: number): Promise<RawClient> {
    const c = new RawClient(port)
    await new Promise<void>((resolve, reject) => {
      c.socket.once('connect', resolve)
      c.socket.once('error', reject)
    })
    return c
  }

  write(bytes: string | Buffer): void {
    this.socket.write(bytes)
  }

  /** Resolves once `received` matches (a substring, a RegExp or a predicate); rejects after timeoutMs. */
  async waitFor(what: string | RegExp | ((s: string) => boolean), timeoutMs = 3000): Promise<string> {
    const test = typeof what === 'string' ? (s: string) => s.includes(what) : what instanceof RegExp ? (s: string) => what.test(s) : what
    const deadline = Date.now() + timeoutMs
    while (!test(this.received)) {
      if (this.closed) throw new Error(`closed before ${String(what)}; received: ${JSON.stringify(this.received)}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${String(what)}; received: ${JSON.stringify(this.received)}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
    return this.received
  }

  /** Resolves when the server has closed the connection. */
  async waitClosed(timeoutMs = 3000): Promise<void> {
    await this.waitFor(() => this.closed, timeoutMs).catch((e: unknown) => {
      if (!this.closed) throw e
    })
  }

  close(): void {
    this.socket.destroy()
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}

/** Open a stream with a raw GET and wait for its `ready` event. */
export async function openStream(port: number, path: string, headers: Record<string, string> = {}): Promise<RawClient> {
  const c = await RawClient.open(port)
  let head = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
  c.write(head + '\r\n')
  await c.waitFor('event: ready\n')
  return c
}

/** The `client` id from a stream's ready event. */
export function clientId(c: RawClient): number {
  const m = /data: \{"client":(\d+),/.exec(c.received)
  if (m === null) throw new Error('no ready event yet')
  return Number(m[1])
}

/** The `key` from a stream's ready event (live channels). */
export function streamKey(c: RawClient): string {
  const m = /data: \{"client":\d+,.*"key":"([\w-]+)"\}\n/.exec(c.received)
  if (m === null) throw new Error('no ready event with a key yet')
  return m[1]!
}

/** POST /publish with fetch; returns the status and the parsed JSON answer. */
export async function publish(
  base: string,
  query: string,
  body: string,
  token: string | null = PUB,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const h: Record<string, string> = { 'content-type': 'text/plain', ...headers }
  if (token !== null) h.authorization = `Bearer ${token}`
  const res = await fetch(`${base}/publish${query === '' ? '' : '?' + query}`, { method: 'POST', headers: h, body })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

/** The bytes of one chunk carrying `text`: `<hex size>\r\n<text>\r\n`. */
export function chunk(text: string): string {
  return `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`
}

/** The exact head of a chunked stream with the default CORS origin. */
export const STREAM_HEAD =
  'HTTP/1.1 200 OK\r\n' +
  'Content-Type: text/event-stream; charset=utf-8\r\n' +
  'Transfer-Encoding: chunked\r\n' +
  'Cache-Control: no-cache, no-transform\r\n' +
  'Connection: keep-alive\r\n' +
  'X-Accel-Buffering: no\r\n' +
  'Access-Control-Allow-Origin: *\r\n' +
  '\r\n'

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** One raw HTTP response (latin1) split into status, headers (lower-case names) and body. */
export interface ParsedResponse {
  status: number
  statusLine: string
  /** Header lines as sent, without Date (it changes every second). */
  headLines: string[]
  headers: Record<string, string>
  body: string
  raw: string
}

export function parseResponse(raw: string): ParsedResponse {
  const end = raw.indexOf('\r\n\r\n')
  if (end === -1) throw new Error(`no complete head in ${JSON.stringify(raw.slice(0, 300))}`)
  const lines = raw.slice(0, end).split('\r\n')
  const statusLine = lines.shift()!
  const headers: Record<string, string> = {}
  for (const l of lines) {
    const i = l.indexOf(':')
    headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim()
  }
  return {
    status: Number(statusLine.split(' ')[1]),
    statusLine,
    headLines: lines.filter((l) => !/^date:/i.test(l)),
    headers,
    body: raw.slice(end + 4),
    raw,
  }
}

/** The head and ready chunk at the start of a stream. */
export const READY_PREFIX = /^HTTP\/1\.1 200 OK\r\n[\s\S]*?\r\n\r\n[0-9a-f]+\r\nretry: \d+\nevent: ready\ndata: [^\n]*\n\n\r\n/

/** What a stream received after its head and ready chunk. */
export function afterReady(c: RawClient): string {
  const m = READY_PREFIX.exec(c.received)
  if (m === null) throw new Error(`no ready chunk in ${JSON.stringify(c.received)}`)
  return c.received.slice(m[0].length)
}

/** The chunk of a published event as the contract puts it on the wire. */
export function ev(id: string, data: string, event?: string): string {
  return chunk(`id: ${id}\n${event === undefined ? '' : `event: ${event}\n`}data: ${data}\n\n`)
}

/** The status of the HttpError that `fn` throws, or 'no error'. Any other exception fails the test. */
export function statusOf(fn: () => unknown): number | string {
  try {
    fn()
  } catch (err) {
    if (err instanceof HttpError) return err.status
    throw err
  }
  return 'no error'
}

/** mulberry32: a seeded PRNG in [0, 1), so a failing random case can be rebuilt from its seed. */
export { rng } from '../bench/lib.mjs'

/** A response as the JSON routes' tests read it: `json` when the body is JSON, else null (the text stays in `body` for the failure message). */
export interface JsonAnswer {
  status: number
  headers: Record<string, string>
  json: Record<string, unknown> | null
  body: string
}

export function jsonAnswer(raw: string): JsonAnswer {
  const r = parseResponse(raw)
  let json: Record<string, unknown> | null = null
  try {
    json = JSON.parse(r.body) as Record<string, unknown>
  } catch {
    // not JSON
  }
  return { status: r.status, headers: r.headers, json, body: r.body }
}

/** One request with a bearer on a connection of its own (Connection: close), so that with --workers the primary hands each to the next worker. */
export async function requestAlone(port: number, method: string, target: string, body: string, token: string): Promise<JsonAnswer> {
  const head = `${method} ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`
  return jsonAnswer(await rawRequest(port, head + body, 10_000))
}

/** Count the writes the server makes to each stream's socket (the 'connect' view is the registry's record). */
export function countWrites(server: SseServer): Map<number, number> {
  const writes = new Map<number, number>()
  server.on('connect', (c: ClientView) => {
    const socket = (c as ClientView & { socket: net.Socket }).socket
    const write = socket.write.bind(socket) as (...args: unknown[]) => boolean
    writes.set(c.id, 0)
    ;(socket as unknown as { write: (...args: unknown[]) => boolean }).write = (...args: unknown[]) => {
      writes.set(c.id, writes.get(c.id)! + 1)
      return write(...args)
    }
  })
  return writes
}
