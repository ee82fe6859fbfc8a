/**
 * Typed failures of the upstream stage: selecting a target, one exchange with it, and the
 * route's breaker around the calls. `pipeline/ErrorResponse.ts` maps them (with the request's
 * own failures, `pipeline/Errors.ts`) to a status in one table.
 */
import * as Data from "effect/Data"

export type ErrorSource = "upstream" | "downstream" | "internal"

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
 * The upstream answered, but not with something the client may get (502): a retryable status
 * that stayed one after the last attempt (`upstream_status_503`), a head node refused to write
 * (`upstream_invalid_header`), an answer the response path dropped (`upstream_discarded`), a
 * held response whose response-phase agents failed (`agent_response_phase_failed`).
 */
export class UpstreamBadAnswer extends Data.TaggedError("UpstreamBadAnswer")<{
  readonly reason: string
}> {
  /** Whether the upstream is to blame (its route breaker counts a failure), not the response path. */
  get upstreamFault(): boolean {
    return this.reason.startsWith("upstream_")
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

/**
 * The client's side ended an exchange: a slow reader whose upstream connection was released
 * ("slow_reader"), a response that could not be written ("client_write_failed"). `status` is
 * what the client got (the head already sent) or would have got. Never the target's fault.
 */
export class DownstreamError extends Data.TaggedError("DownstreamError")<{
  readonly status: number
  readonly reason: "client_write_failed" | "slow_reader"
}> {}

/**
 * How one exchange failed (`Forward.ts`). The upstream's faults (connect, timeout, protocol)
 * count against its target; `UpstreamSaturated` (our own connection limits: nothing was sent)
 * and `DownstreamError` (the client's side) never do.
 */
export type ExchangeError = UpstreamConnectFailed | UpstreamTimeout | UpstreamProtocolError | UpstreamSaturated | DownstreamError

/** Every failure of the upstream stage. */
export type UpstreamError = ExchangeError | UpstreamBadAnswer | NoHealthyUpstream | RouteCircuitOpen
