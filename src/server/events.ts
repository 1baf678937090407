// What SseServer tells its listeners: the events and their payloads (`connect`, `disconnect`,
// and, only while someone listens, `error-reply` and `publish`, which feed the logs).

import type { DropReason } from './metrics.js'
import type { ClientView } from './fanout/stream.js'
import type { Target } from './fanout/target.js'

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
}
