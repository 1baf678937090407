// Questions about streams that only the process holding them can answer (close one, close all,
// change one's channels, their figures), asked anywhere in a cluster: what each is, how it travels, how the answers of
// several nodes make one, and answerLocally(), which answers it where the streams are. The buses
// only carry them, each question numbered by Questions: a worker asks its primary over IPC, a
// primary its workers, a Redis node the others over pub/sub. A new question is one member of
// Question and Answers, one way in WAYS, one case in answerLocally, and what it does where there
// is no stream (NO_STREAMS); the holder (SseServer) does the rest.

import type { ChannelsAnswer, ChannelsQuestion } from '../live-channels.js'
import { sumStats, type Stats } from '../metrics.js'
import type { BusState } from './bus.js'

/** A question about the cluster's streams. */
export type Question = { q: 'close-client'; id: number } | { q: 'close-all' } | { q: 'stats' } | ChannelsQuestion

interface Answers {
  /** Closed; false: no such stream. */
  'close-client': boolean
  /** Streams closed. */
  'close-all': number
  stats: NodeFigures
  /** The stream's channels after the change, or why not; null: no such stream. */
  channels: ChannelsAnswer
}

export type Answer<Q extends Question = Question> = Answers[Q['q']]

/** One node's part of a cluster's /stats (its `nodes` entry). */
export interface NodeStats extends Stats {
  node: string
  pid: number
  bus: BusState
}

/** A node's figures: its own, and (a node for several processes) each of theirs. */
export type NodeFigures = Stats & { nodes?: NodeStats[] }

/** What a node's answers carry when they leave it: its name, process and bus, for /stats `nodes`. */
export interface NodeName {
  node: string
  pid: number
  bus: BusState
}

/** What holds streams and acts on them: a server; or a primary, which holds none but has figures. */
export interface StreamHolder {
  closeClient(id: number): boolean
  closeAll(): number
  stats(): Stats
  changeChannels(q: ChannelsQuestion): ChannelsAnswer
}

/** What each action does where there is no stream (a primary, whose figures are its own). */
export const NO_STREAMS: Omit<StreamHolder, 'stats'> = {
  closeClient: () => false,
  closeAll: () => 0,
  changeChannels: () => null,
}

/** The answer of the process holding the streams. */
export function answerLocally<Q extends Question>(node: StreamHolder, question: Q): Answer<Q> {
  const q: Question = question
  const answer = (a: Answer): Answer<Q> => a as Answer<Q>
  switch (q.q) {
    case 'close-client':
      return answer(node.closeClient(q.id))
    case 'close-all':
      return answer(node.closeAll())
    case 'stats':
      return answer(node.stats())
    case 'channels':
      return answer(node.changeChannels(q))
    default:
      // From another process: whatever came over Redis's pub/sub, or a newer version's question.
      throw new TypeError(`no such question: ${JSON.stringify((q as { q: unknown }).q)}`)
  }
}

/** How a question travels: to the node holding one stream, or to every node. */
type Way<Q extends Question, A> =
  | {
      /** The stream whose holder answers; every other node answers `none`. */
      readonly holder: (q: Q) => number
      readonly none: A
    }
  | {
      /** Every node's answer as one; the first is the asking node's own. */
      readonly combine: (answers: readonly A[]) => A
      /** The answer as it leaves its node for another (absent: as it is). */
      readonly named?: (a: A, self: NodeName) => A
    }

const WAYS: { readonly [K in Question['q']]: Way<Extract<Question, { q: K }>, Answers[K]> } = {
  'close-client': { holder: (q) => q.id, none: false },
  'close-all': { combine: (counts) => counts.reduce((n, c) => n + c, 0) },
  channels: { holder: (q) => q.id, none: null },
  stats: { combine: mergeStats, named: nameFigures },
}

/** The question every node of a Redis cluster answers in its snapshot, twice a second: read there, a moment old, rather than asked. */
export const SHARED = { q: 'stats' } as const satisfies Question

function wayOf<Q extends Question>(q: Q): Way<Q, Answer<Q>> {
  // A question may come from another process (anyone with the Redis password may publish one).
  if (!Object.hasOwn(WAYS, q.q)) throw new TypeError(`no such question: ${JSON.stringify(q.q)}`)
  return WAYS[q.q] as unknown as Way<Q, Answer<Q>>
}

/** The stream whose holder alone answers `q`; undefined when every node answers. */
export function holderOf(q: Question): number | undefined {
  const way = wayOf(q)
  return 'holder' in way ? way.holder(q) : undefined
}

/** Whether `a` says "not here": the answer of a node that does not hold the stream a question is about. */
export function isNone<Q extends Question>(q: Q, a: Answer<Q>): boolean {
  const way = wayOf(q)
  return 'none' in way && a === way.none
}

/**
 * The answers of the nodes asked as one: for a question about one stream, the holder's (none:
 * nobody holds it); else every node's combined, the asking node's own first.
 */
export function combine<Q extends Question>(q: Q, answers: ReadonlyArray<Answer<Q>>): Answer<Q> {
  const way = wayOf(q)
  if ('combine' in way) return way.combine(answers)
  return answers.find((a) => a !== way.none) ?? way.none
}

/** A node's answer as it leaves the node for another. */
export function named<Q extends Question>(q: Q, a: Answer<Q>, self: NodeName): Answer<Q> {
  const way = wayOf(q)
  return 'combine' in way && way.named !== undefined ? way.named(a, self) : a
}

/** A node's figures with its name: its own `nodes` entry, or (a primary) each worker's under its name. */
function nameFigures(f: NodeFigures, self: NodeName): NodeFigures {
  const nodes = f.nodes === undefined ? [{ ...f, ...self }] : f.nodes.map((n) => ({ ...n, node: `${self.node}/${n.node}`, bus: self.bus }))
  return { ...f, nodes }
}

/**
 * A cluster's figures from its nodes': counts summed; what every node has alike (events
 * published, history, uptime) from the first, the asking node's own; and the named nodes.
 */
function mergeStats(parts: readonly NodeFigures[]): NodeFigures {
  return { ...sumStats(parts, parts[0]!), nodes: parts.flatMap((p) => p.nodes ?? []) }
}

// ---------------------------------------------------------------- numbering

interface Waiting<K> {
  pending: Set<K>
  values: unknown[]
  done: (values: unknown[]) => void
  timer: NodeJS.Timeout | null
}

/**
 * Questions (and a worker's publishes) one member of a cluster asks others, by number: the
 * answer is every value that came, once each asked member has answered, left, or the deadline
 * passed.
 */
export class Questions<K> {
  private asked = 0
  private readonly waiting = new Map<number, Waiting<K>>()

  /**
   * Ask `of` (each must answer through answered()); `send(n)` puts question number `n` on the
   * wire, and a rejection from it ends the question with what came. Without `timeoutMs` it waits
   * for every one of them (or gone()).
   */
  ask(of: Iterable<K>, send: (n: number) => void | Promise<unknown>, timeoutMs?: number): Promise<unknown[]> {
    const pending = new Set(of)
    if (pending.size === 0) return Promise.resolve([])
    return new Promise((done) => {
      const n = ++this.asked
      const timer = timeoutMs === undefined ? null : setTimeout(() => this.end(n), timeoutMs)
      this.waiting.set(n, { pending, values: [], done, timer })
      void Promise.resolve(send(n)).catch(() => this.end(n))
    })
  }

  answered(n: number, from: K, value: unknown): void {
    const w = this.waiting.get(n)
    if (w === undefined || !w.pending.delete(from)) return
    w.values.push(value)
    if (w.pending.size === 0) this.end(n)
  }

  /** `from` left: no answer is awaited from it any more. */
  gone(from: K): void {
    for (const [n, w] of this.waiting) if (w.pending.delete(from) && w.pending.size === 0) this.end(n)
  }

  private end(n: number): void {
    const w = this.waiting.get(n)
    if (w === undefined) return
    this.waiting.delete(n)
    if (w.timer !== null) clearTimeout(w.timer)
    w.done(w.values)
  }
}
