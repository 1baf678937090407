// The server side of the demo pages in public/: chat presence (chat.html), live stats on channel
// `monitor` (monitor.html) and a simulated long task per `task` stream (progress.html). Uses the
// public library API only, so it is also the example of per-connection work driven by the
// `connect` and `disconnect` events, like VB6's RunTask and Monitor handlers and SimpleW's sessions.
//
// Who gets what is decided by the roles of the stream's token (`ClientView.roles`), the same
// rights the routes check: presence only among `publish` streams (the ones that may post to the
// room), samples only to `admin` streams (the ones that may read `GET /stats`). Nothing here goes
// into the history every channel shares: every event is a send() to one stream.

import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import type { ClientView, DropReason, SseServer } from './index.js'

/**
 * A stream on this channel whose token has the `publish` role is in the chat room: its open and
 * close become `presence` events, sent to the other such streams. Other streams on it get the
 * room's messages but no presence, and are not shown.
 */
export const CHAT_CHANNEL = 'chat'
/**
 * While at least one stream whose token has the `admin` role is on this channel, each such
 * stream gets a `stats` event every `monitorMs`. Any other stream on it gets one `denied` event.
 */
export const MONITOR_CHANNEL = 'monitor'
/** Opening a stream on this channel starts a task that reports `progress`, then `complete`, to that stream alone. */
export const TASK_CHANNEL = 'task'

export const DEFAULT_MONITOR_MS = 1_000 // one stats sample a second: a chart point per second
export const DEFAULT_TASK_STEP_MS = 300 // 11 steps (0, 10 ... 100 %): about 3 s, long enough to watch
const TASK_STEP_PERCENT = 10
const LOOP_DELAY_RESOLUTION_MS = 10 // the event-loop delay sampler's period (perf_hooks default)

// The two roles that grant rights (docs/production.md "Flags", `--users`): `publish` for POST /publish,
// `admin` for /stats, /metrics and DELETE /clients. A --publish-token has both, a --token neither.
const ROLE_PUBLISH = 'publish'
const ROLE_ADMIN = 'admin'
/** The `reason` of the `denied` event a monitor stream without the `admin` role gets. */
export const MONITOR_DENIED_REASON = 'the monitor feed needs a token with the admin role'

export interface DemoOptions {
  /** Period of the `stats` event on channel `monitor`; default 1000 ms. */
  monitorMs?: number
  /** Time between two `progress` events of the demo task; default 300 ms. */
  taskStepMs?: number
}

/**
 * Data of a `presence` event, sent to chat streams whose token has the `publish` role. Deltas:
 * a stream that joins gets one `snapshot` of the room (itself included), then its own `join`;
 * after that, each `join` and `leave` names one stream, so an event's size does not grow with the
 * room. Not kept for replay: a page that reconnects learns the room from its new snapshot.
 */
export type ChatPresence = PresenceSnapshot | PresenceJoin | PresenceLeave

/** The room as a joining stream finds it: its first presence event. */
export interface PresenceSnapshot {
  type: 'snapshot'
  /** Every stream in the room, oldest first; the new one is last. */
  online: number[]
  /** `ready.user` of the streams in `online` that have one (key: the stream id), as a page would draw them. */
  users: Record<string, string>
}

/** A stream came into the room; the new stream gets its own too, right after its snapshot. */
export interface PresenceJoin {
  type: 'join'
  /** The stream that opened (the `client` of its `ready` event). */
  client: number
  /** `ready.user` of that stream: a `--users` name, or null for a plain token. */
  user: string | null
}

/** A stream left the room. */
export interface PresenceLeave {
  type: 'leave'
  /** The stream that closed. */
  client: number
  user: string | null
  /** Why: `closed` by the client, or the server's drop reason. */
  reason: DropReason | 'closed'
}

/** Data of the one `denied` event a `monitor` stream without the `admin` role gets. */
export interface MonitorDenied {
  reason: string
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
  // The chat room: stream id → ready.user, for `publish` streams only. Insertion order is join
  // order, which is what a snapshot's `online` promises.
  const chatters = new Map<number, string | null>()
  // `monitor` streams with the `admin` role: the ones samples go to, and what keeps the timer on.
  const watchers = new Set<number>()
  const tasks = new Map<number, NodeJS.Timeout>()
  const monitor = new Monitor(server, monitorMs, watchers)

  const onConnect = (client: ClientView): void => {
    if (client.channels.includes(CHAT_CHANNEL) && client.roles.includes(ROLE_PUBLISH)) join(client)
    if (client.channels.includes(MONITOR_CHANNEL)) {
      if (client.roles.includes(ROLE_ADMIN)) {
        watchers.add(client.id)
        monitor.start()
      } else {
        const denied: MonitorDenied = { reason: MONITOR_DENIED_REASON }
        server.send(client.id, { event: 'denied', data: JSON.stringify(denied) })
      }
    }
    if (client.channels.includes(TASK_CHANNEL)) startTask(client.id)
  }

  const onDisconnect = (client: ClientView, reason: DropReason | 'closed'): void => {
    if (chatters.delete(client.id) && reason !== 'shutdown') {
      // At shutdown every stream is closing: a leave would only put bytes before their last chunk.
      // Otherwise a microtask later: a stream dropped as slow is dropped from inside a fan-out,
      // and a send should not start while that one is still unwinding.
      const leave: PresenceLeave = { type: 'leave', client: client.id, user: client.user, reason }
      queueMicrotask(() => presence(chatters.keys(), leave))
    }
    if (watchers.delete(client.id) && watchers.size === 0) monitor.stop()
    const task = tasks.get(client.id)
    if (task !== undefined) {
      // The task belongs to its stream: nobody is left to report to.
      clearTimeout(task)
      tasks.delete(client.id)
    }
  }

  // Synchronous, from `connect`: the new stream has had its ready and replay, so its snapshot is
  // its first live event and its join the second; every other chat stream sees the join in the
  // same order relative to chat messages (a send() first writes out what was published before it).
  function join(client: ClientView): void {
    chatters.set(client.id, client.user)
    const users: Record<string, string> = {}
    for (const [id, user] of chatters) if (user !== null) users[id] = user
    const snapshot: PresenceSnapshot = { type: 'snapshot', online: [...chatters.keys()], users }
    presence([client.id], snapshot)
    presence(chatters.keys(), { type: 'join', client: client.id, user: client.user })
  }

  // send(), one stream at a time, rather than publish(): presence is not kept in the history that
  // every channel shares (where the comings and goings of streams would push the room's messages,
  // and everyone else's, out of replay), and it reaches only the `publish` streams of the room.
  // The price is one small encoding per recipient. A send can drop a slow stream, whose
  // disconnect deletes it from `chatters` while this walks it: a Map's iterator allows that.
  function presence(to: Iterable<number>, p: ChatPresence): void {
    const msg = { event: 'presence', data: JSON.stringify(p) }
    for (const id of to) server.send(id, msg)
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
      // The page closes its stream on `complete`; closing it here would make the page's client
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

/** The `monitor` feed: a timer and an event-loop delay histogram that run only while an admin watches. */
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
    // send() to each watcher rather than publish(): samples reach only `admin` streams (they hold
    // what GET /stats shows: other users' channels, the process's memory) and are not kept for
    // replay. A monitor that reconnects wants the present, and one event a second would push chat
    // messages out of the history ring that every channel shares. The price is one encoding per watcher.
    for (const id of this.watchers) this.server.send(id, msg)
  }
}

const round2 = (n: number): number => Math.round(n * 100) / 100
