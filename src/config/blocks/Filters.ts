/**
 * `filters { filter "<id>" { type "<t>"; ... } }`. One table of every filter
 * key (so unknown keys get a hint and tools can list them all); each type
 * then accepts only its own keys. The filter modules' own validators run on
 * the result, so the decoder and the runtime agree on what is valid.
 */
import type { Node } from "@bgotink/kdl"
import type * as Schema from "effect/Schema"
import { validateHeadersFilter, validateRedirect, validateTimeoutFilter } from "../FilterChecks.js"
import type { CorsFilterConfig, SecurityHeadersFilterConfig } from "../FilterSchema.js"
import { type FilterConfig, type FilterType, filterTypes, filterTypesNotSupportedYet, type HeaderOps } from "../Schema.js"
import { type BlockSpec, type Field, block, compact, custom, entity, list, scalar, shape } from "../KdlDecoder.js"
import type { Cx } from "../KdlContext.js"
import {
  type Val, bool, bytes, count, ident, int, millis, nonEmpty, nullable, num, oneOf, positive, positiveMs, status, str
} from "../KdlValues.js"
import { flattenHeaderOps, headerName, pairs, removeField, token } from "./Routes.js"
import { hint } from "../ConfigIssue.js"


const headerValue: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  // eslint-disable-next-line no-control-regex
  return /[\x00-\x08\x0a-\x1f\x7f]/.test(s) ? cx.error(at, `${what} must not contain control characters`) : s
}
export const rateLimitKey: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  if (["client-ip", "path", "route", "client-ip-and-path"].includes(s)) return s
  const m = /^header:(.+)$/.exec(s)
  if (m !== null && token.test(m[1])) return s
  return cx.error(at, `${what} must be "client-ip", "path", "route", "client-ip-and-path" or "header:<name>", got ${JSON.stringify(s)}`)
}
const urlPath: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  // eslint-disable-next-line no-control-regex
  return s.startsWith("/") && !/[\x00-\x20\x7f?#]/.test(s) ? s : cx.error(at, `${what} must be a path starting with "/" (no spaces, "?" or "#"), got ${JSON.stringify(s)}`)
}
const method: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return token.test(s) ? s.toUpperCase() : cx.error(at, `${what} ${JSON.stringify(s)} is not a valid HTTP method`)
}
/**
 * Rate-limit `backend`: where the buckets live. "local" (in this process, the default) or
 * "redis" (shared by a fleet, the `redis-*` keys); Sentinel's "memcached" is not supported yet.
 */
const rateLimitBackend: Val<"local" | "redis"> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  const n = s.trim().toLowerCase()
  if (n === "local" || n === "redis") return n
  if (n === "memcached" || n === "memcache") {
    return cx.error(at, `${what} ${JSON.stringify(s)} is not supported yet (use "redis" for counters a fleet shares, or "local")`)
  }
  return cx.error(at, `${what} must be "local" or "redis", got ${JSON.stringify(s)}${hint(n, ["local", "redis", "memcached"])}`)
}
const redisUrl: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  let u: URL | undefined
  try {
    u = new URL(s)
  } catch {
    u = undefined
  }
  if (u === undefined || (u.protocol !== "redis:" && u.protocol !== "rediss:") || u.hostname === "" || /\s/.test(s)) {
    return cx.error(at, `${what} must be a URL like "redis://host:6379" or "rediss://user:password@host:6380/0", got ${JSON.stringify(s)}`)
  }
  const db = u.pathname.replace(/^\//, "")
  if (db !== "" && !/^\d{1,2}$/.test(db)) return cx.error(at, `${what}: the path is the database number (0-99), got ${JSON.stringify(u.pathname)}`)
  return s
}
/** `redis-fallback #true` (local limiter, as Sentinel) / `#false` (admit, as Sentinel) / "local" | "open" | "closed". */
const redisFallback: Val<"local" | "open" | "closed"> = (v, at, cx, what) => {
  if (v === true) return "local"
  if (v === false) return "open"
  if (typeof v === "string") {
    const n = v.trim().toLowerCase()
    if (n === "local" || n === "open" || n === "closed") return n
    return cx.error(at, `${what} must be #true (the local limiter), #false or "open" (admit), "local" or "closed" (503), got ${JSON.stringify(v)}${hint(n, ["local", "open", "closed"])}`)
  }
  return cx.error(at, `${what} must be #true, #false, "local", "open" or "closed", got ${String(v)}`)
}
const secsNumber = num({ min: 0, max: 365 * 86400, exclusiveMin: true })

type Coding = "gzip" | "br" | "deflate"
const CODINGS: Record<string, Coding> = { gzip: "gzip", br: "br", brotli: "br", deflate: "deflate" }
/**
 * `algorithms "gzip,br"` (Sentinel's comma string) or `algorithms "gzip" "br"`: the codings
 * offered, in order of preference. Sentinel drops a name it does not know; here it is an error.
 */
const algorithmsField: Field<ReadonlyArray<Coding>> = custom("algorithms", (node, cx) => {
  if (!shape(node, cx, { args: [1, Infinity] })) return undefined
  const out: Array<Coding> = []
  let ok = true
  for (const e of node.getArgumentEntries()) {
    const s = str(e.getValue(), e, cx, "`algorithms`")
    if (s === undefined) {
      ok = false
      continue
    }
    for (const part of s.split(",")) {
      const name = part.trim().toLowerCase()
      const c = CODINGS[name]
      if (c !== undefined) {
        if (!out.includes(c)) out.push(c)
        continue
      }
      ok = false
      if (name === "zstd") cx.error(e, "`algorithms`: \"zstd\" is not supported yet (node:zlib on Node 20 has no zstd); use \"gzip\", \"br\" or \"deflate\"")
      else cx.error(e, `\`algorithms\`: unknown algorithm ${JSON.stringify(part.trim())}; use "gzip", "br" (or "brotli") or "deflate"${hint(name, Object.keys(CODINGS))}`)
    }
  }
  if (ok && out.length === 0) return cx.error(node, "`algorithms` names no algorithm")
  return ok ? out : undefined
})
/** A media type `type/subtype`, `type/*` or Sentinel's prefix form `type/`, lower-cased. */
const compressType: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  const t = s.trim().toLowerCase()
  return /^[a-z0-9][a-z0-9!#$&^_.+-]*\/(?:\*|[a-z0-9!#$&^_.+-]*)$/.test(t)
    ? t
    : cx.error(at, `${what} must be a media type like "text/html" or "text/*", got ${JSON.stringify(s)}`)
}

type CorsFields = Omit<Schema.Schema.Type<typeof CorsFilterConfig>, "id" | "type">
type SecurityHeadersFields = Omit<Schema.Schema.Type<typeof SecurityHeadersFilterConfig>, "id" | "type">

/** Every key any filter type reads (the cors and security-headers keys are their filters' configs). */
interface FilterFields extends CorsFields, SecurityHeadersFields {
  readonly type: FilterType
  readonly phase: "request" | "response" | "both"
  readonly rename: ReadonlyArray<readonly [string, string]>
  readonly set: ReadonlyArray<readonly [string, string]>
  readonly add: ReadonlyArray<readonly [string, string]>
  readonly remove: ReadonlyArray<string>
  readonly maxRps: number
  readonly burst: number
  readonly key: string
  readonly onLimit: "reject" | "delay" | "log-only"
  readonly statusCode: number
  readonly message: string
  readonly maxDelayMs: number
  readonly maxKeys: number
  readonly backend: "local" | "redis"
  readonly redisUrl: string
  readonly redisPrefix: string
  readonly redisPoolSize: number
  readonly redisTimeoutMs: number
  readonly redisFallback: "local" | "open" | "closed"
  readonly redisFailureThreshold: number
  readonly redisCircuitOpenMs: number
  readonly scheme: "http" | "https"
  readonly hostname: string
  readonly port: number
  readonly replaceFullPath: string
  readonly replacePrefixMatch: string
  readonly requestTimeoutSecs: number
  readonly upstreamTimeoutSecs: number
  readonly connectTimeoutSecs: number
  readonly agent: string
  readonly failureMode: "open" | "closed"
  readonly timeoutMs: number
  readonly inspectBody: boolean
  readonly maxBodyBytes: number
  readonly algorithms: ReadonlyArray<Coding>
  readonly minSize: number
  readonly level: number
  readonly contentTypes: ReadonlyArray<string>
}

export const filterSpec: BlockSpec<FilterFields> = {
  path: "filters.filter",
  fields: {
    type: scalar("type", oneOf(filterTypes, { notSupported: filterTypesNotSupportedYet })),
    phase: scalar("phase", oneOf(["request", "response", "both"] as const)),
    rename: pairs("rename", headerName) as Field<any>,
    set: pairs("set", headerValue) as Field<any>,
    add: pairs("add", headerValue) as Field<any>,
    remove: removeField as Field<any>,
    maxRps: scalar("max-rps", num({ min: 0, max: 1e9, exclusiveMin: true })),
    burst: scalar("burst", positive),
    key: scalar("key", rateLimitKey),
    onLimit: scalar("on-limit", oneOf(["reject", "delay", "log-only"] as const)),
    statusCode: scalar("status-code", status),
    message: scalar("message", str),
    maxDelayMs: scalar("max-delay-ms", millis),
    maxKeys: scalar("max-keys", positive),
    backend: scalar("backend", rateLimitBackend),
    redisUrl: scalar("redis-url", redisUrl),
    redisPrefix: scalar("redis-prefix", str),
    redisPoolSize: scalar("redis-pool-size", int({ min: 1, max: 256 })),
    redisTimeoutMs: scalar("redis-timeout-ms", positiveMs(1)),
    redisFallback: scalar(["redis-fallback", "redis-fallback-local"], redisFallback),
    redisFailureThreshold: scalar("redis-failure-threshold", positive),
    redisCircuitOpenMs: scalar("redis-circuit-open-ms", positiveMs(1)),
    allowedOrigins: list("allowed-origins", nonEmpty),
    allowedMethods: list("allowed-methods", method),
    allowedHeaders: list("allowed-headers", (v, at, cx, what) => (v === "*" ? "*" : headerName(v, at, cx, what))),
    exposeHeaders: list("expose-headers", headerName),
    allowCredentials: scalar("allow-credentials", bool),
    maxAgeSecs: scalar(["max-age", "max-age-secs"], count),
    scheme: scalar("scheme", oneOf(["http", "https"] as const)),
    hostname: scalar("hostname", nonEmpty),
    port: scalar("port", int({ min: 1, max: 65535 })),
    replaceFullPath: scalar("replace-full-path", urlPath),
    replacePrefixMatch: scalar("replace-prefix-match", urlPath),
    requestTimeoutSecs: scalar("request-timeout-secs", secsNumber),
    upstreamTimeoutSecs: scalar("upstream-timeout-secs", secsNumber),
    connectTimeoutSecs: scalar("connect-timeout-secs", secsNumber),
    hsts: scalar("hsts", nullable(headerValue)),
    contentTypeOptions: scalar("content-type-options", bool),
    frameOptions: scalar("frame-options", nullable(oneOf(["DENY", "SAMEORIGIN"] as const))),
    referrerPolicy: scalar("referrer-policy", nullable(headerValue)),
    contentSecurityPolicy: scalar("content-security-policy", nullable(headerValue)),
    permissionsPolicy: scalar("permissions-policy", nullable(headerValue)),
    crossOriginOpenerPolicy: scalar("cross-origin-opener-policy", nullable(headerValue)),
    override: scalar("override", bool),
    agent: custom("agent", (node, cx) => {
      if (!shape(node, cx, { args: [1, 1] })) return undefined
      const e = node.getArgumentEntry(0)!
      const id = ident(e.getValue(), e, cx, "`agent`")
      if (id !== undefined) cx.reference("agent", id, e, "references")
      return id
    }),
    failureMode: scalar("failure-mode", oneOf(["open", "closed"] as const, {
      aliases: { "fail-open": "open", fail_open: "open", "fail-closed": "closed", fail_closed: "closed" }
    })),
    timeoutMs: scalar("timeout-ms", positiveMs(1)),
    inspectBody: scalar("inspect-body", bool),
    maxBodyBytes: scalar("max-body-bytes", bytes),
    algorithms: algorithmsField,
    minSize: scalar(["min-size", "min-size-bytes"], bytes),
    level: scalar("level", int({ min: 1, max: 9 })),
    contentTypes: list("content-types", compressType)
  }
}

const REDIS_KEYS = [
  "redisUrl", "redisPrefix", "redisPoolSize", "redisTimeoutMs", "redisFallback", "redisFailureThreshold", "redisCircuitOpenMs"
] as const

/** Keys each type accepts (besides `type`). */
const keysOf: Record<FilterType, ReadonlyArray<keyof FilterFields>> = {
  headers: ["phase", "rename", "set", "add", "remove"],
  "rate-limit": [
    "maxRps", "burst", "key", "onLimit", "statusCode", "message", "maxDelayMs", "maxKeys", "backend", ...REDIS_KEYS
  ],
  cors: ["allowedOrigins", "allowedMethods", "allowedHeaders", "exposeHeaders", "allowCredentials", "maxAgeSecs"],
  redirect: ["statusCode", "scheme", "hostname", "port", "replaceFullPath", "replacePrefixMatch"],
  "url-rewrite": ["hostname", "replaceFullPath", "replacePrefixMatch"],
  timeout: ["requestTimeoutSecs", "upstreamTimeoutSecs", "connectTimeoutSecs"],
  "security-headers": [
    "hsts", "contentTypeOptions", "frameOptions", "referrerPolicy", "contentSecurityPolicy", "permissionsPolicy",
    "crossOriginOpenerPolicy", "override"
  ],
  agent: ["agent", "failureMode", "timeoutMs", "inspectBody", "maxBodyBytes"],
  compress: ["algorithms", "minSize", "level", "contentTypes"]
}

const kdlName = (k: keyof FilterFields): string => filterSpec.fields[k].names[0]

const pathModifier = (f: Partial<FilterFields>) =>
  f.replaceFullPath !== undefined
    ? { _tag: "ReplaceFullPath" as const, path: f.replaceFullPath }
    : f.replacePrefixMatch !== undefined
      ? { _tag: "ReplacePrefixMatch" as const, prefix: f.replacePrefixMatch }
      : undefined

const build = (id: string, f: Partial<FilterFields>, node: Node, cx: Cx): FilterConfig | undefined => {
  const written = (n: string) => node.children?.nodes.some((c) => c.getName() === n) ?? false
  if (f.type === undefined) {
    if (!written("type")) cx.error(node, `filter "${id}" needs a \`type\` (${filterTypes.map((t) => `"${t}"`).join(", ")})`)
    return undefined
  }
  const type = f.type
  const allowed = keysOf[type]
  let ok = true
  for (const child of node.children?.nodes ?? []) {
    const name = child.getName()
    const key = (Object.keys(filterSpec.fields) as Array<keyof FilterFields>).find((k) => filterSpec.fields[k].names.includes(name))
    if (key === undefined || key === "type" || allowed.includes(key)) continue
    ok = false
    cx.error(child, type === "agent" && key === "phase"
      ? "`phase` is not supported on an agent filter: the agent's `events` decide which phases it sees"
      : `\`${name}\` does not apply to a filter of type "${type}"; it takes ${allowed.map((k) => `\`${kdlName(k)}\``).join(", ")}`)
  }
  if (!ok) return undefined
  if (f.replaceFullPath !== undefined && f.replacePrefixMatch !== undefined) {
    return cx.error(node, `filter "${id}" has both \`replace-full-path\` and \`replace-prefix-match\`; use one`)
  }
  let out: FilterConfig
  let problems: Array<string> = []
  switch (type) {
    case "headers": {
      const ops = flattenHeaderOps({ rename: f.rename, set: f.set, add: f.add, remove: f.remove } as Partial<HeaderOps>)
      const full = { phase: f.phase ?? "request", rename: [], set: [], add: [], remove: [], ...ops }
      problems = validateHeadersFilter(full)
      out = { id, type, ...full }
      break
    }
    case "redirect": {
      if (f.statusCode !== undefined && ![301, 302, 303, 307, 308].includes(f.statusCode)) {
        return cx.error(node, `filter "${id}": redirect \`status-code\` must be 301, 302, 303, 307 or 308, got ${f.statusCode}`)
      }
      const r = {
        statusCode: (f.statusCode ?? 302) as 301 | 302 | 303 | 307 | 308,
        scheme: f.scheme ?? null,
        hostname: f.hostname ?? null,
        port: f.port ?? null,
        path: pathModifier(f) ?? null
      }
      problems = validateRedirect(r)
      out = { id, type, ...r }
      break
    }
    case "url-rewrite":
      out = { id, type, hostname: f.hostname ?? null, path: pathModifier(f) ?? null }
      break
    case "timeout": {
      const t = {
        requestTimeoutSecs: f.requestTimeoutSecs ?? null,
        upstreamTimeoutSecs: f.upstreamTimeoutSecs ?? null,
        connectTimeoutSecs: f.connectTimeoutSecs ?? null
      }
      problems = validateTimeoutFilter(t)
      out = { id, type, ...t }
      break
    }
    case "agent":
      if (f.agent === undefined) {
        if (!written("agent")) cx.error(node, `filter "${id}" of type "agent" needs an \`agent "<id>"\``)
        return undefined
      }
      out = compact({
        id, type, agent: f.agent, failureMode: f.failureMode, timeoutMs: f.timeoutMs, inspectBody: f.inspectBody, maxBodyBytes: f.maxBodyBytes
      })
      break
    case "rate-limit": {
      const redisSet = REDIS_KEYS.filter((k) => f[k] !== undefined)
      if (f.backend !== "redis" && redisSet.length > 0) {
        const child = node.children!.nodes.find((c) => filterSpec.fields[redisSet[0]].names.includes(c.getName()))
        return cx.error(child ?? node, `\`${child?.getName() ?? kdlName(redisSet[0])}\` applies only with \`backend "redis"\` (filter "${id}" ${f.backend === undefined ? "has no `backend`, so it is local" : "is local"})`)
      }
      const picked = Object.fromEntries(allowed.filter((k) => k !== "backend" && !(REDIS_KEYS as ReadonlyArray<string>).includes(k)).map((k) => [k, f[k]]))
      const backend = f.backend === "redis"
        ? compact({
            type: "redis" as const,
            url: f.redisUrl,
            prefix: f.redisPrefix,
            poolSize: f.redisPoolSize,
            timeoutMs: f.redisTimeoutMs,
            fallback: f.redisFallback,
            failureThreshold: f.redisFailureThreshold,
            circuitOpenMs: f.redisCircuitOpenMs
          })
        : f.backend === "local" ? { type: "local" as const } : undefined
      out = compact({ id, type, ...picked, backend }) as unknown as FilterConfig
      break
    }
    default: {
      // cors, security-headers, compress: the schema fills the defaults
      const picked = Object.fromEntries(allowed.map((k) => [k, f[k]]))
      out = compact({ id, type, ...picked }) as unknown as FilterConfig
    }
  }
  for (const p of problems) cx.error(node, `filter "${id}": ${p}`)
  return problems.length > 0 ? undefined : out
}

export const filterField = entity("filter", filterSpec, build)

export const filtersSpec: BlockSpec<{ filter: ReadonlyArray<FilterConfig> }> = {
  path: "filters",
  fields: { filter: filterField }
}

export const filtersField = block("filters", filtersSpec, (f) => f.filter ?? [])
