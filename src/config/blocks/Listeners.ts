/** `listeners { listener "id" { ... } }`: where the proxy accepts connections. */
import type { ListenerConfig } from "../Schema.js"
import { protocolsNotSupportedYet } from "../NotSupportedYet.js"
import {
  type BlockSpec, block, compact, custom, entity, hostPort, nonEmpty, oneOf, positive, scalar, secs, shape
} from "../KdlDecoder.js"

type ListenerFields = Omit<ListenerConfig, "id">

export const listenerSpec: BlockSpec<ListenerFields> = {
  path: "listeners.listener",
  fields: {
    address: scalar("address", hostPort),
    protocol: scalar("protocol", oneOf(["http"] as const, { notSupported: protocolsNotSupportedYet })),
    requestTimeout: scalar(["request-timeout-secs", "request-timeout"], secs),
    keepaliveTimeout: scalar(["keepalive-timeout-secs", "keepalive-timeout"], secs),
    keepaliveMaxRequests: scalar("keepalive-max-requests", positive),
    defaultRoute: custom("default-route", (node, cx) => {
      if (!shape(node, cx, { args: [1, 1] })) return undefined
      const e = node.getArgumentEntry(0)!
      const id = nonEmpty(e.getValue(), e, cx, "`default-route`")
      if (id !== undefined) cx.reference("route", id, e, "default-route references")
      return id
    })
  }
}

export const listenerField = entity("listener", listenerSpec, (id, f, node, cx) => {
  if (f.address === undefined) {
    // only report "missing" when it is absent, not when it was present but invalid
    if (!node.children?.nodes.some((n) => n.getName() === "address")) cx.error(node, `listener "${id}" needs an \`address\``)
    return undefined
  }
  return compact({ id, ...f })
})

export const listenersSpec: BlockSpec<{ listener: ReadonlyArray<ListenerConfig> }> = {
  path: "listeners",
  fields: { listener: listenerField }
}

export const listenersField = block("listeners", listenersSpec, (f) => f.listener ?? [])
