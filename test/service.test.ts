// rawsse as a service (docs/production.md "Run it as a service"): `npm start` hands signals to node and leaves
// nothing behind, and docs/rawsse.service passes `systemd-analyze verify` and its command starts
// rawsse as written. Runs the built dist/cli.js (`npm test` builds first).

import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { rawRequest } from './helpers.js'
import { canRun } from './needs.js'
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

// ------------------------------------------------------------------ docs/rawsse.service

const UNIT = path.join(ROOT, 'docs', 'rawsse.service')

/** The unit's `Key=value` lines of one section, in order (comments and blank lines left out). */
function unitKeys(text: string, section: string): [string, string][] {
  const out: [string, string][] = []
  let current = ''
  for (const line of text.split('\n')) {
    const header = /^\[(\w+)\]$/.exec(line)
    if (header !== null) current = header[1]!
    else if (current === section && /^\w+=/.test(line)) out.push([line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)])
  }
  return out
}

const SERVICE = unitKeys(readFileSync(UNIT, 'utf8'), 'Service')
const values = (key: string): string[] => SERVICE.filter(([k]) => k === key).map(([, v]) => v)

t.test('docs/rawsse.service passes systemd-analyze verify', async (t) => {
  const missing = await new Promise<string | null>((resolve) => execFile('systemd-analyze', ['--version'], (err) => resolve(err === null ? null : 'systemd-analyze is not installed (Debian: apt-get install systemd)')))
  if (!canRun(t, 'test/service.test.ts', 'systemd-analyze verify', missing)) return
  // verify checks that ExecStart's program exists: a machine whose node is elsewhere checks a copy naming it.
  let unit = UNIT
  if (!existsSync('/usr/bin/node')) {
    unit = path.join(tempDir(t), 'rawsse.service')
    writeFileSync(unit, readFileSync(UNIT, 'utf8').replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `))
  }
  const out = await new Promise<{ code: number; output: string }>((resolve) =>
    execFile('systemd-analyze', ['verify', '--man=no', unit], { timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err === null ? 0 : Number(err.code ?? 1), output: stdout + stderr })),
  )
  // Warnings (an unknown key, a bad value) leave the exit code 0: nothing may be printed at all.
  t.same(out, { code: 0, output: '' }, 'no error and no warning')
})

t.test("docs/rawsse.service runs the bin with its node flags, a dynamic user, a file limit, restarts, and no secret on the command line", async (t) => {
  const shebang = readFileSync(CLI, 'utf8').split('\n')[0]!
  const flags = /^#!\/usr\/bin\/env -S node((?: --[a-z-]+)*)$/.exec(shebang)![1]!.trim()
  t.same(values('ExecStart'), [`/usr/bin/node ${flags} /opt/rawsse/dist/cli.js`], "ExecStart: node with dist/cli.js's own flags")
  t.same(values('DynamicUser'), ['yes'], 'a user of its own, not root')
  t.same(values('LimitNOFILE'), ['20000'])
  t.same(values('Restart'), ['on-failure'])
  t.same(values('LoadCredential'), ['rawsse.json:/etc/rawsse/rawsse.json'], 'the config file comes in as a credential')
  t.notMatch(values('ExecStart').join(' ') + values('Environment').join(' '), /TOKEN|SECRET|--token|--publish-token|--users/i, 'no token in the unit')
})

t.test("docs/rawsse.service's command and environment start rawsse with the credential's token, no static files, and stop on SIGTERM", async (t) => {
  // What systemd would run, here: this node for /usr/bin/node, this checkout for /opt/rawsse, a
  // temporary folder for the credentials directory (%d), and port 0 for the unit's 6500.
  const creds = tempDir(t)
  writeFileSync(path.join(creds, 'rawsse.json'), JSON.stringify({ 'publish-token': ['unit-secret'] }))
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH }
  for (const line of values('Environment')) {
    for (const pair of line.split(/\s+/)) {
      const eq = pair.indexOf('=')
      env[pair.slice(0, eq)] = pair.slice(eq + 1).replace('%d', creds)
    }
  }
  t.equal(env['RAWSSE_CONFIG'], path.join(creds, 'rawsse.json'))
  env['RAWSSE_PORT'] = '0'
  const [node, ...args] = values('ExecStart')[0]!.split(' ')
  t.equal(node, '/usr/bin/node')
  const child = new Child(t, process.execPath, args.map((a) => a.replace('/opt/rawsse', ROOT)), { stdin: 'ignore', env })
  const port = Number((await until(() => /^rawsse listening on http:\/\/127\.0\.0\.1:(\d+)\n/.exec(child.stdout), () => `the start-up lines: ${child.stdout} ${child.stderr}`, START_MS))[1])
  await until(() => child.stdout.split('\n').length > 4, () => 'four start-up lines', START_MS)
  t.match(child.stdout, /\nstream: {4}http:\/\/127\.0\.0\.1:\d+\/events\/unit-secret\n/, "the credential's token")
  t.match(await rawRequest(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 2000), /^HTTP\/1\.1 404 /, 'RAWSSE_PUBLIC=off: GET / is 404')
  t.match(await rawRequest(port, 'GET /events/unit-secret HTTP/1.1\r\nHost: x\r\n\r\n', 500), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n[^]*event: ready\n/, 'a stream opens with it')
  child.kill('SIGTERM')
  t.same(await child.waitExit(5000), { code: 0, signal: null }, 'SIGTERM: exit 0')
})
