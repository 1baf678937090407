// Webhook delivery (CONTRACT `--webhook`): each change POSTed as JSON, signed, at least once with
// the same `id`; retried on a 5xx, a 429 or no answer (1 s doubling to 5 min, Retry-After
// honoured within that), given up 24 h after it was told. One queue per key (a user, a channel):
// a key's next change waits until the one before was taken or given up, so their order is kept;
// different keys go side by side, as many at once as the client has sockets (APP_MAX_SOCKETS).
//
// Bounded: at most WEBHOOK_MAX_OWED changes wait; one more is given up at once (counted in
// `failed`, reported). At stop() whatever is owed is tried once more (a key's next only after its
// previous was taken) within WEBHOOK_STOP_MS, and the rest is reported as unsent.

import { AppClient, AppHttpError } from '../app-http.js'
import * as L from '../limits.js'
import type { WebhookCounts } from '../metrics.js'
import { signature, type PresenceChange } from './change.js'

/** A change that will not be delivered (given up), or was still owed when the server stopped. */
export interface WebhookFailure {
  outcome: 'failed' | 'unsent'
  change: PresenceChange
  reason: string
}

/** The delays, as limits.ts has them (a test may shorten them). */
export interface SenderTimes {
  firstRetryMs: number
  maxRetryMs: number
  giveUpMs: number
  timeoutMs: number
  stopMs: number
}

const TIMES: SenderTimes = {
  firstRetryMs: L.WEBHOOK_FIRST_RETRY_MS,
  maxRetryMs: L.WEBHOOK_MAX_RETRY_MS,
  giveUpMs: L.WEBHOOK_GIVE_UP_MS,
  timeoutMs: L.WEBHOOK_TIMEOUT_MS,
  stopMs: L.WEBHOOK_STOP_MS,
}

interface Owed {
  readonly change: PresenceChange
  readonly body: string
  /** When it was told (performance.now()): given up WEBHOOK_GIVE_UP_MS after. */
  readonly toldAt: number
  tries: number
}

/** What one try came to. */
type Outcome = { kind: 'taken' } | { kind: 'again'; reason: string; retryAfterMs: number } | { kind: 'refused'; reason: string }

export class WebhookSender {
  /** Owed changes by key, oldest first; the first of each is the one being tried. */
  private readonly queues = new Map<string, Owed[]>()
  /** Keys whose first change may be tried now, in the order they became ready. */
  private readonly ready = new Set<string>()
  /** Keys whose first change waits for its next try, until when (performance.now()). */
  private readonly waiting = new Map<string, number>()
  private owed = 0
  private inFlight = 0
  private sweeper: NodeJS.Timeout | null = null
  private readonly client: AppClient
  /** Set by stop(): a failed try is not made again, and `idle` is called when nothing is under way. */
  private stopping: { idle: () => void } | null = null
  /** stop() is over: a try that ends now finds nothing to settle. */
  private closed = false

  constructor(
    url: URL,
    private readonly secret: string,
    readonly counts: WebhookCounts,
    private readonly report: (f: WebhookFailure) => void,
    private readonly times: SenderTimes = TIMES,
  ) {
    this.client = new AppClient(url, L.APP_MAX_SOCKETS)
  }

  /** Changes owed (waiting or being tried). */
  get size(): number {
    return this.owed
  }

  /** Owe `change` (of key `key`) to the receiver. */
  send(key: string, change: PresenceChange): void {
    if (this.stopping !== null) return this.report({ outcome: 'unsent', change, reason: 'the server is stopping' })
    if (this.owed >= L.WEBHOOK_MAX_OWED) {
      this.counts.failed++
      return this.report({ outcome: 'failed', change, reason: `${L.WEBHOOK_MAX_OWED} webhooks are already owed` })
    }
    this.owed++
    const owed: Owed = { change, body: JSON.stringify(change), toldAt: performance.now(), tries: 0 }
    const queue = this.queues.get(key)
    if (queue !== undefined) return void queue.push(owed)
    this.queues.set(key, [owed])
    this.ready.add(key)
    this.pump()
  }

  /**
   * Try what is owed once more (each key in order), for at most WEBHOOK_STOP_MS; report the rest
   * as unsent (counted in `failed`). Resolves when done; never rejects.
   */
  stop(): Promise<void> {
    if (this.stopping !== null) return Promise.resolve()
    if (this.sweeper !== null) clearInterval(this.sweeper)
    for (const key of this.waiting.keys()) this.ready.add(key)
    this.waiting.clear()
    return new Promise<void>((resolve) => {
      const end = (): void => {
        if (this.closed) return
        this.closed = true
        clearTimeout(deadline)
        this.client.close()
        for (const queue of this.queues.values()) {
          for (const owed of queue) {
            this.counts.failed++
            this.report({ outcome: 'unsent', change: owed.change, reason: 'still owed when the server stopped' })
          }
        }
        this.queues.clear()
        this.ready.clear()
        this.owed = 0
        resolve()
      }
      const deadline = setTimeout(end, this.times.stopMs)
      this.stopping = { idle: end }
      this.pump()
    })
  }

  /** Start tries while sockets are free. */
  private pump(): void {
    while (this.inFlight < L.APP_MAX_SOCKETS && this.ready.size > 0) {
      const key = this.ready.values().next().value!
      this.ready.delete(key)
      this.attempt(key, this.queues.get(key)![0]!)
    }
    if (this.stopping !== null && this.inFlight === 0 && this.ready.size === 0) this.stopping.idle()
  }

  private attempt(key: string, owed: Owed): void {
    this.inFlight++
    owed.tries++
    const headers = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(owed.body),
      'rawsse-signature': signature(this.secret, owed.body),
      'user-agent': 'rawsse',
    }
    this.client.request({ method: 'POST', headers, body: owed.body, timeoutMs: this.times.timeoutMs, maxBytes: 0 }).then(
      (a) => this.settle(key, owed, outcomeOf(a.status, a.headers['retry-after'])),
      (err: AppHttpError) => this.settle(key, owed, { kind: 'again', reason: err.message, retryAfterMs: 0 }),
    )
  }

  private settle(key: string, owed: Owed, o: Outcome): void {
    if (this.closed) return
    this.inFlight--
    if (o.kind === 'taken') {
      this.counts.sent++
      this.next(key)
    } else if (o.kind === 'refused') {
      this.counts.failed++
      this.report({ outcome: 'failed', change: owed.change, reason: o.reason })
      this.next(key)
    } else if (this.stopping !== null) {
      // Tried once more at stop: it stays owed (and is reported unsent), and so does what follows it.
    } else if (performance.now() - owed.toldAt >= this.times.giveUpMs) {
      this.counts.failed++
      this.report({ outcome: 'failed', change: owed.change, reason: `${o.reason}; given up ${Math.round(this.times.giveUpMs / 3_600_000)} h after it was told` })
      this.next(key)
    } else {
      this.counts.retried++
      const backoff = Math.min(this.times.firstRetryMs * 2 ** (owed.tries - 1), this.times.maxRetryMs)
      this.waiting.set(key, performance.now() + Math.min(Math.max(backoff, o.retryAfterMs), this.times.maxRetryMs))
      this.sweeper ??= setInterval(this.sweep, Math.min(L.WEBHOOK_SWEEP_MS, this.times.firstRetryMs)).unref()
    }
    this.pump()
  }

  /** Key `key`'s first change is done with: its next one may go. */
  private next(key: string): void {
    this.owed--
    const queue = this.queues.get(key)!
    queue.shift()
    if (queue.length === 0) this.queues.delete(key)
    else this.ready.add(key)
  }

  /** Keys whose wait is over become ready. */
  private readonly sweep = (): void => {
    const now = performance.now()
    for (const [key, at] of this.waiting) {
      if (at > now) continue
      this.waiting.delete(key)
      this.ready.add(key)
    }
    if (this.waiting.size === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper)
      this.sweeper = null
    }
    this.pump()
  }
}

/** A receiver's status as what to do: 2xx taken; 5xx and 429 again (after Retry-After, when it says); anything else refused. */
function outcomeOf(status: number, retryAfter: string | undefined): Outcome {
  if (status >= 200 && status < 300) return { kind: 'taken' }
  if (status >= 500 || status === 429) {
    const seconds = retryAfter === undefined ? NaN : Number(retryAfter)
    return { kind: 'again', reason: `answered ${status}`, retryAfterMs: Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0 }
  }
  return { kind: 'refused', reason: `answered ${status}` }
}
