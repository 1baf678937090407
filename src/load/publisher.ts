// `rawsse bench`'s publisher: one keep-alive connection that POSTs numbered, timestamped events,
// pipelined, and reads the answers in order. The coordinator (bench.ts) decides how many to send.

import type * as net from 'node:net'
import { dial } from '../client/dial.js'
import { requestHead, ResponseError, ResponseReader, withDefaults, type ResponseHandler, type ResponseHead } from '../client/http.js'
import { MAX_ERROR_TEXT, PUBLISH_GIVE_UP_MS, PUBLISH_RETRY_MS, REDIAL_MS, SLAB_BYTES } from './limits.js'
import { BodyTemplate, digitCount, monotonicUs, writeDigits } from './stats.js'
import { oneLine, quoted } from './text.js'

const CRLF2 = Buffer.from('\r\n\r\n')

/**
 * One keep-alive connection that publishes events, pipelined: the request head is prebuilt and
 * each request is written into a slab with its Content-Length, seq and ts; answers are read in
 * order with the response parser.
 */
export class Publisher implements ResponseHandler {
  /** Seqs sent whose answer has not come, oldest first. */
  private readonly waiting: number[] = []
  private waitingHead = 0
  private socket: net.Socket | null = null
  private status = 0
  private reason = ''
  private errorText = ''
  /** When the current run of failed publishes began (null after a success). */
  private failingSince: number | null = null
  private lastError = ''
  /** A 4xx answer (not 429): the target refuses these requests, and sending more will not help. */
  private refusal: string | null = null
  private slab = Buffer.allocUnsafe(SLAB_BYTES)
  private slabUsed = 0
  private readonly headPrefix: Buffer
  private readonly template: BodyTemplate
  private closed = false
  seq = 0
  published = 0
  errors = 0
  firstError: string | null = null
  /** Failed seqs above the window's base: they will never be delivered, so they do not hold a window slot. */
  readonly failed: number[] = []

  constructor(
    private readonly url: URL,
    method: string,
    fields: Array<[string, string]>,
    body: string,
    private readonly onAnswer: () => void,
  ) {
    this.template = new BodyTemplate(body)
    const all = withDefaults([['Content-Type', 'text/plain; charset=utf-8']], fields).filter(([n]) => n.toLowerCase() !== 'content-length')
    const head = requestHead(method, url, all)
    // The head without its blank line: each request adds its Content-Length and the blank line.
    this.headPrefix = Buffer.concat([head.subarray(0, head.length - 2), Buffer.from('Content-Length: ')])
    this.dial()
  }

  /** No publish is sent before this (ms): after a failure, the target gets a pause. */
  holdUntil = 0

  /**
   * Why publishing should stop, or null: the target refused a request (4xx), or no publish has
   * succeeded for PUBLISH_GIVE_UP_MS while they failed. One line, for a person.
   */
  giveUp(now: number): string | null {
    if (this.refusal !== null) return this.refusal
    if (this.failingSince !== null && now - this.failingSince >= PUBLISH_GIVE_UP_MS) return `no publish succeeded for ${PUBLISH_GIVE_UP_MS / 1000} s; the last: ${this.lastError}`
    return null
  }

  get outstanding(): number {
    return this.waiting.length - this.waitingHead
  }

  private dial(): void {
    const socket = dial(this.url)
    socket.setNoDelay(true)
    this.socket = socket
    const reader = new ResponseReader(this)
    let error: Error | null = null
    socket.on('data', (d: Buffer) => this.onData(reader, d))
    socket.on('error', (err) => (error ??= err))
    socket.on('close', () => {
      if (this.socket !== socket) return
      this.socket = null
      // Requests without an answer: their fate is unknown, so they count as failed.
      const why = `connection closed: ${error?.message ?? 'by the server'}`
      // A target that refuses connections fails publishing even while no request is out.
      if (this.outstanding === 0 && error !== null) this.failing(why)
      while (this.outstanding > 0) this.fail(this.waiting[this.waitingHead++]!, why)
      this.compact()
      this.onAnswer()
      if (!this.closed) setTimeout(() => !this.closed && this.socket === null && this.dial(), REDIAL_MS)
    })
  }

  /** Send `n` more events, as one write. */
  send(n: number): void {
    if (n <= 0 || this.socket === null) return
    let start = this.slabUsed
    for (let i = 0; i < n; i++) {
      const seq = ++this.seq
      const ts = monotonicUs()
      const seqDigits = digitCount(seq)
      const tsDigits = digitCount(ts)
      const bodyLength = this.template.size(seqDigits, tsDigits)
      const lengthDigits = digitCount(bodyLength)
      const size = this.headPrefix.length + lengthDigits + CRLF2.length + bodyLength
      if (this.slabUsed + size > this.slab.length) {
        // The queued bytes of the old slab stay alive until written; a new slab takes the rest.
        if (this.slabUsed > start) this.socket.write(this.slab.subarray(start, this.slabUsed))
        this.slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, size))
        this.slabUsed = 0
        start = 0
      }
      let off = this.slabUsed
      off += this.headPrefix.copy(this.slab, off)
      off = writeDigits(this.slab, off, bodyLength, lengthDigits)
      off += CRLF2.copy(this.slab, off)
      off = this.template.write(this.slab, off, seq, seqDigits, ts, tsDigits)
      this.slabUsed = off
      this.waiting.push(seq)
    }
    this.socket.write(this.slab.subarray(start, this.slabUsed))
  }

  private onData(reader: ResponseReader, d: Buffer): void {
    try {
      reader.feed(d)
    } catch (err) {
      if (!(err instanceof ResponseError)) throw err
      this.firstError ??= `publish: ${err.message}`
      reader.stop()
      this.socket?.destroy()
    }
  }

  // ---------------------------------------------------------------- ResponseHandler: answers, in order

  onHead(head: ResponseHead): void {
    this.status = head.status
    this.reason = head.reason
    this.errorText = ''
  }

  onBody(buf: Buffer, start: number, end: number): void {
    if ((this.status < 200 || this.status > 299) && this.errorText.length < MAX_ERROR_TEXT) this.errorText += buf.toString('utf8', start, Math.min(end, start + MAX_ERROR_TEXT))
  }

  onEnd(): void {
    this.answered()
  }

  private answered(): void {
    const seq = this.outstanding > 0 ? this.waiting[this.waitingHead++]! : 0
    this.compact()
    if (this.status >= 200 && this.status <= 299) {
      this.published++
      this.failingSince = null
    } else {
      const why = `HTTP ${this.status} ${this.reason}`.trim() + quoted(this.errorText)
      if (this.status >= 400 && this.status <= 499 && this.status !== 429) this.refusal ??= `${this.url.href} answered ${why}`
      this.fail(seq, why)
    }
    this.onAnswer()
  }

  private fail(seq: number, why: string): void {
    this.errors++
    this.firstError ??= oneLine(why)
    this.failing(why)
    this.failed.push(seq)
  }

  /** Publishing is failing (a publish, or the connection): the next waits, and giveUp() counts from the first. */
  private failing(why: string): void {
    this.lastError = oneLine(why)
    this.failingSince ??= Date.now()
    this.holdUntil = Date.now() + PUBLISH_RETRY_MS
  }

  private compact(): void {
    if (this.waitingHead > 1024 && this.waitingHead * 2 > this.waiting.length) {
      this.waiting.splice(0, this.waitingHead)
      this.waitingHead = 0
    }
  }

  close(): void {
    this.closed = true
    this.socket?.destroy()
  }
}
