// A small live line chart on a <canvas>: the last N values, scaled to the largest one shown.
// Our own drawing code, no library: a few path calls per sample.

export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{ points?: number, format?: (v: number) => string }} options
   */
  constructor(canvas, { points = 60, format = String } = {}) {
    this.canvas = canvas
    this.points = points
    this.format = format
    this.values = []
    // Redraw when the layout changes the canvas's size (a phone turned sideways).
    new ResizeObserver(() => this.draw()).observe(canvas)
  }

  push(value) {
    this.values.push(Number.isFinite(value) ? value : 0)
    if (this.values.length > this.points) this.values.shift()
    this.draw()
  }

  draw() {
    const c = this.canvas
    // Draw at device pixels, so lines stay sharp on high-density screens.
    const dpr = window.devicePixelRatio || 1
    const w = Math.max(1, Math.round(c.clientWidth * dpr))
    const h = Math.max(1, Math.round(c.clientHeight * dpr))
    if (c.width !== w || c.height !== h) {
      c.width = w
      c.height = h
    }
    const g = c.getContext('2d')
    const css = getComputedStyle(c)
    const color = (name) => css.getPropertyValue(name).trim()
    g.setTransform(dpr, 0, 0, dpr, 0, 0)
    const W = w / dpr
    const H = h / dpr
    g.clearRect(0, 0, W, H)

    const pad = { top: 16, bottom: 6, left: 4, right: 4 }
    const plotH = H - pad.top - pad.bottom
    const plotW = W - pad.left - pad.right
    // A "nice" top (1, 2 or 5 × 10^n) so the scale does not jump with every sample.
    const top = niceCeil(Math.max(...this.values, 0))

    g.strokeStyle = color('--chart-grid')
    g.lineWidth = 1
    g.beginPath()
    for (let i = 0; i <= 2; i++) {
      const y = Math.round(pad.top + (plotH * i) / 2) + 0.5
      g.moveTo(pad.left, y)
      g.lineTo(W - pad.right, y)
    }
    g.stroke()

    g.fillStyle = color('--muted')
    g.font = '11px system-ui, sans-serif'
    g.textBaseline = 'top'
    g.fillText(this.format(top), pad.left + 2, 2)

    if (this.values.length === 0) return
    const step = plotW / (this.points - 1)
    // The newest value at the right edge; older ones scroll left.
    const x0 = pad.left + plotW - step * (this.values.length - 1)
    const y = (v) => pad.top + plotH - (top === 0 ? 0 : (v / top) * plotH)
    g.beginPath()
    this.values.forEach((v, i) => (i === 0 ? g.moveTo(x0, y(v)) : g.lineTo(x0 + i * step, y(v))))
    g.strokeStyle = color('--chart-line')
    g.lineWidth = 2
    g.lineJoin = 'round'
    g.stroke()
    g.lineTo(x0 + (this.values.length - 1) * step, pad.top + plotH)
    g.lineTo(x0, pad.top + plotH)
    g.closePath()
    g.fillStyle = color('--chart-fill')
    g.fill()
    const last = this.values[this.values.length - 1]
    g.beginPath()
    g.arc(x0 + (this.values.length - 1) * step, y(last), 3, 0, Math.PI * 2)
    g.fillStyle = color('--chart-line')
    g.fill()
  }
}

function niceCeil(v) {
  if (v <= 0) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p
  return 10 * p
}
