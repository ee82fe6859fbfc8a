/**
 * Load-balancing algorithms. Each one turns the request context into a BOUNDED sequence of
 * candidate target indices (no duplicates, at most `max`); the caller (`pick`) takes the
 * first candidate whose `eligible()` holds (enabled by the operator, healthy, circuit admits).
 * Plain functions and small mutable state: this runs once per request.
 *
 * Unlike Sentinel 26.07_1, the hash-based algorithms really get the client's IP, headers,
 * cookies and path (Sentinel passed no context: ip_hash always chose index 0), and unknown
 * algorithm names are an error instead of a silent fall-back to round robin.
 *
 * Targets with weight <= 0 are never candidates (a weight of 0 drains a target).
 */
import * as Data from "effect/Data"
import { HashRing, MaglevTable, murmur3 } from "./Hashing.js"

export const algorithms = [
  "round_robin",
  "weighted",
  "least_connections",
  "weighted_least_connections",
  "random",
  "power_of_two_choices",
  "ip_hash",
  "consistent_hash",
  "maglev",
  "peak_ewma",
  "sticky"
] as const
export type Algorithm = (typeof algorithms)[number]

const aliases: Record<string, Algorithm> = {
  weighted_round_robin: "weighted",
  p2c: "power_of_two_choices",
  wlc: "weighted_least_connections"
}

/** Sentinel algorithms parsed by its KDL but not offered here (named in the error). */
const unsupported = ["adaptive", "least_tokens_queued", "locality_aware", "deterministic_subset"]

/** An unknown or unsupported `load-balancing` name; `message` says what is accepted. */
export class BalancerAlgorithmUnknown extends Data.TaggedError("BalancerAlgorithmUnknown")<{
  readonly algorithm: string
  readonly message: string
}> {}

/**
 * Parses a `load-balancing "<name>"` value. Accepts underscores or hyphens and Sentinel's
 * aliases (`weighted_round_robin`, `p2c`, `wlc`). Throws `BalancerAlgorithmUnknown` with a
 * hint listing the accepted names.
 */
export const parseAlgorithm = (name: string): Algorithm => {
  const norm = name.trim().toLowerCase().replace(/-/g, "_")
  if ((algorithms as ReadonlyArray<string>).includes(norm)) return norm as Algorithm
  if (norm in aliases) return aliases[norm]
  const accepted = [...algorithms, ...Object.keys(aliases)].join(", ")
  if (unsupported.includes(norm)) {
    throw new BalancerAlgorithmUnknown({
      algorithm: name,
      message: `load-balancing "${name}" is not supported by this proxy; use one of: ${accepted}`
    })
  }
  const near = [...algorithms, ...Object.keys(aliases)].find((a) => a.startsWith(norm.slice(0, 4)))
  throw new BalancerAlgorithmUnknown({
    algorithm: name,
    message: `unknown load-balancing algorithm "${name}"${near ? ` (did you mean "${near}"?)` : ""}; accepted: ${accepted}`
  })
}

/** What the balancer may read from the request. */
export interface BalancerContext {
  readonly clientIp: string
  header(name: string): string | undefined
  cookie(name: string): string | undefined
  readonly path: string
}

/** A target as the balancer sees it at selection time. `targets[i].index === i`. */
export interface TargetView {
  readonly index: number
  /** Stable identity ("host:port"); hash placement and sticky cookies depend on it. */
  readonly id: string
  readonly weight: number
  /** Requests in flight to this target now. */
  readonly activeRequests: number
  /** Peak-EWMA latency in ms (0 = no data yet); see `PeakEwma`. */
  readonly ewmaLatencyMs: number
  /** Enabled by the operator, healthy, and its circuit admits (may take a half-open probe slot). */
  eligible(): boolean
}

/** The static part of a target, known when the balancer is built. */
export interface TargetSpec {
  readonly id: string
  /** `target "host:port" weight=N`; default 1. */
  readonly weight: number
}

/** Where consistent_hash / maglev take their key from. */
export type HashKey =
  | { readonly source: "client-ip" }
  | { readonly source: "path" }
  | { readonly source: "header"; readonly name: string }
  | { readonly source: "cookie"; readonly name: string }

/** Parses `hash-key "client-ip" | "path" | "header:<name>" | "cookie:<name>"`. */
export const parseHashKey = (s: string): HashKey => {
  const v = s.trim()
  const lower = v.toLowerCase()
  if (lower === "client-ip" || lower === "client_ip" || lower === "ip") return { source: "client-ip" }
  if (lower === "path") return { source: "path" }
  const m = /^(header|cookie):(.+)$/i.exec(v)
  if (m) return { source: m[1].toLowerCase() as "header" | "cookie", name: m[2].trim() }
  throw new Error(`invalid hash-key "${s}": expected "client-ip", "path", "header:<name>" or "cookie:<name>"`)
}

/** KDL: `load-balancing "sticky" { cookie-name; cookie-ttl; cookie-path; cookie-secure; cookie-same-site; fallback }` */
export interface StickyConfig {
  /** `cookie-name`; default "SERVERID". */
  readonly cookieName: string
  /** `cookie-ttl` ("1h" or seconds) in seconds; default 3600. 0 = session cookie. */
  readonly cookieTtlSecs: number
  /** `cookie-path`; default "/". */
  readonly cookiePath: string
  /** `cookie-secure`; default true. */
  readonly cookieSecure: boolean
  /** `cookie-same-site` "strict" | "lax" | "none"; default "lax". */
  readonly cookieSameSite: "strict" | "lax" | "none"
  /** `fallback`: algorithm for requests without a valid cookie; default round_robin. */
  readonly fallback: Exclude<Algorithm, "sticky">
}

export const defaultStickyConfig: StickyConfig = {
  cookieName: "SERVERID",
  cookieTtlSecs: 3600,
  cookiePath: "/",
  cookieSecure: true,
  cookieSameSite: "lax",
  fallback: "round_robin"
}

/** KDL: `upstream { load-balancing "<algorithm>" { ... } }` */
export interface BalancerConfig {
  /** `load-balancing`; default "round_robin". */
  readonly algorithm?: Algorithm
  /** `hash-key` for consistent_hash / maglev / ip_hash-like keys; default client-ip. Falls back to the client IP when the header/cookie is absent. */
  readonly hashKey?: HashKey
  /** `virtual-nodes` per unit of weight on the consistent-hash ring; default 160. */
  readonly virtualNodes?: number
  /** `maglev-table-size` (a prime is chosen at or above it, at most ~2^20); default 65537. */
  readonly maglevTableSize?: number
  /** Sticky-session options (algorithm "sticky"). */
  readonly sticky?: Partial<StickyConfig>
  /** Random source in [0,1) for random / p2c; default Math.random (tests inject one). */
  readonly random?: () => number
}

export interface Balancer {
  readonly algorithm: Algorithm
  /** Up to `max` distinct in-range candidate indices, best first. */
  select(ctx: BalancerContext, targets: ReadonlyArray<TargetView>, max: number): number[]
  /** After the caller chose `index`: a Set-Cookie header value to add, if any (sticky). */
  onPicked(ctx: BalancerContext, targets: ReadonlyArray<TargetView>, index: number): string | undefined
}

export interface Picked {
  readonly index: number
  /** Set-Cookie value the response must carry (sticky sessions), if any. */
  readonly setCookie?: string
}

/**
 * Runs the balancer and returns the first eligible candidate not in `tried` (the targets a
 * retry already used), falling back to a tried one when every untried candidate is
 * ineligible; undefined when none is eligible (the caller answers 503). `eligible()` is called
 * lazily, in order, so a half-open probe slot is only taken on the target actually chosen.
 * The upstream stage selects with this (`Upstreams.ts` `select`).
 */
export const pick = (
  balancer: Balancer,
  ctx: BalancerContext,
  targets: ReadonlyArray<TargetView>,
  max: number = targets.length,
  tried: ReadonlyArray<number> = []
): Picked | undefined => {
  const order = balancer.select(ctx, targets, max)
  for (const i of order) if (!tried.includes(i) && targets[i].eligible()) return picked(balancer, ctx, targets, i)
  if (tried.length > 0) for (const i of order) if (tried.includes(i) && targets[i].eligible()) return picked(balancer, ctx, targets, i)
  return undefined
}

const picked = (balancer: Balancer, ctx: BalancerContext, targets: ReadonlyArray<TargetView>, i: number): Picked => {
  const setCookie = balancer.onPicked(ctx, targets, i)
  return setCookie === undefined ? { index: i } : { index: i, setCookie }
}

const live = (t: TargetView) => t.weight > 0

/** Live targets in cyclic order from `start`, excluding `skip`, until `out` holds `max`. */
const fillCyclic = (targets: ReadonlyArray<TargetView>, start: number, max: number, out: number[]): number[] => {
  const n = targets.length
  for (let k = 0; k < n && out.length < max; k++) {
    const i = (start + k) % n
    if (live(targets[i]) && !out.includes(i)) out.push(i)
  }
  return out
}

const cheapestFirst = (
  targets: ReadonlyArray<TargetView>,
  max: number,
  cost: (t: TargetView) => number,
  rotate: number
): number[] => {
  const n = targets.length
  const idx: number[] = []
  for (let k = 0; k < n; k++) {
    const i = (rotate + k) % n
    if (live(targets[i])) idx.push(i)
  }
  // stable sort keeps the rotation as tie-breaker so equal targets share the load
  idx.sort((a, b) => cost(targets[a]) - cost(targets[b]))
  return idx.length > max ? idx.slice(0, max) : idx
}

const peakCost = (t: TargetView) => (t.ewmaLatencyMs > 0 ? t.ewmaLatencyMs : 1) * (t.activeRequests + 1)

const hashKeyOf = (key: HashKey, ctx: BalancerContext): string => {
  switch (key.source) {
    case "client-ip":
      return ctx.clientIp
    case "path":
      return ctx.path
    case "header":
      return ctx.header(key.name) ?? ctx.clientIp
    case "cookie":
      return ctx.cookie(key.name) ?? ctx.clientIp
  }
}

/** Token put in the sticky cookie: an opaque hash of the target id (does not leak addresses). */
export const stickyToken = (id: string): string => murmur3(id, 0x5e55).toString(16).padStart(8, "0")

/**
 * Builds a balancer for `specs` (the upstream's targets in order). `select` must then be
 * called with views of the same targets in the same order. Rebuilt on reconfiguration.
 */
export const makeBalancer = (config: BalancerConfig, specs: ReadonlyArray<TargetSpec>): Balancer => {
  const algorithm = config.algorithm ?? "round_robin"
  const random = config.random ?? Math.random
  const hashKey = config.hashKey ?? { source: "client-ip" }
  const noCookie = () => undefined
  const randomIndex = (n: number) => Math.min(n - 1, Math.floor(random() * n))
  let counter = 0

  switch (algorithm) {
    case "round_robin":
      return {
        algorithm,
        select: (_ctx, targets, max) => {
          if (targets.length === 0) return []
          const start = counter++ % targets.length
          if (counter >= 0x3fffffff) counter = 0
          return fillCyclic(targets, start, max, [])
        },
        onPicked: noCookie
      }

    case "weighted": {
      // nginx smooth weighted round robin
      const current = specs.map(() => 0)
      return {
        algorithm,
        select: (_ctx, targets, max) => {
          let total = 0
          let best = -1
          for (let i = 0; i < targets.length; i++) {
            const w = targets[i].weight
            if (w <= 0) continue
            current[i] = (current[i] ?? 0) + w
            total += w
            if (best < 0 || current[i] > current[best]) best = i
          }
          if (best < 0 || max <= 0) return []
          current[best] -= total
          return fillCyclic(targets, best, max, [best])
        },
        onPicked: noCookie
      }
    }

    case "least_connections":
      return {
        algorithm,
        select: (_ctx, targets, max) => cheapestFirst(targets, max, (t) => t.activeRequests, counter++ % Math.max(1, targets.length)),
        onPicked: noCookie
      }

    case "weighted_least_connections":
      return {
        algorithm,
        select: (_ctx, targets, max) =>
          cheapestFirst(targets, max, (t) => (t.activeRequests + 1) / t.weight, counter++ % Math.max(1, targets.length)),
        onPicked: noCookie
      }

    case "random":
      return {
        algorithm,
        select: (_ctx, targets, max) => (targets.length === 0 ? [] : fillCyclic(targets, randomIndex(targets.length), max, [])),
        onPicked: noCookie
      }

    case "power_of_two_choices":
    case "peak_ewma": {
      const cost = algorithm === "peak_ewma" ? peakCost : (t: TargetView) => t.activeRequests
      return {
        algorithm,
        select: (_ctx, targets, max) => {
          const n = targets.length
          if (n === 0 || max <= 0) return []
          const a = randomIndex(n)
          const out: number[] = []
          if (n > 1) {
            let b = randomIndex(n - 1)
            if (b >= a) b++
            const pair = live(targets[b]) && (!live(targets[a]) || cost(targets[b]) < cost(targets[a])) ? [b, a] : [a, b]
            for (const i of pair) if (live(targets[i]) && out.length < max) out.push(i)
          }
          return fillCyclic(targets, a, max, out)
        },
        onPicked: noCookie
      }
    }

    case "ip_hash": {
      return {
        algorithm,
        select: (ctx, targets, max) => {
          let total = 0
          for (const t of targets) if (t.weight > 0) total += t.weight
          if (total <= 0 || max <= 0) return []
          let point = (murmur3(ctx.clientIp) / 0x100000000) * total
          let start = 0
          for (; start < targets.length; start++) {
            const w = targets[start].weight
            if (w <= 0) continue
            if (point < w) break
            point -= w
          }
          return fillCyclic(targets, Math.min(start, targets.length - 1), max, [])
        },
        onPicked: noCookie
      }
    }

    case "consistent_hash": {
      const ring = new HashRing(specs, config.virtualNodes ?? 160)
      return {
        algorithm,
        select: (ctx, targets, max) => ring.lookup(murmur3(hashKeyOf(hashKey, ctx)), max).filter((i) => i < targets.length),
        onPicked: noCookie
      }
    }

    case "maglev": {
      const table = new MaglevTable(specs, Math.min(config.maglevTableSize ?? 65537, 1 << 20))
      return {
        algorithm,
        select: (ctx, targets, max) => table.lookup(murmur3(hashKeyOf(hashKey, ctx)), max).filter((i) => i < targets.length),
        onPicked: noCookie
      }
    }

    case "sticky": {
      const sticky: StickyConfig = { ...defaultStickyConfig, ...config.sticky }
      // an untyped caller passing "sticky" as its own fallback must not recurse
      if ((sticky.fallback as Algorithm) === "sticky") (sticky as { fallback: Algorithm }).fallback = "round_robin"
      const fallback = makeBalancer({ ...config, algorithm: sticky.fallback }, specs)
      const tokens = specs.map((s) => stickyToken(s.id))
      const byToken = new Map<string, number>()
      tokens.forEach((tok, i) => {
        if (!byToken.has(tok)) byToken.set(tok, i)
      })
      const attrs =
        `; Path=${sticky.cookiePath}` +
        (sticky.cookieTtlSecs > 0 ? `; Max-Age=${Math.floor(sticky.cookieTtlSecs)}` : "") +
        "; HttpOnly" +
        (sticky.cookieSecure || sticky.cookieSameSite === "none" ? "; Secure" : "") +
        `; SameSite=${sticky.cookieSameSite[0].toUpperCase()}${sticky.cookieSameSite.slice(1)}`
      const pinned = (ctx: BalancerContext, n: number): number | undefined => {
        const v = ctx.cookie(sticky.cookieName)
        const i = v === undefined ? undefined : byToken.get(v)
        return i !== undefined && i < n ? i : undefined
      }
      return {
        algorithm,
        select: (ctx, targets, max) => {
          const i = pinned(ctx, targets.length)
          if (i === undefined || !live(targets[i])) return fallback.select(ctx, targets, max)
          if (max <= 0) return []
          const out = [i]
          for (const j of fallback.select(ctx, targets, max)) if (j !== i && out.length < max) out.push(j)
          return out
        },
        onPicked: (ctx, targets, index) =>
          pinned(ctx, targets.length) === index || tokens[index] === undefined
            ? undefined
            : `${sticky.cookieName}=${tokens[index]}${attrs}`
      }
    }
  }
  // only reachable from untyped callers: parse names with parseAlgorithm
  const resolved = parseAlgorithm(String(algorithm)) // throws BalancerAlgorithmUnknown
  if (resolved === algorithm) throw new Error(`balancer: algorithm ${algorithm} not implemented`)
  return makeBalancer({ ...config, algorithm: resolved }, specs)
}
