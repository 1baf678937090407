// What the kernel holds for a test's connections (/proc/net/tcp, /proc/net/sockstat), and clients
// that ask for a big file and read nothing. Linux only: a test that needs /proc skips without it.

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

interface Teardown {
  teardown(fn: () => unknown): void
}

export const canReadProc = existsSync('/proc/net/tcp')

export const MiB = 1024 * 1024

export interface KernelSocket {
  localPort: number
  remotePort: number
  /** /proc/net/tcp's state, hex: 01 ESTABLISHED, 04 FIN_WAIT1, 06 TIME_WAIT, 0A LISTEN… */
  state: string
  /** 0 when no process holds the socket any more (an orphan, or TIME_WAIT). */
  inode: number
  /** Bytes the kernel holds that the peer has not acknowledged, and bytes received the process has not read. */
  txQueue: number
  rxQueue: number
}

/** The IPv4 TCP sockets of the kernel with `port` at either end. */
export function kernelSockets(port: number): KernelSocket[] {
  const out: KernelSocket[] = []
  for (const line of readFileSync('/proc/net/tcp', 'latin1').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 10) continue
    const localPort = parseInt(f[1]!.split(':')[1]!, 16)
    const remotePort = parseInt(f[2]!.split(':')[1]!, 16)
    if (localPort !== port && remotePort !== port) continue
    const [tx, rx] = f[4]!.split(':')
    out.push({ localPort, remotePort, state: f[3]!, inode: Number(f[9]), txQueue: parseInt(tx!, 16), rxQueue: parseInt(rx!, 16) })
  }
  return out
}

/** The server's sockets on `port` that no process holds and that are not TIME_WAIT: orphans. */
export function orphans(port: number): KernelSocket[] {
  return kernelSockets(port).filter((s) => s.localPort === port && s.inode === 0 && s.state !== '06' && s.state !== '0A')
}

/** The kernel's total, for the log: `TCP: inuse N orphan N tw N alloc N mem N` (pages). */
export function sockstat(): string {
  return /^TCP: .*$/m.exec(readFileSync('/proc/net/sockstat', 'latin1'))?.[0] ?? '?'
}

export function bigFile(t: Teardown, size: number): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-orphans-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'big.bin'), Buffer.alloc(size, 'x'))
  return dir
}

export interface Download {
  socket: net.Socket
  received: number
  closed: boolean
  error: string | null
}

/** `n` connections that each ask for `target` and read nothing (paused from the start). */
export async function neverReading(t: Teardown, port: number, n: number, target: string): Promise<Download[]> {
  const out: Download[] = []
  for (let i = 0; i < n; i += 50) {
    const batch = Array.from({ length: Math.min(50, n - i) }, () => {
      const d: Download = { socket: net.connect(port, '127.0.0.1'), received: 0, closed: false, error: null }
      d.socket.pause()
      d.socket.on('data', (b) => (d.received += b.length))
      d.socket.on('error', (e: NodeJS.ErrnoException) => (d.error = e.code ?? e.message))
      d.socket.on('close', () => (d.closed = true))
      t.teardown(() => d.socket.destroy())
      out.push(d)
      return new Promise<void>((resolve, reject) => {
        d.socket.once('connect', () => {
          d.socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`)
          resolve()
        })
        d.socket.once('error', reject)
      })
    })
    await Promise.all(batch)
  }
  return out
}

/** Neither end of the connection from the client's `localPort` to the server's `port` is left in the kernel. */
export function gone(port: number, localPort: number): boolean {
  return !kernelSockets(port).some((s) => (s.localPort === port && s.remotePort === localPort && s.state !== '06') || (s.localPort === localPort && s.remotePort === port))
}


/** Bytes the client socket from `localPort` to the server's `port` has received and not read (0 once it is gone). */
export function unread(port: number, localPort: number): number {
  return kernelSockets(port).find((s) => s.localPort === localPort && s.remotePort === port)?.rxQueue ?? 0
}
