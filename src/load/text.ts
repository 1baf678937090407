// How `rawsse bench` quotes what a server said: on one line, at most MAX_QUOTE_CHARS, control
// characters and runs of white space as one space. A 404 page of HTML must not fill the terminal.

import { MAX_QUOTE_CHARS } from './limits.js'

/** `text` as one line of at most `max` characters, ending in `…` when cut. */
export function oneLine(text: string, max = MAX_QUOTE_CHARS): string {
  const flat = text.replace(/[\s\u0000-\u001f\u007f]+/g, ' ').trim()
  return flat.length <= max ? flat : `${flat.slice(0, max - 1)}…`
}

/** ` "TEXT"` for a non-empty answer body, else nothing: appended to an HTTP status. */
export function quoted(body: string): string {
  const line = oneLine(body)
  return line === '' ? '' : ` "${line}"`
}
