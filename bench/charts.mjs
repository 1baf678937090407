// Charts of the fan-out results (issue 15): standalone SVG drawn from the fan-out section of bench/RESULTS.md.
//
//   node bench/charts.mjs [--results bench/RESULTS.md]
//
// Reads the section's `<!-- fanout-data {...} -->` comment (bench/fanout.mjs writes one) or, in a
// section written before there was one, its Markdown tables. Writes charts/fanout-deliveries.svg,
// charts/idle-memory.svg and charts/latency.svg beside the results file, and links them at the top
// of the section between `<!-- charts:begin -->` and `<!-- charts:end -->`. bench/fanout.mjs calls
// writeCharts right after it writes its section, so the pictures always show the tables below them.
// No fonts, scripts or services: every chart is a 640×360 SVG that a plain Markdown image link shows.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'
import { BENCH, flagReader, fmt } from './lib.mjs'

const W = 640
const H = 360
const LEFT = 74 // room for a "600,000" tick label and the rotated axis title
const RIGHT = W - 16
const TOP = 62 // under the title and the legend
const BOTTOM = 312 // above the x labels, the x title and the source line

export const CHART_FILES = { deliveries: 'fanout-deliveries.svg', idle: 'idle-memory.svg', latency: 'latency.svg' }

// Okabe–Ito colours (told apart with the common colour-vision deficiencies), fixed per peer so the
// three charts, and the charts of later runs, agree; a peer not named here takes a spare by its
// place among the run's unnamed peers (all of them: one chart may lack a peer another has).
export const PEER_COLORS = { rawsse: '#0072B2', 'rawsse-baseline': '#56B4E9', nchan: '#CC79A7', 'better-sse': '#E69F00', 'node-http': '#009E73' }
const SPARE_COLORS = ['#D55E00', '#000000', '#999999']
const colorOf = (peer, peers) => PEER_COLORS[peer] ?? SPARE_COLORS[peers.filter((p) => !(p in PEER_COLORS)).indexOf(peer) % SPARE_COLORS.length]

// ---------------------------------------------------------------------------------------------
// The data: from the JSON comment, or from the tables of a section written before it.

/** The comment bench/fanout.mjs puts in its section. `--` may not appear inside an HTML comment (a command's flags have it). */
export const dataComment = (data) => `<!-- fanout-data ${JSON.stringify(data).replace(/--/g, '-\\u002d')} -->`

/** A table cell as a number: '91,668' → 91668; '–' (no figure), a range or nothing → null. */
const num = (s) => (typeof s === 'string' && /^[\d,.]+$/.test(s.trim()) ? Number(s.replace(/,/g, '')) : null)
/** A spread cell: '57,954–92,625' → [57954, 92625]; '(1 round)' or '–' → null. */
const range = (s) => (/^[\d,.]+–[\d,.]+$/.test(s ?? '') ? s.split('–').map(num) : null)

/** The rows of the first Markdown table in `block`, as objects keyed by the header's cells. */
function tableRows(block) {
  const lines = block.split('\n').filter((l) => l.startsWith('|'))
  const cells = (l) => l.split('|').slice(1, -1).map((c) => c.trim())
  const head = lines.length ? cells(lines[0]) : []
  return lines.slice(2).map((l) => Object.fromEntries(cells(l).map((c, i) => [head[i], c])))
}

/**
 * The figures of a fan-out section's tables, in the shape of its fanout-data comment (less the
 * per-round values, which the tables do not have). Columns are found by their header, not place.
 */
export function parseFanoutTables(section) {
  const line = (re) => re.exec(section)?.[1] ?? null
  const d = {
    date: line(/^- Date: (.+)$/m),
    command: line(/^- Command: `(.+)`$/m),
    rawsse: line(/^- Software: .*?\brawsse (\S+ \([^)]*\))/m),
    quick: section.includes('QUICK SMOKE RUN'),
    rounds: num(line(/; (\d+) round\(s\), interleaved/)),
    settle: num(line(/after (\d+) s of idling/)),
    peers: [], closed: [], rate: null, idle: [],
  }
  for (const block of section.split(/^### /m).slice(1)) {
    const heading = block.slice(0, block.indexOf('\n'))
    const rows = tableRows(block)
    for (const r of rows) if (r.peer && !d.peers.includes(r.peer)) d.peers.push(r.peer)
    const w = /^Closed loop, W = (\d+)/.exec(heading)
    const rate = /^Fixed rate: ([\d.,]+) events\/s to N = ([\d,]+)/.exec(heading)
    if (w) {
      for (const r of rows) d.closed.push({ window: Number(w[1]), n: num(r.N), peer: r.peer, dps: num(r['deliveries/s']), spread: range(r.spread), p50: num(r['p50 ms']), p99: num(r['p99 ms']) })
    } else if (rate) {
      const pick = (r) => ({ peer: r.peer, p50: num(r['p50 ms']), p90: num(r['p90 ms']), p99: num(r['p99 ms']), p99Spread: range(r['p99 spread']), max: num(r['max ms']) })
      d.rate = { rate: num(rate[1]), n: num(rate[2]), rows: rows.map(pick) }
    } else if (heading.startsWith('Idle memory')) {
      for (const r of rows) d.idle.push({ n: num(r.N), peer: r.peer, perStream: num(r['bytes/stream settled']), spread: range(r.spread), perStream2s: num(r['bytes/stream at 2 s']) })
    }
  }
  return d
}

/** The fan-out data of a RESULTS.md text: its fanout-data comment, else its tables; null without a fan-out section. */
export function readFanout(text) {
  const [a, b] = [text.indexOf('<!-- fanout:begin -->'), text.indexOf('<!-- fanout:end -->')]
  if (a === -1 || b < a) return null
  const section = text.slice(a, b)
  const json = /<!-- fanout-data (.*?) -->/.exec(section)
  return json ? JSON.parse(json[1]) : parseFanoutTables(section)
}

// ---------------------------------------------------------------------------------------------
// Drawing.

const r1 = (x) => Math.round(x * 10) / 10
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
const text = (x, y, s, attrs = '') => `<text x="${r1(x)}" y="${r1(y)}"${attrs ? ' ' + attrs : ''}>${esc(s)}</text>`

/** A linear axis from 0: a step of 1, 2, 2.5 or 5 × 10^k giving about `ticks` steps, and the first multiple of it ≥ max. */
export function niceScale(max, ticks = 4) {
  if (!(max > 0)) return { top: 1, step: 0.25 }
  const raw = max / ticks
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5].map((s) => s * mag).find((s) => s >= raw) ?? 10 * mag
  return { top: Math.ceil(max / step) * step, step }
}

/** Decimals a tick label needs for its step (2.5 → 1), so labels are as round as the step. */
const digitsOf = (step) => [0, 1, 2].find((d) => Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) < 1e-6) ?? 3

/** Grid lines and labels of a linear y axis from 0 to scale.top over the plot from y0 (top) to y1 (bottom); y(v) places a value. */
function yAxis({ top, step }, y0, y1) {
  const y = (v) => y1 - ((y1 - y0) * v) / top
  let svg = ''
  for (let i = 0; i * step <= top * (1 + 1e-9); i++) {
    const at = r1(y(i * step))
    svg += `<line x1="${LEFT}" x2="${RIGHT}" y1="${at}" y2="${at}" stroke="${i ? '#e4e4e4' : '#777'}"/>`
    svg += text(LEFT - 6, at + 4, fmt(i * step, digitsOf(step)), 'class="ytick" text-anchor="end"')
  }
  return { svg, y }
}

const yTitle = (s, y0, y1) => `<text transform="translate(14 ${r1((y0 + y1) / 2)}) rotate(-90)" text-anchor="middle">${esc(s)}</text>`
const xTitle = (s) => text((LEFT + RIGHT) / 2, BOTTOM + 29, s, 'text-anchor="middle"')

/** One row of peers under the title: a line and dot for a line chart, a square for bars. */
function legend(peers, all, line) {
  let x = LEFT
  let svg = '<g class="legend">'
  for (const p of peers) {
    const c = colorOf(p, all)
    svg += line
      ? `<line x1="${x}" x2="${x + 16}" y1="38" y2="38" stroke="${c}" stroke-width="2.5"/><circle cx="${x + 8}" cy="38" r="3" fill="${c}"/>`
      : `<rect x="${x + 3}" y="33" width="10" height="10" fill="${c}"/>`
    svg += text(x + 21, 42, p)
    x += 21 + p.length * 6.5 + 18 // ~6.5 px per character at 11 px
  }
  return svg + '</g>'
}

/** The whole SVG: title (also as <title>), a <desc> naming the run, a white ground (README pages may be dark), the source line. */
function frame(title, data, body) {
  const rounds = data.rounds ? `${data.rounds} round${data.rounds > 1 ? 's' : ''}` : 'the rounds'
  const run = `\`${data.command ?? 'node bench/fanout.mjs'}\` on ${data.date ?? 'an unknown date'}${data.rawsse ? `, rawsse ${data.rawsse}` : ''}`
  const quick = data.quick ? ' A QUICK SMOKE RUN: one round, short runs; not results.' : ''
  const desc = `${title}. Drawn by bench/charts.mjs from the fan-out section of bench/RESULTS.md: ${run}; medians over ${rounds}.${quick}`
  let source = `${data.command ?? 'node bench/fanout.mjs'} · ${data.date ?? 'undated'}${data.rawsse ? ` · rawsse ${data.rawsse}` : ''}`
  if (source.length > 120) source = `${source.slice(0, 119)}…` // ~5 px a character at 9 px; the whole line is in <desc>
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="11" fill="#222">`,
    `<title>${esc(title)}</title>`,
    `<desc>${esc(desc)}</desc>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    text(14, 20, title, 'font-size="14" font-weight="600"'),
    data.quick ? text(RIGHT, 20, 'QUICK RUN, NOT RESULTS', 'font-weight="600" fill="#b00" text-anchor="end"') : '',
    body,
    text(14, H - 6, source, 'font-size="9" fill="#666"'),
    '</svg>',
    '',
  ].join('\n')
}

/**
 * Deliveries/s against streams per server, one line per peer. One panel per window W, stacked,
 * each with its own y scale: at W = 8 rawsse's ~500 000 would flatten every W = 1 line (all
 * within 30 000–110 000) onto the floor of a shared scale. Streams on a log axis: 100 to 19 000
 * on a linear one would put 100 and 1 000 in the same corner.
 */
export function deliveriesChart(data) {
  const rows = data.closed.filter((r) => Number.isFinite(r.dps) && r.n > 0)
  const peers = data.peers.filter((p) => rows.some((r) => r.peer === p))
  const windows = [...new Set(rows.map((r) => r.window))].sort((a, b) => a - b)
  const ns = [...new Set(rows.map((r) => r.n))].sort((a, b) => a - b)
  const [lo, hi] = [Math.log10(ns[0] / 1.6), Math.log10(ns.at(-1) * 1.6)]
  const x = (n) => LEFT + ((RIGHT - LEFT) * (Math.log10(n) - lo)) / (hi - lo)
  const top = TOP + 10 // a panel's own label sits above it, under the legend
  const gap = 28
  const h = (BOTTOM - top - gap * (windows.length - 1)) / windows.length
  let body = legend(peers, data.peers, true) + yTitle('deliveries/s (events × streams reached)', top, BOTTOM)
  windows.forEach((w, i) => {
    const y0 = top + i * (h + gap)
    const mine = rows.filter((r) => r.window === w)
    const axis = yAxis(niceScale(Math.max(...mine.map((r) => r.dps)), h < 150 ? 3 : 5), y0, y0 + h)
    body += `<g class="panel" data-window="${w}">${axis.svg}`
    body += text(LEFT, y0 - 8, `W = ${w}: ${w} event${w > 1 ? 's' : ''} in flight`, 'font-weight="600"')
    for (const n of ns) body += `<line x1="${r1(x(n))}" x2="${r1(x(n))}" y1="${r1(y0)}" y2="${r1(y0 + h)}" stroke="#e4e4e4"/>`
    for (const p of peers) {
      const pts = mine.filter((r) => r.peer === p).sort((a, b) => a.n - b.n).map((r) => [r1(x(r.n)), r1(axis.y(r.dps))])
      if (!pts.length) continue
      const c = colorOf(p, data.peers)
      body += `<polyline data-peer="${esc(p)}" points="${pts.map((pt) => pt.join(',')).join(' ')}" fill="none" stroke="${c}" stroke-width="2" stroke-linejoin="round"/>`
      body += pts.map(([cx, cy]) => `<circle cx="${cx}" cy="${cy}" r="3" fill="${c}"/>`).join('')
    }
    body += '</g>'
  })
  // Streams labels under the last panel; one that would run into its left neighbour is left out.
  let last = -Infinity
  for (const n of ns) {
    if (x(n) - last < 44) continue
    body += text(x(n), BOTTOM + 14, fmt(n), 'text-anchor="middle"')
    last = x(n)
  }
  body += xTitle('streams per server (log scale)')
  return frame('Fan-out: deliveries per second against streams per server', data, body)
}

/**
 * Grouped bars: one group per label, one bar per peer in its colour, the median written above
 * it (as the tables write it) and, where the data has it, the min–max over rounds as a whisker.
 */
function barChart(title, data, groups, { digits, yLabel, xLabel }) {
  const peers = data.peers.filter((p) => groups.some((g) => Number.isFinite(g.bars[p]?.v)))
  const values = groups.flatMap((g) => Object.values(g.bars).flatMap((b) => [b.v, b.spread?.[1]])).filter(Number.isFinite)
  const axis = yAxis(niceScale(Math.max(...values)), TOP, BOTTOM)
  const gw = (RIGHT - LEFT) / groups.length
  const bw = Math.min(64, (gw * 0.84) / peers.length)
  let body = legend(peers, data.peers, false) + axis.svg + yTitle(yLabel, TOP, BOTTOM)
  groups.forEach((g, gi) => {
    const x0 = LEFT + gi * gw + (gw - bw * peers.length) / 2
    body += text(LEFT + (gi + 0.5) * gw, BOTTOM + 14, g.label, 'text-anchor="middle"')
    peers.forEach((p, pi) => {
      const b = g.bars[p]
      if (!Number.isFinite(b?.v)) return
      const x = x0 + pi * bw + 2
      const mid = r1(x + (bw - 4) / 2)
      const top = axis.y(b.v)
      body += `<rect data-peer="${esc(p)}" x="${r1(x)}" y="${r1(top)}" width="${r1(bw - 4)}" height="${r1(BOTTOM - top)}" fill="${colorOf(p, data.peers)}"/>`
      let labelAt = top
      if (b.spread) {
        const [ylo, yhi] = b.spread.map((v) => r1(axis.y(v)))
        body += `<path d="M${r1(mid - 4)} ${yhi}h8M${mid} ${yhi}V${ylo}M${r1(mid - 4)} ${ylo}h8" stroke="#333" fill="none"/>`
        labelAt = Math.min(top, yhi)
      }
      // A value label wider than its bar would run into the next one: left out, the tables have it.
      if (bw >= 30) body += text(mid, labelAt - 4, fmt(b.v, digits), 'text-anchor="middle" font-size="10"')
    })
  })
  return frame(title, data, body + xTitle(xLabel))
}

/** RSS growth per idle stream, settled, per peer at each stream count measured. */
export function idleChart(data) {
  const ns = [...new Set(data.idle.map((r) => r.n))].sort((a, b) => a - b)
  const bars = (n) => Object.fromEntries(data.idle.filter((r) => r.n === n).map((r) => [r.peer, { v: r.perStream, spread: r.spread }]))
  const groups = ns.map((n) => ({ label: `${fmt(n)} streams`, bars: bars(n) }))
  const settle = data.settle ? ` after ${data.settle} s idle` : ''
  return barChart('Idle memory per open stream (lower is better)', data, groups, {
    digits: 0,
    yLabel: '(RSS with N − RSS with none) / N, bytes',
    xLabel: `N idle streams held by one server, RSS read${settle}; whiskers: min–max over waves`,
  })
}

/** Latency percentiles per peer at the fixed-rate run (well below saturation). */
export function latencyChart(data) {
  const { rate, n, rows } = data.rate
  const bars = (k) => Object.fromEntries(rows.map((r) => [r.peer, { v: r[k], spread: k === 'p99' ? r.p99Spread : null }]))
  const groups = ['p50', 'p90', 'p99'].map((k) => ({ label: k, bars: bars(k) }))
  return barChart(`Latency at ${fmt(rate)} events/s to ${fmt(n)} streams (lower is better)`, data, groups, {
    digits: 2,
    yLabel: 'ms from publish to arrival',
    xLabel: 'percentile over every delivery in a run; whisker on p99: min–max over rounds',
  })
}

// ---------------------------------------------------------------------------------------------
// Files and links.

/** The charts the data has figures for: [{ file, svg, alt, caption }]. */
export function fanoutCharts(data) {
  const over = data.rounds ? `medians over ${data.rounds} round${data.rounds > 1 ? 's' : ''}` : 'medians over rounds'
  const out = []
  if (data.closed.some((r) => Number.isFinite(r.dps))) {
    const ws = [...new Set(data.closed.map((r) => r.window))].sort((a, b) => a - b)
    const panels = ws.length > 1 ? `one panel per window (W = ${ws.join(', W = ')}), each with its own y scale` : `W = ${ws[0]}`
    out.push({ file: CHART_FILES.deliveries, svg: deliveriesChart(data), alt: 'Deliveries per second against streams per server, one line per peer', caption: `Deliveries/s against streams per server (log scale), closed loop; ${panels}; ${over}.` })
  }
  if (data.idle.some((r) => Number.isFinite(r.perStream))) {
    out.push({ file: CHART_FILES.idle, svg: idleChart(data), alt: 'Idle memory per stream, bars per peer at each stream count', caption: `Idle memory: RSS growth per open stream after the settle time, per peer and stream count; ${over}, whiskers min–max.` })
  }
  if (data.rate?.rows.length) {
    out.push({ file: CHART_FILES.latency, svg: latencyChart(data), alt: 'Latency percentiles per peer at a fixed rate', caption: `Latency p50, p90 and p99 at ${fmt(data.rate.rate)} events/s to ${fmt(data.rate.n)} streams; ${over}.` })
  }
  return out
}

const CHARTS_BEGIN = '<!-- charts:begin -->'
const CHARTS_END = '<!-- charts:end -->'

/** `text` with links to `charts` between the charts markers: replaced where they are, else put in the fan-out section before its first table heading. */
export function withChartLinks(text, charts) {
  const links = charts.map((c) => `![${c.alt}](charts/${c.file})\n\n*${c.caption}*`)
  const block = `${CHARTS_BEGIN}\n\n${links.join('\n\n')}\n\n${CHARTS_END}`
  const [a, b] = [text.indexOf(CHARTS_BEGIN), text.indexOf(CHARTS_END)]
  if (a !== -1 && b > a) return text.slice(0, a) + block + text.slice(b + CHARTS_END.length)
  const [s, e] = [text.indexOf('<!-- fanout:begin -->'), text.indexOf('<!-- fanout:end -->')]
  if (s === -1 || e < s || charts.length === 0) return text
  const h = text.indexOf('\n### ', s)
  const at = h !== -1 && h < e ? h + 1 : e
  return `${text.slice(0, at)}${block}\n\n${text.slice(at)}`
}

/** Draws the charts of `file`'s fan-out section into charts/ beside it and links them there; returns the files written. */
export function writeCharts(file) {
  const text = readFileSync(file, 'utf8')
  const data = readFanout(text)
  if (data === null) return []
  const dir = path.join(path.dirname(file), 'charts')
  mkdirSync(dir, { recursive: true })
  const charts = fanoutCharts(data)
  // A chart this run has no figures for (an --idle-only run has no deliveries) goes, rather than show an older run beside these tables.
  for (const f of Object.values(CHART_FILES)) if (!charts.some((c) => c.file === f)) rmSync(path.join(dir, f), { force: true })
  for (const c of charts) writeFileSync(path.join(dir, c.file), c.svg)
  writeFileSync(file, withChartLinks(text, charts))
  return charts.map((c) => path.join(dir, c.file))
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  try {
    const { get, done } = flagReader(process.argv.slice(2))
    const file = path.resolve(get('results') ?? path.join(BENCH, 'RESULTS.md'))
    done()
    const written = writeCharts(file)
    if (written.length === 0) throw new Error(`no fan-out figures in ${file}`)
    for (const f of written) process.stdout.write(`${path.relative(process.cwd(), f)}\n`)
  } catch (err) {
    process.stderr.write(`charts: ${err.message}\n`)
    process.exit(1)
  }
}
