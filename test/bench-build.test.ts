// bench/lib.mjs buildAt(): what a bench script's --cli or --baseline names (docs/budgets.md "Measured",
// bench/RESULTS.md): a file as is, or a commit built in a temporary git worktree that is gone once
// the script exits, so a command written with a commit can be run again by anyone.

import t from 'tap'
import { execFile, spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import * as path from 'node:path'
import { buildAt } from '../bench/lib.mjs'
import { CLI, ROOT } from './process.js'

const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version

t.test('a path to a file is used as is; a name that is neither a file nor a commit is an error', async (t) => {
  t.equal(buildAt(path.relative(process.cwd(), CLI)), CLI)
  t.throws(() => buildAt('no-such-build-or-commit'), { message: /^no-such-build-or-commit: neither a file nor a commit of / })
})

t.test('a commit is built in a temporary worktree, runs, and the worktree is gone when the process exits', async (t) => {
  const head = spawnSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' })
  if (head.status !== 0) {
    t.pass(`not run: ${ROOT} is no git checkout`)
    return
  }
  // A child process, since the worktree goes at its exit: it builds HEAD and runs the build's --version.
  const program = `
    const { buildAt } = await import('./bench/lib.mjs')
    const { spawnSync } = await import('node:child_process')
    const cli = buildAt('HEAD')
    console.log(cli)
    console.log(spawnSync(process.execPath, [cli, '--version'], { encoding: 'utf8' }).stdout.trim())`
  const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, ['--input-type=module', '-e', program], { cwd: ROOT, timeout: 110_000, encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : Number(err.code ?? 1), stdout, stderr }),
    ),
  )
  t.equal(out.code, 0, `exit 0; stderr: ${out.stderr}`)
  const [cli, version] = out.stdout.trim().split('\n')
  const dir = path.dirname(path.dirname(cli!))
  t.match(out.stderr, `building ${head.stdout.trim().slice(0, 7)} in ${dir} (removed at exit)\n`, 'it says what it builds, and where')
  t.equal(version, VERSION, "the build runs: its --version is HEAD's package.json version")
  t.notOk(existsSync(dir), `${dir} is removed`)
  const list = spawnSync('git', ['-C', ROOT, 'worktree', 'list', '--porcelain'], { encoding: 'utf8' }).stdout
  t.notMatch(list, `worktree ${dir}\n`, 'and no longer a worktree of the repository')
})
