// Loaded into the server under test with `node --import` by bench/hostile.mjs: the server's own
// event-loop delay, the true "loop blocked" figure. A probe request from another process also
// waits for its own process and core; this does not. Every 100 ms one line `EPOCH_MS MAX_MS`
// (the longest delay of that interval) is appended to $RAWSSE_LOOP_LOG.

import { appendFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'

const file = process.env.RAWSSE_LOOP_LOG
if (file) {
  const h = monitorEventLoopDelay({ resolution: 10 })
  h.enable()
  setInterval(() => {
    appendFileSync(file, `${Date.now()} ${(h.max / 1e6).toFixed(1)}\n`)
    h.reset()
  }, 100).unref()
}
