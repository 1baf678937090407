// A real redis-server for the tests of `rawsse --redis`: Debian's binary on a free loopback port,
// in a fresh temporary folder, no client library (the readiness probe and the few commands the
// tests send are RESP written by hand). Only the process started here is ever ended, by its PID.

import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { sleep } from './helpers.js'
import { ROOT, type Teardown } from './process.js'

export const REDIS_SERVER = '/usr/bin/redis-server'

/** How long redis-server may take to answer PING after it is started (it loads its AOF first when persisting). */
const READY_MS = 10_000

/** Why the Redis tests cannot run here, or null when they can: the server binary, and the client package rawsse loads. */
export function redisMissing(): string | null {
  if (!existsSync(REDIS_SERVER)) return `${REDIS_SERVER} is not installed (Debian: apt-get install redis-server)`
  try {
    createRequire(path.join(ROOT, 'package.json')).resolve('redis')
  } catch {
    return 'the redis npm package cannot be loaded from the repository; run npm install'
  }
  return null
}

/** A loopback port nobody listens on right now: bind port 0, read it, close. */
export async function freePort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', resolve)
  })
  const { port } = srv.address() as net.AddressInfo
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

/**
 * One RESP command on a connection of its own; resolves to the raw reply once a whole reply has
 * arrived (a simple string, an error, an integer, a bulk string or an array of bulk strings).
 */
export function redisCommand(port: number, args: readonly string[], timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = ''
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''))
    })
    const timer = setTimeout(() => {
      s.destroy()
      reject(new Error(`no whole reply to ${args.join(' ')} within ${timeoutMs} ms; got ${JSON.stringify(got)}`))
    }, timeoutMs)
    s.setEncoding('utf8')
    s.on('data', (d: string) => {
      got += d
      if (wholeReply(got)) {
        clearTimeout(timer)
        s.destroy()
        resolve(got)
      }
    })
    s.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    s.on('close', () => {
      clearTimeout(timer)
      reject(new Error(`connection closed before a whole reply to ${args.join(' ')}; got ${JSON.stringify(got)}`))
    })
  })
}

/** True when `s` holds one whole RESP reply of the kinds redisCommand expects. */
function wholeReply(s: string): boolean {
  const end = s.indexOf('\r\n')
  if (end === -1) return false
  const kind = s[0]
  if (kind === '+' || kind === '-' || kind === ':') return true
  if (kind === '$') return Number(s.slice(1, end)) < 0 || s.length >= end + 2 + Number(s.slice(1, end)) + 2
  if (kind !== '*') return true
  return redisArray(s) !== null
}

/** The bulk strings of an array reply (`KEYS *`), or null while it is incomplete. */
export function redisArray(reply: string): string[] | null {
  const lines = reply.split('\r\n')
  const n = Number(lines[0]!.slice(1))
  const out: string[] = []
  for (let i = 1; out.length < n; i += 2) {
    if (i + 1 >= lines.length) return null
    out.push(lines[i + 1]!)
  }
  return out
}

/** True when a redis-server answers PING on `port` with +PONG (not -LOADING while it reads its AOF). */
export async function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    let got = ''
    const s = net.connect(port, '127.0.0.1', () => s.write('PING\r\n'))
    const done = (ok: boolean): void => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(1000, () => done(false))
    s.setEncoding('utf8')
    s.on('data', (d: string) => {
      got += d
      if (got.includes('\r\n')) done(got.startsWith('+PONG\r\n'))
    })
    s.on('error', () => done(false))
    s.on('close', () => done(false))
  })
}

export interface RedisOptions {
  /** AOF with fsync on every write, so that stop() and restart() keep the data. */
  persist?: boolean
  /** A port chosen by the caller (one rawsse was already told to wait on); else a free one. */
  port?: number
}

export interface Redis {
  readonly url: string
  readonly port: number
  readonly dir: string
  /** The PID of the running redis-server (a new one after restart()). */
  readonly pid: number
  /** What redis-server wrote on stdout and stderr, all runs together (its log; for failure messages). */
  readonly log: string
  /** SIGTERM by PID; resolves once it has exited (a persisting server fsyncs its AOF first). */
  stop(): Promise<void>
  /** SIGKILL by PID; resolves once it has exited. */
  kill(): Promise<void>
  /** Starts it again on the same port and folder; resolves once it answers PING. */
  restart(): Promise<void>
}

/** redis-server on a free loopback port in a fresh folder; stopped and its folder removed at the test's end. */
export async function startRedis(t: Teardown, opts: RedisOptions = {}): Promise<Redis> {
  const port = opts.port ?? (await freePort())
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-redis-'))
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--protected-mode', 'yes']
  args.push(...(opts.persist === true ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']))

  let proc: ChildProcess | null = null
  let exited: Promise<void> = Promise.resolve()
  let log = ''

  const launch = async (): Promise<void> => {
    const p = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    proc = p
    let gone = false
    exited = new Promise<void>((resolve) => {
      p.on('exit', () => {
        gone = true
        resolve()
      })
      p.on('error', (err) => {
        log += `spawn error: ${err.message}\n`
        gone = true
        resolve()
      })
    })
    p.stdout!.setEncoding('utf8')
    p.stderr!.setEncoding('utf8')
    p.stdout!.on('data', (d: string) => (log += d))
    p.stderr!.on('data', (d: string) => (log += d))
    const deadline = Date.now() + READY_MS
    while (!(await answersPing(port))) {
      if (gone) throw new Error(`redis-server on port ${port} exited before answering PING; its log:\n${log}`)
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within ${READY_MS} ms; its log:\n${log}`)
      await sleep(20)
    }
  }

  /** Sends `signal` to the process started here (by its PID) and waits for it to exit. */
  const end = async (signal: NodeJS.Signals): Promise<void> => {
    const p = proc
    if (p === null || p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return
    try {
      process.kill(p.pid, signal)
    } catch {
      // already gone
    }
    await exited
    proc = null
  }

  t.teardown(async () => {
    await end('SIGTERM')
    rmSync(dir, { recursive: true, force: true })
  })
  await launch()

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    get pid() {
      return (proc as ChildProcess | null)?.pid ?? -1
    },
    get log() {
      return log
    },
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
    restart: async () => {
      await end('SIGTERM')
      await launch()
    },
  }
}

export interface Proxy {
  readonly port: number
  readonly url: string
  /** Closes every connection through it and refuses new ones (closes them at once) until restore(). */
  cut(): void
  restore(): void
}

/**
 * A TCP relay in this process between one rawsse process and redis-server, so that one process
 * can lose Redis while the others keep it, or (with `delayMs`) reach it late: every byte, both
 * ways, is passed on that much later, in order. Closed at the test's end.
 */
export async function redisProxy(t: Teardown, redisPort: number, opts: { delayMs?: number } = {}): Promise<Proxy> {
  const delayMs = opts.delayMs ?? 0
  let open = true
  const sockets = new Set<net.Socket>()
  const relay = (from: net.Socket, to: net.Socket): void => {
    if (delayMs === 0) from.pipe(to)
    else from.on('data', (d) => setTimeout(() => to.destroyed || to.write(d), delayMs))
  }
  const srv = net.createServer((client) => {
    if (!open) {
      client.destroy()
      return
    }
    const upstream = net.connect(redisPort, '127.0.0.1')
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', drop)
      s.on('close', drop)
    }
    relay(client, upstream)
    relay(upstream, client)
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address() as net.AddressInfo
  const closeAll = (): void => {
    for (const s of sockets) s.destroy()
    sockets.clear()
  }
  t.teardown(() => {
    closeAll()
    srv.close()
  })
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    cut: () => {
      open = false
      closeAll()
    },
    restore: () => {
      open = true
    },
  }
}
