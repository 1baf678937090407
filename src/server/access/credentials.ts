// Where a request's token comes from (CONTRACT "Tokens an application signs"): the stream's path
// (`/events/TOKEN`), then `Authorization: Bearer TOKEN`, then the `--auth-cookie` cookie; the
// first one present is the request's token, whether or not it is a good one. And how the routes
// ask who a request is: its token through the server's Access, or, with none, `--auth-url`.

import { bearerToken, type Access, type AuthRequest } from './auth.js'
import { cookieValue } from '../http/cookie.js'
import { HttpError } from '../http/errors.js'
import type { RequestHead } from '../http/head.js'
import type { Peer, RouteContext } from '../routes.js'

/** What the server was told about credentials. */
export interface CredentialSettings {
  /** The cookie that may carry a token; null: none. */
  readonly authCookie: string | null
  /** `--cors-origin`: a cookie may speak for a POST from this origin (when it is not `*`). */
  readonly corsOrigin: string
}

const EVENTS_PREFIX = '/events/'

/**
 * The token of a stream request: `/events/TOKEN` (percent-decoded; 400 when that fails), else the
 * header's or the cookie's. Null when there is none, or the path holds more than one segment.
 */
export function streamToken(req: RequestHead, s: CredentialSettings): string | null {
  const raw = req.path.length > EVENTS_PREFIX.length ? req.path.slice(EVENTS_PREFIX.length) : ''
  if (raw === '') return requestToken(req, s)
  if (raw.includes('/')) return null
  try {
    return decodeURIComponent(raw)
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in path')
  }
}

/** The token of any other request: the bearer's, else the cookie's (when it may speak for this request). */
export function requestToken(req: RequestHead, s: CredentialSettings): string | null {
  const bearer = bearerToken(req.headers.authorization)
  if (bearer !== null || s.authCookie === null) return bearer
  return cookieMaySpeak(req, s.corsOrigin) ? cookieValue(req.headers.cookie, s.authCookie) : null
}

/** How the routes learn who a request is (RouteContext's authenticate, withoutToken and credentials), from one server's Access. */
export function requestIdentity(access: Access, s: CredentialSettings): Pick<RouteContext, 'authenticate' | 'withoutToken' | 'credentials'> {
  return {
    authenticate: (token, req, peer, forStream) => access.authenticate(token, () => authRequestOf(req, peer), forStream, req),
    withoutToken: (req, peer) => (asksApp(req, s) ? access.askApp(null, () => authRequestOf(req, peer)) : null),
    credentials: s,
  }
}

/** What the `authenticate` hook and --auth-url see of a request. */
function authRequestOf(req: RequestHead, peer: Peer): AuthRequest {
  return { method: req.method, path: req.path, headers: req.headers, remoteAddress: peer.remoteAddress, query: req.query }
}

/**
 * Whether a request with no token is one to ask `--auth-url` about: it carries a Cookie, or an
 * Authorization that is not Bearer, that may speak for it (a browser sends remembered Basic
 * credentials with another site's form too).
 */
function asksApp(req: RequestHead, s: CredentialSettings): boolean {
  return (req.headers.cookie !== undefined || req.headers.authorization !== undefined) && cookieMaySpeak(req, s.corsOrigin)
}

/**
 * A browser sends cookies with a form another site posts to us (a "simple" cross-site request
 * needs no preflight), so a cookie alone must not publish or ask for tickets for that site. A
 * request that changes something may use the cookie only when it carries no `Origin` (not a
 * browser's cross-site request), or its `Origin` is this server's own or the `--cors-origin`.
 * GET and HEAD change nothing (and what they answer a page of another origin cannot read unless
 * CORS allows it).
 */
function cookieMaySpeak(req: RequestHead, corsOrigin: string): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return true
  const origin = req.headers.origin
  if (origin === undefined) return true
  if (corsOrigin !== '*' && origin === corsOrigin) return true
  const host = req.headers.host
  return host !== undefined && (origin === `http://${host}` || origin === `https://${host}`)
}
