/** `listeners { listener "id" { ... } }`: where the proxy accepts connections. */
import type { ListenerConfig } from "../Schema.js"
import { protocolsNotSupportedYet } from "../NotSupportedYet.js"
import { parseCidr } from "../../http/Cidr.js"
import { type BlockSpec, block, children, compact, custom, entity, list, scalar, shape } from "../KdlDecoder.js"
import { type Val, bool, hostPort, ident, int, oneOf, positive, secs, str } from "../KdlValues.js"
import { listenerTlsField } from "./ListenerTls.js"

/** A trusted-proxy entry: an address or a CIDR (checked with the same parser the runtime uses). */
const cidr: Val<string> = (v, at, cx, what) => {
  const s = str(v, at, cx, what)
  if (s === undefined) return undefined
  return parseCidr(s) === null ? cx.error(at, `${what} entry ${JSON.stringify(s)} is not an IP address or CIDR like "10.0.0.0/8"`) : s
}

type ListenerFields = Omit<ListenerConfig, "id">

export const listenerSpec: BlockSpec<ListenerFields> = {
  path: "listeners.listener",
  fields: {
    address: scalar("address", hostPort),
    protocol: scalar("protocol", oneOf(["http", "https", "h2"] as const, { notSupported: protocolsNotSupportedYet })),
    tls: listenerTlsField,
    maxConcurrentStreams: scalar("max-concurrent-streams", int({ min: 1, max: 2 ** 31 - 1 })),
    maxEarlyResets: scalar("max-early-resets", positive),
    requestTimeout: scalar(["request-timeout-secs", "request-timeout"], secs),
    headerTimeout: scalar(["header-timeout-secs", "header-timeout"], secs),
    bodyIdleTimeout: scalar(["body-idle-timeout-secs", "body-idle-timeout"], secs),
    writeTimeout: scalar(["write-timeout-secs", "write-timeout"], secs),
    keepaliveTimeout: scalar(["keepalive-timeout-secs", "keepalive-timeout"], secs),
    keepaliveMaxRequests: scalar("keepalive-max-requests", positive),
    defaultRoute: custom("default-route", (node, cx) => {
      if (!shape(node, cx, { args: [1, 1] })) return undefined
      const e = node.getArgumentEntry(0)!
      const id = ident(e.getValue(), e, cx, "`default-route`")
      if (id !== undefined) cx.reference("route", id, e, "default-route references")
      return id
    }),
    admin: scalar("admin", (v, at, cx, what) => {
      const b = bool(v, at, cx, what)
      if (b === true) cx.fact("admin-listener")
      return b
    }),
    trustedProxies: list("trusted-proxies", cidr)
  }
}

export const listenerField = entity("listener", listenerSpec, (id, f, node, cx) => {
  if (f.address === undefined) {
    // only report "missing" when it is absent, not when it was present but invalid
    if (!node.children?.nodes.some((n) => n.getName() === "address")) cx.error(node, `listener "${id}" needs an \`address\``)
    return undefined
  }
  const tlsNode = children(node).find((n) => n.getName() === "tls")
  const protocolNode = children(node).find((n) => n.getName() === "protocol")
  const protocol = f.protocol ?? "http"
  if (protocolNode !== undefined && f.protocol === undefined) return undefined // reported by `protocol`
  if (protocol === "https" && tlsNode === undefined) {
    return cx.error(protocolNode, `listener "${id}": protocol "https" needs a \`tls { cert-file "..."; key-file "..." }\` block`)
  }
  if (protocol === "h2" && tlsNode !== undefined) {
    return cx.error(tlsNode, `\`tls\` on protocol "h2": "h2" is cleartext HTTP/2 (prior knowledge); for TLS write protocol "https" (it offers h2 by ALPN)`)
  }
  if (protocol === "http" && tlsNode !== undefined) {
    return cx.error(tlsNode, `\`tls\` needs protocol "https" (listener "${id}" is ${protocolNode === undefined ? "\"http\" by default" : "\"http\""})`)
  }
  return compact({ id, ...f })
})

export const listenersSpec: BlockSpec<{ listener: ReadonlyArray<ListenerConfig> }> = {
  path: "listeners",
  fields: { listener: listenerField }
}

export const listenersField = block("listeners", listenersSpec, (f) => f.listener ?? [])
