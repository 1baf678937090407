// The browser client's limits and timings, each with its unit and its reason. Nothing else.

/** The longest wait between two attempts while a server refuses or cannot be reached (ms). */
export const MAX_BACKOFF_MS = 30_000

/**
 * How long a new leader waits for the other tabs to say where they are before it opens the
 * shared streams (ms). BroadcastChannel answers in about a millisecond; a busy tab may take
 * longer, and one that answers later joins as a late tab does, so this only saves a reconnect.
 */
export const COLLECT_MS = 150

/** How often a leader asks the lock manager which tabs are still alive (ms): a crashed tab never says goodbye. */
export const PRUNE_MS = 2_000

/**
 * Events every shared tab remembers, in the order the leader relayed them: what a new leader
 * resumes from, and what a late or frozen tab is caught up from without a reconnect.
 */
export const RING_EVENTS = 512
/** ... and at most this much of their data (UTF-16 code units, so 8 MiB): big events keep fewer. */
export const RING_CHARS = 4 * 1024 * 1024

/** Ids a tab remembers having dispatched, so that an event replayed across a handoff is dropped. */
export const SEEN_IDS = 1024
