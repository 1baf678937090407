// What the bench scripts share. bench/fanout.mjs and bench/http.mjs run servers and load tools as
// child processes and write their sections of bench/RESULTS.md; this module owns the parts they
// have in common: where things are (ROOT, CLI, the bench folder), how rawsse's bin runs node
// (binNodeFlags), child processes tracked and killed by PID (startProcess, killAll, childPids),
// free ports, the busy-core check before a run, the machine description, the build of a commit
// to measure (buildAt), the RESULTS.md sections, and the number formatting of the tables. It also
// holds the seeded PRNG (rng) that bench/fuzz.mjs and the tests (through test/helpers.ts) use.
//
// Importing it starts nothing: no process, no timer, no signal handler. The handlers that kill the
// tracked children on exit, SIGINT and SIGTERM are installed the first time startProcess starts a
// child, so a test process that imports this module for rng keeps its own signal behaviour.

import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The bench/ folder. */
export const BENCH = path.dirname(fileURLToPath(import.meta.url))
export const ROOT = path.join(BENCH, '..')
export const CLI = path.join(ROOT, 'dist', 'cli.js')
/** The publish token every bench server is started with. */
export const PUBLISH_TOKEN = 'bench-publish-token'
export const SUB_TOKEN = 'bench-subscribe-token' // may open streams only

/**
 * A server's RSS and open files (and `more()`'s readings) from /proc every 250 ms until stop(),
 * which takes a last sample and returns them all: /proc answers while its event loop is blocked.
 */
export function sampler(pid, more = () => ({})) {
  const samples = []
  const take = () => samples.push({ t: Date.now(), rss: rssBytes(pid), fds: fdCount(pid), ...more() })
  take()
  const timer = setInterval(take, SAMPLE_MS)
  return {
    samples,
    stop() {
      clearInterval(timer)
      take()
      return samples
    },
  }
}
export const SAMPLE_MS = 250

/**
 * The command line of a rawsse build under test (o.cli), run as its bin runs it (its node flags),
 * with `imports` loaded first (`node --import`), a V8 CPU profile when o.profile names a folder
 * (written when the server exits), and a hostile bench's settings: loopback, the two tokens,
 * `--tick 0`, `--max-clients 20000`, then `extra`, then o.serverArgs.
 */
export function rawsseArgv(o, port, { imports = [], extra = [] } = {}) {
  return [
    process.execPath,
    ...binNodeFlags(o.cli),
    ...imports.flatMap((m) => ['--import', m]),
    ...(o.profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${o.profile}`]),
    o.cli,
    ...['--port', String(port), '--host', '127.0.0.1', '--token', SUB_TOKEN, '--publish-token', PUBLISH_TOKEN],
    ...['--tick', '0', '--max-clients', '20000'],
    ...extra,
    ...o.serverArgs,
  ]
}
export const BUSY_LIMIT = 15 // percent of a core used by others before a run: worth a warning

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** The node flags on a CLI's `#!/usr/bin/env -S node …` line (this repository's dist/cli.js by default): rawsse runs as its bin runs it. */
const nodeFlags = new Map()
export function binNodeFlags(cli = CLI) {
  if (!nodeFlags.has(cli)) {
    const m = /^#!\S*env -S node(.*)$/.exec(readFileSync(cli, 'utf8').split('\n', 1)[0])
    nodeFlags.set(cli, m ? m[1].trim().split(/\s+/).filter(Boolean) : [])
  }
  return nodeFlags.get(cli)
}

/** A process's resident memory (VmRSS) in bytes; NaN once it is gone. */
export function rssBytes(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : NaN
  } catch {
    return NaN
  }
}

/** A process's open files (entries of /proc/PID/fd); NaN once it is gone. */
export function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return NaN
  }
}

/**
 * A small deterministic PRNG (mulberry32) in [0, 1), so a failing random case can be rebuilt from its seed.
 * @param {number} seed
 * @returns {() => number}
 */
export function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// ---------------------------------------------------------------------------------------------
// Processes: every child is tracked and killed by PID, also when this script fails or is stopped.

const live = new Set() // { pid, name, extraPids() }

/** process.kill, for a process that may be gone already. */
function signal(pid, sig) {
  try {
    process.kill(pid, sig)
  } catch {}
}

function killTracked(entry, sig) {
  for (const pid of [entry.pid, ...entry.extraPids()]) signal(pid, sig)
}

export function killAll() {
  for (const e of live) killTracked(e, 'SIGKILL')
  live.clear()
}

/**
 * On exit, SIGINT and SIGTERM, kill every tracked child. Installed once, by the first
 * startProcess, not on import: a process that only borrows a helper (a test importing rng) keeps
 * its own signal behaviour.
 */
let handlersInstalled = false
function installKillHandlers() {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', killAll)
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: stopping every process started here\n`)
      killAll()
      process.exit(130)
    })
  }
}

/** Children of a process, from /proc (nginx: the worker of the master). */
export function childPids(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/**
 * Starts a command; resolves once `ready(stdoutSoFar)` returns a value (or rejects after
 * timeoutMs or when the process exits first). The result can be stopped with stop().
 */
export function startProcess(name, cmd, args, { ready, timeoutMs = 10_000, cwd = ROOT, withChildren = false } = {}) {
  installKillHandlers()
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    const entry = { pid: child.pid, name, extraPids: () => (withChildren ? childPids(child.pid) : []) }
    live.add(entry)
    let out = ''
    let err = ''
    let done = false
    let exited = false
    const exitP = new Promise((r) => child.once('exit', (code, signal) => ((exited = true), r({ code, signal }))))
    // 'close' comes after 'exit' once stdout and stderr are drained (and, for nginx, the worker,
    // which shares them, has gone too).
    const closedP = new Promise((r) => child.once('close', r))
    const proc = {
      name,
      child,
      pid: child.pid,
      get stdout() {
        return out
      },
      get stderr() {
        return err
      },
      exited: exitP,
      closed: closedP,
      /** SIGTERM, then SIGKILL after graceMs; also kills the children it had. */
      async stop(graceMs = 5000) {
        const kids = withChildren ? childPids(child.pid) : []
        if (!exited) {
          signal(child.pid, 'SIGTERM')
          await Promise.race([exitP, sleep(graceMs)])
          if (!exited) {
            signal(child.pid, 'SIGKILL')
            await Promise.race([exitP, sleep(2000)])
          }
        }
        for (const k of kids) signal(k, 'SIGKILL')
        live.delete(entry)
      },
    }
    const timer = setTimeout(() => {
      if (done) return
      done = true
      void proc.stop(500)
      reject(new Error(`${name}: not ready within ${timeoutMs} ms\n${tail(err || out)}`))
    }, timeoutMs)
    const check = async () => {
      if (done) return
      let v
      try {
        v = await ready(out, proc)
      } catch {
        v = undefined
      }
      if (v !== undefined && v !== null && v !== false && !done) {
        done = true
        clearTimeout(timer)
        resolve({ proc, value: v })
      }
    }
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (d) => {
      out += d
      if (out.length > 4_000_000) out = out.slice(-2_000_000)
      void check()
    })
    child.stderr.on('data', (d) => {
      err += d
      if (err.length > 200_000) err = err.slice(-100_000)
    })
    child.once('error', (e) => {
      if (done) return
      done = true
      clearTimeout(timer)
      live.delete(entry)
      reject(new Error(`${name}: cannot start ${cmd}: ${e.message}`))
    })
    void exitP.then(({ code, signal }) => {
      live.delete(entry)
      if (done) return
      done = true
      clearTimeout(timer)
      reject(new Error(`${name}: exited (${signal ?? code}) before it was ready\n${tail(err || out)}`))
    })
    // Readiness that does not come from stdout (nginx): poll.
    const poll = setInterval(() => (done ? clearInterval(poll) : void check()), 100)
  })
}

/** The last n characters of a process's output, for an error message. */
export const tail = (s, n = 600) => (s.length > n ? '…' + s.slice(-n) : s).trim()

// ---------------------------------------------------------------------------------------------
// Ports, servers' ready lines and the cores before a run.

/**
 * A free TCP port below the ephemeral range (from /proc/sys/net/ipv4/ip_local_port_range), so
 * it never competes with the tens of thousands of client-side ports a run uses up: with those in
 * TIME_WAIT, `listen(0)` can fail with EADDRINUSE.
 */
export async function freePort() {
  const [low] = ephemeralPorts()
  const from = Math.max(1024, Math.min(20000, low - 2000))
  for (let i = 0; i < 200; i++) {
    const port = from + Math.floor(Math.random() * (low - from))
    const ok = await new Promise((resolve) => {
      const s = net.createServer()
      s.once('error', () => resolve(false))
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
    })
    if (ok) return port
  }
  throw new Error(`no free port in ${from}–${low - 1}`)
}

/** The ephemeral port range [low, high], from /proc/sys/net/ipv4/ip_local_port_range (Linux's default if unreadable). */
export function ephemeralPorts() {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    return [low, high]
  } catch {
    return [32768, 60999]
  }
}

/** The URL a server prints when it listens (rawsse and the node peers print the same line). */
/**
 * Waits (at most maxMs) until 127.0.0.1 has `n` ephemeral ports free. The load tool binds its
 * streams to 127.0.0.1 (then .2, … every 20 000), and a socket bound to an address cannot take a
 * port still in TIME_WAIT from the previous run there (60 s on Linux): back-to-back runs at
 * 19 000 streams would otherwise fail to connect thousands of them. Counts /proc/net/tcp entries
 * with local address 127.0.0.1 and a port in the ephemeral range; returns the seconds waited.
 */
export async function waitForPorts(n, maxMs = 75_000) {
  const [low, high] = ephemeralPorts()
  const size = high - low + 1
  const used = () => {
    let c = 0
    try {
      for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
        const m = /^\s*\d+: 0100007F:([0-9A-F]{4}) /.exec(line)
        if (m) {
          const port = parseInt(m[1], 16)
          if (port >= low && port <= high) c++
        }
      }
    } catch {}
    return c
  }
  const t0 = Date.now()
  while (size - used() < n + 1000 && Date.now() - t0 < maxMs) await sleep(2000)
  return (Date.now() - t0) / 1000
}

export const listeningUrl = (out) => /listening on (http:\/\/\S+)/.exec(out)?.[1]

/**
 * The busiest core's use over `ms`, in percent, from /proc/stat: taken just before a run (the
 * server started and idle), a high figure means another program is running on the bench cores
 * and the run's numbers are not to be trusted.
 */
export async function busiestCorePercent(ms = 500) {
  const read = () => {
    try {
      return readFileSync('/proc/stat', 'utf8')
        .split('\n')
        .filter((l) => /^cpu\d+ /.test(l))
        .map((l) => {
          const v = l.trim().split(/\s+/).slice(1).map(Number)
          const idle = v[3] + (v[4] ?? 0) // idle + iowait
          return { idle, total: v.reduce((a, b) => a + b, 0) }
        })
    } catch {
      return []
    }
  }
  await sleep(1000) // what we started last (a server, a teardown of the previous one) settles
  const a = read()
  await sleep(ms)
  const b = read()
  let max = 0
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const total = b[i].total - a[i].total
    if (total > 0) max = Math.max(max, (100 * (total - (b[i].idle - a[i].idle))) / total)
  }
  return max
}

// ---------------------------------------------------------------------------------------------
// Machine and the RESULTS.md sections.

/** A command's stdout and stderr, trimmed; null if it cannot be run. */
export function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  return r.error ? null : `${r.stdout}${r.stderr}`.trim()
}

export function machine() {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : ''
  const meminfo = existsSync('/proc/meminfo') ? readFileSync('/proc/meminfo', 'utf8') : ''
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown'
  const memKb = Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? 0)
  const version = (p) => {
    try {
      return JSON.parse(readFileSync(path.join(ROOT, p), 'utf8')).version
    } catch {
      return 'not installed'
    }
  }
  const git = run('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'])
  const dirty = run('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src'])
  return {
    date: new Date().toISOString(),
    cpus: os.cpus().length,
    nproc: run('nproc', ['--all']) ?? String(os.cpus().length), // --all: this process may be pinned
    cpuModel: model,
    memory: memKb ? `${(memKb / 1024 / 1024).toFixed(1)} GiB` : `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    nginx: run(nginxBin() ?? 'nginx', ['-v'])?.replace(/^nginx version: nginx\//, '') ?? 'not installed',
    nchan: run('dpkg-query', ['-W', '-f', '${Version}', 'libnginx-mod-nchan']) || 'not installed',
    rawsse: `${version('package.json')} (git ${git ?? '?'}${dirty ? ', src/ modified' : ''})`,
    betterSse: version('node_modules/better-sse/package.json'),
    autocannon: version('node_modules/autocannon/package.json'),
    openFiles: run('sh', ['-c', 'ulimit -n']) ?? '?',
  }
}

export function machineMarkdown(m) {
  return [
    `- Date: ${m.date}`,
    `- Machine: ${m.nproc} CPUs (nproc), ${m.cpuModel}, ${m.memory} RAM, ${m.kernel}; open files per process: ${m.openFiles}`,
    `- Software: node ${m.node}, rawsse ${m.rawsse}, better-sse ${m.betterSse}, nginx ${m.nginx}, libnginx-mod-nchan ${m.nchan}, autocannon ${m.autocannon}`,
  ].join('\n')
}

const RESULTS_HEAD = `# rawsse benchmark results

\`node bench/fanout.mjs\` writes the fan-out section and \`node bench/http.mjs\` the HTTP section;
each replaces only its own (do not edit them by hand). The last section, "Reading these numbers",
is written by hand from them and dated. Read the commands and the machine with the numbers: they
are measurements of one machine on one day, not guarantees.
`

/** Replaces (or appends) the section between `<!-- NAME:begin -->` and `<!-- NAME:end -->`. */
export function writeSection(file, name, body, order = ['fanout', 'http', 'hostile']) {
  let text = existsSync(file) ? readFileSync(file, 'utf8') : RESULTS_HEAD
  const begin = `<!-- ${name}:begin -->`
  const end = `<!-- ${name}:end -->`
  const block = `${begin}\n${body.trim()}\n${end}`
  const a = text.indexOf(begin)
  const b = text.indexOf(end)
  if (a !== -1 && b > a) {
    text = text.slice(0, a) + block + text.slice(b + end.length)
  } else {
    // Keep the sections in a fixed order: before the first later section, else at the end.
    const later = order.slice(order.indexOf(name) + 1).map((n) => text.indexOf(`<!-- ${n}:begin -->`)).filter((i) => i !== -1)
    const at = later.length ? Math.min(...later) : -1
    text = at === -1 ? `${text.trimEnd()}\n\n${block}\n` : `${text.slice(0, at)}${block}\n\n${text.slice(at)}`
  }
  writeFileSync(file, text)
}

/**
 * The body of the section `name` in `file` (between its markers), or null if it is not there:
 * for a script that keeps parts of its own section from run to run (bench/hostile.mjs keeps one
 * block per label).
 */
export function readSection(file, name) {
  if (!existsSync(file)) return null
  const text = readFileSync(file, 'utf8')
  const begin = `<!-- ${name}:begin -->`
  const a = text.indexOf(begin)
  const b = text.indexOf(`<!-- ${name}:end -->`)
  return a !== -1 && b > a ? text.slice(a + begin.length, b).trim() : null
}

/**
 * Puts an empty section `name` right after the section `after` if `name` is not in the file yet,
 * so writeSection fills it there rather than at the end, below the hand-written part. No-op when
 * `name` is already there or `after` is not.
 */
export function placeSectionAfter(file, name, after) {
  if (!existsSync(file)) return
  const text = readFileSync(file, 'utf8')
  if (text.includes(`<!-- ${name}:begin -->`)) return
  const end = `<!-- ${after}:end -->`
  const at = text.indexOf(end)
  if (at === -1) return
  const cut = at + end.length
  writeFileSync(file, `${text.slice(0, cut)}\n\n<!-- ${name}:begin -->\n<!-- ${name}:end -->${text.slice(cut)}`)
}

// ---------------------------------------------------------------------------------------------
// Figures in the tables.

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const m = v.length >> 1
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}

export const fmt = (x, digits = 0) =>
  typeof x !== 'number' || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

export function spread(xs, digits = 0) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x))
  if (v.length === 0) return '–'
  if (v.length === 1) return '(1 round)'
  return `${fmt(Math.min(...v), digits)}–${fmt(Math.max(...v), digits)}`
}

export const ratio = (x, base) => (Number.isFinite(x) && Number.isFinite(base) && base > 0 ? `${(x / base).toFixed(2)}×` : '–')

export function shellJoin(argv) {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ')
}

/** nginx on PATH, else Debian's /usr/sbin/nginx (not on a non-root user's PATH); null if neither runs. */
export function nginxBin() {
  return ['nginx', '/usr/sbin/nginx'].find((bin) => run(bin, ['-v']) !== null) ?? null
}

/**
 * The flag readers of the bench scripts: `--name value` (the last one wins), a comma list, and a
 * number ≥ 0. Each script keeps its own flags; this is how they are read.
 */
export function flagReader(argv, booleans = []) {
  // `--help`: the script's own header comment is its manual.
  if (argv.includes('--help') || argv.includes('-h')) {
    const header = readFileSync(process.argv[1], 'utf8').split('\n')
    const end = header.findIndex((l) => !l.startsWith('//') && !l.startsWith('#!'))
    process.stdout.write(header.slice(0, end).filter((l) => !l.startsWith('#!')).map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n')
    process.exit(0)
  }
  const asked = new Set(booleans)
  const get = (name) => {
    asked.add(name)
    const i = argv.lastIndexOf(`--${name}`)
    return i === -1 ? undefined : argv[i + 1]
  }
  const list = (name, def) => (get(name) ?? def).split(',').map((s) => s.trim()).filter(Boolean)
  const num = (name, def) => {
    const v = get(name)
    if (v === undefined) return def
    const n = Number(v)
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number, not '${v}'`)
    return n
  }
  // Called once every flag was read: a misspelt flag must not start a run of minutes on defaults.
  const done = () => {
    for (let i = 0; i < argv.length; i++) {
      if (!argv[i].startsWith('--')) throw new Error(`unexpected argument '${argv[i]}' (--help lists the flags)`)
      const name = argv[i].slice(2)
      if (!asked.has(name)) throw new Error(`unknown flag --${name} (--help lists the flags)`)
      if (!booleans.includes(name)) i++
    }
  }
  return { get, list, num, done }
}

/**
 * A small keep-alive HTTP/1.1 client (publish, stats, DELETE): one request at a time per instance;
 * a connection the server closed while idle (5 s keep-alive) is replaced, and a request that met
 * such a close before any byte of its answer is sent again once; no answer within 10 s fails it.
 * `localAddress` binds its connections to a source address (127.0.0.2, …).
 */
export class Http {
  constructor(port, { localAddress } = {}) {
    this.port = port
    this.localAddress = localAddress
    this.socket = null
    this.chain = Promise.resolve()
  }

  request(method, target, { headers = {}, body = '' } = {}) {
    const p = this.chain.then(() => this.#send(method, target, headers, body, true))
    this.chain = p.catch(() => {})
    return p
  }

  close() {
    this.socket?.destroy()
    this.socket = null
  }

  #connect() {
    const s = net.connect({ port: this.port, host: '127.0.0.1', ...(this.localAddress ? { localAddress: this.localAddress } : {}) })
    s.setNoDelay(true)
    s.used = false
    s.on('error', () => {})
    s.on('close', () => {
      if (this.socket === s) this.socket = null
    })
    this.socket = s
    return s
  }

  #send(method, target, headers, body, mayRetry) {
    const reused = this.socket !== null && !this.socket.destroyed && this.socket.used
    const s = this.socket !== null && !this.socket.destroyed ? this.socket : this.#connect()
    s.used = true
    const bodyBuf = Buffer.from(body)
    let head = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\n`
    for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
    if (bodyBuf.length || method === 'POST') head += `Content-Length: ${bodyBuf.length}\r\n`
    head += '\r\n'
    return new Promise((resolve, reject) => {
      let buf = Buffer.alloc(0)
      let got = 0
      const done = (err, res) => {
        clearTimeout(timer)
        s.off('data', onData)
        s.off('close', onClose)
        if (err) reject(err)
        else resolve(res)
      }
      const timer = setTimeout(() => (s.destroy(), done(new Error(`${method} ${target}: no answer within 10 s`))), 10_000)
      const onData = (d) => {
        got += d.length
        buf = buf.length ? Buffer.concat([buf, d]) : d
        const end = buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const headText = buf.toString('latin1', 0, end)
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(headText)?.[1] ?? 0)
        const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(headText)?.[1] ?? 0)
        if (buf.length < end + 4 + len) return
        const resBody = buf.toString('utf8', end + 4, end + 4 + len)
        if (/\r\nconnection:\s*close/i.test(headText)) s.destroy()
        done(null, { status, body: resBody })
      }
      const onClose = () => {
        if (got === 0 && reused && mayRetry) {
          clearTimeout(timer)
          s.off('data', onData)
          s.off('close', onClose)
          this.#send(method, target, headers, body, false).then(resolve, reject)
        } else done(new Error(`${method} ${target}: connection closed before the answer`))
      }
      s.on('data', onData)
      s.on('close', onClose)
      s.write(head)
      if (bodyBuf.length) s.write(bodyBuf)
    })
  }
}

/**
 * The git commit of the build at `cli`: its checkout's HEAD; for a copy without git (`git archive
 * HEAD | tar -x`, the way to build one while others work in the checkout), the newest of this
 * repository's last 50 commits whose src/ is byte for byte the copy's.
 */
export function buildCommit(cli) {
  const root = path.resolve(path.dirname(cli), '..')
  const top = run('git', ['-C', root, 'rev-parse', '--show-toplevel'])
  if (top && path.resolve(top) === root) {
    const dirty = run('git', ['-C', root, 'status', '--porcelain', '--', 'src'])
    return `${run('git', ['-C', root, 'rev-parse', '--short', 'HEAD'])}${dirty ? ' with src/ modified (uncommitted changes)' : ''}`
  }
  const files = (run('find', [path.join(root, 'src'), '-type', 'f']) ?? '').split('\n').filter(Boolean)
  const hashes = spawnSync('git', ['-C', ROOT, 'hash-object', '--stdin-paths'], { input: files.join('\n'), encoding: 'utf8' }).stdout.trim().split('\n')
  const mine = new Map(files.map((f, k) => [path.relative(root, f), hashes[k]]))
  for (const c of (run('git', ['-C', ROOT, 'rev-list', '--max-count=50', 'HEAD']) ?? '').split('\n').filter(Boolean)) {
    const tree = (run('git', ['-C', ROOT, 'ls-tree', '-r', c, '--', 'src']) ?? '').split('\n').filter(Boolean)
    if (files.length && tree.length === mine.size && tree.every((l) => mine.get(l.split('\t')[1]) === l.split(/\s+/)[2])) return `${c.slice(0, 7)} (a copy whose src/ is that commit's)`
  }
  return `unknown (${root} is no git checkout, and its src/ is none of the last 50 commits')`
}

/**
 * The build a `--cli` or `--baseline` value names, as the path of its dist/cli.js. A path to an
 * existing file is used as is. Anything else is a commit of this repository (a hash, a tag,
 * `HEAD~3`), so that a command written in RESULTS.md can be run again by anyone: it is checked
 * out in a temporary worktree (`git worktree add --detach`), given this checkout's node_modules,
 * and built with `tsc -p tsconfig.json`; the worktree is removed when this process exits (also on
 * SIGINT and SIGTERM). buildCommit() of the result is that commit.
 */
export function buildAt(spec) {
  if (existsSync(spec)) return path.resolve(spec)
  const rev = spawnSync('git', ['-C', ROOT, 'rev-parse', '--verify', '--quiet', `${spec}^{commit}`], { encoding: 'utf8' })
  const commit = rev.status === 0 ? rev.stdout.trim() : ''
  if (commit === '') throw new Error(`${spec}: neither a file nor a commit of ${ROOT}`)
  installKillHandlers() // a signal exits through process.exit, so the 'exit' below removes the worktree
  const dir = mkdtempSync(path.join(os.tmpdir(), `rawsse-${commit.slice(0, 7)}-`))
  const remove = () => {
    spawnSync('git', ['-C', ROOT, 'worktree', 'remove', '--force', dir])
    rmSync(dir, { recursive: true, force: true })
    spawnSync('git', ['-C', ROOT, 'worktree', 'prune'])
  }
  process.on('exit', remove)
  const add = spawnSync('git', ['-C', ROOT, 'worktree', 'add', '--detach', dir, commit], { encoding: 'utf8' })
  if (add.status !== 0) throw new Error(`git worktree add ${dir} ${commit}: ${add.stderr.trim()}`)
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
  process.stderr.write(`building ${commit.slice(0, 7)} in ${dir} (removed at exit)\n`)
  const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' })
  const cli = path.join(dir, 'dist', 'cli.js')
  if (tsc.status !== 0 || !existsSync(cli)) throw new Error(`building ${commit.slice(0, 7)}: ${`${tsc.stdout}${tsc.stderr}`.trim() || 'no dist/cli.js'}`)
  return cli
}

/** The blocks of a RESULTS.md section by label (`<!-- NAME-label:LABEL:begin -->` … `:end -->`), in order. */
export function labelBlocks(section, name) {
  const blocks = new Map()
  const re = new RegExp(`<!-- ${name}-label:(\\S+?):begin -->[\\s\\S]*?<!-- ${name}-label:\\1:end -->`, 'g')
  for (const m of (section ?? '').matchAll(re)) blocks.set(m[1], m[0])
  return blocks
}

/**
 * What a stream received (`ids`, in order) against what was published (`published`, in order;
 * `pos`: id → its place): a gap (one missing), a duplicate, an id out of order, and the counts.
 */
export function compareIds(ids, published, pos) {
  const seen = new Set()
  const r = { gap: false, dup: false, order: false, dups: 0, extra: 0, missing: 0 }
  let prev = -1
  for (const id of ids) {
    if (seen.has(id)) {
      r.dup = true
      r.dups++
    }
    seen.add(id)
    const k = pos.get(id)
    if (k === undefined) r.extra++
    else {
      if (k < prev) r.order = true
      prev = Math.max(prev, k)
    }
  }
  for (const id of published) if (!seen.has(id)) (r.gap = true), r.missing++
  return r
}

/**
 * An event stream over a raw socket, lean enough for 10 000 in one process: the status line, the
 * chunked body decoded (or a plain one), then `id:`, `event:` and `data:` fields, dispatched on a
 * blank line.
 */
export function openStream({ port, path: target, headers = {}, localAddress, onStatus, onEvent, onClose }) {
  const s = net.connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) })
  let head = ''
  let inBody = false
  let chunked = false
  let chunkLeft = 0 // bytes of the current chunk still to come; 0: a size line is next
  let sizeLine = ''
  let skip = 0 // the CRLF after a chunk's data
  let rest = ''
  let id = null
  let event = null
  let data = null
  s.setEncoding('latin1')
  s.on('error', (e) => (s.lastError = e.code ?? e.message))
  s.on('connect', () => {
    let h = `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n`
    for (const [k, v] of Object.entries(headers)) h += `${k}: ${v}\r\n`
    s.write(h + '\r\n')
  })
  const sse = (text) => {
    const lines = (rest + text).split('\n')
    rest = lines.pop()
    for (let line of lines) {
      if (line.endsWith('\r')) line = line.slice(0, -1)
      if (line === '') {
        if (id !== null || event !== null || data !== null) onEvent({ id, event: event ?? 'message', data: data ?? '' })
        id = event = data = null
      } else if (line.startsWith('id:')) id = line.slice(line.startsWith('id: ') ? 4 : 3)
      else if (line.startsWith('event:')) event = line.slice(line.startsWith('event: ') ? 7 : 6)
      else if (line.startsWith('data:')) {
        const v = line.slice(line.startsWith('data: ') ? 6 : 5)
        data = data === null ? v : `${data}\n${v}`
      }
    }
  }
  const body = (text) => {
    if (!chunked) return sse(text)
    let i = 0
    while (i < text.length) {
      if (skip > 0) {
        const n = Math.min(skip, text.length - i)
        i += n
        skip -= n
      } else if (chunkLeft === 0) {
        const nl = text.indexOf('\n', i)
        if (nl === -1) {
          sizeLine += text.slice(i)
          return
        }
        const size = parseInt(sizeLine + text.slice(i, nl), 16)
        sizeLine = ''
        i = nl + 1
        if (!(size > 0)) return // the last chunk (or garbage): the stream ends
        chunkLeft = size
      } else {
        const n = Math.min(chunkLeft, text.length - i)
        sse(text.slice(i, i + n))
        i += n
        chunkLeft -= n
        if (chunkLeft === 0) skip = 2
      }
    }
  }
  s.on('data', (text) => {
    if (!inBody) {
      head += text
      const end = head.indexOf('\r\n\r\n')
      if (end === -1) {
        if (head.length > 16384) s.destroy()
        return
      }
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0)
      onStatus?.(status)
      if (status !== 200) {
        s.lastError = `HTTP ${status}`
        s.destroy()
        return
      }
      inBody = true
      chunked = /\r\ntransfer-encoding:[^\r]*chunked/i.test(head.slice(0, end))
      text = head.slice(end + 4)
      head = ''
    }
    body(text)
  })
  s.on('close', () => onClose?.(s.lastError ?? null))
  return s
}

/**
 * One new subscriber (`GET path` with `Accept: text/event-stream`) timed until its `ready` event:
 * { ok, ms } or, after waitMs or a close first, { ok: false, outcome }. Its socket is closed either way.
 */
export function subscribeAttempt({ port, path: target, localAddress, waitMs = 10_000 }) {
  return new Promise((resolve) => {
    const t0 = performance.now()
    let status = null
    let done = false
    const finish = (r) => {
      if (done) return
      done = true
      clearTimeout(timer)
      s.destroy()
      resolve(r)
    }
    const s = openStream({
      port,
      path: target,
      localAddress,
      onStatus: (st) => (status = st),
      onEvent: (ev) => ev.event === 'ready' && finish({ ok: true, ms: performance.now() - t0 }),
      onClose: (err) => finish({ ok: false, outcome: status !== null && status !== 200 ? `status ${status}` : err ? `error ${err}` : 'closed, no answer', ms: performance.now() - t0 }),
    })
    const timer = setTimeout(() => finish({ ok: false, outcome: `no ready within ${waitMs / 1000} s`, ms: waitMs }), waitMs)
  })
}

/** A RESULTS.md section written by a script: its title, what it is, then one block per label. */
export function labelledSection(title, intro, blocks) {
  const out = [title, '', intro, '']
  for (const [, text] of blocks) out.push(text, '')
  return out.join('\n')
}

/** TcpExt ListenOverflows and ListenDrops, machine-wide (this network namespace). */
export function listenCounters() {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n')
    for (let i = 0; i + 1 < lines.length; i++) {
      if (!lines[i].startsWith('TcpExt:') || !lines[i + 1].startsWith('TcpExt:')) continue
      const k = lines[i].trim().split(/\s+/)
      const v = lines[i + 1].trim().split(/\s+/)
      return { overflows: Number(v[k.indexOf('ListenOverflows')]), drops: Number(v[k.indexOf('ListenDrops')]) }
    }
  } catch {}
  return { overflows: NaN, drops: NaN }
}

/** Nearest-rank quantile; Infinity entries (never happened) sort last. */
export function quantile(xs, q) {
  const v = xs.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))]
}

/**
 * Source addresses of our own for this run, 127.A.B.C with A and B random, so no earlier run's
 * TIME_WAIT is met; one per PER_SOURCE connections, because bind() with port 0 searches the
 * ports already bound to that address and gets slow (seconds of system time for 10 000 on one).
 */
export const PER_SOURCE = 1000
const RUN_A = 10 + Math.floor(Math.random() * 200)
const RUN_B = Math.floor(Math.random() * 250)
let sourceCount = 0
const newSource = () => {
  const k = sourceCount++
  return `127.${RUN_A}.${(RUN_B + Math.floor(k / 250)) % 250}.${1 + (k % 250)}`
}
export const sourcesFor = (count) => Array.from({ length: Math.max(1, Math.ceil(count / PER_SOURCE)) }, newSource)

/** Whether `address` (an IP, or IP:port as ss prints it) is one of this run's source addresses. */
export const isRunSource = (address) => address.startsWith(`127.${RUN_A}.`)

/** Whether a process started by startProcess() still runs. */
export const alive = (proc) => proc.child.exitCode === null && proc.child.signalCode === null

/** The last line of `text` that is a JSON object (a helper process's result), or null. */
export function lastJsonLine(text) {
  const line = text.trim().split('\n').reverse().find((l) => l.startsWith('{'))
  try {
    return line ? JSON.parse(line) : null
  } catch {
    return null
  }
}
