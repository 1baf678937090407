// HttpError, the one path from "this request is bad" to the bytes a client reads, and the
// prewritten error responses (RFC 9110 §15 reason phrases). No I/O here: connection.ts writes them.

export const REASONS: Readonly<Record<number, string>> = {
  100: 'Continue',
  200: 'OK',
  204: 'No Content',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  408: 'Request Timeout',
  411: 'Length Required',
  413: 'Content Too Large',
  414: 'URI Too Long',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  505: 'HTTP Version Not Supported',
}

/** A request we refuse. `status` goes on the status line; `message` becomes the short text body. */
export class HttpError extends Error {
  readonly status: number
  readonly headers: ReadonlyArray<readonly [string, string]>
  constructor(status: number, message?: string, headers: ReadonlyArray<readonly [string, string]> = []) {
    super(message ?? REASONS[status] ?? 'Error')
    this.name = 'HttpError'
    this.status = status
    this.headers = headers
  }
}

/** The methods we route; any other well-formed method gets 405 with this list. */
export const ALLOWED_METHODS = 'GET, HEAD, POST, DELETE, OPTIONS'

// Parser errors carry no per-request detail, so their bytes are built once and reused, like
// Node's `badRequestResponse` and uWS's `httpErrorResponses[]`. Capped, so that messages
// with details in them cannot grow it.
const prebuilt = new Map<string, Buffer>()
const PREBUILT_MAX = 64

/** The CORS headers of the server that refuses: a page on another origin can read the status only with them. */
export interface Cors {
  readonly corsOrigin: string
  readonly corsCredentials: boolean
}

/**
 * A complete error response: short text body and `Connection: close`, because after an error
 * we cannot trust where the next request would start in the bytes the client keeps sending.
 * With `cors` (a request that carried `Origin`), the headers that let a page on another origin
 * read it: without them its fetch() sees a network error, not the 401 that asks for a new token.
 */
export function errorResponse(err: HttpError, cors?: Cors): Buffer {
  const allow = cors === undefined ? '' : `Access-Control-Allow-Origin: ${cors.corsOrigin}\r\n` + (cors.corsCredentials ? 'Access-Control-Allow-Credentials: true\r\n' : '')
  const key = err.headers.length === 0 ? `${err.status} ${err.message}\n${allow}` : null
  const cached = key === null ? undefined : prebuilt.get(key)
  if (cached !== undefined) return cached
  const body = err.message + '\n'
  let head = `HTTP/1.1 ${err.status} ${REASONS[err.status] ?? 'Error'}\r\n` + allow
  for (const [name, value] of err.headers) head += `${name}: ${value}\r\n`
  head +=
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n'
  const bytes = Buffer.from(head + body)
  if (key !== null && prebuilt.size < PREBUILT_MAX) prebuilt.set(key, bytes)
  return bytes
}
