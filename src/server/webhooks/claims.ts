// Which node of a Redis cluster tells a presence change (presence-changes.ts has the design):
// each key's owner by rendezvous hashing over the live nodes, and a claim in Redis that only one
// node can win per change. Keys (one hash slot, `{prefix}`): {p}:hooks:told (hash: a key told
// present → when it became present, ms), {p}:hooks:gone:KEY (a key told absent → when it went,
// kept WEBHOOK_TOMBSTONE_MS). Both hold only keys present now and those gone within a minute.

import * as L from '../limits.js'
import { Script, type RedisLink } from '../bus/redis/client.js'

/** How one process learns whether it is the one to tell a change, in a cluster where every node sees it. */
export interface Claims {
  /** Whether this process tells `key`'s changes (the others only back it up, WEBHOOK_CLAIM_BACKSTOP_MS later). */
  owns(key: string): boolean
  /**
   * Record that `key` became present (or absent) at `atMs` (ms since the epoch): true for the one
   * node that records it; false when another did, or it is older than what is recorded.
   */
  claim(key: string, present: boolean, atMs: number): Promise<boolean>
  /** Every key recorded as told present (to start from what the cluster has told). */
  told(): Promise<string[]>
}

// Present: recorded unless already told present, or told absent at or after `at` (a node a
// moment behind must not tell an `online` older than the `offline` told). Absent: recorded only
// over a present told before `at`.
const CLAIM = new Script(`
local told = redis.call('HGET', KEYS[1], ARGV[1])
local at = tonumber(ARGV[3])
if ARGV[2] == '1' then
  if told then return 0 end
  local gone = redis.call('GET', KEYS[2])
  if gone and tonumber(gone) >= at then return 0 end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
if not told or tonumber(told) > at then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
return 1
`)

export class RedisClaims implements Claims {
  private readonly toldKey: string

  constructor(
    private readonly link: RedisLink,
    private readonly prefix: string,
    private readonly self: string,
    /** Every live node's name, this one's included. */
    private readonly nodes: () => Iterable<string>,
  ) {
    this.toldKey = `{${prefix}}:hooks:told`
  }

  owns(key: string): boolean {
    let best = ''
    let bestScore = -1
    for (const name of this.nodes()) {
      const score = rendezvous(name, key)
      if (score > bestScore || (score === bestScore && name > best)) {
        best = name
        bestScore = score
      }
    }
    return best === '' || best === this.self
  }

  async claim(key: string, present: boolean, atMs: number): Promise<boolean> {
    const keys = [this.toldKey, `{${this.prefix}}:hooks:gone:${key}`]
    const won = await CLAIM.run(this.link, keys, [key, present ? '1' : '0', String(Math.floor(atMs)), String(L.WEBHOOK_TOMBSTONE_MS)])
    return Number(won) === 1
  }

  async told(): Promise<string[]> {
    const out: string[] = []
    let cursor = '0'
    do {
      const [next, fields] = (await this.link.send(['HSCAN', this.toldKey, cursor, 'COUNT', '1000'])) as [string, string[]]
      for (let i = 0; i < fields.length; i += 2) out.push(fields[i]!)
      cursor = next
    } while (cursor !== '0')
    return out
  }
}

/** FNV-1a (32 bits, finalised) of node and key: the node with the highest for a key owns it, so a node that joins or leaves moves only its own keys. */
function rendezvous(node: string, key: string): number {
  let h = 0x811c9dc5
  for (const s of [node, key]) {
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i)
      h = Math.imul(h, 0x01000193)
    }
    h ^= 0x0a
    h = Math.imul(h, 0x01000193)
  }
  // murmur3's finaliser: FNV alone leaves keys that differ in their last bytes owned alike.
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
