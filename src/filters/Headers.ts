/**
 * `filter "<id>" { type "headers"; phase "request"|"response"|"both"; rename {…}; set {…}; add {…}; remove "A" "B" }`.
 * Operations run in Sentinel's order: rename, set (replace every value), add (append), remove.
 * Names are matched case-insensitively; framing and hop-by-hop headers cannot be set or added
 * (that would let configuration desync the connection), which `validateHeadersFilter` (config/FilterChecks.ts) reports.
 */
import { appliesTo, type FilterPhase } from "./FilterOutcome.js"

export interface HeadersFilterConfig {
  /** KDL `phase`: which message the edits apply to. Default "request". */
  readonly phase: FilterPhase
  /** KDL `rename { "Old" "New" }`. Default none. */
  readonly rename: ReadonlyArray<readonly [string, string]>
  /** KDL `set { "Name" "value" }`: replaces every existing value. Default none. */
  readonly set: ReadonlyArray<readonly [string, string]>
  /** KDL `add { "Name" "value" }`: appends. Default none. */
  readonly add: ReadonlyArray<readonly [string, string]>
  /** KDL `remove "Name" …`. Default none. */
  readonly remove: ReadonlyArray<string>
}

export const defaultHeadersFilterConfig: HeadersFilterConfig = { phase: "request", rename: [], set: [], add: [], remove: [] }

/** A compiled edit: mutates a flat header list in place. */
export type HeaderEdit = (flat: Array<string>) => void

const removeNames = (flat: Array<string>, names: ReadonlySet<string>): void => {
  let w = 0
  for (let r = 0; r < flat.length; r += 2) {
    if (names.has(flat[r].toLowerCase())) continue
    flat[w++] = flat[r]
    flat[w++] = flat[r + 1]
  }
  flat.length = w
}

/** Compiles the edits once (per config load); the returned function is the per-request part. */
export const compileHeaderEdit = (c: HeadersFilterConfig): HeaderEdit => {
  const renames = new Map(c.rename.map(([from, to]) => [from.toLowerCase(), to] as const))
  const setNames = new Set(c.set.map(([n]) => n.toLowerCase()))
  const removes = new Set(c.remove.map((n) => n.toLowerCase()))
  return (flat) => {
    if (renames.size > 0) {
      for (let i = 0; i < flat.length; i += 2) {
        const to = renames.get(flat[i].toLowerCase())
        if (to !== undefined) flat[i] = to
      }
    }
    if (setNames.size > 0) removeNames(flat, setNames)
    for (const [n, v] of c.set) flat.push(n, v)
    for (const [n, v] of c.add) flat.push(n, v)
    if (removes.size > 0) removeNames(flat, removes)
  }
}

export interface HeadersFilter {
  /** Edits the upstream request headers (no-op when phase is "response"). */
  readonly onRequest: HeaderEdit
  /** Edits the client response headers (no-op when phase is "request"). */
  readonly onResponse: HeaderEdit
}

const noop: HeaderEdit = () => undefined

export const makeHeadersFilter = (c: HeadersFilterConfig): HeadersFilter => {
  const edit = compileHeaderEdit(c)
  return {
    onRequest: appliesTo(c.phase, "request") ? edit : noop,
    onResponse: appliesTo(c.phase, "response") ? edit : noop
  }
}
