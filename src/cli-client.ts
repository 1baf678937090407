// `rawsse listen` and `rawsse publish`: the client side of the command line. cli.ts hands over
// argv when its first word is one of these. Exit codes: 0 done, 1 the server or the network said
// no, 2 a bad command line (one line on standard error, like the server's flags).

import { BodyDecoder, bodyFraming, headerProblem, parseResponseHead, requestHead, ResponseError } from './http-response.js'
import { dial, httpUrl, SseClient, type SseClientError, type SseEvent } from './sse-client.js'

/** `publish` gives up on a server that does not answer within this long. */
const PUBLISH_TIMEOUT_MS = 30_000
/** The environment variable `publish` reads the token from when there is no --token (keeps it out of `ps`). */
const TOKEN_ENV = 'RAWSSE_TOKEN'

const LISTEN_HELP = `Usage: rawsse listen URL [--last-event-id ID] [--json]

Print each event of a stream on one line, and reconnect as EventSource does (after the
server's retry:, sending Last-Event-ID). URL is the stream, e.g.
http://127.0.0.1:6500/events/TOKEN?channel=news

  --last-event-id ID   resume after this event (sent as Last-Event-ID)
  --json               one JSON object per line: {"event":"...","id":"..."|null,"data":"..."}
  --help               print this help and exit

Without --json a line is EVENT, " #ID" when there is an id, ": " and the data; line breaks and
control characters are shown as \\n, \\r, \\xHH. Notices go to standard error.
Exit: 0 on Ctrl-C or a 204 from the server, 1 when the server refuses the stream, 2 bad usage.
`

const PUBLISH_HELP = `Usage: rawsse publish URL --token T [--channel C] [--event E] [--id I]
                      [--user U] [--role R] [--client ID] [DATA | -]

POST one event to a rawsse server and print its JSON answer. URL is the server's base
(http://127.0.0.1:6500) or its /publish URL. DATA is the event's data; - reads it from standard
input (one trailing line break removed); none publishes empty data. Put -- before DATA that
starts with a dash.

  --token T       a token with the publish role (default: $${TOKEN_ENV})
  --channel C     only streams of this channel
  --event E       event name (default: message)
  --id I          event id (default: assigned by the server)
  --user U        only this user's streams
  --role R        only streams of users with this role
  --client ID     only this stream
  --help          print this help and exit

Exit: 0 on a 2xx answer, 1 otherwise (the server's error on standard error), 2 bad usage.
`

/** A bad command line: one line on standard error, exit code 2. */
class UsageError extends Error {}

interface Args {
  positional: string[]
  values: Map<string, string>
  switches: Set<string>
}

/** `--name value`, `--name=value`, switches, positionals; `--` ends the flags. Repeated: the last wins. */
function parseArgs(argv: readonly string[], valued: readonly string[], switches: readonly string[]): Args {
  const out: Args = { positional: [], values: new Map(), switches: new Set() }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--') {
      out.positional.push(...argv.slice(i + 1))
      break
    }
    if (arg === '-' || !arg.startsWith('-')) {
      out.positional.push(arg)
      continue
    }
    if (!arg.startsWith('--')) throw new UsageError(`unknown flag: ${arg} (see --help; put -- before data starting with -)`)
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq === -1 ? undefined : eq)
    if (switches.includes(name)) {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`)
      out.switches.add(name)
    } else if (valued.includes(name)) {
      let value: string
      if (eq !== -1) {
        value = arg.slice(eq + 1)
      } else {
        // `--event --json` is a forgotten value, as in the server's flags.
        if (i + 1 >= argv.length || argv[i + 1]!.startsWith('--')) throw new UsageError(`--${name} needs a value`)
        value = argv[++i]!
      }
      out.values.set(name, value)
    } else {
      throw new UsageError(`unknown flag: --${name} (see --help)`)
    }
  }
  return out
}

function urlArg(arg: string | undefined, what: string): URL {
  if (arg === undefined) throw new UsageError(`missing URL (${what})`)
  try {
    return httpUrl(arg)
  } catch (err) {
    throw new UsageError(`${arg}: ${err instanceof TypeError && err.message.startsWith('unsupported') ? err.message : 'not a valid URL'}`)
  }
}

/** Runs `rawsse listen|publish ...` (argv[0] is the subcommand); resolves to the exit code. */
export async function runClientCommand(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv
  try {
    return command === 'listen' ? await listen(rest) : await publish(rest)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`rawsse ${command}: ${err.message}\n`)
      return 2
    }
    throw err
  }
}

// ---------------------------------------------------------------- listen

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

async function listen(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, ['last-event-id'], ['json', 'help'])
  if (args.switches.has('help')) {
    process.stdout.write(LISTEN_HELP)
    return 0
  }
  if (args.positional.length > 1) throw new UsageError(`unexpected argument: ${args.positional[1]}`)
  const url = urlArg(args.positional[0], 'the stream URL, e.g. http://127.0.0.1:6500/events/TOKEN')
  const lastEventId = args.values.get('last-event-id')
  if (lastEventId !== undefined && /[\r\n\0]/.test(lastEventId)) throw new UsageError('--last-event-id must not contain CR, LF or NUL')
  const json = args.switches.has('json')

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
    client.on('open', () => notice(`connected to ${client.url}`))
    client.on('message', (ev) => process.stdout.write(formatEvent(ev, json) + '\n'))
    client.on('error', (err: SseClientError) => {
      if (err.retryInMs === null) {
        code = 1
        notice(err.message)
      } else {
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

// ---------------------------------------------------------------- publish

/** The server's base, or its /publish URL, as the /publish URL (a base with a path prefix keeps it). */
export function publishUrl(base: URL): URL {
  const u = new URL(base.href)
  if (u.pathname.endsWith('/publish/')) u.pathname = u.pathname.slice(0, -1)
  else if (!u.pathname.endsWith('/publish')) u.pathname = u.pathname.replace(/\/?$/, '/publish')
  return u
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

async function publish(argv: readonly string[]): Promise<number> {
  const targets = ['channel', 'event', 'id', 'user', 'role', 'client']
  const args = parseArgs(argv, ['token', ...targets], ['help'])
  if (args.switches.has('help')) {
    process.stdout.write(PUBLISH_HELP)
    return 0
  }
  if (args.positional.length > 2) throw new UsageError(`unexpected argument: ${args.positional[2]} (quote data with spaces)`)
  const url = publishUrl(urlArg(args.positional[0], 'the server, e.g. http://127.0.0.1:6500'))
  const token = args.values.get('token') ?? process.env[TOKEN_ENV]
  if (token === undefined || token === '') throw new UsageError(`--token is required (or set ${TOKEN_ENV})`)
  if (headerProblem('Authorization', token) !== null) throw new UsageError('--token must not contain CR, LF or NUL')
  for (const name of targets) {
    const v = args.values.get(name)
    if (v !== undefined) url.searchParams.set(name, v)
  }

  const dataArg = args.positional[1]
  let body: Buffer
  if (dataArg === '-') {
    // Like $(cat): `echo hi | rawsse publish ... -` publishes "hi", not "hi\n". Only one line
    // break goes, so data meant to end with an empty line can still say so.
    body = await readStdin()
    const n = body.length
    if (n > 0 && body[n - 1] === 10) body = body.subarray(0, n > 1 && body[n - 2] === 13 ? n - 2 : n - 1)
  } else {
    body = Buffer.from(dataArg ?? '', 'utf8')
  }

  let res: { status: number; reason: string; body: Buffer }
  try {
    res = await request(url, 'POST', [
      ['Authorization', `Bearer ${token}`],
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['Content-Length', String(body.length)],
      // One request per connection: the server closes after its answer and we read to the end.
      ['Connection', 'close'],
    ], body)
  } catch (err) {
    process.stderr.write(`rawsse publish: ${url.origin}: ${(err as Error).message}\n`)
    return 1
  }
  const text = res.body.toString('utf8')
  if (res.status >= 200 && res.status < 300) {
    process.stdout.write(text.endsWith('\n') ? text : text + '\n')
    return 0
  }
  process.stderr.write(`rawsse publish: HTTP ${res.status}${res.reason === '' ? '' : ' ' + res.reason}: ${text.trim()}\n`)
  return 1
}

/** One HTTP/1.1 request on its own connection; resolves to the status and the whole body. */
function request(
  url: URL,
  method: string,
  fields: ReadonlyArray<readonly [string, string]>,
  body: Buffer,
): Promise<{ status: number; reason: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = dial(url)
    let head: Buffer | null = Buffer.alloc(0)
    let status = 0
    let reason = ''
    let decoder: BodyDecoder | null = null
    const parts: Buffer[] = []
    let settled = false
    const settle = (err: Error | null): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      if (err !== null) reject(err)
      else resolve({ status, reason, body: Buffer.concat(parts) })
    }
    const timer = setTimeout(() => settle(new Error(`no answer within ${PUBLISH_TIMEOUT_MS / 1000} s`)), PUBLISH_TIMEOUT_MS)
    socket.on('data', (d: Buffer) => {
      try {
        let buf = d
        let pos = 0
        if (head !== null) {
          buf = head.length === 0 ? d : Buffer.concat([head, d])
          for (;;) {
            const parsed = parseResponseHead(buf.subarray(pos))
            if (parsed === null) {
              head = buf.subarray(pos)
              return
            }
            pos += parsed.length
            if (parsed.head.status < 200) continue // 100 Continue and other interim answers
            head = null
            status = parsed.head.status
            reason = parsed.head.reason
            decoder = new BodyDecoder(bodyFraming(parsed.head))
            break
          }
        }
        decoder!.feed(buf, pos, buf.length, (b, s, e) => parts.push(Buffer.from(b.subarray(s, e))))
        if (decoder!.done) settle(null)
      } catch (err) {
        if (!(err instanceof ResponseError)) throw err
        settle(err)
      }
    })
    socket.on('error', (err) => settle(err))
    socket.on('close', () => {
      if (decoder === null) settle(new Error('connection closed before an answer'))
      else if (decoder.end()) settle(null)
      else settle(new Error('connection closed in the middle of the answer'))
    })
    socket.write(Buffer.concat([requestHead(method, url, fields), body]))
  })
}
