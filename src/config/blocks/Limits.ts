/** `limits { ... }`: request and connection bounds. */
import type { LimitsConfig } from "../Schema.js"
import { type BlockSpec, block, bytes, positive, scalar } from "../KdlDecoder.js"

export const limitsSpec: BlockSpec<LimitsConfig> = {
  path: "limits",
  fields: {
    maxHeaderSize: scalar(["max-header-size", "max-header-size-bytes"], (v, at, cx, what) => {
      const n = bytes(v, at, cx, what)
      return n === 0 ? cx.error(at, `${what} must be at least 1`) : n
    }),
    maxHeaderCount: scalar("max-header-count", positive),
    maxBodySize: scalar(["max-body-size", "max-body-size-bytes"], bytes),
    maxUriLength: scalar(["max-uri-length", "max-uri-length-bytes"], positive),
    maxConnectionsPerClient: scalar("max-connections-per-client", positive),
    maxTotalConnections: scalar("max-total-connections", positive),
    maxInFlightRequests: scalar("max-in-flight-requests", positive)
  }
}

export const limitsField = block("limits", limitsSpec)
