/** `routes { route "id" { ... } }` as KDL (the reverse of blocks/Routes.ts). */
import type { HeaderOps, RouteConfig, RouteMatch } from "../Schema.js"
import { circuitBreaker } from "./Resilience.js"
import { bool, kdlString, secs, strings, type Writer } from "./Writer.js"

/** `rename`/`set`/`add`/`remove` where they stand: in a route's `request-headers`, or directly in a headers filter. */
export const headerEdits = (w: Writer, ops: HeaderOps): void => {
  for (const [key, pairs] of [["rename", ops.rename], ["set", ops.set], ["add", ops.add]] as const) {
    if (pairs.length > 0) w.block(key, () => pairs.forEach(([a, b]) => w.line(`${kdlString(a)} ${kdlString(b)}`)))
  }
  if (ops.remove.length > 0) w.line(`remove ${strings(ops.remove)}`)
}

const headerOps = (w: Writer, name: string, ops: HeaderOps): void => w.block(name, () => headerEdits(w, ops))

const match = (m: RouteMatch): string => {
  switch (m._tag) {
    case "Path":
      return `path ${kdlString(m.path)}`
    case "PathPrefix":
      return `path-prefix ${kdlString(m.prefix)}`
    case "PathRegex":
      return `path-regex ${kdlString(m.pattern)}`
    case "Host":
      return `host ${kdlString(m.host)}`
    case "Header":
      return `header ${kdlString(m.name)}${m.value === undefined ? "" : ` ${kdlString(m.value)}`}`
    case "Method":
      return `method ${m.methods.map(kdlString).join(" ")}`
    case "QueryParam":
      return `query-param ${kdlString(m.name)}${m.value === undefined ? "" : ` ${kdlString(m.value)}`}`
  }
}

export const route = (w: Writer, r: RouteConfig): void =>
  w.block(`route ${kdlString(r.id)}`, () => {
    w.line(`priority ${r.priority}`)
    if (r.matches.length > 0) w.block("matches", () => r.matches.forEach((m) => w.line(match(m))))
    if (r.upstream !== undefined) w.line(`upstream ${kdlString(r.upstream)}`)
    if (r.builtinHandler !== undefined) w.line(`builtin-handler ${kdlString(r.builtinHandler)}`)
    const sf = r.staticFiles
    if (sf !== undefined) {
      w.block("static-files", () => {
        w.line(`root ${kdlString(sf.root)}`)
        w.line(`index ${kdlString(sf.index)}`)
        w.line(`directory-listing ${bool(sf.directoryListing)}`)
        w.line(`cache-control ${kdlString(sf.cacheControl)}`)
        w.line(`compress ${bool(sf.compress)}`)
        w.line(`compress-min-size ${sf.compressMinSize}`)
        if (sf.fallback !== null) w.line(`fallback ${kdlString(sf.fallback)}`)
        w.line(`allow-dotfiles ${bool(sf.allowDotfiles)}`)
      })
    }
    if (r.filters.length > 0) w.line(`filters ${strings(r.filters)}`)
    const rp = r.retryPolicy
    if (rp !== undefined) {
      w.block("retry-policy", () => {
        w.line(`max-attempts ${rp.maxAttempts}`)
        if (rp.retryableStatusCodes.length > 0) w.line(`retryable-status-codes ${rp.retryableStatusCodes.join(" ")}`)
        w.line(`backoff ${rp.backoffMs}`)
        w.line(`max-backoff ${rp.maxBackoffMs}`)
        if (rp.perAttemptTimeoutMs !== undefined) w.line(`per-attempt-timeout ${rp.perAttemptTimeoutMs}`)
        w.line(`retry-non-idempotent ${bool(rp.retryNonIdempotent)}`)
      })
    }
    w.block("policies", () => {
      headerOps(w, "request-headers", r.policies.requestHeaders)
      headerOps(w, "response-headers", r.policies.responseHeaders)
      if (r.policies.timeout !== undefined) w.line(`timeout-secs ${secs(r.policies.timeout)}`)
      if (r.policies.failureMode !== undefined) w.line(`failure-mode ${kdlString(r.policies.failureMode)}`)
      if (r.policies.maxBodySize !== undefined) w.line(`max-body-size ${r.policies.maxBodySize}`)
      w.line(`buffer-requests ${bool(r.policies.bufferRequests)}`)
      w.line(`buffer-responses ${bool(r.policies.bufferResponses)}`)
    })
    if (r.circuitBreaker !== undefined) circuitBreaker(w, r.circuitBreaker)
    if (r.websocket) w.line("websocket #true")
    if (r.websocketInspection) w.line("websocket-inspection #true")
    const rc = r.cache
    if (rc !== undefined) {
      w.block("cache", () => {
        w.line(`enabled ${bool(rc.enabled)}`)
        w.line(`default-ttl-secs ${secs(rc.defaultTtl)}`)
        w.line(`max-size-bytes ${rc.maxSizeBytes}`)
        w.line(`cache-private ${bool(rc.cachePrivate)}`)
        w.line(`stale-while-revalidate-secs ${secs(rc.staleWhileRevalidate)}`)
        w.line(`stale-if-error-secs ${secs(rc.staleIfError)}`)
        w.line(`cacheable-methods ${strings(rc.cacheableMethods)}`)
        w.line(`cacheable-status-codes ${rc.cacheableStatusCodes.join(" ")}`)
        if (rc.varyHeaders.length > 0) w.line(`vary-headers ${strings(rc.varyHeaders)}`)
        if (rc.ignoreQueryParams.length > 0) w.line(`ignore-query-params ${strings(rc.ignoreQueryParams)}`)
        if (rc.excludeExtensions.length > 0) w.line(`exclude-extensions ${strings(rc.excludeExtensions)}`)
        if (rc.excludePaths.length > 0) w.line(`exclude-paths ${strings(rc.excludePaths)}`)
      })
    }
  })
