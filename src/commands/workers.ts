// `rawsse --workers N`: one cluster on one machine, Node's own node:cluster. The primary accepts
// connections and hands them round-robin to N workers, which hold the streams; it also sequences
// every event (src/server/bus/primary.ts), ticks, runs the console and --stdin, prints the
// start-up lines once every worker listens, replaces a worker that dies, and stops them all on
// SIGINT/SIGTERM. A worker that cannot start (the port is taken) stops the cluster with its one
// error line and exit 1: never a restart loop.

import cluster, { type Worker } from 'node:cluster'
import { attachDemo } from '../demo.js'
import { WorkerBus } from '../server/bus/workers/worker-bus.js'
import type { FromWorker, ToWorker } from '../server/bus/workers/ipc.js'
import { ClusterPrimary } from '../server/bus/workers/primary.js'
import { RedisBus } from '../server/bus/redis/redis-bus.js'
import * as L from '../server/limits.js'
import { resolveSettings } from '../server/options.js'
import { eventSize } from '../server/fanout/sse-encode.js'
import type { Args } from './args.js'
import { logServer } from './log.js'
import { busWatcher, exitWhen, logFrom, makeServer, optionsFrom, packageVersion, reload, startConsole, startupLines } from './serve.js'

/** A worker's place in the cluster: a replacement takes the slot (and name) of the one that died. */
interface Slot {
  worker: Worker
  listening: boolean
  error: string | null
}

export async function runPrimary(p: Args, count: number): Promise<void> {
  const opts = optionsFrom(p)
  // The settings as every worker will read them: a bad one is a usage error here, once.
  const probe = makeServer(opts)
  const settings = resolveSettings(opts)
  const token = probe.generatedToken
  const log = logFrom(p)
  // With --redis this machine is one node of a cluster on Redis: the primary is that node for all
  // of its workers (Redis gives the ids and the order; the workers are told as before).
  const redis = opts.redis === undefined ? undefined : new RedisBus({ url: opts.redis, prefix: opts.redisPrefix, history: settings.history, lastEventId: settings.lastEventId })
  const primary = new ClusterPrimary({ history: settings.history, historyBytes: settings.historyBytes, lastEventId: settings.lastEventId }, redis)
  const slots = new Map<number, Slot>()
  let announced = false
  let stopping = false
  let ticker: NodeJS.Timeout | null = null
  let closing: Promise<void> = Promise.resolve()

  const fail = (why: string): void => {
    process.stderr.write(`rawsse: ${why}\n`)
    stopping = true
    for (const s of slots.values()) s.worker.process.kill('SIGKILL')
    process.exit(1)
  }

  const fork = (slot: number): void => {
    const worker = cluster.fork({ RAWSSE_WORKER_SLOT: String(slot) })
    const state: Slot = { worker, listening: false, error: null }
    slots.set(slot, state)
    const name = `worker-${slot}`
    worker.on('message', (msg: FromWorker) => {
      if (msg.t === 'hello') {
        primary.join(slot, { name, send: (m: ToWorker) => worker.isConnected() && worker.send(m) }, token).catch((err: Error) => {
          // A worker that never gets its `init` would wait for ever: end it (it is replaced, or
          // the cluster stops if it had never listened), and say why.
          process.emitWarning(`rawsse: ${name} could not join: ${err.message}`)
          worker.process.kill('SIGKILL')
        })
      } else if (msg.t === 'listening') {
        state.listening = true
        if (!announced && [...slots.values()].every((s) => s.listening)) announce(msg.port)
        else if (announced) log('worker-start', { node: name, pid: worker.process.pid })
      } else if (msg.t === 'fatal') {
        state.error = msg.error
      } else {
        primary.onMessage(slot, msg)
      }
    })
    worker.on('exit', (code, signal) => {
      primary.leave(slot)
      if (slots.get(slot) === state) slots.delete(slot)
      if (stopping) {
        if (slots.size === 0) exitWhen(closing)
        return
      }
      if (!state.listening) return fail(state.error ?? `${name} exited before it listened (${signal ?? `code ${code}`})`)
      log('worker-exit', { node: name, pid: worker.process.pid, code, signal })
      fork(slot)
    })
  }

  const announce = (port: number): void => {
    announced = true
    const host = opts.host ?? L.DEFAULT_HOST
    process.stdout.write(startupLines(opts, token, { host, port }, p.last('tls-cert')))
    log('start', { host, port, pid: process.pid, version: packageVersion(), workers: count })
    if (settings.tickMs > 0) ticker = setInterval(() => primary.tick({ event: 'time', data: new Date().toISOString() }), settings.tickMs)
  }

  const stop = (): void => {
    if (stopping) return
    stopping = true
    if (ticker !== null) clearInterval(ticker)
    log('stop', { streams: primary.presence.size })
    primary.tellAll({ t: 'stop' })
    // Leaving Redis may fail (it is away): the workers stopped all the same, so the exit is still 0.
    closing = Promise.resolve()
      .then(() => primary.bus.close())
      .catch((err: Error) => process.emitWarning(`rawsse: leaving the bus failed: ${err.message}`))
    // Exit 0 within the contract's 5 s even if a worker will not finish; the workers' own grace
    // is the same, so a straggler is ended here a little before it.
    setTimeout(() => {
      for (const s of slots.values()) s.worker.process.kill('SIGKILL')
      process.exit(0)
    }, L.SHUTDOWN_GRACE_MS - L.CLUSTER_EXIT_MARGIN_MS).unref()
    if (slots.size === 0) exitWhen(closing)
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  process.on('SIGHUP', () => primary.tellAll({ t: 'reload' }))
  startConsole(p, {
    broadcast: (line) => {
      const size = eventSize({ data: line })
      if (size > settings.maxEventBytes) throw new Error(`event is ${size} bytes encoded; the limit is ${settings.maxEventBytes}`)
      const r = primary.publish({ data: line })
      return r instanceof Promise ? r.then((a) => a.delivered) : r.delivered
    },
    clients: () => ({ total: primary.presence.size, channels: primary.presence.channels() }),
    stop,
  })
  if (redis !== undefined) {
    redis.watch(busWatcher(p, log))
    await redis.start() // the history, before any worker gets it
  }
  for (let slot = 1; slot <= count; slot++) fork(slot)
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
