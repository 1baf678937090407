// The bus of one worker of a `--workers` cluster (the primary's side is primary.ts). Publishing
// sends the event to the primary and resolves once the primary has accepted it and given it an
// id; the event itself comes back in the primary's next `batch`, like every other worker's, so
// all workers deliver one order. Streams opened and closed here are told to the primary once
// per turn (its presence counts answer `delivered` and 404). Questions about streams
// (../questions.ts) are answered here when the stream is here, else asked of the primary, which
// asks the worker holding it; the primary's questions about this worker's streams are answered
// here. Stream ids come from the primary a block at a time; tickets are kept by the primary, so
// each is spent once on the machine (or, with --redis, in the whole cluster).

import { HttpError } from '../../http/errors.js'
import { identityFrom, TicketRefused, type TicketLedger } from '../../access/tickets.js'
import { wireTarget } from '../../fanout/target.js'
import type { AppIdentity } from '../../access/jwt.js'
import type { Accepted, Bus, BusDraft, BusNode, BusState } from '../bus.js'
import { StreamNews } from '../presence.js'
import { named, Questions, type Answer, type Question } from '../questions.js'
import { StreamIds } from '../stream-ids.js'
import { factsOf, type StreamFacts, type WireEvent } from '../wire.js'
import type { FromWorker, PublishAnswer, PublishItem, TicketAnswer, ToWorker } from './ipc.js'

/** What the primary gave this worker to start with. */
export interface WorkerInit {
  node: string
  /** The token the primary generated (no token was configured), or null. */
  token: string | null
}

/** The one member a worker asks. */
const PRIMARY = ['primary'] as const

const unavailable = (): HttpError => new HttpError(503, 'bus unavailable')

export class WorkerBus implements Bus {
  /** This worker's name in /stats `nodes` and /metrics. */
  readonly name: string
  /** A publish is answered once the primary has accepted it. */
  readonly answersLater = true
  /** The primary sees the machine's presence, and tells its changes. */
  readonly presenceFeed = 'elsewhere'
  /** Whether the primary's bus answers (Redis away or hung: down), as the primary last said. */
  state: BusState
  /** The primary said stop or reload (the command decides what that means). */
  onStop: () => void = () => {}
  onReload: () => void = () => {}
  private node: BusNode | null = null
  private history: WireEvent[]
  private marks: Array<[id: string, at: number]>
  /** Publishes and questions waiting for the primary's answer, by number. */
  private readonly asked = new Questions<'primary'>()
  private readonly ids = new StreamIds(() => this.send({ t: 'ids' }))
  /** This turn's streams opened, changed and closed, for the primary. */
  private readonly news = new StreamNews()
  /** Messages that came before attach(). */
  private early: ToWorker[] = []
  private closedBus = false
  private readonly onMessage = (msg: ToWorker): void => this.handle(msg)
  /** Tickets live in the primary's ledger: made here (only the digest travels), spent there, once. */
  readonly tickets: TicketLedger = {
    put: async (digest, identity, expiresAt) => {
      await this.ticket({ digest, put: { identity, expiresAt } })
    },
    take: async (digest) => identityFrom(await this.ticket({ digest })),
  }

  private constructor(
    init: Extract<ToWorker, { t: 'init' }>,
    private readonly send: (msg: FromWorker) => void,
  ) {
    this.name = init.node
    this.state = init.bus
    this.history = init.history
    this.marks = init.marks
    this.ids.give(init.ids)
    process.on('message', this.onMessage)
  }

  /** Wait for the primary's `init` (this process must be a cluster worker). */
  static connect(): Promise<{ bus: WorkerBus; init: WorkerInit }> {
    const send = (msg: FromWorker): void => void process.send?.(msg)
    return new Promise((resolve) => {
      const first = (msg: ToWorker): void => {
        if (msg.t !== 'init') return
        process.off('message', first)
        resolve({ bus: new WorkerBus(msg, send), init: { node: msg.node, token: msg.token } })
      }
      process.on('message', first)
      send({ t: 'hello' })
    })
  }

  /** The server: it gets the cluster's retained history at once, before it listens, then what came since. */
  attach(node: BusNode): void {
    this.node = node
    // The events to one client between them are marked where they fell, as the others marked them.
    let m = 0
    for (const [i, e] of this.history.entries()) {
      for (; m < this.marks.length && this.marks[m]![1] <= i; m++) node.mark(this.marks[m]![0])
      node.deliver(e)
    }
    for (; m < this.marks.length; m++) node.mark(this.marks[m]![0])
    this.history = []
    this.marks = []
    const early = this.early
    this.early = []
    for (const msg of early) this.handle(msg)
  }

  publish(draft: BusDraft): Promise<Accepted> {
    if (this.closedBus) return Promise.reject(unavailable())
    const target = wireTarget(draft.target)
    const answer = this.fromPrimary((n) => {
      // The publishes of one turn (a connection's pipelined ones) go to the primary in one message,
      // so they come back in one batch and reach each stream in one write.
      if (this.outbox.length === 0) process.nextTick(this.sendOutbox)
      this.outbox.push({ n, strict: draft.strict, message: draft.message, target, keep: draft.keep })
    })
    return answer.then((value) => {
      const a = value as PublishAnswer
      if ('id' in a) return { id: a.id, delivered: a.delivered }
      throw new HttpError(a.status, a.error)
    })
  }

  private outbox: PublishItem[] = []
  private readonly sendOutbox = (): void => {
    const items = this.outbox
    this.outbox = []
    this.send({ t: 'publish', items })
  }

  idBlock(): never {
    throw new Error('a worker hands out no id blocks: its primary does')
  }

  nextClientId(): number {
    return this.ids.take()
  }

  opened(s: StreamFacts): void {
    this.tellPresence()
    this.news.opened(factsOf(s))
  }

  closed(id: number): void {
    this.tellPresence()
    this.news.closed(id)
  }

  /**
   * Asked of the primary, even about a stream here: it hands out every batch it has before it
   * asks the holder, on the same pipe, so an event whose publisher was answered before the
   * question came goes before a change of a stream's channels, or its end (as a Redis node reads
   * Redis to its end first). Answered in place, the question could overtake a batch already in
   * this worker's pipe: the request came on a socket of its own.
   */
  ask<Q extends Question>(q: Q): Promise<Answer<Q>> {
    if (this.closedBus) return Promise.reject(unavailable())
    return this.fromPrimary((n) => this.send({ t: 'ask', n, ...q })) as Promise<Answer<Q>>
  }

  close(): void {
    this.closedBus = true
    process.off('message', this.onMessage)
    this.asked.gone(PRIMARY[0])
  }

  private handle(msg: ToWorker): void {
    // Node emits every message of one read at once: batches can come in the same turn as `init`,
    // before the server is attached. They wait, in order.
    if (this.node === null) {
      this.early.push(msg)
      return
    }
    switch (msg.t) {
      case 'batch':
        for (const e of msg.events) this.node.deliver(e)
        for (const a of msg.answers) this.asked.answered(a.n, PRIMARY[0], a)
        break
      case 'ids':
        this.ids.give(msg.ids)
        break
      case 'bus':
        this.state = msg.state
        break
      case 'gap':
        this.node.gap()
        break
      case 'ask':
        this.answerPrimary(this.node, msg)
        break
      case 'answer':
        this.asked.answered(msg.n, PRIMARY[0], msg.value)
        break
      case 'stop':
        this.onStop()
        break
      case 'reload':
        this.onReload()
        break
    }
  }

  /** The primary's question about this worker's streams, answered with this worker's name. */
  private answerPrimary(node: BusNode, msg: Extract<ToWorker, { t: 'ask' }>): void {
    const { t: _t, n, ...rest } = msg
    const q = rest as Question
    const self = { node: this.name, pid: process.pid, bus: this.state }
    // A failed answer (none is expected: the server answers at once) is warned, not thrown.
    Promise.resolve(node.answer(q)).then(
      (a) => this.send({ t: 'answer', n, value: named(q, a, self) }),
      (err: Error) => process.emitWarning(`rawsse: a question of the primary failed: ${err.message}`),
    )
  }

  /** A ticket kept or spent by the primary: what its ledger said, or its refusal thrown. */
  private async ticket(t: { digest: string; put?: { identity: AppIdentity; expiresAt: number } }): Promise<unknown> {
    if (this.closedBus) throw unavailable()
    const a = (await this.fromPrimary((n) => this.send({ t: 'ticket', n, ...t }))) as TicketAnswer
    if ('ok' in a) return a.ok
    const { status, error, headers } = a.refused
    throw status === 503 ? new TicketRefused(503, { error }, headers) : new HttpError(status, error, headers)
  }

  /** The primary's answer to what `send(n)` sends; 503 when this bus closes first. */
  private async fromPrimary(send: (n: number) => void): Promise<unknown> {
    const answers = await this.asked.ask(PRIMARY, send)
    if (answers.length === 0) throw unavailable()
    return answers[0]
  }

  /** Streams opened, changed and closed in one turn go to the primary in one message, each once. */
  private tellPresence(): void {
    if (this.news.size === 0) setImmediate(() => this.send({ t: 'presence', ...this.news.take() }))
  }
}
