// What a process that tells presence changes runs (an SseServer, or a `--workers` primary): the
// teller (presence-changes.ts) on its feed, each change to the `presence` listener and, with
// `--webhook`, to the receiver (sender.ts); and how they stop: nothing more is told, what is owed
// is tried once more, within the 5 s stop.

import type { EventEmitter } from 'node:events'
import type { Bus } from '../bus/bus.js'
import { hookFailed, type SseServerEvents } from '../events.js'
import type { Metrics, WebhookCounts } from '../metrics.js'
import type { Settings } from '../options.js'
import type { PresenceChange } from './change.js'
import { PresenceTeller, type PresenceFeed } from './presence-changes.js'
import { WebhookSender, type WebhookFailure } from './sender.js'

/** `webhook` of SseServerOptions: where changes are POSTed, the secret that signs them, the grace window. */
export interface WebhookOptions {
  /** `http://` or `https://`. */
  url: string
  /** Signs each body (`Rawsse-Signature`): the receiver checks it with the same secret. */
  secret: string
  /** A change undone within this is not told; default 5000. */
  graceMs?: number
}

/** The application in the loop failed: --auth-url did not answer right, or a webhook was given up or left unsent at stop. */
export type HookFailure = { hook: 'auth-url'; reason: string } | ({ hook: 'webhook' } & WebhookFailure) | { hook: 'presence'; reason: string }

export interface WebhooksSettings {
  feed: PresenceFeed
  graceMs: number
  /** The receiver, or null (the `presence` event only). */
  webhook: { url: URL; secret: string } | null
  /** Where `sent`, `retried`, `failed` are counted (the process's /stats). */
  counts: WebhookCounts
  /** Each change, as it is told (the `presence` event). */
  told: (change: PresenceChange) => void
  failed: (f: HookFailure) => void
}

export class Webhooks {
  private readonly teller: PresenceTeller
  private readonly sender: WebhookSender | null

  constructor(s: WebhooksSettings) {
    const sender = s.webhook === null ? null : new WebhookSender(s.webhook.url, s.webhook.secret, s.counts, (f) => s.failed({ hook: 'webhook', ...f }))
    this.sender = sender
    this.teller = new PresenceTeller(
      s.feed,
      s.graceMs,
      (key, change) => {
        s.told(change)
        sender?.send(key, change)
      },
      (reason) => s.failed({ hook: 'presence', reason }),
    )
  }

  /** Start telling (resolves once a cluster's record is read; changes are watched from the call on). */
  start(): Promise<void> {
    return this.teller.start()
  }

  /** Nothing more is told; what is owed is tried once more (at most WEBHOOK_STOP_MS), the rest reported. */
  stop(): Promise<void> {
    this.teller.stop()
    return this.sender?.stop() ?? Promise.resolve()
  }
}

/** What a server gives to tell its presence changes. */
export interface ServerSide {
  bus: Bus
  /** Its own streams: the presence of a process that is the whole cluster. */
  streams: Pick<PresenceFeed, 'watch' | 'forEachPresent'>
  settings: Settings
  metrics: Metrics
  events: EventEmitter<SseServerEvents>
}

/**
 * A server's webhooks and `presence` event, started; or null when it tells nothing: no `webhook`
 * and no `presence` listener when it started, or another process of its cluster tells them (a worker).
 */
export function startWebhooks(s: ServerSide): Webhooks | null {
  const feed = s.bus.presenceFeed ?? { watch: (fn) => s.streams.watch(fn), forEachPresent: (fn) => s.streams.forEachPresent(fn), claims: () => null }
  const { webhook, presenceGraceMs } = s.settings
  if (feed === 'elsewhere' || (webhook === null && s.events.listenerCount('presence') === 0)) return null
  const counts = { sent: 0, retried: 0, failed: 0 }
  if (webhook !== null) s.metrics.webhooks = counts
  const hooks = new Webhooks({ feed, graceMs: presenceGraceMs, webhook, counts, told: (change) => s.events.emit('presence', change), failed: (f) => hookFailed(s.events, f) })
  void hooks.start()
  return hooks
}
