#!/usr/bin/env -S node --optimize-for-size
// The `rawsse` command: flags, start-up lines, the console, signals. Uses the public API only,
// so it is also the example of running SseServer in a program.
//
// Why --optimize-for-size (here and in `npm start`): a burst of connections grows V8's young
// generation to its 16 MiB semi-spaces and leaves garbage that an idle server does not collect,
// so 10 000 idle streams cost ~6 KB each in RSS where their live objects need ~2.3 KB. With the
// flag V8 keeps the young generation small and shrinks the heap within seconds. Fan-out
// deliveries/s were unchanged in the same runs; `POST /publish` requests/s dropped ~15 % (more
// scavenges), a price taken for memory (bench/RESULTS.md).

import { readFileSync, statSync } from 'node:fs'
import * as path from 'node:path'
import * as readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Args, parseArgs, UsageError, type FlagSpec } from './commands/args.js'
import { gatherSettings } from './commands/config.js'
import { LOG_FORMATS, logServer, makeLog, type LogFormat } from './commands/log.js'
import { listen } from './commands/listen.js'
import { publish } from './commands/publish.js'
import { attachDemo } from './demo.js'
import { SseServer, type SseServerOptions } from './index.js'
import { runBench } from './load/bench.js'
import { parseUsers, ROLE_PUBLISH, type UserEntry } from './server/auth.js'
import * as L from './server/limits.js'
import { DEFAULT_RETRY_MS } from './wire.js'

interface Flag extends FlagSpec {
  def: string
  help: string
}

const FLAGS: readonly Flag[] = [
  { name: 'port', arg: 'N', def: String(L.DEFAULT_PORT), help: 'TCP port; 0 picks a free one', short: 'p' },
  { name: 'host', arg: 'ADDR', def: L.DEFAULT_HOST, help: 'address to bind' },
  { name: 'token', arg: 'SECRET', def: '', help: 'may open streams (repeatable)', repeatable: true },
  { name: 'publish-token', arg: 'SECRET', def: '', help: 'may open streams, publish and administer (repeatable)', repeatable: true },
  { name: 'users', arg: 'FILE', def: '', help: 'JSON array of {"token","user","roles"}; roles publish and admin grant rights' },
  { name: 'public', arg: 'DIR', def: "the package's public/", help: 'static files served beside the stream' },
  { name: 'tls-cert', arg: 'FILE', def: '', help: 'serve HTTPS with this certificate chain (PEM); re-read on SIGHUP' },
  { name: 'tls-key', arg: 'FILE', def: '', help: 'and this private key (PEM)' },
  { name: 'cors-origin', arg: 'ORIGIN', def: L.DEFAULT_CORS_ORIGIN, help: 'Access-Control-Allow-Origin' },
  { name: 'heartbeat', arg: 'MS', def: String(L.DEFAULT_HEARTBEAT_MS), help: 'comment line to every stream; 0 = off' },
  { name: 'retry', arg: 'MS', def: String(DEFAULT_RETRY_MS), help: 'retry: sent at stream start' },
  { name: 'history', arg: 'N', def: String(L.DEFAULT_HISTORY), help: 'events kept for Last-Event-ID replay' },
  { name: 'history-bytes', arg: 'BYTES', def: String(L.DEFAULT_HISTORY_BYTES), help: 'and at most this many bytes of them' },
  { name: 'max-clients', arg: 'N', def: String(L.DEFAULT_MAX_CLIENTS), help: 'open streams before 503' },
  { name: 'max-connections', arg: 'N', def: `open-file limit − ${L.FD_RESERVE}`, help: 'TCP connections and files; at the limit the oldest waiting for a request head is closed' },
  { name: 'backlog', arg: 'N', def: String(L.DEFAULT_BACKLOG), help: 'listen queue, for reconnect storms (capped by net.core.somaxconn)' },
  { name: 'max-buffer', arg: 'BYTES', def: String(L.DEFAULT_MAX_BUFFER_BYTES), help: 'unsent bytes before a slow stream is dropped' },
  { name: 'max-event-bytes', arg: 'BYTES', def: String(L.DEFAULT_MAX_EVENT_BYTES), help: 'largest event, encoded; a bigger publish gets 413 (at most --max-buffer)' },
  { name: 'tick', arg: 'MS', def: String(L.DEFAULT_TICK_MS), help: 'broadcast event time (server ISO time); 0 = off' },
  { name: 'stdin', arg: '', def: '', help: 'broadcast each line of standard input as event message' },
  { name: 'log', arg: 'FORMAT', def: 'text', help: 'text, json or off: a line on stderr per stream opened and closed, error answer, start and stop' },
  { name: 'log-publish', arg: '', def: '', help: 'log every publish too' },
  { name: 'config', arg: 'FILE', def: '', help: 'JSON object of flag names and values, e.g. {"port": 8080, "publish-token": ["…"]}' },
  { name: 'help', arg: '', def: '', help: 'print this help and exit', short: 'h' },
  { name: 'version', arg: '', def: '', help: 'print the version and exit', short: 'v' },
]

function helpText(): string {
  const rows = FLAGS.map((f) => {
    const left = `  ${f.short === undefined ? '' : `-${f.short}, `}--${f.name}${f.arg === '' ? '' : ' ' + f.arg}`
    const def = f.def === '' ? '' : ` (default: ${f.def})`
    return `${left.padEnd(28)}${f.help}${def}`
  })
  return (
    `Usage: rawsse [flags]\n\nA Server-Sent Events server on node:net.\n\n${rows.join('\n')}\n\n` +
    `Every flag can also be set in the --config file, or in an environment variable named RAWSSE_ and the flag\n` +
    `in capitals with _ for - (RAWSSE_PUBLISH_TOKEN; repeated values separated by commas; RAWSSE_CONFIG for the\n` +
    `file). Flags win over the file, the file over the environment: keep secrets out of the command line.\n\n` +
    `Client commands: rawsse listen URL [--json], rawsse publish URL --token T [DATA | -], rawsse bench URL [--streams N] [--publish URL] (each with --help).\n`
  )
}

function packageVersion(): string {
  const pkg = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'package.json')
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version
}

function optionsFrom(p: Args): SseServerOptions {
  const opts: SseServerOptions = {}
  const set = <K extends keyof SseServerOptions>(key: K, v: SseServerOptions[K] | undefined): void => {
    if (v !== undefined) opts[key] = v
  }
  set('port', p.wholeNumber('port', 0, 65535))
  set('host', p.last('host'))
  Object.assign(opts, tokensFrom(p))
  const publicDir = p.last('public')
  if (publicDir !== undefined && !statSync(publicDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new UsageError(`--public ${publicDir}: not a folder`)
  }
  set('publicDir', publicDir)
  const tlsFiles = readTls(p)
  if (tlsFiles !== null) opts.tls = tlsFiles
  set('corsOrigin', p.last('cors-origin'))
  set('heartbeatMs', p.wholeNumber('heartbeat'))
  set('retryMs', p.wholeNumber('retry'))
  set('history', p.wholeNumber('history'))
  set('historyBytes', p.wholeNumber('history-bytes'))
  set('maxClients', p.wholeNumber('max-clients'))
  set('maxConnections', p.wholeNumber('max-connections', 1))
  set('backlog', p.wholeNumber('backlog', 1))
  set('maxBufferBytes', p.wholeNumber('max-buffer'))
  set('maxEventBytes', p.wholeNumber('max-event-bytes'))
  set('tickMs', p.wholeNumber('tick'))
  return opts
}

/** Who may connect: --token, --publish-token and the --users file (read now, and again on SIGHUP). */
function tokensFrom(p: Args): Pick<SseServerOptions, 'tokens' | 'publishTokens' | 'users'> {
  const out: Pick<SseServerOptions, 'tokens' | 'publishTokens' | 'users'> = {}
  if (p.has('token')) out.tokens = p.all('token')
  if (p.has('publish-token')) out.publishTokens = p.all('publish-token')
  for (const t of [...(out.tokens ?? []), ...(out.publishTokens ?? [])]) {
    if (t === '') throw new UsageError('a token must not be empty')
  }
  const usersFile = p.last('users')
  if (usersFile !== undefined) {
    let json: unknown
    try {
      json = JSON.parse(readFileSync(usersFile, 'utf8'))
    } catch (err) {
      // Never V8's message for bad JSON: it quotes a slice of the file, which holds tokens.
      const e = err as NodeJS.ErrnoException
      throw new UsageError(`--users ${usersFile}: ${e.code ?? 'not valid JSON'}`)
    }
    try {
      out.users = parseUsers(json)
    } catch (err) {
      throw new UsageError(`--users ${usersFile}: ${(err as Error).message}`)
    }
  }
  return out
}

/** The --tls-cert and --tls-key files, read now (and again on SIGHUP); null without them. */
function readTls(p: Args): { cert: Buffer; key: Buffer } | null {
  const certFile = p.last('tls-cert')
  const keyFile = p.last('tls-key')
  if (certFile === undefined && keyFile === undefined) return null
  if (certFile === undefined || keyFile === undefined) throw new UsageError('--tls-cert and --tls-key go together')
  const read = (flag: string, file: string): Buffer => {
    try {
      return readFileSync(file)
    } catch (err) {
      throw new UsageError(`--${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  return { cert: read('tls-cert', certFile), key: read('tls-key', keyFile) }
}

/** Library option → flag, for the library's error messages (a RangeError from new SseServer). */
const OPTION_FLAGS: Readonly<Record<string, string>> = {
  maxEventBytes: '--max-event-bytes',
  maxBufferBytes: '--max-buffer',
  historyBytes: '--history-bytes',
  maxClients: '--max-clients',
  maxConnections: '--max-connections',
  corsOrigin: '--cors-origin',
  heartbeatMs: '--heartbeat',
  retryMs: '--retry',
  tickMs: '--tick',
}

/** The token the printed URLs use: one that may publish, so the demo page's form works. */
function showcaseToken(opts: SseServerOptions, server: SseServer): { token: string; canPublish: boolean } {
  if (server.generatedToken !== null) return { token: server.generatedToken, canPublish: true }
  const publisher = opts.publishTokens?.[0] ?? opts.users?.find((u: UserEntry) => u.roles.includes(ROLE_PUBLISH))?.token
  if (publisher !== undefined) return { token: publisher, canPublish: true }
  return { token: opts.tokens?.[0] ?? opts.users?.[0]?.token ?? '', canPublish: false }
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * Broadcast a typed or piped line; null when refused. It is a publish like any other, so it obeys
 * the limits of `POST /publish` (body, event size): one over them is refused with one line on
 * standard error, never sent to every reader.
 */
function broadcastLine(server: SseServer, line: string): number | null {
  const bytes = Buffer.byteLength(line)
  try {
    if (bytes > L.MAX_BODY_BYTES) throw new Error(`over the ${L.MAX_BODY_BYTES}-byte limit of a publish`)
    return server.broadcast({ data: line })
  } catch (err) {
    process.stderr.write(`rawsse: a line of ${bytes} bytes was not broadcast: ${(err as Error).message}\n`)
    return null
  }
}

/** Run the server with settings `p`; `reread()` gathers them again (SIGHUP). */
async function serve(p: Args, reread: () => Args): Promise<void> {
  const opts = optionsFrom(p)
  let server: SseServer
  try {
    server = new SseServer(opts)
  } catch (err) {
    // The library names its options; the person at the command line typed flags.
    throw new UsageError((err as Error).message.replace(/\b[a-z]+[A-Z]\w*\b/g, (name) => OPTION_FLAGS[name] ?? name))
  }
  const format = p.last('log') ?? 'text'
  if (!(LOG_FORMATS as readonly string[]).includes(format)) throw new UsageError(`--log must be ${LOG_FORMATS.join(', ')}, not '${format}'`)
  const log = makeLog(format as LogFormat)
  logServer(server, log, p.has('log-publish'))
  attachDemo(server) // chat presence, monitor feed and demo task for the pages in public/
  let addr: { host: string; port: number }
  try {
    addr = await server.listen()
  } catch (err) {
    process.stderr.write(`rawsse: cannot listen on ${opts.host ?? L.DEFAULT_HOST}:${opts.port ?? L.DEFAULT_PORT}: ${(err as Error).message}\n`)
    process.exit(1)
  }
  const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host
  const base = `${server.secure ? 'https' : 'http'}://${host}:${addr.port}`
  const { token, canPublish } = showcaseToken(opts, server)
  const enc = encodeURIComponent(token)
  const out: string[] = [
    `rawsse listening on ${base}`,
    `demo page: ${base}/#token=${enc}`,
    `stream:    ${base}/events/${enc}`,
    canPublish
      ? `publish:   curl -X POST -H ${shellQuote('Authorization: Bearer ' + token)} --data-binary 'hello' ${shellQuote(base + '/publish')}`
      : 'publish:   no token with the publish role was given (--publish-token or --users)',
  ]
  process.stdout.write(out.join('\n') + '\n')
  // After the start-up lines: on a terminal, where both streams meet, the listening line stays first.
  log('start', { host: addr.host, port: addr.port, pid: process.pid, version: packageVersion() })

  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    log('stop', { streams: server.clientCount })
    // Exit 0 within the grace period even if a socket will not close.
    setTimeout(() => process.exit(0), L.SHUTDOWN_GRACE_MS).unref()
    void server.stop().then(() => process.exit(0))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  // SIGHUP: the config file, the users file and the certificate files are read again. Streams
  // whose token went or lost rights are closed (`revoked`); anything that no longer reads right
  // keeps what was in use, and one log line says why (never quoting a file).
  process.on('SIGHUP', () => {
    let now: Args
    let tokens: ReturnType<typeof tokensFrom>
    try {
      now = reread()
      tokens = tokensFrom(now)
    } catch (err) {
      return log('reload-failed', { reason: (err as Error).message })
    }
    const revoked = server.updateTokens(tokens)
    if (!server.secure) return log('reload', { revoked, tls: false })
    try {
      server.reloadTls(readTls(now)!)
      log('reload', { revoked, tls: true })
    } catch (err) {
      log('reload-failed', { revoked, tls: true, reason: (err as Error).message.split('\n')[0] })
    }
  })

  if (process.stdin.isTTY) {
    process.stdout.write('type a line to broadcast it; /clients counts streams per channel; /quit stops\n')
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: true })
    rl.on('line', (line) => {
      const cmd = line.trim()
      if (cmd === '/quit') return stop()
      if (cmd === '/clients') {
        const channels = server.stats().channels
        const rows = Object.entries(channels).map(([ch, n]) => `  ${ch}: ${n}`)
        process.stdout.write(`${server.clientCount} streams\n${rows.join('\n')}${rows.length ? '\n' : ''}`)
        return
      }
      if (cmd.startsWith('/')) {
        process.stdout.write('commands: /clients, /quit; any other line is broadcast\n')
        return
      }
      if (line === '') return
      const n = broadcastLine(server, line)
      if (n === null) return
      process.stdout.write(`delivered to ${n} stream${n === 1 ? '' : 's'}\n`)
    })
    rl.on('close', stop) // Ctrl-D
    rl.on('SIGINT', stop) // readline takes Ctrl-C away from the process
  } else if (p.has('stdin')) {
    const rl = readline.createInterface({ input: process.stdin, terminal: false })
    rl.on('line', (line) => void broadcastLine(server, line))
  } else {
    // Input from a pipe or a file is read only with --stdin; the first bytes that come get one line
    // saying so, rather than silence that looks like a hang.
    process.stdin.once('data', () => {
      process.stderr.write('rawsse: standard input is not a terminal and --stdin is not given: input is ignored\n')
      process.stdin.destroy()
    })
  }
}

/** The sub-commands, each with its own flags; anything else is the server's command line. */
const COMMANDS: Readonly<Record<string, (argv: readonly string[]) => Promise<number>>> = { listen, publish, bench: runBench }

async function main(argv: readonly string[]): Promise<void> {
  const command = Object.hasOwn(COMMANDS, argv[0] ?? '') ? argv[0]! : null
  try {
    if (command !== null) {
      process.exitCode = await COMMANDS[command]!(argv.slice(1))
      return
    }
    const cmdline = parseArgs(argv, FLAGS, false)
    if (cmdline.has('help')) {
      process.stdout.write(helpText())
      return
    }
    if (cmdline.has('version')) {
      process.stdout.write(packageVersion() + '\n')
      return
    }
    const settings = (): Args => gatherSettings(cmdline, FLAGS, process.env, ['help', 'version', 'config'])
    await serve(settings(), settings)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`rawsse${command === null ? '' : ' ' + command}: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
}

void main(process.argv.slice(2))
