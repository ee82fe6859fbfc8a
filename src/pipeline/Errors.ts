/**
 * Typed failures of the request path. Every stage fails with one of these;
 * `ErrorResponse.ts` maps them to a status in one table.
 */
import { Data } from "effect"

export type ErrorSource = "upstream" | "downstream" | "internal"

/** No route matched the request (404). */
export class NoRoute extends Data.TaggedError("NoRoute")<{
  readonly host: string
  readonly path: string
}> {}

/** The request broke a configured limit (413, 414, 431) or was malformed (400, 405, 505). */
export class RequestRejected extends Data.TaggedError("RequestRejected")<{
  readonly status: number
  readonly reason: string
}> {}

/** TCP/TLS connect to the upstream failed: refused, unreachable, DNS. Nothing was sent. */
export class UpstreamConnectFailed extends Data.TaggedError("UpstreamConnectFailed")<{
  readonly upstream: string
  readonly target: string
  readonly reason: "refused" | "unreachable" | "dns" | "tls" | "other"
  readonly message: string
}> {
  get source(): ErrorSource {
    return "upstream"
  }
  get retryable(): boolean {
    return true
  }
}

/**
 * The upstream did not answer in time. `phase` says which deadline fired: "connect", "headers"
 * (response head), "body-idle" (silence mid-body), "write" (the upstream stopped taking the
 * request body, `timeouts { write }`), "request" (the attempt's total, `timeouts { request }`).
 */
export class UpstreamTimeout extends Data.TaggedError("UpstreamTimeout")<{
  readonly upstream: string
  readonly target: string
  readonly phase: "connect" | "headers" | "body-idle" | "write" | "request"
  /** Whether any request bytes may have reached the upstream. */
  readonly requestSent: boolean
}> {
  get source(): ErrorSource {
    return "upstream"
  }
}

/** The upstream broke the exchange (reset, malformed response, closed early). */
export class UpstreamProtocolError extends Data.TaggedError("UpstreamProtocolError")<{
  readonly upstream: string
  readonly target: string
  readonly reason: "reset" | "closed" | "malformed" | "other"
  readonly message: string
  readonly requestSent: boolean
}> {
  get source(): ErrorSource {
    return "upstream"
  }
}

/**
 * The target's connections are taken and the request could not wait for one
 * (`connection-pool { max-pending-requests; pending-timeout; max-client-share }`): 503 with
 * `Retry-After`, as Envoy answers a pool overflow. Nothing was sent; another target may take
 * it. Our own limit, not the target's fault: never counted against its health or breaker.
 * "client_share": the wait ended while connections were free, but this client held its share.
 */
export class UpstreamSaturated extends Data.TaggedError("UpstreamSaturated")<{
  readonly upstream: string
  readonly target: string
  readonly reason: "queue_full" | "queue_timeout" | "client_share"
}> {}

/** No target of the upstream is eligible (all unhealthy or circuit open): 503. */
export class NoHealthyUpstream extends Data.TaggedError("NoHealthyUpstream")<{
  readonly upstream: string
  readonly retryAfterSecs: number
}> {}

/** The route's own circuit breaker (`route { circuit-breaker }`) is open: 503 with `Retry-After`. */
export class RouteCircuitOpen extends Data.TaggedError("RouteCircuitOpen")<{
  readonly route: string
  readonly retryAfterSecs: number
}> {}

/** The client went away before the response was complete (logged as 499). */
export class ClientClosed extends Data.TaggedError("ClientClosed")<{}> {}

/**
 * The downstream (client) side failed: body read error, a slow reader whose upstream
 * connection was released ("slow_reader"), a response that could not be written. `status` is
 * what the client got (the head already sent) or would have got.
 */
export class DownstreamError extends Data.TaggedError("DownstreamError")<{
  readonly status: number
  readonly reason: string
}> {}

/** A request-level deadline (route `timeout-secs`) expired. */
export class RequestTimeout extends Data.TaggedError("RequestTimeout")<{
  readonly phase: string
}> {}

/** A component answered the request itself with a status (agents, filters). */
export class Respond extends Data.TaggedError("Respond")<{
  readonly status: number
  readonly headers: ReadonlyArray<readonly [string, string]>
  readonly body: string | Buffer
  readonly reason: string
}> {}

export type ProxyError =
  | NoRoute
  | RequestRejected
  | UpstreamConnectFailed
  | UpstreamTimeout
  | UpstreamProtocolError
  | NoHealthyUpstream
  | UpstreamSaturated
  | RouteCircuitOpen
  | ClientClosed
  | DownstreamError
  | RequestTimeout
  | Respond
