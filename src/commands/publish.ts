// `rawsse publish URL`: POST one event to a rawsse server and print its JSON answer. Exit
// codes: 0 a 2xx answer, 1 the server or the network said no, 2 a bad command line.

import { headerProblem } from '../client/http.js'
import { request, type Answer } from '../client/request.js'
import { parseArgs, UsageError, urlValue, type FlagSpec } from './args.js'

/** `publish` gives up on a server that does not answer within this long. */
const PUBLISH_TIMEOUT_MS = 30_000
/** The environment variable `publish` reads the token from when there is no --token (keeps it out of `ps`). */
const TOKEN_ENV = 'RAWSSE_TOKEN'
/** The query parameters of POST /publish that flags of the same name set. */
const TARGETS = ['channel', 'event', 'id', 'user', 'role', 'client'] as const

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
  -h, --help      print this help and exit

Exit: 0 on a 2xx answer, 1 otherwise (the server's error on standard error), 2 bad usage.
`

const PUBLISH_FLAGS: readonly FlagSpec[] = [
  { name: 'token', arg: 'T' },
  { name: 'channel', arg: 'C' },
  { name: 'event', arg: 'E' },
  { name: 'id', arg: 'I' },
  { name: 'user', arg: 'U' },
  { name: 'role', arg: 'R' },
  { name: 'client', arg: 'ID' },
  { name: 'help', arg: '', short: 'h' },
]

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

/** `rawsse publish ...` (argv without `publish`); resolves to the exit code. */
export async function publish(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv, PUBLISH_FLAGS, true)
  if (args.has('help')) {
    process.stdout.write(PUBLISH_HELP)
    return 0
  }
  if (args.positional.length > 2) throw new UsageError(`unexpected argument: ${args.positional[2]} (quote data with spaces)`)
  const first = args.positional[0]
  if (first === undefined) throw new UsageError('missing URL (the server, e.g. http://127.0.0.1:6500)')
  const url = publishUrl(urlValue(first))
  const token = args.last('token') ?? process.env[TOKEN_ENV]
  if (token === undefined || token === '') throw new UsageError(`--token is required (or set ${TOKEN_ENV})`)
  if (headerProblem('Authorization', token) !== null) throw new UsageError('--token must not contain CR, LF or NUL')
  for (const name of TARGETS) {
    const v = args.last(name)
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

  let res: Answer
  try {
    res = await request(url, 'POST', [
      ['Authorization', `Bearer ${token}`],
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['Content-Length', String(body.length)],
      // One request per connection: the server closes after its answer and we read to the end.
      ['Connection', 'close'],
    ], body, PUBLISH_TIMEOUT_MS)
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
