/** `filters { filter "id" { type "..."; ... } }` as KDL (the reverse of blocks/Filters.ts). */
import type { FilterConfig, PathModifier } from "../Schema.js"
import { headerEdits } from "./Routes.js"
import { bool, kdlString, nullableStr, strings, type Writer } from "./Writer.js"

const pathModifier = (w: Writer, p: PathModifier | null): void => {
  if (p?._tag === "ReplaceFullPath") w.line(`replace-full-path ${kdlString(p.path)}`)
  if (p?._tag === "ReplacePrefixMatch") w.line(`replace-prefix-match ${kdlString(p.prefix)}`)
}

export const filter = (w: Writer, f: FilterConfig): void =>
  w.block(`filter ${kdlString(f.id)}`, () => {
    w.line(`type ${kdlString(f.type)}`)
    switch (f.type) {
      case "headers":
        w.line(`phase ${kdlString(f.phase)}`)
        headerEdits(w, f)
        break
      case "rate-limit":
        w.line(`max-rps ${f.maxRps}`)
        w.line(`burst ${f.burst}`)
        w.line(`key ${kdlString(f.key)}`)
        w.line(`on-limit ${kdlString(f.onLimit)}`)
        w.line(`status-code ${f.statusCode}`)
        w.line(`message ${kdlString(f.message)}`)
        w.line(`max-delay-ms ${f.maxDelayMs}`)
        w.line(`max-keys ${f.maxKeys}`)
        w.line(`backend ${kdlString(f.backend.type)}`)
        if (f.backend.type === "redis") {
          const b = f.backend
          w.line(`redis-url ${kdlString(b.url)}`)
          w.line(`redis-prefix ${kdlString(b.prefix)}`)
          w.line(`redis-pool-size ${b.poolSize}`)
          w.line(`redis-timeout-ms ${b.timeoutMs}`)
          w.line(`redis-fallback ${kdlString(b.fallback)}`)
          w.line(`redis-failure-threshold ${b.failureThreshold}`)
          w.line(`redis-circuit-open-ms ${b.circuitOpenMs}`)
        }
        break
      case "cors":
        if (f.allowedOrigins.length > 0) w.line(`allowed-origins ${strings(f.allowedOrigins)}`)
        if (f.allowedMethods.length > 0) w.line(`allowed-methods ${strings(f.allowedMethods)}`)
        if (f.allowedHeaders.length > 0) w.line(`allowed-headers ${strings(f.allowedHeaders)}`)
        if (f.exposeHeaders.length > 0) w.line(`expose-headers ${strings(f.exposeHeaders)}`)
        w.line(`allow-credentials ${bool(f.allowCredentials)}`)
        w.line(`max-age ${f.maxAgeSecs}`)
        break
      case "redirect":
        w.line(`status-code ${f.statusCode}`)
        if (f.scheme !== null) w.line(`scheme ${kdlString(f.scheme)}`)
        if (f.hostname !== null) w.line(`hostname ${kdlString(f.hostname)}`)
        if (f.port !== null) w.line(`port ${f.port}`)
        pathModifier(w, f.path)
        break
      case "url-rewrite":
        if (f.hostname !== null) w.line(`hostname ${kdlString(f.hostname)}`)
        pathModifier(w, f.path)
        break
      case "timeout":
        if (f.requestTimeoutSecs !== null) w.line(`request-timeout-secs ${f.requestTimeoutSecs}`)
        if (f.upstreamTimeoutSecs !== null) w.line(`upstream-timeout-secs ${f.upstreamTimeoutSecs}`)
        if (f.connectTimeoutSecs !== null) w.line(`connect-timeout-secs ${f.connectTimeoutSecs}`)
        break
      case "security-headers":
        w.line(`hsts ${nullableStr(f.hsts)}`)
        w.line(`content-type-options ${bool(f.contentTypeOptions)}`)
        w.line(`frame-options ${nullableStr(f.frameOptions)}`)
        w.line(`referrer-policy ${nullableStr(f.referrerPolicy)}`)
        w.line(`content-security-policy ${nullableStr(f.contentSecurityPolicy)}`)
        w.line(`permissions-policy ${nullableStr(f.permissionsPolicy)}`)
        w.line(`cross-origin-opener-policy ${nullableStr(f.crossOriginOpenerPolicy)}`)
        w.line(`override ${bool(f.override)}`)
        break
      case "agent":
        w.line(`agent ${kdlString(f.agent)}`)
        if (f.failureMode !== undefined) w.line(`failure-mode ${kdlString(f.failureMode)}`)
        if (f.timeoutMs !== undefined) w.line(`timeout-ms ${f.timeoutMs}`)
        if (f.inspectBody !== undefined) w.line(`inspect-body ${bool(f.inspectBody)}`)
        if (f.maxBodyBytes !== undefined) w.line(`max-body-bytes ${f.maxBodyBytes}`)
        break
    }
  })
