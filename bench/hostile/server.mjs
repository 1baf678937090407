// What every case of bench/hostile.mjs shares: the server under test (the build measured, fresh
// for each case, pinned to core 0, its own event-loop delay logged by bench/loop-monitor.mjs), its
// RSS and open files sampled from /proc, its /stats, the helper processes the cases start (modes of
// bench/hostile.mjs), and the units the report writes.

import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import { BENCH, BUSY_LIMIT, busiestCorePercent, fdCount, fmt, freePort, Http, listeningUrl, PUBLISH_TOKEN, rawsseArgv, rssBytes, sampler, sleep, startProcess, SUB_TOKEN } from '../lib.mjs'

const ENTRY = path.join(BENCH, 'hostile.mjs') // its helper modes are the cases' load processes
export const SERVER_CORE = '0'
export const LOAD_CORE = '1'
export { SUB_TOKEN }
export const FD_LIMIT = 20_000 // open files per process on the bench machines (hard limit)
export const STORM_GOAL_MS = 10_000 // case 3 goal (both storms)

export const mib = (bytes) => fmt(bytes / 2 ** 20, 0)
export const secs = (ms, d = 1) => (Number.isFinite(ms) ? `${fmt(ms / 1000, d)} s` : '–')
export const msOrS = (ms) => (!Number.isFinite(ms) ? '–' : ms < 1000 ? `${fmt(ms)} ms` : secs(ms))

export { sampler }

export function serverArgv(o, port) {
  return rawsseArgv(o, port, { imports: [pathToFileURL(path.join(BENCH, 'loop-monitor.mjs')).href] })
}

export async function startServer(o) {
  const port = await freePort()
  // The server's own loop delay (bench/loop-monitor.mjs), to a file of this run; the variable is
  // set only while this one process is spawned.
  const loopLog = path.join(mkdtempSync(path.join(os.tmpdir(), 'rawsse-loop-')), 'loop.log')
  process.env.RAWSSE_LOOP_LOG = loopLog
  const started = startProcess('rawsse', 'taskset', ['-c', SERVER_CORE, ...serverArgv(o, port)], { ready: listeningUrl })
  delete process.env.RAWSSE_LOOP_LOG
  const { proc } = await started
  return { proc, pid: proc.pid, port, loopLog }
}

/** The server's loop-delay lines: [epoch ms, longest delay in ms of the 100 ms before]. */
export function loopDelays(file) {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split(' ').map(Number))
}

export const exitOf = (proc) => proc.child.signalCode ?? proc.child.exitCode

/** Starts a helper mode of bench/hostile.mjs; ready when `ready(stdout)` holds. */
export function startHelper(name, mode, cfg, ready, timeoutMs = 30_000) {
  return startProcess(name, process.execPath, [ENTRY, '--helper', mode, JSON.stringify(cfg)], { ready, timeoutMs })
}

export async function stats(port) {
  const h = new Http(port)
  try {
    const r = await Promise.race([h.request('GET', '/stats', { headers: { Authorization: `Bearer ${PUBLISH_TOKEN}` } }), sleep(5000).then(() => null)])
    return r && r.status === 200 ? JSON.parse(r.body) : null
  } catch {
    return null
  } finally {
    h.close()
  }
}

export async function busyNote(what, notes) {
  const busy = await busiestCorePercent()
  if (busy > BUSY_LIMIT) {
    const msg = `${what}: a core was ${fmt(busy)} % busy with other work just before it (the other engineer's tests)`
    process.stderr.write(msg + '\n')
    notes.push(msg)
  }
}
