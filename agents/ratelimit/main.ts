/**
 * ratelimit: token bucket per client IP (or per value of a header), in a
 * bounded table. Over the limit: 429 with Retry-After.
 */
import { performance } from "node:perf_hooks"
import * as Effect from "effect/Effect"
import { runAgentMain } from "sentinel-proxy/agents/sdk/AgentMain.js"
import type { ParsedArgs } from "sentinel-proxy/agents/sdk/AgentMain.js"
import { allow, block } from "sentinel-proxy/agents/sdk/Decision.js"
import { BucketTable, requestKey } from "./Logic.js"

const positive = (args: ParsedArgs, name: string): number => {
  const n = Number(args.values[name])
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got '${args.values[name]}'`)
  return n
}

runAgentMain({
  info: { agentId: "ratelimit", name: "ratelimit", version: "0.1.0" },
  description: "Token-bucket rate limiting per client IP (or per header value). Over the limit: 429 with Retry-After.",
  options: {
    rate: { description: "tokens added per second (sustained requests/s per key)", default: "10" },
    burst: { description: "bucket size: requests admitted at once", default: "20" },
    "key-header": { description: "limit per value of this request header (falls back to the client IP when absent)" },
    "max-keys": { description: "most keys tracked; the least recently seen is evicted", default: "100000" }
  },
  handlers: (args) =>
    Effect.sync(() => {
      const rate = positive(args, "rate")
      const burst = Math.floor(positive(args, "burst"))
      const table = new BucketTable({ rate, burst }, Math.floor(positive(args, "max-keys")))
      const header = args.values["key-header"]
      return {
        onRequestHeaders: (e) =>
          Effect.sync(() => {
            const key = requestKey(e.metadata.client_ip, e.headers, header)
            const r = table.take(key, performance.now())
            if (r.allowed) {
              return allow()
                .setResponseHeader("X-RateLimit-Limit", String(burst))
                .setResponseHeader("X-RateLimit-Remaining", String(r.remaining))
            }
            return block(429, {
              body: "Too Many Requests",
              headers: { "Retry-After": String(r.retryAfterSeconds), "X-RateLimit-Limit": String(burst), "X-RateLimit-Remaining": "0" }
            }).withAudit({ tags: ["ratelimit"], ruleIds: ["ratelimit-bucket"], reasonCodes: ["RATE_LIMITED"], custom: { key } })
          })
      }
    })
})
