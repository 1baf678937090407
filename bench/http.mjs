// HTTP benchmark: rawsse's plain requests against node:http doing the same work, with autocannon.
//
//   npm install && node bench/http.mjs [--quick] [--rounds 3] [--duration 10] [--connections 50] [--out bench/RESULTS.md]
//
// Two routes, each on a server pinned to core 0 (`taskset -c 0`) while autocannon runs in this
// process, moved to core 1 (`taskset -a -p`):
//   - POST /publish with no stream open (Authorization: Bearer, a 16-byte body): the request
//     parser, the bearer check, the body read and a small JSON answer, {"id":"N","delivered":0}.
//   - GET /index.html (7 KiB from public/): path checks, stat, ETag, the body from a cache.
// The node:http peer is bench/peers/node-http.mjs with --publish-token: its /publish checks the
// bearer in constant time, reads the body and answers the same JSON; its static handler does
// what rawsse's static.ts does (realpath, stat on every request, weak ETag from size and mtime,
// body cached until the file changes). rawsse runs as its bin starts it (the node flags on
// dist/cli.js's first line) with --tick 0 --heartbeat 0; it also keeps
// each published event in its history ring (node-http keeps nothing), which is part of its work.
// Each server is started fresh per route; a 2 s warm-up run is discarded, then --rounds runs of
// --duration seconds; the table gives the median requests/s, the spread (min–max) and node:http's
// ratio to rawsse. It writes its section of bench/RESULTS.md (between `<!-- http:begin -->` and
// `<!-- http:end -->`); bench/fanout.mjs owns another. --quick: one round of 3 s.

import autocannon from 'autocannon'
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { BENCH, binNodeFlags, BUSY_LIMIT, busiestCorePercent, CLI, fmt, freePort, killAll, listeningUrl, machine, machineMarkdown, median, PUBLISH_TOKEN, ratio, shellJoin, spread, startProcess, writeSection } from './lib.mjs'

const BODY = '{"n":1,"x":"ab"}' // 16 bytes

const argv = process.argv.slice(2)
const quick = argv.includes('--quick')
const get = (name, def) => {
  const i = argv.indexOf(`--${name}`)
  return i === -1 ? def : argv[i + 1]
}
const ROUNDS = Number(get('rounds', quick ? 1 : 3))
const DURATION = Number(get('duration', quick ? 3 : 10))
const CONNECTIONS = Number(get('connections', 50))
const OUT = path.resolve(get('out', path.join(BENCH, 'RESULTS.md')))

const SERVERS = {
  rawsse: ['rawsse', [...binNodeFlags(), CLI, '--tick', '0', '--heartbeat', '0', '--publish-token', PUBLISH_TOKEN]],
  'node:http': ['node-http', [path.join(BENCH, 'peers', 'node-http.mjs'), '--publish-token', PUBLISH_TOKEN]],
}
const ROUTES = {
  'POST /publish (0 streams)': { path: '/publish', method: 'POST', headers: { authorization: `Bearer ${PUBLISH_TOKEN}`, 'content-type': 'text/plain' }, body: BODY, expect: /"delivered":0/ },
  'GET /index.html': { path: '/index.html', method: 'GET', headers: {}, expect: /<html|<!doctype/i },
}

function cannon(url, route, duration) {
  return new Promise((resolve, reject) => {
    const inst = autocannon(
      { url: url + route.path, method: route.method, headers: route.headers, body: route.body, connections: CONNECTIONS, duration, pipelining: 1 },
      (err, res) => (err ? reject(err) : resolve(res)),
    )
    // Bound it even if a server stops answering: autocannon's own duration plus a margin.
    setTimeout(() => inst.stop(), (duration + 10) * 1000).unref()
  })
}

async function check(url, route) {
  const res = await fetch(url + route.path, { method: route.method, headers: route.headers, body: route.body })
  const text = await res.text()
  if (res.status !== 200 || !route.expect.test(text)) throw new Error(`${url}${route.path}: ${res.status} ${text.slice(0, 120)}`)
}

async function main() {
  if (spawnSync('taskset', ['-V']).error) throw new Error('taskset (util-linux) is not installed')
  const m = machine()
  // autocannon runs here: move every thread of this process to core 1.
  const pin = spawnSync('taskset', ['-a', '-c', '-p', '1', String(process.pid)], { encoding: 'utf8' })
  if (pin.status !== 0) throw new Error(`cannot pin this process to core 1: ${pin.stderr.trim()}`)
  const rows = []
  const notes = []
  for (const [routeName, route] of Object.entries(ROUTES)) {
    const per = {}
    for (const [name, [label, args]] of Object.entries(SERVERS)) {
      const { proc, value: url } = await startProcess(label, 'taskset', ['-c', '0', process.execPath, ...args, '--port', String(await freePort())], {
        ready: listeningUrl,
      })
      try {
        await check(url, route)
        await cannon(url, route, 2) // warm-up: JIT, caches; discarded
        per[name] = []
        for (let r = 1; r <= ROUNDS; r++) {
          const busy = await busiestCorePercent()
          if (busy > BUSY_LIMIT) {
            const msg = `${routeName}, ${name}, round ${r}: a core was ${fmt(busy)} % busy with other work just before the run; its numbers are suspect`
            process.stderr.write(msg + '\n')
            notes.push(msg)
          }
          const cpu0 = process.cpuUsage()
          const res = await cannon(url, route, DURATION)
          const cpu = process.cpuUsage(cpu0)
          // autocannon's own CPU (this process) as a share of one core: near 100 %, the
          // figure is autocannon's limit, not the server's.
          res.cannonCpuPercent = (cpu.user + cpu.system) / 1e4 / DURATION
          per[name].push(res)
          process.stderr.write(
            `${routeName} ${name} round ${r}: ${fmt(res.requests.average)} req/s, p50 ${res.latency.p50} ms, p99 ${res.latency.p99} ms, non-2xx ${res.non2xx}, errors ${res.errors}, timeouts ${res.timeouts}, autocannon CPU ${fmt(res.cannonCpuPercent)} %\n`,
          )
        }
      } finally {
        await proc.stop()
      }
    }
    rows.push({ routeName, per })
  }

  const out = []
  out.push(`## HTTP${quick ? ' (QUICK SMOKE RUN: one round of 3 s; not results)' : ''}`)
  out.push('')
  out.push(machineMarkdown(m))
  out.push(`- Command: \`node bench/http.mjs${argv.length ? ' ' + shellJoin(argv) : ''}\``)
  out.push(
    `- autocannon ${m.autocannon}, ${CONNECTIONS} connections, no pipelining, keep-alive; servers on core 0, autocannon on core 1; per server and route a 2 s warm-up, then ${ROUNDS} run(s) of ${DURATION} s; median and min–max over runs.`,
  )
  out.push(`- rawsse: \`node ${binNodeFlags().join(' ')} dist/cli.js --tick 0 --heartbeat 0\` (as its bin starts it).`)
  out.push('- node:http is bench/peers/node-http.mjs doing the same work (bearer check, body read, the same JSON; realpath + stat + ETag + cached body).')
  out.push('')
  out.push('| route | server | requests/s | spread | × rawsse | p50 ms | p99 ms | non-2xx | errors | autocannon CPU % |')
  out.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const { routeName, per } of rows) {
    const base = median(per.rawsse.map((r) => r.requests.average))
    for (const [name, runs] of Object.entries(per)) {
      const rps = median(runs.map((r) => r.requests.average))
      const sum = (f) => runs.reduce((a, r) => a + f(r), 0)
      out.push(
        `| ${routeName} | ${name} | ${fmt(rps)} | ${spread(runs.map((r) => r.requests.average))} | ${name === 'rawsse' ? '1.00×' : ratio(rps, base)} | ${fmt(median(runs.map((r) => r.latency.p50)), 1)} | ${fmt(median(runs.map((r) => r.latency.p99)), 1)} | ${sum((r) => r.non2xx)} | ${sum((r) => r.errors + r.timeouts)} | ${fmt(median(runs.map((r) => r.cannonCpuPercent)))} |`,
      )
    }
  }
  out.push('')
  out.push('autocannon CPU % is its share of one core during the runs: near 100 %, requests/s is autocannon\'s limit and the ratio understates the faster server.')
  out.push('')
  if (notes.length) out.push('Notes:', '', ...notes.map((n) => `- ${n}`))
  else out.push(`Before every run no core was more than ${BUSY_LIMIT} % busy with other work.`)
  const md = out.join('\n')
  writeSection(OUT, 'http', md)
  process.stdout.write(md + '\n')
  process.stderr.write(`wrote the HTTP section of ${path.relative(process.cwd(), OUT) || OUT}\n`)
}

main().catch((err) => {
  process.stderr.write(`http: ${err.message}\n`)
  killAll()
  process.exit(1)
})
