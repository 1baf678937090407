// One open event stream: who it is for, its socket, and its own output queue. While the kernel
// takes what we write, writes go straight to the socket; once it does not, they wait in our list
// and go out as ONE write when the socket drains. So Node's write queue holds at most a couple of
// entries per stream whatever a client does: destroying a stalled stream is O(1), and the buffer
// and stall checks read counters instead of walking a queue (Redis keeps its client output buffer
// the same way). A replay is paced the same way: a slice per drain, never all of history at once.

import type { Socket } from 'node:net'
import type { AuthUser } from './auth.js'
import { REPLAY_WRITE_BYTES } from './limits.js'
import { LAST_CHUNK, type Frame } from './sse-encode.js'

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
  /** When the kernel last took bytes of a blocked stream (the stall check reads it). */
  progressAt = 0
  eventsSent = 0
  bytesSent = 0
  readonly openedAt = Date.now()
  readonly remoteAddress: string | undefined
  /** libuv's unsent bytes of the write in progress at the last stall check: when it moves, the kernel is taking bytes. */
  queueSeen = -1
  /** Bytes waiting for the socket to drain, oldest first; null while the socket takes every write. */
  private pending: Buffer[] | null = null
  private pendingBytes = 0
  /** Replayed events not written yet (views of history's frames), and the next one to write. */
  private replay: readonly Buffer[] | null = null
  private replayAt = 0

  constructor(
    readonly id: number,
    readonly socket: Socket,
    /** The identity its token had when it opened (revocation compares it with the token's new one). */
    readonly who: AuthUser,
    readonly channels: readonly string[],
    /** HTTP/1.1 streams are chunked; HTTP/1.0 streams are close-delimited and get `Frame.body`. */
    readonly chunked: boolean,
  ) {
    ;(socket as StreamSocket)[STREAM] = this
    socket.on('drain', onDrain)
    this.remoteAddress = socket.remoteAddress
  }

  get user(): string | null {
    return this.who.user
  }

  get roles(): readonly string[] {
    return this.who.roles
  }

  /**
   * The socket said it has enough (write() returned false, so 'drain' will come): new bytes wait
   * in our list. (A plain socket here says so at its first unsent byte, highWaterMark 1; a TLS
   * socket at 16 KiB, so a few writes may wait in Node's queue there.)
   */
  get blocked(): boolean {
    return this.pending !== null
  }

  /** Bytes written or queued that the kernel has not taken (a replay not yet written is not counted). */
  get unsent(): number {
    return this.socket.writableLength + this.pendingBytes
  }

  /**
   * The first bytes (response head, `ready`, maybe `reset`) in one write, then `replay` paced by
   * the socket's drains. Live events sent meanwhile wait behind the replay, in order.
   */
  begin(first: readonly Buffer[], replay: readonly Buffer[]): void {
    const s = this.socket
    s.cork()
    let taken = true
    for (const b of first) taken = s.write(b)
    s.uncork()
    if (replay.length > 0) {
      // Live events wait behind the replay.
      this.replay = replay
      this.block()
      if (taken) this.drained()
    } else if (!taken) {
      this.block()
    }
  }

  /** Write `buf` now, or queue it behind what the socket has not taken yet. */
  send(buf: Buffer): void {
    if (this.pending !== null) {
      this.pending.push(buf)
      this.pendingBytes += buf.length
    } else if (!this.socket.write(buf)) {
      this.block()
    }
  }

  /** The socket took everything it had: write the rest of a replay, then what waited, as one write. */
  drained(): void {
    this.progressAt = Date.now()
    if (this.replay !== null && !this.writeReplay()) return
    const p = this.pending
    if (p === null) return
    this.pending = null
    const bytes = this.pendingBytes
    this.pendingBytes = 0
    if (p.length > 0 && !this.socket.write(p.length === 1 ? p[0]! : Buffer.concat(p, bytes))) this.block()
  }

  /** End the stream: what is queued, then `before` (e.g. a last `retry:`), the last chunk, and FIN. */
  end(before?: Frame): void {
    const s = this.socket
    if (s.destroyed) return
    s.cork()
    if (this.replay !== null) for (let i = this.replayAt; i < this.replay.length; i++) s.write(this.replay[i]!)
    for (const b of this.pending ?? []) s.write(b)
    this.replay = null
    this.pending = null
    this.pendingBytes = 0
    if (before !== undefined) s.write(before.bytesFor(this.chunked))
    if (this.chunked) s.write(LAST_CHUNK)
    s.end()
    s.uncork()
  }

  private block(): void {
    if (this.pending !== null) return
    this.pending = []
    this.progressAt = Date.now()
  }

  /** The next slices of the replay while the socket takes them; true when the replay is done. */
  private writeReplay(): boolean {
    const r = this.replay!
    while (this.replayAt < r.length) {
      let end = this.replayAt
      let bytes = 0
      while (end < r.length && bytes < REPLAY_WRITE_BYTES) bytes += r[end++]!.length
      const slice = end - this.replayAt === 1 ? r[this.replayAt]! : Buffer.concat(r.slice(this.replayAt, end), bytes)
      this.replayAt = end
      if (!this.socket.write(slice)) return false
    }
    this.replay = null
    return true
  }
}
