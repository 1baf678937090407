// What some test files need from the machine (Chromium, nginx, redis-server), and the one rule
// for when it is missing: say plainly what was skipped and why, and under CI=true fail, since
// .ci/run installs everything the tests need.

import { existsSync } from 'node:fs'
import type { Browser } from 'playwright-core'
import type { Test } from 'tap'

/** CI=true (GitHub Actions, GitLab and most others); CI=1 on a few. */
export const UNDER_CI = process.env.CI !== undefined && !['', '0', 'false'].includes(process.env.CI)

/**
 * True when the file's tests can run (`missing` is null). Otherwise one comment and one line on
 * standard error (tap's terminal reporter hides comments of passing files but shows their
 * standard error), a pass that says so, or under CI=true a failure.
 */
export function canRun(t: Test, file: string, what: string, missing: string | null): boolean {
  if (missing === null) return true
  if (UNDER_CI) {
    t.fail(`${what} cannot run under CI=true: ${missing}`)
  } else {
    t.comment(`${what} skipped: ${missing}`)
    process.stderr.write(`${file}: ${what} skipped: ${missing}\n`)
    t.pass(`${what} not run: ${missing}; under CI=true this is a failure`)
  }
  return false
}

export const CHROMIUM = '/usr/bin/chromium'

/** Why the browser tests cannot run here, or null when they can. */
export async function browserMissing(): Promise<string | null> {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is not installed (Debian: apt-get install chromium)`
  try {
    await import('playwright-core')
  } catch (err) {
    return `playwright-core cannot be loaded (${(err as Error).message}); run npm install`
  }
  return null
}

/** Debian's Chromium, headless, with a fresh profile (launch() makes one itself). */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core')
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
}
