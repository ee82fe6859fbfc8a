/**
 * Problems found in a configuration, each tied to `file:line:col`.
 */
import * as Data from "effect/Data"

export interface ConfigIssue {
  readonly file: string
  readonly line: number
  readonly col: number
  readonly message: string
  /**
   * Follows only from other issues (e.g. "no listener defined" when a file could not be read):
   * listed after every other issue, so the real cause is read first.
   */
  readonly secondary?: true
}

// Text from a config file (ids, paths, values quoted in messages) must not be able to start a
// new line or reorder what a terminal shows: controls (Cc: NUL, TAB, CR, LF, DEL, C1), format
// characters (Cf: zero-width spaces, bidi overrides and isolates, BOM), line and paragraph
// separators, and lone surrogates.
const unprintableOne = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u
const unprintableAll = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu

/** One character as `\uXXXX` (`\u{XXXXX}` beyond the BMP). */
export const escapeChar = (c: string): string => {
  const cp = c.codePointAt(0) ?? 0
  const hex = cp.toString(16).toUpperCase()
  return cp > 0xffff ? `\\u{${hex}}` : `\\u${hex.padStart(4, "0")}`
}

/** The first character of `s` that `escapeText` would escape, if any. */
export const firstUnprintable = (s: string): string | undefined => unprintableOne.exec(s)?.[0]

/** `s` with every control, format and separator character written as `\uXXXX`, for text output. */
export const escapeText = (s: string): string => s.replace(unprintableAll, escapeChar)

/** `file:line:col: message` on one line, whatever the config put into the file name or message. */
export const formatIssue = (i: ConfigIssue): string => escapeText(`${i.file}:${i.line}:${i.col}: ${i.message}`)

/** Orders issues by file, then position, so output reads top to bottom; `secondary` ones come last. */
export const sortIssues = (issues: ReadonlyArray<ConfigIssue>): Array<ConfigIssue> =>
  [...issues].sort((a, b) =>
    (a.secondary ? 1 : 0) - (b.secondary ? 1 : 0) ||
    (a.file === b.file ? (a.line - b.line) || (a.col - b.col) : a.file < b.file ? -1 : 1)
  )

/** The configuration could not be loaded; `issues` lists every problem found (not just the first). */
export class ConfigInvalid extends Data.TaggedError("ConfigInvalid")<{
  readonly issues: ReadonlyArray<ConfigIssue>
}> {
  override get message(): string {
    return this.format()
  }
  /** One `file:line:col: message` line per issue. */
  format(): string {
    return this.issues.map(formatIssue).join("\n")
  }
}

/** Edit distance, for "did you mean" hints. */
export const levenshtein = (a: string, b: string): number => {
  if (a === b) return 0
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length]
}

/** The closest candidate within a distance proportional to the name's length, if any. */
export const closest = (name: string, candidates: Iterable<string>): string | undefined => {
  let best: string | undefined
  let bestD = Infinity
  const budget = Math.max(2, Math.floor(name.length / 3))
  for (const c of candidates) {
    const d = levenshtein(name.toLowerCase(), c.toLowerCase())
    if (d < bestD) {
      best = c
      bestD = d
    }
  }
  return bestD <= budget ? best : undefined
}

/** `" (did you mean `x`?)"` or `""`. */
export const hint = (name: string, candidates: Iterable<string>): string => {
  const c = closest(name, candidates)
  return c === undefined ? "" : `; did you mean \`${c}\`?`
}
