// What SseServer tells its listeners: the events and their payloads (`connect`, `disconnect`,
// `presence`, and, only while someone listens, `error-reply`, `publish` and `hook-failure`, which feed the logs),
// and how a failure of the application in the loop is told even with no listener.

import type { EventEmitter } from 'node:events'
import type { DropReason } from './metrics.js'
import type { ClientView } from './fanout/stream.js'
import type { Target } from './fanout/target.js'
import type { PresenceChange } from './webhooks/change.js'
import type { HookFailure } from './webhooks/webhooks.js'

/** An answer with a status of 400 or more: what a log line says about it. */
export interface ErrorReply {
  status: number
  /** The reason given to the client (the short body, or the JSON `error`). */
  detail: string
  method: string | null
  /** The request path with a token in it redacted (`/events/***`); null when the head was not read. */
  path: string | null
  remoteAddress: string | undefined
  /** Why a credential was refused (`jwt: expired`, `ticket: unknown, spent or expired`, …): for the log only, the client is told just `401`. */
  refusal?: string
}

/** A published event, for logs (`--log-publish`). */
export interface PublishedEvent {
  id: string
  event: string | undefined
  target: Target
  delivered: number
  bytes: number
}

export interface SseServerEvents {
  connect: [client: ClientView]
  disconnect: [client: ClientView, reason: DropReason | 'closed']
  /** Emitted only while someone listens. */
  'error-reply': [reply: ErrorReply]
  /** Emitted only while someone listens. */
  publish: [event: PublishedEvent]
  /** A cluster's bus (Redis) stopped answering (`down`, with why) or answers again (`up`). */
  bus: [state: 'up' | 'down', detail: string]
  /**
   * A user's first stream or last, a channel's, after the grace window, once for the cluster (on
   * the process that tells it): what a webhook's body holds. Told only to listeners attached
   * before listen(), or with `webhook` set.
   */
  presence: [change: PresenceChange]
  /** --auth-url did not answer right (the request got a 503), or a webhook was given up or left unsent at stop. */
  'hook-failure': [failure: HookFailure]
}

/** To the `hook-failure` listeners (the command's log); with none, a process warning, so that it is never silent. */
export function hookFailed(events: EventEmitter<SseServerEvents>, f: HookFailure): void {
  if (events.listenerCount('hook-failure') > 0) return void events.emit('hook-failure', f)
  const what = f.hook === 'webhook' ? `webhook ${f.change.type} ${f.change.id} ${f.outcome}: ` : `${f.hook}: `
  process.emitWarning(`rawsse: ${what}${f.reason}`)
}
