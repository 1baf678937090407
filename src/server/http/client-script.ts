// GET /rawsse-client.js: the browser client (src/browser, built into dist/browser/ by `npm run
// build`), served by every rawsse whatever --public holds, without a token, with a strong ETag
// and 304 (RFC 9110 §8.8.3, §13.1.2). Read from disk once, on the first request.

import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Reply } from './response.js'
import { etagMatches } from './static.js'

export const CLIENT_SCRIPT_PATH = '/rawsse-client.js'

// src/server/http/ and dist/server/http/ are both three levels under the package root.
const BUILT = fileURLToPath(new URL('../../../dist/browser/rawsse-client.js', import.meta.url))

interface Script {
  body: Buffer
  etag: string
}

let loaded: Promise<Script | null> | null = null

function load(): Promise<Script | null> {
  loaded ??= fs.readFile(BUILT).then(
    (body) => ({ body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }),
    () => null,
  )
  return loaded
}

/** The answer to GET or HEAD of CLIENT_SCRIPT_PATH. */
export async function clientScript(ifNoneMatch: string | undefined): Promise<Reply> {
  const script = await load()
  // A checkout that was never built: say so rather than serve nothing useful.
  if (script === null) return { status: 404, body: 'rawsse-client.js is not built (npm run build)\n', contentType: 'text/plain; charset=utf-8' }
  // no-cache: a browser asks again each time (a 304 when nothing changed), so an upgraded server's client is used at once.
  const headers = [
    ['ETag', script.etag],
    ['Cache-Control', 'no-cache'],
    ['X-Content-Type-Options', 'nosniff'],
  ] as const
  if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, script.etag)) return { status: 304, headers }
  return { status: 200, headers, contentType: 'text/javascript; charset=utf-8', body: script.body }
}
