// The server command's run: settings to SseServer options, the start-up lines, the console and
// --stdin, signals and SIGHUP, for one process (serve()). With --workers N the primary and its
// workers (workers.ts) use the same pieces, so the command looks and answers the same either way.

import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import * as path from 'node:path'
import * as readline from 'node:readline'
import { rootCertificates } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { attachDemo } from '../demo.js'
import { SseServer, type SseServerOptions } from '../index.js'
import { ROLE_PUBLISH, type UserEntry } from '../server/access/auth.js'
import type { JwtConfig } from '../server/access/jwt.js'
import * as L from '../server/limits.js'
import { Args, UsageError } from './args.js'
import { LOG_FORMATS, logServer, makeLog, type Log, type LogFormat } from './log.js'

export function packageVersion(): string {
  const pkg = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json')
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version
}

/** `--public off`: serve no static files (and no demo pages' server side). */
export { makeServer, optionsFrom, PUBLIC_OFF } from './server-options.js'
import { jwtFrom, makeServer, optionsFrom, PUBLIC_OFF, readTls, tokensFrom } from './server-options.js'

/** The --log writer (a bad format is a usage error). */
export function logFrom(p: Args): Log {
  const format = p.last('log') ?? 'text'
  if (!(LOG_FORMATS as readonly string[]).includes(format)) throw new UsageError(`--log must be ${LOG_FORMATS.join(', ')}, not '${format}'`)
  return makeLog(format as LogFormat)
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * Whether curl, trusting the public CAs, would refuse this certificate file: self-signed, or from
 * a private CA (no certificate in the file was issued by one of Node's bundled roots). Parsing the
 * roots costs ~60 ms, once, at a TLS start.
 */
function privateCertificate(pem: string | Buffer): boolean {
  const blocks = String(pem).match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? []
  let chain: X509Certificate[]
  try {
    chain = blocks.map((b) => new X509Certificate(b))
  } catch {
    return true
  }
  const roots = rootCertificates.map((r) => new X509Certificate(r))
  return !chain.some((c) => roots.some((r) => c.checkIssued(r) && c.verify(r.publicKey)))
}

/**
 * The start-up lines (the first is the contract's `rawsse listening on …`), with the token the
 * printed URLs use. `certFile` is --tls-cert's file: when curl would not trust it, the printed
 * curl trusts it by name (`--cacert`; curl also accepts a leaf or intermediate there as the anchor).
 */
export function startupLines(opts: SseServerOptions, generatedToken: string | null, addr: { host: string; port: number }, certFile?: string): string {
  const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host
  const base = `${opts.tls !== undefined ? 'https' : 'http'}://${host}:${addr.port}`
  // A token that may publish, so the demo page's form works.
  const publisher = generatedToken ?? opts.publishTokens?.[0] ?? opts.users?.find((u: UserEntry) => u.roles.includes(ROLE_PUBLISH))?.token
  const token = publisher ?? opts.tokens?.[0] ?? opts.users?.[0]?.token ?? ''
  const enc = encodeURIComponent(token)
  const cacert = opts.tls !== undefined && certFile !== undefined && privateCertificate(opts.tls.cert) ? `--cacert ${shellQuote(path.resolve(certFile))} ` : ''
  const out: string[] = [
    `rawsse listening on ${base}`,
    opts.publicDir === null ? `demo page: none (--public ${PUBLIC_OFF})` : `demo page: ${base}/#token=${enc}`,
    `stream:    ${base}/events/${enc}`,
    publisher !== undefined
      ? `publish:   curl ${cacert}-X POST -H ${shellQuote('Authorization: Bearer ' + token)} --data-binary 'hello' ${shellQuote(base + '/publish')}`
      : 'publish:   no token with the publish role was given (--publish-token or --users)',
  ]
  return out.join('\n') + '\n'
}

/**
 * SIGHUP: the config file, the users file, the JWT secrets and key files and the certificate
 * files are read again. Streams whose token went, lost rights or no longer verifies are closed
 * (`revoked`); anything that no longer reads right keeps what was in use, and one log line says
 * why (never quoting a file or a secret).
 */
export function reload(server: SseServer, reread: () => Args, log: Log): void {
  let now: Args
  let tokens: ReturnType<typeof tokensFrom>
  let jwt: JwtConfig | undefined
  try {
    now = reread()
    tokens = tokensFrom(now)
    jwt = jwtFrom(now)
  } catch (err) {
    return log('reload-failed', { reason: (err as Error).message })
  }
  // JWT flags that are gone leave no key: a stream that needed one is closed.
  const revoked = server.updateTokens(tokens) + server.updateJwt(jwt ?? {})
  if (!server.secure) return log('reload', { revoked, tls: false })
  try {
    server.reloadTls(readTls(now)!)
    log('reload', { revoked, tls: true })
  } catch (err) {
    log('reload-failed', { revoked, tls: true, reason: (err as Error).message.split('\n')[0] })
  }
}

/** What the console and --stdin act on: one process's server, or a cluster's primary. */
export interface ConsoleTarget {
  /** Broadcast a line as event `message`; returns (or resolves to) the streams it reached. Throws or rejects when refused. */
  broadcast(line: string): number | Promise<number>
  clients(): { total: number; channels: Record<string, number> }
  stop(): void
}

/**
 * Broadcast a typed or piped line (and with `echo`, say how many streams it reached). It is a
 * publish like any other, so it obeys the limits of `POST /publish` (body, event size): one over
 * them is refused with one line on standard error, never sent to every reader. Never rejects:
 * every failure is that line.
 */
async function broadcastLine(target: ConsoleTarget, line: string, echo: boolean): Promise<void> {
  const bytes = Buffer.byteLength(line)
  let n: number
  try {
    if (bytes > L.MAX_BODY_BYTES) throw new Error(`over the ${L.MAX_BODY_BYTES}-byte limit of a publish`)
    n = await target.broadcast(line)
  } catch (err) {
    process.stderr.write(`rawsse: a line of ${bytes} bytes was not broadcast: ${(err as Error).message}\n`)
    return
  }
  if (echo) process.stdout.write(`delivered to ${n} stream${n === 1 ? '' : 's'}\n`)
}

/** Exit 0 once `stopped` resolves; a stop that fails (a bug) is said, and the exit is 1. */
export function exitWhen(stopped: Promise<unknown>): void {
  stopped.then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`rawsse: stop failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
      process.exit(1)
    },
  )
}

/** A terminal: typed lines are broadcast, /clients and /quit; a pipe: lines with --stdin, else one notice. */
export function startConsole(p: Args, target: ConsoleTarget): void {
  if (process.stdin.isTTY) {
    process.stdout.write('type a line to broadcast it; /clients counts streams per channel; /quit stops\n')
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: true })
    rl.on('line', (line) => {
      const cmd = line.trim()
      if (cmd === '/quit') return target.stop()
      if (cmd === '/clients') {
        const { total, channels } = target.clients()
        const rows = Object.entries(channels).map(([ch, n]) => `  ${ch}: ${n}`)
        process.stdout.write(`${total} streams\n${rows.join('\n')}${rows.length ? '\n' : ''}`)
        return
      }
      if (cmd.startsWith('/')) {
        process.stdout.write('commands: /clients, /quit; any other line is broadcast\n')
        return
      }
      if (line === '') return
      void broadcastLine(target, line, true)
    })
    rl.on('close', () => target.stop()) // Ctrl-D
    rl.on('SIGINT', () => target.stop()) // readline takes Ctrl-C away from the process
  } else if (p.has('stdin')) {
    const rl = readline.createInterface({ input: process.stdin, terminal: false })
    rl.on('line', (line) => void broadcastLine(target, line, false))
  } else {
    // Input from a pipe or a file is read only with --stdin; the first bytes that come get one line
    // saying so, rather than silence that looks like a hang.
    process.stdin.once('data', () => {
      process.stderr.write('rawsse: standard input is not a terminal and --stdin is not given: input is ignored\n')
      process.stdin.destroy()
    })
  }
}

/**
 * What the process says about its Redis: before it first listens, one line on standard error
 * while it waits (a mistyped host must not look like a hang); after, a log line per change.
 */
export function busWatcher(p: Args, log: Log): (state: 'up' | 'down', detail: string) => void {
  let waited = false
  let listening = false
  return (state, detail) => {
    if (!listening && state === 'down' && !waited) {
      waited = true
      const where = new URL(p.last('redis')!).host // never the password (the URL was checked before the bus could say anything)
      process.stderr.write(`rawsse: waiting for redis at ${where}: ${detail}\n`)
    }
    // The first `up` is the start itself (the start line says so, after the listening line).
    if (state === 'up' && !listening) return void (listening = true)
    log(state === 'up' ? 'bus-up' : 'bus-down', state === 'up' ? {} : { reason: detail })
  }
}

/** One process: run the server with settings `p`; `reread()` gathers them again (SIGHUP). */
export async function serve(p: Args, reread: () => Args): Promise<void> {
  const opts = optionsFrom(p)
  const server = makeServer(opts)
  const log = logFrom(p)
  logServer(server, log, p.has('log-publish'))
  if (opts.publicDir !== null) attachDemo(server) // chat presence, monitor feed and demo task for the pages in public/
  server.on('bus', busWatcher(p, log))
  let addr: { host: string; port: number }
  try {
    addr = await server.listen()
  } catch (err) {
    process.stderr.write(`rawsse: cannot listen on ${opts.host ?? L.DEFAULT_HOST}:${opts.port ?? L.DEFAULT_PORT}: ${(err as Error).message}\n`)
    process.exit(1)
  }
  process.stdout.write(startupLines(opts, server.generatedToken, addr, p.last('tls-cert')))
  // After the start-up lines: on a terminal, where both streams meet, the listening line stays first.
  log('start', { host: addr.host, port: addr.port, pid: process.pid, version: packageVersion() })

  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    log('stop', { streams: server.clientCount })
    // Exit 0 within the grace period even if a socket will not close.
    setTimeout(() => process.exit(0), L.SHUTDOWN_GRACE_MS).unref()
    exitWhen(server.stop())
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  process.on('SIGHUP', () => reload(server, reread, log))
  startConsole(p, {
    // Through publishAsync: on a Redis cluster the count is the cluster's, and a refusal (503) is said.
    broadcast: (line) => server.publishAsync({ data: line }, {}).then((a) => a.delivered),
    clients: () => ({ total: server.clientCount, channels: server.stats().channels }),
    stop,
  })
}
