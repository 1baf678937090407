// SseServer's options (docs/library.md), their defaults and their checks: the only place that
// turns what a caller gave into the settings the server runs with.

import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
import { openFileLimit } from '../process-limits.js'
import { DEFAULT_RETRY_MS } from '../wire.js'
import type { Authenticate, UserEntry } from './access/auth.js'
import type { Bus } from './bus/bus.js'
import { isCookieName } from './http/cookie.js'
import type { JwtConfig } from './access/jwt.js'
import * as L from './limits.js'
import type { WebhookOptions } from './webhooks/webhooks.js'

export interface SseServerOptions {
  /** Default 6500; 0 picks a free port. */
  port?: number
  /** Default 127.0.0.1. */
  host?: string
  /** Tokens that may open streams. */
  tokens?: readonly string[]
  /** Tokens that may open streams, publish and administer. */
  publishTokens?: readonly string[]
  /** Named users with roles (the `--users` file). */
  users?: readonly UserEntry[]
  /** Asked for every token the token lists do not know, before JWTs and tickets. */
  authenticate?: Authenticate
  /**
   * Accept the JWTs an application signs (docs/apps.md): HS256/384/512 `secrets` (at least 32
   * bytes each), public `keys` (PEM or JWK Set text, a parsed JWK Set, or KeyObjects), and when
   * given, the `issuer` and `audience` a token must name. `updateJwt()` replaces them.
   */
  jwt?: JwtConfig
  /** Also take a token from this cookie (a page's `EventSource` with `withCredentials`, or a same-site page). */
  authCookie?: string
  /** Static files beside the stream; default the package's `public/`; null serves none. */
  publicDir?: string | null
  /** `Access-Control-Allow-Origin`; default `*`. */
  corsOrigin?: string
  heartbeatMs?: number
  retryMs?: number
  /** Events kept for Last-Event-ID replay. */
  history?: number
  /** Bytes of encoded events kept for replay, beside `history`; default 64 MiB. */
  historyBytes?: number
  maxClients?: number
  /**
   * Every TCP connection and file being sent, streams included. At the limit, a new connection
   * makes the server close the oldest connection still waiting for a request head; with none,
   * the new one is refused. Default: the process's open-file limit less 256.
   */
  maxConnections?: number
  /** The listen queue (connections the kernel accepted that we have not yet); capped by net.core.somaxconn. Default 4096. */
  backlog?: number
  maxBufferBytes?: number
  /**
   * Unsent bytes of all answers (files, replies) and streams together; past it the oldest answers
   * are reset, then the streams holding the most are dropped. Default 256 MiB.
   */
  maxUnsentBytes?: number
  /**
   * The largest event, encoded, in bytes; a bigger publish is refused (`413`, or an Error with
   * `status` 413 from the library). Default 1 MiB, or maxBufferBytes when that is smaller: one
   * event must never be enough to drop every reader as slow.
   */
  maxEventBytes?: number
  /** Period of the `time` event; 0 = off. */
  tickMs?: number
  /** Head deadline, and then body deadline (408); default 10 s. */
  headTimeoutMs?: number
  /** A stream with unsent bytes that the kernel takes none of for this long is dropped; default 30 s. */
  stallTimeoutMs?: number
  /** An answer or file the client takes nothing of for this long closes its connection; default 30 s. */
  sendTimeoutMs?: number
  /**
   * The first server-assigned event id. Default: boot time in ms × 1000 + 1, so ids keep increasing
   * across restarts and a Last-Event-ID from before a restart is never mistaken for a new event
   * (it is not in the new ring, so the stream says `reset`). Set 1 for short ids.
   */
  firstEventId?: number
  /** Replace the in-process bus, e.g. with one shared between processes. */
  bus?: Bus
  /**
   * `redis://[user:pass@]host:port[/db]` or `rediss://…`: every server given the same URL and
   * prefix is one cluster (docs/cluster.md "Many machines"). Needs the `redis` package (`npm install redis`).
   */
  redis?: string
  /** Key prefix on that Redis, so several clusters can share it; default `rawsse`. */
  redisPrefix?: string
  /** Serve HTTPS: a certificate chain and its private key (PEM). `reloadTls()` replaces them while running. */
  tls?: TlsFiles
  /**
   * Ask the application who a request is (docs/hooks.md): `GET` this `http://` or `https://` URL
   * with the request's `Authorization`, `Cookie` and `X-Rawsse-Channels`, for a credential nothing
   * else knows (or a request with only a cookie).
   */
  authUrl?: string
  /** Tell the application of presence changes (docs/hooks.md): POST them, signed, to `url`. */
  webhook?: WebhookOptions
}

/** A certificate chain and its key, PEM. */
export interface TlsFiles {
  cert: string | Buffer
  key: string | Buffer
}

/** The numbers and strings the server runs with: every option that has a default, resolved. */
export interface Settings {
  readonly port: number
  readonly host: string
  readonly corsOrigin: string
  /** The cookie that may carry a token; null: none. */
  readonly authCookie: string | null
  /** Answers say `Access-Control-Allow-Credentials: true`: an auth cookie and a specific origin (`*` cannot carry credentials). */
  readonly corsCredentials: boolean
  readonly heartbeatMs: number
  readonly retryMs: number
  readonly history: number
  readonly historyBytes: number
  readonly maxClients: number
  readonly maxConnections: number
  readonly backlog: number
  readonly maxBufferBytes: number
  readonly maxUnsentBytes: number
  readonly maxEventBytes: number
  readonly tickMs: number
  readonly headTimeoutMs: number
  readonly stallTimeoutMs: number
  readonly sendTimeoutMs: number
  /** Where static files come from; null: none. */
  readonly publicDir: string | null
  /** The id before the first server-assigned one. */
  readonly lastEventId: number
  /** Where and how presence changes are POSTed; null: they are not (the `presence` event still tells them). */
  readonly webhook: { url: URL; secret: string } | null
  /** The grace window of presence changes (webhooks and the `presence` event). */
  readonly presenceGraceMs: number
  /** The application that says who a request is; null: none. */
  readonly authUrl: URL | null
}

// dist/server/options.js → the package root's public/.
const PACKAGE_PUBLIC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'public')

/** Defaults applied and every value checked; throws RangeError naming the bad option. */
export function resolveSettings(options: SseServerOptions): Settings {
  const maxBufferBytes = options.maxBufferBytes ?? L.DEFAULT_MAX_BUFFER_BYTES
  const numbers = {
    port: options.port ?? L.DEFAULT_PORT,
    heartbeatMs: options.heartbeatMs ?? L.DEFAULT_HEARTBEAT_MS,
    retryMs: options.retryMs ?? DEFAULT_RETRY_MS,
    history: options.history ?? L.DEFAULT_HISTORY,
    historyBytes: options.historyBytes ?? L.DEFAULT_HISTORY_BYTES,
    maxClients: options.maxClients ?? L.DEFAULT_MAX_CLIENTS,
    maxConnections: options.maxConnections ?? Math.max(1, openFileLimit() - L.FD_RESERVE),
    backlog: options.backlog ?? L.DEFAULT_BACKLOG,
    maxBufferBytes,
    maxUnsentBytes: options.maxUnsentBytes ?? L.DEFAULT_MAX_UNSENT_BYTES,
    maxEventBytes: options.maxEventBytes ?? Math.min(L.DEFAULT_MAX_EVENT_BYTES, maxBufferBytes),
    tickMs: options.tickMs ?? L.DEFAULT_TICK_MS,
    graceMs: options.webhook?.graceMs ?? L.DEFAULT_WEBHOOK_GRACE_MS,
    headTimeoutMs: options.headTimeoutMs ?? L.HEAD_TIMEOUT_MS,
    stallTimeoutMs: options.stallTimeoutMs ?? L.STALL_TIMEOUT_MS,
    sendTimeoutMs: options.sendTimeoutMs ?? L.SEND_TIMEOUT_MS,
  }
  for (const [name, v] of Object.entries(numbers)) {
    if (!(Number.isInteger(v) && v >= 0)) throw new RangeError(`${name} must be a whole number >= 0`)
  }
  if (numbers.maxEventBytes > numbers.maxBufferBytes) throw new RangeError('maxEventBytes must not be above maxBufferBytes: one event would drop every reader')
  const corsOrigin = options.corsOrigin ?? L.DEFAULT_CORS_ORIGIN
  // RFC 9110 §5.5: a field value is visible ASCII, space and tab; CR or LF would inject headers.
  if (!/^[\x20-\x7e\t]*$/.test(corsOrigin)) throw new RangeError('corsOrigin must be a valid header value (no CR, LF or control bytes)')
  const authCookie = options.authCookie ?? null
  if (authCookie !== null && !isCookieName(authCookie)) throw new RangeError('authCookie must be a cookie name (letters, digits and !#$%&\'*+-.^_`|~)')
  const lastEventId = (options.firstEventId ?? Date.now() * 1000 + 1) - 1
  if (!Number.isSafeInteger(lastEventId) || lastEventId < 0) throw new RangeError('firstEventId must be a whole number >= 1')
  const { graceMs, ...rest } = numbers
  return {
    ...rest,
    host: options.host ?? L.DEFAULT_HOST,
    corsOrigin,
    authCookie,
    corsCredentials: authCookie !== null && corsOrigin !== '*',
    publicDir: options.publicDir === undefined ? PACKAGE_PUBLIC : options.publicDir,
    lastEventId,
    webhook: options.webhook === undefined ? null : { url: appUrl('webhook.url', options.webhook.url), secret: webhookSecret(options.webhook.secret) },
    presenceGraceMs: graceMs,
    authUrl: options.authUrl === undefined ? null : appUrl('authUrl', options.authUrl),
  }
}

/** An application's URL: http or https (a user and password in it are sent as Basic credentials; never logged). */
function appUrl(name: string, value: unknown): URL {
  const url = typeof value === 'string' && URL.canParse(value) ? new URL(value) : null
  if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new RangeError(`${name} must be an http:// or https:// URL`)
  return url
}

function webhookSecret(value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new RangeError('webhook.secret must be a non-empty string: it signs every webhook')
  return value
}
