// A stream's life on this process (docs/wire.md "Streams"): open it (the response head, `ready`,
// the replay from history, registration with the fan-out and the bus), change its channels (live
// channels), its close bookkeeping, revocation when its token loses its rights, its end when its
// token expires (`expiring`, then `expired`: CONTRACT "Tokens an application signs"), and its last
// `retry:` at shutdown. The routes decide that a stream may open or change; this file makes it so.

import type { EventEmitter } from 'node:events'
import type * as net from 'node:net'
import { EVENT_CHANNELS, EVENT_EXPIRED, EVENT_EXPIRING, EVENT_READY, jittered, type ChannelsData, type ExpiryData, type ReadyData } from '../wire.js'
import { maySubscribe, type AuthUser } from './access/auth.js'
import type { Bus } from './bus/bus.js'
import type { SseServerEvents } from './events.js'
import { Absences } from './fanout/absences.js'
import type { Backlog } from './fanout/backlog.js'
import { RESET_FRAME } from './fanout/delivery.js'
import type { History } from './fanout/history.js'
import { encodeEvent, framingOf, retryFrame, streamHead, type Frame } from './fanout/sse-encode.js'
import { Stream } from './fanout/stream.js'
import type { Streams } from './fanout/streams.js'
import { matches } from './fanout/target.js'
import { closeSocket } from './http/close.js'
import { HttpError } from './http/errors.js'
import type { RequestHead } from './http/head.js'
import { Deadlines } from './expiry.js'
import { DROP_SLICE, EXPIRING_BEFORE_MS, EXPIRY_HORIZON_MS, LINGER_MS, MAX_CHANNELS_PER_STREAM } from './limits.js'
import { checkChange, NOT_ITS_KEY, type ChannelsAnswer, type ChannelsQuestion } from './live-channels.js'
import type { DropReason, Metrics } from './metrics.js'
import type { OpenStream } from './routes.js'
import { newStreamKey } from './stream-key.js'

/** What the subscriptions of one server share with it; built once. */
export interface SubscriptionsContext {
  readonly streams: Streams
  readonly history: History
  readonly bus: Bus
  readonly metrics: Metrics
  /** What blocked streams are still owed, shared by all of them. */
  readonly backlog: Backlog
  /** The server, which tells `connect` and `disconnect` to its listeners. */
  readonly events: EventEmitter<SseServerEvents>
  readonly retryMs: number
  readonly corsOrigin: string
  /** Send `Access-Control-Allow-Credentials: true` on the stream head (an auth cookie and a specific origin). */
  readonly corsCredentials: boolean
  /** stop() has begun: no stream opens. */
  stopping(): boolean
}

export class Subscriptions {
  /** The response heads of a stream, built once: HTTP/1.1 chunked, HTTP/1.0 close-delimited. */
  private readonly heads: { chunked: Buffer; closeDelimited: Buffer }
  /** Streams whose token ends: when each gets `expiring`, then `expired` (one timer for all). */
  private readonly deadlines = new Deadlines<Stream>((due) => this.expireDue(due, 0))
  /** Streams that have had their `expiring`. */
  private readonly warned = new WeakSet<Stream>()

  constructor(private readonly ctx: SubscriptionsContext) {
    const { corsOrigin, corsCredentials } = ctx
    this.heads = { chunked: streamHead(true, corsOrigin, corsCredentials), closeDelimited: streamHead(false, corsOrigin, corsCredentials) }
  }

  /**
   * A stream request the routes accepted: head, `ready`, replay, then live events; null for
   * HEAD, which gets the head alone. Throws a 503 while the server stops.
   */
  open(socket: net.Socket, req: RequestHead, o: OpenStream): Stream | null {
    const { streams, history, bus, metrics } = this.ctx
    if (this.ctx.stopping()) {
      throw new HttpError(503, 'shutting down', [['Retry-After', String(Math.ceil(jittered(this.ctx.retryMs) / 1000))]])
    }
    const chunked = req.version === '1.1'
    const head = chunked ? this.heads.chunked : this.heads.closeDelimited
    if (req.method === 'HEAD') {
      socket.write(head)
      return null
    }
    const key = newStreamKey()
    const framing = framingOf(chunked, o.tagged)
    const stream = new Stream(bus.nextClientId(), socket, o.who, o.channels, framing, this.ctx.backlog, key)
    const data: ReadyData = { client: stream.id, user: stream.user, channels: stream.channels, key }
    const ready = encodeEvent({ event: EVENT_READY, data: JSON.stringify(data) }, jittered(this.ctx.retryMs))

    // Head, ready and reset in one write; the replay after them, paced by the socket. Nothing can
    // be published between here and streams.add (one thread), so the replay and the live events
    // meet with no gap: live events wait behind the replay.
    const first = [head, ready.bytesFor(framing)]
    const replay: Buffer[] = []
    if (o.lastEventId !== null) {
      const placed = history.since(o.lastEventId, (e) => {
        if (matches(stream, e.target)) replay.push(e.frame.bytesFor(framing))
      })
      if (!placed) first.push(RESET_FRAME.bytesFor(framing))
    }
    metrics.bytesOut += stream.begin(first, replay)
    streams.add(stream)
    bus.opened(stream)
    if (o.who.expiresAt !== undefined) this.expiresAt(stream, o.who.expiresAt)
    this.ctx.events.emit('connect', stream)
    return stream
  }

  /**
   * Live channels, on the process holding the stream: check the key (unless an admin asks), the
   * token's grants and the limit, then change it at this point of its sequence (Streams.rechannel):
   * the `channels` event, with `since` the added channels' retained events it has not had (or
   * `reset` where that cannot be told), then live events of the new set. Null: no such stream here.
   */
  change(q: ChannelsQuestion): ChannelsAnswer {
    const { streams, history } = this.ctx
    const s = streams.get(q.id)
    if (s === undefined) return null
    if (!('admin' in q.by) && !s.hasKey(q.by.key)) return NOT_ITS_KEY
    // Checked again: the question may have come from another process.
    const { add, remove, since } = checkChange(q.change)
    for (const ch of add) if (!maySubscribe(s.who, ch)) return { status: 403, error: 'channel not allowed', channel: ch }
    const before = s.channels
    const added = add.filter((ch) => !before.includes(ch))
    const left = before.filter((ch) => remove.includes(ch))
    const next = added.length === 0 && left.length === 0 ? before : [...before.filter((ch) => !left.includes(ch)), ...added]
    if (next.length > MAX_CHANNELS_PER_STREAM) return { status: 400, error: `at most ${MAX_CHANNELS_PER_STREAM} channels per stream` }
    // As a stream that names none gets `default`: a reconnection asking for the set must find it.
    if (next.length === 0) return { status: 400, error: 'a stream keeps at least one channel' }

    streams.rechannel(s, next)
    if (s.index === -1) return null // dropped meanwhile, as too slow
    const frames = [encodeEvent({ event: EVENT_CHANNELS, data: JSON.stringify({ channels: next } satisfies ChannelsData) }).bytesFor(s.framing)]
    if (left.length > 0 || added.length > 0) {
      const away = (s.absences ??= new Absences())
      const replayedFrom = since !== undefined && added.length > 0 ? this.replayAdded(s, away, since, added, frames) : undefined
      // Where in history it is away from a channel: a later `since` for it gives what it missed, and only that.
      for (const ch of left) away.leave(ch, history.end, history.oldest)
      for (const ch of added) away.join(ch, history.end, replayedFrom)
    }
    streams.push(s, frames)
    this.ctx.bus.opened(s) // its facts changed: the cluster's counts follow
    return { channels: next }
  }

  /**
   * The retained events of the `added` channels after `since` that stream `s` (now on its new
   * channels) would have received and missed, in order, into `frames`; `reset` first when `since`
   * cannot be placed, or lies before a place from which the stream cannot tell. Returns where the
   * replay started (undefined: none).
   */
  private replayAdded(s: Stream, away: Absences, since: string, added: readonly string[], frames: Buffer[]): number | undefined {
    const { history } = this.ctx
    const start = history.placeOf(since)
    if (start === null || added.some((ch) => away.knownFrom(ch) > start)) frames.push(RESET_FRAME.bytesFor(s.framing))
    if (start === null) return undefined
    history.since(since, (e, seq) => {
      const ch = e.target.channel
      if (ch !== undefined && added.includes(ch) && away.missed(ch, seq) && matches(s, e.target)) frames.push(e.frame.bytesFor(s.framing))
    })
    return start
  }

  /** A stream left the fan-out (Streams' remove listener): tell the bus and the listeners, and finish its socket. */
  removed(c: Stream, reason: DropReason | 'closed'): void {
    this.ctx.bus.closed(c.id)
    if (c.who.expiresAt !== undefined) this.deadlines.remove(c)
    if (reason === 'admin' || reason === 'shutdown' || reason === 'revoked' || reason === 'expired') {
      // streams.drop() has just written the last chunk and FIN. Once those bytes are with the
      // kernel the socket is done; a client that reads nothing is reset after LINGER_MS.
      const s = c.socket
      s.once('finish', () => s.destroy())
      const t = setTimeout(() => closeSocket(s, this.ctx.metrics), LINGER_MS).unref()
      s.once('close', () => clearTimeout(t))
    }
    this.ctx.events.emit('disconnect', c, reason)
  }

  /**
   * The tokens changed: close (`revoked`) each stream whose token is gone, or lost a role or its
   * user name. `successor` says what a stream's identity holds now (undefined: not ours to judge,
   * e.g. the authenticate hook's). Returns how many were closed.
   */
  revoke(successor: (who: AuthUser) => AuthUser | null | undefined): number {
    let revoked = 0
    for (const s of [...this.ctx.streams.list]) {
      const now = successor(s.who)
      if (now === undefined) continue
      if (now === null || now.user !== s.user || !s.roles.every((r) => now.roles.includes(r))) {
        this.ctx.streams.drop(s, 'revoked')
        revoked++
      }
    }
    return revoked
  }

  /** The server stops: every stream gets a last jittered `retry:` and its terminating chunk. */
  shutdown(): void {
    this.deadlines.stop()
    const { streams } = this.ctx
    for (const c of [...streams.list]) streams.drop(c, 'shutdown', retryFrame(jittered(this.ctx.retryMs)))
  }

  /** Close one stream as an admin (it gets `0\r\n\r\n` first); false when there is none with that id here. */
  close(id: number): boolean {
    const c = this.ctx.streams.get(id)
    if (c === undefined) return false
    this.ctx.streams.drop(c, 'admin')
    return true
  }

  /** Close every stream here as an admin; returns how many. */
  closeAll(): number {
    const all = [...this.ctx.streams.list]
    for (const c of all) this.ctx.streams.drop(c, 'admin')
    return all.length
  }

  /**
   * A stream whose token ends at `ends` (ms): `expiring` EXPIRING_BEFORE_MS before, or at half the
   * life it has left when that is shorter, so a page renews its token while the stream still
   * runs; `expired` and the end at `ends`. A token already past `ends` (accepted within the JWT
   * leeway) gets `expired` right after its `ready` and replay: told the truth at once, its page
   * renews. An `ends` past EXPIRY_HORIZON_MS is taken as none.
   */
  private expiresAt(stream: Stream, ends: number): void {
    const now = Date.now()
    const left = ends - now
    if (!(left <= EXPIRY_HORIZON_MS)) return
    this.deadlines.at(stream, left <= 0 ? now : ends - Math.min(EXPIRING_BEFORE_MS, left / 2))
  }

  /**
   * Deadlines that came, from `from` on: `expiring` or `expired` (then the stream's end, counted
   * `drops.expired`), DROP_SLICE streams per event-loop turn: 10 000 tokens signed in the same
   * second end together, and each end costs tens of µs.
   */
  private expireDue(due: readonly Stream[], from: number): void {
    const { streams } = this.ctx
    const now = Date.now()
    const to = Math.min(due.length, from + DROP_SLICE)
    // Events queued in this turn were published before: they go first.
    streams.flush()
    const frames = new Map<string, Frame>()
    for (let i = from; i < to; i++) {
      const s = due[i]!
      if (s.index === -1) continue // closed meanwhile
      const ends = s.who.expiresAt!
      const warn = now < ends && !this.warned.has(s)
      const event = warn ? EVENT_EXPIRING : EVENT_EXPIRED
      const key = `${event} ${ends}`
      let frame = frames.get(key)
      if (frame === undefined) {
        const data: ExpiryData = { expiresAt: new Date(ends).toISOString() }
        frames.set(key, (frame = encodeEvent({ event, data: JSON.stringify(data) })))
      }
      // As an event to this client alone: after what the fan-outs under way owe it, in order.
      streams.fanOut(frame, { client: s.id })
      if (warn) {
        this.warned.add(s)
        this.deadlines.at(s, ends)
      } else {
        streams.drop(s, 'expired')
      }
    }
    if (to < due.length) setImmediate(() => this.expireDue(due, to))
  }
}
