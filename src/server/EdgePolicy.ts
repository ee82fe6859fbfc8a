/**
 * The edge settings one request needs (validation limits, trusted proxies), compiled once per
 * configuration and listener and looked up per request with two map reads (hot path). The
 * configuration object is the cache key, so a reload never mixes old and new settings.
 */
import type { LimitsConfig, ListenerConfig, SentinelConfig } from "../config/Schema.js"
import {
  compileTrustedProxies,
  defaultRequestValidationConfig,
  type RequestValidationConfig,
  type TrustedProxies
} from "./RequestValidation.js"

export interface EdgePolicy {
  readonly validation: RequestValidationConfig
  readonly trusted: TrustedProxies
}

/** `limits {…}` -> the validator's settings (every field has its documented default in Schema.ts). */
export const validationConfigFor = (limits: LimitsConfig): RequestValidationConfig => ({
  ...defaultRequestValidationConfig,
  maxHeaderCount: limits.maxHeaderCount,
  maxHeaderSize: limits.maxHeaderSize,
  maxUriLength: limits.maxUriLength,
  maxHeaderLineSize: limits.maxHeaderLineSize ?? defaultRequestValidationConfig.maxHeaderLineSize,
  underscoresInHeaders: limits.underscoresInHeaders ?? defaultRequestValidationConfig.underscoresInHeaders,
  allowTrace: limits.allowTrace ?? defaultRequestValidationConfig.allowTrace,
  mergeSlashes: limits.mergeSlashes ?? defaultRequestValidationConfig.mergeSlashes,
  normalizePath: limits.normalizePath ?? defaultRequestValidationConfig.normalizePath,
  escapedSlashes: limits.escapedSlashes ?? defaultRequestValidationConfig.escapedSlashes
})

/**
 * Connections whose stream can no longer be trusted (a request on them was refused, or a
 * deadline hit): requests node already parsed behind the refused one (pipelining) are never
 * served, and the connection closes once the refusal is written.
 */
const closing = new WeakSet<object>()
export const markClosing = (socket: object): void => {
  closing.add(socket)
}
export const isClosing = (socket: object): boolean => closing.has(socket)

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
