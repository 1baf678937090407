// One TCP connection's request side (RFC 9112 §2–§7, §9.6 tear-down): its socket's listeners,
// reading request heads and bodies out of the received bytes, its one deadline, and refusing or
// closing. What it does once a request is read (answer, stream a file, become a stream) is
// connection.ts, which extends this; both reach the server only through ConnectionHost.

import type * as net from 'node:net'
import { closeSocket } from './close.js'
import type { ConnectionHost } from './connection-host.js'
import { errorResponse, HttpError } from './errors.js'
import { BodyReader } from './body.js'
import { parseHead, type RequestHead } from './head.js'
import { LINGER_MS } from '../limits.js'
import { PendingAnswers } from './pending-answers.js'
import type { Reply } from './response.js'
import type { Outcome } from '../routes.js'
import type { Stream } from '../fanout/stream.js'

const EMPTY = Buffer.alloc(0)
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n')

/** Where a connection is in its life. */
export const State = {
  Head: 0, // waiting for (the rest of) a request head
  Body: 1, // reading a request body
  Busy: 2, // a request is being answered (or authorized); later pipelined bytes wait
  Stream: 3, // an open event stream; bytes from the client are read and ignored
  Closing: 4, // we have sent our last bytes; waiting for the client to close
} as const
export type State = (typeof State)[keyof typeof State]

const CONN = Symbol('rawsse.connection')
type OwnedSocket = net.Socket & { [CONN]: RequestReader }

// Shared listeners (`this` is the socket), not four closures per connection: at 19 000 streams
// every byte per connection counts.
function onSocketData(this: OwnedSocket, data: Buffer): void {
  this[CONN].onData(data)
}
function onSocketEnd(this: OwnedSocket): void {
  this[CONN].onEnd()
}
function onSocketClose(this: OwnedSocket): void {
  this[CONN].onClose()
}
// A reset or any other socket error is followed by 'close'; it must never throw here.
function ignoreError(): void {}

export abstract class RequestReader {
  protected state: State = State.Head
  /** Received bytes not parsed yet: the unfinished head, or pipelined requests. */
  protected buffered: Buffer | null = null
  /** How much of `buffered` the head parser has already said "need more" for. */
  private seen = 0
  protected request: RequestHead | null = null
  private body: BodyReader | null = null
  /** The head or body deadline. One per connection; Node keeps timers of one duration in one list. */
  private timer: NodeJS.Timeout | null = null
  /** Keep-alive wait with nothing received yet: its timeout closes silently instead of 408. */
  protected idle = false
  /** The client sent FIN: answer what is pending, then close. */
  protected peerEnded = false
  /** The stream this connection became, once it did. */
  protected stream: Stream | null = null
  /** Request bytes this connection holds (its part of host.requestBytes). */
  private held = 0
  /**
   * Publishes whose answer comes later (a cluster's bus). Pipelined publishes behind them are
   * read meanwhile (the events of one turn then travel together); any other request waits.
   */
  protected readonly pending = new PendingAnswers()

  constructor(
    readonly socket: net.Socket,
    protected readonly host: ConnectionHost,
  ) {
    ;(socket as OwnedSocket)[CONN] = this
    socket.on('data', onSocketData)
    socket.on('end', onSocketEnd)
    socket.on('error', ignoreError)
    socket.on('close', onSocketClose)
    if (host.stopping) {
      this.close()
      return
    }
    this.enter(State.Head)
    this.arm(host.headTimeoutMs)
  }

  /** A whole request (head and body) is read: answer it. */
  protected abstract dispatch(req: RequestHead, body: Buffer): void
  /** Write what `outcome` says for `req` (here: a reply that refuses a body before it is read). */
  protected abstract answer(req: RequestHead, outcome: Outcome): void

  /**
   * Connections ran short: close this one now, without a word (it has not asked anything yet, or
   * its answer is one nobody has taken: reset).
   */
  shed(): void {
    const unfinished = this.host.sending.delete(this)
    this.host.waiting.delete(this)
    this.host.closed(this)
    closeSocket(this.socket, this.host.resets, unfinished)
  }

  /** The server is stopping: a connection still waiting for (the rest of) a request closes now. */
  stop(): void {
    if ((this.state === State.Head || this.state === State.Body) && this.pending.size === 0) this.close()
  }

  onData(data: Buffer): void {
    if (this.state === State.Stream || this.state === State.Closing) return // read and ignored
    if (this.idle) {
      // The first byte of a new request starts its head deadline; later bytes never extend it.
      this.idle = false
      this.arm(this.host.headTimeoutMs)
    }
    // Copy only when a head (or body) is split across reads; the parsers cap what this can hold.
    this.buffered = this.buffered === null ? data : Buffer.concat([this.buffered, data])
    if (!this.account()) {
      return this.refuse(new HttpError(503, 'too many request bytes in flight; try again', [['Retry-After', '1']]))
    }
    this.process()
  }

  /** Bring this connection's share of host.requestBytes up to date; false when the total is over its max. */
  protected account(): boolean {
    const now = (this.buffered?.length ?? 0) + (this.body?.received ?? 0)
    const budget = this.host.requestBytes
    budget.held += now - this.held
    this.held = now
    return budget.held <= budget.max
  }

  onEnd(): void {
    this.peerEnded = true
    if (this.state === State.Stream) {
      // An EventSource never half-closes: a FIN on a stream means the client is gone.
      if (this.stream !== null) this.host.streamClosed(this.stream)
      closeSocket(this.socket, this.host.resets)
    } else if (this.state === State.Closing) {
      closeSocket(this.socket, this.host.resets)
    } else if (this.state === State.Body || (this.state === State.Head && this.buffered !== null)) {
      // The client will send no more, so this request can never complete: say so, like Node does.
      this.refuse(new HttpError(400, this.state === State.Body ? 'incomplete request body' : 'incomplete request head'))
    } else if (this.state === State.Head && this.pending.size === 0) {
      this.close()
    }
  }

  onClose(): void {
    this.disarm()
    this.host.waiting.delete(this)
    this.host.sending.delete(this)
    this.buffered = null
    this.body = null
    this.account()
    if (this.stream !== null) this.host.streamClosed(this.stream)
    this.host.closed(this)
  }

  /** Parse and answer every complete request in `buffered`, in order, until one is pending. */
  protected process(): void {
    try {
      while (this.buffered !== null && (this.state === State.Head || this.state === State.Body)) {
        if (this.state === State.Head) {
          const parsed = parseHead(this.buffered, this.seen)
          if (parsed === null) {
            this.seen = this.buffered.length
            break
          }
          this.seen = 0
          const req = parsed.head
          this.request = req
          this.buffered = parsed.length < this.buffered.length ? this.buffered.subarray(parsed.length) : null
          if (req.chunked || req.contentLength > 0) {
            const instead = this.host.beforeBody(req, this.socket)
            if (instead instanceof Promise) {
              this.authorizeLater(req, instead)
              break
            }
            if (instead !== null) {
              this.bodyRefused(req, instead)
              break
            }
            this.readBody(req)
          } else {
            this.dispatch(req, EMPTY)
          }
        } else {
          const body = this.body!
          const used = body.feed(this.buffered)
          this.buffered = used < this.buffered.length ? this.buffered.subarray(used) : null
          if (body.done) {
            this.body = null
            this.dispatch(this.request!, body.body())
          }
        }
      }
    } catch (err) {
      this.refuse(err)
      return
    }
    this.account()
    if (this.peerEnded && this.state === State.Head && this.pending.size === 0) this.close()
  }

  /** A complete head, and for a publish an authorized one: its body is read next. */
  private readBody(req: RequestHead): void {
    this.body = new BodyReader(req.chunked, req.contentLength)
    this.enter(State.Body)
    this.arm(this.host.headTimeoutMs) // the body gets as long again: trickling never extends it
    // curl and others wait for this before sending a body (RFC 9110 §10.1.1).
    if (req.expectContinue && this.buffered === null) this.socket.write(CONTINUE)
  }

  /** The body is never read: the connection cannot find the next request, so it closes after `reply`. */
  private bodyRefused(req: RequestHead, reply: Reply): void {
    this.buffered = null
    this.disarm()
    this.enter(State.Busy)
    this.answer(req, { kind: 'reply', reply: { ...reply, close: true } })
  }

  /**
   * Whether the body may be read is known later (an async `authenticate` hook): nothing more is
   * read meanwhile, so what this connection holds is what came with the head, already within the
   * request-bytes budget. No deadline of ours runs: the hook's wait is bounded where it is asked
   * (AUTHENTICATE_TIMEOUT_MS, then a 503 refuses the request).
   */
  private authorizeLater(req: RequestHead, answer: Promise<Reply | null>): void {
    this.disarm()
    this.enter(State.Busy)
    this.socket.pause()
    answer.then(
      (instead) => {
        if (this.socket.destroyed || this.state !== State.Busy) return
        this.socket.resume()
        // In a promise's callback a throw would be an unhandled rejection, and end the process.
        try {
          if (instead !== null) return this.bodyRefused(req, instead)
          this.readBody(req)
        } catch (err) {
          return this.refuse(err)
        }
        this.process()
      },
      (err: unknown) => this.refuse(err),
    )
  }

  /**
   * Answer a refused request with its status and close (no status once a stream has begun).
   * Behind answers still owed, the refusal waits for its turn (`now` once it has come), and
   * nothing more is read meanwhile: the connection closes after it.
   */
  protected refuse(err: unknown, now = false): void {
    if (this.state === State.Stream || this.state === State.Closing || this.socket.destroyed) return
    if (this.pending.size > 0 && !now) {
      this.pending.refuse(this.request, err)
      this.buffered = null
      this.body = null
      this.account()
      this.disarm()
      this.enter(State.Busy)
      this.socket.pause()
      return
    }
    const httpErr = err instanceof HttpError ? err : new HttpError(500, 'internal error')
    if (!(err instanceof HttpError)) process.emitWarning(`rawsse: ${err instanceof Error ? err.stack : String(err)}`)
    this.socket.resume()
    // Only a browser's cross-origin request (it says its Origin) needs the CORS headers to read the
    // status; every other client gets the error's bytes as they always were.
    this.socket.write(errorResponse(httpErr, this.request?.headers.origin === undefined ? undefined : this.host))
    this.host.errorReply(httpErr.status, httpErr.message, this.request, this.socket.remoteAddress)
    this.close()
  }

  /**
   * Send FIN and keep reading (discarding) until the client closes, at most LINGER_MS. Closing at
   * once could reset the connection while the client is still sending, and a reset can destroy
   * the error response before the client reads it (Go's closeWriteAndWait does the same).
   */
  protected close(): void {
    if (this.state === State.Closing) return
    this.enter(State.Closing)
    this.buffered = null
    this.body = null
    this.seen = 0
    this.account()
    this.socket.resume()
    this.socket.end()
    // Our last answer may still be on its way: it counts in the byte budget until the close.
    if (this.socket.writableLength > 0) this.host.sending.add(this)
    this.arm(LINGER_MS)
  }

  /**
   * Change state. A connection waits for a request head in state Head only, so that is where it
   * is in host.waiting (and at its back: the last to be closed for room).
   */
  protected enter(state: State): void {
    this.state = state
    // One with answers still to send is not idle: never closed to make room.
    if (state === State.Head && this.pending.size === 0) this.host.waiting.add(this)
    else this.host.waiting.delete(this)
  }

  /**
   * Set the connection's one deadline; on expiry: 408 while a request is coming in, else close
   * (lingering after our last bytes, idle keep-alive, or an answer the client did not take: that
   * one with a reset, since a FIN would wait behind the bytes it never takes).
   */
  protected arm(ms: number): void {
    this.disarm()
    this.timer = setTimeout(() => {
      this.timer = null
      // Busy: an answer its client took nothing of for sendTimeoutMs, unfinished whatever Node still holds.
      if (this.state === State.Closing || this.state === State.Busy || (this.idle && this.state === State.Head)) closeSocket(this.socket, this.host.resets, this.state === State.Busy)
      else if (this.state === State.Head || this.state === State.Body) this.refuse(new HttpError(408, 'request head or body not received in time'))
    }, ms)
    this.timer.unref()
  }

  protected disarm(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer)
      this.timer = null
    }
  }
}
