// Work of one kind shared out per event-loop turn: at most `perTurn` jobs now, the rest queued, in
// order, for the next turns. Stream opens go through one: libuv hands Node every socket that is
// ready in one poll phase (up to 48 × 1 024 of them), so the thousands of opens of a reconnect
// storm (each 50–100 µs with its `ready` and replay) held the loop for hundreds of milliseconds
// while /healthz, publish answers and fan-out slices waited behind them. No sockets.

export class TurnGate {
  private left: number
  private queue: Array<() => void> = []
  private head = 0
  private scheduled = false

  constructor(private readonly perTurn: number) {
    this.left = perTurn
  }

  /** Jobs waiting for a later turn. */
  get waiting(): number {
    return this.queue.length - this.head
  }

  /** Run `job` now if this turn has room and nothing waits before it; else in a later turn, in order. */
  run(job: () => void): void {
    this.schedule() // the turn's share comes back in the next turn
    if (this.waiting === 0 && this.left > 0) {
      this.left--
      job()
      return
    }
    this.queue.push(job)
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(this.next)
  }

  private readonly next = (): void => {
    this.scheduled = false
    this.left = this.perTurn
    while (this.waiting > 0 && this.left > 0) {
      this.left--
      const job = this.queue[this.head]!
      this.queue[this.head++] = noop // let the job's closure go
      job()
    }
    if (this.waiting === 0) {
      this.queue = []
      this.head = 0
    } else {
      // Compact once the dead front is most of the array: amortised O(1) per job.
      if (this.head * 2 >= this.queue.length) {
        this.queue = this.queue.slice(this.head)
        this.head = 0
      }
      this.schedule()
    }
  }
}

function noop(): void {}
