// The server command's log (`--log text|json|off`, `--log-publish`): one line on standard error
// per stream opened and closed, per error answer, per start, stop and reload, and per publish
// when asked. Built on the library's events only. A token never appears: stream paths are
// redacted by the server (`/events/***`), and no line carries a header or a setting's value.

import type { ClientView, DropReason, ErrorReply, HookFailure, PublishedEvent, SseServer } from '../index.js'
import { AsyncLines, type LineSink } from './log-sink.js'

export type LogFormat = 'text' | 'json' | 'off'
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json', 'off']

type Fields = Record<string, string | number | boolean | null | undefined | readonly string[]>

/** Writes one line per call; nothing with format `off`. */
export type Log = (event: string, fields?: Fields) => void

/** Standard error: as it is on a terminal (a person reads as it goes), else without blocking (log-sink.ts). */
function standardError(): LineSink {
  return process.stderr.isTTY ? process.stderr : new AsyncLines(2)
}

export function makeLog(format: LogFormat, out: LineSink = standardError()): Log {
  if (format === 'off') return () => {}
  return (event, fields = {}) => {
    const time = new Date().toISOString()
    if (format === 'json') {
      out.write(JSON.stringify({ time, event, ...fields }) + '\n')
      return
    }
    let line = `${time} ${event}`
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue
      line += ` ${k}=${textValue(v)}`
    }
    out.write(line + '\n')
  }
}

/** A value as one word of a text line: quoted (JSON string rules) when it has a space, a quote or a control. */
function textValue(v: NonNullable<Fields[string]> | null): string {
  const s = Array.isArray(v) ? v.join(',') : String(v)
  return s === '' || /[\s"\\\x00-\x1f\x7f]/.test(s) ? JSON.stringify(s) : s
}

/** Log the server's streams, error answers and (with `publishes`) publishes. Returns a detach function. */
export function logServer(server: SseServer, log: Log, publishes: boolean): () => void {
  const onConnect = (c: ClientView): void => {
    log('stream-open', { client: c.id, user: c.user, channels: c.channels, remote: c.remoteAddress })
  }
  const onDisconnect = (c: ClientView, reason: DropReason | 'closed'): void => {
    log('stream-close', {
      client: c.id,
      user: c.user,
      channels: c.channels,
      remote: c.remoteAddress,
      seconds: Math.round((Date.now() - c.openedAt) / 100) / 10,
      events: c.eventsSent,
      bytes: c.bytesSent,
      reason,
    })
  }
  const onErrorReply = (r: ErrorReply): void => {
    // `why`: what only the log may know, e.g. why a JWT was refused (never the token).
    log('error-reply', { status: r.status, reason: reasonOf(r.detail), why: r.refusal, method: r.method, path: r.path, remote: r.remoteAddress })
  }
  const onPublish = (p: PublishedEvent): void => {
    const { filter: _filter, ...target } = p.target
    log('publish', { id: p.id, event: p.event, ...target, delivered: p.delivered, bytes: p.bytes })
  }
  const onHookFailure = hookFailureLog(log)
  server.on('connect', onConnect)
  server.on('disconnect', onDisconnect)
  server.on('error-reply', onErrorReply)
  server.on('hook-failure', onHookFailure)
  if (publishes) server.on('publish', onPublish)
  return () => {
    server.off('connect', onConnect)
    server.off('disconnect', onDisconnect)
    server.off('error-reply', onErrorReply)
    server.off('hook-failure', onHookFailure)
    server.off('publish', onPublish)
  }
}

/**
 * The application in the loop failing: `auth-url-failed` (the request got a 503), `webhook-failed`
 * (given up), `webhook-unsent` (still owed at stop: enough to send it by hand), `presence-failed`.
 */
export function hookFailureLog(log: Log): (f: HookFailure) => void {
  return (f) => {
    if (f.hook !== 'webhook') return log(`${f.hook}-failed`, { reason: f.reason })
    const c = f.change
    log(`webhook-${f.outcome}`, { id: c.id, type: c.type, user: c.user ?? undefined, channel: c.channel ?? undefined, at: c.at, reason: f.reason })
  }
}

/** The `error` of a JSON answer, or the text answer itself. */
function reasonOf(detail: string): string {
  if (detail.startsWith('{')) {
    try {
      const e = (JSON.parse(detail) as { error?: unknown }).error
      if (typeof e === 'string') return e
    } catch {
      // not JSON after all
    }
  }
  return detail
}
