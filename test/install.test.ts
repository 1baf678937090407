// Using rawsse before it is on the npm registry (README "Install"): the packed tarball installed
// into a new project, offline, gives the library (`import('rawsse')`) and the `rawsse` bin.
// Packs the dist/ that `npm test` built (no build here: --ignore-scripts).

import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { ROOT } from './process.js'

const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version

interface Run {
  code: number
  stdout: string
  stderr: string
}

/** Runs a command to its end (never longer than 60 s) and gives its exit code and output. */
function run(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env, timeout: 60_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

t.test('the packed tarball installs offline into a new project: the library starts and stops a server, the bin prints its version', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-install-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // A cache of its own: nothing is fetched (--offline), and the user's cache is left alone.
  const npmFlags = ['--cache', path.join(dir, 'cache'), '--no-audit', '--no-fund', '--loglevel=error']

  const pack = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir, ...npmFlags], ROOT)
  t.equal(pack.code, 0, `npm pack: ${pack.stderr}`)
  const tgz = path.join(dir, (JSON.parse(pack.stdout) as Array<{ filename: string }>)[0]!.filename)
  t.ok(existsSync(tgz), `the tarball: ${path.basename(tgz)}`)

  const project = path.join(dir, 'app')
  mkdirSync(project)
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }))
  const install = await run('npm', ['install', '--offline', ...npmFlags, tgz], project)
  t.equal(install.code, 0, `npm install --offline: ${install.stderr}`)
  const deps = (JSON.parse(readFileSync(path.join(project, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies
  t.match(deps, { rawsse: /^file:/ }, 'a dependency on the tarball')
  t.notOk(existsSync(path.join(project, 'node_modules', 'redis')), 'no runtime dependency came along (redis is an optional peer)')

  const program = `
    const { SseServer } = await import('rawsse')
    const server = new SseServer({ port: 0, tickMs: 0, publishTokens: ['install-secret'] })
    const { port } = await server.listen()
    const res = await fetch('http://127.0.0.1:' + port + '/healthz')
    console.log(port > 0, res.status, await res.text())
    await server.stop()`
  const lib = await run(process.execPath, ['--input-type=module', '-e', program], project)
  t.same(lib, { code: 0, stdout: 'true 200 {"status":"ok"}\n', stderr: '' }, "import('rawsse'): SseServer listens on port 0, answers, and stops")

  const bin = await run(path.join(project, 'node_modules', '.bin', 'rawsse'), ['--version'], project)
  t.same(bin, { code: 0, stdout: `${VERSION}\n`, stderr: '' }, 'node_modules/.bin/rawsse --version')
})
