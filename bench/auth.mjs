// Opening streams with tokens an application signs (issue 23, "Measure"): the server CPU one open
// costs for each kind of token, and a reconnect storm of ES256 streams against static tokens.
//
//   node bench/auth.mjs [--opens 2000] [--storm 10000] [--rounds 3] [--quick] [--out bench/RESULTS.md]
//
// The server is this repository's built library (dist/index.js, `npm run build` first) in a
// process of its own (this script with `--serve`, run with the bin's node flags), pinned to core 0
// with `taskset`; this script and its load processes run on core 1. It holds one static token, an
// HS256 secret, and RS256 (2048-bit RSA), ES256 (P-256) and EdDSA (Ed25519) public keys, and
// prints its verifier's counts (`jwtCounts`: signatures checked, tokens answered from the cache)
// on SIGUSR2. Tokens are signed here with node:crypto, each with a `jti` of its own, so
// no two are alike unless a case says so.
//
// Open cost: per kind (static, HS256, RS256, ES256, EdDSA, and ES256 with one token shown again
// and again), --opens streams opened 50 at a time from this process, each read until its `ready`
// and closed; the server's CPU time (utime + stime, /proc) over the run, 300 ms after the last,
// divided by the opens: one open and its close. Median and spread of --rounds rounds, the kinds
// interleaved within a round, one server for all.
//
// Storm: a fresh server; --storm streams (two load processes, each half: this script with
// `--load`, from source addresses 127.A.B.C of this run; SIGUSR1 says go, SIGUSR2 close) connect
// at once: the time from the go
// until the last `ready`, and the server's CPU time until then. Static (all with the one token)
// and ES256 (each stream its own token), each on a fresh server, then the ES256 streams close and
// come back at once with the same tokens: the verifier's cache answers. Counts before and after.
//
// It writes its section of bench/RESULTS.md (`<!-- auth:begin -->` … `<!-- auth:end -->`, after
// the downloads section). --quick: --opens 300 --storm 1000 --rounds 1, written nowhere unless
// --out is given. Every process it starts is killed by PID at the end, on errors and on Ctrl-C.
// Internal: `--serve JSON` is the server, `--load JSON` one load process.

import { constants, createHmac, generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  BENCH,
  binNodeFlags,
  BUSY_LIMIT,
  busiestCorePercent,
  CLI,
  flagReader,
  fmt,
  killAll,
  lastJsonLine,
  listeningUrl,
  machine,
  machineMarkdown,
  median,
  openStream,
  placeSectionAfter,
  PUBLISH_TOKEN,
  run,
  sleep,
  sourcesFor,
  spread,
  startProcess,
  SUB_TOKEN,
  subscribeAttempt,
  writeSection,
} from './lib.mjs'

const SELF = path.join(BENCH, 'auth.mjs')
const SERVER_CORE = '0'
const LOAD_CORE = '1'
const CLK_TCK = Number(run('getconf', ['CLK_TCK']) ?? 100)
const AT_ONCE = 50

// ---------------------------------------------------------------------------------------------
// Tokens.

const b64 = (x) => Buffer.from(x).toString('base64url')
let jti = 0

/** A JWT of `alg` signed with `key`, expiring in an hour, with a `jti` of its own. */
function jwt(alg, key) {
  const input = `${b64(JSON.stringify({ alg, typ: 'JWT' }))}.${b64(JSON.stringify({ sub: `u${jti}`, jti: String(jti++), exp: Math.floor(Date.now() / 1000) + 3600 }))}`
  let sig
  if (alg === 'HS256') sig = createHmac('sha256', key).update(input).digest()
  else if (alg === 'RS256') sig = sign('sha256', Buffer.from(input), { key, padding: constants.RSA_PKCS1_PADDING })
  else if (alg === 'ES256') sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
  else sig = sign(null, Buffer.from(input), key)
  return `${input}.${b64(sig)}`
}

function keys() {
  const pair = (type, o) => generateKeyPairSync(type, o)
  const rsa = pair('rsa', { modulusLength: 2048 })
  const ec = pair('ec', { namedCurve: 'P-256' })
  const ed = pair('ed25519')
  const pem = (k) => k.publicKey.export({ type: 'spki', format: 'pem' })
  const secret = randomBytes(48)
  return {
    config: { secrets: [secret.toString('hex')], keys: [pem(rsa), pem(ec), pem(ed)] },
    signer: { HS256: secret, RS256: rsa.privateKey, ES256: ec.privateKey, EdDSA: ed.privateKey },
  }
}

// ---------------------------------------------------------------------------------------------
// The server and its CPU time.

async function startServer(config) {
  const cmd = ['-c', SERVER_CORE, process.execPath, ...binNodeFlags(), SELF, '--serve', JSON.stringify(config)]
  const { proc, value } = await startProcess('rawsse', 'taskset', cmd, { ready: listeningUrl })
  const port = Number(new URL(value).port)
  const counts = async () => {
    const before = proc.stdout.length
    process.kill(proc.pid, 'SIGUSR2')
    for (let i = 0; i < 200 && !proc.stdout.slice(before).includes('\n'); i++) await sleep(10)
    return lastJsonLine(proc.stdout)
  }
  return { proc, port, counts }
}

function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / CLK_TCK
}

/** `--serve`: SseServer from dist/index.js; SIGUSR2 prints the verifier's counts and the streams as JSON. */
async function serve(config) {
  const { SseServer } = await import(pathToFileURL(path.join(BENCH, '..', 'dist', 'index.js')).href)
  const jwt = { secrets: config.secrets.map((h) => Buffer.from(h, 'hex')), keys: config.keys }
  const server = new SseServer({ port: 0, host: '127.0.0.1', tokens: [SUB_TOKEN], publishTokens: [PUBLISH_TOKEN], jwt, tickMs: 0, heartbeatMs: 0, maxClients: 20_000, publicDir: null })
  const { port } = await server.listen()
  process.stdout.write(`rawsse listening on http://127.0.0.1:${port}\n`)
  process.on('SIGUSR2', () => process.stdout.write(JSON.stringify({ ...server.jwtCounts, clients: server.clientCount }) + '\n'))
  process.on('SIGTERM', () => void server.stop().then(() => process.exit(0)))
}

// ---------------------------------------------------------------------------------------------
// Open cost.

/** Open a stream with each token, AT_ONCE at a time, each closed at its `ready`; the failures. */
async function openAll(port, tokens) {
  const sources = sourcesFor(tokens.length)
  let next = 0
  let failed = 0
  const worker = async () => {
    while (next < tokens.length) {
      const i = next++
      const r = await subscribeAttempt({ port, path: `/events/${tokens[i]}`, localAddress: sources[Math.floor(i / 1000) % sources.length] })
      if (!r.ok) failed++
    }
  }
  await Promise.all(Array.from({ length: AT_ONCE }, worker))
  return failed
}

async function openCosts(o, signer) {
  const server = await startServer(o.config)
  const kinds = {
    static: () => SUB_TOKEN,
    HS256: () => jwt('HS256', signer.HS256),
    RS256: () => jwt('RS256', signer.RS256),
    ES256: () => jwt('ES256', signer.ES256),
    EdDSA: () => jwt('EdDSA', signer.EdDSA),
    'ES256, one token again and again': (() => {
      const one = jwt('ES256', signer.ES256)
      return () => one
    })(),
  }
  const per = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]))
  const counts = {}
  for (let round = 0; round < o.rounds; round++) {
    for (const [kind, make] of Object.entries(kinds)) {
      const tokens = Array.from({ length: o.opens }, make)
      const c0 = await server.counts()
      const before = cpuSeconds(server.proc.pid)
      const failed = await openAll(server.port, tokens)
      await sleep(300)
      const used = cpuSeconds(server.proc.pid) - before
      const c1 = await server.counts()
      if (failed > 0) throw new Error(`${kind}: ${failed} of ${o.opens} streams got no ready`)
      per[kind].push((used * 1e6) / o.opens)
      counts[kind] = { verified: c1.verified - c0.verified, cached: c1.cached - c0.cached }
      process.stderr.write(`round ${round + 1} ${kind}: ${fmt((used * 1e6) / o.opens)} µs per open\n`)
    }
  }
  await server.proc.stop()
  return { per, counts }
}

// ---------------------------------------------------------------------------------------------
// Storm.

/** `--load`: hold `count` streams; on SIGUSR1, open them all at once and print when the last had `ready`; on SIGUSR2, close them. */
async function load(cfg) {
  const tokens = JSON.parse(readFileSync(cfg.tokens, 'utf8')).slice(cfg.from, cfg.from + cfg.count)
  const sources = sourcesFor(tokens.length)
  let open = []
  process.on('SIGUSR2', () => {
    for (const s of open) s.destroy()
    open = []
  })
  process.on('SIGUSR1', () => {
    let ready = 0
    let failed = 0
    const settle = () => {
      if (ready + failed === tokens.length) process.stdout.write(JSON.stringify({ ready, failed, lastAt: Date.now() }) + '\n')
    }
    open = tokens.map((token, i) => {
      let had = false
      return openStream({
        port: cfg.port,
        path: `/events/${token}`,
        localAddress: sources[Math.floor(i / 1000)],
        onEvent: (e) => {
          if (e.event !== 'ready' || had) return
          had = true
          ready++
          settle()
        },
        onClose: () => {
          if (had) return
          had = true
          failed++
          settle()
        },
      })
    })
  })
  process.stdout.write('loaded\n')
  setInterval(() => {}, 1 << 30) // held open until killed
}

/** Go: every load process opens its streams at once; the time until the last `ready`, and the server's CPU until then. */
async function goAll(loads, server) {
  const marks = loads.map((l) => l.stdout.length)
  const before = cpuSeconds(server.proc.pid)
  const t0 = Date.now()
  for (const l of loads) process.kill(l.pid, 'SIGUSR1')
  const results = []
  for (const [i, l] of loads.entries()) {
    for (let k = 0; k < 12_000 && lastJsonLine(l.stdout.slice(marks[i]))?.lastAt === undefined; k++) await sleep(10)
    results.push(lastJsonLine(l.stdout.slice(marks[i])))
  }
  const cpu = cpuSeconds(server.proc.pid) - before
  if (results.some((r) => r === null || r.failed > 0)) throw new Error(`storm: ${JSON.stringify(results)}`)
  return { ms: Math.max(...results.map((r) => r.lastAt)) - t0, cpu, streams: results.reduce((n, r) => n + r.ready, 0) }
}

async function closeAll(loads, server) {
  for (const l of loads) process.kill(l.pid, 'SIGUSR2')
  for (let k = 0; k < 500 && (await server.counts()).clients > 0; k++) await sleep(20)
}

async function storm(o, signer, dir) {
  const out = {}
  for (const kind of ['static', 'ES256']) {
    const tokens = Array.from({ length: o.storm }, () => (kind === 'static' ? SUB_TOKEN : jwt('ES256', signer.ES256)))
    const file = path.join(dir, `${kind}.json`)
    writeFileSync(file, JSON.stringify(tokens))
    const server = await startServer(o.config)
    const half = Math.ceil(o.storm / 2)
    const loads = []
    for (const [from, count] of [
      [0, half],
      [half, o.storm - half],
    ]) {
      const cfg = { port: server.port, tokens: file, from, count }
      const { proc } = await startProcess(`load ${from}`, 'taskset', ['-c', LOAD_CORE, process.execPath, SELF, '--load', JSON.stringify(cfg)], { ready: (s) => s.includes('loaded'), timeoutMs: 30_000 })
      loads.push(proc)
    }
    const busy = await busiestCorePercent()
    const c0 = await server.counts()
    out[kind] = { busy, first: await goAll(loads, server) }
    out[kind].firstCounts = diff(await server.counts(), c0)
    if (kind === 'ES256') {
      await closeAll(loads, server)
      const c1 = await server.counts()
      out[kind].again = await goAll(loads, server)
      out[kind].againCounts = diff(await server.counts(), c1)
    }
    for (const l of loads) await l.stop()
    await server.proc.stop()
    process.stderr.write(`storm ${kind}: ${JSON.stringify(out[kind])}\n`)
  }
  return out
}

const diff = (a, b) => ({ verified: a.verified - b.verified, cached: a.cached - b.cached })

// ---------------------------------------------------------------------------------------------
// The section.

function section(o, m, costs, storms, busy) {
  const base = median(costs.per.static)
  const rows = Object.entries(costs.per).map(([kind, xs]) => {
    const c = costs.counts[kind]
    const over = median(xs) - base
    return `| ${kind} | ${fmt(median(xs))} | ${spread(xs)} | ${kind === 'static' ? '–' : `${over < 0 ? '−' : '+'}${fmt(Math.abs(over))}`} | ${fmt(c.verified)} / ${fmt(c.cached)} |`
  })
  const row = (label, r, c) => `| ${label} | ${fmt(r.streams)} | ${fmt(r.ms)} | ${fmt(r.cpu, 2)} | ${fmt((r.cpu * 1e6) / r.streams)} | ${fmt(c.verified)} / ${fmt(c.cached)} |`
  return [
    '## Tokens an application signs (issue 23, "Measure")',
    '',
    `\`node bench/auth.mjs --opens ${o.opens} --storm ${o.storm} --rounds ${o.rounds}\` (its header says how). The server is the built library in its own process pinned to core 0; the load runs on core 1.`,
    '',
    machineMarkdown(m),
    `- Busiest core before the runs: ${fmt(busy)} % (open cost), ${fmt(storms.static.busy)} % and ${fmt(storms.ES256.busy)} % (storms)${Math.max(busy, storms.static.busy, storms.ES256.busy) > BUSY_LIMIT ? ': other programs were running, read the figures with that in mind' : ''}`,
    '',
    `**Server CPU per stream opened** (and closed), ${fmt(o.opens)} opens per kind and round, ${AT_ONCE} at a time; the verifier's counts of the last round (signatures checked / answered from the cache):`,
    '',
    '| token | µs per open (median) | spread | over static | verified / cached |',
    '|---|---|---|---|---|',
    ...rows,
    '',
    `**Reconnect storm**: every stream connects at once (two load processes), on a fresh server; the time until the last \`ready\`, the server's CPU until then:`,
    '',
    '| storm | streams | ms until all ready | server CPU s | µs per stream | verified / cached |',
    '|---|---|---|---|---|---|',
    row('static token', storms.static.first, storms.static.firstCounts),
    row('ES256, a token each', storms.ES256.first, storms.ES256.firstCounts),
    row('ES256 again, the same tokens', storms.ES256.again, storms.ES256.againCounts),
  ].join('\n')
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const argv = process.argv.slice(2)
  if (argv[0] === '--serve') return serve(JSON.parse(argv[1]))
  if (argv[0] === '--load') return load(JSON.parse(argv[1]))
  const flags = flagReader(argv, ['quick'])
  const quick = argv.includes('--quick')
  const o = {
    opens: flags.num('opens', quick ? 300 : 2000),
    storm: flags.num('storm', quick ? 1000 : 10_000),
    rounds: flags.num('rounds', quick ? 1 : 3),
    out: flags.get('out') ?? (quick ? null : path.join(BENCH, 'RESULTS.md')),
  }
  flags.done()
  if (run('taskset', ['-V']) === null) throw new Error('taskset (util-linux) is not installed')
  run('taskset', ['-a', '-c', '-p', LOAD_CORE, String(process.pid)])
  readFileSync(CLI) // built?
  const { config, signer } = keys()
  o.config = config
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rawsse-auth-'))
  try {
    const busy = await busiestCorePercent()
    const costs = await openCosts(o, signer)
    const storms = await storm(o, signer, dir)
    const text = section(o, machine(), costs, storms, busy)
    process.stdout.write(text + '\n')
    if (o.out !== null) {
      placeSectionAfter(o.out, 'auth', 'downloads')
      writeSection(o.out, 'auth', text)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
    killAll()
  }
}

main().catch((err) => {
  process.stderr.write(`bench/auth.mjs: ${err.stack ?? err.message}\n`)
  killAll()
  process.exit(1)
})
