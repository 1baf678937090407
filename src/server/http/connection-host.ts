// What a connection (connection.ts) needs from its server, and the budget of request bytes all
// connections share: the one interface between the HTTP side and the rest of the server.

import type * as net from 'node:net'
import type { ResetCount } from './close.js'
import type { Connection } from './connection.js'
import type { RequestHead } from './head.js'
import type { Reply } from './response.js'
import type { OpenStream, Outcome } from '../routes.js'
import type { Stream } from '../fanout/stream.js'
import type { TurnGate } from './turn-gate.js'

/** Request bytes held in memory by every connection together, and the most they may be. */
export class ByteBudget {
  held = 0
  constructor(readonly max: number) {}
}

/** What a connection needs from its server. */
export interface ConnectionHost {
  /** Head deadline, and then body deadline (408). */
  readonly headTimeoutMs: number
  /** An answer the client takes nothing of for this long: closed. */
  readonly sendTimeoutMs: number
  /** Unsent bytes of answers before a pipelining client is no longer read from. */
  readonly maxBufferBytes: number
  readonly corsOrigin: string
  /** stop() has begun: answer what is pending, then close; open no stream. */
  readonly stopping: boolean
  /** Unparsed request bytes and bodies being read, of all connections: over the max, 503. */
  readonly requestBytes: ByteBudget
  /**
   * Asked when a head announces a body, before any of it is read: a reply to send instead (and
   * close), e.g. 401 for a publish without a valid bearer, whose body we then never buffer.
   */
  beforeBody(req: RequestHead, socket: net.Socket): Reply | null
  /** What to answer (routes.ts with the server's state). */
  route(req: RequestHead, body: Buffer, socket: net.Socket): Outcome | Promise<Outcome>
  /**
   * Write the stream's head (and, for GET, its first chunk and replay) and register it; null for
   * HEAD, which gets the head only. Throws HttpError when no stream may open (e.g. 503 while stopping).
   */
  openStream(socket: net.Socket, req: RequestHead, o: OpenStream): Stream | null
  /** Stream opens, at most STREAM_OPENS_PER_TURN in one event-loop turn. */
  readonly opens: TurnGate
  /** The client went away from an open stream. */
  streamClosed(stream: Stream): void
  /** The socket is closed: forget the connection. */
  closed(conn: Connection): void
  /**
   * Connections waiting for a request head (fresh, idle keep-alive, or a head still arriving),
   * oldest first: when connections run short, the server closes these first, from the front.
   */
  readonly waiting: Set<Connection>
  /** Files being sent: each holds a descriptor too, so it counts against the connection budget. */
  filesOpen: number
  /**
   * Connections with an answer (a reply or a file) the socket has not sent, oldest first: their
   * unsent bytes count in the server's byte budget, and past it these are reset first.
   */
  readonly sending: Set<Connection>
  /** Where connections closed with a reset are counted. */
  readonly resets: ResetCount
  /** An answer with status 400 or more went out (for logs): the request, when its head was read. */
  errorReply(status: number, detail: string, req: RequestHead | null, remoteAddress: string | undefined): void
}

