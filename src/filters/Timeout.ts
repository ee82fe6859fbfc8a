/**
 * `filter "<id>" { type "timeout"; request-timeout-secs 30; upstream-timeout-secs 10; connect-timeout-secs 2 }`.
 * A carrier: it holds per-route overrides of the stage deadlines; the stages that own the timers
 * read the effective values from `effectiveTimeouts`. Absent fields leave the base value.
 */

export interface TimeoutFilterConfig {
  /** KDL `request-timeout-secs`: whole-request deadline. Default: the route's/listener's. */
  readonly requestTimeoutSecs: number | null
  /** KDL `upstream-timeout-secs`: upstream response deadline. Default: the upstream's. */
  readonly upstreamTimeoutSecs: number | null
  /** KDL `connect-timeout-secs`: upstream connect deadline. Default: the upstream's. */
  readonly connectTimeoutSecs: number | null
}

export const defaultTimeoutFilterConfig: TimeoutFilterConfig = {
  requestTimeoutSecs: null,
  upstreamTimeoutSecs: null,
  connectTimeoutSecs: null
}

export interface StageTimeoutsMs {
  readonly requestMs: number
  readonly upstreamMs: number
  readonly connectMs: number
}

/** Base deadlines overridden by each timeout filter in order (a later filter wins). */
export const effectiveTimeouts = (base: StageTimeoutsMs, filters: ReadonlyArray<TimeoutFilterConfig>): StageTimeoutsMs => {
  let { requestMs, upstreamMs, connectMs } = base
  for (const f of filters) {
    if (f.requestTimeoutSecs !== null) requestMs = f.requestTimeoutSecs * 1000
    if (f.upstreamTimeoutSecs !== null) upstreamMs = f.upstreamTimeoutSecs * 1000
    if (f.connectTimeoutSecs !== null) connectMs = f.connectTimeoutSecs * 1000
  }
  return { requestMs, upstreamMs, connectMs }
}
