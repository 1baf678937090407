// The listening socket: plain TCP or TLS (RFC 8446) under the same hand-written HTTP/1.1, bound
// and then kept alive through accept errors. SseServer owns when; this file owns how.

import * as net from 'node:net'
import * as tls from 'node:tls'
import type { TlsFiles } from '../options.js'

/**
 * Bind and listen; resolves once listening (rejects: the port is taken, the address is not ours).
 * `tlsFiles` null: plain TCP. A TLS handshake gets `handshakeMs`, the head deadline: a client that
 * never finishes one holds nothing long.
 */
export async function listenOn(
  where: { port: number; host: string; backlog: number },
  tlsFiles: TlsFiles | null,
  handshakeMs: number,
  accept: (socket: net.Socket) => void,
): Promise<net.Server | tls.Server> {
  // allowHalfOpen: a client's FIN must not close our side before we have answered it.
  // highWaterMark 1: write() says false whenever a byte is left unsent, and 'drain' comes when
  // the socket has sent everything, which is what a Stream's own output queue waits for.
  const options = { allowHalfOpen: true, noDelay: true, highWaterMark: 1 }
  // HTTPS: a TLSSocket is a net.Socket, so everything after the handshake is the same code.
  const server =
    tlsFiles === null
      ? net.createServer(options, accept)
      : tls.createServer({ ...options, ...tlsFiles, handshakeTimeout: handshakeMs, ALPNProtocols: ['http/1.1'] }, accept)
  if (server instanceof tls.Server) server.on('tlsClientError', () => {}) // a failed handshake is the client's business
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(where, () => {
      server.off('error', reject)
      resolve()
    })
  })
  // After listening, an error such as EMFILE on accept must not end the process: the
  // connections already open keep being served.
  server.on('error', (err) => process.emitWarning(`rawsse: ${err.message}`))
  return server
}
