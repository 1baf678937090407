// Every limit and default of the server wing, with its unit and what happens past it. The
// defaults both ends of the wire share (event name, retry, jitter) are in ../wire.ts; this file
// imports nothing else, so any server file can read it and a reader finds every number here.

import { DEFAULT_CHANNEL } from '../wire.js'

// --- defaults of the CLI flags and library options (docs/production.md "Flags") ---
export const DEFAULT_PORT = 6500
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_HEARTBEAT_MS = 15_000 // comment line `:\n\n` to every stream; 0 = off
export const DEFAULT_HISTORY = 1_000 // events kept for Last-Event-ID replay
export const DEFAULT_HISTORY_BYTES = 64 * 1024 * 1024 // and at most this many bytes of them
export const DEFAULT_MAX_EVENT_BYTES = 1024 * 1024 // one event, encoded; a bigger publish: 413
export const DEFAULT_MAX_CLIENTS = 10_000 // open streams; one more gets 503
export const DEFAULT_MAX_BUFFER_BYTES = 1024 * 1024 // unsent bytes before a stream is dropped as slow
export const DEFAULT_MAX_UNSENT_BYTES = 256 * 1024 * 1024 // unsent bytes of all answers and streams together; past it, the oldest answers are reset, then the streams holding the most dropped
export const DEFAULT_TICK_MS = 1_000 // `time` event period; 0 = off
export const DEFAULT_CORS_ORIGIN = '*'
export const DEFAULT_BACKLOG = 4096 // listen queue for connections not yet accepted; the kernel caps it at net.core.somaxconn
export const FD_RESERVE = 256 // descriptors kept free of connections (log, DNS, files being opened): the budget is the open-file limit less this

// --- request limits: each one answers with the status beside it ---
export const MAX_TARGET_BYTES = 8 * 1024 // request target longer than this: 414
export const MAX_HEAD_BYTES = 16 * 1024 // request line + headers longer than this: 431
export const MAX_HEADER_COUNT = 100 // more header fields than this: 431 (a header flood)
export const MAX_BODY_BYTES = 1024 * 1024 // request body longer than this: 413
export const MAX_REQUEST_BYTES_IN_FLIGHT = 64 * 1024 * 1024 // unparsed request bytes and bodies of all connections together; past it: 503
export const MAX_REQUEST_CHUNK_LINE_BYTES = 1024 // chunk-size line (with extensions) or trailer line of a request body: 400 past this
export const HEAD_TIMEOUT_MS = 10_000 // head (and then body) not complete this long after its first byte was awaited: 408
export const KEEP_ALIVE_IDLE_MS = 5_000 // idle keep-alive connection with no new request: closed silently
export const LINGER_MS = 2_000 // after an error reply, how long we keep reading (and discarding) before reset
export const AUTHENTICATE_TIMEOUT_MS = 2_000 // an `authenticate` hook's promise unsettled this long: 503 with Retry-After, and the connection closes (what --auth-url will allow an application too)
export const SEND_TIMEOUT_MS = 30_000 // an answer (or a file) the client takes nothing of for this long: the connection is closed

// --- stream limits ---
export const MAX_CHANNELS_PER_CHANGE = 64 // live channels: names in one change's `add` and `remove` together; more: 400
export const MAX_CHANGE_BODY_BYTES = 16 * 1024 // live channels: a change's JSON body longer than this: 413
export const MAX_CHANNELS_LEFT = 16 // live channels: channels a stream left (or came to) whose absences in history it remembers, so a `since` replay gives what it missed and skips what it had; past it the oldest record is forgotten, and a `since` before it gets `reset` (16, not 32: a 10 000-stream page-flip storm held 1.5 KiB a stream more than before, not 3)
export const MAX_ABSENCES_PER_CHANNEL = 8 // live channels: absences from one channel a stream remembers; past it the oldest is forgotten, and a `since` before its end gets `reset`
export const STREAM_KEY_BYTES = 16 // live channels: a stream's key, 128 random bits (22 base64url characters), in `ready.key`
export const MAX_NAME_BYTES = 256 // channel, event name, user or role longer than this: 400
export const MAX_ID_BYTES = 256 // event id longer than this: 400
export const STALL_TIMEOUT_MS = 30_000 // unsent bytes that have not shrunk this long: the stream is dropped
export const MAX_LOG_PENDING_BYTES = 4 * 1024 * 1024 // --log lines waiting for standard error's reader; past it lines are dropped and counted
export const MAX_PUBLISHES_IN_FLIGHT = 64 // pipelined publishes of one connection awaiting a cluster's answer: past it, the connection is not read
export const MAX_WORKERS = 256 // --workers: far past any machine's cores, short of a fork bomb by typo
export const SHUTDOWN_GRACE_MS = 5_000 // stop(): sockets still open after this are destroyed
export const CLUSTER_EXIT_MARGIN_MS = 500 // --workers: the primary ends stragglers this long before the 5 s are up
export const RESPAWN_DELAY_MS = 1_000 // --workers, once up: a replacement that died before it listened is forked again after this, doubled each time in a row
export const MAX_RESPAWN_DELAY_MS = 30_000 // ... up to this: a worker that can never start costs a fork every 30 s, never a loop
export const HOUSEKEEPING_MS = 1_000 // one shared sweep, never a timer per stream: the stall check, the unsent-bytes budget and the backlog's trim (heartbeats have their own timer, --heartbeat)
export const WRITE_SLICE_BYTES = 64 * 1024 // a replay, or what a blocked stream is owed, is written in slices of about this size (one writev of shared Buffers), the next one when the socket drains
export const STREAM_OPENS_PER_TURN = 100 // streams opened in one event-loop turn (each 50–100 µs with its ready and replay); the rest open in the next turns, in order
export const FANOUT_SLICE_WRITES = 500 // writes to streams per event-loop turn, shared by the fan-outs under way (an event to one client is written at once, outside it), then accepts, answers and /healthz run before the next slice (measured in the 10 000-stream storm: 1 000 writes took p50 5.6 ms, p99 17 ms; 500 keep p99 under ~10 ms)
export const DRAIN_BYTES_PER_TURN = 4 * 1024 * 1024 // what draining streams may write in one event-loop turn; the rest write in later turns
export const DROP_SLICE = 500 // streams dropped (slow or stalled) per event-loop turn when many go at once: each close costs tens of µs
export const MAX_BACKLOG_BYTES = 64 * 1024 * 1024 // events kept for blocked streams; one owed older events than this holds is dropped as slow
export const MAX_HISTORY_MARKS = 10_000 // ids of events sent to one client whose place history remembers (the id and a number, not the event); past it the oldest is forgotten, and its Last-Event-ID gets `reset`

// --- a cluster on Redis (--redis) ---
export const DEFAULT_REDIS_PREFIX = 'rawsse'
export const REDIS_READ_COUNT = 1_000 // stream entries per read (XREAD, XRANGE): a node catching up delivers them in slices this big
export const REDIS_BLOCK_MS = 2_000 // a blocking read returns empty after this: the loop looks at its flags at least this often
export const REDIS_RETRY_MS = 100 // the read's pause after a failure, before it tries again (the client itself reconnects with backoff)
export const REDIS_BACKOFF_FIRST_MS = 50 // reconnection: 50 ms, doubling, jittered ×0.5–1…
export const REDIS_BACKOFF_MAX_MS = 1_000 // …up to this: a Redis that comes back is found within a second
export const REDIS_RETRY_AFTER_S = 1 // Retry-After of `503 bus unavailable`
export const REDIS_ACK_WAIT_MS = 2_000 // a publish Redis acknowledged is answered when this node has it, or after this long
export const REDIS_ANSWER_MS = 2_000 // Redis has not answered a command this long (stopped, swapping, cut off without a reset): a publish gets 503 and is never published, the bus is down (/healthz, /stats), a block of stream ids is asked for again
export const REDIS_APPEND_MARGIN_MS = 500 // the append script refuses an event Redis runs later than this before that 503: time for its acknowledgement to come back
export const REDIS_PRESENCE_MS = 500 // each node's snapshot (streams, figures) is written and the others' read this often
export const REDIS_PRESENCE_TTL_MS = 2_000 // a node whose snapshot is this old is gone (killed): its streams count no more (a node that stops says so at once)
export const REDIS_ASK_TIMEOUT_MS = 2_000 // close a stream / close all: answers later than this are not waited for
export const REDIS_STREAM_SLACK = 10_000 // entries the stream keeps beyond --history kept events, for events to one client
export const REDIS_BURST_MS = 1 // a blocked read answered sooner than this means events come back to back: they are read until Redis has no more, then delivered together
export const REDIS_TRIM_EVERY = 64 // the stream is trimmed at every 64th place, not at each: Redis then holds up to 64 kept events more than --history

// --- stream ids in a cluster ---
// Handed out in blocks (Redis to a node, a primary to a worker), so that opening a stream never
// waits for another process; a worker asks for its next block at half of this one.
// RAWSSE_TEST_CLIENT_ID_BLOCK is for tests only, not a setting: a smaller block, so that a test
// spends blocks with a few streams.
const testIdBlock = Number(process.env.RAWSSE_TEST_CLIENT_ID_BLOCK)
export const CLIENT_ID_BLOCK = Number.isSafeInteger(testIdBlock) && testIdBlock >= 2 ? testIdBlock : 1 << 16
export const ID_BLOCK_RETRY_MS = 1_000 // a block Redis did not give (away, or not answering) is asked for again this often, until it does

// --- static files ---
export const STATIC_CACHE_MAX_FILE_BYTES = 1024 * 1024 // files up to this size are kept in memory, bigger ones streamed
export const FILE_SLICE_BYTES = 16 * 1024 // a streamed file is read and written a slice of this size at a time, the next one once the socket has taken the last: what a download that reads nothing holds (64 KiB held 416 MiB for ~6 000 such downloads; the kernel holds ~100 KiB of each anyway)

// --- stream constants ---
// The default channel and the most a stream may have: both wings need them (../wire.ts).
export { DEFAULT_CHANNEL, MAX_CHANNELS_PER_STREAM } from '../wire.js'
/** The channel list of a stream that named none (frozen: every such stream shares it). */
export const DEFAULT_CHANNELS: readonly string[] = Object.freeze([DEFAULT_CHANNEL])

// --- JWT and tickets (CONTRACT "Tokens an application signs", "Tickets") ---
export const JWT_LEEWAY_MS = 30_000 // `exp` and `nbf` are checked with this much slack for clocks that disagree
export const MAX_JWT_BYTES = MAX_HEAD_BYTES // a token longer than a whole request head can have come from no request: refused before any work
export const MAX_JWT_JSON_DEPTH = 32 // nesting of a JWT's header or claims; rawsse reads 3 levels (`rawsse.channels[i]`), deeper is refused before JSON.parse
export const MIN_JWT_SECRET_BYTES = 32 // an HS256/384/512 secret shorter than this is refused at start (RFC 7518 §3.2: at least the hash size)
export const MIN_JWT_RSA_BITS = 2048 // an RSA key smaller than this is refused at start (RFC 7518 §3.3)
export const MAX_TOKEN_GRANTS = 256 // entries of a token's or ticket's `roles`, and of its `channels`; more: refused
export const JWT_CACHE_ENTRIES = 10_000 // verified tokens remembered, so that a token presented again costs a Map lookup, not a signature check…
export const JWT_CACHE_BYTES = 8 * 1024 * 1024 // …and at most this many bytes of them; the least recently used go first
export const TICKET_RANDOM_BYTES = 24 // 192 bits, 32 base64url characters
export const TICKET_DEFAULT_TTL_S = 30 // a ticket asked for with no `ttlSeconds`
export const TICKET_MAX_TTL_S = 300 // `ttlSeconds` over this: 400
export const MAX_LIVE_TICKETS = 100_000 // tickets issued and neither spent nor expired; one more: 503 with Retry-After
export const TICKET_SWEEP_MS = 1_000 // expired tickets are swept at most this often (and whenever the store is full)
export const MAX_TICKET_BODY_BYTES = 16 * 1024 // a POST /tickets body longer than this: 413 (what it may hold is a few hundred bytes of names)
export const EXPIRING_BEFORE_MS = 60_000 // a stream's `expiring` comes this long before its token's `exp`, or at half the life it has left when that is shorter
export const EXPIRY_SLOT_MS = 100 // expiry deadlines are kept per slot of this length, one timer for the soonest slot: `expiring` and `expired` come at most this late
export const EXPIRY_HORIZON_MS = 366 * 24 * 3600 * 1000 // an `exp` further away than this is taken as none: no stream lives that long, and it keeps Dates and timers in range (an `exp` of 1e300)
export const EXPIRY_TIMER_MAX_MS = 3600 * 1000 // the expiry timer is armed at most this far ahead (setTimeout's limit is ~24.8 days), then again

// --- the application in the loop: --auth-url and --webhook (CONTRACT "The server asks and tells the application") ---
export const AUTH_URL_TIMEOUT_MS = AUTHENTICATE_TIMEOUT_MS // the application's whole answer (head and body) not in within this: 503 with Retry-After
export const AUTH_URL_MAX_ANSWER_BYTES = 64 * 1024 // a longer answer body: 503 and a log line, never buffered whole
export const AUTH_URL_CACHE_ENTRIES = 10_000 // `200`s remembered (by their credential's digest, for their max-age); past it the least recently used go first
export const AUTH_URL_MAX_AGE_S = 24 * 3600 // a longer `max-age` is remembered this long
export const AUTH_URL_MAX_ASKING = 1_024 // different credentials asked at once; one more: 503 at once (the same credential waits for the question under way)
export const AUTH_URL_SWEEP_MS = 1_000 // remembered answers past their max-age are forgotten at least this often (and never used past it)
export const AUTH_URL_LOG_EVERY_MS = 1_000 // the application failing: at most one log line this often, with the count of those not written
export const APP_MAX_SOCKETS = 32 // connections to the --auth-url application (keep-alive), and as many to the webhook receiver: a storm waits in line for them
export const DEFAULT_WEBHOOK_GRACE_MS = 5_000 // --webhook-grace: a change undone within this (a reconnection) is not told
export const WEBHOOK_TIMEOUT_MS = 10_000 // a receiver that has not answered (head and body) within this: no answer, tried again later
export const WEBHOOK_FIRST_RETRY_MS = 1_000 // a webhook not taken is tried again after 1 s, doubling…
export const WEBHOOK_MAX_RETRY_MS = 5 * 60_000 // …up to 5 min between tries…
export const WEBHOOK_GIVE_UP_MS = 24 * 3600_000 // …and given up 24 h after it was told (counted in `failed`)
export const WEBHOOK_MAX_OWED = 100_000 // webhooks waiting to be taken (about 0.5 KB each); one more is given up at once (counted in `failed`, logged)
export const WEBHOOK_SWEEP_MS = 250 // webhooks waiting for their next try are looked at this often
export const WEBHOOK_STOP_MS = 3_000 // stop(): what is owed is tried once more within this (inside the 5 s stop), then what is left is logged
export const WEBHOOK_CLAIM_BACKSTOP_MS = REDIS_PRESENCE_TTL_MS + REDIS_PRESENCE_MS // a Redis node claims a change another node should have told, this long after it would have (that node may have died)
export const WEBHOOK_CLAIM_RETRY_MS = 1_000 // a claim Redis did not answer is made again this often, while the change still stands
export const WEBHOOK_TOMBSTONE_MS = 60_000 // a told `offline`/`vacated` is remembered this long in Redis, so that a node a moment behind cannot tell an older `online` after it
