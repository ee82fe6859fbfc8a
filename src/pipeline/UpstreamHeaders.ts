/**
 * The request headers sent upstream, re-serialised from the validated head: never the raw
 * client bytes.
 */
import { appendUpstreamHeaders, viaEntry } from "../http/Forwarded.js"
import type { RoutePlan } from "./Dataplane.js"
import type { RequestContext } from "./RequestContext.js"
import type { Valid } from "./validate/RequestHead.js"

/**
 * The client's own trace-id headers are replaced by ours upstream; Via is merged; the mTLS
 * headers are only ever the proxy's (a client cannot claim a certificate it did not present).
 */
const SET_BY_PROXY = new Set([
  "x-request-id", "x-correlation-id", "via",
  "x-client-cert-subject", "x-client-cert-issuer", "x-client-cert-serial", "x-client-cert-fingerprint"
])

/**
 * Request headers for the upstream, re-serialised from the validated head (never the raw
 * client bytes): Host, end-to-end headers, X-Forwarded-* as `resolveForwarded` decided,
 * a decimal Content-Length when the request had one (a chunked body is re-chunked by the
 * client: one canonical `Transfer-Encoding: chunked`), Via and our trace id; then the route's
 * header policy.
 */
export const buildUpstreamHeaders = (ctx: RequestContext, plan: RoutePlan): Array<string> => {
  const head = ctx.edge
  const v = (head.result as Valid).request
  const out = appendUpstreamHeaders([], v, head.forwarded!)
  // the client's Via is merged into ours, its trace-id headers replaced (names are lower-case here)
  let via: string | undefined
  let w = 0
  for (let r = 0; r < out.length; r += 2) {
    const n = out[r]
    if (SET_BY_PROXY.has(n)) {
      if (n === "via") via = via === undefined ? out[r + 1] : `${via}, ${out[r + 1]}`
      continue
    }
    out[w++] = n
    out[w++] = out[r + 1]
  }
  out.length = w
  out.push(
    "via", via === undefined ? viaEntry(v.httpVersion) : `${via}, ${viaEntry(v.httpVersion)}`,
    "x-request-id", ctx.traceId,
    "x-correlation-id", ctx.traceId
  )
  const cert = ctx.tls?.clientCert
  if (cert !== undefined) {
    out.push(
      "x-client-cert-subject", cert.subject,
      "x-client-cert-issuer", cert.issuer,
      "x-client-cert-serial", cert.serial,
      "x-client-cert-fingerprint", cert.fingerprint256
    )
  }
  plan.requestPolicy?.(out)
  return out
}
