// Where the bus's events meet this process's streams: encode once, keep for replay, and queue for
// this turn's fan-out, so that events published in one turn reach each stream in one write; an
// event for one client (or with a filter) is written at once instead. No sockets of its own.

import type { BusEvent } from '../bus/bus.js'
import type { History } from './history.js'
import type { Metrics } from '../metrics.js'
import { encodeEvent, type Frame, type SseMessage } from './sse-encode.js'
import type { Streams } from './streams.js'
import type { Target } from './target.js'
import { EVENT_RESET, RESET_HISTORY_GAP, type ResetData } from '../../wire.js'

/** The event that says "events are missing before this one": a Last-Event-ID the history cannot place, or a cluster's lost events. */
export const RESET_FRAME = encodeEvent({ event: EVENT_RESET, data: JSON.stringify({ reason: RESET_HISTORY_GAP } satisfies ResetData) })

export class Delivery {
  constructor(
    private readonly streams: Streams,
    private readonly history: History,
    private readonly metrics: Metrics,
  ) {}

  /** The bus hands every event here, in order; returns the streams it reached (or will, this turn). */
  deliver(e: BusEvent): number {
    // Its channel goes with the frame: a tagged stream is told it (Frame.bytesFor), wherever it gets the event.
    const frame = encodeEvent(e.message, undefined, e.target.channel)
    this.metrics.published++
    if (e.keep && e.message.id !== undefined) this.history.add({ id: e.message.id, frame, target: e.target })
    else if (e.message.id !== undefined) this.history.mark(e.message.id) // to one client: where it fell, not what
    let reached: number
    if (e.target.client !== undefined || e.target.filter !== undefined) {
      // One stream, found by id: write at once (after anything queued before it, to keep order)
      // rather than make every stream of the next batch test a target meant for one. A filter
      // (user code) too: counted and written in one pass, it runs once per stream, not twice.
      this.streams.flush()
      reached = this.streams.fanOut(frame, e.target)
    } else {
      reached = this.enqueue(frame, e.target)
    }
    this.metrics.deliveries += reached
    return reached
  }

  /**
   * The bus lost events this process never got: whatever history holds no longer follows on
   * from what a client saw, so it is forgotten (a Last-Event-ID from before says `reset`), and
   * every open stream is told now.
   */
  gap(): void {
    this.history.clear()
    this.enqueue(RESET_FRAME, {})
  }

  /**
   * The `time` tick of one process: no id, not kept, and not through the bus (a cluster's
   * primary ticks for all its workers through theirs instead).
   */
  tick(msg: SseMessage): void {
    const reached = this.enqueue(encodeEvent(msg), {})
    this.metrics.published++
    this.metrics.deliveries += reached
  }

  private enqueue(frame: Frame, target: Target): number {
    if (!this.streams.hasQueued) setImmediate(this.flushQueued)
    return this.streams.queue(frame, target)
  }

  private readonly flushQueued = (): void => this.streams.flush()
}
