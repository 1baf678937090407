// The HTTP client rawsse uses to reach the application (--auth-url, --webhook): node:http or
// node:https by the URL's scheme, a keep-alive agent with a bounded number of sockets, one
// deadline for the whole answer (head and body), and a cap on the body read. Never throws:
// every failure is a rejection with an AppHttpError saying what went wrong (for a log line).

import * as http from 'node:http'
import * as https from 'node:https'

/** What the application answered: its status, its headers (lower-case names), its body (empty when not read). */
export interface AppAnswer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** No answer (refused, reset, too slow) or one past the limits: what a log line says, never a secret. */
export class AppHttpError extends Error {
  constructor(
    message: string,
    /** The application did not answer in time (or at all); false: it answered something we will not read. */
    readonly noAnswer: boolean,
  ) {
    super(message)
    this.name = 'AppHttpError'
  }
}

export interface AppRequest {
  method: 'GET' | 'POST'
  headers: http.OutgoingHttpHeaders
  body?: string
  /** The whole answer, head and body, within this. */
  timeoutMs: number
  /** The body is read up to this many bytes (over it: an AppHttpError); 0: not read at all (drained). */
  maxBytes: number
}

/** One application's URL and its connections. */
export class AppClient {
  private readonly agent: http.Agent
  private readonly transport: typeof http | typeof https

  constructor(
    readonly url: URL,
    maxSockets: number,
  ) {
    const secure = url.protocol === 'https:'
    this.transport = secure ? https : http
    // Keep-alive: a storm of questions reuses a few connections rather than opening one each;
    // past maxSockets they wait in the agent's line.
    const options = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' as const }
    this.agent = secure ? new https.Agent(options) : new http.Agent(options)
  }

  /** `req` to the URL. */
  request(req: AppRequest): Promise<AppAnswer> {
    return this.attempt(req, true)
  }

  /** Close every connection (stop): requests under way fail as not answered. */
  close(): void {
    this.agent.destroy()
  }

  private attempt(r: AppRequest, mayRetry: boolean): Promise<AppAnswer> {
    return new Promise((resolve, reject) => {
      let done = false
      const finish = (err: AppHttpError | null, answer?: AppAnswer): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        if (err === null) resolve(answer!)
        else reject(err)
      }
      const req = this.transport.request(this.url, { method: r.method, headers: r.headers, agent: this.agent })
      const timer = setTimeout(() => {
        finish(new AppHttpError(`no answer within ${r.timeoutMs} ms`, true))
        req.destroy()
      }, r.timeoutMs)
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A kept-alive connection the application closed just as we reused it: the request never
        // reached it, so it is sent once more on a fresh one (Node's documented race; both
        // requests we make are safe to repeat: a GET, and a webhook whose id says it is the same).
        if (!done && mayRetry && req.reusedSocket && err.code === 'ECONNRESET') {
          done = true
          clearTimeout(timer)
          this.attempt(r, false).then(resolve, reject)
          return
        }
        finish(new AppHttpError(err.code ?? err.message, true))
      })
      req.on('response', (res) => {
        const status = res.statusCode ?? 0
        const headers = res.headers
        if (r.maxBytes === 0) {
          res.resume() // drained, so that the connection can be used again
          res.on('end', () => finish(null, { status, headers, body: Buffer.alloc(0) }))
          // Cut off after its head: the status was said, and that is all a webhook needs.
          res.on('close', () => finish(null, { status, headers, body: Buffer.alloc(0) }))
          res.on('error', () => {})
          return
        }
        const declared = Number(headers['content-length'])
        if (declared > r.maxBytes) {
          finish(new AppHttpError(`an answer of ${declared} bytes, over ${r.maxBytes}`, false))
          req.destroy()
          return
        }
        const chunks: Buffer[] = []
        let bytes = 0
        res.on('data', (d: Buffer) => {
          bytes += d.length
          if (bytes > r.maxBytes) {
            finish(new AppHttpError(`an answer over ${r.maxBytes} bytes`, false))
            req.destroy()
            return
          }
          chunks.push(d)
        })
        res.on('end', () => finish(null, { status, headers, body: Buffer.concat(chunks) }))
        res.on('error', (err: NodeJS.ErrnoException) => finish(new AppHttpError(err.code ?? err.message, true)))
        res.on('close', () => finish(new AppHttpError('the connection closed before the whole answer', true)))
      })
      req.end(r.body)
    })
  }
}
