/** `routes { route "id" { ... } }`: which requests go where. */
import type { Node } from "@bgotink/kdl"
import {
  BuiltinHandler, type CircuitBreakerConfig, type HeaderOps, namedPriorities, type RetryPolicyConfig, type RouteConfig, type RouteMatch,
  type RouteCacheConfig, type StaticFilesConfig
} from "../Schema.js"
import { circuitBreakerSpec, retryPolicyField } from "./Resilience.js"
import { routeCacheField } from "./Cache.js"
import { builtinHandlersNotSupportedYet } from "../NotSupportedYet.js"
import { hint } from "../ConfigIssue.js"
import { type BlockSpec, block, children, compact, custom, decodeBlock, entity, many, scalar, shape } from "../KdlDecoder.js"
import type { Cx } from "../KdlContext.js"
import { type Val, bool, bytes, ident, nonEmpty, oneOf, secs, str } from "../KdlValues.js"

export const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

export const headerName: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return token.test(s) ? s : cx.error(at, `${what} ${JSON.stringify(s)} is not a valid header name`)
}
const headerValue: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return /[\r\n\0]/.test(s) ? cx.error(at, `${what} must not contain CR, LF or NUL`) : s
}

/** A block of `"Name" "value"` lines (`set { ... }`, `rename { "Old" "New" }`). */
export const pairs = (name: string, second: Val<string>) =>
  custom(name, (node, cx): ReadonlyArray<readonly [string, string]> | undefined => {
    if (!shape(node, cx, { args: [0, 0], children: true })) return undefined
    if (node.children === null) return cx.error(node, `\`${name}\` needs a { "Name" "value" } block`)
    const out: Array<readonly [string, string]> = []
    for (const child of children(node)) {
      const n = child.getName()
      if (!token.test(n)) {
        cx.error(child, `${JSON.stringify(n)} is not a valid header name`)
        continue
      }
      if (!shape(child, cx, { args: [1, 1] })) continue
      const e = child.getArgumentEntry(0)!
      const v = second(e.getValue(), e, cx, `value of \`${n}\``)
      if (v !== undefined) out.push([n, v] as const)
    }
    return out
  }, { many: true })

export const removeField = many(custom("remove", (node, cx) => {
  if (!shape(node, cx, { args: [1, Infinity] })) return undefined
  const names = node.getArgumentEntries().map((e) => headerName(e.getValue(), e, cx, "`remove`"))
  return names.every((n) => n !== undefined) ? (names as Array<string>) : undefined
}))

export const headerOpsSpec = (path: string): BlockSpec<HeaderOps> => ({
  path,
  fields: {
    rename: pairs("rename", headerName),
    set: pairs("set", headerValue),
    add: pairs("add", headerValue),
    remove: removeField
  }
})

/** Repeated `set {}` / `remove` lines concatenate. */
export const flattenHeaderOps = (f: Partial<HeaderOps>): Partial<HeaderOps> =>
  compact({
    rename: (f.rename as unknown as ReadonlyArray<ReadonlyArray<readonly [string, string]>> | undefined)?.flat(),
    set: (f.set as unknown as ReadonlyArray<ReadonlyArray<readonly [string, string]>> | undefined)?.flat(),
    add: (f.add as unknown as ReadonlyArray<ReadonlyArray<readonly [string, string]>> | undefined)?.flat(),
    remove: (f.remove as unknown as ReadonlyArray<ReadonlyArray<string>> | undefined)?.flat()
  })

const headerOps = (name: string, path: string) =>
  block(name, headerOpsSpec(path), (f) =>
    compact({
      rename: (f.rename as unknown as ReadonlyArray<ReadonlyArray<readonly [string, string]>> | undefined)?.flat(),
      set: (f.set as unknown as ReadonlyArray<ReadonlyArray<readonly [string, string]>> | undefined)?.flat(),
      add: (f.add as unknown as ReadonlyArray<ReadonlyArray<readonly [string, string]>> | undefined)?.flat(),
      remove: (f.remove as unknown as ReadonlyArray<ReadonlyArray<string>> | undefined)?.flat()
    })
  )

const policiesSpec: BlockSpec<RouteConfig["policies"]> = {
  path: "routes.route.policies",
  fields: {
    requestHeaders: headerOps("request-headers", "routes.route.policies.request-headers"),
    responseHeaders: headerOps("response-headers", "routes.route.policies.response-headers"),
    timeout: scalar(["timeout-secs", "timeout"], secs),
    failureMode: scalar("failure-mode", oneOf(["open", "closed"] as const, {
      aliases: { "fail-open": "open", fail_open: "open", "fail-closed": "closed", fail_closed: "closed" }
    })),
    maxBodySize: scalar(["max-body-size", "max-body-size-bytes"], bytes),
    bufferRequests: scalar("buffer-requests", bool),
    bufferResponses: scalar("buffer-responses", bool)
  }
}

// --- static-files ----------------------------------------------------------------

const urlPath: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  // eslint-disable-next-line no-control-regex
  return s.startsWith("/") && !/[\x00-\x20\x7f?#]/.test(s) ? s : cx.error(at, `${what} must be a URL path starting with "/", got ${JSON.stringify(s)}`)
}

const fileName: Val<string> = (v, at, cx, what) => {
  const s = nonEmpty(v, at, cx, what)
  if (s === undefined) return undefined
  return /[/\\\0]/.test(s) || s === "." || s === ".." ? cx.error(at, `${what} must be a file name, got ${JSON.stringify(s)}`) : s
}

const headerValueStr: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return /[\r\n\0]/.test(s) ? cx.error(at, `${what} must not contain CR, LF or NUL`) : s
}

/**
 * `fallback`: the file served when the requested one does not exist (an SPA's shell). Written as
 * Sentinel documents it, a name relative to `root` (`fallback "index.html"`), or as a URL path
 * (`"/index.html"`); both mean the file `index.html` under `root`. The model keeps the URL path
 * the handler resolves under `root` ("/" + the name, each segment percent-encoded), so a name
 * with a space or `%` still names that file. `..` segments are refused: the file stays under root.
 */
const fallbackPath: Val<string> = (v, at, cx, what) => {
  const s = nonEmpty(v, at, cx, what)
  if (s === undefined) return undefined
  if (s.startsWith("/")) return urlPath(s, at, cx, what)
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f\\]/.test(s)) return cx.error(at, `${what} must be a file name under \`root\` without control characters or "\\", got ${JSON.stringify(s)}`)
  const segments = s.split("/").filter((x) => x !== "" && x !== ".")
  if (segments.includes("..")) return cx.error(at, `${what} must name a file under \`root\` (no ".." segments), got ${JSON.stringify(s)}`)
  if (segments.length === 0) return cx.error(at, `${what} must name a file under \`root\`, got ${JSON.stringify(s)}`)
  return "/" + segments.map(encodeURIComponent).join("/")
}

export const staticFilesSpec: BlockSpec<StaticFilesConfig> = {
  path: "routes.route.static-files",
  fields: {
    root: scalar("root", nonEmpty),
    index: scalar("index", fileName),
    directoryListing: scalar("directory-listing", bool),
    cacheControl: scalar("cache-control", headerValueStr),
    compress: scalar("compress", bool),
    compressMinSize: scalar("compress-min-size", bytes),
    fallback: scalar("fallback", fallbackPath),
    allowDotfiles: scalar("allow-dotfiles", bool)
  }
}

const staticFilesField = block("static-files", staticFilesSpec, (f, node, cx) => {
  if (f.root === undefined) {
    if (!node.children?.nodes.some((n) => n.getName() === "root")) cx.error(node, "`static-files` needs a `root` directory")
    return undefined
  }
  return f
})

/** `filters "a" "b"`: references checked once the whole document is read; repeated lines concatenate. */
const filtersField = many(custom("filters", (node, cx): ReadonlyArray<string> | undefined => {
  if (!shape(node, cx, { args: [1, Infinity] })) return undefined
  const out: Array<string> = []
  for (const e of node.getArgumentEntries()) {
    const id = ident(e.getValue(), e, cx, "filter id")
    if (id === undefined) return undefined
    cx.reference("filter", id, e, "references")
    out.push(id)
  }
  return out
}))

// --- matches ---------------------------------------------------------------

const one = (name: string, build: (s: string) => RouteMatch, val: Val<string> = str) =>
  custom(name, (node, cx) => {
    if (!shape(node, cx, { args: [1, 1] })) return undefined
    const e = node.getArgumentEntry(0)!
    const s = val(e.getValue(), e, cx, `\`${name}\``)
    return s === undefined ? undefined : build(s)
  }, { many: true })

/**
 * `header "X-Api" "v1"`, or with properties as Sentinel's docs write it: `header name="X-Api"
 * value="v1"` (each of name and value as an argument or a property, not both; value optional:
 * then the header or parameter only has to be present).
 */
const nameValue = (name: string, tag: "Header" | "QueryParam", nameVal: Val<string>) =>
  custom(name, (node, cx): RouteMatch | undefined => {
    const args = node.getArgumentEntries()
    const np = node.getPropertyEntry("name")
    const vp = node.getPropertyEntry("value")
    if (np === undefined && args.length === 0) {
      shape(node, cx, { args: [0, 0], props: ["name", "value"] })
      return cx.error(node, `\`${name}\` needs a name: \`${name} "X-Name"\` or \`${name} name="X-Name"\``)
    }
    const range: readonly [number, number] = np !== undefined ? [0, 0] : vp !== undefined ? [1, 1] : [1, 2]
    if (!shape(node, cx, { args: range, props: ["name", "value"] })) return undefined
    const n = np ?? args[0]
    const v = vp ?? (np === undefined ? args[1] : undefined)
    const nm = nameVal(n.getValue(), n, cx, `\`${name}\` name`)
    const value = v === undefined ? undefined : str(v.getValue(), v, cx, `\`${name}\` value`)
    if (nm === undefined || (v !== undefined && value === undefined)) return undefined
    return compact({ _tag: tag, name: nm, value }) as RouteMatch
  }, { many: true })

const regex: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  try {
    new RegExp(s)
    return s
  } catch (e) {
    return cx.error(at, `${what} is not a valid regular expression: ${(e as Error).message}`)
  }
}

const path: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return s.startsWith("/") ? s : cx.error(at, `${what} must start with "/", got ${JSON.stringify(s)}`)
}

type MatchFields = { readonly [K in "path" | "pathPrefix" | "pathRegex" | "host" | "header" | "method" | "queryParam"]: RouteMatch }

export const matchesSpec: BlockSpec<MatchFields> = {
  path: "routes.route.matches",
  fields: {
    path: one("path", (p) => ({ _tag: "Path", path: p }), path),
    pathPrefix: one("path-prefix", (p) => ({ _tag: "PathPrefix", prefix: p }), path),
    pathRegex: one("path-regex", (p) => ({ _tag: "PathRegex", pattern: p }), regex),
    host: one("host", (h) => ({ _tag: "Host", host: h }), nonEmpty),
    header: nameValue("header", "Header", headerName),
    method: custom("method", (node, cx): RouteMatch | undefined => {
      if (!shape(node, cx, { args: [1, Infinity] })) return undefined
      const ms = node.getArgumentEntries().map((e) => {
        const m = str(e.getValue(), e, cx, "`method`")
        return m === undefined ? undefined : token.test(m) ? m.toUpperCase() : cx.error(e, `${JSON.stringify(m)} is not a valid HTTP method`)
      })
      return ms.every((m) => m !== undefined) ? { _tag: "Method", methods: ms as Array<string> } : undefined
    }, { many: true }),
    queryParam: nameValue("query-param", "QueryParam", nonEmpty)
  }
}

const matchesField = custom("matches", (node: Node, cx: Cx): ReadonlyArray<RouteMatch> | undefined => {
  if (!shape(node, cx, { args: [0, 0], children: true })) return undefined
  return decodeBlock(node, cx, matchesSpec).seq.map((s) => s.value as RouteMatch)
}, { nested: matchesSpec })

// --- route -----------------------------------------------------------------

const priority: Val<number> = (v, at, cx, what) => {
  if (typeof v === "string") {
    // case-insensitive, as Sentinel's `parse_priority` ("HIGH", "Critical")
    const p = Object.hasOwn(namedPriorities, v.toLowerCase()) ? namedPriorities[v.toLowerCase() as keyof typeof namedPriorities] : undefined
    if (p !== undefined) return p
    return cx.error(at, `${what} must be "low", "normal", "high", "critical" or an integer, got ${JSON.stringify(v)}${hint(v, Object.keys(namedPriorities))}`)
  }
  if (typeof v !== "number" || !Number.isInteger(v)) return cx.error(at, `${what} must be a name or an integer`)
  return Number.isSafeInteger(v) ? v : cx.error(at, `${what} is too large (integers must be below 2^53)`)
}

/** Sentinel's spellings of builtin handlers besides ours (`builtin-handler "not_found"`); `_` reads as `-`. */
export const builtinHandlerName = (s: string): string => s.trim().toLowerCase().replace(/_/g, "-")

const builtinHandler: Val<BuiltinHandler> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  const n = builtinHandlerName(s)
  if ((BuiltinHandler.literals as ReadonlyArray<string>).includes(n)) return n as BuiltinHandler
  if (builtinHandlersNotSupportedYet.includes(n)) return cx.error(at, `${what} ${JSON.stringify(s)} is not supported yet`)
  return cx.error(at, `${what} must be one of ${BuiltinHandler.literals.map((h) => `"${h}"`).join(", ")}, got ${JSON.stringify(s)}${hint(n, BuiltinHandler.literals)}`)
}

/**
 * `service-type`: Sentinel infers a route's type from what it does and ignores this key. Here it
 * is a check: accepted when it agrees with the route (`static` with `static-files`, `builtin`
 * with `builtin-handler`, `web` or `api` with `upstream`), an error when it contradicts it.
 */
export const serviceTypes = ["web", "api", "static", "builtin"] as const
export type ServiceType = (typeof serviceTypes)[number]

const serviceType: Val<ServiceType> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  const n = s.trim().toLowerCase()
  if ((serviceTypes as ReadonlyArray<string>).includes(n)) return n as ServiceType
  if (n === "inference") return cx.error(at, `${what} "inference" is not supported yet (no inference routing in this build)`)
  return cx.error(at, `${what} must be one of ${serviceTypes.map((t) => `"${t}"`).join(", ")}, got ${JSON.stringify(s)}${hint(n, serviceTypes)}`)
}

/** The service types a route with this target may declare. */
const serviceTypesFor = { upstream: ["web", "api"], "builtin-handler": ["builtin"], "static-files": ["static"] } as const

/**
 * `websocket #true` / `websocket-inspection #true`: scalars. Sentinel reads a block form
 * (`websocket { ... }`, as its own example once had it) silently as off (#369): refused here,
 * with the form that works.
 */
const websocketFlag = (name: string) =>
  custom(name, (node, cx): boolean | undefined => {
    if (node.children !== null) {
      return cx.error(node, `\`${name}\` is a flag, not a block: write \`${name} #true\`` +
        (name === "websocket" ? " (the limits are in `limits { websocket-max-frame-size ... }`)" : ""))
    }
    if (node.getArgumentEntries().length === 0 && node.getPropertyEntries().length === 0) {
      return cx.error(node, `\`${name}\` needs a value: \`${name} #true\``)
    }
    if (!shape(node, cx, { args: [1, 1] })) return undefined
    const e = node.getArgumentEntry(0)!
    return bool(e.getValue(), e, cx, `\`${name}\``)
  })

interface RouteFields {
  readonly serviceType: ServiceType
  readonly priority: number
  readonly matches: ReadonlyArray<RouteMatch>
  readonly upstream: string
  readonly builtinHandler: BuiltinHandler
  readonly staticFiles: StaticFilesConfig
  readonly filters: ReadonlyArray<string>
  readonly retryPolicy: Partial<RetryPolicyConfig>
  readonly policies: Partial<RouteConfig["policies"]>
  readonly circuitBreaker: CircuitBreakerConfig
  readonly websocket: boolean
  readonly websocketInspection: boolean
  readonly cache: Partial<RouteCacheConfig>
}

export const routeSpec: BlockSpec<RouteFields> = {
  path: "routes.route",
  fields: {
    serviceType: scalar("service-type", serviceType),
    priority: scalar("priority", priority),
    matches: matchesField,
    upstream: custom("upstream", (node, cx) => {
      if (!shape(node, cx, { args: [1, 1] })) return undefined
      const e = node.getArgumentEntry(0)!
      const id = ident(e.getValue(), e, cx, "`upstream`")
      if (id !== undefined) cx.reference("upstream", id, e, "references")
      return id
    }),
    builtinHandler: custom("builtin-handler", (node, cx) => {
      if (!shape(node, cx, { args: [1, 1] })) return undefined
      const e = node.getArgumentEntry(0)!
      const h = builtinHandler(e.getValue(), e, cx, "`builtin-handler`")
      if (h === "config") {
        cx.need("admin-listener", e, "builtin-handler \"config\" is served only on admin listeners; add `admin #true` to a listener (bound to a private address)")
      }
      return h
    }),
    staticFiles: staticFilesField,
    filters: filtersField,
    retryPolicy: retryPolicyField,
    policies: block("policies", policiesSpec),
    circuitBreaker: block("circuit-breaker", circuitBreakerSpec("routes.route.circuit-breaker")),
    websocket: websocketFlag("websocket"),
    websocketInspection: websocketFlag("websocket-inspection"),
    cache: routeCacheField
  }
}

export const routeField = entity("route", routeSpec, (id, f, node, cx) => {
  const written = (n: string) => node.children?.nodes.some((c) => c.getName() === n) ?? false
  const targets = ["upstream", "builtin-handler", "static-files"].filter(written)
  if (targets.length > 1) {
    return cx.error(node, `route "${id}" has ${targets.map((t) => `\`${t}\``).join(" and ")}; use exactly one`)
  }
  if (targets.length === 0) {
    return cx.error(node, `route "${id}" needs an \`upstream\`, a \`builtin-handler\` or \`static-files\``)
  }
  const { serviceType: declared, ...fields } = f
  const target = targets[0] as keyof typeof serviceTypesFor
  const fits: ReadonlyArray<ServiceType> = serviceTypesFor[target]
  if (declared !== undefined && !fits.includes(declared)) {
    const needs = declared === "static" ? "`static-files { root ... }`" : declared === "builtin" ? "a `builtin-handler`" : "an `upstream`"
    const at = node.children?.nodes.find((c) => c.getName() === "service-type") ?? node
    return cx.error(at, `route "${id}": \`service-type "${declared}"\` contradicts the route's \`${target}\`: a ${declared} route has ${needs}` +
      ` (for this route write ${fits.map((t) => `"${t}"`).join(" or ")}, or leave \`service-type\` out: it is inferred)`)
  }
  if (f.websocket === true && target !== "upstream") {
    return cx.error(node, `route "${id}": \`websocket #true\` needs an \`upstream\` (a ${target} route cannot take WebSocket tunnels)`)
  }
  if (f.websocketInspection === true && f.websocket !== true) {
    const at = node.children?.nodes.find((c) => c.getName() === "websocket-inspection") ?? node
    return cx.error(at, `route "${id}": \`websocket-inspection #true\` needs \`websocket #true\` on the route`)
  }
  if (f.cache?.enabled === true && target !== "upstream") {
    const at = node.children?.nodes.find((c) => c.getName() === "cache") ?? node
    return cx.error(at, `route "${id}": \`cache { enabled #true }\` needs an \`upstream\` (only proxied responses are cached)`)
  }
  const filters = (f.filters as unknown as ReadonlyArray<ReadonlyArray<string>> | undefined)?.flat()
  if (filters !== undefined) {
    const seen = new Set<string>()
    for (const x of filters) {
      if (seen.has(x)) return cx.error(node, `route "${id}" lists filter "${x}" twice`)
      seen.add(x)
    }
  }
  return compact({ id, ...fields, filters })
})

export const routesSpec: BlockSpec<{ route: ReadonlyArray<unknown> }> = {
  path: "routes",
  fields: { route: routeField }
}

export const routesField = block("routes", routesSpec, (f) => f.route ?? [])
