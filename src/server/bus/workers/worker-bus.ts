// The bus of one worker of a `--workers` cluster (the primary's side is primary.ts). Publishing
// sends the event to the primary and resolves once the primary has accepted it and given it an
// id; the event itself comes back in the primary's next `batch`, like every other worker's, so
// all workers deliver one order. Streams opened and closed here are told to the primary once
// per turn (its presence counts answer `delivered` and 404), and questions about streams
// elsewhere (close one, close all, stats) go through it.

import { HttpError } from '../../http/errors.js'
import type { Stats } from '../../metrics.js'
import type { Accepted, Bus, BusDraft, BusNode, BusState, StreamInfo } from '../bus.js'
import { wireTarget, type FromWorker, type NodeStats, type PublishItem, type Question, type ToWorker, type WireEvent, type WireStream } from './ipc.js'

/** What the primary gave this worker to start with. */
export interface WorkerInit {
  node: string
  /** The token the primary generated (no token was configured), or null. */
  token: string | null
}

interface Pending<T> {
  resolve: (v: T) => void
  reject: (e: Error) => void
}

export class WorkerBus implements Bus {
  /** This worker's name in /stats `nodes` and /metrics. */
  readonly name: string
  /** A publish is answered once the primary has accepted it. */
  readonly answersLater = true
  /** Whether the primary's bus answers (Redis away or hung: down), as the primary last said. */
  state: BusState
  /** The primary said stop or reload (the command decides what that means). */
  onStop: () => void = () => {}
  onReload: () => void = () => {}
  private node: BusNode | null = null
  private history: WireEvent[]
  private marks: Array<[id: string, at: number]>
  private sent = 0
  private readonly publishes = new Map<number, Pending<Accepted>>()
  private readonly questions = new Map<number, Pending<unknown>>()
  private ids: [number, number]
  private nextIds: [number, number] | null = null
  private askedIds = false
  private lastClientId: number
  private opened_: WireStream[] = []
  private closed_: number[] = []
  private presenceQueued = false
  /** Messages that came before attach(). */
  private early: ToWorker[] = []
  private closedBus = false
  private readonly onMessage = (msg: ToWorker): void => this.handle(msg)

  private constructor(
    init: Extract<ToWorker, { t: 'init' }>,
    private readonly send: (msg: FromWorker) => void,
  ) {
    this.name = init.node
    this.state = init.bus
    this.history = init.history
    this.marks = init.marks
    this.ids = init.ids
    this.lastClientId = init.ids[0] - 1
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
    if (this.closedBus) return Promise.reject(new HttpError(503, 'bus unavailable'))
    const target = wireTarget(draft.target)
    const n = ++this.sent
    // The publishes of one turn (a connection's pipelined ones) go to the primary in one message,
    // so they come back in one batch and reach each stream in one write.
    if (this.outbox.length === 0) process.nextTick(this.sendOutbox)
    this.outbox.push({ n, strict: draft.strict, message: draft.message, target, keep: draft.keep })
    return new Promise<Accepted>((resolve, reject) => this.publishes.set(n, { resolve, reject }))
  }

  private outbox: PublishItem[] = []
  private readonly sendOutbox = (): void => {
    const items = this.outbox
    this.outbox = []
    this.send({ t: 'publish', items })
  }

  idBlock(): [number, number] {
    throw new Error('a worker hands out no id blocks: its primary does')
  }

  nextClientId(): number {
    if (this.lastClientId >= this.ids[1]) {
      // The next block is asked for at half of this one, so it has normally long come. If not
      // (Redis away), the primary keeps asking Redis until it has one; asking it again here
      // costs nothing (it fetches one block per worker at a time) and needs no other promise.
      if (this.nextIds === null) {
        this.send({ t: 'ids' })
        throw new HttpError(503, 'no stream ids left; try again', [['Retry-After', '1']])
      }
      this.ids = this.nextIds
      this.nextIds = null
      this.askedIds = false
      this.lastClientId = this.ids[0] - 1
    }
    const id = ++this.lastClientId
    if (!this.askedIds && id - this.ids[0] >= (this.ids[1] - this.ids[0]) / 2) {
      this.askedIds = true
      this.send({ t: 'ids' })
    }
    return id
  }

  opened(c: StreamInfo): void {
    this.opened_.push([c.id, c.user, c.channels, c.roles])
    this.queuePresence()
  }

  closed(id: number): void {
    this.closed_.push(id)
    this.queuePresence()
  }

  closeClient(id: number): boolean | Promise<boolean> {
    if (this.node!.closeClient(id)) return true
    return this.ask({ q: 'close-client', id }).then((v) => v === true)
  }

  closeAll(): Promise<number> {
    return this.ask({ q: 'close-all' }).then((v) => (typeof v === 'number' ? v : 0))
  }

  stats(): Promise<Stats> {
    return this.ask({ q: 'stats' }) as Promise<Stats>
  }

  close(): void {
    this.closedBus = true
    process.off('message', this.onMessage)
    for (const p of [...this.publishes.values(), ...this.questions.values()]) p.reject(new HttpError(503, 'bus unavailable'))
    this.publishes.clear()
    this.questions.clear()
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
        for (const a of msg.answers) {
          const p = this.settle(this.publishes, a.n)
          if ('id' in a) p?.resolve({ id: a.id, delivered: a.delivered })
          else p?.reject(new HttpError(a.status, a.error))
        }
        break
      case 'ids':
        this.nextIds = msg.ids
        break
      case 'bus':
        this.state = msg.state
        break
      case 'gap':
        this.node.gap()
        break
      case 'ask':
        // A failed answer is warned, not thrown: the primary stops waiting for it at its timeout.
        this.answer(this.node, msg).then(
          (value) => this.send({ t: 'answer', n: msg.n, value }),
          (err: Error) => process.emitWarning(`rawsse: a question of the primary failed: ${err.message}`),
        )
        break
      case 'answer':
        this.settle(this.questions, msg.n)?.resolve(msg.value)
        break
      case 'stop':
        this.onStop()
        break
      case 'reload':
        this.onReload()
        break
    }
  }

  /** The primary's question about this worker's own streams. */
  private async answer(node: BusNode, q: Question): Promise<unknown> {
    if (q.q === 'close-all') return node.closeAll()
    if (q.q === 'close-client') return node.closeClient(q.id)
    const stats: NodeStats = { ...(await node.stats()), node: this.name, pid: process.pid, bus: this.state }
    return stats
  }

  private ask(q: Question): Promise<unknown> {
    if (this.closedBus) return Promise.reject(new HttpError(503, 'bus unavailable'))
    const n = ++this.sent
    return new Promise((resolve, reject) => {
      this.questions.set(n, { resolve, reject })
      this.send({ t: 'ask', n, ...q })
    })
  }

  private settle<T>(map: Map<number, Pending<T>>, n: number): Pending<T> | undefined {
    const p = map.get(n)
    map.delete(n)
    return p
  }

  /** Streams opened and closed in one turn go to the primary in one message. */
  private queuePresence(): void {
    if (this.presenceQueued) return
    this.presenceQueued = true
    setImmediate(() => {
      this.presenceQueued = false
      const msg: FromWorker = { t: 'presence', opened: this.opened_, closed: this.closed_ }
      this.opened_ = []
      this.closed_ = []
      this.send(msg)
    })
  }
}
