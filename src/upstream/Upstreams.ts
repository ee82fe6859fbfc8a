/**
 * Runtime state of the configured upstreams: pools per target and target
 * selection. Built per configuration; pools of an upstream whose definition
 * did not change are reused across reloads (see `UpstreamRegistry`).
 */
import { Duration } from "effect"
import type { UpstreamConfig } from "../config/Schema.js"
import { closeTargetPool, makeTargetPool, type TargetPool } from "./Pool.js"

/** What selection may read of the request. */
export interface SelectContext {
  readonly clientIp: string
  readonly path: string
  readonly header: (lowerName: string) => string | undefined
}

export interface UpstreamRuntime {
  readonly id: string
  readonly config: UpstreamConfig
  readonly targets: ReadonlyArray<TargetPool>
  /** Response head deadline (`timeouts { read }`), from dispatch. */
  readonly headersTimeoutMs: number
  /** Longest silence between response body chunks (`timeouts { read }`). */
  readonly bodyIdleTimeoutMs: number
  /** Ordered candidates for one request; the pipeline takes the first it can use. */
  readonly candidates: (ctx: SelectContext) => ReadonlyArray<TargetPool>
  readonly close: (graceMs: number) => Promise<void>
}

export const makeUpstreamRuntime = (config: UpstreamConfig): UpstreamRuntime => {
  const targets = config.targets.map((t) => makeTargetPool(config, t))
  let next = 0
  const candidates = (_ctx: SelectContext): ReadonlyArray<TargetPool> => {
    const n = targets.length
    if (n === 1) return targets
    const start = next
    next = (next + 1) % n
    const out: Array<TargetPool> = []
    for (let i = 0; i < n; i++) out.push(targets[(start + i) % n])
    return out
  }
  const read = Duration.toMillis(config.timeouts.read)
  return {
    id: config.id,
    config,
    targets,
    headersTimeoutMs: read,
    bodyIdleTimeoutMs: read,
    candidates,
    close: async (graceMs) => {
      await Promise.all(targets.map((t) => closeTargetPool(t, graceMs)))
    }
  }
}
