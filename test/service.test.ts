// rawsse as a service (README "Run it as a service"): `npm start` hands signals to node and leaves
// nothing behind, and docs/rawsse.service passes `systemd-analyze verify` and its command starts
// rawsse as written. Runs the built dist/cli.js (`npm test` builds first).

import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { rawRequest } from './helpers.js'
import { Child, CLI, ROOT, START_MS, until, type Teardown } from './process.js'

function tempDir(t: Teardown): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-service-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Whether a process with this PID exists (signal 0 checks without sending). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

// ------------------------------------------------------------------ npm start

t.test('SIGTERM to `npm start`: node gets it, stops, and npm exits 0 with no process left behind', async (t) => {
  // Before `exec` in the script, npm's shell passed SIGTERM on to no one: node went on, its parent PID 1.
  const npm = new Child(t, 'npm', ['start', '--', '--port', '0', '--tick', '0', '--publish-token', 'svc-secret'], { stdin: 'ignore' })
  const pid = Number(
    (await until(() => / start host=127\.0\.0\.1 port=\d+ pid=(\d+) /.exec(npm.stderr), () => `rawsse's start line; stdout: ${npm.stdout}; stderr: ${npm.stderr}`, START_MS))[1],
  )
  // Killed at the end whatever happens: a test must not leave a server running either.
  t.teardown(() => alive(pid) && process.kill(pid, 'SIGKILL'))
  t.not(pid, npm.proc.pid, 'node runs as its own process, under npm')
  const port = Number(/rawsse listening on http:\/\/127\.0\.0\.1:(\d+)\n/.exec(npm.stdout)?.[1])
  t.match(await rawRequest(port, 'GET /stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer svc-secret\r\nConnection: close\r\n\r\n', 2000), /^HTTP\/1\.1 200 OK\r\n/, 'it serves')

  npm.kill('SIGTERM')
  t.same(await npm.waitExit(5000), { code: 0, signal: null }, `npm exits 0; stderr: ${npm.stderr}`)
  t.match(npm.stderr, / stop streams=0\n/, 'node stopped as on its own SIGTERM')
  await until(() => !alive(pid), () => `node (PID ${pid}) to be gone`, 2000)
  t.pass(`node (PID ${pid}) is gone`)
})
