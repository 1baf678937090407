// Test helpers for child processes: run `node dist/cli.js`, collect its output, wait for
// conditions, and kill only what a test started, by its PID, at the test's end.

import { spawn, type ChildProcess } from 'node:child_process'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { sleep } from './helpers.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const CLI = path.join(ROOT, 'dist', 'cli.js')

export interface Teardown {
  teardown(fn: () => unknown): void
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** Polls `probe` (sync or async) until it gives something truthy; throws after `ms` with `what()` in the message. */
export async function until<T>(probe: () => Promise<T | null | undefined | false> | T | null | undefined | false, what: () => string, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v !== null && v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what()}`)
    await sleep(10)
  }
}

/** A child process whose output is collected; killed by its PID at the test's end if still running. */
export class Child {
  readonly proc: ChildProcess
  stdout = ''
  stderr = ''
  exit: Exit | null = null

  constructor(t: Teardown, command: string, args: readonly string[], opts: { stdin?: 'pipe' | 'ignore'; env?: NodeJS.ProcessEnv } = {}) {
    this.proc = spawn(command, args, { cwd: ROOT, env: opts.env ?? process.env, stdio: [opts.stdin ?? 'pipe', 'pipe', 'pipe'] })
    this.proc.stdout!.setEncoding('utf8')
    this.proc.stderr!.setEncoding('utf8')
    this.proc.stdout!.on('data', (d: string) => (this.stdout += d))
    this.proc.stderr!.on('data', (d: string) => (this.stderr += d))
    this.proc.stdin?.on('error', () => {})
    this.proc.on('error', (err) => {
      this.stderr += `spawn error: ${err.message}\n`
      this.exit ??= { code: null, signal: null }
    })
    // 'close': the process has exited and its stdout and stderr are fully read.
    this.proc.on('close', (code, signal) => (this.exit = { code, signal }))
    const pid = this.proc.pid
    t.teardown(() => {
      if (this.exit !== null || pid === undefined) return
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    })
  }

  waitExit(ms = 5000): Promise<Exit> {
    return until(() => this.exit, () => `the process to exit; stdout: ${JSON.stringify(this.stdout)}; stderr: ${JSON.stringify(this.stderr)}`, ms)
  }

  kill(signal: NodeJS.Signals): void {
    process.kill(this.proc.pid!, signal)
  }
}
