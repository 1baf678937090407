// Graceful stop under load: the `rawsse` process holding N open streams gets SIGTERM; how long
// until it exits, with what code, and how many streams received the terminating chunk.
//
//   npm install && node bench/shutdown.mjs [--streams 10000]
//
// The server is the real CLI (dist/cli.js) in a child process; the streams are opened from this
// process on 127.0.0.1 (each process stays under the 20 000 open-file limit). Stops by itself.

import { spawn } from 'node:child_process'
import * as net from 'node:net'

const args = process.argv.slice(2)
const i = args.indexOf('--streams')
const STREAMS = i === -1 ? 10_000 : Number(args[i + 1])
const LAST = '0\r\n\r\n'

const child = spawn(process.execPath, [new URL('../dist/cli.js', import.meta.url).pathname, '--port', '0', '--tick', '0', '--heartbeat', '0', '--token', 'tok', '--max-clients', String(STREAMS)], {
  stdio: ['ignore', 'pipe', 'inherit'],
})
const port = await new Promise((resolve, reject) => {
  let out = ''
  child.stdout.on('data', (d) => {
    out += d
    const m = /^rawsse listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)
    if (m) resolve(Number(m[1]))
  })
  child.once('exit', () => reject(new Error('server exited early')))
})

const streams = []
let ready = 0
let terminated = 0
let closed = 0
function open() {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    const st = { tail: '', done: false }
    s.on('error', () => {})
    s.on('data', (d) => {
      const t = st.tail + d.toString('latin1')
      if (!st.ready && t.includes('event: ready')) {
        st.ready = true
        ready++
        resolve()
      }
      if (!st.done && t.endsWith(LAST)) {
        st.done = true
        terminated++
      }
      st.tail = t.slice(-64)
    })
    s.on('close', () => {
      closed++
      resolve()
    })
    s.write('GET /events/tok HTTP/1.1\r\nHost: x\r\n\r\n')
    streams.push(s)
  })
}
for (let k = 0; k < STREAMS; k += 500) await Promise.all(Array.from({ length: Math.min(500, STREAMS - k) }, open))

const started = process.hrtime.bigint()
child.kill('SIGTERM')
const code = await new Promise((resolve) => child.once('exit', (c, sig) => resolve(c ?? sig)))
const exitMs = Number(process.hrtime.bigint() - started) / 1e6
for (let w = 0; w < 100 && closed < STREAMS; w++) await new Promise((r) => setTimeout(r, 20))
for (const s of streams) s.destroy()
console.log(JSON.stringify({ date: new Date().toISOString(), streams: STREAMS, ready, exitCode: code, exitMs: Math.round(exitMs), terminatedWith0CRLF: terminated, closedByServer: closed }, null, 2))
process.exit(code === 0 && terminated === STREAMS ? 0 : 1)
