// Deadlines of many open streams on one timer (CONTRACT "Tokens an application signs": `expiring`
// and `expired`): never a timer per stream. Deadlines are grouped in slots of EXPIRY_SLOT_MS; a
// heap holds each slot number once, and the one timer is armed for the soonest slot.

import { EXPIRY_SLOT_MS, EXPIRY_TIMER_MAX_MS } from './limits.js'

/**
 * When each item is due. An item is in at most one slot; remove() is O(1) (its slot may stay in
 * the heap, empty, until its time). Items due together are handed over in one call, in no order.
 */
export class Deadlines<T> {
  private readonly slots = new Map<number, Set<T>>()
  private readonly slotOf = new Map<T, number>()
  /** Slot numbers with a set in `slots`, a binary min-heap. */
  private readonly heap: number[] = []
  private timer: NodeJS.Timeout | null = null
  /** The slot the timer is armed for (Infinity: none). */
  private armedSlot = Infinity

  constructor(
    private readonly due: (items: T[]) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** How many items wait. */
  get size(): number {
    return this.slotOf.size
  }

  /** `item` is due at `ms` (since the epoch), never before; replaces its earlier deadline. */
  at(item: T, ms: number): void {
    this.remove(item)
    // Rounded up: an item never comes before its deadline, at most a slot after it.
    const slot = Math.ceil(ms / EXPIRY_SLOT_MS)
    let set = this.slots.get(slot)
    if (set === undefined) {
      this.slots.set(slot, (set = new Set()))
      this.push(slot)
    }
    set.add(item)
    this.slotOf.set(item, slot)
    if (slot < this.armedSlot) this.arm()
  }

  remove(item: T): void {
    const slot = this.slotOf.get(item)
    if (slot === undefined) return
    this.slotOf.delete(item)
    this.slots.get(slot)?.delete(item)
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.armedSlot = Infinity
  }

  private arm(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.armedSlot = Infinity
    const next = this.heap[0]
    if (next === undefined) return
    this.armedSlot = next
    const wait = Math.min(EXPIRY_TIMER_MAX_MS, Math.max(0, next * EXPIRY_SLOT_MS - this.now()))
    this.timer = setTimeout(this.fire, wait)
    this.timer.unref()
  }

  private readonly fire = (): void => {
    this.timer = null
    this.armedSlot = Infinity
    const nowSlot = Math.floor(this.now() / EXPIRY_SLOT_MS)
    const out: T[] = []
    while (this.heap.length > 0 && this.heap[0]! <= nowSlot) {
      const slot = this.pop()
      for (const item of this.slots.get(slot)!) {
        this.slotOf.delete(item)
        out.push(item)
      }
      this.slots.delete(slot)
    }
    this.arm()
    if (out.length > 0) this.due(out)
  }

  private push(slot: number): void {
    const h = this.heap
    let i = h.push(slot) - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (h[parent]! <= slot) break
      h[i] = h[parent]!
      i = parent
    }
    h[i] = slot
  }

  private pop(): number {
    const h = this.heap
    const top = h[0]!
    const last = h.pop()!
    if (h.length === 0) return top
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= h.length) break
      const r = l + 1
      const c = r < h.length && h[r]! < h[l]! ? r : l
      if (h[c]! >= last) break
      h[i] = h[c]!
      i = c
    }
    h[i] = last
    return top
  }
}
