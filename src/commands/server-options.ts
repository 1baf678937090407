// The server's flags read into SseServerOptions (and the library's errors said back in flags):
// tokens, users, JWT keys, TLS files, the application's URLs. No process, no signals here.

import { readFileSync, statSync } from 'node:fs'
import { SseServer, type SseServerOptions } from '../index.js'
import { parseUsers } from '../server/access/auth.js'
import { JwtVerifier, type JwtConfig } from '../server/access/jwt.js'
import { Args, UsageError } from './args.js'

export const PUBLIC_OFF = 'off'

export function optionsFrom(p: Args): SseServerOptions {
  const opts: SseServerOptions = {}
  const set = <K extends keyof SseServerOptions>(key: K, v: SseServerOptions[K] | undefined): void => {
    if (v !== undefined) opts[key] = v
  }
  set('port', p.wholeNumber('port', 0, 65535))
  set('host', p.last('host'))
  Object.assign(opts, tokensFrom(p))
  set('jwt', jwtFrom(p))
  set('authCookie', p.last('auth-cookie'))
  const publicDir = p.last('public')
  if (publicDir === PUBLIC_OFF) {
    opts.publicDir = null // no static files at all (a folder named off: --public ./off)
  } else if (publicDir !== undefined && !statSync(publicDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new UsageError(`--public ${publicDir}: not a folder`)
  } else {
    set('publicDir', publicDir)
  }
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
  const redis = p.last('redis')
  if (redis !== undefined && !/^rediss?:\/\/\S+$/.test(redis)) throw new UsageError('--redis must be a redis:// or rediss:// URL')
  set('redis', redis)
  set('redisPrefix', p.last('redis-prefix'))
  Object.assign(opts, appFrom(p))
  return opts
}

/** --auth-url, and --webhook with its secret and grace window. */
function appFrom(p: Args): Pick<SseServerOptions, 'authUrl' | 'webhook'> {
  const out: Pick<SseServerOptions, 'authUrl' | 'webhook'> = {}
  const url = (flag: string): string | undefined => {
    const v = p.last(flag)
    if (v !== undefined && !(/^https?:\/\/\S+$/.test(v) && URL.canParse(v))) throw new UsageError(`--${flag} must be an http:// or https:// URL`)
    return v
  }
  const authUrl = url('auth-url')
  if (authUrl !== undefined) out.authUrl = authUrl
  const webhook = url('webhook')
  const graceMs = p.wholeNumber('webhook-grace')
  if (webhook === undefined) {
    if (p.has('webhook-secret') || graceMs !== undefined) throw new UsageError('--webhook-secret and --webhook-grace go with --webhook')
    return out
  }
  const secret = p.last('webhook-secret')
  // Required: an unsigned webhook is one anybody could forge. Not checked for length: it is the receiver's to choose.
  if (secret === undefined || secret === '') throw new UsageError('--webhook needs --webhook-secret (keep it in RAWSSE_WEBHOOK_SECRET or the --config file)')
  out.webhook = graceMs === undefined ? { url: webhook, secret } : { url: webhook, secret, graceMs }
  return out
}

/** Who may connect: --token, --publish-token and the --users file (read now, and again on SIGHUP). */
export function tokensFrom(p: Args): Pick<SseServerOptions, 'tokens' | 'publishTokens' | 'users'> {
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

const JWT_FLAGS = ['jwt-secret', 'jwt-key', 'jwt-issuer', 'jwt-audience']

/**
 * The JWT settings (read now, and again on SIGHUP): --jwt-secret, the --jwt-key files,
 * --jwt-issuer, --jwt-audience; undefined when none is given. Each secret and key is tried alone
 * first, so that an error names the flag (and the file), never a secret.
 */
export function jwtFrom(p: Args): JwtConfig | undefined {
  if (!JWT_FLAGS.some((f) => p.has(f))) return undefined
  const secrets = p.all('jwt-secret')
  const files = p.all('jwt-key')
  const tried = (what: string, config: JwtConfig, own: string): void => {
    try {
      new JwtVerifier(config)
    } catch (err) {
      throw new UsageError((err as Error).message.replace(own, what))
    }
  }
  secrets.forEach((secret, i) => tried(secrets.length === 1 ? '--jwt-secret' : `--jwt-secret #${i + 1}`, { secrets: [secret] }, 'jwt secret 1'))
  const keys = files.map((file) => {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new UsageError(`--jwt-key ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    tried(`--jwt-key ${file}`, { keys: [text] }, 'jwt key 1')
    return text
  })
  if (secrets.length + keys.length === 0) throw new UsageError('--jwt-issuer and --jwt-audience need --jwt-secret or --jwt-key')
  const config: JwtConfig = { secrets, keys }
  for (const [flag, key] of [['jwt-issuer', 'issuer'], ['jwt-audience', 'audience']] as const) {
    const v = p.last(flag)
    if (v === '') throw new UsageError(`--${flag} must not be empty`)
    if (v !== undefined) config[key] = v
  }
  return config
}

/** The --tls-cert and --tls-key files, read now (and again on SIGHUP); null without them. */
export function readTls(p: Args): { cert: Buffer; key: Buffer } | null {
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
  authCookie: '--auth-cookie',
  heartbeatMs: '--heartbeat',
  retryMs: '--retry',
  tickMs: '--tick',
  redisPrefix: '--redis-prefix',
}

/** new SseServer(opts), its errors in the words of the command line. */
export function makeServer(opts: SseServerOptions): SseServer {
  try {
    return new SseServer(opts)
  } catch (err) {
    // The library names its options; the person at the command line typed flags.
    throw new UsageError((err as Error).message.replace(/\b[a-z]+[A-Z]\w*\b/g, (name) => OPTION_FLAGS[name] ?? name))
  }
}
