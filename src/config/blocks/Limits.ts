/** `limits { ... }`: request and connection bounds. */
import type { LimitsConfig } from "../Schema.js"
import { type BlockSpec, block, scalar } from "../KdlDecoder.js"
import { bool, bytes, count, oneOf, positive, secs } from "../KdlValues.js"

export const limitsSpec: BlockSpec<LimitsConfig> = {
  path: "limits",
  fields: {
    maxHeaderSize: scalar(["max-header-size", "max-header-size-bytes"], (v, at, cx, what) => {
      const n = bytes(v, at, cx, what)
      return n === 0 ? cx.error(at, `${what} must be at least 1`) : n
    }),
    maxHeaderCount: scalar("max-header-count", positive),
    maxBodySize: scalar(["max-body-size", "max-body-size-bytes"], bytes),
    requestBufferSize: scalar("request-buffer-size", bytes),
    responseBufferSize: scalar("response-buffer-size", bytes),
    slowReaderTimeout: scalar(["slow-reader-timeout-secs", "slow-reader-timeout"], secs),
    maxUriLength: scalar(["max-uri-length", "max-uri-length-bytes"], positive),
    maxConnectionsPerClient: scalar("max-connections-per-client", positive),
    maxTotalConnections: scalar("max-total-connections", positive),
    maxInFlightRequests: scalar("max-in-flight-requests", positive),
    inFlightQueueSize: scalar("in-flight-queue-size", count),
    inFlightQueueTimeout: scalar(["in-flight-queue-timeout-secs", "in-flight-queue-timeout"], secs),
    maxHeaderLineSize: scalar(["max-header-line-size", "max-header-line-size-bytes"], (v, at, cx, what) => {
      const n = bytes(v, at, cx, what)
      return n === 0 ? cx.error(at, `${what} must be at least 1`) : n
    }),
    underscoresInHeaders: scalar("underscores-in-headers", oneOf(["drop", "reject", "allow"] as const)),
    allowTrace: scalar("allow-trace", bool),
    mergeSlashes: scalar("merge-slashes", bool),
    normalizePath: scalar("normalize-path", bool),
    escapedSlashes: scalar("escaped-slashes", oneOf(["keep", "reject"] as const)),
    websocketMaxFrameSize: scalar("websocket-max-frame-size", (v, at, cx, what) => {
      const n = bytes(v, at, cx, what)
      return n === 0 ? cx.error(at, `${what} must be at least 1`) : n
    }),
    websocketMaxMessageSize: scalar("websocket-max-message-size", bytes),
    websocketIdleTimeout: scalar(["websocket-idle-timeout-secs", "websocket-idle-timeout"], secs),
    websocketMaxLifetime: scalar(["websocket-max-lifetime-secs", "websocket-max-lifetime"], secs),
    maxWebsocketTunnels: scalar("max-websocket-tunnels", positive),
    maxWebsocketTunnelsPerClient: scalar("max-websocket-tunnels-per-client", positive)
  }
}

export const limitsField = block("limits", limitsSpec)
