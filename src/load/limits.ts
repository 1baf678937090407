// Every default, limit and period of `rawsse bench`, with its unit and why.

// --- flag defaults ---
export const DEFAULT_STREAMS = 100
export const DEFAULT_CONNECT_RATE = 2000 // new connections per second
export const DEFAULT_DURATION_S = 10
export const DEFAULT_WARMUP_S = 1
export const DEFAULT_METHOD = 'POST'
export const DEFAULT_BODY = '{seq} {ts}'
export const DEFAULT_WINDOW = 1

// --- processes and file descriptors ---
/** File descriptors kept free in each process besides its streams (stdio, IPC, publisher, DNS, …). */
export const FD_MARGIN = 500
/**
 * Streams per source address. An unbound connect() may use all ~28 000 ephemeral ports of
 * 127.0.0.1, but bind() to port 0 on 127.0.0.2, … searches the even half first (Linux keeps the
 * odd half for connect()): past ~14 000 on one bound address each connection took a long search
 * (38 000 streams: 150 new ones per second at the end, 59 s in all).
 */
export const STREAMS_PER_SOURCE_ADDRESS = 14_000

// --- the run (coordinator) ---
/** After publishing stops, wait this long without a new delivery before counting what is missing as lost. */
export const DRAIN_QUIET_MS = 500
/** ... and never longer than this in all. */
export const DRAIN_MAX_MS = 5_000
/**
 * Closed loop: an event not yet received by every stream after this long leaves the window
 * anyway. A server that drops one event for one stream would otherwise stop the run (with W = 1
 * the next event is never sent); the drop still counts as lost at the end.
 */
export const WINDOW_TIMEOUT_MS = 1_000
/** While publishing, no new delivery for this long ends the run (the server stopped delivering). */
export const STALL_MS = 10_000
/** Rate mode: events due are sent this often, all due ones in one write. */
export const RATE_TICK_MS = 2
/** How often the end of the run is checked. */
export const CHECK_MS = 10
/** The progress line's period, and the --out file's. */
export const PROGRESS_LINE_MS = 1000
/** At the end, the groups' last latencies (--out) are waited for this long at most. */
export const SAMPLE_WAIT_MS = 500
/** The progress line fits a terminal this wide (the usual 80 columns) when its width is unknown. */
export const PROGRESS_LINE_COLUMNS = 80

// --- the publisher ---
/** A publish connection that closed is dialed again after this long. */
export const REDIAL_MS = 100
/** Request bytes are written into slabs of this size (one write per burst, no Buffer per request). */
export const SLAB_BYTES = 64 * 1024
/** How much of a failed answer's body is read (a publish's, or a stream's that is not SSE). */
export const MAX_ERROR_TEXT = 200
/** ... and how much of it is quoted, on one line. */
export const MAX_QUOTE_CHARS = 80
/** After a failed publish, the next is sent this long later: a refusing target is not hammered. */
export const PUBLISH_RETRY_MS = 100
/** Publishing that has failed for this long without one success stops the run (exit 1). */
export const PUBLISH_GIVE_UP_MS = 2_000

// --- the streams (each group) ---
/** From dialing to the response head; past it the stream counts as a connect error. */
export const CONNECT_TIMEOUT_MS = 15_000
/** Connections are dialed in small batches this often, to keep to --connect-rate. */
export const CONNECT_TICK_MS = 10
/**
 * A tick dials at most this many batches' worth when behind: when connect() itself is slow (the
 * kernel searching for a free port), catching up in one burst would starve the event loop, and
 * the requests of connections already open would reach the server after its head deadline.
 */
export const MAX_CATCH_UP_TICKS = 2
/** How often a group reports its delivery count (drain and the progress line read it). */
export const PROGRESS_MS = 50
/** The one read buffer of all plain-TCP streams of a group (node:net `onread`): reads are handled at once, so one suffices. */
export const READ_BUFFER_BYTES = 64 * 1024
/** The smallest ring of per-seq counters (window mode); larger windows get a power of two ≥ 4 W. */
export const MIN_RING = 1024
