/** Blocks shared by upstreams, routes and agents as KDL (the reverse of blocks/Resilience.ts). */
import type { CircuitBreakerConfig } from "../Schema.js"
import { msSecs, type Writer } from "./Writer.js"

export const circuitBreaker = (w: Writer, c: CircuitBreakerConfig): void =>
  w.block("circuit-breaker", () => {
    w.line(`failure-threshold ${c.failureThreshold}`)
    w.line(`success-threshold ${c.successThreshold}`)
    w.line(`timeout-seconds ${msSecs(c.openTimeoutMs)}`)
    w.line(`half-open-max-requests ${c.halfOpenMaxRequests}`)
    if (c.probeTimeoutMs !== undefined) w.line(`probe-timeout-secs ${msSecs(c.probeTimeoutMs)}`)
  })
