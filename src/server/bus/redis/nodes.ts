// The nodes of a Redis cluster as this one knows them. Twice a second every node writes a
// snapshot of itself (its /stats figures, and its streams when they changed) in a hash that
// expires when the node stops writing, and reads the others': from them come who is connected
// where (presence.ts, this node's own streams included: `delivered`, `404 offline`, who holds a
// stream) and the cluster's /stats, at most a second or two old (the contract's "at most 2 s").
// A snapshot read again is applied as a difference, so a stream that stayed is never dropped
// and added again. Questions that must reach a node now (close a stream, close all) go over
// pub/sub and are answered by number, as a `--workers` primary asks its workers.
//
// Keys: {p}:nodes (sorted set: node name → expiry, ms), {p}:node:NAME (hash: v version, s the
// node's /stats answer JSON, p its streams JSON: StreamFacts objects; `c`, which held them as
// tuples, is the field of the versions before, so nodes of both see each other's figures and
// neither misreads the other's streams); channels {p}:control (questions to all) and
// {p}:reply:NAME (answers).

import * as L from '../../limits.js'
import type { BusNode, BusState } from '../bus.js'
import { Presence } from '../presence.js'
import { holderOf, named, Questions, SHARED, type Answer, type NodeFigures, type NodeName, type Question } from '../questions.js'
import { factsOf, type StreamFacts } from '../wire.js'
import type { RedisLink } from './client.js'

/** Another node, as its last snapshot showed it. */
interface OtherNode {
  version: string
  /** Its answer to the shared question (stats). */
  shared: NodeFigures | null
}

/** Another node's streams, as of a version of its snapshot. */
interface Snapshot {
  version: string
  streams: StreamFacts[]
}

type Control = { from: string; n: number } & Question
type Reply = { from: string; n: number; value: unknown }

export class ClusterNodes {
  /** Every stream of the cluster, by node name: this node's own now, the others' from their snapshots. */
  readonly presence = new Presence<string>()
  private ownVersion = 0
  private writtenVersion = -1
  private readonly others = new Map<string, OtherNode>()
  /** This node's questions to the others, by node name. */
  private readonly questions = new Questions<string>()
  private readonly keys: { nodes: string; control: string; reply: string; replyTo: (name: string) => string; node: (name: string) => string }

  constructor(
    private readonly link: RedisLink,
    private readonly sub: RedisLink,
    prefix: string,
    readonly name: string,
    private readonly node: () => BusNode,
    /** Whether this node's bus answers, which its figures say. */
    private readonly state: () => BusState,
    /** Resolves once this node has read what Redis holds now (bounded): see question(). */
    private readonly caughtUp: () => Promise<void>,
  ) {
    const k = (s: string): string => `{${prefix}}:${s}`
    this.keys = { nodes: k('nodes'), control: k('control'), reply: k(`reply:${name}`), replyTo: (n) => k(`reply:${n}`), node: (n) => k(`node:${n}`) }
  }

  /** Listen for questions and answers (the subscription survives reconnections). */
  listen(): Promise<void> {
    return this.sub.subscribe([this.keys.control, this.keys.reply], (message, channel) => {
      // Whatever comes on these channels (anyone with the Redis password may publish there), and a
      // failed answer, is warned, never thrown: the asker stops waiting for it at its timeout.
      const failed = (err: Error): void => process.emitWarning(`rawsse: a message of another node on ${channel} failed: ${err.message}`)
      try {
        if (channel !== this.keys.reply) return void this.question(JSON.parse(message) as Control).catch(failed)
        const r = JSON.parse(message) as Reply
        this.questions.answered(r.n, r.from, r.value)
      } catch (err) {
        failed(err as Error)
      }
    })
  }

  /** A stream of this node opened, or its facts changed. */
  opened(s: StreamFacts): void {
    this.presence.set(this.name, factsOf(s))
    this.ownVersion++
  }

  closed(id: number): void {
    if (this.presence.nodeOf(id) !== this.name) return
    this.presence.delete(id)
    this.ownVersion++
  }

  /** Every live node's name, this one's first (the others as of the last exchange). */
  *names(): Iterable<string> {
    yield this.name
    yield* this.others.keys()
  }

  /** This node's name as its answers carry it. */
  get self(): NodeName {
    return { node: this.name, pid: process.pid, bus: this.state() }
  }

  /** Write this node's snapshot and read the others'; every REDIS_PRESENCE_MS. */
  async exchange(): Promise<void> {
    const now = Date.now()
    const figures = named(SHARED, await this.node().answer(SHARED), this.self)
    const key = this.keys.node(this.name)
    const fields = ['v', String(this.ownVersion), 's', JSON.stringify(figures)]
    const streams = (): string => JSON.stringify(this.presence.streamsOf(this.name))
    if (this.writtenVersion !== this.ownVersion) fields.push('p', streams())
    const written = this.ownVersion
    const [added] = await Promise.all([
      this.link.send(['HSET', key, ...fields]) as Promise<number>,
      this.link.send(['PEXPIRE', key, String(L.REDIS_PRESENCE_TTL_MS)]),
      this.link.send(['ZADD', this.keys.nodes, String(now + L.REDIS_PRESENCE_TTL_MS), this.name]),
      this.link.send(['ZREMRANGEBYSCORE', this.keys.nodes, '-inf', String(now)]),
    ])
    // A hash that was not there (it expired, or Redis lost it) gets the streams too, now.
    if (added > 0 && fields.length === 4) await this.link.send(['HSET', key, 'p', streams()])
    this.writtenVersion = written
    const names = ((await this.link.send(['ZRANGE', this.keys.nodes, '0', '-1'])) as string[]).filter((n) => n !== this.name)
    const listed = new Set(names)
    const gone = [...this.others.keys()].filter((name) => !listed.has(name))
    for (const name of gone) {
      this.others.delete(name)
      this.questions.gone(name)
    }
    // Every snapshot read before any is applied, and applied together: a user whose stream moved
    // from one node to another between two exchanges stays connected throughout.
    const read = new Map<string, Snapshot>()
    const results = await Promise.allSettled(names.map((name) => this.readOther(name, read)))
    this.presence.replace(new Map([...read].map(([name, r]) => [name, r.streams])), gone)
    for (const [name, r] of read) this.others.get(name)!.version = r.version
    const failed = results.find((r) => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  }

  /** Say goodbye: the others forget this node now rather than when its snapshot expires. */
  async leave(): Promise<void> {
    await Promise.all([this.link.send(['ZREM', this.keys.nodes, this.name]), this.link.send(['DEL', this.keys.node(this.name)])])
  }

  /**
   * The other nodes' answers (`to`: only these): the shared question's from their snapshots; any
   * other asked over pub/sub, with the answers that came within REDIS_ASK_TIMEOUT_MS.
   */
  async ask<Q extends Question>(q: Q, to: Iterable<string> = this.others.keys()): Promise<Array<Answer<Q>>> {
    if (q.q === SHARED.q) return [...this.others.values()].flatMap((o) => (o.shared === null ? [] : [o.shared as Answer<Q>]))
    const send = (n: number): Promise<unknown> => this.link.send(['PUBLISH', this.keys.control, JSON.stringify({ from: this.name, n, ...q } satisfies Control)])
    return (await this.questions.ask(to, send, L.REDIS_ASK_TIMEOUT_MS)) as Array<Answer<Q>>
  }

  /**
   * Every other node's answer, the nodes listed in Redis now: one that joined a moment ago (and
   * holds a stream opened there since) is not among the snapshots read yet.
   */
  async askEveryone<Q extends Question>(q: Q): Promise<Array<Answer<Q>>> {
    const names = ((await this.link.send(['ZRANGE', this.keys.nodes, '0', '-1'])) as string[]).filter((n) => n !== this.name)
    return this.ask(q, names)
  }

  /** Another node's figures, and (into `read`) its streams when their version moved. */
  private async readOther(name: string, read: Map<string, Snapshot>): Promise<void> {
    const key = this.keys.node(name)
    const [version, figures] = (await this.link.send(['HMGET', key, 'v', 's'])) as [string | null, string | null]
    if (version === null || figures === null) return
    let o = this.others.get(name)
    if (o === undefined) this.others.set(name, (o = { version: '', shared: null }))
    o.shared = JSON.parse(figures) as NodeFigures
    if (o.version === version) return
    const streams = (await this.link.send(['HGET', key, 'p'])) as string | null
    if (streams === null) return
    read.set(name, { version, streams: JSON.parse(streams) as StreamFacts[] })
  }

  /**
   * Another node's question about our streams, answered with this node's name. One about a stream
   * waits for this node to have read what Redis held when it came: the events whose publishers were
   * answered before it was asked reach the stream before a change of its channels, or its end.
   */
  private async question(msg: Control): Promise<void> {
    if (msg.from === this.name) return
    const { from, n, ...rest } = msg
    const q = rest as Question
    if (holderOf(q) !== undefined) await this.caughtUp()
    const value = named(q, await this.node().answer(q), this.self)
    const reply: Reply = { from: this.name, n, value }
    await this.link.send(['PUBLISH', this.keys.replyTo(from), JSON.stringify(reply)]).catch(() => {})
  }
}
