// `rawsse listen URL`: print each event of a stream on one line, reconnecting as EventSource
// does. A thin front of SseClient. Exit codes: 0 done, 1 the server refused, 2 a bad command line.

import { SseClient, type SseClientError, type SseEvent } from '../client/sse-client.js'
import { parseArgs, UsageError, urlValue, type FlagSpec } from './args.js'

const LISTEN_HELP = `Usage: rawsse listen URL [--last-event-id ID] [--json] [--max-retries N]

Print each event of a stream on one line, and reconnect as EventSource does (after the
server's retry:, sending Last-Event-ID). URL is the stream, e.g.
http://127.0.0.1:6500/events/TOKEN?channel=news

  --last-event-id ID   resume after this event (sent as Last-Event-ID)
  --json               one JSON object per line: {"event":"...","id":"..."|null,"data":"..."}
  --max-retries N      give up (exit 1) after N reconnections in a row that open no stream
                       (default: never, as a browser)
  -h, --help           print this help and exit

Without --json a line is EVENT, " #ID" when there is an id, ": " and the data; line breaks and
control characters are shown as \\n, \\r, \\xHH. Notices go to standard error.
Exit: 0 on Ctrl-C or a 204 from the server, 1 when the server refuses the stream or the
retries run out, 2 bad usage.
`

const LISTEN_FLAGS: readonly FlagSpec[] = [
  { name: 'last-event-id', arg: 'ID' },
  { name: 'json', arg: '' },
  { name: 'max-retries', arg: 'N' },
  { name: 'help', arg: '', short: 'h' },
]

/**
 * Shown on one line: `\` and control characters escaped, so that data with line breaks stays one
 * line and a stream cannot send escape sequences to the terminal.
 */
function printable(s: string): string {
  return s.replace(/[\\\x00-\x1f\x7f-\x9f]/g, (c) => {
    switch (c) {
      case '\\':
        return '\\\\'
      case '\n':
        return '\\n'
      case '\r':
        return '\\r'
      case '\t':
        return '\\t'
      default:
        return '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0')
    }
  })
}

/** One output line. --json: exactly {"event","id","data"} in that order, id null when there is none. */
export function formatEvent(ev: SseEvent, json: boolean): string {
  if (json) return JSON.stringify({ event: ev.event, id: ev.id, data: ev.data })
  return `${printable(ev.event)}${ev.id === null ? '' : ' #' + printable(ev.id)}: ${printable(ev.data)}`
}

/** `rawsse listen ...` (argv without `listen`); resolves to the exit code. */
export async function listen(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, LISTEN_FLAGS, true)
  if (args.has('help')) {
    process.stdout.write(LISTEN_HELP)
    return 0
  }
  if (args.positional.length > 1) throw new UsageError(`unexpected argument: ${args.positional[1]}`)
  const first = args.positional[0]
  if (first === undefined) throw new UsageError('missing URL (the stream URL, e.g. http://127.0.0.1:6500/events/TOKEN)')
  const url = urlValue(first)
  const lastEventId = args.last('last-event-id')
  if (lastEventId !== undefined && /[\r\n\0]/.test(lastEventId)) throw new UsageError('--last-event-id must not contain CR, LF or NUL')
  const json = args.has('json')
  const maxRetries = args.wholeNumber('max-retries') ?? Number.POSITIVE_INFINITY
  let retries = 0

  const client = new SseClient(url, lastEventId === undefined ? {} : { lastEventId })
  const notice = (text: string): boolean => process.stderr.write(`rawsse listen: ${text}\n`)
  let code = 0
  return new Promise<number>((resolve) => {
    const stop = (): void => client.close()
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
    // `rawsse listen URL | head -3`: the reader went away; that is a normal end, not a crash.
    const onStdoutError = (err: NodeJS.ErrnoException): void => {
      if (err.code !== 'EPIPE') code = 1
      client.close()
    }
    process.stdout.on('error', onStdoutError)
    client.on('open', () => {
      retries = 0
      notice(`connected to ${client.url}`)
    })
    client.on('message', (ev) => process.stdout.write(formatEvent(ev, json) + '\n'))
    client.on('error', (err: SseClientError) => {
      if (err.retryInMs === null) {
        code = 1
        notice(err.message)
      } else if (retries >= maxRetries) {
        code = 1
        notice(`${err.message}; giving up after ${retries} ${retries === 1 ? 'retry' : 'retries'} (--max-retries)`)
        client.close()
      } else {
        retries++
        notice(`${err.message}; reconnecting in ${(err.retryInMs / 1000).toFixed(1)} s`)
      }
    })
    client.on('close', () => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      process.stdout.off('error', onStdoutError)
      resolve(code)
    })
  })
}
