/** `upstreams { upstream "id" { ... } }`: the origins requests are forwarded to. */
import { loadBalancingAlgorithms, type UpstreamConfig } from "../Schema.js"
import {
  type BlockSpec, type Cx, type Val, block, compact, count, custom, decodeBlock, entity, hostPort, many, oneOf,
  positive, scalar, secs, shape, str
} from "../KdlDecoder.js"
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
    maxLifetime: scalar(["max-lifetime", "max-lifetime-secs"], secs)
  }
}

const algorithm = oneOf(loadBalancingAlgorithms, {
  aliases: {
    weighted_round_robin: "weighted",
    "weighted-round-robin": "weighted",
    p2c: "power_of_two_choices",
    wlc: "weighted_least_connections"
  }
})

interface UpstreamFields {
  readonly target: ReadonlyArray<TargetInput>
  readonly targets: ReadonlyArray<TargetInput>
  readonly address: ReadonlyArray<TargetInput>
  readonly loadBalancing: string
  readonly timeouts: Partial<UpstreamConfig["timeouts"]>
  readonly connectionPool: Partial<UpstreamConfig["connectionPool"]>
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
    loadBalancing: custom("load-balancing", (node, cx) => {
      if (node.children !== null) return cx.error(node, "`load-balancing` options (sticky sessions) are not supported yet")
      if (!shape(node, cx, { args: [1, 1] })) return undefined
      const e = node.getArgumentEntry(0)!
      return algorithm(e.getValue(), e, cx, "`load-balancing`")
    }),
    timeouts: block("timeouts", timeoutsSpec),
    connectionPool: block("connection-pool", connectionPoolSpec)
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
    loadBalancing: f.loadBalancing,
    timeouts: f.timeouts,
    connectionPool: f.connectionPool
  })
})

export const upstreamsSpec: BlockSpec<{ upstream: ReadonlyArray<unknown> }> = {
  path: "upstreams",
  fields: { upstream: upstreamField }
}

export const upstreamsField = block("upstreams", upstreamsSpec, (f) => f.upstream ?? [])
