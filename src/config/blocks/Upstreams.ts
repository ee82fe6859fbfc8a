/** `upstreams { upstream "id" { ... } }`: the origins requests are forwarded to. */
import {
  type HashKey, type HttpVersionConfig, type LoadBalancingAlgorithm, loadBalancingAlgorithms, loadBalancingNotSupportedYet,
  type StickyConfig, type UpstreamConfig, type UpstreamTlsConfig
} from "../Schema.js"
import {
  type BlockSpec, type Cx, type Val, block, bool, compact, count, custom, decodeBlock, entity, hostPort, int, many,
  nonEmpty, num, oneOf, positive, scalar, secs, secsMs, shape, str
} from "../KdlDecoder.js"
import { circuitBreakerSpec, healthCheckSpec, passiveHealthSpec, retryBudgetSpec } from "./Resilience.js"
import type { Node } from "@bgotink/kdl"

interface TargetInput {
  readonly address: string
  readonly weight?: number
}

/** Keeps the address as written (the schema derives host and port) after checking it parses. */
const targetAddress: Val<string> = (v, at, cx) => {
  const s = str(v, at, cx, "target address")
  return s !== undefined && hostPort(s, at, cx, "target address") !== undefined ? s : undefined
}

export const targetBlockSpec: BlockSpec<TargetInput> = {
  path: "upstreams.upstream.target",
  fields: {
    address: scalar("address", targetAddress),
    weight: scalar("weight", positive)
  }
}

/** `target "host:port" weight=N` or `target { address "host:port"; weight N }`. */
const decodeTarget = (node: Node, cx: Cx): TargetInput | undefined => {
  if (node.children !== null) {
    if (!shape(node, cx, { args: [0, 0], children: true })) return undefined
    const f = decodeBlock(node, cx, targetBlockSpec).fields
    if (f.address === undefined) {
      if (!node.children.nodes.some((n) => n.getName() === "address")) cx.error(node, "`target` needs an `address`")
      return undefined
    }
    return compact({ address: f.address, weight: f.weight })
  }
  if (!shape(node, cx, { args: [1, 1], props: ["weight"] })) return undefined
  const a = node.getArgumentEntry(0)!
  const address = targetAddress(a.getValue(), a, cx, "target address")
  const w = node.getPropertyEntry("weight")
  const weight = w === undefined ? undefined : positive(w.getValue(), w, cx, "`weight`")
  if (address === undefined || (w !== undefined && weight === undefined)) return undefined
  return compact({ address, weight })
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

const aliases = {
  weighted_round_robin: "weighted",
  "weighted-round-robin": "weighted",
  p2c: "power_of_two_choices",
  wlc: "weighted_least_connections"
} as const

const algorithm = oneOf(loadBalancingAlgorithms, { aliases, notSupported: loadBalancingNotSupportedYet })

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
  const targets = [...(f.target ?? []).flat(), ...(f.targets ?? []).flat(), ...(f.address ?? []).flat()]
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
})

export const upstreamsSpec: BlockSpec<{ upstream: ReadonlyArray<unknown> }> = {
  path: "upstreams",
  fields: { upstream: upstreamField }
}

export const upstreamsField = block("upstreams", upstreamsSpec, (f) => f.upstream ?? [])
