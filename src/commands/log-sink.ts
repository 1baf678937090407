// Standard error for the log, without ever blocking the event loop. Node writes to a pipe
// synchronously on Linux, so a log reader that falls behind (a busy journald, a full pipe, a
// test harness busy elsewhere) would stall every stream for as long as it is behind: 10 000
// streams dropped at once are 10 000 lines. Here lines are gathered and written a batch at a
// time from libuv's thread pool; past MAX_LOG_PENDING_BYTES waiting, lines are dropped, counted,
// and one line says how many once the reader has caught up. What is left at exit is written then.

import { write, writeSync } from 'node:fs'
import { MAX_LOG_PENDING_BYTES } from '../server/limits.js'

export interface LineSink {
  write(line: string): void
}

export class AsyncLines implements LineSink {
  private pending: string[] = []
  private pendingBytes = 0
  private writing = false
  private dropped = 0

  constructor(private readonly fd: number) {
    process.on('exit', () => this.flushSync())
  }

  write(line: string): void {
    if (this.pendingBytes + line.length > MAX_LOG_PENDING_BYTES) {
      this.dropped++
      return
    }
    this.pending.push(line)
    this.pendingBytes += line.length
    if (!this.writing) this.flush()
  }

  private take(): Buffer {
    if (this.dropped > 0) {
      this.pending.push(`${new Date().toISOString()} log-dropped lines=${this.dropped} reason="standard error was not read fast enough"\n`)
      this.dropped = 0
    }
    const buf = Buffer.from(this.pending.join(''))
    this.pending = []
    this.pendingBytes = 0
    return buf
  }

  private flush(): void {
    this.writing = true
    this.writeOut(this.take(), 0)
  }

  private writeOut(buf: Buffer, from: number): void {
    write(this.fd, buf, from, buf.length - from, null, (err, n) => {
      if (err !== null) {
        // A non-blocking pipe that is full: try again shortly. Anything else (the reader is gone): give up on it.
        if (err.code === 'EAGAIN') return void setTimeout(() => this.writeOut(buf, from), 10)
        this.writing = false
        return
      }
      if (from + n < buf.length) return this.writeOut(buf, from + n)
      this.writing = false
      if (this.pending.length > 0) this.flush()
    })
  }

  private flushSync(): void {
    if (this.pending.length === 0 && this.dropped === 0) return
    try {
      writeSync(this.fd, this.take())
    } catch {
      // exiting anyway
    }
  }
}
