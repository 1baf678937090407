// The bus of a cluster on Redis: every rawsse process given the same Redis URL and prefix is one
// node of it (a `--workers` primary is one node for all of its workers). Events go through one
// Redis Stream (event-stream.ts), which gives the order and the ids; each node keeps its own
// history from it, so replay stays local. Who is connected where, and each node's figures, are
// shared twice a second (nodes.ts); questions about streams (../questions.ts) are answered here
// and carried to the other nodes. Tickets are Redis keys, spent by one GETDEL (tickets.ts). A publish is answered once Redis has acknowledged the
// event and this node has delivered it, so a client that publishes and then resumes here with
// that id finds it in history.
//
// Three connections per node: commands, the blocking read, and pub/sub (a subscribed connection
// can do nothing else). When Redis is away: publishing answers 503, streams stay open, and the
// read resumes where it stopped, or says `reset` where Redis no longer holds what was missed.
// Away includes a Redis that keeps its connections open but does not answer (stopped, swapping):
// a command unanswered for REDIS_ANSWER_MS says so, and a publish Redis had not acknowledged by
// then is answered 503 and never published (clock.ts, and the append script).

import { hostname } from 'node:os'
import * as L from '../../limits.js'
import { offline, type Whereabouts } from '../../publish-rules.js'
import { wireTarget, type WireTarget } from '../../fanout/target.js'
import type { Accepted, Bus, BusDraft, BusEvent, BusNode, BusState } from '../bus.js'
import { combine, holderOf, isNone, named, type Answer, type Question } from '../questions.js'
import { StreamIds, type IdBlock } from '../stream-ids.js'
import type { StreamFacts } from '../wire.js'
import { redisLink, within, type RedisLink } from './client.js'
import { RedisClock } from './clock.js'
import { ClusterNodes } from './nodes.js'
import { EventStream, streamKeys, unavailable } from './event-stream.js'
import { RedisTickets } from './tickets.js'
import { RedisClaims } from '../../webhooks/claims.js'
import type { PresenceFeed } from '../../webhooks/presence-changes.js'

export interface RedisBusSettings {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://…`. */
  url: string
  /** Key prefix; default `rawsse`. */
  prefix?: string | undefined
  /** Events every node keeps for replay (give every node the same). */
  history: number
  /** The id before the first this node would give (the floor ids never go below). */
  lastEventId: number
}

/** A publish Redis acknowledged, waiting for this node's read to deliver it. */
interface Waiting {
  id: string
  target: WireTarget
  resolve: (a: Accepted) => void
  timer: NodeJS.Timeout
}

export class RedisBus implements Bus {
  /** This node's name in /stats `nodes` and /metrics: host and process id. */
  readonly name = `${hostname()}:${process.pid}`
  /** A publish is answered once Redis has acknowledged it. */
  readonly answersLater = true
  private readonly prefix: string
  private node: BusNode | null = null
  private links: RedisLink[] = []
  private stream: EventStream | null = null
  private nodes: ClusterNodes | null = null
  private readonly waiting = new Map<number, Waiting>()
  /** Stream ids: the block in use and a spare, which a machine's primary hands to its workers. */
  private readonly ids = new StreamIds(() => this.refill())
  private refilling = false
  private refillTimer: NodeJS.Timeout | null = null
  private upkeepTimer: NodeJS.Timeout | null = null
  private exchanging = false
  /** Redis's clock, for the deadline each append carries. */
  private readonly clock = new RedisClock()
  /** The TIME in flight that says whether Redis answers: down if it has not come within REDIS_ANSWER_MS. */
  private probing: NodeJS.Timeout | null = null
  private current: BusState | 'starting' = 'starting'
  private readonly watchers: Array<(state: BusState, detail: string) => void> = []
  private shut = false
  /** The cluster's tickets, on Redis: each spent once, whichever node it is shown to. */
  readonly tickets: RedisTickets

  constructor(private readonly settings: RedisBusSettings) {
    if (!/^rediss?:\/\/\S+$/.test(settings.url) || !URL.canParse(settings.url)) throw new RangeError('redis must be a redis:// or rediss:// URL')
    this.prefix = settings.prefix ?? L.DEFAULT_REDIS_PREFIX
    if (!/^[!-z|~]{1,64}$/.test(this.prefix)) throw new RangeError('redisPrefix must be 1 to 64 visible characters, without { or }')
    this.tickets = new RedisTickets(() => this.links[0], this.prefix)
  }

  attach(node: BusNode): void {
    this.node = node
  }

  /**
   * The cluster's presence as this node sees it (its own streams, the others' snapshots), and the
   * claims by which one node tells each change (webhooks/claims.ts). Read once start() is done.
   */
  readonly presenceFeed: PresenceFeed = {
    watch: (fn) => this.nodes?.presence.watch(fn),
    forEachPresent: (fn) => this.nodes?.presence.forEachPresent(fn),
    claims: () => {
      const nodes = this.nodes
      if (nodes === null) throw new Error('the Redis bus has not started')
      return new RedisClaims(this.links[0]!, this.prefix, this.name, () => nodes.names())
    },
  }

  /** `up` once Redis answers and the stream is read; `down` (with why) when it stops answering. */
  watch(fn: (state: BusState, detail: string) => void): void {
    this.watchers.push(fn)
  }

  get state(): BusState {
    return this.current === 'up' ? 'up' : 'down'
  }

  /** Connected, the stream joined, and the read answered. */
  private get up(): boolean {
    return this.stream !== null && this.stream.up && !this.stream.stalled(performance.now())
  }

  /** Connect (waiting while Redis is unreachable, saying so through watch()), load the history, then read live. */
  async start(): Promise<void> {
    const writer = await redisLink(this.settings.url)
    const reader = writer.duplicate()
    const sub = writer.duplicate()
    this.links = [writer, reader, sub]
    writer.onDown((reason) => this.setState('down', reason))
    writer.onReady(() => {
      // Perhaps another server: no append until its clock is sampled (that sample also says up).
      this.clock.reset()
      if (this.upkeepTimer !== null) this.probe()
    })
    await Promise.all(this.links.map((l) => l.connect()))
    const node = this.node!
    this.stream = new EventStream(writer, reader, streamKeys(this.prefix), this.settings.history, this.settings.lastEventId, {
      deliver: (pos, e) => this.delivered(pos, e),
      gap: () => {
        node.gap()
        for (const pos of [...this.waiting.keys()]) this.answer(pos)
      },
    })
    this.nodes = new ClusterNodes(writer, sub, this.prefix, this.name, () => node, () => this.state, () => this.catchUp())
    await this.stream.load()
    await this.nodes.listen()
    await this.clock.sample(writer)
    // The block in use, then the spare: opening a stream never waits for Redis.
    this.ids.give(await this.fetchBlock())
    this.ids.give(await this.fetchBlock())
    await this.exchange()
    this.upkeepTimer = setInterval(() => this.upkeep(), L.REDIS_PRESENCE_MS)
    void this.stream.run()
    this.setState('up', '')
  }

  publish(draft: BusDraft): Promise<Accepted> {
    const stream = this.stream
    // Down (refusing, or not answering): at once, rather than each publish waiting REDIS_ANSWER_MS.
    if (stream === null || this.shut || this.current !== 'up') return Promise.reject(unavailable())
    const target = wireTarget(draft.target)
    const refused = offline(draft, this.anywhere)
    if (refused !== null) return Promise.reject(refused)
    // Not acknowledged within REDIS_ANSWER_MS: 503. Redis refuses to append it from a moment
    // before that 503 on (its acknowledgement needs time to come back), so a 503 is never
    // published, however long the command waited in Redis's socket. What no deadline can cover:
    // an acknowledgement that takes longer than REDIS_APPEND_MARGIN_MS to come back (Redis
    // stopped in the microseconds between running the script and writing its answer).
    const deadline = this.clock.toRedis(performance.now() + L.REDIS_ANSWER_MS - L.REDIS_APPEND_MARGIN_MS)
    if (deadline === null) return Promise.reject(unavailable())
    return within(stream.append(draft.message, target, draft.keep, deadline), L.REDIS_ANSWER_MS, unavailable).then(
      ({ pos, id }) =>
        new Promise<Accepted>((resolve) => {
          if (pos <= stream.lastPos) return resolve({ id, delivered: this.count(target) })
          // Normally the read has it within a round trip; if Redis went away after acknowledging
          // it, answer anyway after a while: it is Redis's, and will be delivered when it is back.
          const timer = setTimeout(() => this.answer(pos), L.REDIS_ACK_WAIT_MS)
          this.waiting.set(pos, { id, target, resolve, timer })
        }),
    )
  }

  nextClientId(): number {
    return this.ids.take()
  }

  idBlock(): IdBlock | Promise<IdBlock> {
    return this.ids.takeSpare() ?? this.fetchBlock()
  }

  opened(s: StreamFacts): void {
    this.nodes?.opened(s)
  }

  closed(id: number): void {
    this.nodes?.closed(id)
  }

  /**
   * About one stream: this node's answer when it holds it, else the node's that does (from the
   * snapshots; every node's when they do not know it yet). About them all: this node's answer and the others', combined (the figures: the
   * others' from their last snapshot).
   */
  async ask<Q extends Question>(q: Q): Promise<Answer<Q>> {
    const node = this.node!
    const nodes = this.nodes
    const holder = holderOf(q)
    if (holder === undefined) {
      const [here, there] = await Promise.all([node.answer(q), nodes?.ask(q) ?? []])
      return combine(q, [nodes === null ? here : named(q, here, nodes.self), ...there])
    }
    // What Redis held when this was asked is delivered here first: an event whose publisher was
    // answered before the question came goes before a change of a stream's channels, or its end.
    await this.catchUp()
    const here = await node.answer(q)
    const at = nodes?.presence.nodeOf(holder)
    if (!isNone(q, here) || nodes === null || at === this.name) return here
    // Not in the snapshots yet (a stream opened elsewhere a moment ago): every node is asked, and
    // only the one holding it answers other than none.
    return combine(q, await (at === undefined ? nodes.askEveryone(q) : nodes.ask(q, [at])))
  }

  catchUp(): Promise<void> {
    return this.stream?.catchUp() ?? Promise.resolve()
  }

  /** Say goodbye (bounded by REDIS_ASK_TIMEOUT_MS), then close the connections. */
  async close(): Promise<void> {
    if (this.shut) return
    this.shut = true
    if (this.upkeepTimer !== null) clearInterval(this.upkeepTimer)
    for (const timer of [this.refillTimer, this.probing]) if (timer !== null) clearTimeout(timer)
    this.stream?.close()
    for (const pos of [...this.waiting.keys()]) this.answer(pos)
    if (this.nodes !== null && this.links[0]?.ready === true) {
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, L.REDIS_ASK_TIMEOUT_MS)))
      await Promise.race([this.nodes.leave().catch(() => {}), late])
      clearTimeout(timer)
    }
    for (const l of this.links) l.close()
  }

  // ---------------------------------------------------------------- the read

  private delivered(pos: number, e: BusEvent): void {
    this.node!.deliver(e)
    if (this.waiting.size > 0) this.answer(pos)
  }

  private answer(pos: number): void {
    const w = this.waiting.get(pos)
    if (w === undefined) return
    this.waiting.delete(pos)
    clearTimeout(w.timer)
    w.resolve({ id: w.id, delivered: this.count(w.target) })
  }

  /** Streams a target reaches: here exactly (told as they open and close), elsewhere from the last snapshots. */
  private count(target: WireTarget): number {
    return this.nodes?.presence.count(target) ?? this.node!.count(target)
  }

  /** Who is connected anywhere in the cluster: the cluster's presence holds this node's streams and the others' last snapshots. */
  private readonly anywhere: Whereabouts = {
    userOnline: (user) => (this.nodes?.presence ?? this.node!).userOnline(user),
    clientExists: (id) => (this.nodes === null ? this.node!.clientExists(id) : this.nodes.presence.nodeOf(id) !== undefined),
  }

  // ---------------------------------------------------------------- upkeep

  /**
   * Every REDIS_PRESENCE_MS: does Redis answer (a TIME, which also keeps the clock; and the
   * blocked read), and this node's snapshot. A Redis that hangs keeps its connections open, so
   * only a missing answer says it is gone.
   */
  private upkeep(): void {
    if (this.probing === null) this.probe()
    if (this.stream!.stalled(performance.now())) this.setState('down', `redis has not answered the read in ${L.REDIS_BLOCK_MS + L.REDIS_ANSWER_MS} ms`)
    // One at a time: a Redis that hangs must not pile up snapshots to write when it goes on.
    if (!this.exchanging) void this.exchange()
  }

  /** Ask Redis its time: up when it answers (and the stream can be read), down when it does not within REDIS_ANSWER_MS. */
  private probe(): void {
    if (this.probing !== null) clearTimeout(this.probing)
    const timer = setTimeout(() => this.setState('down', `redis has not answered in ${L.REDIS_ANSWER_MS} ms`), L.REDIS_ANSWER_MS)
    this.probing = timer
    const done = (): void => {
      clearTimeout(timer)
      if (this.probing === timer) this.probing = null
    }
    this.clock.sample(this.links[0]!).then(
      () => {
        done()
        if (this.up) this.setState('up', '')
      },
      (err: Error) => {
        done()
        this.setState('down', err.message)
      },
    )
  }

  /** Share this node's snapshot, read the others', and check the epoch. */
  private async exchange(): Promise<void> {
    this.exchanging = true
    try {
      await Promise.all([this.nodes!.exchange(), this.stream!.checkEpoch()])
    } catch (err) {
      this.setState('down', (err as Error).message)
    } finally {
      this.exchanging = false
    }
  }

  private setState(state: BusState, detail: string): void {
    if (this.shut || state === this.current) return
    this.current = state
    for (const fn of this.watchers) fn(state, detail)
  }

  /**
   * The next block of stream ids for this node (its own streams, or the spare a primary hands
   * on). While Redis gives none, it is asked again every ID_BLOCK_RETRY_MS, so the spare is there
   * again soon after Redis is.
   */
  private refill(): void {
    if (this.refilling || this.shut) return
    this.refilling = true
    this.fetchBlock().then(
      (block) => {
        this.refilling = false
        this.ids.give(block)
      },
      () => {
        this.refilling = false
        this.refillTimer = setTimeout(() => this.refill(), L.ID_BLOCK_RETRY_MS)
      },
    )
  }

  /** A block from Redis, or a rejection (503) when Redis refuses or has not answered within REDIS_ANSWER_MS. */
  private async fetchBlock(): Promise<IdBlock> {
    const last = await within(this.stream!.idBlock(L.CLIENT_ID_BLOCK), L.REDIS_ANSWER_MS, unavailable)
    return [last - L.CLIENT_ID_BLOCK + 1, last]
  }
}
