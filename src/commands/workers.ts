// `rawsse --workers N`: one cluster on one machine, Node's own node:cluster. The primary accepts
// connections and hands them round-robin to N workers, which hold the streams; it also sequences
// every event (src/server/bus/workers/primary.ts), ticks, runs the console and --stdin, prints the
// start-up lines once every worker listens, replaces a worker that dies, and stops them all on
// SIGINT/SIGTERM. A worker that cannot start (the port is taken) stops the cluster with its one
// error line and exit 1: never a restart loop. Once the cluster is up, a replacement that dies
// before it listens (killed at once, or crashing at start) is forked again after a delay that
// doubles while it keeps failing: the cluster stays up, and still never loops.

import cluster, { type Worker } from 'node:cluster'
import { attachDemo } from '../demo.js'
import { WorkerBus } from '../server/bus/workers/worker-bus.js'
import type { FromWorker, ToWorker } from '../server/bus/workers/ipc.js'
import { ClusterPrimary } from '../server/bus/workers/primary.js'
import { RedisBus } from '../server/bus/redis/redis-bus.js'
import * as L from '../server/limits.js'
import { resolveSettings, type Settings, type SseServerOptions } from '../server/options.js'
import { timeTick } from '../server/publish-rules.js'
import { Webhooks } from '../server/webhooks/webhooks.js'
import type { Args } from './args.js'
import { hookFailureLog, logServer, type Log } from './log.js'
import { busWatcher, exitWhen, logFrom, makeServer, optionsFrom, packageVersion, reload, startConsole, startupLines, type ConsoleTarget } from './serve.js'

/** A worker's place in the cluster: a replacement takes the slot (and name) of the one that died. */
interface Slot {
  readonly slot: number
  worker: Worker
  name: string
  listening: boolean
  error: string | null
}

export async function runPrimary(p: Args, count: number): Promise<void> {
  const run = new PrimaryRun(p, count)
  process.on('SIGINT', run.stop)
  process.on('SIGTERM', run.stop)
  process.on('SIGHUP', () => run.primary.tellAll({ t: 'reload' }))
  startConsole(p, run.consoleTarget())
  await run.start()
}

/** The command's side of the primary: its workers' slots, the start-up lines, the tick, stop. */
class PrimaryRun {
  readonly primary: ClusterPrimary
  private readonly opts: SseServerOptions
  private readonly settings: Settings
  private readonly token: string | null
  private readonly log: Log
  private readonly redis: RedisBus | undefined
  /** With --webhook: the primary tells the machine's presence changes (with --redis, the cluster's, with the other nodes). */
  private webhooks: Webhooks | null = null
  private readonly slots = new Map<number, Slot>()
  /** Per slot, the wait before its next replacement after one died before it listened (ms). */
  private readonly respawnDelay = new Map<number, number>()
  private announced = false
  private stopping = false
  private ticker: NodeJS.Timeout | null = null
  private closing: Promise<void> = Promise.resolve()

  constructor(
    private readonly p: Args,
    private readonly count: number,
  ) {
    this.opts = optionsFrom(p)
    // The settings as every worker will read them: a bad one is a usage error here, once.
    this.token = makeServer(this.opts).generatedToken
    const s = (this.settings = resolveSettings(this.opts))
    this.log = logFrom(p)
    // With --redis this machine is one node of a cluster on Redis: the primary is that node for all
    // of its workers (Redis gives the ids and the order; the workers are told as before).
    this.redis = this.opts.redis === undefined ? undefined : new RedisBus({ url: this.opts.redis, prefix: this.opts.redisPrefix, history: s.history, lastEventId: s.lastEventId })
    this.primary = new ClusterPrimary({ history: s.history, historyBytes: s.historyBytes, lastEventId: s.lastEventId, maxEventBytes: s.maxEventBytes }, this.redis)
  }

  /** Redis's history first, when there is one (before any worker gets it); the webhooks; then the workers. */
  async start(): Promise<void> {
    if (this.redis !== undefined) {
      this.redis.watch(busWatcher(this.p, this.log))
      await this.redis.start()
    }
    const webhook = this.settings.webhook
    if (webhook !== null) {
      const counts = (this.primary.metrics.webhooks = { sent: 0, retried: 0, failed: 0 })
      const presence = this.primary.presence
      const feed = this.redis?.presenceFeed ?? { watch: presence.watch.bind(presence), forEachPresent: presence.forEachPresent.bind(presence), claims: () => null }
      this.webhooks = new Webhooks({ feed, graceMs: this.settings.presenceGraceMs, webhook, counts, told: () => {}, failed: hookFailureLog(this.log) })
      void this.webhooks.start()
    }
    for (let slot = 1; slot <= this.count; slot++) this.fork(slot)
  }

  /** What the console and --stdin act on: the cluster, through the primary, by the publish rules as in one process. */
  consoleTarget(): ConsoleTarget {
    const primary = this.primary
    return {
      broadcast: (line) => {
        const r = primary.publish({ data: line })
        return r instanceof Promise ? r.then((a) => a.delivered) : r.delivered
      },
      clients: () => ({ total: primary.presence.size, channels: primary.presence.channels() }),
      stop: this.stop,
    }
  }

  private fork(slot: number): void {
    const worker = cluster.fork({ RAWSSE_WORKER_SLOT: String(slot) })
    const state: Slot = { slot, worker, name: `worker-${slot}`, listening: false, error: null }
    this.slots.set(slot, state)
    worker.on('message', (msg: FromWorker) => {
      if (msg.t === 'hello') this.join(state)
      else if (msg.t === 'listening') this.listening(state, msg.port)
      else if (msg.t === 'fatal') state.error = msg.error
      else this.primary.onMessage(slot, msg)
    })
    worker.on('exit', (code: number | null, signal: string | null) => this.exited(state, code, signal))
    // A message sent in the moment the worker dies (still `connected` until the primary reads the
    // end of its pipe) fails with EPIPE as an 'error' event, which unheard would end the primary
    // and the whole cluster. The 'exit' that follows settles what was asked of it.
    worker.on('error', () => {})
  }

  private join({ slot, worker, name }: Slot): void {
    this.primary.join(slot, { name, send: (m: ToWorker) => worker.isConnected() && worker.send(m) }, this.token).catch((err: Error) => {
      // A worker that never gets its `init` would wait for ever: end it (it is replaced, or the
      // cluster stops if it had never listened), and say why.
      process.emitWarning(`rawsse: ${name} could not join: ${err.message}`)
      worker.process.kill('SIGKILL')
    })
  }

  private listening(state: Slot, port: number): void {
    state.listening = true
    this.respawnDelay.delete(state.slot)
    if (!this.announced && [...this.slots.values()].every((s) => s.listening)) this.announce(port)
    else if (this.announced) this.log('worker-start', { node: state.name, pid: state.worker.process.pid })
  }

  /** A worker ended: replaced, unless the cluster is stopping, or it never listened (then the cluster stops: never a restart loop). */
  private exited(state: Slot, code: number | null, signal: string | null): void {
    const slot = state.slot
    this.primary.leave(slot)
    if (this.slots.get(slot) === state) this.slots.delete(slot)
    if (this.stopping) {
      if (this.slots.size === 0) exitWhen(this.closing)
      return
    }
    const why = state.error ?? `${state.name} exited before it listened (${signal ?? `code ${code}`})`
    if (!state.listening && !this.announced) return this.fail(why)
    this.log('worker-exit', { node: state.name, pid: state.worker.process.pid, code, signal })
    if (state.listening) return this.fork(slot)
    // A replacement that never listened: again, later each time it fails in a row.
    const delay = this.respawnDelay.get(slot) ?? L.RESPAWN_DELAY_MS
    this.respawnDelay.set(slot, Math.min(delay * 2, L.MAX_RESPAWN_DELAY_MS))
    process.emitWarning(`rawsse: ${why}; another in ${delay} ms`)
    setTimeout(() => {
      if (!this.stopping) this.fork(slot)
    }, delay)
  }

  /** Every worker listens: the start-up lines, once, and the cluster's one tick. */
  private announce(port: number): void {
    this.announced = true
    const host = this.opts.host ?? L.DEFAULT_HOST
    process.stdout.write(startupLines(this.opts, this.token, { host, port }, this.p.last('tls-cert')))
    this.log('start', { host, port, pid: process.pid, version: packageVersion(), workers: this.count })
    if (this.settings.tickMs > 0) this.ticker = setInterval(() => this.primary.tick(timeTick()), this.settings.tickMs)
  }

  readonly stop = (): void => {
    if (this.stopping) return
    this.stopping = true
    if (this.ticker !== null) clearInterval(this.ticker)
    this.log('stop', { streams: this.primary.presence.size })
    // Before the workers' streams close (that is the cluster stopping, no change to tell); what is owed is tried once more meanwhile.
    const told = this.webhooks?.stop()
    this.primary.tellAll({ t: 'stop' })
    // Leaving Redis may fail (it is away): the workers stopped all the same, so the exit is still 0.
    this.closing = Promise.resolve()
      .then(() => this.primary.bus.close())
      .catch((err: Error) => process.emitWarning(`rawsse: leaving the bus failed: ${err.message}`))
      .then(() => told)
    // Exit 0 within the contract's 5 s even if a worker will not finish; the workers' own grace
    // is the same, so a straggler is ended here a little before it.
    setTimeout(() => {
      for (const s of this.slots.values()) s.worker.process.kill('SIGKILL')
      process.exit(0)
    }, L.SHUTDOWN_GRACE_MS - L.CLUSTER_EXIT_MARGIN_MS).unref()
    if (this.slots.size === 0) exitWhen(this.closing)
  }

  /** A worker could not start (the port is taken): one line, and the whole cluster ends with exit 1. */
  private fail(why: string): void {
    process.stderr.write(`rawsse: ${why}\n`)
    this.stopping = true
    for (const s of this.slots.values()) s.worker.process.kill('SIGKILL')
    process.exit(1)
  }
}

/** One worker: a server whose bus is the cluster, listening on the port the primary shares. */
export async function runWorker(p: Args, reread: () => Args): Promise<void> {
  const { bus, init } = await WorkerBus.connect()
  const opts = optionsFrom(p)
  if (init.token !== null) opts.publishTokens = [...(opts.publishTokens ?? []), init.token]
  opts.tickMs = 0 // the primary ticks, once for the cluster
  opts.bus = bus // with --redis too: the primary is this machine's node of that cluster
  delete opts.redis
  const server = makeServer(opts)
  const log = logFrom(p)
  logServer(server, log, p.has('log-publish'))
  if (opts.publicDir !== null) attachDemo(server) // --public off: no pages, so none of their server side
  let port: number
  try {
    port = (await server.listen()).port
  } catch (err) {
    const error = `cannot listen on ${opts.host ?? L.DEFAULT_HOST}:${opts.port ?? L.DEFAULT_PORT}: ${(err as Error).message}`
    process.send!({ t: 'fatal', error } satisfies FromWorker, () => process.exit(1))
    return
  }
  process.send!({ t: 'listening', port } satisfies FromWorker)
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    setTimeout(() => process.exit(0), L.SHUTDOWN_GRACE_MS).unref()
    exitWhen(server.stop())
  }
  bus.onStop = stop
  bus.onReload = () => reload(server, reread, log)
  process.on('SIGTERM', stop)
  // Ctrl-C reaches every process of the terminal's group: the primary decides, and says stop.
  process.on('SIGINT', () => {})
  process.on('SIGHUP', () => {})
  process.on('disconnect', stop) // the primary is gone
}
