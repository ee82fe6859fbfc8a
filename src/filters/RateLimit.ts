/**
 * `filter "<id>" { type "rate-limit"; max-rps 100; burst 10; key "client-ip"; on-limit "reject"; … }`.
 *
 * A real token bucket per key (Sentinel documents one but implements a 1-second window counter
 * that ignores `burst`): capacity `burst`, refilled at `max-rps` tokens per second, so over any
 * window of t seconds at most `burst + max-rps * t` requests are admitted. The key table is
 * bounded by `max-keys` with least-recently-used eviction (an evicted key restarts with a full
 * bucket: the price of bounded memory, counted in `evictions`). The clock is injectable.
 */
import type { FilterOutcome, FilterRequest } from "./FilterOutcome.js"

export type RateLimitKey = "client-ip" | "path" | "route" | "client-ip-and-path" | `header:${string}`
export type OnLimit = "reject" | "delay" | "log-only"

/** What a Redis-backed limit decides when Redis cannot answer: the local limiter, admit, or refuse (503). */
export type RedisFallback = "local" | "open" | "closed"

/** KDL `backend "redis"` and its `redis-*` keys (RedisRateLimit.ts). */
export interface RedisBackendConfig {
  readonly type: "redis"
  /** `redis-url`: `redis://[user:password@]host:port[/db]` or `rediss://` (TLS). Default "redis://127.0.0.1:6379". */
  readonly url: string
  /** `redis-prefix`: prepended to every key (then the filter id and the limit key). Default "sentinel:ratelimit:". */
  readonly prefix: string
  /** `redis-pool-size`: connections to Redis, shared by the filters that name the same Redis. Default 10. */
  readonly poolSize: number
  /** `redis-timeout-ms`: deadline of one decision in Redis; past it the fallback decides. Default 50. */
  readonly timeoutMs: number
  /** `redis-fallback` (`redis-fallback-local`): #true / "local", #false / "open", or "closed". Default "local". */
  readonly fallback: RedisFallback
  /** `redis-failure-threshold`: consecutive failures that open the circuit around Redis. Default 3. */
  readonly failureThreshold: number
  /** `redis-circuit-open-ms`: how long an open circuit skips Redis before one probe. Default 1000. */
  readonly circuitOpenMs: number
}

/** KDL `backend`: where the buckets live. */
export type RateLimitBackend = { readonly type: "local" } | RedisBackendConfig

export const defaultRedisBackend: RedisBackendConfig = {
  type: "redis",
  url: "redis://127.0.0.1:6379",
  prefix: "sentinel:ratelimit:",
  poolSize: 10,
  timeoutMs: 50,
  fallback: "local",
  failureThreshold: 3,
  circuitOpenMs: 1000
}

export interface RateLimitConfig {
  /** KDL `max-rps`: sustained requests per second per key (refill rate). Default 100. */
  readonly maxRps: number
  /** KDL `burst`: bucket capacity, requests admitted at once after idling (at least 1). Default 10. */
  readonly burst: number
  /** KDL `key "client-ip"|"path"|"route"|"client-ip-and-path"|"header:<name>"`. Default "client-ip". */
  readonly key: RateLimitKey
  /** KDL `on-limit`: answer `status-code`, delay up to `max-delay-ms`, or only log. Default "reject". */
  readonly onLimit: OnLimit
  /** KDL `status-code`. Default 429. */
  readonly statusCode: number
  /** KDL `message`: body of the rejection. Default "Too Many Requests". */
  readonly message: string
  /** KDL `max-delay-ms`: longest wait for `on-limit "delay"`; a longer wait is rejected. Default 5000. */
  readonly maxDelayMs: number
  /** KDL `max-keys`: keys tracked at once (LRU eviction above). Default 100000. */
  readonly maxKeys: number
  /** KDL `backend "local"|"redis"` (+ `redis-*` keys): this process's buckets, or Redis's shared by a fleet. Default local. */
  readonly backend: RateLimitBackend
}

export const defaultRateLimitConfig: RateLimitConfig = {
  maxRps: 100,
  burst: 10,
  key: "client-ip",
  onLimit: "reject",
  statusCode: 429,
  message: "Too Many Requests",
  maxDelayMs: 5000,
  maxKeys: 100_000,
  backend: { type: "local" }
}

/** Keys longer than this are cut (a huge header value must not grow the table's memory). */
export const MAX_KEY_LENGTH = 256

export const rateLimitKeyOf = (key: RateLimitKey, req: FilterRequest): string => {
  let k: string
  switch (key) {
    case "client-ip":
      k = req.clientIp
      break
    case "path":
      k = req.path
      break
    case "route":
      k = req.routeId
      break
    case "client-ip-and-path":
      k = `${req.clientIp} ${req.path}`
      break
    default:
      // requests without the header share one bucket
      k = "h:" + (req.header(key.slice(7).toLowerCase()) ?? "")
  }
  return k.length > MAX_KEY_LENGTH ? k.slice(0, MAX_KEY_LENGTH) : k
}

interface Bucket {
  tokens: number
  last: number
}

export interface TakeResult {
  /** Proceed now (or after `delayMs`). */
  readonly allowed: boolean
  /** Wait before proceeding (delay mode); 0 otherwise. */
  readonly delayMs: number
  /** Whole tokens left after this request. */
  readonly remaining: number
  /** Seconds until the bucket is full again. */
  readonly resetSecs: number
  /** Seconds until one token is available (for Retry-After). */
  readonly retryAfterSecs: number
}

/** Bounded table of token buckets. `now` returns milliseconds from any monotonic origin. */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>()
  private readonly capacity: number
  private readonly perMs: number
  /** Keys evicted to stay under `maxKeys` (export as a metric). */
  evictions = 0

  constructor(
    rps: number,
    burst: number,
    private readonly maxKeys: number,
    private readonly now: () => number = () => performance.now()
  ) {
    this.capacity = Math.max(1, burst)
    this.perMs = rps / 1000
  }

  get size(): number {
    return this.buckets.size
  }

  /**
   * Sets `key`'s bucket to `tokens` now (a shared backend's answer), so that a fallback to this
   * table goes on from the fleet's state rather than from a full bucket.
   */
  sync(key: string, tokens: number): void {
    const t = this.now()
    let b = this.buckets.get(key)
    if (b === undefined) {
      if (this.buckets.size >= Math.max(1, this.maxKeys)) {
        const oldest = this.buckets.keys().next().value
        if (oldest !== undefined) this.buckets.delete(oldest)
        this.evictions++
      }
      b = { tokens, last: t }
    } else {
      this.buckets.delete(key)
      b.tokens = Math.min(this.capacity, tokens)
      b.last = t
    }
    this.buckets.set(key, b)
  }

  /** Takes one token for `key`. With `maxDelayMs` > 0 a missing token is borrowed if it comes within that time. */
  take(key: string, maxDelayMs = 0): TakeResult {
    const t = this.now()
    let b = this.buckets.get(key)
    if (b === undefined) {
      if (this.buckets.size >= Math.max(1, this.maxKeys)) {
        // Map iteration order is insertion order and every access re-inserts: the first key is the LRU
        const oldest = this.buckets.keys().next().value
        if (oldest !== undefined) this.buckets.delete(oldest)
        this.evictions++
      }
      b = { tokens: this.capacity, last: t }
    } else {
      this.buckets.delete(key)
      if (t > b.last) {
        b.tokens = Math.min(this.capacity, b.tokens + (t - b.last) * this.perMs)
        b.last = t
      }
    }
    this.buckets.set(key, b)
    let allowed = false
    let delayMs = 0
    if (b.tokens >= 1) {
      b.tokens -= 1
      allowed = true
    } else if (maxDelayMs > 0 && this.perMs > 0) {
      const wait = (1 - b.tokens) / this.perMs
      if (wait <= maxDelayMs) {
        b.tokens -= 1 // borrowed: later requests wait behind this one
        allowed = true
        delayMs = Math.ceil(wait)
      }
    }
    const deficit = Math.max(0, 1 - b.tokens)
    return {
      allowed,
      delayMs,
      remaining: Math.max(0, Math.floor(b.tokens)),
      resetSecs: this.perMs > 0 ? Math.ceil((this.capacity - b.tokens) / this.perMs / 1000) : 0,
      retryAfterSecs: this.perMs > 0 ? Math.max(1, Math.ceil(deficit / this.perMs / 1000)) : 1
    }
  }
}

/** The filter's answer to one take, the same on every backend: Continue with X-RateLimit-*, or the rejection. */
export const makeOutcomeOf = (config: RateLimitConfig): ((r: TakeResult) => FilterOutcome) => {
  const limit = String(config.maxRps)
  return (r) => {
    const headers = [
      "X-RateLimit-Limit", limit,
      "X-RateLimit-Remaining", String(r.remaining),
      "X-RateLimit-Reset", String(r.resetSecs)
    ]
    if (r.allowed) {
      return r.delayMs > 0 ? { _tag: "Continue", responseHeaders: headers, delayMs: r.delayMs, note: "rate-limit-delayed" } : { _tag: "Continue", responseHeaders: headers }
    }
    if (config.onLimit === "log-only") return { _tag: "Continue", responseHeaders: headers, note: "rate-limit-exceeded-log-only" }
    return {
      _tag: "Respond",
      status: config.statusCode,
      headers: [...headers, "Retry-After", String(r.retryAfterSecs), "Content-Type", "text/plain; charset=utf-8"],
      body: config.message,
      reason: "rate-limited"
    }
  }
}

export interface RateLimiter {
  readonly config: RateLimitConfig
  readonly buckets: TokenBuckets
  /** Decides one request: Continue (maybe delayed / noted) with rate-limit headers, or Respond 429. */
  readonly check: (req: FilterRequest) => FilterOutcome
}

export const makeRateLimiter = (config: RateLimitConfig, now?: () => number): RateLimiter => {
  const buckets = new TokenBuckets(config.maxRps, config.burst, config.maxKeys, now)
  const outcomeOf = makeOutcomeOf(config)
  const maxDelayMs = config.onLimit === "delay" ? config.maxDelayMs : 0
  const check = (req: FilterRequest): FilterOutcome => outcomeOf(buckets.take(rateLimitKeyOf(config.key, req), maxDelayMs))
  return { config, buckets, check }
}
