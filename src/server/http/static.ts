// Static files under one root folder (`--public`): Content-Type, Content-Length, ETag and 304
// (RFC 9110 §8.8.3, §13.1.2). Nothing outside the root is ever served: `..` in any spelling,
// encoded slashes and backslashes, NUL, and symlinks that point out are all a plain 404. Nor is
// anything whose path has a segment starting with `.` (`/.env`, `/.git/config`), asked for or
// reached through a symlink: such files are a deploy's secrets, never its pages.

import { close, open, promises as fs, read } from 'node:fs'
import type * as net from 'node:net'
import * as path from 'node:path'
import { closeSocket, type ResetCount } from './close.js'
import { HttpError } from './errors.js'
import { FILE_SLICE_BYTES, STATIC_CACHE_MAX_FILE_BYTES } from '../limits.js'
import type { Reply } from './response.js'

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.xml': 'application/xml; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
}

/** A file too big to keep in memory: the connection sends `reply`'s head, then the file a slice at a time (sendFile). */
export interface FileToStream {
  reply: Reply
  file: string
  size: number
}

interface Cached {
  mtimeMs: number
  size: number
  etag: string
  body: Buffer
}

export class StaticFiles {
  private realRoot: Promise<string> | null = null
  // Small files by real path, checked against a fresh stat on every request.
  private readonly cache = new Map<string, Cached>()

  constructor(private readonly root: string) {}

  /** GET or HEAD of `urlPath` (still percent-encoded, no query). */
  async serve(urlPath: string, ifNoneMatch: string | undefined): Promise<Reply | FileToStream> {
    const rel = safeRelative(urlPath)
    if (rel === null) return notFound()
    this.realRoot ??= fs.realpath(this.root)
    const root = await this.realRoot

    let file = path.join(root, rel)
    let st = await statInside(root, file)
    if (st?.stat.isDirectory() === true) {
      file = path.join(st.real, 'index.html')
      st = await statInside(root, file)
    }
    // `/file.html/` names a folder that does not exist.
    if (st === null || !st.stat.isFile() || (urlPath.endsWith('/') && file === path.join(root, rel))) return notFound()

    const { real, stat } = st
    const etag = `W/"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`
    const headers = [
      ['ETag', etag],
      ['Cache-Control', 'no-cache'],
      ['X-Content-Type-Options', 'nosniff'],
    ] as const
    const contentType = TYPES[path.extname(real).toLowerCase()] ?? 'application/octet-stream'
    if (ifNoneMatch !== undefined && etagMatches(ifNoneMatch, etag)) return { status: 304, headers }

    if (stat.size > STATIC_CACHE_MAX_FILE_BYTES) {
      return { reply: { status: 200, headers, contentType, contentLength: stat.size }, file: real, size: stat.size }
    }
    let hit = this.cache.get(real)
    if (hit === undefined || hit.mtimeMs !== stat.mtimeMs || hit.size !== stat.size) {
      const body = await fs.readFile(real)
      hit = { mtimeMs: stat.mtimeMs, size: body.length, etag, body }
      this.cache.set(real, hit)
    }
    return { status: 200, headers, contentType, body: hit.body }
  }
}

function notFound(): Reply {
  return { status: 404, body: 'not found\n', contentType: 'text/plain; charset=utf-8' }
}

/**
 * The path relative to the root, or null when it could leave the root or is not a clean path.
 * Like Go's `http.Dir.Open`, we decode each segment and refuse rather than normalise: a segment
 * that decodes to `.`, `..` or any other dot-name, or holds `/`, `\` or NUL, is not served.
 */
function safeRelative(urlPath: string): string | null {
  const segments: string[] = []
  const raw = urlPath.split('/')
  for (let i = 1; i < raw.length; i++) {
    let seg: string
    try {
      seg = decodeURIComponent(raw[i]!)
    } catch {
      throw new HttpError(400, 'malformed percent-encoding in path')
    }
    if (seg === '' && i === raw.length - 1) break // a trailing slash: the folder's index.html
    if (seg === '' || seg.startsWith('.') || /[/\\\0]/.test(seg)) return null
    segments.push(seg)
  }
  return segments.join(path.sep)
}

/** stat of the real path, or null when it is missing or (through a symlink) outside the root. */
async function statInside(root: string, file: string): Promise<{ real: string; stat: import('node:fs').Stats } | null> {
  try {
    const real = await fs.realpath(file)
    if (real !== root && !real.startsWith(root + path.sep)) return null
    if (real.slice(root.length).split(path.sep).some((seg) => seg.startsWith('.'))) return null
    return { real, stat: await fs.stat(real) }
  } catch {
    return null
  }
}

/** If-None-Match uses the weak comparison (RFC 9110 §13.1.2): W/ prefixes are ignored. */
export function etagMatches(header: string, etag: string): boolean {
  const bare = etag.replace(/^W\//, '')
  return header
    .split(',')
    .map((t) => t.trim())
    .some((t) => t === '*' || t.replace(/^W\//, '') === bare)
}

/** What a file being sent counts on: the descriptors it holds, and the resets when it fails. */
export interface FileHost {
  filesOpen: number
  readonly resets: ResetCount
}

/** What the connection hears of a file being sent. */
export interface FileEvents {
  /** A slice is in the socket: the client has the send deadline to take it. */
  waiting(): void
  /** A slice is being read: the first, or the next once the socket took the last (the disk is not the client: no deadline). */
  reading(): void
  /** Every byte is with the kernel. */
  done(): void
}

/**
 * Send a file's bytes after its head, a slice at a time: the next slice is read only once the
 * socket has handed the last one to the kernel. So a client that reads nothing costs one slice
 * and a descriptor (a read stream piped in held its read-ahead chunk and the socket's queue
 * besides), and those bytes are the socket's writableLength, where the byte budget sees them.
 * One operation is in flight at a time (open, read or write), and each callback looks at the
 * socket: once it is closed, the file is closed and nothing more happens. So nothing waits on the
 * socket's events, and a keep-alive connection sending many files gains no listener per file.
 * A file that cannot be read to its end closes the connection: its head is sent, and no status
 * can say it now.
 */
export function sendFile(socket: net.Socket, file: string, size: number, host: FileHost, events: FileEvents): void {
  host.filesOpen++
  let fd = -1
  let sent = 0
  const finish = (): void => {
    if (fd !== -1) close(fd, ignore)
    fd = -1
    host.filesOpen--
  }
  const fail = (): void => {
    finish()
    closeSocket(socket, host.resets)
  }
  const readNext = (): void => {
    events.reading()
    const want = Math.min(size - sent, FILE_SLICE_BYTES)
    // A slice of its own each time, let go once the kernel has it: a download whose last slice the
    // kernel took holds no user-space bytes at all while it waits for its reader.
    const slice = Buffer.allocUnsafe(want)
    read(fd, slice, 0, want, sent, (err, n) => {
      if (socket.destroyed) return finish()
      if (err !== null || n === 0) return fail() // unreadable, or shorter than its stat said
      sent += n
      events.waiting()
      // The callback comes once the kernel has the slice (or the socket is closed).
      socket.write(n === slice.length ? slice : slice.subarray(0, n), (werr) => {
        if ((werr !== null && werr !== undefined) || socket.destroyed) return finish()
        if (sent < size) return readNext()
        finish()
        events.done()
      })
    })
  }
  open(file, 'r', (err, opened) => {
    if (err !== null) {
      host.filesOpen--
      return closeSocket(socket, host.resets)
    }
    fd = opened
    if (socket.destroyed) return finish()
    readNext()
  })
}

function ignore(): void {}
