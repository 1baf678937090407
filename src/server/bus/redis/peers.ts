// The other nodes of a Redis cluster, as this one knows them. Twice a second every node writes a
// snapshot of itself (its /stats figures, and its streams when they changed) in a hash that
// expires when the node stops writing, and reads the others': from them come `delivered`, `404
// offline`, the cluster's /stats and who holds a stream, at most a second or two old (the
// contract's "at most 2 s"). Questions that must reach a node now (close a stream, close all)
// go over pub/sub and are answered by number, like a `--workers` primary asks its workers.
//
// Keys: {p}:nodes (sorted set: node name → expiry, ms), {p}:node:NAME (hash: v version, s stats
// JSON, c streams JSON); channels {p}:control (questions to all) and {p}:reply:NAME (answers).

import * as L from '../../limits.js'
import type { BusNode, NodeFigures, StreamInfo } from '../bus.js'
import type { NodeStats, Question, WireStream } from '../workers/ipc.js'
import { Presence } from '../presence.js'
import { Questions } from '../questions.js'
import type { RedisLink } from './client.js'

/** A node's entries in /stats `nodes`: itself, or (a machine's primary) each of its workers as NAME/worker-K. */
export function nodeEntries(name: string, figures: NodeFigures, bus: 'up' | 'down'): NodeStats[] {
  if (figures.nodes === undefined) return [{ ...figures, node: name, pid: process.pid, bus }]
  return figures.nodes.map((n) => ({ ...n, node: `${name}/${n.node}`, bus }))
}

interface Peer {
  readonly index: number
  version: string
  figures: NodeFigures | null
}

type Control = { from: string; n: number } & Question
type Reply = { from: string; n: number; value: unknown }

export class Peers {
  /** Every other node's streams (by peer index): what a target reaches elsewhere. */
  readonly presence = new Presence()
  private readonly own = new Map<number, WireStream>()
  private ownVersion = 0
  private writtenVersion = -1
  private readonly peers = new Map<string, Peer>()
  private nextIndex = 1
  /** This node's questions to the others, by node name. */
  private readonly questions = new Questions<string>()
  private readonly keys: { nodes: string; control: string; reply: string; replyTo: (name: string) => string; node: (name: string) => string }

  constructor(
    private readonly link: RedisLink,
    private readonly sub: RedisLink,
    prefix: string,
    readonly name: string,
    private readonly node: () => BusNode,
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

  opened(s: StreamInfo): void {
    this.own.set(s.id, [s.id, s.user, s.channels, s.roles])
    this.ownVersion++
  }

  closed(id: number): void {
    if (this.own.delete(id)) this.ownVersion++
  }

  /** Live peers. */
  get size(): number {
    return this.peers.size
  }

  /** The other nodes' latest figures. */
  figures(): NodeFigures[] {
    return [...this.peers.values()].flatMap((p) => (p.figures === null ? [] : [p.figures]))
  }

  /** Write this node's snapshot and read the others'; every REDIS_PRESENCE_MS. `bus` goes into this node's figures. */
  async exchange(bus: 'up' | 'down'): Promise<void> {
    const now = Date.now()
    const figures = await this.node().stats()
    const nodes = nodeEntries(this.name, figures, bus)
    const key = this.keys.node(this.name)
    const fields = ['v', String(this.ownVersion), 's', JSON.stringify({ ...figures, nodes })]
    if (this.writtenVersion !== this.ownVersion) fields.push('c', JSON.stringify([...this.own.values()]))
    const written = this.ownVersion
    const [added] = await Promise.all([
      this.link.send(['HSET', key, ...fields]) as Promise<number>,
      this.link.send(['PEXPIRE', key, String(L.REDIS_PRESENCE_TTL_MS)]),
      this.link.send(['ZADD', this.keys.nodes, String(now + L.REDIS_PRESENCE_TTL_MS), this.name]),
      this.link.send(['ZREMRANGEBYSCORE', this.keys.nodes, '-inf', String(now)]),
    ])
    // A hash that was not there (it expired, or Redis lost it) gets the streams too, now.
    if (added > 0 && fields.length === 4) await this.link.send(['HSET', key, 'c', JSON.stringify([...this.own.values()])])
    this.writtenVersion = written
    const names = ((await this.link.send(['ZRANGE', this.keys.nodes, '0', '-1'])) as string[]).filter((n) => n !== this.name)
    const listed = new Set(names)
    for (const [name, p] of this.peers) {
      if (listed.has(name)) continue
      this.presence.nodeGone(p.index)
      this.peers.delete(name)
      this.questions.gone(name)
    }
    await Promise.all(names.map((name) => this.readPeer(name)))
  }

  /** Say goodbye: the others forget this node now rather than when its snapshot expires. */
  async leave(): Promise<void> {
    await Promise.all([this.link.send(['ZREM', this.keys.nodes, this.name]), this.link.send(['DEL', this.keys.node(this.name)])])
  }

  /** Ask every other node; resolves with the answers that came within REDIS_ASK_TIMEOUT_MS. */
  ask(q: Question): Promise<unknown[]> {
    const send = (n: number): Promise<unknown> => this.link.send(['PUBLISH', this.keys.control, JSON.stringify({ from: this.name, n, ...q } satisfies Control)])
    return this.questions.ask(this.peers.keys(), send, L.REDIS_ASK_TIMEOUT_MS)
  }

  private async readPeer(name: string): Promise<void> {
    const key = this.keys.node(name)
    const [version, stats] = (await this.link.send(['HMGET', key, 'v', 's'])) as [string | null, string | null]
    if (version === null || stats === null) return
    let p = this.peers.get(name)
    if (p === undefined) this.peers.set(name, (p = { index: this.nextIndex++, version: '', figures: null }))
    p.figures = JSON.parse(stats) as NodeFigures
    if (p.version === version) return
    const streams = (await this.link.send(['HGET', key, 'c'])) as string | null
    if (streams === null) return
    this.presence.nodeGone(p.index)
    for (const s of JSON.parse(streams) as WireStream[]) this.presence.opened(p.index, s)
    p.version = version
  }

  /** Another node's question about our streams. */
  private async question(msg: Control): Promise<void> {
    if (msg.from === this.name) return
    const node = this.node()
    let value: unknown
    if (msg.q === 'close-all') value = await node.closeAll()
    else if (msg.q === 'close-client') value = await node.closeClient(msg.id)
    else return
    const reply: Reply = { from: this.name, n: msg.n, value }
    await this.link.send(['PUBLISH', this.keys.replyTo(msg.from), JSON.stringify(reply)]).catch(() => {})
  }
}
