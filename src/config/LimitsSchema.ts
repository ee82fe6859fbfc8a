/** Typed model of the `limits { ... }` block: request sizes, buffering, admission, path rules, WebSocket bounds. */
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import { Count, defaulted, NonNegativeDuration, PositiveCount } from "./SchemaPrimitives.js"

export const LimitsConfig = Schema.Struct({
  /** `max-header-size` (or `max-header-size-bytes`): total request header bytes. Default 8192. */
  maxHeaderSize: defaulted(PositiveCount, () => 8192),
  /** `max-header-count`: request headers. Default 100. */
  maxHeaderCount: defaulted(PositiveCount, () => 100),
  /** `max-body-size` (or `max-body-size-bytes`): request body bytes. Default 10 MiB. */
  maxBodySize: defaulted(Count, () => 10 * 1024 * 1024),
  /**
   * `request-buffer-size`: a request body up to this is read whole before it goes upstream
   * (nginx's `proxy_request_buffering`), which also lets a failed attempt replay it on another
   * target: a `Content-Length` body up to this size, and a chunked one that ends within it
   * (sent upstream with a `Content-Length`); larger bodies stream (a chunked one after what was
   * read). 0 = stream every body; a route whose `retry-policy` allows more than one attempt
   * buffers at least 64 KiB. Default 64 KiB.
   */
  requestBufferSize: defaulted(Count, () => 64 * 1024),
  /**
   * `response-buffer-size`: bytes of a response held in memory for a client that reads slower
   * than the upstream sends, before the upstream is paused. A response up to this size frees
   * its upstream connection however slow the client. Default 256 KiB.
   */
  responseBufferSize: defaulted(Count, () => 256 * 1024),
  /**
   * `slow-reader-timeout-secs`: longest time a response may hold its upstream connection paused
   * while the client takes none of what is buffered for it (the buffer does not empty); then the
   * upstream connection is released, the rest of the response dropped and the client connection
   * closed (`slow_reader`). 0 = hold for as long as the listener's `write-timeout-secs` allows.
   * Default 10s.
   */
  slowReaderTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(10)),
  /** `max-uri-length`: request-target bytes. Default 8192. */
  maxUriLength: defaulted(PositiveCount, () => 8192),
  /** `max-connections-per-client`: concurrent connections per client IP. Default 100. */
  maxConnectionsPerClient: defaulted(PositiveCount, () => 100),
  /** `max-total-connections`: concurrent downstream connections. Default 10000. */
  maxTotalConnections: defaulted(PositiveCount, () => 10000),
  /** `max-in-flight-requests`: requests being processed at once. Default 10000. */
  maxInFlightRequests: defaulted(PositiveCount, () => 10000),
  /** `in-flight-queue-size`: requests waiting for an in-flight slot; beyond it 503. 0 = no queue. Default 1000. */
  inFlightQueueSize: defaulted(Count, () => 1000),
  /** `in-flight-queue-timeout-secs`: longest wait in that queue, then 503. Default 5s. */
  inFlightQueueTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(5)),
  /** `max-header-line-size`: bytes of one header line (431). Default 8192. */
  maxHeaderLineSize: defaulted(PositiveCount, () => 8192),
  /** `underscores-in-headers "drop"|"reject"|"allow"`: request header names with `_`. Default "drop" (nginx). */
  underscoresInHeaders: defaulted(Schema.Literal("drop", "reject", "allow"), () => "drop" as const),
  /** `allow-trace`: TRACE is answered 405 unless #true. Default #false. */
  allowTrace: defaulted(Schema.Boolean, () => false),
  /** `merge-slashes`: collapse `//` in paths before routing. Default #true. */
  mergeSlashes: defaulted(Schema.Boolean, () => true),
  /** `normalize-path`: decode unreserved escapes, remove `.`/`..` segments. Default #true. */
  normalizePath: defaulted(Schema.Boolean, () => true),
  /** `escaped-slashes "keep"|"reject"`: `%2F` in a path segment. Default "keep". */
  escapedSlashes: defaulted(Schema.Literal("keep", "reject"), () => "keep" as const),
  /** `websocket-max-frame-size`: payload bytes of one WebSocket frame; a larger one closes the tunnel with 1009. Default 1 MiB (Sentinel's). */
  websocketMaxFrameSize: defaulted(PositiveCount, () => 1024 * 1024),
  /**
   * `websocket-max-message-size`: payload bytes of one (fragmented) message on an inspected
   * tunnel; past it 1009. 0 = no bound. Default 16 MiB.
   */
  websocketMaxMessageSize: defaulted(Count, () => 16 * 1024 * 1024),
  /** `websocket-idle-timeout-secs`: a tunnel with no byte either way for this long is closed (1001). 0 = never. Default 300s. */
  websocketIdleTimeout: defaulted(NonNegativeDuration, () => Duration.seconds(300)),
  /** `websocket-max-lifetime-secs`: a tunnel is closed (1001) this long after it opened. 0 = never (the default). */
  websocketMaxLifetime: defaulted(NonNegativeDuration, () => Duration.zero),
  /**
   * `max-websocket-tunnels`: WebSocket tunnels (and handshakes under way) at once; past it a
   * handshake gets 503. Each also holds a connection of `max-total-connections`. Default 10000.
   */
  maxWebsocketTunnels: defaulted(PositiveCount, () => 10000),
  /** `max-websocket-tunnels-per-client`: the same per client IP. Default 100. */
  maxWebsocketTunnelsPerClient: defaulted(PositiveCount, () => 100)
})
export type LimitsConfig = typeof LimitsConfig.Type
