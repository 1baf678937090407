// Counters of what the server did, the `/stats` JSON and the Prometheus text of `/metrics`, and a
// cluster's totals. No sockets: the fan-out (fanout/streams.ts, fanout/delivery.ts), server.ts and
// the socket closers (http/close.ts) bump the counters; routes.ts serves what is rendered here.

/** Why a stream was closed by us: too many unsent bytes, no progress, an admin, shutdown, its token was revoked, or its token expired. */
export type DropReason = 'buffer' | 'stall' | 'admin' | 'shutdown' | 'revoked' | 'expired'
export const DROP_REASONS: readonly DropReason[] = ['buffer', 'stall', 'admin', 'shutdown', 'revoked', 'expired']

/** The `/stats` JSON, key for key (docs/wire.md "Routes", `GET /stats`). */
export interface Stats {
  clients: number
  channels: Record<string, number>
  published: number
  deliveries: number
  drops: Record<DropReason, number>
  bytesOut: number
  /** What Last-Event-ID replay can draw on: events retained and their bytes. */
  history: { events: number; bytes: number }
  /**
   * TCP connections open (streams included); those closed to make room for new ones while they
   * still waited for a request head; those refused because every connection was busy; those
   * closed by us with a reset because bytes we wrote were left unsent (close.ts).
   */
  connections: { open: number; shed: number; refused: number; reset: number }
  uptimeSeconds: number
  rssBytes: number
  /** With `--webhook` only: webhooks taken by the receiver, tries to be made again, given up. */
  webhooks?: WebhookCounts
}

/** `/stats` `webhooks`. */
export interface WebhookCounts {
  sent: number
  retried: number
  failed: number
}

export class Metrics {
  published = 0
  deliveries = 0
  bytesOut = 0
  /** Connections closed to make room, and refused for lack of it (see SseServer's accept). */
  shed = 0
  refused = 0
  /** Connections closed with a reset, their unsent bytes dropped (close.ts closeSocket). */
  reset = 0
  readonly drops: Record<DropReason, number> = { buffer: 0, stall: 0, admin: 0, shutdown: 0, revoked: 0, expired: 0 }
  /** Counted by the webhook sender, in the process that tells presence changes; null: no `--webhook` here. */
  webhooks: WebhookCounts | null = null
  private readonly startedAt = process.hrtime.bigint()

  snapshot(clients: number, channels: Record<string, number>, history: Stats['history'], open: number): Stats {
    const stats: Stats = {
      clients,
      channels,
      published: this.published,
      deliveries: this.deliveries,
      drops: { ...this.drops },
      bytesOut: this.bytesOut,
      history,
      connections: { open, shed: this.shed, refused: this.refused, reset: this.reset },
      uptimeSeconds: Math.floor(Number(process.hrtime.bigint() - this.startedAt) / 1e9),
      rssBytes: process.memoryUsage.rss(),
    }
    if (this.webhooks !== null) stats.webhooks = { ...this.webhooks }
    return stats
  }
}

/**
 * A cluster's totals from its nodes' figures: counts summed; what every node has alike (events
 * published, history, uptime) from the node answering.
 */
export function sumStats(parts: readonly Stats[], own: Pick<Stats, 'published' | 'history' | 'uptimeSeconds'>): Stats {
  const sum = (f: (s: Stats) => number): number => parts.reduce((n, s) => n + f(s), 0)
  const drops = Object.fromEntries(DROP_REASONS.map((r) => [r, sum((s) => s.drops[r])])) as Stats['drops']
  const channels: Record<string, number> = {}
  for (const s of parts) for (const [ch, n] of Object.entries(s.channels)) channels[ch] = (channels[ch] ?? 0) + n
  const out: Stats = {
    clients: sum((s) => s.clients),
    channels,
    published: own.published,
    deliveries: sum((s) => s.deliveries),
    drops,
    bytesOut: sum((s) => s.bytesOut),
    history: own.history,
    connections: {
      open: sum((s) => s.connections.open),
      shed: sum((s) => s.connections.shed),
      refused: sum((s) => s.connections.refused),
      reset: sum((s) => s.connections.reset),
    },
    uptimeSeconds: own.uptimeSeconds,
    rssBytes: sum((s) => s.rssBytes),
  }
  // Told by one process of the cluster (or one per Redis node): there when any node has it.
  if (parts.some((s) => s.webhooks !== undefined)) {
    out.webhooks = { sent: sum((s) => s.webhooks?.sent ?? 0), retried: sum((s) => s.webhooks?.retried ?? 0), failed: sum((s) => s.webhooks?.failed ?? 0) }
  }
  return out
}

/** A cluster's /stats: the totals, and each process's own figures. */
export interface ClusterStats extends Stats {
  nodes: ReadonlyArray<Stats & { node: string }>
}

type Sample = [labels: string, value: number]

/** Each metric: name, type, help, and its samples from one process's figures (labels without braces). */
const METRICS: ReadonlyArray<[string, 'gauge' | 'counter', string, (s: Stats) => Sample[]]> = [
  ['rawsse_clients', 'gauge', 'Open streams per channel.', (s) => Object.entries(s.channels).map(([ch, n]) => [`channel="${escapeLabel(ch)}"`, n])],
  ['rawsse_events_published_total', 'counter', 'Events published.', (s) => [['', s.published]]],
  ['rawsse_deliveries_total', 'counter', 'Events written to streams.', (s) => [['', s.deliveries]]],
  ['rawsse_drops_total', 'counter', 'Streams closed by the server, by reason.', (s) => Object.entries(s.drops).map(([reason, n]) => [`reason="${reason}"`, n])],
  ['rawsse_bytes_out_total', 'counter', 'Bytes written to streams.', (s) => [['', s.bytesOut]]],
  ['rawsse_history_events', 'gauge', 'Events retained for Last-Event-ID replay.', (s) => [['', s.history.events]]],
  ['rawsse_history_bytes', 'gauge', 'Bytes of the events retained for replay.', (s) => [['', s.history.bytes]]],
  ['rawsse_connections', 'gauge', 'TCP connections open, streams included.', (s) => [['', s.connections.open]]],
  ['rawsse_connections_shed_total', 'counter', 'Connections closed while waiting for a request head, to make room.', (s) => [['', s.connections.shed]]],
  ['rawsse_connections_refused_total', 'counter', 'Connections refused because every connection was busy.', (s) => [['', s.connections.refused]]],
  ['rawsse_connections_reset_total', 'counter', 'Connections closed with a reset, dropping bytes the client had not taken.', (s) => [['', s.connections.reset]]],
  ['rawsse_uptime_seconds', 'gauge', 'Seconds since the server started.', (s) => [['', s.uptimeSeconds]]],
  ['process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', (s) => [['', s.rssBytes]]],
  ['rawsse_webhooks_sent_total', 'counter', 'Webhooks the receiver took.', (s) => (s.webhooks === undefined ? [] : [['', s.webhooks.sent]])],
  ['rawsse_webhooks_retried_total', 'counter', 'Webhook tries that failed and will be made again.', (s) => (s.webhooks === undefined ? [] : [['', s.webhooks.retried]])],
  ['rawsse_webhooks_failed_total', 'counter', 'Webhooks given up.', (s) => (s.webhooks === undefined ? [] : [['', s.webhooks.failed]])],
]

/** Metrics that only some processes have (`--webhook`): left out when no process has a sample. */
const OPTIONAL = new Set(['rawsse_webhooks_sent_total', 'rawsse_webhooks_retried_total', 'rawsse_webhooks_failed_total'])

/**
 * Prometheus text exposition format 0.0.4: `# HELP`, `# TYPE`, then samples. A cluster's carry
 * each process's series with a `node` label (Prometheus sums them), not the totals.
 */
export function prometheusText(s: Stats | ClusterStats): string {
  const lines: string[] = []
  const parts: Array<[string, Stats]> = 'nodes' in s ? s.nodes.map((n) => [`node="${escapeLabel(n.node)}"`, n]) : [['', s]]
  for (const [name, type, help, samples] of METRICS) {
    let from = parts
    // A `--workers` primary tells the webhooks and is no `nodes` entry: its figures are in the totals only.
    if (OPTIONAL.has(name) && parts.every(([, stats]) => samples(stats).length === 0)) from = [['', s]]
    if (OPTIONAL.has(name) && samples(s).length === 0 && from !== parts) continue
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [node, stats] of from) {
      for (const [labels, value] of samples(stats)) {
        const all = [node, labels].filter((l) => l !== '').join(',')
        lines.push(`${name}${all === '' ? '' : `{${all}}`} ${value}`)
      }
    }
  }
  return lines.join('\n') + '\n'
}

// Label values escape backslash, double quote and line feed.
function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}
