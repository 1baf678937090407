// The two SSE parsers on the same bytes (issue 25: "one SSE parser for Node and the browser, on
// bytes, if that can be done without slowing SseClient; measure it"): src/client/sse-parse.ts
// (SseParser: Buffers, views, what SseClient and `rawsse bench` read with) and src/browser/parse.ts
// (the page's: TextDecoder, then lines cut from text), both from dist/, in this Node process. The
// stream is EVENTS events of SIZE bytes of data with an id, fed in READ-byte slices as a socket
// hands them over; each parser runs ROUNDS times, alternating, and the median is kept.
//
//   npm run build && node bench/parsers.mjs [--events 200000] [--size 100] [--read 16384] [--rounds 7] [--out bench/RESULTS.md]
//
// A few seconds. Writes the `parsers` section of RESULTS.md.

import * as path from 'node:path'
import { SseParser } from '../dist/client/sse-parse.js'
import { eventStreamParser } from '../dist/browser/modules/browser/parse.js'
import { BENCH, flagReader, fmt, machine, machineMarkdown, median, writeSection } from './lib.mjs'

const flags = flagReader(process.argv.slice(2))
const EVENTS = flags.num('events', 200_000)
const SIZE = flags.num('size', 100)
const READ = flags.num('read', 16_384)
const ROUNDS = flags.num('rounds', 7)
const OUT = flags.get('out') ?? path.join(BENCH, 'RESULTS.md')
flags.done()

const data = 'x'.repeat(SIZE)
let text = ''
for (let i = 1; i <= EVENTS; i++) text += `id: ${i}\ndata: ${data}\n\n`
const stream = Buffer.from(text)
const slices = []
for (let off = 0; off < stream.length; off += READ) slices.push(stream.subarray(off, Math.min(off + READ, stream.length)))

/** Each parser as its users run it; each returns the events it dispatched, so none can skip work. */
const runs = {
  // What `rawsse bench` does: the event's bytes are looked at, never made a string.
  'SseParser, data as a view (rawsse bench)': () => {
    let n = 0
    const p = new SseParser({ onEvent: () => n++ })
    for (const s of slices) p.feed(s)
    return n
  },
  // What SseClient does: each event's data decoded to a string, and its id read.
  'SseParser, data and id as strings (SseClient)': () => {
    let n = 0
    let last = ''
    const p = new SseParser({
      onEvent: (type, buf, start, end) => {
        if (buf.toString('utf8', start, end).length === SIZE) n++
        last = p.lastEventId
      },
    })
    for (const s of slices) p.feed(s)
    return last === String(EVENTS) ? n : -1
  },
  // The page's parser: the whole stream decoded, lines split from text, strings for everything.
  'browser parse.ts on Uint8Array (RawSse)': () => {
    let n = 0
    const p = eventStreamParser({ event: (type, d) => (n += d.length === SIZE ? 1 : 0), retry: () => {} })
    for (const s of slices) p.feed(new Uint8Array(s.buffer, s.byteOffset, s.length))
    return n
  },
}

const times = Object.fromEntries(Object.keys(runs).map((k) => [k, []]))
for (let r = 0; r < ROUNDS + 1; r++) {
  for (const [name, run] of Object.entries(runs)) {
    const t0 = process.hrtime.bigint()
    const n = run()
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    if (n !== EVENTS) throw new Error(`${name}: ${n} events, not ${EVENTS}`)
    if (r > 0) times[name].push(ms) // round 0 warms the JIT
  }
}

const m = machine()
const mb = stream.length / 1024 / 1024
const base = median(times['SseParser, data and id as strings (SseClient)'])
const rows = Object.entries(times).map(([name, ts]) => {
  const ms = median(ts)
  return `| ${name} | ${fmt(ms, 1)} | ${fmt(mb / (ms / 1000), 0)} | ${fmt(EVENTS / (ms / 1000) / 1e6, 2)} | ${fmt(ms / base, 2)}× |`
})
const md = `## The two SSE parsers on the same bytes (issue 25)

\`npm run build && node bench/parsers.mjs --events ${EVENTS} --size ${SIZE} --read ${READ} --rounds ${ROUNDS}\`: ${EVENTS.toLocaleString('en-US')} events of ${SIZE} bytes with an id (${fmt(mb, 1)} MiB), fed in ${READ}-byte slices, each parser ${ROUNDS} times after one warm-up, alternating; median.

${machineMarkdown(m)}

| parser, as its user runs it | ms | MiB/s | million events/s | time × SseClient's |
|---|---:|---:|---:|---:|
${rows.join('\n')}
`
writeSection(OUT, 'parsers', md, ['fanout', 'http', 'hostile', 'downloads', 'browser', 'parsers'])
process.stdout.write(md)
