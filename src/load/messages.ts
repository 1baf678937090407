// What the coordinator of `rawsse bench` (bench.ts) and its groups of streams (worker.ts) say to
// each other: in one process as function calls, or over the IPC channel of a forked worker.

/** The environment variable that makes a forked copy of this module a worker. */
export const WORKER_ENV = 'RAWSSE_BENCH_WORKER'

export interface GroupConfig {
  /** The stream URL. */
  url: string
  /** Request header fields after Host, in order. */
  fields: Array<[string, string]>
  /** The index of this group's first stream among all streams (picks source addresses). */
  firstIndex: number
  count: number
  /** Connections per second for this group. */
  connectRate: number
  template: string
  /** The publisher's window W; 0 when it publishes at a rate (no window to report for) or not at all. */
  window: number
  /** Bind streams to 127.0.0.1, 127.0.0.2, … (the target is a loopback address). */
  rotateSources: boolean
}

/** Coordinator → group. */
export type ToGroup =
  | { type: 'init'; config: GroupConfig }
  /** Publishing starts; deliveries received from `warmupEndUs` on are the measured ones. */
  | { type: 'start'; warmupEndUs: number }
  /** The coordinator's once-a-second question (--out): the latencies since the last one. */
  | { type: 'sample' }
  | { type: 'stop' }

export interface GroupFinal {
  connected: number
  connectErrors: number
  /** Streams that ended or failed after they had connected. */
  streamErrors: number
  received: number
  duplicates: number
  receivedMeasured: number
  /** Monotonic µs of the last delivery, 0 when none. */
  lastReceiveUs: number
  hist: number[]
  histCount: number
  histMax: number
  histMeasured: number[]
  histMeasuredCount: number
  histMeasuredMax: number
  /** This process's CPU time in µs (forked groups only; an in-process group's is the coordinator's). */
  cpuUserUs: number
  cpuSystemUs: number
  firstError: string | null
}

/** What a group has seen so far: the coordinator's window, drain and progress line read it. */
export interface Progress {
  /** Every open stream of the group has received every seq up to this; -1: no open streams. */
  allUpTo: number
  received: number
  streamErrors: number
  connected: number
  connectErrors: number
}

/** Group → coordinator. */
export type FromGroup =
  /** A forked group listens for messages now (it is sent `init` then). */
  | { type: 'hello' }
  | { type: 'connected'; connected: number; connectErrors: number; firstError: string | null }
  | ({ type: 'progress' } & Progress)
  | { type: 'final'; final: GroupFinal }
  | ({ type: 'sample' } & GroupSample)

/** A group's deliveries since the last sample: their latency histogram, sparse (Histogram.sparse). */
export interface GroupSample {
  hist: number[]
  histMax: number
}
