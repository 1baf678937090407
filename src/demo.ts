// The server side of the demo pages in public/: chat presence (chat.html), live stats on channel
// `monitor` (monitor.html) and a simulated long task per `task` stream (progress.html). Uses the
// public library API only, so it is also the example of per-connection work driven by the
// `connect` and `disconnect` events, like VB6's RunTask and Monitor handlers and SimpleW's sessions.

import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import type { ClientView, DropReason, SseServer } from './index.js'

/** A stream on this channel is in the chat room: its open and close become `presence` events. */
export const CHAT_CHANNEL = 'chat'
/** While at least one stream is on this channel, each one gets a `stats` event every `monitorMs`. */
export const MONITOR_CHANNEL = 'monitor'
/** Opening a stream on this channel starts a task that reports `progress`, then `complete`, to that stream alone. */
export const TASK_CHANNEL = 'task'

export const DEFAULT_MONITOR_MS = 1_000 // one stats sample a second: a chart point per second
export const DEFAULT_TASK_STEP_MS = 300 // 11 steps (0, 10 ... 100 %): about 3 s, long enough to watch
const TASK_STEP_PERCENT = 10
const LOOP_DELAY_RESOLUTION_MS = 10 // the event-loop delay sampler's period (perf_hooks default)

export interface DemoOptions {
  /** Period of the `stats` event on channel `monitor`; default 1000 ms. */
  monitorMs?: number
  /** Time between two `progress` events of the demo task; default 300 ms. */
  taskStepMs?: number
}

/** Data of a `presence` event on channel `chat`. */
export interface Presence {
  type: 'join' | 'leave'
  /** The stream that opened or closed (the `client` of its `ready` event). */
  client: number
  /** `ready.user` of that stream: a `--users` name, or null for a plain token. */
  user: string | null
  /** Why a stream left: `closed` by the client, or the server's drop reason. Absent on join. */
  reason?: DropReason | 'closed'
  /** Every chat stream open after this change, oldest first, so a page can draw who is here. */
  online: number[]
}

/** Data of a `stats` event on channel `monitor`. */
export interface MonitorSample {
  /** Server time of the sample, ms since the epoch. */
  time: number
  clients: number
  channels: Record<string, number>
  /** Events published (and ticks sent) per second since the previous sample. */
  eventsPerSecond: number
  /** Bytes written to streams per second since the previous sample. */
  bytesPerSecond: number
  rssBytes: number
  heapUsedBytes: number
  /** Event-loop delay over the last interval (perf_hooks.monitorEventLoopDelay), ms. */
  loopDelayMs: { mean: number; p99: number; max: number }
}

/** Data of a `progress` event (`complete` carries `{"task":ID,"status":"done"}`). */
export interface TaskProgress {
  /** The task's id: the id of the stream that started it. */
  task: number
  percent: number
}

/**
 * Attach the demo to a server: call it before `listen()`, or at any time, since it only listens
 * to events. Returns a function that detaches it again and stops its timers.
 */
export function attachDemo(server: SseServer, options: DemoOptions = {}): () => void {
  const monitorMs = options.monitorMs ?? DEFAULT_MONITOR_MS
  const taskStepMs = options.taskStepMs ?? DEFAULT_TASK_STEP_MS
  // Insertion order is join order, which is what `online` promises.
  const chatters = new Set<number>()
  const watchers = new Set<number>()
  const tasks = new Map<number, NodeJS.Timeout>()
  const monitor = new Monitor(server, monitorMs, watchers)

  const onConnect = (client: ClientView): void => {
    if (client.channels.includes(CHAT_CHANNEL)) {
      chatters.add(client.id)
      // Synchronous: the join is the first live event after the new stream's ready and replay,
      // and every other chat stream sees it in the same order relative to chat messages.
      presence({ type: 'join', client: client.id, user: client.user, online: [...chatters] })
    }
    if (client.channels.includes(MONITOR_CHANNEL)) {
      watchers.add(client.id)
      monitor.start()
    }
    if (client.channels.includes(TASK_CHANNEL)) startTask(client.id)
  }

  const onDisconnect = (client: ClientView, reason: DropReason | 'closed'): void => {
    if (chatters.delete(client.id) && reason !== 'shutdown') {
      // At shutdown every stream is closing: a leave would only put bytes before their last chunk.
      // Otherwise a microtask later: a stream dropped as slow is dropped from inside a fan-out,
      // and a publish should not start while that one is still unwinding.
      const leave: Presence = { type: 'leave', client: client.id, user: client.user, reason, online: [...chatters] }
      queueMicrotask(() => presence(leave))
    }
    if (watchers.delete(client.id) && server.connections(MONITOR_CHANNEL) === 0) monitor.stop()
    const task = tasks.get(client.id)
    if (task !== undefined) {
      // The task belongs to its stream: nobody is left to report to.
      clearTimeout(task)
      tasks.delete(client.id)
    }
  }

  // publish(), so presence is kept in history like chat messages: a chat page that reconnects
  // with Last-Event-ID also learns who came and went while it was away, in order.
  function presence(p: Presence): void {
    server.publish(CHAT_CHANNEL, { event: 'presence', data: JSON.stringify(p) })
  }

  // VB6's RunTask: the stream request is the task. send() reaches that one stream; its events are
  // not kept for replay, as a reconnect is a new stream and so a new task.
  function startTask(id: number): void {
    const step = (percent: number): void => {
      const progress: TaskProgress = { task: id, percent }
      server.send(id, { event: 'progress', data: JSON.stringify(progress) })
      if (percent < 100) {
        tasks.set(id, setTimeout(() => step(Math.min(100, percent + TASK_STEP_PERCENT)), taskStepMs).unref())
        return
      }
      tasks.delete(id)
      // The page closes its stream on `complete`; closing it here would make EventSource
      // reconnect, which would start the task again.
      server.send(id, { event: 'complete', data: JSON.stringify({ task: id, status: 'done' }) })
    }
    step(0)
  }

  server.on('connect', onConnect)
  server.on('disconnect', onDisconnect)
  return () => {
    server.off('connect', onConnect)
    server.off('disconnect', onDisconnect)
    monitor.stop()
    for (const t of tasks.values()) clearTimeout(t)
    tasks.clear()
    chatters.clear()
    watchers.clear()
  }
}

/** The `monitor` feed: a timer and an event-loop delay histogram that run only while watched. */
class Monitor {
  private timer: NodeJS.Timeout | null = null
  private loop: IntervalHistogram | null = null
  private last = { at: 0n, published: 0, bytesOut: 0 }

  constructor(
    private readonly server: SseServer,
    private readonly periodMs: number,
    private readonly watchers: ReadonlySet<number>,
  ) {}

  start(): void {
    if (this.timer !== null) return
    const s = this.server.stats()
    this.last = { at: process.hrtime.bigint(), published: s.published, bytesOut: s.bytesOut }
    this.loop = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS })
    this.loop.enable()
    // unref: a feed for watchers must never be what keeps a process alive.
    this.timer = setInterval(() => this.sample(), this.periodMs).unref()
  }

  stop(): void {
    if (this.timer === null) return
    clearInterval(this.timer)
    this.timer = null
    this.loop?.disable()
    this.loop = null
  }

  private sample(): void {
    const s = this.server.stats()
    const now = process.hrtime.bigint()
    const seconds = Number(now - this.last.at) / 1e9 || 1
    const loop = this.loop!
    // The histogram records the whole time between two of its timer's runs, in nanoseconds, so
    // an idle loop reads as the resolution itself; the delay is what comes on top of that. Before
    // its first record it reads NaN (mean) or 0.
    const ms = (ns: number): number =>
      Number.isFinite(ns) && loop.count > 0 ? round2(Math.max(0, ns / 1e6 - LOOP_DELAY_RESOLUTION_MS)) : 0
    const sample: MonitorSample = {
      time: Date.now(),
      clients: s.clients,
      channels: s.channels,
      eventsPerSecond: round2((s.published - this.last.published) / seconds),
      bytesPerSecond: Math.round((s.bytesOut - this.last.bytesOut) / seconds),
      rssBytes: s.rssBytes,
      heapUsedBytes: process.memoryUsage().heapUsed,
      loopDelayMs: { mean: ms(loop.mean), p99: ms(loop.percentile(99)), max: ms(loop.max) },
    }
    loop.reset()
    this.last = { at: now, published: s.published, bytesOut: s.bytesOut }
    const msg = { event: 'stats', data: JSON.stringify(sample) }
    // send() to each watcher rather than publish(): samples are not kept for replay. A monitor
    // that reconnects wants the present, and one event a second would push chat messages out of
    // the history ring that every channel shares. The price is one encoding per watcher.
    for (const id of this.watchers) this.server.send(id, msg)
  }
}

const round2 = (n: number): number => Math.round(n * 100) / 100
