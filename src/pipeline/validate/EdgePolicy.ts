/**
 * The edge settings one request needs (validation limits, trusted proxies), compiled once per
 * configuration and listener and looked up per request with two map reads (hot path). The
 * configuration object is the cache key, so a reload never mixes old and new settings.
 */
import type { ListenerConfig, SentinelConfig } from "../../config/Schema.js"
import { compileTrustedProxies, type TrustedProxies } from "../../http/Forwarded.js"
import { validationConfigFor, type RequestValidationConfig } from "./Settings.js"

export interface EdgePolicy {
  readonly validation: RequestValidationConfig
  readonly trusted: TrustedProxies
}

const NO_TRUST = compileTrustedProxies([])
const cache = new WeakMap<SentinelConfig, Map<string, EdgePolicy>>()

const build = (config: SentinelConfig, listener: ListenerConfig | undefined): EdgePolicy => ({
  validation: validationConfigFor(config.limits),
  trusted: listener?.trustedProxies && listener.trustedProxies.length > 0 ? compileTrustedProxies(listener.trustedProxies) : NO_TRUST
})

/** The policy for requests on `listenerId` under `config` (cached per config object). */
export const edgePolicyFor = (config: SentinelConfig, listenerId: string): EdgePolicy => {
  let perListener = cache.get(config)
  if (perListener === undefined) {
    perListener = new Map()
    cache.set(config, perListener)
  }
  let policy = perListener.get(listenerId)
  if (policy === undefined) {
    policy = build(config, config.listeners.find((l) => l.id === listenerId))
    perListener.set(listenerId, policy)
  }
  return policy
}
