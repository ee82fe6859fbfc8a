/** `upstreams { upstream "id" { ... } }`: the origins requests are forwarded to. */
import {
  type HashKey, type HttpVersionConfig, type LoadBalancingAlgorithm, loadBalancingAlgorithms, loadBalancingAliases,
  loadBalancingNotSupportedYet, normaliseAlgorithmName, type StickyConfig, type UpstreamConfig, type UpstreamTlsConfig
} from "../Schema.js"
import { type BlockSpec, block, compact, custom, decodeBlock, entity, many, scalar, shape } from "../KdlDecoder.js"
import type { Cx } from "../KdlContext.js"
import { type Val, bool, count, hostPort, int, nonEmpty, num, oneOf, positive, secs, secsMs, str } from "../KdlValues.js"
import { circuitBreakerSpec, healthCheckSpec, passiveHealthSpec, retryBudgetSpec } from "./Resilience.js"
import type { Node } from "@bgotink/kdl"
import { hint } from "../ConfigIssue.js"

interface TargetInput {
  readonly address: string
  readonly weight?: number
}

/** Keeps the address as written (the schema derives host and port) after checking it parses. */
const targetAddress: Val<string> = (v, at, cx) => {
  const s = str(v, at, cx, "target address")
  return s !== undefined && hostPort(s, at, cx, "target address") !== undefined ? s : undefined
}

/** `weight=N` on `node`, if written: undefined when absent, null when it does not decode. */
const weightProp = (node: Node, cx: Cx): number | null | undefined => {
  const w = node.getPropertyEntry("weight")
  return w === undefined ? undefined : positive(w.getValue(), w, cx, "`weight`") ?? null
}

/** `address "host:port"` (with an optional `weight=N`, as Sentinel's docs write it) inside `target { }`. */
const targetAddressField = custom("address", (node, cx): { address: string; weight?: number } | undefined => {
  if (!shape(node, cx, { args: [1, 1], props: ["weight"] })) return undefined
  const a = node.getArgumentEntry(0)!
  const address = targetAddress(a.getValue(), a, cx, "target address")
  const weight = weightProp(node, cx)
  if (address === undefined || weight === null) return undefined
  return compact({ address, weight })
})

export const targetBlockSpec: BlockSpec<{ address: { address: string; weight?: number }; weight: number }> = {
  path: "upstreams.upstream.target",
  fields: {
    address: targetAddressField,
    weight: scalar("weight", positive)
  }
}

/**
 * Every target form Sentinel's `parse_upstream_targets` accepts: the address as the argument
 * (`target "h:80"`), as a property (`target address="h:80"`) or as a child (`target { address
 * "h:80" }`); the weight as a property (`weight=2`, also on the `address` child) or as a child
 * (`target "h:80" { weight 2 }`). Each may be written once: two addresses or two weights are an error.
 */
const decodeTarget = (node: Node, cx: Cx): TargetInput | undefined => {
  if (!shape(node, cx, { args: [0, 1], props: ["address", "weight"], children: true })) return undefined
  const fields = node.children === null ? {} : decodeBlock(node, cx, targetBlockSpec).fields
  const inner = fields.address
  const arg = node.getArgumentEntry(0)
  const prop = node.getPropertyEntry("address")
  const written = (n: string) => node.children?.nodes.some((c) => c.getName() === n) ?? false
  const addresses = [arg, prop, written("address") ? "child" : undefined].filter((x) => x !== undefined)
  if (addresses.length > 1) return cx.error(node, "`target` has more than one address (argument, `address=` property, `address` child); write it once")
  if (addresses.length === 0) return cx.error(node, "`target` needs an address: `target \"host:port\"`")
  const weights = [node.getPropertyEntry("weight"), inner?.weight, written("weight") ? "child" : undefined]
    .filter((x) => x !== undefined)
  if (weights.length > 1) return cx.error(node, "`target` has more than one `weight`; write it once")
  const topWeight = weightProp(node, cx)
  const e = arg ?? prop
  const address = e !== undefined ? targetAddress(e.getValue(), e, cx, "target address") : inner?.address
  if (address === undefined || topWeight === null) return undefined
  if (written("weight") && fields.weight === undefined) return undefined
  return compact({ address, weight: topWeight ?? inner?.weight ?? fields.weight })
}

const targetField = many(custom("target", decodeTarget, { nested: targetBlockSpec }))

const targetsSpec: BlockSpec<{ target: ReadonlyArray<TargetInput> }> = {
  path: "upstreams.upstream.targets",
  fields: { target: targetField }
}

export const timeoutsSpec: BlockSpec<UpstreamConfig["timeouts"]> = {
  path: "upstreams.upstream.timeouts",
  fields: {
    connect: scalar(["connect", "connect-secs"], secs),
    request: scalar(["request", "request-secs"], secs),
    read: scalar(["read", "read-secs"], secs),
    write: scalar(["write", "write-secs"], secs)
  }
}

export const connectionPoolSpec: BlockSpec<UpstreamConfig["connectionPool"]> = {
  path: "upstreams.upstream.connection-pool",
  fields: {
    maxConnections: scalar("max-connections", positive),
    maxIdle: scalar("max-idle", count),
    idleTimeout: scalar(["idle-timeout", "idle-timeout-secs"], secs),
    maxLifetime: scalar(["max-lifetime", "max-lifetime-secs"], secs),
    maxPendingRequests: scalar("max-pending-requests", count),
    pendingTimeout: scalar(["pending-timeout", "pending-timeout-secs"], secs),
    maxClientShare: scalar("max-client-share", num({ min: 0, max: 1, exclusiveMin: true }))
  }
}

/**
 * `load-balancing "<name>"`: case-insensitive, `-` and `_` alike, with every alias of Sentinel's
 * parser (`loadBalancingAliases`). Sentinel turns any other name into round robin; here an
 * unknown name is an error with a did-you-mean, and Sentinel's algorithms this build lacks say
 * "not supported yet".
 */
const algorithm: Val<LoadBalancingAlgorithm> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  const n = normaliseAlgorithmName(s)
  if ((loadBalancingAlgorithms as ReadonlyArray<string>).includes(n)) return n as LoadBalancingAlgorithm
  const alias = loadBalancingAliases[n]
  if (alias !== undefined) return alias
  if (loadBalancingNotSupportedYet.includes(n)) return cx.error(at, `${what} ${JSON.stringify(s)} is not supported yet`)
  const names = [...loadBalancingAlgorithms, ...Object.keys(loadBalancingAliases)]
  return cx.error(at,
    `${what} must be one of ${loadBalancingAlgorithms.map((a) => `"${a}"`).join(", ")} (or an alias such as "p2c", "wlc"), got ${JSON.stringify(s)}${hint(n, names)}`)
}

const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** `hash-key "client-ip" | "path" | "header:<name>" | "cookie:<name>"`. */
const hashKey: Val<HashKey> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  if (s === "client-ip") return { source: "client-ip" }
  if (s === "path") return { source: "path" }
  const m = /^(header|cookie):(.+)$/.exec(s)
  if (m !== null && token.test(m[2])) return { source: m[1] as "header" | "cookie", name: m[2] }
  return cx.error(at, `${what} must be "client-ip", "path", "header:<name>" or "cookie:<name>", got ${JSON.stringify(s)}`)
}

const cookieName: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return token.test(s) ? s : cx.error(at, `${what} ${JSON.stringify(s)} is not a valid cookie name`)
}

const cookiePath: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  // eslint-disable-next-line no-control-regex
  return s.startsWith("/") && !/[\x00-\x1f\x7f;]/.test(s) ? s : cx.error(at, `${what} must start with "/" and contain no ";" or control characters`)
}

/** `cookie-ttl 3600` or `"1h"`, as whole seconds. */
const ttlSecs: Val<number> = (v, at, cx, what) => {
  const ms = secsMs(v, at, cx, what)
  return ms === undefined ? undefined : Math.round(ms / 1000)
}

const fallbackAlgorithm: Val<Exclude<LoadBalancingAlgorithm, "sticky">> = (v, at, cx, what) => {
  const a = algorithm(v, at, cx, what)
  return a === "sticky" ? cx.error(at, `${what} cannot be "sticky"`) : a
}

interface BalancingOptions {
  readonly hashKey: HashKey
  readonly virtualNodes: number
  readonly maglevTableSize: number
  readonly cookieName: string
  readonly cookieTtlSecs: number
  readonly cookiePath: string
  readonly cookieSecure: boolean
  readonly cookieSameSite: StickyConfig["cookieSameSite"]
  readonly fallback: StickyConfig["fallback"]
}

export const balancingOptionsSpec: BlockSpec<BalancingOptions> = {
  path: "upstreams.upstream.load-balancing",
  fields: {
    hashKey: scalar("hash-key", hashKey),
    virtualNodes: scalar("virtual-nodes", int({ min: 1, max: 10_000 })),
    maglevTableSize: scalar("table-size", int({ min: 1, max: 1_048_576 })),
    cookieName: scalar("cookie-name", cookieName),
    cookieTtlSecs: scalar("cookie-ttl", ttlSecs),
    cookiePath: scalar("cookie-path", cookiePath),
    cookieSecure: scalar("cookie-secure", bool),
    cookieSameSite: scalar("cookie-same-site", oneOf(["strict", "lax", "none"] as const)),
    fallback: scalar("fallback", fallbackAlgorithm)
  }
}

/** Which options each algorithm reads (anything else in its block is an error). */
const optionsFor: Record<string, ReadonlyArray<keyof BalancingOptions>> = {
  consistent_hash: ["hashKey", "virtualNodes"],
  maglev: ["hashKey", "maglevTableSize"],
  sticky: ["cookieName", "cookieTtlSecs", "cookiePath", "cookieSecure", "cookieSameSite", "fallback"]
}

interface Balancing {
  readonly loadBalancing: LoadBalancingAlgorithm
  readonly hashKey?: HashKey
  readonly virtualNodes?: number
  readonly maglevTableSize?: number
  readonly sticky?: Partial<StickyConfig>
}

/** `load-balancing "<algorithm>"` with an optional `{ ... }` of options for that algorithm. */
const loadBalancingField = custom("load-balancing", (node, cx): Balancing | undefined => {
  if (!shape(node, cx, { args: [1, 1], children: true })) return undefined
  const e = node.getArgumentEntry(0)!
  const algo = algorithm(e.getValue(), e, cx, "`load-balancing`")
  if (node.children === null) return algo === undefined ? undefined : { loadBalancing: algo }
  const { fields, seq } = decodeBlock(node, cx, balancingOptionsSpec)
  if (algo === undefined) return undefined
  const allowed = optionsFor[algo] ?? []
  let ok = true
  for (const { key, node: child } of seq) {
    if (!allowed.includes(key)) {
      ok = false
      cx.error(child, allowed.length === 0
        ? `\`${child.getName()}\` does not apply to load-balancing "${algo}" (it takes no options)`
        : `\`${child.getName()}\` does not apply to load-balancing "${algo}"; it takes ${allowed.map((k) => `\`${balancingOptionsSpec.fields[k].names[0]}\``).join(", ")}`)
    }
  }
  if (!ok) return undefined
  const { hashKey: hk, virtualNodes, maglevTableSize, ...sticky } = fields
  return compact({
    loadBalancing: algo,
    hashKey: hk,
    virtualNodes,
    maglevTableSize,
    sticky: algo === "sticky" ? compact(sticky) : undefined
  })
}, { nested: balancingOptionsSpec })

const pathValue: Val<string> = nonEmpty

export const upstreamTlsSpec: BlockSpec<UpstreamTlsConfig> = {
  path: "upstreams.upstream.tls",
  fields: {
    sni: scalar("sni", nonEmpty),
    caCert: scalar("ca-cert", pathValue),
    clientCert: scalar("client-cert", pathValue),
    clientKey: scalar("client-key", pathValue),
    insecureSkipVerify: scalar("insecure-skip-verify", bool)
  }
}

const httpVersion = int({ min: 1, max: 2 }) as Val<1 | 2>

export const httpVersionSpec: BlockSpec<HttpVersionConfig> = {
  path: "upstreams.upstream.http-version",
  fields: {
    minVersion: scalar("min-version", httpVersion),
    maxVersion: scalar("max-version", httpVersion),
    h2PingInterval: scalar(["h2-ping-interval", "h2-ping-interval-secs"], secs),
    maxH2Streams: scalar("max-h2-streams", positive)
  }
}

interface UpstreamFields {
  readonly target: ReadonlyArray<TargetInput>
  readonly targets: ReadonlyArray<TargetInput>
  readonly address: ReadonlyArray<TargetInput>
  readonly loadBalancing: Balancing
  readonly timeouts: Partial<UpstreamConfig["timeouts"]>
  readonly connectionPool: Partial<UpstreamConfig["connectionPool"]>
  readonly healthCheck: unknown
  readonly passiveHealth: unknown
  readonly circuitBreaker: unknown
  readonly retryBudget: unknown
  readonly tls: unknown
  readonly httpVersion: unknown
}

export const upstreamSpec: BlockSpec<UpstreamFields> = {
  path: "upstreams.upstream",
  fields: {
    target: targetField,
    targets: block("targets", targetsSpec, (f) => f.target ?? []),
    // Sentinel also accepts a single `address "host:port"` on the upstream itself
    address: many(custom("address", (node, cx) => {
      if (!shape(node, cx, { args: [1, 1] })) return undefined
      const a = node.getArgumentEntry(0)!
      const address = targetAddress(a.getValue(), a, cx, "target address")
      return address === undefined ? undefined : { address }
    })),
    loadBalancing: loadBalancingField,
    timeouts: block("timeouts", timeoutsSpec),
    connectionPool: block("connection-pool", connectionPoolSpec),
    healthCheck: block("health-check", healthCheckSpec),
    passiveHealth: block("passive-health", passiveHealthSpec),
    circuitBreaker: block("circuit-breaker", circuitBreakerSpec("upstreams.upstream.circuit-breaker")),
    retryBudget: block("retry-budget", retryBudgetSpec),
    tls: block("tls", upstreamTlsSpec, (f, node, cx) => {
      if ((f.clientCert === undefined) !== (f.clientKey === undefined)) {
        return cx.error(node, "`client-cert` and `client-key` go together: set both or neither")
      }
      return f
    }),
    httpVersion: block("http-version", httpVersionSpec, (f, node, cx) => {
      if ((f.minVersion ?? 1) > (f.maxVersion ?? 1)) {
        return cx.error(node, `\`min-version\` ${f.minVersion ?? 1} is above \`max-version\` ${f.maxVersion ?? 1}`)
      }
      return f
    })
  }
}

export const upstreamField = entity("upstream", upstreamSpec, (id, f, node, cx) => {
  // Sentinel's single-target shorthand also reads `address=` on the upstream node itself
  const prop = node.getPropertyEntry("address")
  const propTarget = prop === undefined ? undefined : targetAddress(prop.getValue(), prop, cx, "target address")
  if (prop !== undefined && propTarget === undefined) return undefined
  const targets = [
    ...(propTarget === undefined ? [] : [{ address: propTarget }]),
    ...(f.target ?? []).flat(), ...(f.targets ?? []).flat(), ...(f.address ?? []).flat()
  ]
  if (targets.length === 0) {
    const written = node.children?.nodes.some((n) => ["target", "targets", "address"].includes(n.getName()))
    if (!written) cx.error(node, `upstream "${id}" needs at least one \`target\``)
    return undefined
  }
  return compact({
    id,
    targets,
    ...f.loadBalancing,
    timeouts: f.timeouts,
    connectionPool: f.connectionPool,
    healthCheck: f.healthCheck,
    passiveHealth: f.passiveHealth,
    circuitBreaker: f.circuitBreaker,
    retryBudget: f.retryBudget,
    tls: f.tls,
    httpVersion: f.httpVersion
  })
}, { props: ["address"], blockOptional: true })

export const upstreamsSpec: BlockSpec<{ upstream: ReadonlyArray<unknown> }> = {
  path: "upstreams",
  fields: { upstream: upstreamField }
}

export const upstreamsField = block("upstreams", upstreamsSpec, (f) => f.upstream ?? [])
