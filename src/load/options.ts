// `rawsse bench`'s command line: its flags and help, and the run they ask for (Options).

import { headerProblem, withDefaults } from '../client/http.js'
import { parseArgs, UsageError, urlValue, type Args, type FlagSpec } from '../commands/args.js'
import {
  DEFAULT_BODY,
  DEFAULT_CONNECT_RATE,
  DEFAULT_DURATION_S,
  DEFAULT_METHOD,
  DEFAULT_STREAMS,
  DEFAULT_WARMUP_S,
  DEFAULT_WINDOW,
  FD_MARGIN,
  PUBLISH_GIVE_UP_MS,
  PUBLISH_RETRY_MS,
  WINDOW_TIMEOUT_MS,
} from './limits.js'
import { BodyTemplate } from './stats.js'

export const HELP = `Usage: rawsse bench URL [flags]

Open N SSE streams to URL (any server), optionally publish numbered, timestamped events, and
report what arrived. URL is the stream, e.g. http://127.0.0.1:6500/events/TOKEN

  --streams N              streams to open (default: ${DEFAULT_STREAMS})
  --header 'K: V'          extra request header of every stream (repeatable)
  --connect-rate R         new connections per second (default: ${DEFAULT_CONNECT_RATE})
  --workers K              processes holding the streams (default: auto, one per
                           open-file limit − ${FD_MARGIN} streams)
  --duration S             seconds to publish, or to hold without --publish (default: ${DEFAULT_DURATION_S})
  --warmup S               first seconds not counted in deliveries/s and latency (default: ${DEFAULT_WARMUP_S})
  --publish URL            publish events to this URL (e.g. http://127.0.0.1:6500/publish)
  --publish-method M       (default: ${DEFAULT_METHOD})
  --publish-header 'K: V'  header of every publish request (repeatable)
  --body TEMPLATE          request body; {seq} is the event's number (1, 2, …), {ts} a
                           CLOCK_MONOTONIC timestamp in µs (default: '${DEFAULT_BODY}')
  --window W               closed loop: at most W events not yet received by every stream
                           (default: ${DEFAULT_WINDOW}); one still missing after ${WINDOW_TIMEOUT_MS / 1000} s leaves the window
  --rate R                 open loop: R events per second instead of a window
  --events N               stop after N events instead of --duration
  --json                   the report as one JSON object on standard output
  --out FILE               also write one JSON line per second to FILE: t, phase, open,
                           published, deliveries (in that second), lost, p50Ms, p99Ms, maxMs,
                           errors ("lost": deliveries of events published over 1 s before
                           that have not arrived)
  -h, --help               print this help and exit

Subscribers count events of type message whose data holds the body (the server may wrap it).
Streams to a 127.x address are bound to source addresses 127.0.0.1, 127.0.0.2, … (14 000 each).
Without --publish, streams are opened and held for --duration, then connected and errors reported.
A progress line goes to standard error when it is a terminal.
A publish answered 4xx (not 429), or none succeeding for ${PUBLISH_GIVE_UP_MS / 1000} s, stops the run; a failed publish
is retried after ${PUBLISH_RETRY_MS} ms.
Exit: 0 with a report, 1 when no stream connected, publishing failed or a worker died,
2 bad usage.
`

const BENCH_FLAGS: readonly FlagSpec[] = [
  { name: 'streams', arg: 'N' },
  { name: 'header', arg: "'K: V'" },
  { name: 'connect-rate', arg: 'R' },
  { name: 'workers', arg: 'K' },
  { name: 'duration', arg: 'S' },
  { name: 'warmup', arg: 'S' },
  { name: 'publish', arg: 'URL' },
  { name: 'publish-method', arg: 'M' },
  { name: 'publish-header', arg: "'K: V'" },
  { name: 'body', arg: 'TEMPLATE' },
  { name: 'window', arg: 'W' },
  { name: 'rate', arg: 'R' },
  { name: 'events', arg: 'N' },
  { name: 'json', arg: '' },
  { name: 'out', arg: 'FILE' },
  { name: 'help', arg: '', short: 'h' },
]

export interface Options {
  url: URL
  streams: number
  fields: Array<[string, string]>
  connectRate: number
  workers: number | 'auto'
  durationS: number
  durationGiven: boolean
  warmupS: number
  publish: URL | null
  method: string
  publishFields: Array<[string, string]>
  body: string
  window: number
  rate: number | null
  events: number | null
  json: boolean
  out: string | null
}

/** `rawsse bench ...` (argv without `bench`): the run, or null for --help. Throws UsageError. */
export function benchOptions(argv: readonly string[]): Options | null {
  const args = parseArgs(argv, BENCH_FLAGS, true)
  return args.has('help') ? null : options(args)
}

function headerList(a: Args, name: string): Array<[string, string]> {
  return a.all(name).map((h) => {
    const colon = h.indexOf(':')
    if (colon <= 0) throw new UsageError(`--${name} must be 'Name: value', not '${h}'`)
    const field: [string, string] = [h.slice(0, colon).trim(), h.slice(colon + 1).trim()]
    const problem = headerProblem(field[0], field[1])
    if (problem !== null) throw new UsageError(`--${name}: ${problem}`)
    return field
  })
}

/** The run a command line asks for; throws UsageError. */
function options(a: Args): Options {
  if (a.positional.length === 0) throw new UsageError('missing URL (the stream, e.g. http://127.0.0.1:6500/events/TOKEN)')
  if (a.positional.length > 1) throw new UsageError(`unexpected argument: ${a.positional[1]}`)
  const publishArg = a.last('publish')
  if (publishArg === undefined) {
    for (const name of ['publish-method', 'publish-header', 'body', 'window', 'rate', 'events']) {
      if (a.has(name)) throw new UsageError(`--${name} needs --publish`)
    }
  }
  if (a.has('window') && a.has('rate')) throw new UsageError('--window and --rate exclude each other')
  const workersArg = a.last('workers')
  const streams = a.wholeNumber('streams', 1) ?? DEFAULT_STREAMS
  let workers: number | 'auto' = 'auto'
  if (workersArg !== undefined && workersArg !== 'auto') {
    workers = a.wholeNumber('workers', 1)!
    if (workers > streams) throw new UsageError(`--workers ${workers} is more than --streams ${streams}`)
  }
  const body = a.last('body') ?? DEFAULT_BODY
  const problem = new BodyTemplate(body).problem()
  if (problem !== null) throw new UsageError(`--body ${problem}`)
  const method = a.last('publish-method') ?? DEFAULT_METHOD
  if (!/^[A-Z]+$/i.test(method)) throw new UsageError(`--publish-method must be a method name, not '${method}'`)
  const publish = publishArg === undefined ? null : urlValue(publishArg, '--publish')
  return {
    url: urlValue(a.positional[0]!),
    streams,
    fields: withDefaults([['Accept', 'text/event-stream'], ['Cache-Control', 'no-cache']], headerList(a, 'header')),
    connectRate: a.positiveNumber('connect-rate', false) ?? DEFAULT_CONNECT_RATE,
    workers,
    durationS: a.positiveNumber('duration', true) ?? DEFAULT_DURATION_S,
    durationGiven: a.has('duration'),
    warmupS: a.positiveNumber('warmup', true) ?? DEFAULT_WARMUP_S,
    publish,
    method: method.toUpperCase(),
    publishFields: headerList(a, 'publish-header'),
    body,
    window: a.wholeNumber('window', 1) ?? DEFAULT_WINDOW,
    rate: a.positiveNumber('rate', false) ?? null,
    events: a.wholeNumber('events', 1) ?? null,
    json: a.has('json'),
    out: a.last('out') ?? null,
  }
}
