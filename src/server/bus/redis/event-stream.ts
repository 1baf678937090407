// The cluster's events in one Redis Stream: appended by a Lua script that gives each event its
// place and its id in one atomic step (so there is one order and one id sequence for every node),
// and read by every node with a blocking XREAD from the last place it saw, so that order, and
// catching up after a disconnection, come from Redis itself.
//
// Keys (one hash slot, `{prefix}`, so a Redis Cluster can hold them too):
//   {p}:events  the stream; entry ID `<pos>-0`, fields i (event id), k (kept: 1/0), d (JSON [message, target])
//   {p}:pos     the last place given: places are 1, 2, 3… with no hole, so a node that reads a
//               place further on than the next one knows Redis trimmed what it missed: a gap
//   {p}:seq     the last server-assigned event id (ids may jump ahead: never back)
//   {p}:kept    places of the kept events, newest first: the stream is trimmed (every 64th
//               place) to the oldest of the last `history` kept ones, so a node that starts
//               late loads the same history the others hold (events to one client between
//               them are not counted)
//   {p}:ids     publisher-given ids still in history (→ 409 on a repeat), scored by place
//   {p}:epoch   a random name for this Redis's lifetime of the stream: when Redis loses its data
//               it is gone, and a node that finds another knows it missed events it cannot get
//   {p}:client-ids  the last stream id handed out (in blocks, redis-bus.ts)

import { randomBytes } from 'node:crypto'
import { HttpError } from '../../http/errors.js'
import * as L from '../../limits.js'
import { heldId } from '../../publish-rules.js'
import type { SseMessage } from '../../fanout/sse-encode.js'
import type { BusEvent } from '../bus.js'
import type { WireTarget } from '../../fanout/target.js'
import { Script, within, type RedisLink } from './client.js'

export interface StreamKeys {
  events: string
  pos: string
  seq: string
  kept: string
  ids: string
  epoch: string
  /** The last stream id handed out in a block (redis-bus.ts). */
  clientIds: string
}

export function streamKeys(prefix: string): StreamKeys {
  const k = (name: string): string => `{${prefix}}:${name}`
  return { events: k('events'), pos: k('pos'), seq: k('seq'), kept: k('kept'), ids: k('ids'), epoch: k('epoch'), clientIds: k('client-ids') }
}

/** Join (or rejoin) the stream: its epoch, created when there is none, and the place it is at. */
const SYNC = new Script(`
local created = redis.call('SET', KEYS[1], ARGV[1], 'NX')
local floor = tonumber(ARGV[2])
if created then
  -- A new lifetime: nothing of an old one may linger.
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6])
  if ARGV[3] == '1' then
    -- Redis lost its data while this node held events: ids go on above any id given before,
    -- the current time in microseconds (the scale of the default first id), not just above
    -- what this node saw.
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    if now > floor then floor = now end
    -- Stream ids too: the blocks handed out before are still in use.
    redis.call('SET', KEYS[7], string.format('%d', now))
  end
end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if seq < floor then redis.call('SET', KEYS[2], string.format('%d', floor)) end
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[3]) or '0'}
`)

/**
 * Append one event: refused if Redis runs it after the node's deadline (ARGV[8], in Redis's ms:
 * clock.ts), if the epoch is not the caller's, or if a publisher-given id is still held.
 */
const APPEND = new Script(`
-- Late: the node has answered 503 by now, or will before this reply reaches it (a Redis that was
-- stopped runs what waited in its sockets when it goes on). Refused, the event is never published.
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 > tonumber(ARGV[8]) then return redis.error_reply('LATE') end
if redis.call('GET', KEYS[6]) ~= ARGV[1] then return redis.error_reply('EPOCH') end
local custom = ARGV[4]
if custom ~= '' and redis.call('ZSCORE', KEYS[5], custom) then return redis.error_reply('DUP') end
local pos = string.format('%d', redis.call('INCR', KEYS[1]))
local id = custom
if custom == '' then id = string.format('%d', redis.call('INCR', KEYS[2])) end
redis.call('XADD', KEYS[3], pos .. '-0', 'i', id, 'k', ARGV[5], 'd', ARGV[6])
if custom ~= '' then redis.call('ZADD', KEYS[5], pos, custom) end
if ARGV[5] == '1' then redis.call('LPUSH', KEYS[4], pos) end
-- Trimming every TRIM_EVERY places, not at each: the stream then holds between history and
-- history + TRIM_EVERY kept events, never fewer (a node that starts late still loads a full
-- history; its ring keeps the last \`history\`, as every other node's).
if tonumber(pos) % tonumber(ARGV[7]) == 0 then
  local history = tonumber(ARGV[2])
  if redis.call('LLEN', KEYS[4]) > history then
    redis.call('LTRIM', KEYS[4], 0, history - 1)
    local oldest = redis.call('LINDEX', KEYS[4], -1)
    redis.call('XTRIM', KEYS[3], 'MINID', oldest .. '-0')
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. oldest)
  end
  -- Events to one client are not counted by history: this bounds a flood of them.
  redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', history + tonumber(ARGV[3]))
end
return {pos, id}
`)

/**
 * A block of stream ids, in this lifetime of the stream only: a Redis that came back empty gets
 * its counter raised above every id given before (SYNC) when a node rejoins, and a block taken
 * before that would hand out ids still in use.
 */
const ID_BLOCK = new Script(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('EPOCH') end
return redis.call('INCRBY', KEYS[2], ARGV[2])
`)

/** What the stream hands its reader, in order. */
export interface StreamSink {
  deliver(pos: number, event: BusEvent): void
  /** Events this node never got are gone (trimmed, or Redis lost its data). */
  gap(): void
}

export class EventStream {
  /** The place of the last entry delivered (in this epoch). */
  lastPos = 0
  private epoch: string | null = null
  /** The highest numeric id seen, or the first id this node would give: the floor ids never go below. */
  private highestId: number
  private synced = false
  /** Events are coming in bursts: hold what a read brings until Redis has no more (run()). */
  private bursting = false
  private closed = false
  /** The ids of the last places delivered (oldest first), to find where a Redis restored from an older copy parts from what we delivered. */
  private readonly recent = new Map<number, string>()
  /** Waiting for the read to reach a place (catchUp()). */
  private readonly reaching: Array<{ pos: number; done: () => void }> = []
  /** When the read in flight should have been answered (performance.now()), or null between reads. */
  private readDue: number | null = null

  constructor(
    private readonly writer: RedisLink,
    private readonly reader: RedisLink,
    private readonly keys: StreamKeys,
    private readonly history: number,
    lastEventId: number,
    private readonly sink: StreamSink,
  ) {
    this.highestId = lastEventId
  }

  /** Reading, and the epoch known: publishing is possible. */
  get up(): boolean {
    return this.synced && this.writer.ready
  }

  /** Join, and deliver the retained entries (the history a late node gets), before live reading starts. */
  async load(): Promise<void> {
    const at = await this.sync()
    let from = '-'
    for (;;) {
      const page = (await this.reader.send(['XRANGE', this.keys.events, from, `${at}-0`, 'COUNT', String(L.REDIS_READ_COUNT)])) as RawEntry[]
      for (const raw of page) this.take(raw)
      if (page.length < L.REDIS_READ_COUNT) break
      from = `(${page[page.length - 1]![0]}`
    }
    this.lastPos = at
  }

  /** The blocking read, until close(); after a disconnection it rejoins and catches up from lastPos. */
  async run(): Promise<void> {
    while (!this.closed) {
      try {
        if (!this.synced) {
          await this.sync()
          await this.rewind()
        }
        const asked = performance.now()
        const batch = await this.read(this.lastPos, true)
        if (batch.length === 0) continue
        // A blocked read is woken by the first event of a burst (Redis answers it after the first
        // append of a pipeline). At rest (one event, after a wait) it goes out at once: one read
        // per event. Several at once, or one that came at once, mean a burst: from then on what a
        // read brings is held, and read after without blocking until Redis has no more, then
        // delivered in one turn, so each stream gets the burst in one write (8 events a write at
        // W = 8, not 3). A blocked read whose event came alone ends the burst.
        if (batch.length > 1 || performance.now() - asked < L.REDIS_BURST_MS) this.bursting = true
        if (!this.bursting) {
          this.deliverAll(batch)
          continue
        }
        let more = false
        while (batch.length < L.REDIS_READ_COUNT) {
          const next = await this.read(positionOf(batch[batch.length - 1]!), false)
          if (next.length === 0) break
          more = true
          batch.push(...next)
        }
        if (!more && batch.length === 1) this.bursting = false
        this.deliverAll(batch)
      } catch {
        this.synced = false
        if (!this.closed) await delay(L.REDIS_RETRY_MS)
      }
    }
  }

  /** The entries after place `from` (waiting up to REDIS_BLOCK_MS for one when `block`). */
  private async read(from: number, block: boolean): Promise<RawEntry[]> {
    const wait = block ? ['BLOCK', String(L.REDIS_BLOCK_MS)] : []
    this.readDue = performance.now() + (block ? L.REDIS_BLOCK_MS : 0) + L.REDIS_ANSWER_MS
    try {
      const reply = (await this.reader.send(['XREAD', 'COUNT', String(L.REDIS_READ_COUNT), ...wait, 'STREAMS', this.keys.events, `${from}-0`])) as RawReply | null
      return reply === null ? [] : reply[0]![1]
    } finally {
      this.readDue = null
    }
  }

  /** The read has waited REDIS_ANSWER_MS past its block time: Redis is not answering it (hung, or the connection is). */
  stalled(now: number): boolean {
    return this.readDue !== null && now > this.readDue
  }

  /**
   * Resolves once this node has delivered everything Redis held when asked (or after
   * REDIS_ACK_WAIT_MS): a client resuming with an id this node has not read yet must not be told
   * `reset` just because its event went through another node a moment ago.
   */
  async catchUp(): Promise<void> {
    if (!this.up) return
    const asked = within(this.writer.send(['GET', this.keys.pos]), L.REDIS_ANSWER_MS, unavailable)
    const pos = Number((await asked.catch(() => '0')) ?? '0')
    if (pos <= this.lastPos) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, L.REDIS_ACK_WAIT_MS)
      this.reaching.push({ pos, done: () => (clearTimeout(timer), resolve()) })
    })
  }

  /** Resynchronise at the next read (the epoch may have changed: a flushed or restarted Redis). */
  resync(): void {
    this.synced = false
  }

  /** Whether the epoch in Redis is still ours (checked with every snapshot: a flush without a restart closes no connection). */
  async checkEpoch(): Promise<void> {
    if (this.synced && (await this.writer.send(['GET', this.keys.epoch])) !== this.epoch) this.resync()
  }

  /**
   * Append, unless Redis runs it after `deadline` (Redis's ms); resolves with the event's place
   * and id once Redis has it. Rejects 409 (id held) or 503.
   */
  async append(message: SseMessage, target: WireTarget, keep: boolean, deadline: number): Promise<{ pos: number; id: string }> {
    if (!this.up) throw unavailable()
    const { id, ...rest } = message
    let reply: [string, string]
    try {
      reply = (await APPEND.run(
        this.writer,
        [this.keys.pos, this.keys.seq, this.keys.events, this.keys.kept, this.keys.ids, this.keys.epoch],
        [this.epoch!, String(Math.max(1, this.history)), String(L.REDIS_STREAM_SLACK), id ?? '', keep ? '1' : '0', JSON.stringify([rest, target]), String(L.REDIS_TRIM_EVERY), String(deadline)],
      )) as [string, string]
    } catch (err) {
      const m = (err as Error).message
      if (m.startsWith('DUP')) throw heldId(id ?? '')
      if (m.startsWith('EPOCH')) this.resync()
      throw unavailable()
    }
    return { pos: Number(reply[0]), id: reply[1] }
  }

  /** A block of `size` stream ids (the last id of it), from this lifetime of the stream only. */
  async idBlock(size: number): Promise<number> {
    if (!this.up) throw unavailable()
    try {
      return Number(await ID_BLOCK.run(this.writer, [this.keys.epoch, this.keys.clientIds], [this.epoch!, String(size)]))
    } catch (err) {
      if ((err as Error).message.startsWith('EPOCH')) this.resync()
      throw unavailable()
    }
  }

  close(): void {
    this.closed = true
  }

  /**
   * After a reconnection in the same epoch: does Redis still hold what we delivered last? A Redis
   * restarted from an older snapshot does not, and may already hold new events at the places we
   * had delivered others at. Walk back to the last place where Redis and we agree; what we
   * delivered after it is gone (`reset`), and the read goes on from there.
   */
  private async rewind(): Promise<void> {
    if (this.lastPos === 0 || this.recent.get(this.lastPos) === undefined) return
    const raw = (await this.reader.send(['XREVRANGE', this.keys.events, `${this.lastPos}-0`, '-', 'COUNT', String(L.REDIS_READ_COUNT)])) as RawEntry[]
    if (raw.length === 0) return // trimmed away: the next read says whether anything is missing
    const agreed = raw.find((e) => this.recent.get(positionOf(e)) === fieldOf(e, 'i'))
    const at = agreed === undefined ? positionOf(raw[0]!) : positionOf(agreed)
    if (agreed !== undefined && at === this.lastPos) return
    this.sink.gap()
    for (const pos of this.recent.keys()) if (pos > at) this.recent.delete(pos)
    this.lastPos = at
  }

  /** Join: the epoch (a new one when Redis has none), ids raised to our floor; returns Redis's last place. */
  private async sync(): Promise<number> {
    const candidate = randomBytes(8).toString('hex')
    const reply = (await SYNC.run(
      this.reader,
      [this.keys.epoch, this.keys.seq, this.keys.pos, this.keys.events, this.keys.kept, this.keys.ids, this.keys.clientIds],
      [candidate, String(this.highestId), this.epoch === null ? '0' : '1'],
    )) as [string, string]
    const [epoch, pos] = reply
    if (this.epoch !== null && epoch !== this.epoch) {
      // Redis lost the stream this node was reading: what it missed is gone. Read the new one from its start.
      this.sink.gap()
      this.lastPos = 0
      this.recent.clear()
    }
    this.epoch = epoch
    this.synced = true
    return Number(pos)
  }

  private deliverAll(batch: readonly RawEntry[]): void {
    for (const raw of batch) {
      // Places have no hole: one further on than the next means Redis trimmed what we missed.
      if (positionOf(raw) !== this.lastPos + 1) this.sink.gap()
      this.take(raw)
    }
  }

  private take(raw: RawEntry): void {
    const pos = positionOf(raw)
    const id = fieldOf(raw, 'i') ?? ''
    const [message, target] = JSON.parse(fieldOf(raw, 'd') ?? '[{"data":""},{}]') as [SseMessage, WireTarget]
    const n = Number(id)
    if (Number.isSafeInteger(n) && n > this.highestId) this.highestId = n
    this.lastPos = pos
    this.recent.set(pos, id)
    if (this.recent.size > L.REDIS_READ_COUNT) this.recent.delete(this.recent.keys().next().value!)
    this.sink.deliver(pos, { message: { ...message, id }, target, keep: fieldOf(raw, 'k') === '1' })
    while (this.reaching.length > 0 && this.reaching[0]!.pos <= pos) this.reaching.shift()!.done()
  }
}

function fieldOf(raw: RawEntry, name: string): string | undefined {
  const f = raw[1]
  for (let i = 0; i + 1 < f.length; i += 2) if (f[i] === name) return f[i + 1]
  return undefined
}

type RawEntry = [id: string, fields: string[]]
type RawReply = Array<[key: string, entries: RawEntry[]]>

function positionOf(raw: RawEntry): number {
  return Number(raw[0].slice(0, raw[0].indexOf('-')))
}

export function unavailable(): HttpError {
  return new HttpError(503, 'bus unavailable', [['Retry-After', String(L.REDIS_RETRY_AFTER_S)]])
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
