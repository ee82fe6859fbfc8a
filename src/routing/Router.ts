/**
 * Route matching with Sentinel's semantics, compiled once per configuration.
 *
 * - All non-host conditions of a route AND together; several `host`
 *   conditions OR (Gateway API style).
 * - Order: priority (desc), then specificity (desc), then document order.
 *   Specificity as Sentinel: exact path 10000, regex 5000, prefix 1000+len;
 *   host exact 70, regex 60, wildcard 50 (max of the route's hosts);
 *   header +30 with value / +20 without; query +25 / +15; method +10.
 * - `path-prefix` matches on segment boundaries: `/v2` matches `/v2` and
 *   `/v2/x` but not `/v2x`; `/` matches everything.
 * - Host comes from the absolute-form authority or `Host`, port stripped,
 *   compared case-insensitively.
 */
import type { RouteConfig, RouteMatch } from "../config/Schema.js"

/** What the matcher reads of a request. Plain data: the hot path builds it once. */
export interface MatchInput {
  readonly method: string
  /** Lower-case host without port ("" when absent). */
  readonly host: string
  /** Path without query string. */
  readonly path: string
  /** Raw query string without `?` ("" when absent). */
  readonly query: string
  /** Header lookup by lower-case name (first value). */
  readonly header: (name: string) => string | undefined
}

type Predicate = (input: MatchInput, query: () => URLSearchParams) => boolean

export interface CompiledRoute {
  readonly config: RouteConfig
  readonly id: string
  readonly priority: number
  readonly specificity: number
  readonly index: number
  readonly matches: (input: MatchInput, query: () => URLSearchParams) => boolean
}

export interface Router {
  readonly routes: ReadonlyArray<CompiledRoute>
  readonly match: (input: MatchInput) => CompiledRoute | undefined
}

/** Host without port, lower-case. Handles `[v6]:port`. */
export const normalizeHost = (raw: string | undefined): string => {
  if (raw === undefined || raw === "") return ""
  let host = raw.trim().toLowerCase()
  if (host.startsWith("[")) {
    const end = host.indexOf("]")
    return end === -1 ? host : host.slice(0, end + 1)
  }
  const colon = host.indexOf(":")
  if (colon !== -1) host = host.slice(0, colon)
  if (host.endsWith(".")) host = host.slice(0, -1)
  return host
}

/** Segment-boundary prefix test. */
export const prefixMatches = (prefix: string, path: string): boolean => {
  if (prefix === "" || prefix === "/") return true
  if (!path.startsWith(prefix)) return false
  if (path.length === prefix.length) return true
  return prefix.endsWith("/") || path.charCodeAt(prefix.length) === 47 /* / */
}

const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

interface HostMatcher {
  readonly score: number
  readonly test: (host: string) => boolean
}

const compileHost = (pattern: string): HostMatcher => {
  const p = pattern.toLowerCase()
  if (p.startsWith("*.") && !/[*[]/.test(p.slice(2))) {
    const suffix = p.slice(1) // ".example.com"
    return { score: 50, test: (h) => h.endsWith(suffix) && h.length > suffix.length }
  }
  if (/[*[]/.test(p)) {
    // Glob-ish pattern: `*` is one or more label characters; brackets kept as a class.
    const source = "^" + p.split("*").map((part) => escapeRegex(part).replace(/\\\[/g, "[").replace(/\\\]/g, "]")).join("[^.]+") + "$"
    let re: RegExp
    try {
      re = new RegExp(source)
    } catch {
      re = new RegExp("^" + escapeRegex(p) + "$")
    }
    return { score: 60, test: (h) => re.test(h) }
  }
  return { score: 70, test: (h) => h === p }
}

const compileCondition = (m: RouteMatch): { readonly predicate: Predicate; readonly score: number } => {
  switch (m._tag) {
    case "Path":
      return { predicate: (i) => i.path === m.path, score: 10000 }
    case "PathPrefix":
      return { predicate: (i) => prefixMatches(m.prefix, i.path), score: 1000 + m.prefix.length }
    case "PathRegex": {
      const re = new RegExp(m.pattern)
      return { predicate: (i) => re.test(i.path), score: 5000 }
    }
    case "Header": {
      const name = m.name.toLowerCase()
      const value = m.value
      return value === undefined
        ? { predicate: (i) => i.header(name) !== undefined, score: 20 }
        : { predicate: (i) => i.header(name) === value, score: 30 }
    }
    case "Method": {
      const methods = new Set(m.methods.map((x) => x.toUpperCase()))
      return { predicate: (i) => methods.has(i.method), score: 10 }
    }
    case "QueryParam": {
      const { name, value } = m
      return value === undefined
        ? { predicate: (i, q) => i.query !== "" && q().has(name), score: 15 }
        : { predicate: (i, q) => i.query !== "" && q().getAll(name).includes(value), score: 25 }
    }
    case "Host":
      // Hosts are combined separately (OR).
      return { predicate: () => true, score: 0 }
  }
}

export const compileRoute = (config: RouteConfig, index: number): CompiledRoute => {
  const hosts = config.matches.flatMap((m) => (m._tag === "Host" ? [compileHost(m.host)] : []))
  const conditions = config.matches.filter((m) => m._tag !== "Host").map(compileCondition)
  // Several path conditions add up under AND; specificity follows the strongest one.
  const pathScore = Math.max(0, ...conditions.filter((c) => c.score >= 1000).map((c) => c.score))
  const otherScore = conditions.filter((c) => c.score < 1000).reduce((a, c) => a + c.score, 0)
  const hostScore = Math.max(0, ...hosts.map((h) => h.score))
  const predicates = conditions.map((c) => c.predicate)
  const hostTests = hosts.map((h) => h.test)
  const matches = (input: MatchInput, query: () => URLSearchParams): boolean => {
    if (hostTests.length > 0) {
      let ok = false
      for (let i = 0; i < hostTests.length; i++) {
        if (hostTests[i](input.host)) {
          ok = true
          break
        }
      }
      if (!ok) return false
    }
    for (let i = 0; i < predicates.length; i++) {
      if (!predicates[i](input, query)) return false
    }
    return true
  }
  return {
    config,
    id: config.id,
    priority: config.priority,
    specificity: pathScore + hostScore + otherScore,
    index,
    matches
  }
}

/** Order used for matching: priority desc, specificity desc, document order. */
export const compareRoutes = (a: CompiledRoute, b: CompiledRoute): number =>
  b.priority - a.priority || b.specificity - a.specificity || a.index - b.index

export const makeRouter = (routes: ReadonlyArray<RouteConfig>): Router => {
  const compiled = routes.map(compileRoute).sort(compareRoutes)
  const match = (input: MatchInput): CompiledRoute | undefined => {
    let params: URLSearchParams | undefined
    const query = () => (params ??= new URLSearchParams(input.query))
    for (let i = 0; i < compiled.length; i++) {
      if (compiled[i].matches(input, query)) return compiled[i]
    }
    return undefined
  }
  return { routes: compiled, match }
}
