/**
 * Retry decisions (pure) and a retry budget (bounded token bucket).
 *
 * Safety follows Pingora's split: if nothing of the request reached the upstream, retrying
 * on another target is always safe, whatever the method; once bytes were sent, only
 * idempotent methods are retried unless the route opts in (`retry-non-idempotent`), and only
 * when the body can be replayed (it was buffered, or there is none). Nothing is ever retried
 * after response headers went to the client: the status is already out.
 *
 * Configuration follows Sentinel's `retry-policy` after PR #354: nothing is retryable by
 * status by default; backoff doubles from `backoff` up to `max-backoff`.
 */

/** KDL: route `retry-policy { max-attempts; retryable-status-codes; backoff; max-backoff; per-attempt-timeout; retry-non-idempotent }` */
export interface RetryPolicy {
  /** `max-attempts`: total attempts including the first; default 3 with a block, 1 without. */
  readonly maxAttempts: number
  /** `retryable-status-codes`: upstream statuses that trigger a retry; default none. */
  readonly retryableStatusCodes: ReadonlyArray<number>
  /** `backoff` in ms: delay before the 2nd attempt, doubling after; default 100. */
  readonly backoffMs: number
  /** `max-backoff` in ms: cap of the doubling; default 2000. */
  readonly maxBackoffMs: number
  /** `per-attempt-timeout` in ms: deadline of each attempt (the forwarder applies it); default none (the upstream timeouts apply). */
  readonly perAttemptTimeoutMs?: number
  /** `retry-non-idempotent`: allow retrying POST/PATCH/... after the request was sent; default false. */
  readonly retryNonIdempotent: boolean
}

export const defaultRetryPolicy: RetryPolicy = {
  maxAttempts: 3,
  retryableStatusCodes: [],
  backoffMs: 100,
  maxBackoffMs: 2000,
  retryNonIdempotent: false
}

/** The policy in force for a route without `retry-policy`: one attempt, no retries. */
export const noRetryPolicy: RetryPolicy = { ...defaultRetryPolicy, maxAttempts: 1 }

/** How an attempt failed, as the forwarder classifies it. */
export type FailureKind =
  | "connect-refused"
  | "connect-timeout"
  | "reset-before-send"
  | "reset-after-send"
  | "timeout"
  | "status"

export interface AttemptOutcome {
  /** 1-based number of the attempt that just failed. */
  readonly attempt: number
  readonly method: string
  readonly kind: FailureKind
  /** The upstream's status, for kind "status". */
  readonly status?: number
  /** Whether any byte of the request reached the upstream socket. */
  readonly requestSent: boolean
  /** Whether response headers were already sent to the client. */
  readonly responseStarted: boolean
  /** Whether the request body can be sent again (no body, or fully buffered). */
  readonly bodyReplayable: boolean
  readonly policy: RetryPolicy
}

export type RetryDecision =
  | { readonly retry: true; readonly delayMs: number; readonly reason: "nothing-sent" | "idempotent" | "opted-in" }
  | {
      readonly retry: false
      readonly reason:
        | "max-attempts"
        | "response-started"
        | "status-not-retryable"
        | "non-idempotent"
        | "body-not-replayable"
    }

const idempotent = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"])

/** RFC 9110 §9.2.2 idempotent methods. */
export const isIdempotent = (method: string): boolean => idempotent.has(method.toUpperCase())

/** Kinds that prove nothing reached the upstream, whatever `requestSent` says. */
const nothingSentKinds: ReadonlySet<FailureKind> = new Set(["connect-refused", "connect-timeout", "reset-before-send"])

/**
 * Exponential backoff `base * 2^(retry-1)` capped at `max`, with "equal jitter": a uniform
 * value in [d/2, d], so retries from many clients spread out but never wait longer than the cap.
 */
export const backoffDelay = (retry: number, baseMs: number, maxMs: number, random: () => number = Math.random): number => {
  if (baseMs <= 0 || maxMs <= 0) return 0
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(0, retry - 1), 30))
  const r = random()
  // a broken random source must not produce NaN or out-of-cap delays
  const j = r >= 0 && r <= 1 ? r : 0.5
  return Math.min(maxMs, Math.round(exp / 2 + j * (exp / 2)))
}

/**
 * Decides whether a failed attempt may be retried (on another target, chosen by the
 * balancer). Does not consult the budget: call `RetryBudget.tryWithdraw()` after a yes.
 */
export const shouldRetry = (o: AttemptOutcome, random: () => number = Math.random): RetryDecision => {
  if (o.responseStarted) return { retry: false, reason: "response-started" }
  if (o.attempt >= Math.max(1, o.policy.maxAttempts)) return { retry: false, reason: "max-attempts" }
  if (o.kind === "status" && !(o.status !== undefined && o.policy.retryableStatusCodes.includes(o.status))) {
    return { retry: false, reason: "status-not-retryable" }
  }
  const sent = o.kind === "status" || (o.requestSent && !nothingSentKinds.has(o.kind))
  if (!sent) {
    // nothing reached the upstream: fail over at once, no backoff needed on another target
    return { retry: true, delayMs: 0, reason: "nothing-sent" }
  }
  const idem = isIdempotent(o.method)
  if (!idem && !o.policy.retryNonIdempotent) return { retry: false, reason: "non-idempotent" }
  if (!o.bodyReplayable) return { retry: false, reason: "body-not-replayable" }
  return {
    retry: true,
    delayMs: backoffDelay(o.attempt, o.policy.backoffMs, o.policy.maxBackoffMs, random),
    reason: idem ? "idempotent" : "opted-in"
  }
}

/** Retry budget configuration (per upstream). Not in Sentinel's KDL; defaults as Finagle/Envoy. */
export interface RetryBudgetConfig {
  /** Retries allowed as a share of requests; default 0.2 (20 %). */
  readonly ratio: number
  /** Retries always allowed per second, whatever the traffic (the floor); default 10. */
  readonly minPerSecond: number
  /** Most tokens the ratio part may bank, so an idle burst cannot be stored up; default 100. */
  readonly maxBalance: number
}

export const defaultRetryBudgetConfig: RetryBudgetConfig = { ratio: 0.2, minPerSecond: 10, maxBalance: 100 }

/**
 * Bounds retries so they cannot multiply load during an outage: each request deposits
 * `ratio` of a token (banked up to `maxBalance`), each retry withdraws one; a separate floor
 * bucket refills `minPerSecond` tokens per second (capped at `minPerSecond`) so low-traffic
 * upstreams can still retry. Over any window: retries <= ratio * requests + maxBalance +
 * minPerSecond * (seconds + 1).
 */
export class RetryBudget {
  readonly config: RetryBudgetConfig
  private balance = 0
  private floor: number
  private floorAt: number

  constructor(config: Partial<RetryBudgetConfig> = {}, private readonly now: () => number = () => performance.now()) {
    this.config = { ...defaultRetryBudgetConfig, ...config }
    this.floor = this.config.minPerSecond
    this.floorAt = this.now()
  }

  /** Call once per original request (not per retry). */
  onRequest(): void {
    this.balance = Math.min(this.config.maxBalance, this.balance + this.config.ratio)
  }

  /** Takes one retry token; false = budget exhausted, do not retry. */
  tryWithdraw(): boolean {
    const t = this.now()
    const { minPerSecond } = this.config
    if (minPerSecond > 0 && t > this.floorAt) {
      this.floor = Math.min(minPerSecond, this.floor + ((t - this.floorAt) / 1000) * minPerSecond)
    }
    this.floorAt = t
    if (this.balance >= 1) {
      this.balance -= 1
      return true
    }
    if (this.floor >= 1) {
      this.floor -= 1
      return true
    }
    return false
  }

  /** Tokens available now (for metrics). */
  get available(): number {
    return Math.floor(this.balance) + Math.floor(this.floor)
  }
}
