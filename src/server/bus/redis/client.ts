// The one place that touches the `redis` package (node-redis, the official client): an optional
// peer dependency, imported only when a server is given a Redis URL, so nobody else needs it
// installed. Everything else sees the narrow RedisLink below: raw commands in, RESP2 arrays of
// strings out, which also keeps rawsse working with Valkey and with any client major version.

import { createHash } from 'node:crypto'
import * as L from '../../limits.js'

/** What rawsse uses of one Redis connection. */
export interface RedisLink {
  /** A command, e.g. ['XADD', key, …]; rejects at once while the connection is down (no offline queue). */
  send(args: readonly string[]): Promise<unknown>
  /** Connected and ready for commands. */
  readonly ready: boolean
  /** Wait for the first connection (the client retries with backoff until then). */
  connect(): Promise<void>
  /** Another connection to the same server (a blocking read or a subscriber needs its own). */
  duplicate(): RedisLink
  /** Messages on these channels go to `listener`, from now on and after every reconnection. */
  subscribe(channels: string[], listener: (message: string, channel: string) => void): Promise<void>
  onReady(fn: () => void): void
  /** The first failure of each outage (ECONNREFUSED, …); later ones of the same outage are not repeated. */
  onDown(fn: (reason: string) => void): void
  close(): void
}

/** The message the command line prints (exit 2) when `--redis` is given without the package. */
export const REDIS_MISSING = 'the redis package is not installed: run npm install redis'

/** The shape of node-redis's client that we call; its own types are richer than we need. */
interface NodeRedisClient {
  sendCommand(args: readonly string[]): Promise<unknown>
  readonly isReady: boolean
  connect(): Promise<unknown>
  duplicate(): NodeRedisClient
  subscribe(channels: string[], listener: (message: string, channel: string) => void): Promise<void>
  on(event: string, fn: (arg: unknown) => void): unknown
  destroy(): void
}

type CreateClient = (options: object) => NodeRedisClient

let loaded: Promise<CreateClient> | null = null

/** Import the package once; rejects with REDIS_MISSING when it is not installed. */
export function loadRedis(): Promise<CreateClient> {
  loaded ??= import('redis').then(
    (m) => m.createClient as unknown as CreateClient,
    (err: NodeJS.ErrnoException) => {
      throw new Error(err.code === 'ERR_MODULE_NOT_FOUND' ? REDIS_MISSING : `the redis package cannot be loaded: ${err.message}`)
    },
  )
  return loaded
}

/** A client for `url`: RESP2 (plain arrays), no offline queue (a publish while Redis is away fails at once: 503), capped backoff. */
export async function redisLink(url: string): Promise<RedisLink> {
  const createClient = await loadRedis()
  return wrap(
    createClient({
      url,
      RESP: 2,
      disableOfflineQueue: true,
      // Jittered, so that the nodes of a cluster do not all come back in the same millisecond.
      socket: { reconnectStrategy: (retries: number) => Math.min(L.REDIS_BACKOFF_FIRST_MS * 2 ** retries, L.REDIS_BACKOFF_MAX_MS) * (0.5 + Math.random() / 2) },
    }),
  )
}

function wrap(client: NodeRedisClient): RedisLink {
  let down = false
  const downListeners: Array<(reason: string) => void> = []
  client.on('error', (err) => {
    if (down) return
    down = true
    const reason = (err as Error).message
    for (const fn of downListeners) fn(reason)
  })
  client.on('ready', () => {
    down = false
  })
  return {
    send: (args) => client.sendCommand(args),
    get ready() {
      return client.isReady
    },
    connect: async () => {
      await client.connect()
    },
    duplicate: () => wrap(client.duplicate()),
    subscribe: (channels, listener) => client.subscribe(channels, listener),
    onReady: (fn) => void client.on('ready', fn),
    onDown: (fn) => void downListeners.push(fn),
    close: () => client.destroy(),
  }
}

/**
 * `p`, or a rejection with `late()` once `ms` have passed without an answer. A Redis that hangs
 * (stopped, swapping, cut off without a reset) leaves a command waiting for ever; what `p` does
 * after that is ignored, but handled (never an unhandled rejection).
 */
export function within<T>(p: Promise<T>, ms: number, late: () => Error): Promise<T> {
  return new Promise((resolve, reject) => {
    let settled = false
    // An answer that came in time but is not read yet still wins: a loop held up (a busy CPU, a
    // long GC) runs its due timers before it reads its sockets, and setImmediate runs after that
    // read. A publish Redis acknowledged must not be answered 503.
    const timer = setTimeout(
      () =>
        setImmediate(() => {
          if (!settled) reject(late())
        }),
      ms,
    )
    const settle = (): void => {
      settled = true
      clearTimeout(timer)
    }
    p.then(
      (v) => (settle(), resolve(v)),
      (err: unknown) => (settle(), reject(err)),
    )
  })
}

/** A Lua script run by its SHA1 (EVALSHA), loaded again when Redis has forgotten it (a restart). */
export class Script {
  private readonly sha: string
  constructor(private readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex')
  }

  async run(link: RedisLink, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    const rest = [String(keys.length), ...keys, ...args]
    try {
      return await link.send(['EVALSHA', this.sha, ...rest])
    } catch (err) {
      if (!(err as Error).message.startsWith('NOSCRIPT')) throw err
      return link.send(['EVAL', this.source, ...rest])
    }
  }
}
