// What a connection (connection.ts, request-reader.ts) needs from its server, what the server
// sees of a connection, and the budget of request bytes all connections share: the one
// interface between the HTTP side and the rest of the server.

import type * as net from 'node:net'
import { closeSocket, type ResetCount } from './close.js'
import { errorResponse, HttpError } from './errors.js'
import { LINGER_MS } from '../limits.js'
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

/** What the server itself does with a connection (connection.ts): make room with it, stop it, reset its unsent answer. */
export interface HostedConnection {
  readonly socket: net.Socket
  /** Close now, without a word: connections ran short. */
  shed(): void
  /** The server is stopping: close once what is owed is answered. */
  stop(): void
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
  /** `Access-Control-Allow-Credentials: true` on answers too (an auth cookie, with a specific origin). */
  readonly corsCredentials: boolean
  /** stop() has begun: answer what is pending, then close; open no stream. */
  readonly stopping: boolean
  /** Unparsed request bytes and bodies being read, of all connections: over the max, 503. */
  readonly requestBytes: ByteBudget
  /**
   * Asked when a head announces a body, before any of it is read: a reply to send instead (and
   * close), e.g. 401 for a publish without a valid bearer, whose body we then never buffer. A
   * promise when that takes a hook's later answer (routes.ts beforeBody): nothing more is read
   * until it settles, and its wait is bounded where it is asked.
   */
  beforeBody(req: RequestHead, socket: net.Socket): Reply | null | Promise<Reply | null>
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
  closed(conn: HostedConnection): void
  /**
   * Connections waiting for a request head (fresh, idle keep-alive, or a head still arriving),
   * oldest first: when connections run short, the server closes these first, from the front.
   */
  readonly waiting: Set<HostedConnection>
  /** Files being sent: each holds a descriptor too, so it counts against the connection budget. */
  filesOpen: number
  /**
   * Connections with an answer (a reply or a file) the socket has not sent, oldest first: their
   * unsent bytes count in the server's byte budget, and past it these are reset first.
   */
  readonly sending: Set<HostedConnection>
  /** Where connections closed with a reset are counted. */
  readonly resets: ResetCount
  /** An answer with status 400 or more went out (for logs): the request, when its head was read. */
  errorReply(status: number, detail: string, req: RequestHead | null, remoteAddress: string | undefined): void
}


/** Where admission is counted (Metrics: `/stats` connections.shed and .refused). */
export interface AdmissionCount extends ResetCount {
  shed: number
  refused: number
}

/**
 * A new connection finds every one the budget allows open: the oldest connection still waiting
 * for a request head (fresh, idle keep-alive, or slow-loris) makes room, so that a client with a
 * request and a valid token always gets in while floods of idle or unfinished ones go on; else
 * the oldest answer still unsent (a download nobody reads: its reader asked once and holds two
 * descriptors, a subscriber with a token must still get in). False when everything open is doing
 * something (streams, bodies being read, answers on their way): then `socket` has been told 503
 * and closes.
 */
export function makeRoom(host: ConnectionHost, socket: net.Socket, counts: AdmissionCount): boolean {
  let oldest = host.waiting.values().next()
  if (oldest.done === true) oldest = host.sending.values().next()
  if (oldest.done === true) {
    counts.refused++
    socket.on('error', () => {})
    socket.end(BUSY)
    setTimeout(() => closeSocket(socket, counts), LINGER_MS).unref()
    return false
  }
  counts.shed++
  oldest.value.shed()
  return true
}

/** The answer to a connection that finds every other one busy. */
const BUSY = errorResponse(new HttpError(503, 'no connection free; try again', [['Retry-After', '1']]))
