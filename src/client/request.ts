// One HTTP/1.1 request on a connection of its own, answered in full: what `rawsse publish`
// sends. The server closes after its answer (we ask it to) and we read to the end of the body.

import { dial, type TlsOptions } from './dial.js'
import { ResponseError, ResponseReader, requestHead, type ResponseHead } from './http.js'

export interface Answer {
  status: number
  reason: string
  body: Buffer
}

/** Resolves to the status and the whole body; rejects on a network error, a broken answer, or none within `timeoutMs`. */
export function request(url: URL, method: string, fields: ReadonlyArray<readonly [string, string]>, body: Buffer, timeoutMs: number, tls?: TlsOptions): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = dial(url, tls === undefined ? {} : { tls })
    let head: ResponseHead | null = null
    const parts: Buffer[] = []
    let settled = false
    const settle = (err: Error | null): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      reader.stop()
      socket.destroy()
      if (err !== null) reject(err)
      else resolve({ status: head!.status, reason: head!.reason, body: Buffer.concat(parts) })
    }
    const reader = new ResponseReader({
      onHead: (h) => (head = h),
      onBody: (b, s, e) => parts.push(Buffer.from(b.subarray(s, e))),
      onEnd: () => settle(null),
    })
    const timer = setTimeout(() => settle(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs)
    socket.on('data', (d: Buffer) => {
      try {
        reader.feed(d)
      } catch (err) {
        if (!(err instanceof ResponseError)) throw err
        settle(err)
      }
    })
    socket.on('error', (err) => settle(err))
    socket.on('close', () => {
      if (head === null) settle(new Error('connection closed before an answer'))
      else if (!reader.end()) settle(new Error('connection closed in the middle of the answer'))
    })
    socket.write(Buffer.concat([requestHead(method, url, fields), body]))
  })
}
