// The one command-line parser of `rawsse` and its sub-commands (`listen`, `publish`, `bench`):
// `--name value`, `--name=value`, switches, positionals, and `--` before positionals that
// start with a dash. A bad command line is a UsageError: one line on standard error, exit 2.

import { httpUrl } from '../client/dial.js'

/** A bad command line: one line on standard error, exit code 2. */
export class UsageError extends Error {}

export interface FlagSpec {
  readonly name: string
  /** The value's name in help and errors (`N`, `URL`); '' for a switch. */
  readonly arg: string
  /** Given several times, every value counts (else the last one wins). */
  readonly repeatable?: boolean
  /** A one-letter form (`h` for `-h`). */
  readonly short?: string
}

/** The flags and positionals of one command line. */
export class Args {
  readonly positional: string[] = []
  private readonly values = new Map<string, string[]>()

  has(name: string): boolean {
    return this.values.has(name)
  }

  /** The flag's value; when a flag is repeated, the last one wins, as in most tools. */
  last(name: string): string | undefined {
    const all = this.values.get(name)
    return all?.[all.length - 1]
  }

  /** Every value of a repeatable flag, in the order given. */
  all(name: string): string[] {
    return this.values.get(name) ?? []
  }

  /** A whole number from `min` to `max`; undefined when the flag is absent. */
  wholeNumber(name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const v = this.last(name)
    if (v === undefined) return undefined
    const n = Number(v)
    if (!/^\d+$/.test(v) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`
      throw new UsageError(`--${name} must be a whole number ${range}, not '${v}'`)
    }
    return n
  }

  /** A number > 0 (or ≥ 0 with `allowZero`); undefined when the flag is absent. */
  positiveNumber(name: string, allowZero: boolean): number | undefined {
    const v = this.last(name)
    if (v === undefined) return undefined
    const n = Number(v)
    if (v.trim() === '' || !Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) {
      throw new UsageError(`--${name} must be a number ${allowZero ? '≥' : '>'} 0, not '${v}'`)
    }
    return n
  }

  add(name: string, value: string): void {
    const list = this.values.get(name)
    if (list === undefined) this.values.set(name, [value])
    else list.push(value)
  }
}

/**
 * Parse `argv` against `flags`. With `positionals` false, any argument that is not a flag is an
 * error (the server takes none). A valued flag followed by another `--flag` is a forgotten value,
 * not a value: `--cors-origin --stdin` does not name an origin "--stdin".
 */
export function parseArgs(argv: readonly string[], flags: readonly FlagSpec[], positionals: boolean): Args {
  const out = new Args()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--' && positionals) {
      out.positional.push(...argv.slice(i + 1))
      break
    }
    if (arg === '-' || !arg.startsWith('-')) {
      if (!positionals) throw new UsageError(`unexpected argument: ${arg}`)
      out.positional.push(arg)
      continue
    }
    const short = /^-([A-Za-z])$/.exec(arg)
    const shortFlag = short === null ? undefined : flags.find((f) => f.short === short[1])
    if (shortFlag !== undefined) {
      if (shortFlag.arg === '') out.add(shortFlag.name, '')
      else if (i + 1 >= argv.length || argv[i + 1]!.startsWith('--')) throw new UsageError(`${arg} needs a value (${shortFlag.arg})`)
      else out.add(shortFlag.name, argv[++i]!)
      continue
    }
    if (!arg.startsWith('--')) {
      throw new UsageError(`unknown flag: ${arg} (see --help${positionals ? '; put -- before an argument starting with -' : ''})`)
    }
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq === -1 ? undefined : eq)
    const flag = flags.find((f) => f.name === name)
    if (flag === undefined) throw new UsageError(`unknown flag: --${name} (see --help)`)
    if (flag.arg === '') {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`)
      out.add(name, '')
    } else if (eq !== -1) {
      out.add(name, arg.slice(eq + 1))
    } else {
      if (i + 1 >= argv.length || argv[i + 1]!.startsWith('--')) throw new UsageError(`--${name} needs a value (${flag.arg})`)
      out.add(name, argv[++i]!)
    }
  }
  return out
}

/** An http: or https: URL; `label` (e.g. `--publish`) starts the error message when there is one. */
export function urlValue(value: string, label?: string): URL {
  try {
    return httpUrl(value)
  } catch (err) {
    const why = err instanceof TypeError && err.message.startsWith('unsupported') ? err.message : 'not a valid URL'
    throw new UsageError(`${label === undefined ? '' : label + ' '}${value}: ${why}`)
  }
}
