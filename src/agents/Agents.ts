/**
 * The agents of a proxy as a service: one scoped manager per `agents { }` block (connections,
 * queues, breakers), the route extension that calls them, and its audit lines. A reload
 * builds a new manager when the block changed (`reload`, before the dataplane is recompiled);
 * the old one stays with the requests that captured it and closes after the grace period.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ConfigSource } from "../config/ConfigSource.js"
import { MetricsService } from "../observability/Metrics.js"
import { Logs } from "../observability/ProxyLogs.js"
import type { ChallengePolicy } from "./AgentDecision.js"
import { makeAgents, type Agents as AgentsService } from "./AgentsExtension.js"

export type { AgentsService }

export interface AgentsLayerOptions {
  /** What an agent's challenge decision becomes. Default: 403 with the type in `x-sentinel-challenge`. */
  readonly challenge?: Partial<ChallengePolicy> | undefined
  readonly proxyVersion?: string | undefined
}

export class Agents extends Context.Tag("sentinel/agents/Agents")<Agents, AgentsService>() {
  static readonly layer = (options: AgentsLayerOptions = {}): Layer.Layer<Agents, never, ConfigSource | MetricsService | Logs> =>
    Layer.scoped(
      Agents,
      Effect.gen(function* () {
        const initial = (yield* ConfigSource).initial.config
        const metrics = yield* MetricsService
        const logs = yield* Logs
        let graceMs = Duration.toMillis(initial.system.gracefulShutdownTimeout)
        const agents = yield* makeAgents(initial, {
          metrics,
          audit: logs.audit,
          graceMs: () => graceMs,
          ...(options.proxyVersion !== undefined ? { proxyVersion: options.proxyVersion } : {}),
          ...(options.challenge !== undefined ? { challenge: options.challenge } : {})
        })
        return {
          ...agents,
          reload: (next) =>
            Effect.suspend(() => {
              graceMs = Duration.toMillis(next.system.gracefulShutdownTimeout)
              return agents.reload(next)
            })
        }
      })
    )
}
