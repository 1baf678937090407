// bench/charts.mjs: the fan-out figures as SVG (issue 15). Small known figures in; the drawing checked:
// well-formed, one line or bar per peer and figure where the figure puts it, axes that hold every
// value, a legend naming every peer; and the figures read back from RESULTS.md, from the tables
// bench/fanout.mjs writes and from its fanout-data comment alike.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import * as path from 'node:path'
import t from 'tap'
import {
  dataComment,
  deliveriesChart,
  idleChart,
  latencyChart,
  niceScale,
  parseFanoutTables,
  readFanout,
  withChartLinks,
  writeCharts,
} from '../bench/charts.mjs'
import { fanoutData, report } from '../bench/fanout.mjs'

/** Problems that make `svg` not well-formed XML: unbalanced tags, a stray `<` or `>`, a bare `&`. */
function xmlProblems(svg: string): string[] {
  const problems: string[] = []
  const stack: string[] = []
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g
  const checkText = (s: string): void => {
    if (/[<>]/.test(s)) problems.push(`stray bracket in ${JSON.stringify(s)}`)
    if (/&(?!amp;|lt;|gt;|quot;|#\d+;)/.test(s)) problems.push(`bare & in ${JSON.stringify(s)}`)
  }
  let last = 0
  for (let m; (m = tag.exec(svg)); ) {
    checkText(svg.slice(last, m.index))
    for (const v of m[3].matchAll(/="([^"]*)"/g)) checkText(v[1])
    last = tag.lastIndex
    if (m[4] === '/') continue
    if (m[1] === '/') {
      const open = stack.pop()
      if (open !== m[2]) problems.push(`</${m[2]}> closes <${open}>`)
    } else stack.push(m[2])
  }
  checkText(svg.slice(last))
  if (stack.length) problems.push(`never closed: ${stack.join(', ')}`)
  return problems
}

/** The drawn lines: peer → [[x, y], ...]. */
function lines(svg: string): Array<{ peer: string; points: number[][] }> {
  return [...svg.matchAll(/<polyline data-peer="([^"]+)" points="([^"]+)"/g)].map((m) => ({
    peer: m[1],
    points: m[2].split(' ').map((p) => p.split(',').map(Number)),
  }))
}

/** The drawn bars in order: peer, top y, height and fill. */
function bars(svg: string): Array<{ peer: string; y: number; height: number; fill: string }> {
  return [...svg.matchAll(/<rect data-peer="([^"]+)" x="[^"]+" y="([^"]+)" width="[^"]+" height="([^"]+)" fill="([^"]+)"/g)].map((m) => ({
    peer: m[1],
    y: Number(m[2]),
    height: Number(m[3]),
    fill: m[4],
  }))
}

const tickValues = (svg: string): number[] => [...svg.matchAll(/class="ytick"[^>]*>([^<]+)</g)].map((m) => Number(m[1].replace(/,/g, '')))
const legendNames = (svg: string): string[] => [.../<g class="legend">(.*?)<\/g>/s.exec(svg)![1].matchAll(/>([^<]+)<\/text>/g)].map((m) => m[1])

const closedRow = (window: number, n: number, peer: string, dps: number) => ({ window, n, peer, dps, spread: null, p50: 1, p99: 2 })

function sample() {
  return {
    date: '2026-01-02T03:04:05.000Z',
    command: 'node bench/fanout.mjs --rounds 2',
    rawsse: '0.1.0 (git abc1234)',
    quick: false,
    rounds: 2,
    settle: 30,
    peers: ['rawsse', 'nchan', 'other'],
    closed: [
      closedRow(1, 100, 'rawsse', 90_000),
      closedRow(1, 1000, 'rawsse', 90_000),
      closedRow(1, 10000, 'rawsse', 85_000),
      closedRow(1, 100, 'nchan', 110_000),
      closedRow(1, 1000, 'nchan', 70_000),
      closedRow(1, 10000, 'nchan', 74_000),
      closedRow(1, 100, 'other', 60_000),
      closedRow(1, 1000, 'other', 50_000),
    ],
    rate: {
      rate: 20,
      n: 1000,
      rows: [
        { peer: 'rawsse', p50: 6.69, p90: 11.2, p99: 19.2, p99Spread: [17.15, 19.46], max: 36 },
        { peer: 'nchan', p50: 6.4, p90: 11.39, p99: 17.15, p99Spread: null, max: 23.2 },
      ],
    },
    idle: [
      { n: 10000, peer: 'rawsse', perStream: 3000, spread: [2100, 3100], perStream2s: 3000 },
      { n: 10000, peer: 'nchan', perStream: 10_500, spread: null, perStream2s: 10_500 },
      { n: 19000, peer: 'rawsse', perStream: 2400, spread: null, perStream2s: 2400 },
    ],
  }
}

t.test('each chart is a well-formed 640×360 SVG whose title and desc name the chart, the command and the date', (t) => {
  for (const svg of [deliveriesChart(sample()), idleChart(sample()), latencyChart(sample())]) {
    t.same(xmlProblems(svg), [])
    t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" viewBox="0 0 640 360"/)
    t.match(svg, /<\/svg>\n$/)
    t.match(svg, /<title>[^<]+<\/title>/)
    t.match(svg, /<desc>[^<]*`node bench\/fanout\.mjs --rounds 2` on 2026-01-02T03:04:05\.000Z, rawsse 0\.1\.0 \(git abc1234\)[^<]*<\/desc>/)
    t.notMatch(svg, /<script|@import|url\(|href=/, 'nothing fetched or run')
  }
  t.end()
})

t.test('a peer name that is markup is escaped, and the SVG stays well-formed', (t) => {
  const d = sample()
  d.peers[2] = 'a<b>&"c'
  for (const r of d.closed) if (r.peer === 'other') r.peer = 'a<b>&"c'
  const svg = deliveriesChart(d)
  t.same(xmlProblems(svg), [])
  t.ok(legendNames(svg).includes('a&lt;b&gt;&amp;&quot;c'))
  t.end()
})

t.test('the deliveries chart draws one line per peer with a point per stream count it was measured at', (t) => {
  const svg = deliveriesChart(sample())
  t.same(
    lines(svg).map((l) => [l.peer, l.points.length]),
    [
      ['rawsse', 3],
      ['nchan', 3],
      ['other', 2],
    ],
  )
  t.same(legendNames(svg), ['rawsse', 'nchan', 'other'])
  t.ok(Math.max(...tickValues(svg)) >= 110_000, `top tick ${Math.max(...tickValues(svg))} holds 110,000`)
  t.end()
})

t.test('streams are on a log axis: 100 to 1 000 is as wide as 1 000 to 10 000', (t) => {
  const [rawsse] = lines(deliveriesChart(sample()))
  const [a, b, c] = rawsse.points.map((p) => p[0])
  t.ok(a < b && b < c)
  t.ok(Math.abs(b - a - (c - b)) <= 0.2, `${b - a} vs ${c - b}`)
  t.end()
})

t.test('a higher figure is drawn higher, and a changed figure moves only its own point', (t) => {
  const before = lines(deliveriesChart(sample()))
  const d = sample()
  d.closed[1].dps = 80_000 // rawsse at 1 000 streams; the largest figure (110 000) stays, so the axis does too
  const after = lines(deliveriesChart(d))
  t.same(after[1], before[1], 'nchan unchanged')
  t.same(after[0].points[0], before[0].points[0])
  t.equal(after[0].points[1][0], before[0].points[1][0], 'same streams, same x')
  t.ok(after[0].points[1][1] > before[0].points[1][1], 'fewer deliveries/s: lower on the page (larger y)')
  // 110 000 (nchan at 100) is above 90 000 (rawsse at 100).
  t.ok(before[1].points[0][1] < before[0].points[0][1])
  t.end()
})

t.test('several windows give a panel each, with a line per peer in each and an axis that holds its own figures', (t) => {
  const d = sample()
  d.closed.push(closedRow(8, 100, 'rawsse', 430_000), closedRow(8, 1000, 'rawsse', 530_000), closedRow(8, 100, 'nchan', 230_000))
  const svg = deliveriesChart(d)
  t.same(xmlProblems(svg), [])
  const panels = svg.split('<g class="panel"').slice(1)
  t.same(
    panels.map((p) => /data-window="(\d+)"/.exec(p)![1]),
    ['1', '8'],
  )
  t.same(
    lines(panels[1]).map((l) => [l.peer, l.points.length]),
    [
      ['rawsse', 2],
      ['nchan', 1],
    ],
  )
  t.ok(Math.max(...tickValues(panels[1])) >= 530_000)
  t.ok(Math.max(...tickValues(panels[0])) >= 110_000 && Math.max(...tickValues(panels[0])) < 530_000, 'W = 1 keeps its own scale')
  t.end()
})

t.test('the idle chart draws one bar per peer and stream count, heights in proportion to the figures', (t) => {
  const svg = idleChart(sample())
  const b = bars(svg)
  t.same(
    b.map((x) => x.peer),
    ['rawsse', 'nchan', 'rawsse'],
  )
  t.ok(Math.abs(b[1].height / b[0].height - 10_500 / 3000) < 0.01, `${b[1].height} / ${b[0].height}`)
  t.ok(Math.max(...tickValues(svg)) >= 10_500)
  t.match(svg, />3,000<\/text>/, 'the figure written as the tables write it')
  t.match(svg, />10,000 streams<\/text>/)
  t.same(legendNames(svg), ['rawsse', 'nchan'], 'a peer without idle figures is not in this legend')
  const d = sample()
  d.idle[0].perStream = 2000
  t.ok(bars(idleChart(d))[0].height < b[0].height, 'a smaller figure, a shorter bar')
  t.end()
})

t.test('the latency chart draws p50, p90 and p99 per peer, the axis above the largest whisker', (t) => {
  const svg = latencyChart(sample())
  t.same(
    bars(svg).map((x) => x.peer),
    ['rawsse', 'nchan', 'rawsse', 'nchan', 'rawsse', 'nchan'],
  )
  t.ok(Math.max(...tickValues(svg)) >= 19.46)
  t.match(svg, />19.20<\/text>/)
  for (const p of ['p50', 'p90', 'p99']) t.match(svg, new RegExp(`>${p}</text>`))
  t.match(svg, /<title>Latency at 20 events\/s to 1,000 streams/)
  t.end()
})

t.test('a peer has the same colour in every chart, also a peer with a spare colour that one chart lacks', (t) => {
  const d = sample()
  d.peers.push('another') // 'other' has no idle or latency figures; 'another' must keep its colour there all the same
  d.closed.push(closedRow(1, 100, 'another', 40_000))
  d.idle.push({ n: 10000, peer: 'another', perStream: 5000, spread: null, perStream2s: 5000 })
  const line = Object.fromEntries([...deliveriesChart(d).matchAll(/data-peer="([^"]+)" points="[^"]+" fill="none" stroke="([^"]+)"/g)].map((m) => [m[1], m[2]]))
  for (const svg of [idleChart(d), latencyChart(d)]) for (const b of bars(svg)) t.equal(b.fill, line[b.peer], b.peer)
  t.equal(new Set(Object.values(line)).size, 4, 'four peers, four colours')
  t.ok(bars(idleChart(d)).some((b) => b.peer === 'another'))
  t.end()
})

t.test('niceScale ends its axis at a round number at or above the largest value', (t) => {
  for (const max of [0.7, 1, 3, 19.46, 99, 100, 101, 2886, 10_500, 110_000, 589_757, 5_439_500]) {
    const { top, step } = niceScale(max)
    t.ok(top >= max, `${max}: top ${top}`)
    t.ok(top / step <= 5 && top / step >= 2, `${max}: ${top / step} steps of ${step}`)
    t.ok([1, 2, 2.5, 5].some((s) => Math.abs(step / 10 ** Math.floor(Math.log10(step)) - s) < 1e-9), `${max}: step ${step}`)
  }
  t.end()
})

const SECTION = `## Fan-out

- Date: 2026-12-01T20:10:28.074Z
- Software: node v20.20.2, rawsse 0.1.0 (git 4cf87b9), better-sse 0.16.1
- Command: \`node bench/fanout.mjs --rounds 3 --duration 4\`
- Servers pinned to core 0; a fresh server per N; 3 round(s), interleaved; runs of 4 s.

### Closed loop, W = 1 (1 event in flight; the next is published when every stream has one)

| N | peer | deliveries/s | spread | × rawsse | p50 ms | p99 ms | connected |
|---:|---|---:|---:|---:|---:|---:|---:|
| 100 | rawsse | 91,668 | 57,954–92,625 | 1.00× | 0.6 | 4.3 | 100/100 |
| 19,000 | nchan | – | (1 round) | – | 1,679.4 | – | 0/19,000 |

### Fixed rate: 20 events/s to N = 1,000 streams (latency below saturation)

| N | peer | p50 ms | p90 ms | p99 ms | p99 spread | × rawsse (p99) | max ms |
|---:|---|---:|---:|---:|---:|---:|---:|
| 1,000 | rawsse | 6.69 | 11.20 | 19.20 | 17.15–19.46 | 1.00× | 36.0 |

### Idle memory per stream: (RSS with N idle streams − RSS with none) / N

Bytes per stream 2 s after the last stream opened, and settled: after 30 s of idling.

| N | peer | RSS, 0 streams (MiB) | bytes/stream at 2 s | RSS settled (MiB) | bytes/stream settled | spread |
|---:|---|---:|---:|---:|---:|---:|
| 19,000 | better-sse | 46.5 | 18,746 | 358.5 | 17,219 | 16,310–18,747 |

### Notes

- Every run completed.`

t.test('the tables of a fan-out section written before the fanout-data comment are read back', (t) => {
  const d = readFanout(`# x\n\n<!-- fanout:begin -->\n${SECTION}\n<!-- fanout:end -->\n`)
  t.match(d, { date: '2026-12-01T20:10:28.074Z', command: 'node bench/fanout.mjs --rounds 3 --duration 4', rawsse: '0.1.0 (git 4cf87b9)', quick: false, rounds: 3, settle: 30 })
  t.same(d.peers, ['rawsse', 'nchan', 'better-sse'])
  t.same(d.closed, [
    { window: 1, n: 100, peer: 'rawsse', dps: 91_668, spread: [57_954, 92_625], p50: 0.6, p99: 4.3 },
    { window: 1, n: 19_000, peer: 'nchan', dps: null, spread: null, p50: 1679.4, p99: null },
  ])
  t.same(d.rate, { rate: 20, n: 1000, rows: [{ peer: 'rawsse', p50: 6.69, p90: 11.2, p99: 19.2, p99Spread: [17.15, 19.46], max: 36 }] })
  t.same(d.idle, [{ n: 19_000, peer: 'better-sse', perStream: 17_219, spread: [16_310, 18_747], perStream2s: 18_746 }])
  t.equal(readFanout('# no fan-out section\n'), null)
  t.end()
})

/** A run of bench/fanout.mjs as its report() sees it: two rounds, two peers, W = 1, a rate run and idle memory. */
function fakeRun() {
  const o = { quick: false, peers: ['rawsse', 'nchan'], streams: [100, 1000], windows: [1], rounds: 2, duration: 4, warmup: 1, rate: 20, rateStreams: 1000, rssStreams: [1000], settle: 30 }
  const m = { date: '2026-02-03T04:05:06.000Z', nproc: '2', cpuModel: 'cpu', memory: '1 GiB', kernel: 'Linux', openFiles: '20000', node: 'v20', rawsse: '0.1.0 (git 1234567)', betterSse: '0', nginx: '0', nchan: '0', autocannon: '0' }
  const run = (dps: number, p50: number) => ({ deliveriesPerSecond: dps, latencyMs: { p50, p90: p50 * 1.5, p99: p50 * 2, max: p50 * 4 }, connected: 100, lost: 0, duplicates: 0 })
  const results = {
    W1: {
      100: { rawsse: [run(90_000, 0.61), run(92_000, 0.63)], nchan: [run(110_000, 0.52), { error: 'boom' }] },
      1000: { rawsse: [run(93_000, 5.71), run(95_000, 5.73)], nchan: [run(70_000, 7.01), run(72_000, 7.03)] },
    },
    rate: { 1000: { rawsse: [run(20_200, 6.61), run(20_220, 6.77)], nchan: [run(20_210, 6.31), run(20_230, 6.49)] } },
  }
  const row = (settled: number) => ({ rss0: 50e6, open2s: 50e6 + settled * 1000, settled: 50e6 + settled * 1000, left: 51e6, open: 1000, failed: 0 })
  const rss = { 1000: { rawsse: [row(2800), row(3000)], nchan: [row(10_200), row(10_300)] } }
  return { o, m, command: 'node bench/fanout.mjs --rounds 2 --windows 1', results, rss }
}

t.test("fanout.mjs's fanout-data comment gives the figures of its own tables, plus each round's", (t) => {
  const { o, m, command, results, rss } = fakeRun()
  const md = report(o, m, command, results, rss, [])
  const comment = /<!-- fanout-data (.*) -->/.exec(md)
  t.ok(comment, 'the report carries the comment')
  t.notMatch(comment![1], /--/, 'no -- inside the comment')
  const fromJson = readFanout(`<!-- fanout:begin -->\n${md}\n<!-- fanout:end -->`)
  t.same(fromJson, fanoutData(o, m, command, results, rss))
  t.equal(fromJson.command, command)
  t.same(fromJson.closed[0].rounds, { dps: [90_000, 92_000], p50: [0.61, 0.63], p99: [1.22, 1.26] })
  t.same(fromJson.closed[1].rounds.dps, [110_000], 'a failed run is left out')
  // The same figures from the tables, as a section without the comment is read.
  const fromTables = parseFanoutTables(md.replace(/<!-- fanout-data .* -->/, ''))
  const strip = (rows: Array<{ rounds?: unknown }>) => rows.map(({ rounds: _r, ...rest }) => rest)
  t.same(fromTables.closed, strip(fromJson.closed))
  t.same((fromTables.rate as unknown as { rows: Array<{ rounds?: unknown }> }).rows, strip(fromJson.rate.rows))
  t.same(fromTables.idle, strip(fromJson.idle))
  t.match(fromTables, { date: m.date, command, rawsse: m.rawsse, rounds: 2, settle: 30, peers: ['rawsse', 'nchan'] })
  t.equal(fromJson.idle[0].perStream, 2900)
  t.end()
})

t.test('the chart links go in the fan-out section before its first table, once, and are replaced on the next run', (t) => {
  const text = `# R\n\n<!-- fanout:begin -->\n${SECTION}\n<!-- fanout:end -->\n\n<!-- http:begin -->\n### HTTP\n<!-- http:end -->\n`
  const charts = [{ file: 'a.svg', alt: 'A', caption: 'first' }]
  const once = withChartLinks(text, charts)
  t.match(once, /- Servers pinned[^\n]*\n\n<!-- charts:begin -->\n\n!\[A\]\(charts\/a\.svg\)\n\n\*first\*\n\n<!-- charts:end -->\n\n### Closed loop/)
  const twice = withChartLinks(once, [{ file: 'b.svg', alt: 'B', caption: 'second' }])
  t.equal(twice.split('<!-- charts:begin -->').length, 2, 'one block')
  t.notMatch(twice, /a\.svg/)
  t.match(twice, /!\[B\]\(charts\/b\.svg\)/)
  t.equal(withChartLinks('# no fan-out section\n', charts), '# no fan-out section\n')
  t.end()
})

t.test('writeCharts draws the SVG files beside RESULTS.md and removes one the run has no figures for', (t) => {
  const dir = t.testdir({ charts: { 'fanout-deliveries.svg': 'old' } })
  const file = path.join(dir, 'RESULTS.md')
  const idleOnly = SECTION.replace(/### Closed loop[\s\S]*?(?=### Idle)/, '')
  writeFileSync(file, `# R\n\n<!-- fanout:begin -->\n${idleOnly}\n<!-- fanout:end -->\n`)
  t.same(
    writeCharts(file).map((f: string) => path.basename(f)),
    ['idle-memory.svg'],
  )
  t.notOk(existsSync(path.join(dir, 'charts', 'fanout-deliveries.svg')), 'the old run\'s chart is gone')
  t.same(xmlProblems(readFileSync(path.join(dir, 'charts', 'idle-memory.svg'), 'utf8')), [])
  t.match(readFileSync(file, 'utf8'), /<!-- charts:begin -->\n\n!\[[^\]]+\]\(charts\/idle-memory\.svg\)/)
  t.end()
})

t.test('the data comment cannot end its HTML comment early', (t) => {
  const c = dataComment({ command: 'node x --a -->', n: 1 })
  t.equal(c.indexOf('-->'), c.length - 3)
  t.same(JSON.parse(/^<!-- fanout-data (.*) -->$/.exec(c)![1]), { command: 'node x --a -->', n: 1 })
  t.end()
})
