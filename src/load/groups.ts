// The groups of streams of one `rawsse bench` run, as the coordinator sees them: a Link to each
// (in this process, or a forked worker over IPC), what each has reported, and how many
// processes the streams need (one per open-file limit).

import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { openFileLimit } from '../process-limits.js'
import { FD_MARGIN } from './limits.js'
import { WORKER_ENV, type FromGroup, type GroupConfig, type GroupFinal, type Progress, type ToGroup } from './messages.js'
import { StreamGroup } from './worker.js'

/** A group of streams, in this process or in a forked worker; the coordinator sees only messages. */
export interface Link {
  send(msg: ToGroup): void
  /** Set by the coordinator. */
  onMessage: (msg: FromGroup) => void
  /** The worker is gone without a final report. */
  onDeath: (why: string) => void
}

export function localLink(config: GroupConfig): Link {
  const link: Link = { send: (msg) => group.handle(msg), onMessage: () => {}, onDeath: () => {} }
  // Deferred a turn: the coordinator sets onMessage before the first report arrives.
  const group = new StreamGroup(config, (msg) => link.onMessage(msg))
  setImmediate(() => group.connect())
  return link
}

export function forkedLink(config: GroupConfig): Link {
  const child: ChildProcess = fork(fileURLToPath(new URL('./worker.js', import.meta.url)), [], {
    // Workers never write to stdout: the report (and --json) must be alone there.
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { ...process.env, [WORKER_ENV]: '1' },
  })
  let finished = false
  const link: Link = {
    send: (msg) => {
      if (child.connected) child.send(msg)
    },
    onMessage: () => {},
    onDeath: () => {},
  }
  child.on('message', (msg: FromGroup) => {
    if (msg.type === 'hello') return void child.send({ type: 'init', config } satisfies ToGroup)
    if (msg.type === 'final') finished = true
    link.onMessage(msg)
  })
  child.on('error', (err) => {
    if (!finished) link.onDeath(`a worker failed: ${err.message}`)
    finished = true
  })
  child.on('exit', (code, signal) => {
    if (!finished) link.onDeath(`a worker exited (${signal ?? `code ${code}`}) before its report`)
  })
  return link
}

export interface GroupState {
  link: Link
  count: number
  /** The group said 'connected': every stream of it opened or failed. */
  connected: boolean
  /** Its last 'progress' (the totals come with 'connected' and 'final'). */
  progress: Progress
  final: GroupFinal | null
  dead: string | null
}

/** Processes needed to hold `streams` streams: each may open its open-file limit less FD_MARGIN. */
export function processesFor(streams: number): number {
  const perProcess = Math.max(1, openFileLimit() - FD_MARGIN)
  return Math.max(1, Math.ceil(streams / perProcess))
}
