// One open event stream: who it is for, its socket, and what it is owed. While the kernel takes
// what we write, writes go straight to the socket; once it does not, the stream is blocked: it
// remembers where in the shared backlog (backlog.ts) its events start and how many bytes they
// are, and collects them when the socket drains, a slice of at most WRITE_SLICE_BYTES per write
// request (a writev of the shared Buffers: no copy per stream). So Node's write queue holds at
// most a couple of requests per stream whatever a client does, destroying a stalled stream is
// O(1), the buffer and stall checks read counters instead of walking a queue, a stalled stream
// costs two numbers however long it stalls, and 10 000 streams that drain at once hold no copy of
// what they are owed. A replay is paced the same way.

import type { Socket } from 'node:net'
import type { AuthUser } from '../access/auth.js'
import type { Backlog } from './backlog.js'
import type { Absences } from './absences.js'
import { WRITE_SLICE_BYTES } from '../limits.js'
import { sameKey } from '../stream-key.js'
import { CLOSE_DELIMITED, LAST_CHUNK, type Frame, type Framing } from './sse-encode.js'

/** What a `broadcast` filter and the `connect` / `disconnect` listeners see of a stream. */
export interface ClientView {
  readonly id: number
  readonly user: string | null
  /** The roles of the stream's token (`publish`, `admin`, or labels), e.g. to decide what it may see. */
  readonly roles: readonly string[]
  readonly channels: readonly string[]
  /** The client's address, as the socket saw it when the stream opened. */
  readonly remoteAddress: string | undefined
  /** When the stream opened (ms since the epoch). */
  readonly openedAt: number
  /** Events written to it (replay included; heartbeats not) and bytes, head and framing included. */
  readonly eventsSent: number
  readonly bytesSent: number
}

const STREAM = Symbol('rawsse.stream')
type StreamSocket = Socket & { [STREAM]: Stream }

// One listener function for every stream (`this` is the socket), not a closure each.
function onDrain(this: StreamSocket): void {
  this[STREAM].drained()
}

/** One open stream. Kept small: 10 000 of these must fit in a few MiB. */
export class Stream implements ClientView {
  /** Position in Streams.list, so a closed stream leaves the array in O(1). */
  index = -1
  /** To be dropped in a later slice (Streams.dropInSlices): the fan-out passes it by meanwhile. */
  doomed = false
  /** When the kernel last took bytes of a blocked stream (the stall check reads it). */
  progressAt = 0
  /** Counted by begin() and send() (replay included, heartbeats not events). */
  eventsSent = 0
  bytesSent = 0
  readonly openedAt = Date.now()
  /** libuv's unsent bytes of the write in progress at the last stall check: when it moves, the kernel is taking bytes. */
  queueSeen = -1
  /** The newest set of events (backlog.gen) this stream has had, or is owed through the backlog. */
  gen: number
  /** Where in the backlog this stream's owed events start; -1 while its socket takes every write. */
  private pendingFrom = -1
  /** Bytes of those events (in this stream's framing). */
  private pendingBytes = 0
  /**
   * What is written before anything owed from the backlog, not written yet, and the next one to
   * write: a replay (views of history's frames), or what a change of channels settled.
   */
  private replay: readonly Buffer[] | null = null
  private replayAt = 0
  /** Live channels: where it was away from the channels it left or came to (null until it changes). */
  absences: Absences | null = null
  /** Its secret (`ready.key`): a native private field, so that no inspection or log line of a stream shows it. */
  readonly #key: string

  constructor(
    readonly id: number,
    readonly socket: Socket,
    /** The identity its token had when it opened (revocation compares it with the token's new one). */
    readonly who: AuthUser,
    /** What it receives: set when it opens, changed only by rechannel() (live channels). */
    public channels: readonly string[],
    /**
     * The bytes it takes (Frame.bytesFor): HTTP/1.1 streams are chunked, HTTP/1.0 streams
     * close-delimited (`Frame.body`); either may be tagged (`tag=channel`).
     */
    readonly framing: Framing,
    private readonly backlog: Backlog,
    key: string,
  ) {
    this.#key = key
    ;(socket as StreamSocket)[STREAM] = this
    this.gen = backlog.gen
    // One listener for the stream's life: registering one per block would allocate on every
    // block of a busy stream (measured: it costs no idle memory that shows).
    socket.on('drain', onDrain)
  }

  /** HTTP/1.1: its body ends with the last chunk. */
  get chunked(): boolean {
    return (this.framing & CLOSE_DELIMITED) === 0
  }

  /** Read from the socket only when asked (a log line): a string per idle stream is memory. */
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress
  }

  get user(): string | null {
    return this.who.user
  }

  get roles(): readonly string[] {
    return this.who.roles
  }

  /** The channels its token may subscribe to (absent: any), as the cluster's stream facts carry them (bus/wire.ts). */
  get grants(): readonly string[] | undefined {
    return this.who.grants
  }

  /** When its token expires (ms; absent: never), as the stream facts carry it. */
  get expiresAt(): number | undefined {
    return this.who.expiresAt
  }

  /**
   * The socket said it has enough (write() returned false, so 'drain' will come): new bytes wait
   * in our list. (A plain socket here says so at its first unsent byte, highWaterMark 1; a TLS
   * socket at 16 KiB, so a few writes may wait in Node's queue there.)
   */
  get blocked(): boolean {
    return this.pendingFrom !== -1
  }

  /** A fan-out in progress has not reached this stream yet (and it is not collecting from the backlog). */
  get behind(): boolean {
    return this.pendingFrom === -1 && this.gen < this.backlog.gen
  }

  /**
   * Be written out of turn (an event to this stream alone, its end): first what the fan-outs in
   * progress owe it, from the backlog, so that its events stay in publish order. The caller
   * writes or counts what comes next, then calls drained().
   */
  catchUp(): void {
    if (this.behind) this.block()
  }

  /** Bytes written or queued that the kernel has not taken (a replay not yet written is not counted). */
  get unsent(): number {
    return this.socket.writableLength + this.pendingBytes
  }

  /**
   * The first bytes (response head, `ready`, maybe `reset`) in one write, then `replay` paced by
   * the socket's drains. Live events sent meanwhile wait behind the replay, in order.
   */
  begin(first: readonly Buffer[], replay: readonly Buffer[]): number {
    const s = this.socket
    s.cork()
    let taken = true
    for (const b of first) {
      taken = s.write(b)
      this.bytesSent += b.length
    }
    s.uncork()
    for (const b of replay) this.bytesSent += b.length
    this.eventsSent = replay.length
    if (replay.length > 0) {
      // Live events wait behind the replay.
      this.replay = replay
      this.block()
      if (taken) this.drained()
    } else if (!taken) {
      this.block()
    }
    return this.bytesSent
  }

  /**
   * Write `buf` now; or, while blocked, count it as owed: the caller has put its events in the
   * backlog (it does whenever a stream is blocked), where drained() will find them.
   */
  send(buf: Buffer, events: number): void {
    this.bytesSent += buf.length
    this.eventsSent += events
    if (this.pendingFrom !== -1) this.pendingBytes += buf.length
    else if (!this.socket.write(buf)) this.block()
  }

  /** The socket took everything it had: write the rest of a replay, then what is owed, a slice per write while it takes them. */
  drained(): void {
    this.progressAt = Date.now()
    if (this.doomed || this.socket.destroyed || !this.backlog.mayWrite(this)) return
    if (this.replay !== null && !this.writeReplay()) return
    while (this.pendingFrom !== -1) {
      const owed = this.backlog.collect(this, this.framing, this.pendingFrom, WRITE_SLICE_BYTES)
      if (this.backlog.collectedTo >= this.backlog.end) {
        this.unblock()
      } else {
        this.pendingFrom = this.backlog.collectedTo
        this.pendingBytes = Math.max(0, this.pendingBytes - this.backlog.collectedBytes)
      }
      if (owed.length === 0) continue
      if (!this.writeViews(owed, 0, owed.length)) {
        this.block()
        return
      }
    }
  }

  /**
   * The stream joins the fan-out now: if it is blocked (its first bytes or its replay are still
   * going out), it owes only what is appended from here on; the events queued before it joined
   * are in its replay already.
   */
  joined(): void {
    this.gen = this.backlog.gen
    if (this.pendingFrom !== -1) this.pendingFrom = this.backlog.end
  }

  /** Whether `digest` (keyDigest() of what a request presented) is this stream's key's; constant time. */
  hasKey(digest: string): boolean {
    return sameKey(digest, this.#key)
  }

  /**
   * From here on the stream receives `channels` (live channels). What it is owed so far, from
   * fan-outs that have not reached it and from the backlog, is settled now under the channels it
   * had, ahead of anything pushed next: the change lands at one point of its sequence, after
   * every event this process delivered before it and before every one after.
   */
  rechannel(channels: readonly string[]): void {
    // Blocked already: a drain (or the backlog's next turn) comes. Merely behind a fan-out: nothing
    // would come, so what it is owed is written now, as for an event to it alone.
    const waiting = this.pendingFrom !== -1
    this.catchUp()
    if (this.pendingFrom !== -1) {
      const owed = this.backlog.collect(this, this.framing, this.pendingFrom)
      if (owed.length > 0) this.queue(owed)
      // Its bytes stay counted in pendingBytes until it has caught up: unsent, a moment longer.
      this.pendingFrom = this.backlog.end
    }
    this.channels = channels
    if (!waiting && this.pendingFrom !== -1) this.drained()
  }

  /**
   * Bytes that come next on this stream, before any event delivered after this call (the
   * `channels` event and a `since` replay): written now, or after what it is still owed.
   */
  push(bufs: readonly Buffer[]): void {
    for (const b of bufs) this.bytesSent += b.length
    this.eventsSent += bufs.length
    if (this.pendingFrom !== -1) {
      this.queue(bufs)
      return
    }
    this.replay = bufs
    this.replayAt = 0
    this.block()
    this.drained()
  }

  /** `bufs` go after the replay not yet written (the stream is blocked: drained() writes them). */
  private queue(bufs: readonly Buffer[]): void {
    const r = this.replay
    this.replay = r === null ? bufs : r.slice(this.replayAt).concat(bufs)
    this.replayAt = 0
  }

  /** Where this stream's owed events start in the backlog (-1: none). */
  get owedFrom(): number {
    return this.pendingFrom
  }

  /** The stream is closed: it is no longer owed anything. */
  release(): void {
    this.replay = null
    this.unblock()
  }

  /** End the stream: what it is owed, then `before` (e.g. a last `retry:`), the last chunk, and FIN. */
  end(before?: Frame): void {
    const s = this.socket
    if (!s.destroyed) {
      this.catchUp()
      s.cork()
      if (this.replay !== null) for (let i = this.replayAt; i < this.replay.length; i++) s.write(this.replay[i]!)
      if (this.pendingFrom !== -1) for (const b of this.backlog.collect(this, this.framing, this.pendingFrom)) s.write(b)
      if (before !== undefined) s.write(before.bytesFor(this.framing))
      if (this.chunked) s.write(LAST_CHUNK)
      s.end()
      s.uncork()
    }
    this.release()
  }

  /**
   * Owe from the backlog from now on: from the end, or, while a fan-out has not reached this
   * stream yet, from the first set it has not had (those sets then pass it by).
   */
  private block(): void {
    if (this.pendingFrom !== -1) return
    this.pendingFrom = this.backlog.owedAfter(this.gen)
    this.gen = this.backlog.gen
    this.backlog.blocked++
    this.progressAt = Date.now()
  }

  /** Caught up with the backlog's end: every set so far is had. */
  private unblock(): void {
    if (this.pendingFrom === -1) return
    this.gen = this.backlog.gen
    this.pendingFrom = -1
    this.pendingBytes = 0
    this.backlog.blocked--
  }

  /**
   * bufs[from, to) as ONE write request (a writev, corked): the shared Buffers themselves, never a
   * copy per stream, so 10 000 streams catching up at once hold no more memory than one does.
   */
  private writeViews(bufs: readonly Buffer[], from: number, to: number): boolean {
    const s = this.socket
    let bytes = 0
    let taken = true
    if (to - from === 1) {
      bytes = bufs[from]!.length
      taken = s.write(bufs[from]!)
    } else {
      s.cork()
      for (let i = from; i < to; i++) {
        bytes += bufs[i]!.length
        taken = s.write(bufs[i]!)
      }
      s.uncork()
    }
    this.backlog.spent(bytes)
    return taken
  }

  /** The next slices of the replay while the socket takes them; true when the replay is done. */
  private writeReplay(): boolean {
    const r = this.replay!
    while (this.replayAt < r.length) {
      let end = this.replayAt
      let bytes = 0
      while (end < r.length && bytes < WRITE_SLICE_BYTES) bytes += r[end++]!.length
      const from = this.replayAt
      this.replayAt = end
      if (!this.writeViews(r, from, end)) return false
    }
    this.replay = null
    return true
  }
}
