// One TCP connection's life, from accept to close (RFC 9112 §9: persistence, pipelining, tear-
// down): read a request head and body, ask the server what to answer, write it, then wait for
// the next request, become an event stream, or close. The server is reached only through the
// small ConnectionHost interface (connection-host.ts); this file knows no routes, streams or history.

import type * as net from 'node:net'
import { closeSocket } from './close.js'
import type { ConnectionHost } from './connection-host.js'
import { errorResponse, HttpError } from './errors.js'
import { BodyReader } from './body.js'
import { parseHead, type RequestHead } from './head.js'
import { KEEP_ALIVE_IDLE_MS, LINGER_MS } from '../limits.js'
import { PendingAnswers } from './pending-answers.js'
import { formatHead, formatResponse, type FrameOptions, type Reply } from './response.js'
import type { OpenStream, Outcome } from '../routes.js'
import type { Stream } from '../fanout/stream.js'
import { sendFile } from './static.js'

const EMPTY = Buffer.alloc(0)
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n')

const enum State {
  Head, // waiting for (the rest of) a request head
  Body, // reading a request body
  Busy, // a request is being answered; later pipelined bytes wait
  Stream, // an open event stream; bytes from the client are read and ignored
  Closing, // we have sent our last bytes; waiting for the client to close
}

const CONN = Symbol('rawsse.connection')
type OwnedSocket = net.Socket & { [CONN]: Connection }

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

export class Connection {
  private state = State.Head
  /** Received bytes not parsed yet: the unfinished head, or pipelined requests. */
  private buffered: Buffer | null = null
  /** How much of `buffered` the head parser has already said "need more" for. */
  private seen = 0
  private request: RequestHead | null = null
  private body: BodyReader | null = null
  /** The head or body deadline. One per connection; Node keeps timers of one duration in one list. */
  private timer: NodeJS.Timeout | null = null
  /** Keep-alive wait with nothing received yet: its timeout closes silently instead of 408. */
  private idle = false
  /** The client sent FIN: answer what is pending, then close. */
  private peerEnded = false
  /** The stream this connection became, once it did. */
  private stream: Stream | null = null
  /** Request bytes this connection holds (its part of host.requestBytes). */
  private held = 0
  /**
   * Publishes whose answer comes later (a cluster's bus). Pipelined publishes behind them are
   * read meanwhile (the events of one turn then travel together); any other request waits.
   */
  private readonly pending = new PendingAnswers()

  constructor(
    readonly socket: net.Socket,
    private readonly host: ConnectionHost,
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
  private account(): boolean {
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
  private process(): void {
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
            if (instead !== null) {
              // The body is never read: the connection cannot find the next request, so it closes.
              this.buffered = null
              this.disarm()
              this.enter(State.Busy)
              this.answer(req, { kind: 'reply', reply: { ...instead, close: true } })
              break
            }
            this.body = new BodyReader(req.chunked, req.contentLength)
            this.enter(State.Body) // a complete head, and for a publish an authorized one
            this.arm(this.host.headTimeoutMs) // the body gets as long again: trickling never extends it
            // curl and others wait for this before sending a body (RFC 9110 §10.1.1).
            if (req.expectContinue && this.buffered === null) this.socket.write(CONTINUE)
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

  private dispatch(req: RequestHead, body: Buffer): void {
    this.disarm()
    const publish = req.method === 'POST' && req.path === '/publish'
    if (this.pending.size > 0) {
      if (!publish) {
        // Its answer must come after theirs.
        this.pending.waiting = { req, body }
        this.enter(State.Busy)
        this.socket.pause()
        return
      }
      return this.queue(req, this.host.route(req, body, this.socket))
    }
    this.enter(State.Busy)
    const outcome = this.host.route(req, body, this.socket)
    if (!(outcome instanceof Promise)) return this.answer(req, outcome)
    if (publish) return this.queue(req, outcome)
    // Answers go out in request order, so later pipelined requests wait, unread, meanwhile.
    this.socket.pause()
    outcome.then(
      (o) => {
        if (this.socket.destroyed) return
        // In a promise's callback a throw would be an unhandled rejection, and end the process.
        try {
          this.answer(req, o)
        } catch (err) {
          return this.refuse(err)
        }
        this.process()
      },
      (err: unknown) => this.refuse(err),
    )
  }

  /** A publish answered later: keep its place in line, and read the next request meanwhile (up to MAX_PUBLISHES_IN_FLIGHT). */
  private queue(req: RequestHead, outcome: Outcome | Promise<Outcome>): void {
    this.pending.add(req, outcome, () => this.settled())
    if (this.pending.size === 0 || this.state === State.Closing) return
    // No deadline runs while an answer is owed: it is the bus's to give, within its own bound
    // (cutting the connection would lose it, and a publisher that retries would publish twice).
    if (this.pending.full) {
      this.enter(State.Busy)
      this.socket.pause()
      this.disarm()
      return
    }
    this.request = null
    this.enter(State.Head)
    this.idle = this.buffered === null
    // The idle deadline waits until no answer is owed (answerPending arms it).
    if (this.idle) this.disarm()
    else this.arm(this.host.headTimeoutMs)
  }

  /** An owed answer has come. Called in a promise's callback: a throw must become the refusal, never an unhandled rejection. */
  private settled(): void {
    try {
      this.answerPending()
    } catch (err) {
      this.refuse(err, true)
    }
  }

  /** Write the answers that have come, in request order; once none is awaited, go on as after any reply. */
  private answerPending(): void {
    for (let next = this.pending.next(); next !== null; next = this.pending.next()) {
      if (this.socket.destroyed || this.state === State.Closing) return
      if ('error' in next) {
        this.request = next.req
        return this.refuse(next.error, true)
      }
      const { req, outcome } = next
      const reply = outcome.kind === 'reply' ? outcome.reply : { status: 500, body: 'internal error\n' }
      const keepAlive = req.keepAlive && !this.peerEnded && !this.host.stopping && reply.close !== true
      this.writeReply(req, reply, { head: false, keepAlive, http10: req.version === '1.0', corsOrigin: this.host.corsOrigin })
      if (!keepAlive) return this.close()
    }
    if (this.pending.size > 0 || this.state === State.Stream) return
    // Every answer is out. A request that waited for them goes now; else, as after any reply.
    if (this.pending.waiting !== null) {
      const { req, body } = this.pending.waiting
      this.pending.waiting = null
      this.request = req
      this.socket.resume() // paused while it waited; dispatch() pauses again if it must
      try {
        this.dispatch(req, body)
      } catch (err) {
        return this.refuse(err) // e.g. 401 for an unknown token, refused by its route
      }
      if (this.state === State.Head || this.state === State.Body) this.process()
      return
    }
    if (this.state === State.Busy) {
      this.replied(true)
      this.process()
    } else if (this.peerEnded && this.state === State.Head && this.buffered === null) {
      this.close()
    } else if (this.state === State.Head) {
      this.enter(State.Head) // idle again: among the connections closed first for room
      if (this.idle) this.arm(KEEP_ALIVE_IDLE_MS)
    }
  }

  private answer(req: RequestHead, outcome: Outcome): void {
    if (outcome.kind === 'stream') return this.openStream(req, outcome)
    const opts: FrameOptions = {
      head: req.method === 'HEAD',
      keepAlive: req.keepAlive && !this.peerEnded && !this.host.stopping,
      http10: req.version === '1.0',
      corsOrigin: this.host.corsOrigin,
    }
    if (outcome.kind === 'file' && !opts.head) {
      this.socket.write(formatHead(outcome.reply, outcome.size, opts), 'latin1')
      this.host.sending.add(this)
      return sendFile(this.socket, outcome.file, outcome.size, this.host, {
        waiting: () => this.arm(this.host.sendTimeoutMs),
        reading: () => this.disarm(),
        done: () => {
          this.host.sending.delete(this)
          this.replied(opts.keepAlive)
          this.process() // a request pipelined behind the file
        },
      })
    }
    this.writeReply(req, outcome.reply, opts)
    this.replied(opts.keepAlive && outcome.reply.close !== true)
  }

  /** A plain reply's bytes (and, for an error, the `error-reply` the log hears). */
  private writeReply(req: RequestHead, reply: Reply, opts: FrameOptions): void {
    if (reply.status >= 400) this.host.errorReply(reply.status, typeof reply.body === 'string' ? reply.body.trim() : '', req, this.socket.remoteAddress)
    this.socket.write(formatResponse(reply, opts))
  }

  /** A plain reply is written: wait for the next request, or close. */
  private replied(keepAlive: boolean): void {
    if (!keepAlive) return this.close()
    this.request = null
    // No next request is read while this answer is unsent: a client that pipelines requests but
    // reads no answers is not read from either, and one that takes nothing for sendTimeoutMs
    // is closed, so an answer can never hold memory and a descriptor for ever.
    // writableNeedDrain: write() said "enough", so 'drain' will come (a TLS socket says it only
    // past 16 KiB; below that, what it still holds goes out without us waiting).
    if (this.socket.writableNeedDrain) {
      this.socket.pause()
      this.arm(this.host.sendTimeoutMs)
      this.host.sending.add(this)
      this.socket.once('drain', () => {
        this.host.sending.delete(this)
        this.replied(true)
        this.process()
      })
      return
    }
    this.enter(State.Head)
    this.socket.resume() // paused while an answer was pending
    this.idle = this.buffered === null
    this.arm(this.idle ? KEEP_ALIVE_IDLE_MS : this.host.headTimeoutMs)
    if (this.peerEnded && this.buffered === null) this.close()
  }

  /**
   * Open the stream in this turn if the turn has room for one more, else in a later one, in the
   * order they came (host.opens); nothing is read from the socket meanwhile.
   */
  private openStream(req: RequestHead, o: OpenStream): void {
    this.socket.pause()
    this.host.opens.run(() => {
      if (!this.socket.destroyed && this.state === State.Busy) this.openNow(req, o)
    })
  }

  private openNow(req: RequestHead, o: OpenStream): void {
    let stream: Stream | null
    try {
      stream = this.host.openStream(this.socket, req, o)
    } catch (err) {
      return this.refuse(err)
    }
    // HEAD: the head alone, and the connection goes on as after any reply (HTTP/1.0 closes).
    if (stream === null) {
      this.socket.resume()
      return this.replied(req.keepAlive && req.version === '1.1')
    }
    this.enter(State.Stream)
    this.stream = stream
    this.request = null // the stream keeps what it needs; the parsed head can go
    this.buffered = null // anything pipelined after a stream request can never be answered
    this.socket.resume() // paused while the stream waited (its turn, a cluster catching up): its client's FIN must be seen
  }

  /**
   * Answer a refused request with its status and close (no status once a stream has begun).
   * Behind answers still owed, the refusal waits for its turn (`now` once it has come), and
   * nothing more is read meanwhile: the connection closes after it.
   */
  private refuse(err: unknown, now = false): void {
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
    this.socket.write(errorResponse(httpErr))
    this.host.errorReply(httpErr.status, httpErr.message, this.request, this.socket.remoteAddress)
    this.close()
  }

  /**
   * Send FIN and keep reading (discarding) until the client closes, at most LINGER_MS. Closing at
   * once could reset the connection while the client is still sending, and a reset can destroy
   * the error response before the client reads it (Go's closeWriteAndWait does the same).
   */
  private close(): void {
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
  private enter(state: State): void {
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
  private arm(ms: number): void {
    this.disarm()
    this.timer = setTimeout(() => {
      this.timer = null
      // Busy: an answer its client took nothing of for sendTimeoutMs, unfinished whatever Node still holds.
      if (this.state === State.Closing || this.state === State.Busy || (this.idle && this.state === State.Head)) closeSocket(this.socket, this.host.resets, this.state === State.Busy)
      else if (this.state === State.Head || this.state === State.Body) this.refuse(new HttpError(408, 'request head or body not received in time'))
    }, ms)
    this.timer.unref()
  }

  private disarm(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer)
      this.timer = null
    }
  }
}
