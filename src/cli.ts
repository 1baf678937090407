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

import cluster from 'node:cluster'
import { availableParallelism } from 'node:os'
import { Args, parseArgs, UsageError, type FlagSpec } from './commands/args.js'
import { gatherSettings } from './commands/config.js'
import { listen } from './commands/listen.js'
import { publish } from './commands/publish.js'
import { packageVersion, serve } from './commands/serve.js'
import { runPrimary, runWorker } from './commands/workers.js'
import { runBench } from './load/bench.js'
import { loadRedis } from './server/bus/redis/client.js'
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
  { name: 'jwt-secret', arg: 'SECRET', def: '', help: 'accept HS256/384/512 JWTs signed with SECRET, at least 32 bytes (repeatable)', repeatable: true },
  { name: 'jwt-key', arg: 'FILE', def: '', help: 'accept RS/PS/ES/EdDSA JWTs: a PEM public key or a JWK Set file (repeatable)', repeatable: true },
  { name: 'jwt-issuer', arg: 'ISS', def: '', help: "a JWT's iss must be ISS" },
  { name: 'jwt-audience', arg: 'AUD', def: '', help: "a JWT's aud must be or contain AUD" },
  { name: 'auth-cookie', arg: 'NAME', def: '', help: 'also take the token from this cookie (credentials need a specific --cors-origin)' },
  { name: 'public', arg: 'DIR', def: "the package's public/", help: 'static files served beside the stream; off = none, and no demo' },
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
  { name: 'workers', arg: 'N', def: '1', help: 'processes sharing the port, one cluster (auto = one per CPU core)' },
  { name: 'redis', arg: 'URL', def: '', help: 'redis://[user:pass@]host:port[/db] or rediss://…: every process on it is one cluster (npm install redis)' },
  { name: 'redis-prefix', arg: 'NAME', def: L.DEFAULT_REDIS_PREFIX, help: 'key prefix, so several clusters can share one Redis' },
  { name: 'auth-url', arg: 'URL', def: '', help: 'GET URL with the request\'s Authorization, Cookie and X-Rawsse-Channels when no token matches: 200 {user,roles,channels}' },
  { name: 'webhook', arg: 'URL', def: '', help: 'POST user.online/offline and channel.occupied/vacated here, signed, once for the cluster' },
  { name: 'webhook-secret', arg: 'SECRET', def: '', help: 'signs each webhook (Rawsse-Signature); keep it in RAWSSE_WEBHOOK_SECRET or --config' },
  { name: 'webhook-grace', arg: 'MS', def: String(L.DEFAULT_WEBHOOK_GRACE_MS), help: 'a change undone within this (a reconnection) is not told' },
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

/** --workers N or auto (one per CPU core); 1 is one process, no cluster. */
function workerCount(p: Args): number {
  if (p.last('workers') === 'auto') return availableParallelism()
  return p.wholeNumber('workers', 1, L.MAX_WORKERS) ?? 1
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
    const p = settings()
    if (cluster.isWorker) return await runWorker(p, settings)
    // Before anything starts: without the package, one line saying how to get it (exit 2).
    if (p.has('redis')) await loadRedis().catch((err: Error) => Promise.reject(new UsageError(err.message)))
    const workers = workerCount(p)
    if (workers === 1) await serve(p, settings)
    else await runPrimary(p, workers)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`rawsse${command === null ? '' : ' ' + command}: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
}

// Anything but a usage error is a bug: said whole, exit 1, as an uncaught exception would, but
// by a handler of ours rather than by Node's default for a rejection nobody handled.
main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`rawsse: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
