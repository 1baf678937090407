// What this process may hold, as the kernel says: the open-file limit that bounds how many
// connections the server can keep and how many streams one load-tool process can open.

import { readFileSync } from 'node:fs'

/** When the limit cannot be read (not Linux): the common default. */
const FALLBACK_FD_LIMIT = 1024

/** This process's soft limit on open files (Linux: /proc/self/limits). */
export function openFileLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    if (m !== null) return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1])
  } catch {
    // not Linux
  }
  return FALLBACK_FD_LIMIT
}
