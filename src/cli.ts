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
import { parseUsers, ROLE_PUBLISH, type UserEntry } from './auth.js'
import { runClientCommand } from './cli-client.js'
import { runBench } from './load.js'
import { attachDemo } from './demo.js'
import { SseServer, type SseServerOptions } from './index.js'
import * as L from './limits.js'

interface Flag {
  name: string
  arg: string // '' for a switch
  def: string
  help: string
}

const FLAGS: readonly Flag[] = [
  { name: 'port', arg: 'N', def: String(L.DEFAULT_PORT), help: 'TCP port; 0 picks a free one' },
  { name: 'host', arg: 'ADDR', def: L.DEFAULT_HOST, help: 'address to bind' },
  { name: 'token', arg: 'SECRET', def: '', help: 'may open streams (repeatable)' },
  { name: 'publish-token', arg: 'SECRET', def: '', help: 'may open streams, publish and administer (repeatable)' },
  { name: 'users', arg: 'FILE', def: '', help: 'JSON array of {"token","user","roles"}; roles publish and admin grant rights' },
  { name: 'public', arg: 'DIR', def: "the package's public/", help: 'static files served beside the stream' },
  { name: 'cors-origin', arg: 'ORIGIN', def: L.DEFAULT_CORS_ORIGIN, help: 'Access-Control-Allow-Origin' },
  { name: 'heartbeat', arg: 'MS', def: String(L.DEFAULT_HEARTBEAT_MS), help: 'comment line to every stream; 0 = off' },
  { name: 'retry', arg: 'MS', def: String(L.DEFAULT_RETRY_MS), help: 'retry: sent at stream start' },
  { name: 'history', arg: 'N', def: String(L.DEFAULT_HISTORY), help: 'events kept for Last-Event-ID replay' },
  { name: 'max-clients', arg: 'N', def: String(L.DEFAULT_MAX_CLIENTS), help: 'open streams before 503' },
  { name: 'max-buffer', arg: 'BYTES', def: String(L.DEFAULT_MAX_BUFFER_BYTES), help: 'unsent bytes before a slow stream is dropped' },
  { name: 'tick', arg: 'MS', def: String(L.DEFAULT_TICK_MS), help: 'broadcast event time (server ISO time); 0 = off' },
  { name: 'stdin', arg: '', def: '', help: 'broadcast each line of standard input as event message' },
  { name: 'help', arg: '', def: '', help: 'print this help and exit' },
  { name: 'version', arg: '', def: '', help: 'print the version and exit' },
]

/** A bad command line: one line on standard error, exit code 2. */
class UsageError extends Error {}

interface Parsed {
  values: Map<string, string[]>
}

function parseArgs(argv: readonly string[]): Parsed {
  const values = new Map<string, string[]>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument: ${arg}`)
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq === -1 ? undefined : eq)
    const flag = FLAGS.find((f) => f.name === name)
    if (flag === undefined) throw new UsageError(`unknown flag: --${name} (see --help)`)
    let value: string
    if (flag.arg === '') {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`)
      value = ''
    } else if (eq !== -1) {
      value = arg.slice(eq + 1)
    } else {
      // `--cors-origin --stdin` is a forgotten value, not an origin named "--stdin".
      if (i + 1 >= argv.length || argv[i + 1]!.startsWith('--')) throw new UsageError(`--${name} needs a value (${flag.arg})`)
      value = argv[++i]!
    }
    const list = values.get(name) ?? []
    list.push(value)
    values.set(name, list)
  }
  return { values }
}

function helpText(): string {
  const rows = FLAGS.map((f) => {
    const left = `  --${f.name}${f.arg === '' ? '' : ' ' + f.arg}`
    const def = f.def === '' ? '' : ` (default: ${f.def})`
    return `${left.padEnd(28)}${f.help}${def}`
  })
  return `Usage: rawsse [flags]\n\nA Server-Sent Events server on node:net.\n\n${rows.join('\n')}\n\nClient commands: rawsse listen URL [--json], rawsse publish URL --token T [DATA | -], rawsse bench URL [--streams N] [--publish URL] (each with --help).\n`
}

function packageVersion(): string {
  const pkg = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'package.json')
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version
}

/** A flag's value; when a single-valued flag is repeated, the last one wins, as in most tools. */
function last(p: Parsed, name: string): string | undefined {
  const all = p.values.get(name)
  return all?.[all.length - 1]
}

function wholeNumber(p: Parsed, name: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = last(p, name)
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v) || Number(v) > max) throw new UsageError(`--${name} must be a whole number from 0 to ${max}, not '${v}'`)
  return Number(v)
}

function optionsFrom(p: Parsed): SseServerOptions {
  const opts: SseServerOptions = {}
  const set = <K extends keyof SseServerOptions>(key: K, v: SseServerOptions[K] | undefined): void => {
    if (v !== undefined) opts[key] = v
  }
  set('port', wholeNumber(p, 'port', 65535))
  set('host', last(p, 'host'))
  set('tokens', p.values.get('token'))
  set('publishTokens', p.values.get('publish-token'))
  for (const t of [...(opts.tokens ?? []), ...(opts.publishTokens ?? [])]) {
    if (t === '') throw new UsageError('a token must not be empty')
  }
  const usersFile = last(p, 'users')
  if (usersFile !== undefined) {
    let json: unknown
    try {
      json = JSON.parse(readFileSync(usersFile, 'utf8'))
    } catch (err) {
      throw new UsageError(`--users ${usersFile}: ${(err as Error).message}`)
    }
    try {
      opts.users = parseUsers(json)
    } catch (err) {
      throw new UsageError(`--users ${usersFile}: ${(err as Error).message}`)
    }
  }
  const publicDir = last(p, 'public')
  if (publicDir !== undefined && !statSync(publicDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new UsageError(`--public ${publicDir}: not a folder`)
  }
  set('publicDir', publicDir)
  set('corsOrigin', last(p, 'cors-origin'))
  set('heartbeatMs', wholeNumber(p, 'heartbeat'))
  set('retryMs', wholeNumber(p, 'retry'))
  set('history', wholeNumber(p, 'history'))
  set('maxClients', wholeNumber(p, 'max-clients'))
  set('maxBufferBytes', wholeNumber(p, 'max-buffer'))
  set('tickMs', wholeNumber(p, 'tick'))
  return opts
}

/** The token the printed URLs use: one that may publish, so the demo page's form works. */
function showcaseToken(opts: SseServerOptions, server: SseServer): { token: string; canPublish: boolean } {
  if (server.generatedToken !== null) return { token: server.generatedToken, canPublish: true }
  const publisher = opts.publishTokens?.[0] ?? opts.users?.find((u: UserEntry) => u.roles.includes(ROLE_PUBLISH))?.token
  if (publisher !== undefined) return { token: publisher, canPublish: true }
  return { token: opts.tokens?.[0] ?? opts.users?.[0]?.token ?? '', canPublish: false }
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

async function serve(p: Parsed): Promise<void> {
  const opts = optionsFrom(p)
  let server: SseServer
  try {
    server = new SseServer(opts)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  attachDemo(server) // chat presence, monitor feed and demo task for the pages in public/
  let addr: { host: string; port: number }
  try {
    addr = await server.listen()
  } catch (err) {
    process.stderr.write(`rawsse: cannot listen on ${opts.host ?? L.DEFAULT_HOST}:${opts.port ?? L.DEFAULT_PORT}: ${(err as Error).message}\n`)
    process.exit(1)
  }
  const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host
  const base = `http://${host}:${addr.port}`
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

  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    // Exit 0 within the grace period even if a socket will not close.
    setTimeout(() => process.exit(0), L.SHUTDOWN_GRACE_MS).unref()
    void server.stop().then(() => process.exit(0))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)

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
      const n = server.broadcast({ data: line })
      process.stdout.write(`delivered to ${n} streams\n`)
    })
    rl.on('close', stop) // Ctrl-D
    rl.on('SIGINT', stop) // readline takes Ctrl-C away from the process
  } else if (p.values.has('stdin')) {
    const rl = readline.createInterface({ input: process.stdin, terminal: false })
    rl.on('line', (line) => server.broadcast({ data: line }))
  }
}

async function main(argv: readonly string[]): Promise<void> {
  // The client commands have their own flags; the server's are parsed only when it is the server.
  if (argv[0] === 'listen' || argv[0] === 'publish') {
    process.exitCode = await runClientCommand(argv)
    return
  }
  if (argv[0] === 'bench') {
    process.exitCode = await runBench(argv)
    return
  }
  try {
    const p = parseArgs(argv)
    if (p.values.has('help')) {
      process.stdout.write(helpText())
      return
    }
    if (p.values.has('version')) {
      process.stdout.write(packageVersion() + '\n')
      return
    }
    await serve(p)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`rawsse: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
}

void main(process.argv.slice(2))
