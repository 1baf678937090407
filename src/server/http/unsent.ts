// The one budget of bytes written and not yet sent (maxUnsentBytes): answers (files, replies) and
// streams together, as Redis's client-output-buffer-limit counts every client's queue. Past it,
// the oldest answers go first, reset: an answer is one request's, a stream is a subscriber's
// standing connection. The streams' own check (streams.ts dropStalled) then goes on as before.

import type { Socket } from 'node:net'
import { closeSocket, type ResetCount } from './close.js'

/**
 * Reset the oldest of `answers` (connections whose answer is unsent, oldest first) while the
 * unsent bytes of all of them and of the streams together are over `max`, until they are back
 * under three quarters of it (as for streams: one sweep makes room for a while, not for a byte).
 */
export function dropOldestAnswers(answers: Iterable<{ readonly socket: Socket }>, streamsUnsent: number, max: number, resets: ResetCount): void {
  let total = streamsUnsent
  for (const a of answers) total += a.socket.writableLength
  if (total <= max) return
  const goal = (max * 3) / 4
  for (const a of answers) {
    if (total <= goal) break
    const n = a.socket.writableLength
    if (n === 0) continue
    total -= n
    closeSocket(a.socket, resets, true)
  }
}
