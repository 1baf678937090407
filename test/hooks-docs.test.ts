// docs/hooks.md's webhook receiver, run as printed: rawsse --webhook POSTs to it, it checks the
// signature and prints each change; a forged or stale signature gets 401.

import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { signature } from '../src/server/webhooks/change.js'
import { openStream } from './helpers.js'
import { Child, ROOT, startCli, until } from './process.js'
import { freePort } from './redis-server.js'

const SECRET = 'docs-receiver-secret'

/** The js block of docs/hooks.md that is the receiver. */
function receiverCode(): string {
  const page = readFileSync(path.join(ROOT, 'docs', 'hooks.md'), 'utf8')
  const m = /```js\n(\/\/ receiver\.mjs[\s\S]*?)```/.exec(page)
  if (m === null) throw new Error('no receiver block in docs/hooks.md')
  return m[1]!
}

t.test("docs/hooks.md's receiver checks rawsse's signature and prints each change; a forged one is refused", async (t) => {
  const code = receiverCode()
  t.ok(code.split('\n').length <= 21, `a 20-line receiver (${code.split('\n').length - 1} lines)`)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-receiver-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'receiver.mjs'), code)
  writeFileSync(path.join(dir, 'users.json'), JSON.stringify([{ token: 'ann-token', user: 'ann', roles: [] }]))
  const port = await freePort()
  const receiver = new Child(t, process.execPath, [path.join(dir, 'receiver.mjs')], { env: { ...process.env, RAWSSE_WEBHOOK_SECRET: SECRET, PORT: String(port) } })
  const url = `http://127.0.0.1:${port}/sse-hook`
  await until(
    async () => (await fetch(url, { method: 'POST', body: '{}' }).catch(() => null))?.status === 401,
    () => `the receiver to listen; stderr: ${receiver.stderr}`,
  )
  const body = '{"id":"x","type":"user.online","channel":null,"user":"eve","at":"2026-01-01T00:00:00.000Z"}'
  const forged = await fetch(url, { method: 'POST', body, headers: { 'rawsse-signature': signature('not the secret', body) } })
  t.equal(forged.status, 401, 'a body signed with another secret')
  const stale = await fetch(url, { method: 'POST', body, headers: { 'rawsse-signature': signature(SECRET, body, Math.floor(Date.now() / 1000) - 600) } })
  t.equal(stale.status, 401, 'a signature 10 minutes old')

  const cli = await startCli(t, ['--port', '0', '--tick', '0', '--heartbeat', '0', '--users', path.join(dir, 'users.json'), '--webhook', url, '--webhook-grace', '100', '--log', 'off'], { env: { RAWSSE_WEBHOOK_SECRET: SECRET } })
  const s = await openStream(cli.port, '/events/ann-token?channel=news')
  await until(() => receiver.stdout.split('\n').length > 2, () => `two lines from the receiver; stdout: ${receiver.stdout}; stderr: ${receiver.stderr}`)
  const lines = receiver.stdout.trim().split('\n').map((l) => l.split(' ').slice(1, 3).join(' ')).sort()
  t.same(lines, ['channel.occupied news', 'user.online ann'], 'each change printed once, checked')
  t.notMatch(receiver.stdout, /eve/, 'the forged ones were not')
  s.close()
  cli.child.kill('SIGTERM')
  await cli.child.waitExit()
})
