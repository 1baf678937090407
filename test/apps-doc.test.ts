// docs/apps.md's Node backend (the ```js block that signs with jose), run as printed: the token it
// makes opens a stream for that user on the channels it grants, and no other.

import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import { openStream, rawRequest, startServer } from './helpers.js'
import { ROOT } from './process.js'

/** The one ```js block of docs/apps.md that imports jose. */
function backendSnippet(): string {
  const page = readFileSync(path.join(ROOT, 'docs', 'apps.md'), 'utf8')
  const blocks = [...page.matchAll(/\n```js\n([\s\S]*?)\n```\n/g)].map((m) => m[1]!).filter((b) => b.includes("from 'jose'"))
  if (blocks.length !== 1) throw new Error(`docs/apps.md has ${blocks.length} \`\`\`js blocks importing jose, not one`)
  return blocks[0]!
}

t.test("docs/apps.md's backend signs a token that opens the user's stream, within its channels", async (t) => {
  const secret = randomBytes(36).toString('base64url')
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-apps-doc-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // The snippet lives outside the package, so `jose` is named by where this package has it.
  const file = path.join(dir, 'backend.mjs')
  writeFileSync(file, backendSnippet().replace("from 'jose'", `from '${import.meta.resolve('jose')}'`))
  process.env.RAWSSE_JWT_SECRET = secret
  t.teardown(() => delete process.env.RAWSSE_JWT_SECRET)
  const { sseToken } = (await import(pathToFileURL(file).href)) as { sseToken: (user: string) => Promise<string> }

  const r = await startServer(t, { jwt: { secrets: [secret] } })
  const token = await sseToken('alice')
  const s = await openStream(r.port, `/events/${token}?channel=news&channel=user:alice:inbox`)
  t.match(s.received, /event: ready\ndata: \{"client":\d+,"user":"alice","channels":\["news","user:alice:inbox"\],"key":"[\w-]+"\}\n/)
  s.close()
  const other = await rawRequest(r.port, `GET /events/${token}?channel=user:bob:inbox HTTP/1.1\r\nHost: x\r\n\r\n`)
  t.match(other, /^HTTP\/1\.1 403 [\s\S]*\{"error":"channel not allowed","channel":"user:bob:inbox"\}$/)
})
