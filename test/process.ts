// Test helpers for child processes: run `node dist/cli.js`, collect its output, wait for
// conditions, and kill only what a test started, by its PID, at the test's end.

import { spawn, type ChildProcess } from 'node:child_process'
import * as net from 'node:net'
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

/** How long a CLI process may take to start and exit or listen: generous, for a loaded 2-core CI machine. */
export const START_MS = 20_000

const FIRST_LINE = /^rawsse listening on https?:\/\/127\.0\.0\.1:(\d+)\n/

export interface Cli {
  child: Child
  port: number
  base: string
  lines: string[]
}

/**
 * `node dist/cli.js ARGS` (with `env` added to this process's environment); resolves once the
 * start-up lines are out: the listening line, the demo page, the stream URL and the curl line.
 */
export async function startCli(t: Teardown, args: readonly string[], opts: { stdin?: 'pipe' | 'ignore'; env?: NodeJS.ProcessEnv } = {}): Promise<Cli> {
  const child = new Child(t, process.execPath, [CLI, ...args], { stdin: opts.stdin ?? 'ignore', env: { ...process.env, ...opts.env } })
  const m = await until(
    () => {
      if (child.exit !== null) throw new Error(`rawsse ${args.join(' ')} exited ${JSON.stringify(child.exit)}; stderr: ${child.stderr}`)
      return child.stdout.split('\n').length > 4 ? FIRST_LINE.exec(child.stdout) : null
    },
    () => `the start-up lines; stdout so far: ${JSON.stringify(child.stdout)}`,
    START_MS,
  )
  const port = Number(m[1])
  const scheme = child.stdout.startsWith('rawsse listening on https') ? 'https' : 'http'
  return { child, port, base: `${scheme}://127.0.0.1:${port}`, lines: child.stdout.split('\n') }
}

/** Runs the CLI until it exits or starts listening (for flags that exit at once). */
export async function runCli(t: Teardown, args: readonly string[]): Promise<{ exit: Exit | 'still running'; stdout: string; stderr: string }> {
  const child = new Child(t, process.execPath, [CLI, ...args], { stdin: 'ignore' })
  await until(
    () => child.exit !== null || FIRST_LINE.test(child.stdout),
    () => `the process to exit or print; stdout: ${JSON.stringify(child.stdout)}; stderr: ${JSON.stringify(child.stderr)}`,
    START_MS,
  )
  return { exit: child.exit ?? 'still running', stdout: child.stdout, stderr: child.stderr }
}

/** A raw stream read as text: what it got so far, and whether it has closed. */
export interface TextStream {
  text(): string
  closed(): boolean
}

/** `GET target` on a raw socket to a CLI's port, once its `ready` is in (throws if it closes first). */
export async function readyStream(t: Teardown, port: number, target: string): Promise<TextStream> {
  const s = net.connect(port, '127.0.0.1')
  let text = ''
  let closed = false
  s.setEncoding('latin1')
  s.on('data', (d: string) => (text += d))
  s.on('close', () => (closed = true))
  s.on('error', () => {})
  t.teardown(() => s.destroy())
  s.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`)
  await until(() => text.includes('event: ready') || closed, () => `ready for ${target.slice(0, 40)}: ${text}`, 5000)
  if (!text.includes('event: ready')) throw new Error(`no stream: ${text}`)
  return { text: () => text, closed: () => closed }
}
