/**
 * Top-level `rate-limits { default-rps 100; default-burst 20; key "client-ip"; global { max-rps
 * 10000; burst 1000; key "client-ip" } }` (Sentinel's keys; `global` requires `max-rps`).
 */
import type { GlobalRateLimitConfig, RateLimitsConfig } from "../Schema.js"
import { type BlockSpec, block, compact, scalar } from "../KdlDecoder.js"
import { num, positive } from "../KdlValues.js"
import { rateLimitKey } from "./Filters.js"

const rps = num({ min: 0, max: 1e9, exclusiveMin: true })

const globalSpec: BlockSpec<GlobalRateLimitConfig> = {
  path: "rate-limits.global",
  fields: {
    maxRps: scalar("max-rps", rps),
    burst: scalar("burst", positive),
    key: scalar("key", rateLimitKey as never)
  }
}

export const rateLimitsSpec: BlockSpec<RateLimitsConfig> = {
  path: "rate-limits",
  fields: {
    defaultRps: scalar("default-rps", rps),
    defaultBurst: scalar("default-burst", positive),
    key: scalar("key", rateLimitKey as never),
    global: block("global", globalSpec, (f, node, cx) => {
      if (f.maxRps === undefined) {
        if (!(node.children?.nodes ?? []).some((c) => c.getName() === "max-rps")) cx.error(node, "`global` needs `max-rps` (requests per second per key)")
        return undefined
      }
      return compact(f) as GlobalRateLimitConfig
    })
  }
}

export const rateLimitsField = block("rate-limits", rateLimitsSpec, (f, node, cx) => {
  if (f.defaultBurst !== undefined && f.defaultRps === undefined) {
    const at = (node.children?.nodes ?? []).find((c) => c.getName() === "default-burst")
    return cx.error(at ?? node, "`default-burst` needs `default-rps` (the rate of the routes' default limit)")
  }
  return compact(f)
})
