/**
 * Typed failures of the request path. Every phase fails with one of these or with an upstream
 * failure (`upstream/Errors.ts`); `ErrorResponse.ts` maps them all to a status in one table.
 */
import * as Data from "effect/Data"
import type { UpstreamError } from "../upstream/Errors.js"

/** No route matched the request (404). */
export class NoRoute extends Data.TaggedError("NoRoute")<{
  readonly host: string
  readonly path: string
}> {}

/**
 * The request head broke the edge rules: the validator's verdict (400, 405, 414, 417, 431, 501,
 * 505: `validate/RequestHead.ts` says which status each reason gets) or the HTTP parser's
 * (the listener's table of parser codes).
 */
export class RequestRejected extends Data.TaggedError("RequestRejected")<{
  readonly status: number
  readonly reason: string
}> {}

/** The request body is over the route's `max-body-size`, declared or while streaming (413). */
export class BodyTooLarge extends Data.TaggedError("BodyTooLarge")<{}> {}

/** The route has neither an upstream nor a handler (502). */
export class NoUpstream extends Data.TaggedError("NoUpstream")<{
  readonly route: string
}> {}

/** A bug or a failing handler: 500 with `reason` (`internal`, `builtin_failed`, `handler_failed`). */
export class InternalError extends Data.TaggedError("InternalError")<{
  readonly reason: "internal" | "builtin_failed" | "handler_failed"
}> {}

/** The client went away before the response was complete (logged as 499). */
export class ClientClosed extends Data.TaggedError("ClientClosed")<{}> {}

/** A request-level deadline (route `timeout-secs`) expired. */
export class RequestTimeout extends Data.TaggedError("RequestTimeout")<{
  readonly phase: string
}> {}

/**
 * The listener's own limits refused the request or connection: connection limits, in-flight
 * admission (503 with `Retry-After`).
 */
export class Overloaded extends Data.TaggedError("Overloaded")<{
  readonly reason: string
}> {}

/** A client too slow for a listener deadline (`body_idle_timeout`, `write_timeout`, ...): 408. */
export class ClientTooSlow extends Data.TaggedError("ClientTooSlow")<{
  readonly reason: string
}> {}

export type ProxyError =
  | NoRoute
  | RequestRejected
  | BodyTooLarge
  | NoUpstream
  | InternalError
  | ClientClosed
  | RequestTimeout
  | Overloaded
  | ClientTooSlow
  | UpstreamError
