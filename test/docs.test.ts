// The manual's links (README.md, the front page, and the pages of docs/): every relative link or
// image names a file of the repository, and every #anchor a heading of its page, spelled as
// GitHub makes them (lower case, punctuation dropped, spaces to hyphens). Sections moved between
// pages keep their links working.

import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import * as path from 'node:path'
import { ROOT } from './process.js'

const PAGES = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]

/** GitHub's anchor for a heading. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}_\- ]/gu, '')
    .replaceAll(' ', '-')
}

/** The anchors of a Markdown page: its headings outside fenced blocks. */
function anchors(file: string): Set<string> {
  const out = new Set<string>()
  let fenced = false
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('```')) fenced = !fenced
    const m = fenced ? null : /^#{1,6} (.*)$/.exec(line)
    if (m) out.add(slug(m[1]!))
  }
  return out
}

t.test('every relative link of README.md and docs/*.md names a file that exists, and its anchor a heading', async (t) => {
  t.ok(PAGES.length >= 6, `the pages: ${PAGES.join(', ')}`)
  const broken: string[] = []
  let links = 0
  for (const page of PAGES) {
    const file = path.join(ROOT, page)
    for (const m of readFileSync(file, 'utf8').matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!
      if (/^(https?:|mailto:)/.test(target)) continue
      links++
      const [rel, anchor] = target.split('#') as [string, string | undefined]
      const to = rel === '' ? file : path.resolve(path.dirname(file), rel)
      if (!existsSync(to)) broken.push(`${page}: ${target} (no such file)`)
      else if (anchor !== undefined && to.endsWith('.md') && !anchors(to).has(anchor)) broken.push(`${page}: ${target} (no such heading)`)
    }
  }
  t.ok(links > 50, `${links} relative links checked`)
  t.same(broken, [], 'no broken link')
})

t.test('the README stays a front page: at most 250 lines, and a table is never cut by a line that is not a row', async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n')
  t.ok(readme.length <= 250, `${readme.length} lines`)
  for (const page of PAGES) {
    const lines = readFileSync(path.join(ROOT, page), 'utf8').split('\n')
    // A row after a table has ended (a blank or other line between rows) renders as text.
    const cut: number[] = []
    for (let i = 2; i < lines.length; i++) {
      if (!lines[i]!.startsWith('| ')) continue
      let k = i - 1
      while (k >= 0 && lines[k] === '') k--
      if (k < i - 1 && k >= 0 && lines[k]!.startsWith('|')) cut.push(i + 1)
      else if (k === i - 1 && !lines[k]!.startsWith('|') && !/^\|?[-:| ]+$/.test(lines[i + 1] ?? '')) cut.push(i + 1)
    }
    t.same(cut, [], `${page}: no table row stands apart from its table`)
  }
})
