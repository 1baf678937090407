// Plain (non-stream) HTTP/1.1 responses: status line, headers, a body with Content-Length,
// keep-alive or close (RFC 9112 §4, §6.3, §9.3; RFC 9110 §6.6.1 for Date). Knows no SSE.

import { REASONS } from './errors.js'

export type Header = readonly [name: string, value: string]

/** A complete answer to one request, before framing. */
export interface Reply {
  status: number
  headers?: readonly Header[]
  /** A string is sent as UTF-8. */
  body?: Buffer | string
  contentType?: string
  /** The response body length for HEAD when `body` is absent (static files). */
  contentLength?: number
  /** Close the connection after this response, whatever the request asked. */
  close?: boolean
}

export function json(status: number, value: unknown, headers?: readonly Header[]): Reply {
  const reply: Reply = { status, body: JSON.stringify(value), contentType: 'application/json; charset=utf-8' }
  if (headers !== undefined) reply.headers = headers
  return reply
}

export function text(status: number, body: string, headers?: readonly Header[]): Reply {
  const reply: Reply = { status, body: body + '\n', contentType: 'text/plain; charset=utf-8' }
  if (headers !== undefined) reply.headers = headers
  return reply
}

// RFC 9110 §6.6.1: an origin server with a clock sends Date. It changes once a second, so the
// formatted string is cached for that second.
let dateSecond = -1
let dateValue = ''
function httpDate(): string {
  const now = Date.now()
  const second = Math.floor(now / 1000)
  if (second !== dateSecond) {
    dateSecond = second
    dateValue = new Date(now).toUTCString()
  }
  return dateValue
}

export interface FrameOptions {
  /** A HEAD request: every header as for GET, no body. */
  head: boolean
  keepAlive: boolean
  /** The request was HTTP/1.0, which closes by default and must be told `keep-alive`. */
  http10: boolean
  corsOrigin: string
  /** Also `Access-Control-Allow-Credentials: true` (an auth cookie, with a specific origin). */
  corsCredentials?: boolean
}

/** The response head as a string (for bodies that are streamed after it, e.g. large files). */
export function formatHead(reply: Reply, bodyLength: number, opts: FrameOptions): string {
  let head = `HTTP/1.1 ${reply.status} ${REASONS[reply.status] ?? 'Unknown'}\r\nDate: ${httpDate()}\r\n`
  if (reply.contentType !== undefined) head += `Content-Type: ${reply.contentType}\r\n`
  // 204 and 304 have no body and, here, no Content-Length (RFC 9110 §8.6).
  if (reply.status !== 204 && reply.status !== 304) head += `Content-Length: ${bodyLength}\r\n`
  head += `Access-Control-Allow-Origin: ${opts.corsOrigin}\r\n`
  if (opts.corsCredentials === true) head += 'Access-Control-Allow-Credentials: true\r\n'
  for (const [name, value] of reply.headers ?? []) head += `${name}: ${value}\r\n`
  if (!opts.keepAlive || reply.close === true) head += 'Connection: close\r\n'
  else if (opts.http10) head += 'Connection: keep-alive\r\n'
  return head + '\r\n'
}

/** The whole response, head and body, in one Buffer: one write, one syscall. */
export function formatResponse(reply: Reply, opts: FrameOptions): Buffer {
  const body = reply.body === undefined ? null : typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body
  const length = body?.length ?? reply.contentLength ?? 0
  const head = formatHead(reply, length, opts)
  if (body === null || opts.head || reply.status === 204 || reply.status === 304) return Buffer.from(head, 'latin1')
  const out = Buffer.allocUnsafe(Buffer.byteLength(head, 'latin1') + body.length)
  const n = out.write(head, 'latin1')
  body.copy(out, n)
  return out
}
