// Where a client connection starts: a URL we can dial, and a TCP (http:) or TLS (https:)
// socket to its host and port, speaking HTTP/1.1 only. Used by SseClient, `rawsse publish`
// and every connection of `rawsse bench`.

import * as net from 'node:net'
import * as tls from 'node:tls'

/** For https: a private CA (`ca`), a client certificate, or `rejectUnauthorized: false` for testing. */
export type TlsOptions = Pick<tls.ConnectionOptions, 'ca' | 'cert' | 'key' | 'rejectUnauthorized' | 'servername' | 'checkServerIdentity'>

export interface DialOptions {
  tls?: TlsOptions
  /** The source address to bind (the load tool spreads streams over 127.0.0.x). */
  localAddress?: string
  /**
   * Plain TCP only: read into this caller's buffer instead of a new Buffer per read (node:net
   * `onread`). Ignored for https, whose reads come as 'data' events.
   */
  onread?: net.OnReadOpts
}

/** A URL we can dial, or a TypeError. */
export function httpUrl(url: string | URL): URL {
  const u = new URL(url)
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`unsupported protocol ${u.protocol} (http: or https: only)`)
  return u
}

/** Open a TCP or TLS connection to the URL's host and port. Writes may start at once. */
export function dial(url: URL, options: DialOptions = {}): net.Socket {
  // URL keeps the brackets of an IPv6 literal in hostname; connect() wants the bare address.
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  const https = url.protocol === 'https:'
  const port = url.port === '' ? (https ? 443 : 80) : Number(url.port)
  const local = options.localAddress === undefined ? {} : { localAddress: options.localAddress }
  if (!https) return net.connect({ host, port, ...local, ...(options.onread === undefined ? {} : { onread: options.onread }) })
  return tls.connect({
    host,
    port,
    ...local,
    // SNI takes a name, never an address (RFC 6066 §3).
    ...(net.isIP(host) === 0 ? { servername: host } : {}),
    // Only HTTP/1.1 is spoken here; say so, so that a server does not pick h2.
    ALPNProtocols: ['http/1.1'],
    ...options.tls,
  })
}
