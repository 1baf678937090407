// The primary of a `--workers` cluster: the one sequencer. Workers hold the streams; every event
// published on any of them comes here, gets the cluster's next id (or is refused: an id history
// still holds, a user or client connected nowhere), and goes back to every worker in one `batch`
// message per event-loop turn, so every worker delivers the same events in the same order and
// keeps the same history. The primary keeps that history too (a worker that starts, or replaces
// a dead one, gets it before it listens), and a mirror of who is connected where (presence.ts),
// from which `delivered` and `404 offline` are answered. No sockets of its own but IPC.

import { HttpError } from '../errors.js'
import { History, type HistoryEntry } from '../history.js'
import { DROP_REASONS, type Stats } from '../metrics.js'
import { encodeEvent, type SseMessage } from '../sse-encode.js'
import type { Accepted } from './bus.js'
import { CLIENT_ID_BLOCK, type FromWorker, type NodeStats, type PublishAnswer, type Question, type ToWorker, type WireEvent, type WireTarget } from './ipc.js'
import { Presence } from './presence.js'

/** How the primary reaches one worker. */
export interface WorkerLink {
  readonly name: string
  send(msg: ToWorker): void
}

interface Kept extends HistoryEntry {
  readonly event: WireEvent
}

/** Answers a worker asked for, by number; the primary's own questions to workers wait here too. */
interface Waiting {
  /** The workers yet to answer. */
  pending: Set<number>
  values: unknown[]
  done: (values: unknown[]) => void
}

export class ClusterPrimary {
  readonly presence = new Presence()
  /** Events and ticks handed to the workers: the cluster's `published`. */
  published = 0
  private readonly history: History<Kept>
  private lastEventId: number
  private readonly workers = new Map<number, WorkerLink>()
  private batch: WireEvent[] = []
  /** This turn's answers to each worker's publishes, by slot. */
  private answers = new Map<number, PublishAnswer[]>()
  private flushQueued = false
  private nextIdBlock = 0
  private asked = 0
  private readonly waiting = new Map<number, Waiting>()
  private readonly startedAt = Date.now()

  constructor(settings: { history: number; historyBytes: number; lastEventId: number }) {
    this.history = new History<Kept>(settings.history, settings.historyBytes)
    this.lastEventId = settings.lastEventId
  }

  /** A worker joined (or replaced a dead one): it gets the history and its first stream ids. */
  join(slot: number, link: WorkerLink, token: string | null): void {
    // What this turn accepted goes to the others first: it is in the history the newcomer gets,
    // and must not reach it twice.
    this.flush()
    this.workers.set(slot, link)
    const history: WireEvent[] = []
    this.history.since('0', (e) => history.push(e.event))
    link.send({ t: 'init', node: link.name, token, history, ids: this.idBlock() })
  }

  /** A worker is gone: its streams are, and no answer is awaited from it any more. */
  leave(slot: number): void {
    if (!this.workers.delete(slot)) return
    this.presence.nodeGone(slot)
    for (const [n, w] of this.waiting) if (w.pending.has(slot)) this.answered(n, slot, undefined)
  }

  get workerCount(): number {
    return this.workers.size
  }

  onMessage(slot: number, msg: FromWorker): void {
    switch (msg.t) {
      case 'publish': {
        let answers = this.answers.get(slot)
        if (answers === undefined) this.answers.set(slot, (answers = []))
        for (const p of msg.items) {
          try {
            const a = this.accept({ message: p.message, target: p.target, keep: p.keep }, p.strict)
            answers.push({ n: p.n, id: a.id, delivered: a.delivered })
          } catch (err) {
            const e = err instanceof HttpError ? err : new HttpError(500, (err as Error).message)
            answers.push({ n: p.n, status: e.status, error: e.message })
          }
        }
        this.queueFlush()
        break
      }
      case 'presence':
        for (const s of msg.opened) this.presence.opened(slot, s)
        for (const id of msg.closed) this.presence.closed(id)
        break
      case 'ids':
        this.workers.get(slot)?.send({ t: 'ids', ids: this.idBlock() })
        break
      case 'ask':
        void this.answer(msg).then((value) => this.workers.get(slot)?.send({ t: 'answer', n: msg.n, value }))
        break
      case 'answer':
        this.answered(msg.n, slot, msg.value)
        break
      default:
        break // hello, listening, fatal: the command's business (commands/workers.ts)
    }
  }

  /**
   * Sequence one event: the cluster's id, history, and the next batch. Throws HttpError 409 (an
   * id history still holds) or, when `strict`, 404 (a user or client connected nowhere).
   */
  accept(e: WireEvent, strict: boolean): Accepted {
    const { message, target } = e
    if (strict && ((target.user !== undefined && !this.presence.userOnline(target.user)) || (target.client !== undefined && this.presence.nodeOf(target.client) === undefined))) {
      throw new HttpError(404, 'offline')
    }
    if (message.id !== undefined && this.history.has(message.id)) throw new HttpError(409, `id ${message.id} is already in the history`)
    const id = message.id ?? String(++this.lastEventId)
    const event: WireEvent = { message: { ...message, id }, target, keep: e.keep }
    // Encoded here too only to size it as the workers do, so every history forgets the same events.
    if (e.keep) this.history.add({ id, frame: encodeEvent(event.message), target, event })
    this.push(event)
    return { id, delivered: this.presence.count(target) }
  }

  /** The `time` tick, one for the whole cluster: no id, not kept. */
  tick(msg: SseMessage): void {
    this.push({ message: msg, target: {}, keep: false })
  }

  /** Publish from the primary itself (the console, --stdin). */
  publish(message: SseMessage, target: WireTarget = {}): Accepted {
    return this.accept({ message, target, keep: target.client === undefined }, false)
  }

  /** The cluster's /stats: every worker's figures summed, the primary's own sequence and history, and each node. */
  async stats(): Promise<Stats & { nodes: NodeStats[] }> {
    const nodes = (await this.askAll({ q: 'stats' })).filter((v): v is NodeStats => v !== undefined)
    const sum = (f: (s: NodeStats) => number): number => nodes.reduce((n, s) => n + f(s), 0)
    const drops = Object.fromEntries(DROP_REASONS.map((r) => [r, sum((s) => s.drops[r])])) as Stats['drops']
    const channels: Record<string, number> = {}
    for (const s of nodes) for (const [ch, n] of Object.entries(s.channels)) channels[ch] = (channels[ch] ?? 0) + n
    return {
      clients: sum((s) => s.clients),
      channels,
      published: this.published,
      deliveries: sum((s) => s.deliveries),
      drops,
      bytesOut: sum((s) => s.bytesOut),
      history: { events: this.history.size, bytes: this.history.bytes },
      connections: { open: sum((s) => s.connections.open), shed: sum((s) => s.connections.shed), refused: sum((s) => s.connections.refused) },
      uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000),
      rssBytes: sum((s) => s.rssBytes) + process.memoryUsage.rss(),
      nodes,
    }
  }

  /** Close every stream of the cluster; resolves to how many. */
  async closeAll(): Promise<number> {
    const counts = await this.askAll({ q: 'close-all' })
    return counts.reduce((n: number, c) => n + (typeof c === 'number' ? c : 0), 0)
  }

  /** Tell every worker (stop, reload). */
  tellAll(msg: ToWorker): void {
    for (const w of this.workers.values()) w.send(msg)
  }

  // ---------------------------------------------------------------- batches

  private push(event: WireEvent): void {
    this.published++
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

  private idBlock(): [number, number] {
    const first = this.nextIdBlock * CLIENT_ID_BLOCK + 1
    this.nextIdBlock++
    return [first, first + CLIENT_ID_BLOCK - 1]
  }

  // ---------------------------------------------------------------- questions

  /** A worker's question about the whole cluster. */
  private async answer(q: Question): Promise<unknown> {
    if (q.q === 'stats') return this.stats()
    if (q.q === 'close-all') return this.closeAll()
    const slot = this.presence.nodeOf(q.id)
    if (slot === undefined) return false
    const [closed] = await this.ask([slot], q)
    return closed === true
  }

  private askAll(q: Question): Promise<unknown[]> {
    return this.ask([...this.workers.keys()], q)
  }

  /** Ask workers `slots` one question; resolves with their answers (undefined for one that left). */
  private ask(slots: number[], q: Question): Promise<unknown[]> {
    return new Promise((done) => {
      const n = ++this.asked
      const live = slots.filter((s) => this.workers.has(s))
      if (live.length === 0) return done([])
      this.waiting.set(n, { pending: new Set(live), values: [], done })
      for (const s of live) this.workers.get(s)!.send({ t: 'ask', n, ...q })
    })
  }

  private answered(n: number, slot: number, value: unknown): void {
    const w = this.waiting.get(n)
    if (w === undefined || !w.pending.delete(slot)) return
    w.values.push(value)
    if (w.pending.size > 0) return
    this.waiting.delete(n)
    w.done(w.values)
  }
}
