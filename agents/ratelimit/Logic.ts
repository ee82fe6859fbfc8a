/**
 * Rate-limit decision logic: one token bucket per key (client IP or a
 * header value) in a bounded table. Pure except for the table it owns;
 * time comes in as an argument, so tests drive it without clocks.
 */

export interface BucketConfig {
  /** Tokens added per second (sustained requests per second). */
  readonly rate: number
  /** Bucket capacity: the largest burst admitted at once. */
  readonly burst: number
}

export interface Bucket {
  tokens: number
  /** Time of the last refill, in ms. */
  at: number
}

export interface TakeResult {
  readonly allowed: boolean
  /** Whole tokens left after this request. */
  readonly remaining: number
  /** Seconds until one token is available (0 when allowed), rounded up. */
  readonly retryAfterSeconds: number
}

/**
 * Refills `bucket` for the time elapsed up to `now` (capped at `burst`;
 * a clock going backwards adds nothing) and takes one token if it can.
 */
export const take = (bucket: Bucket, now: number, cfg: BucketConfig): TakeResult => {
  const elapsed = Math.max(0, now - bucket.at)
  bucket.tokens = Math.min(cfg.burst, bucket.tokens + (elapsed * cfg.rate) / 1000)
  bucket.at = Math.max(bucket.at, now)
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1
    return { allowed: true, remaining: Math.floor(bucket.tokens), retryAfterSeconds: 0 }
  }
  const missing = 1 - bucket.tokens
  return { allowed: false, remaining: 0, retryAfterSeconds: Math.max(1, Math.ceil(missing / cfg.rate)) }
}

/**
 * Bounded key -> bucket table. A Map keeps insertion order; touching a key
 * re-inserts it, so the first key is the least recently used and is evicted
 * when the table is full. An evicted key comes back with a full bucket —
 * the price of the bound (size it above the number of active clients).
 */
export class BucketTable {
  private readonly buckets = new Map<string, Bucket>()

  constructor(readonly cfg: BucketConfig, readonly maxKeys: number) {
    if (!(cfg.rate > 0) || !(cfg.burst >= 1) || !(maxKeys >= 1)) throw new RangeError("rate > 0, burst >= 1, max keys >= 1 required")
  }

  get size(): number {
    return this.buckets.size
  }

  take(key: string, now: number): TakeResult {
    let b = this.buckets.get(key)
    if (b === undefined) {
      if (this.buckets.size >= this.maxKeys) {
        const oldest = this.buckets.keys().next().value
        if (oldest !== undefined) this.buckets.delete(oldest)
      }
      b = { tokens: this.cfg.burst, at: now }
    } else {
      this.buckets.delete(key)
    }
    this.buckets.set(key, b)
    return take(b, now, this.cfg)
  }
}

/** Longest key kept (a header value used as key is truncated: bounded memory per key). */
export const MAX_KEY_LENGTH = 256

/**
 * The key of a request: the named header's first value when `header` is
 * set and present, else the client IP.
 */
export const requestKey = (
  clientIp: string,
  headers: Readonly<Record<string, ReadonlyArray<string>>>,
  header: string | undefined
): string => {
  if (header !== undefined) {
    const v = headers[header.toLowerCase()]?.[0]
    if (v !== undefined && v !== "") return `h:${v.slice(0, MAX_KEY_LENGTH)}`
  }
  return `ip:${clientIp}`
}
