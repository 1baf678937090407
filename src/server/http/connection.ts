// One TCP connection's life, from accept to close (RFC 9112 §9: persistence, pipelining, tear-
// down): what it does once a request is read (request-reader.ts reads it): ask the server what
// to answer, write it in request order, send a file, then wait for the next request, become an
// event stream, or close. The server is reached only through the small ConnectionHost interface
// (connection-host.ts); this file knows no routes, streams or history.

import { KEEP_ALIVE_IDLE_MS } from '../limits.js'
import type { RequestHead } from './head.js'
import { RequestReader, State } from './request-reader.js'
import { formatHead, formatResponse, type FrameOptions, type Reply } from './response.js'
import type { OpenStream, Outcome } from '../routes.js'
import type { Stream } from '../fanout/stream.js'
import { sendFile } from './static.js'

/** One accepted socket: the server makes one per connection and sees it only as a HostedConnection. */
export class Connection extends RequestReader {
  protected dispatch(req: RequestHead, body: Buffer): void {
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
      const { corsOrigin, corsCredentials } = this.host
      this.writeReply(req, reply, { head: false, keepAlive, http10: req.version === '1.0', corsOrigin, corsCredentials })
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

  protected answer(req: RequestHead, outcome: Outcome): void {
    if (outcome.kind === 'stream') return this.openStream(req, outcome)
    const opts: FrameOptions = {
      head: req.method === 'HEAD',
      keepAlive: req.keepAlive && !this.peerEnded && !this.host.stopping,
      http10: req.version === '1.0',
      corsOrigin: this.host.corsOrigin,
      corsCredentials: this.host.corsCredentials,
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

}
