// The primary of a `--workers` cluster: the one sequencer. Workers hold the streams; every event
// published on any of them comes here, gets the cluster's next id (or is refused: an id history
// still holds, a user or client connected nowhere), and goes back to every worker in one `batch`
// message per event-loop turn, so every worker delivers the same events in the same order and
// keeps the same history. The primary keeps that history too (a worker that starts, or replaces
// a dead one, gets it before it listens), and a mirror of who is connected where (presence.ts),
// from which `delivered` and `404 offline` are answered. Questions about streams (questions.ts)
// it only carries: to the worker holding the stream, or to every worker. It keeps the workers'
// tickets (by digest), so a ticket is spent once whichever worker it is presented to. No sockets
// of its own but IPC.
//
// With `--redis` as well, the ids and the order come from Redis instead: the primary is then one
// node of the Redis cluster for all of its workers (the BusNode it gives its bus), what it reads
// from Redis goes to its workers in the same batches, and Redis keeps the tickets.

import { HttpError } from '../../http/errors.js'
import { History, type HistoryEntry } from '../../fanout/history.js'
import * as L from '../../limits.js'
import { Metrics } from '../../metrics.js'
import { encodeEvent, type SseMessage } from '../../fanout/sse-encode.js'
import { admit, refuseHeld, type PublishLimits } from '../../publish-rules.js'
import type { WireTarget } from '../../fanout/target.js'
import type { Accepted, Bus, BusNode } from '../bus.js'
import { MemoryTicketStore, TicketRefused, type TicketLedger } from '../../access/tickets.js'
import type { FromWorker, PublishAnswer, TicketAnswer, ToWorker } from './ipc.js'
import { LocalBus } from '../local.js'
import { Presence } from '../presence.js'
import { answerLocally, combine, holderOf, NO_STREAMS, Questions, type Answer, type Question, type StreamHolder } from '../questions.js'
import type { IdBlock } from '../stream-ids.js'
import type { WireEvent } from '../wire.js'

/** How the primary reaches one worker. */
export interface WorkerLink {
  readonly name: string
  send(msg: ToWorker): void
}

interface Kept extends HistoryEntry {
  readonly event: WireEvent
}

export class ClusterPrimary {
  /** Every stream of every worker, by slot: the whole machine. */
  readonly presence = new Presence<number>()
  /** Its own figures: `published` counts the events and ticks handed to the workers (and `webhooks`, which it tells). */
  readonly metrics = new Metrics()
  private readonly history: History<Kept>
  /** What the publish rules need for the primary's own publishes: the event size limit, the cluster's history. */
  private readonly limits: PublishLimits
  private lastEventId: number
  private readonly workers = new Map<number, WorkerLink>()
  private readonly joining = new Map<number, WorkerLink>()
  private batch: WireEvent[] = []
  /** This turn's answers to each worker's publishes, by slot. */
  private answers = new Map<number, PublishAnswer[]>()
  private flushQueued = false
  /** The primary's questions to its workers, by slot. */
  private readonly questions = new Questions<number>()
  /** The workers' tickets: the bus's ledger (Redis), else this process's. */
  private readonly tickets: TicketLedger
  /** Workers whose next block of stream ids is being fetched (one request at a time each). */
  private readonly fetchingIds = new Set<number>()
  /** The primary as a question finds it: no stream of its own; its figures are its sequence's and its history's. */
  private readonly own: StreamHolder = {
    ...NO_STREAMS,
    stats: () => this.metrics.snapshot(0, {}, { events: this.history.size, bytes: this.history.bytes }, 0),
  }

  constructor(
    settings: { history: number; historyBytes: number; lastEventId: number; maxEventBytes: number },
    /** Who sequences: this process (the default), or Redis for many machines. */
    readonly bus: Bus = new LocalBus(),
  ) {
    this.history = new History<Kept>(settings.history, settings.historyBytes)
    this.limits = { maxEventBytes: settings.maxEventBytes, history: this.history }
    this.lastEventId = settings.lastEventId
    this.tickets = bus.tickets ?? new MemoryTicketStore()
    bus.attach(this.busNode())
    // Each worker answers /healthz and /stats for itself: it is told whether Redis answers.
    bus.watch?.((state) => this.tellAll({ t: 'bus', state }))
  }

  /**
   * A worker joined (or replaced a dead one): it gets the history and its first stream ids (on
   * Redis they may have to be fetched; while Redis is away, it waits).
   */
  async join(slot: number, link: WorkerLink, token: string | null): Promise<void> {
    this.joining.set(slot, link)
    const ids = await this.idBlockFor(() => this.joining.get(slot) === link)
    if (ids === null) return // it left meanwhile
    this.joining.delete(slot)
    // From here to the send, one turn: what this turn accepted goes to the others first (it is
    // in the history the newcomer gets, and must not reach it twice).
    this.flush()
    this.workers.set(slot, link)
    const history: WireEvent[] = []
    this.history.since('0', (e) => history.push(e.event))
    link.send({ t: 'init', node: link.name, token, history, marks: this.history.marksByPlace(), ids, bus: this.bus.state ?? 'up' })
  }

  /**
   * A block of stream ids, asked of the bus again every ID_BLOCK_RETRY_MS while it gives none
   * (Redis away or not answering), for as long as `wanted()`; null once it is not. A worker whose
   * request went unanswered would run out of ids for good: every stream there refused.
   */
  private async idBlockFor(wanted: () => boolean): Promise<IdBlock | null> {
    for (;;) {
      const ids = await Promise.resolve()
        .then(() => this.bus.idBlock())
        .catch(() => null)
      if (!wanted()) return null
      if (ids !== null) return ids
      await new Promise((resolve) => setTimeout(resolve, L.ID_BLOCK_RETRY_MS))
    }
  }

  /** A worker's next block of stream ids (it asks at half of its current one, and again when it has run out). */
  private async giveIds(slot: number): Promise<void> {
    const link = this.workers.get(slot)
    if (link === undefined || this.fetchingIds.has(slot)) return
    this.fetchingIds.add(slot)
    try {
      const ids = await this.idBlockFor(() => this.workers.get(slot) === link)
      if (ids !== null) link.send({ t: 'ids', ids })
    } finally {
      this.fetchingIds.delete(slot)
    }
  }

  /** A worker is gone: its streams are (for the bus too), and no answer is awaited from it any more. */
  leave(slot: number): void {
    this.joining.delete(slot)
    if (!this.workers.delete(slot)) return
    for (const s of this.presence.streamsOf(slot)) this.bus.closed(s.id)
    this.presence.nodeGone(slot)
    this.questions.gone(slot)
  }

  get workerCount(): number {
    return this.workers.size
  }

  onMessage(slot: number, msg: FromWorker): void {
    switch (msg.t) {
      case 'publish':
        for (const p of msg.items) {
          const answered = (a: Accepted): void => this.answerTo(slot, { n: p.n, id: a.id, delivered: a.delivered })
          const refused = (err: unknown): void => {
            const e = err instanceof HttpError ? err : new HttpError(500, (err as Error).message)
            this.answerTo(slot, { n: p.n, status: e.status, error: e.message })
          }
          try {
            const r = this.accept({ message: p.message, target: p.target, keep: p.keep }, p.strict)
            if (r instanceof Promise) r.then(answered, refused)
            else answered(r)
          } catch (err) {
            refused(err)
          }
        }
        break
      case 'presence':
        // Each id once in a message (the worker keeps its last word), so the order is no matter.
        for (const id of msg.closed) {
          this.presence.delete(id)
          this.bus.closed(id)
        }
        for (const s of msg.opened) {
          this.presence.set(slot, s)
          this.bus.opened(s)
        }
        break
      case 'ids':
        void this.giveIds(slot)
        break
      case 'ask': {
        // A worker's question about the whole cluster. A failed answer (none is expected: a
        // question ends with the answers that came) is warned, not thrown.
        const { t: _t, n, ...q } = msg
        Promise.resolve(this.bus.ask(q as Question)).then(
          (value) => this.workers.get(slot)?.send({ t: 'answer', n, value }),
          (err: Error) => process.emitWarning(`rawsse: a question of ${slot} failed: ${err.message}`),
        )
        break
      }
      case 'ticket':
        this.ticket(slot, msg)
        break
      case 'answer':
        this.questions.answered(msg.n, slot, msg.value)
        break
      default:
        break // hello, listening, fatal: the command's business (commands/workers.ts)
    }
  }

  /** A worker's ticket kept in the ledger, or spent there (one step: had by one worker only); answered by number. */
  private ticket(slot: number, msg: Extract<FromWorker, { t: 'ticket' }>): void {
    const { n, digest, put } = msg
    const answer = (value: TicketAnswer): void => this.workers.get(slot)?.send({ t: 'answer', n, value })
    Promise.resolve()
      .then(() => (put === undefined ? this.tickets.take(digest) : this.tickets.put(digest, put.identity, put.expiresAt)))
      .then(
        (v) => answer({ ok: v ?? null }),
        (err: unknown) => {
          const e = err instanceof HttpError ? err : new HttpError(500, (err as Error).message)
          const error = e instanceof TicketRefused ? e.body.error : e.message
          answer({ refused: { status: e.status, error, headers: e.headers.map(([k, v]) => [k, v]) } })
        },
      )
  }

  /**
   * Sequence one event a worker admitted by the publish rules (publish-rules.ts) through the bus:
   * the cluster's id, history, and the next batch. Throws (or rejects) HttpError 409 (an id the
   * cluster's history holds), 404 when `strict` (a user or client connected nowhere), 503 (Redis away).
   */
  accept(e: WireEvent, strict: boolean): Accepted | Promise<Accepted> {
    refuseHeld(e.message.id, this.history)
    return this.bus.publish({ ...e, strict })
  }

  /** The `time` tick (publish-rules.ts timeTick()), one for the whole cluster. */
  tick(e: WireEvent): void {
    this.push(e)
  }

  /** Publish from the primary itself (the console, --stdin), by the same rules as a program's publish in one process. */
  publish(message: SseMessage, target: WireTarget = {}): Accepted | Promise<Accepted> {
    return this.bus.publish(admit(message, target, 'program', this.limits))
  }

  /** The machine as its bus sees it: one node holding every worker's streams. */
  private busNode(): BusNode {
    return {
      deliver: (e) => {
        const event: WireEvent = { message: e.message, target: e.target as WireTarget, keep: e.keep }
        const id = e.message.id
        // Encoded here too only to size it as the workers do, so every history forgets the same events.
        if (e.keep && id !== undefined) this.history.add({ id, frame: encodeEvent(event.message), target: event.target, event })
        else if (id !== undefined) this.history.mark(id) // to one client: where it fell, as every worker marks it
        this.push(event)
        return this.presence.count(event.target)
      },
      gap: () => {
        // What this turn holds came before the gap: out first, then the workers say `reset`.
        this.flush()
        this.history.clear()
        this.tellAll({ t: 'gap' })
      },
      mark: (id) => this.history.mark(id),
      nextEventId: () => String(++this.lastEventId),
      count: (t) => this.presence.count(t as WireTarget),
      answer: (q) => this.answer(q),
      clientExists: (id) => this.presence.nodeOf(id) !== undefined,
      userOnline: (user) => this.presence.userOnline(user),
    }
  }

  /** Tell every worker (stop, reload). */
  tellAll(msg: ToWorker): void {
    for (const w of this.workers.values()) w.send(msg)
  }

  // ---------------------------------------------------------------- batches

  private answerTo(slot: number, a: PublishAnswer): void {
    let answers = this.answers.get(slot)
    if (answers === undefined) this.answers.set(slot, (answers = []))
    answers.push(a)
    this.queueFlush()
  }

  private push(event: WireEvent): void {
    this.metrics.published++
    this.batch.push(event)
    this.queueFlush()
  }

  private queueFlush(): void {
    if (this.flushQueued) return
    this.flushQueued = true
    setImmediate(this.flush)
  }

  /** One message per worker per turn: every event of the turn, and that worker's answers. */
  private readonly flush = (): void => {
    this.flushQueued = false
    const events = this.batch
    const answers = this.answers
    this.batch = []
    this.answers = new Map()
    if (events.length === 0 && answers.size === 0) return
    for (const [slot, w] of this.workers) w.send({ t: 'batch', events, answers: answers.get(slot) ?? [] })
  }

  // ---------------------------------------------------------------- questions

  /**
   * A question about this machine's streams (its bus asks it, for a worker or for Redis): asked
   * of the worker holding the stream, or of every worker, their answers combined with the
   * primary's own.
   */
  private async answer<Q extends Question>(q: Q): Promise<Answer<Q>> {
    const holder = holderOf(q)
    if (holder === undefined) return combine(q, [answerLocally(this.own, q), ...(await this.ask([...this.workers.keys()], q))])
    // The events handed out so far go first (on Redis, what this node read before the question):
    // the worker meets the question after them, as the stream must.
    this.flush()
    // A stream opened this very moment may not be in presence yet (a worker tells once a turn): then every worker is asked.
    const slot = this.presence.nodeOf(holder)
    return combine(q, await this.ask(slot === undefined ? [...this.workers.keys()] : [slot], q))
  }

  /** Ask workers `slots` one question; resolves with the answers of those that did not leave meanwhile. */
  private ask<Q extends Question>(slots: number[], q: Q): Promise<Array<Answer<Q>>> {
    const live = slots.filter((s) => this.workers.has(s))
    const asked = this.questions.ask(live, (n) => {
      for (const s of live) this.workers.get(s)!.send({ t: 'ask', n, ...q })
    })
    return asked as Promise<Array<Answer<Q>>>
  }
}
