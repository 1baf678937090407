// Reading an event stream in a page: bytes → text → lines → messages, WHATWG HTML §9.2.5 "Parsing
// an event stream" and §9.2.6 "Interpreting an event stream", as three small steps that each work
// alone (the shape of Azure/fetch-event-source src/parse.ts; the code is ours).
// https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
//
// Why the browser has a parser of its own rather than src/client/sse-parse.ts on Uint8Array:
// - What each hands on differs. SseParser exists for `rawsse bench`, which reads thousands of
//   streams and must not make a string per event: it hands out views of Node Buffers and decodes
//   nothing. A page needs the string anyway (MessageEvent.data is one), so here the whole stream
//   is decoded once, as the spec says (UTF-8 decode, BOM stripped, bad bytes → U+FFFD), by
//   TextDecoder, and lines are cut from text.
// - SseParser's speed comes from Buffer: native indexOf on bytes, allocUnsafe and copy() for the
//   lines split across reads (held-bytes.ts). On Uint8Array those become JavaScript loops and
//   copies in the hottest path of the bench, the thing the issue says must not slow down.
// - Size: SseParser and held-bytes.ts are 20 KB of source for one feature of a 16 KB file.
// Measured (bench/parsers.mjs, bench/RESULTS.md): on the same bytes in Node, this parser takes
// 1.5× SseClient's time and 3.8× the bench's, so sharing it would slow both.
// So there are two, each the simplest for its side; test/browser-parse.test.ts reads the same
// hard cases (splits at every byte, CR LF across reads, BOM, NUL in ids) through this one.

import { DEFAULT_EVENT, SP, TAG_FIELD } from '../wire.js'

/** Between two `data:` lines of one event. */
const DATA_JOIN = '\n'
/** CRLF, a lone CR, a lone LF: each ends a line (§9.2.5). */
const LINE_END = /\r\n|\r|\n/

/** Bytes in (one stream, in order), one call per line out: the line without its end. */
export class LineReader {
  /** UTF-8, one leading BOM removed, invalid bytes U+FFFD: the spec's decode (a new stream needs a new reader). */
  private readonly decoder = new TextDecoder()
  /** The start of a line whose end has not arrived. */
  private rest = ''
  /** The last text ended with CR: an LF first in the next is the other half of that CRLF. */
  private skipLF = false

  constructor(private readonly onLine: (line: string) => void) {}

  feed(bytes: Uint8Array): void {
    let chunk = this.decoder.decode(bytes, { stream: true })
    if (chunk === '') return
    if (this.skipLF && chunk.charCodeAt(0) === 10) chunk = chunk.slice(1)
    // Hard case: a CR that ends the text may be half a CRLF. The line is done now (a lone CR ends
    // a line too, and waiting would hold the event back), and an LF first in the next text is dropped.
    this.skipLF = chunk.endsWith('\r')
    const lines = (this.rest + chunk).split(LINE_END)
    this.rest = lines.pop()!
    for (const line of lines) this.onLine(line)
  }
}

export interface MessageHandler {
  /**
   * A dispatched event. `lastEventId` is the stream's last event ID after it (an event without an
   * `id:` field carries the one before); `ownId` says whether this event's block set it;
   * `channel` is its `channel:` field on a tagged stream (`tag=channel`), else ''.
   */
  event(type: string, data: string, lastEventId: string, ownId: boolean, channel: string): void
  /** A `retry:` field of ASCII digits only. */
  retry(ms: number): void
}

/** Lines in, events out: the fields of §9.2.6. */
export class MessageReader {
  /** The last event ID string: committed at each blank line, kept across events and streams. */
  lastEventId: string
  /** The last event ID buffer. */
  private idBuffer: string
  private idInBlock = false
  private type = ''
  private channel = ''
  private data = ''
  private dataLines = 0

  constructor(
    private readonly handler: MessageHandler,
    lastEventId = '',
  ) {
    this.lastEventId = lastEventId
    this.idBuffer = lastEventId
  }

  line(line: string): void {
    if (line === '') return this.dispatch()
    const colon = line.indexOf(':')
    if (colon === 0) return // a comment: heartbeats are these
    const name = colon === -1 ? line : line.slice(0, colon)
    // One space after the colon is removed, and only one.
    const value = colon === -1 ? '' : line.slice(line.charCodeAt(colon + 1) === SP ? colon + 2 : colon + 1)
    switch (name) {
      case 'data':
        this.data = this.dataLines === 0 ? value : this.data + DATA_JOIN + value
        this.dataLines++
        break
      case 'event':
        this.type = value
        break
      case 'id':
        // "If the field value does not contain U+0000 NULL ... Otherwise, ignore the field."
        if (value.indexOf('\0') === -1) {
          this.idBuffer = value
          this.idInBlock = true
        }
        break
      case TAG_FIELD:
        this.channel = value
        break
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.handler.retry(Number(value))
        break
      // Any other field is ignored.
    }
  }

  /** A blank line: the spec's "dispatch the event". The id moves on even when no event follows. */
  private dispatch(): void {
    this.lastEventId = this.idBuffer
    const ownId = this.idInBlock
    const { type, data, dataLines, channel } = this
    this.idInBlock = false
    this.type = ''
    this.channel = ''
    this.data = ''
    this.dataLines = 0
    if (dataLines === 0) return
    this.handler.event(type === '' ? DEFAULT_EVENT : type, data, this.lastEventId, ownId, channel)
  }
}

/** One stream's parser: feed() its body's bytes as they come. */
export function eventStreamParser(handler: MessageHandler, lastEventId = ''): LineReader {
  const messages = new MessageReader(handler, lastEventId)
  return new LineReader((line) => messages.line(line))
}
