// Where the server command's settings come from besides its flags: a JSON `--config FILE` and
// `RAWSSE_*` environment variables, so that secrets need not sit in argv (where `ps` shows them).
// The command line wins over the file, the file over the environment.

import { readFileSync } from 'node:fs'
import { Args, UsageError, type FlagSpec } from './args.js'

/** The environment variable of a flag: `RAWSSE_` and its name in capitals, `-` as `_` (`--publish-token` → `RAWSSE_PUBLISH_TOKEN`). */
export function envName(flag: string): string {
  return 'RAWSSE_' + flag.toUpperCase().replace(/-/g, '_')
}

/**
 * The settings from all three places. A flag is taken whole from the most specific place that
 * has it: a repeatable flag given on the command line ignores the file's and the environment's
 * values (nothing is merged across places, so a test token in the environment cannot slip in).
 * `skip` names flags that only the command line may give (`help`, `version`, `config`).
 */
export function gatherSettings(cmdline: Args, flags: readonly FlagSpec[], env: NodeJS.ProcessEnv, skip: readonly string[]): Args {
  const file = cmdline.last('config') ?? env[envName('config')]
  const fromFile = file === undefined ? new Map<string, string[]>() : readConfig(file, flags, skip)
  const out = new Args()
  for (const f of flags) {
    const values = cmdline.has(f.name) ? cmdline.all(f.name) : fromFile.get(f.name) ?? (skip.includes(f.name) ? undefined : fromEnv(f, env))
    for (const v of values ?? []) out.add(f.name, v)
  }
  return out
}

/** A flag's values from its environment variable: a repeatable flag's values separated by commas; a switch is on for `1` or `true`. */
function fromEnv(f: FlagSpec, env: NodeJS.ProcessEnv): string[] | undefined {
  const name = envName(f.name)
  const v = env[name]
  if (v === undefined) return undefined
  if (f.arg === '') {
    if (v === '1' || v === 'true') return ['']
    if (v === '0' || v === 'false' || v === '') return undefined
    throw new UsageError(`${name} must be 1, true, 0 or false`)
  }
  return f.repeatable === true ? v.split(',').map((s) => s.trim()) : [v]
}

/**
 * A JSON object whose keys are flag names (`{"port": 6500, "publish-token": ["…"]}`). Errors
 * never quote the file: it may hold secrets, and V8's JSON errors show a slice of the text.
 */
function readConfig(file: string, flags: readonly FlagSpec[], skip: readonly string[]): Map<string, string[]> {
  let json: unknown
  try {
    json = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const at = /position (\d+)/.exec(e.message)
    throw new UsageError(`--config ${file}: ${e.code !== undefined ? e.code : `not valid JSON${at === null ? '' : ` (at byte ${at[1]})`}`}`)
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new UsageError(`--config ${file}: must hold a JSON object of flag names`)
  const out = new Map<string, string[]>()
  for (const [key, value] of Object.entries(json)) {
    const f = flags.find((x) => x.name === key)
    if (f === undefined || skip.includes(key)) throw new UsageError(`--config ${file}: unknown key "${key.slice(0, 40)}" (keys are the flag names, see --help)`)
    const list = Array.isArray(value) && f.repeatable === true ? (value as unknown[]) : [value]
    const strings: string[] = []
    for (const v of list) {
      if (f.arg === '') {
        if (v !== true && v !== false) throw new UsageError(`--config ${file}: "${key}" must be true or false`)
        if (v) strings.push('')
      } else if (typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v))) {
        strings.push(String(v))
      } else {
        throw new UsageError(`--config ${file}: "${key}" must be a string${f.repeatable === true ? ' or an array of strings' : ''}`)
      }
    }
    if (strings.length > 0) out.set(key, strings)
  }
  return out
}
