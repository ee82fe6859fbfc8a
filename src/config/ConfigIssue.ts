/**
 * Problems found in a configuration, each tied to `file:line:col`.
 */
import { Data } from "effect"

export interface ConfigIssue {
  readonly file: string
  readonly line: number
  readonly col: number
  readonly message: string
}

export const formatIssue = (i: ConfigIssue): string => `${i.file}:${i.line}:${i.col}: ${i.message}`

/** Orders issues by file, then position, so output reads top to bottom. */
export const sortIssues = (issues: ReadonlyArray<ConfigIssue>): Array<ConfigIssue> =>
  [...issues].sort((a, b) =>
    a.file === b.file ? (a.line - b.line) || (a.col - b.col) : a.file < b.file ? -1 : 1
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
