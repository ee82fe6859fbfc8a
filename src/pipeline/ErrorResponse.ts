/**
 * The one table from typed failures to HTTP answers: every error the proxy answers by itself
 * (the pipeline's phases, the upstream stage, the listener's refusals) gets its status, reason
 * and extra headers here. Proxy-made error bodies are JSON and always carry the trace id, so
 * an operator can find the log line.
 */
import type { ProxyError } from "./Errors.js"

export interface ErrorAnswer {
  readonly status: number
  /** Short machine-readable reason, also used as the metrics label. */
  readonly reason: string
  readonly headers: ReadonlyArray<readonly [string, string]>
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Payload Too Large",
  414: "URI Too Long",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported"
}

export const statusText = (status: number): string => STATUS_TEXT[status] ?? "Error"

const RETRY_SOON: ReadonlyArray<readonly [string, string]> = [["retry-after", "1"]]

export const errorAnswer = (error: ProxyError): ErrorAnswer => {
  switch (error._tag) {
    case "NoRoute":
      return { status: 404, reason: "no_route", headers: [] }
    case "RequestRejected":
      return { status: error.status, reason: error.reason, headers: [] }
    case "BodyTooLarge":
      return { status: 413, reason: "body_too_large", headers: [] }
    case "NoUpstream":
      return { status: 502, reason: "no_upstream", headers: [] }
    case "InternalError":
      return { status: 500, reason: error.reason, headers: [] }
    case "UpstreamConnectFailed":
      return { status: 502, reason: `connect_${error.reason}`, headers: [] }
    case "UpstreamProtocolError":
      return { status: 502, reason: `upstream_${error.reason}`, headers: [] }
    case "UpstreamBadAnswer":
      return { status: 502, reason: error.reason, headers: [] }
    case "UpstreamTimeout":
      return { status: 504, reason: `timeout_${error.phase.replace("-", "_")}`, headers: [] }
    case "NoHealthyUpstream":
      return {
        status: 503,
        reason: "no_healthy_upstream",
        headers: [["retry-after", String(error.retryAfterSecs)]]
      }
    case "RouteCircuitOpen":
      return { status: 503, reason: "route_circuit_open", headers: [["retry-after", String(error.retryAfterSecs)]] }
    case "UpstreamSaturated":
      return { status: 503, reason: `upstream_${error.reason}`, headers: RETRY_SOON }
    case "Overloaded":
      return { status: 503, reason: error.reason, headers: RETRY_SOON }
    case "ClientTooSlow":
      return { status: 408, reason: error.reason, headers: [] }
    case "ClientClosed":
      return { status: 499, reason: "client_closed", headers: [] }
    case "DownstreamError":
      return { status: error.status, reason: error.reason, headers: [] }
    case "RequestTimeout":
      return { status: 504, reason: `timeout_${error.phase}`, headers: [] }
  }
}

/** JSON body for proxy-made errors: `{"error":"504 Gateway Timeout","reason":...,"trace_id":...}`. */
export const errorBody = (status: number, reason: string, traceId: string): string =>
  JSON.stringify({ error: `${status} ${statusText(status)}`, reason, trace_id: traceId }) + "\n"
