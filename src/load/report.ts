// What `rawsse bench` reports at the end: the one object --json prints, and the same as a table
// for a person.

/** What `rawsse bench --json` prints: one object, these fields. */
export interface BenchReport {
  streams: number
  connected: number
  connectErrors: number
  /** Streams that ended or failed after they had connected (their missing events count as lost). */
  streamErrors: number
  published: number
  publishErrors: number
  /** published × connected. */
  expectedDeliveries: number
  /** Distinct deliveries: each stream counts an event once. */
  received: number
  lost: number
  duplicates: number
  /** Deliveries per second after the warmup (over the whole run when it ended within the warmup). */
  deliveriesPerSecond: number
  /** Milliseconds from {ts} to the read that held the event; null without deliveries. */
  latencyMs: { p50: number | null; p90: number | null; p99: number | null; max: number | null }
  /** All processes of the bench summed; percentOfOneCore may pass 100 with workers. */
  benchCpu: { userMs: number; systemMs: number; percentOfOneCore: number }
  /** Seconds of publishing (or holding, without --publish). */
  durationSeconds: number
  workers: number
}

/** The report for a person: one row per field. */
export function table(r: BenchReport): string {
  const lat = (v: number | null): string => (v === null ? '-' : v.toFixed(3))
  const rows: Array<[string, string]> = [
    ['streams', `${r.streams} (${r.workers} process${r.workers === 1 ? '' : 'es'})`],
    ['connected', String(r.connected)],
    ['connect errors', String(r.connectErrors)],
    ['stream errors', String(r.streamErrors)],
    ['published', String(r.published)],
    ['publish errors', String(r.publishErrors)],
    ['expected deliveries', String(r.expectedDeliveries)],
    ['received', String(r.received)],
    ['lost', String(r.lost)],
    ['duplicates', String(r.duplicates)],
    ['deliveries/s', String(r.deliveriesPerSecond)],
    ['latency ms', `p50 ${lat(r.latencyMs.p50)}  p90 ${lat(r.latencyMs.p90)}  p99 ${lat(r.latencyMs.p99)}  max ${lat(r.latencyMs.max)}`],
    ['bench CPU', `user ${r.benchCpu.userMs} ms  system ${r.benchCpu.systemMs} ms  ${r.benchCpu.percentOfOneCore}% of one core`],
    ['duration s', String(r.durationSeconds)],
  ]
  return rows.map(([k, v]) => `${k.padEnd(21)}${v}`).join('\n') + '\n'
}
