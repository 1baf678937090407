// Questions one member of a cluster asks several others at once (stats, close a stream, close
// all), answered by number: a `--workers` primary asks its workers over IPC, a Redis node asks
// the other nodes over pub/sub. The answer is every value that came, once each asked member has
// answered, left, or the deadline passed.

interface Waiting<K> {
  pending: Set<K>
  values: unknown[]
  done: (values: unknown[]) => void
  timer: NodeJS.Timeout | null
}

export class Questions<K> {
  private asked = 0
  private readonly waiting = new Map<number, Waiting<K>>()

  /**
   * Ask `of` (each must answer through answered()); `send(n)` puts question number `n` on the
   * wire, and a rejection from it ends the question with what came. Without `timeoutMs` it waits
   * for every one of them (or gone()).
   */
  ask(of: Iterable<K>, send: (n: number) => void | Promise<unknown>, timeoutMs?: number): Promise<unknown[]> {
    const pending = new Set(of)
    if (pending.size === 0) return Promise.resolve([])
    return new Promise((done) => {
      const n = ++this.asked
      const timer = timeoutMs === undefined ? null : setTimeout(() => this.end(n), timeoutMs)
      this.waiting.set(n, { pending, values: [], done, timer })
      void Promise.resolve(send(n)).catch(() => this.end(n))
    })
  }

  answered(n: number, from: K, value: unknown): void {
    const w = this.waiting.get(n)
    if (w === undefined || !w.pending.delete(from)) return
    w.values.push(value)
    if (w.pending.size === 0) this.end(n)
  }

  /** `from` left: no answer is awaited from it any more. */
  gone(from: K): void {
    for (const [n, w] of this.waiting) if (w.pending.delete(from) && w.pending.size === 0) this.end(n)
  }

  private end(n: number): void {
    const w = this.waiting.get(n)
    if (w === undefined) return
    this.waiting.delete(n)
    if (w.timer !== null) clearTimeout(w.timer)
    w.done(w.values)
  }
}
