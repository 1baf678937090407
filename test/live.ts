// What the live channels tests share: a stream read as events (rawsse's own `ready`, `channels`
// and `reset` included), a change posted with a stream's key, and the check that a stream's
// events, cut at its `channels` events, are exactly what a stream opened with each set would
// have had between the cuts: no gap, no duplicate, nothing of a set it was not on.

import * as net from 'node:net'
import { jsonAnswer, rawRequest, sleep, type JsonAnswer } from './helpers.js'

export interface Ev {
  id: string | null
  event: string
  data: string
}

/** A raw stream (GET PATH), its chunks parsed into events as they come. */
export class EventReader {
  readonly socket: net.Socket
  readonly events: Ev[] = []
  head = ''
  client = -1
  key = ''
  closed = false
  private text = ''
  private inHead = true

  constructor(port: number, path: string, headers: Record<string, string> = {}) {
    let req = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`
    for (const [k, v] of Object.entries(headers)) req += `${k}: ${v}\r\n`
    this.socket = net.connect(port, '127.0.0.1', () => this.socket.write(req + '\r\n'))
    this.socket.setEncoding('latin1')
    this.socket.on('data', (d: string) => this.read(d))
    this.socket.on('error', () => {})
    this.socket.on('close', () => (this.closed = true))
  }

  static async open(port: number, path: string, headers: Record<string, string> = {}): Promise<EventReader> {
    const r = new EventReader(port, path, headers)
    await r.until(() => r.client !== -1, 10_000, 'ready')
    return r
  }

  /** The events after `ready`. */
  get after(): Ev[] {
    return this.events.slice(1)
  }

  /** Resolves once `cond` holds; rejects after `ms` saying what it waited for and what came. */
  async until(cond: () => boolean, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.events.slice(-5))} (${this.events.length} events)`)
      if (this.closed) throw new Error(`closed before ${what}; head ${JSON.stringify(this.head)}`)
      await sleep(5)
    }
  }

  close(): void {
    this.socket.destroy()
  }

  private read(d: string): void {
    this.text += d
    if (this.inHead) {
      const end = this.text.indexOf('\r\n\r\n')
      if (end === -1) return
      this.head = this.text.slice(0, end + 4)
      this.text = this.text.slice(end + 4)
      this.inHead = false
    }
    // Chunks: `<hex>\r\n<payload>\r\n`; a latin1 string's length is its byte count.
    for (;;) {
      const line = this.text.indexOf('\r\n')
      if (line === -1) return
      const size = parseInt(this.text.slice(0, line), 16)
      if (size === 0 || this.text.length < line + 2 + size + 2) return
      this.payload(this.text.slice(line + 2, line + 2 + size))
      this.text = this.text.slice(line + 2 + size + 2)
    }
  }

  private payload(p: string): void {
    for (const block of p.split('\n\n')) {
      if (block === '' || block.startsWith(':')) continue
      const e: Ev = { id: null, event: 'message', data: '' }
      const data: string[] = []
      for (const l of block.split('\n')) {
        if (l.startsWith('id: ')) e.id = l.slice(4)
        else if (l.startsWith('event: ')) e.event = l.slice(7)
        else if (l.startsWith('data: ')) data.push(l.slice(6))
      }
      if (data.length === 0) continue // retry: alone
      e.data = data.join('\n')
      if (e.event === 'ready') {
        const r = JSON.parse(e.data) as { client: number; key: string }
        this.client = r.client
        this.key = r.key
      }
      this.events.push(e)
    }
  }
}

export type Answer = JsonAnswer

/** POST /clients/ID/channels on a connection of its own; `bearer` null sends no Authorization. */
export async function postChannels(port: number, id: number | string, body: string | Buffer, bearer: string | null, headers: Record<string, string> = {}): Promise<Answer> {
  const b = typeof body === 'string' ? Buffer.from(body) : body
  let head = `POST /clients/${id}/channels HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n`
  if (bearer !== null) head += `Authorization: Bearer ${bearer}\r\n`
  if (!('Transfer-Encoding' in headers)) head += `Content-Length: ${b.length}\r\n`
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
  return jsonAnswer(await rawRequest(port, Buffer.concat([Buffer.from(head + '\r\n'), b]), 10_000))
}

/** A change with the stream's own key. */
export const change = (port: number, r: EventReader, c: { add?: string[]; remove?: string[]; since?: string }): Promise<Answer> =>
  postChannels(port, r.client, JSON.stringify(c), r.key)

/** The `channels` event's data for a set. */
export const channelsData = (channels: readonly string[]): string => JSON.stringify({ channels })

/** A published event as the check below knows it: its id and its channel. */
export interface Pub {
  id: number
  channel: string
}

/** A stream's events cut at its `channels` events: each part with the set it was on. */
export interface Segment {
  channels: readonly string[]
  ids: number[]
}

/** The parts of a stream's events (ids of events with one; `isFence` ones left out), cut at each `channels`. */
export function segments(r: EventReader, isFence: (e: Ev) => boolean = () => false): Segment[] {
  const ready = JSON.parse(r.events[0]!.data) as { channels: string[] }
  const out: Segment[] = [{ channels: ready.channels, ids: [] }]
  for (const e of r.after) {
    if (e.event === 'channels') out.push({ channels: (JSON.parse(e.data) as { channels: string[] }).channels, ids: [] })
    else if (e.id !== null && !isFence(e)) out.at(-1)!.ids.push(Number(e.id))
  }
  return out
}

/**
 * Why a stream's segments are not what streams opened with each set would have had, each
 * between two places of the publish order (the cuts): [] when they are. `published` holds every
 * event on a channel, by id. A segment must be a run of its set's events with none of them
 * missing between its cuts, and the stream must have every event of its last set to the end.
 */
export function cutProblems(published: readonly Pub[], segs: readonly Segment[]): string[] {
  const problems: string[] = []
  // Where the current cut may lie: [lo, hi] (the stream opened before the first event).
  let lo = 0
  let hi = 0
  for (const [k, seg] of segs.entries()) {
    const mine = published.filter((p) => seg.channels.includes(p.channel)).map((p) => p.id)
    const nextFrom = (x: number): number => mine.find((id) => id >= x) ?? Infinity
    if (seg.ids.length === 0) {
      // None of the set's events between this cut and the next.
      hi = nextFrom(hi)
      continue
    }
    const first = seg.ids[0]!
    const last = seg.ids.at(-1)!
    const before = mine.filter((id) => id < first).at(-1) ?? -1
    lo = Math.max(lo, before + 1)
    hi = Math.min(hi, first)
    if (lo > hi) problems.push(`part ${k} (${seg.channels.join(',')}): an event of its set is missing before ${first}, or it came after the change`)
    const at = mine.indexOf(first)
    const run = at === -1 ? [] : mine.slice(at, at + seg.ids.length)
    if (run.join() !== seg.ids.join()) problems.push(`part ${k} (${seg.channels.join(',')}): ${seg.ids.join(' ')} is not a run of its set's events (${run.join(' ')})`)
    lo = last + 1
    hi = mine.find((id) => id > last) ?? Infinity
  }
  if (hi !== Infinity) problems.push(`the last set's events from ${hi} on are missing`)
  return problems
}
