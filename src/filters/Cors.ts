/**
 * `filter "<id>" { type "cors"; allowed-origins "https://app.example" "https://*.example.com"; … }`.
 * (Sentinel parses none of these properties and always allows `*`; here each one is honoured.)
 *
 * Preflights are answered here (never forwarded); actual requests continue with CORS response
 * headers. `Access-Control-Allow-Origin: *` is never combined with credentials: with
 * `allow-credentials #true` the matching origin is echoed instead, with `Vary: Origin`.
 */
import type { FilterOutcome, FilterRequest } from "./FilterOutcome.js"

export interface CorsConfig {
  /** KDL `allowed-origins`: exact origins, `*` (any), or patterns with `*` for one or more host labels ("https://*.example.com"). Default "*". */
  readonly allowedOrigins: ReadonlyArray<string>
  /** KDL `allowed-methods`. Default GET HEAD POST PUT PATCH DELETE OPTIONS. */
  readonly allowedMethods: ReadonlyArray<string>
  /** KDL `allowed-headers`: request headers a preflight may ask for; "*" = whatever is asked. Default "*". */
  readonly allowedHeaders: ReadonlyArray<string>
  /** KDL `expose-headers`: response headers scripts may read. Default none. */
  readonly exposeHeaders: ReadonlyArray<string>
  /** KDL `allow-credentials`. Default #false. */
  readonly allowCredentials: boolean
  /** KDL `max-age` (seconds a preflight may be cached). Default 86400. */
  readonly maxAgeSecs: number
}

export const defaultCorsConfig: CorsConfig = {
  allowedOrigins: ["*"],
  allowedMethods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
  allowedHeaders: ["*"],
  exposeHeaders: [],
  allowCredentials: false,
  maxAgeSecs: 86400
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** A serialized origin (RFC 6454 §6.2): `scheme://host[:port]`; anything else is never echoed. */
const ORIGIN = /^[a-z][a-z0-9+.-]*:\/\/(?:[a-z0-9._~-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$/i
const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

export interface CompiledCors {
  readonly config: CorsConfig
  /** Whether `origin` (exact header value) is allowed. */
  readonly originAllowed: (origin: string) => boolean
  /** Decides one request (request phase). */
  readonly check: (req: FilterRequest) => FilterOutcome
}

export const compileCors = (config: CorsConfig): CompiledCors => {
  const any = config.allowedOrigins.includes("*")
  const exact = new Set(config.allowedOrigins.filter((o) => !o.includes("*")).map((o) => o.toLowerCase()))
  const patterns = config.allowedOrigins
    .filter((o) => o !== "*" && o.includes("*"))
    .map((o) => new RegExp("^" + o.toLowerCase().split("*").map(escapeRegex).join("[a-z0-9-]+(?:\\.[a-z0-9-]+)*") + "$"))
  const methods = new Set(config.allowedMethods.map((m) => m.toUpperCase()))
  const anyHeader = config.allowedHeaders.includes("*")
  const headers = new Set(config.allowedHeaders.map((h) => h.toLowerCase()))
  const originAllowed = (origin: string): boolean => {
    const o = origin.toLowerCase()
    if (exact.has(o)) return true
    if (!ORIGIN.test(o)) return false
    // "null" (sandboxed iframes, file:) only when listed explicitly
    if (o === "null") return false
    if (any) return true
    return patterns.some((p) => p.test(o))
  }
  // "*" is only sent without credentials and when every origin is allowed
  const wildcard = any && !config.allowCredentials
  const allowOriginFor = (origin: string): string => (wildcard && !exact.has(origin.toLowerCase()) ? "*" : origin)
  const varyOrigin = !wildcard || exact.size > 0 || patterns.length > 0
  const common = (origin: string): Array<string> => {
    const out = ["Access-Control-Allow-Origin", allowOriginFor(origin)]
    if (config.allowCredentials) out.push("Access-Control-Allow-Credentials", "true")
    if (varyOrigin) out.push("Vary", "Origin")
    return out
  }
  const check = (req: FilterRequest): FilterOutcome => {
    const origin = req.header("origin")
    if (origin === undefined) return { _tag: "Continue" }
    const requestedMethod = req.header("access-control-request-method")
    if (req.method === "OPTIONS" && requestedMethod !== undefined) {
      const vary = ["Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]
      if (!originAllowed(origin) || !methods.has(requestedMethod.trim().toUpperCase())) {
        return { _tag: "Respond", status: 403, headers: [...vary, "Content-Length", "0"], body: "", reason: "cors-preflight-denied" }
      }
      const asked = (req.header("access-control-request-headers") ?? "")
        .split(",")
        .map((h) => h.trim().toLowerCase())
        .filter((h) => h.length > 0)
      if (asked.some((h) => !TOKEN.test(h) || (!anyHeader && !headers.has(h)))) {
        return { _tag: "Respond", status: 403, headers: [...vary, "Content-Length", "0"], body: "", reason: "cors-preflight-denied" }
      }
      const out = ["Access-Control-Allow-Origin", allowOriginFor(origin)]
      if (config.allowCredentials) out.push("Access-Control-Allow-Credentials", "true")
      out.push("Access-Control-Allow-Methods", [...methods].join(", "))
      // with credentials "*" would mean a header literally named "*": echo what was asked instead
      if (asked.length > 0) out.push("Access-Control-Allow-Headers", anyHeader && !config.allowCredentials ? "*" : asked.join(", "))
      out.push("Access-Control-Max-Age", String(config.maxAgeSecs), ...vary, "Content-Length", "0")
      return { _tag: "Respond", status: 204, headers: out, body: "", reason: "cors-preflight" }
    }
    if (!originAllowed(origin)) return { _tag: "Continue", responseHeaders: ["Vary", "Origin"] }
    const out = common(origin)
    if (config.exposeHeaders.length > 0) out.push("Access-Control-Expose-Headers", config.exposeHeaders.join(", "))
    return { _tag: "Continue", responseHeaders: out }
  }
  return { config, originAllowed, check }
}
