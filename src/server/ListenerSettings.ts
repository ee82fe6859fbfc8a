/** A listener's settings in milliseconds and counts: its timers, admission and connection limits. */
import * as Duration from "effect/Duration"
import type { LimitsConfig, ListenerConfig } from "../config/Schema.js"
import { defaultAdmissionConfig, type AdmissionConfig, type ConnectionLimits } from "./Admission.js"

/** `limits {…}` -> admission settings (defaults documented in config/LimitsSchema.ts / Admission.ts). */
export const admissionConfigFor = (limits: LimitsConfig): AdmissionConfig => ({
  maxInFlight: limits.maxInFlightRequests,
  queueSize: limits.inFlightQueueSize ?? defaultAdmissionConfig.queueSize,
  queueTimeoutMs:
    limits.inFlightQueueTimeout === undefined ? defaultAdmissionConfig.queueTimeoutMs : Duration.toMillis(limits.inFlightQueueTimeout)
})

export const connectionLimitsFor = (limits: LimitsConfig): ConnectionLimits => ({
  maxTotal: limits.maxTotalConnections,
  maxPerClient: limits.maxConnectionsPerClient
})

/** Timer settings of one listener, in milliseconds (0 = off). */
export interface ListenerTimeouts {
  readonly headerMs: number
  readonly requestMs: number
  readonly bodyIdleMs: number
  readonly writeMs: number
  readonly keepAliveMs: number
  /** How often node's header/request deadlines and our write deadline are checked. */
  readonly checkMs: number
}

const ms = (d: Duration.Duration | undefined, fallback: number): number => (d === undefined ? fallback : Duration.toMillis(d))

export const listenerTimeouts = (config: ListenerConfig): ListenerTimeouts => {
  const requestMs = ms(config.requestTimeout, 60_000)
  let headerMs = ms(config.headerTimeout, 10_000)
  // node refuses headersTimeout > requestTimeout; the head is part of the request anyway
  if (requestMs > 0 && (headerMs === 0 || headerMs > requestMs)) headerMs = requestMs
  const bodyIdleMs = ms(config.bodyIdleTimeout, 30_000)
  const writeMs = ms(config.writeTimeout, 30_000)
  const shortest = Math.min(...[headerMs, requestMs, bodyIdleMs, writeMs].filter((n) => n > 0), 2000)
  return {
    headerMs,
    requestMs,
    bodyIdleMs,
    writeMs,
    keepAliveMs: ms(config.keepaliveTimeout, 75_000),
    checkMs: Math.max(50, Math.min(500, Math.floor(shortest / 4)))
  }
}
