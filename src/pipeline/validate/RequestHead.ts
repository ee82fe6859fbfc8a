/**
 * Edge validation of one parsed HTTP/1.x request (what node:http's llhttp let through).
 *
 * llhttp already rejects most framing attacks (CL+TE, duplicate CL, bad chunk sizes, obs-fold,
 * bare CR/LF, NUL in values; see reference/edge-security.md §2.1). What it lets through, and this
 * module polices, is listed in §2.4 item 5: HTTP/0.9, HTTP/2.0 over h1, duplicate or invalid Host,
 * absolute-form with a different Host, `GET *`, underscore names, silent header-count truncation.
 * The framing checks are repeated here anyway (cheap, and this function is also the oracle for
 * requests that arrive over other parsers, e.g. h2 downgraded to h1).
 *
 * Pure and allocation-light: one pass over `rawHeaders`, no Effect (hot path, DESIGN.md §2).
 * The result is a normalised view whose headers are meant to be re-serialised to the upstream;
 * raw request bytes are never forwarded.
 */
import { HOP_BY_HOP } from "../../http/HopByHop.js"
import { isBadFieldValue, isToken } from "../../http/Chars.js"
import { formatAuthority, parseAuthority, sameAuthority, trimOws, type Authority } from "../../http/Authority.js"
import { isValidQuery, normalizePath, type PathRejectReason } from "../../http/Path.js"
import { defaultRequestValidationConfig, type RequestValidationConfig } from "./Settings.js"


/** The parts of `http.IncomingMessage` this module reads. */
export interface IncomingRequestHead {
  readonly method?: string | undefined
  readonly url?: string | undefined
  readonly httpVersion: string
  readonly rawHeaders: ReadonlyArray<string>
}

export type RejectReason =
  | PathRejectReason
  | "uri-too-long"
  | "headers-too-many"
  | "headers-too-large"
  | "header-line-too-large"
  | "http09"
  | "version-unsupported"
  | "method-invalid"
  | "method-connect"
  | "method-trace"
  | "asterisk-form"
  | "target-invalid"
  | "target-fragment"
  | "query-bad-char"
  | "host-missing"
  | "host-duplicate"
  | "host-invalid"
  | "host-mismatch"
  | "absolute-userinfo"
  | "absolute-scheme"
  | "content-length-and-transfer-encoding"
  | "content-length-duplicate"
  | "content-length-invalid"
  | "transfer-encoding-duplicate"
  | "transfer-encoding-unsupported"
  | "transfer-encoding-http10"
  | "header-name-invalid"
  | "header-value-invalid"
  | "header-underscore"
  | "expect-unsupported"
  | "pseudo-header-invalid"
  | "connect-protocol-unsupported"

export type RejectStatus = 400 | 405 | 414 | 417 | 431 | 501 | 505

export interface Rejected {
  readonly _tag: "Rejected"
  readonly status: RejectStatus
  readonly reason: RejectReason
}

export interface ValidatedRequest {
  readonly method: string
  readonly httpVersion: "1.0" | "1.1" | "2.0"
  /** Scheme the client used to reach us (from the socket). */
  readonly scheme: "http" | "https"
  /** Authority used for routing and (unless rewritten) forwarding: lower-cased hostname, `:port` when given. null only for HTTP/1.0 without Host. */
  readonly host: string | null
  readonly hostname: string | null
  readonly port: number | null
  /** The normalised path (routing and forwarding use this same value). `*` for `OPTIONS *`. */
  readonly path: string
  /** The path as it arrived, before normalisation (for logs). */
  readonly rawPath: string
  /** Query string without `?`, null when absent. Validated for characters only, never decoded. */
  readonly query: string | null
  /** `path` + `?query`: the request-target to send upstream (origin-form). */
  readonly target: string
  /** true when the request-target was in absolute-form (`GET http://a/x`). */
  readonly absoluteForm: boolean
  /** Body length from a validated Content-Length (re-serialised as decimal), null when absent. */
  readonly contentLength: number | null
  /** Body is chunked (Transfer-Encoding was exactly `chunked`, in any RFC-legal spelling). */
  readonly chunked: boolean
  /** Value of `Upgrade` when `Connection` includes `upgrade` (e.g. "websocket"), else null. */
  readonly upgrade: string | null
  /**
   * HTTP/2 extended CONNECT (RFC 8441): the `:protocol` of a CONNECT stream, else null. Only
   * `websocket` is valid (the only protocol the proxy tunnels); the request stands for the
   * GET upgrade handshake of HTTP/1.1.
   */
  readonly connectProtocol: string | null
  /**
   * End-to-end request headers, lower-case names, in arrival order. Excludes Host, Content-Length,
   * Transfer-Encoding, Expect, every hop-by-hop header and every header named in Connection,
   * and underscore names unless allowed. Use `upstreamHeaders` to build the forwarded list.
   */
  readonly headers: ReadonlyArray<readonly [string, string]>
  /** Names of headers dropped because of `_` (for the audit log). */
  readonly droppedHeaders: ReadonlyArray<string>
}

export interface Valid {
  readonly _tag: "Valid"
  readonly request: ValidatedRequest
}

export type ValidationResult = Valid | Rejected

const reject = (status: RejectStatus, reason: RejectReason): Rejected => ({ _tag: "Rejected", status, reason })

/** Connection may not remove these: they carry framing and routing we re-serialise ourselves. */
const CONNECTION_PROTECTED = new Set(["host", "content-length"])


/**
 * Validates one request head. Never throws (property-tested on arbitrary input).
 * `encrypted` is whether the client connection is TLS (gives `scheme`).
 */
export const validateRequest = (
  req: IncomingRequestHead,
  config: RequestValidationConfig = defaultRequestValidationConfig,
  encrypted = false,
  /** The request came from the HTTP/2 server (never from a request line saying "HTTP/2.0"). */
  http2 = false
): ValidationResult => {
  const method = req.method ?? ""
  const url = req.url ?? ""
  const raw = req.rawHeaders

  // 1. Sizes first: cheapest, and nothing else should look at an oversized request.
  if (url.length > config.maxUriLength) return reject(414, "uri-too-long")
  if (raw.length > config.maxHeaderCount * 2) return reject(431, "headers-too-many")

  // 2. Version and method.
  const v = req.httpVersion
  if (v === "0.9") return reject(400, "http09")
  // "2.0" is HTTP/2 only from the HTTP/2 server (node's http2 compat API), where nghttp2 has
  // already refused connection-specific headers, malformed pseudo-headers and a content-length
  // that the DATA frames contradict; a request line saying HTTP/2.0 over HTTP/1.1 is a 505
  const h2 = http2 && v === "2.0"
  if (v !== "1.1" && v !== "1.0" && !h2) return reject(505, "version-unsupported")
  if (!isToken(method)) return reject(400, "method-invalid")
  // CONNECT is refused, except HTTP/2's extended CONNECT (its `:protocol`, checked below)
  if (method === "CONNECT" && !h2) return reject(405, "method-connect")
  if (method === "TRACE" && !config.allowTrace) return reject(405, "method-trace")

  // 3. Header block: one pass over what arrived.
  let size = method.length + url.length + 12 // "M SP url SP HTTP/1.1 CRLF"
  let hostCount = 0
  let hostValue = ""
  let clCount = 0
  let clValue = ""
  let teCount = 0
  let teValue = ""
  let connectionTokens: Array<string> | null = null
  let upgradeValue: string | null = null
  let expectValue: string | null = null
  let authorityValue: string | null = null
  let protocolValue: string | null = null
  let cookies: Array<string> | null = null
  const kept: Array<[string, string]> = []
  let dropped: Array<string> | null = null
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]
    const value = raw[i + 1]
    if (typeof name !== "string" || typeof value !== "string") return reject(400, "header-name-invalid")
    if (h2 && name.charCodeAt(0) === 58 /* : */) {
      // :method and :path are req.method / req.url; :scheme is not forwarded (ours is the socket's)
      if (name === ":authority") {
        if (authorityValue !== null) return reject(400, "host-duplicate")
        authorityValue = value
      } else if (name === ":protocol") {
        if (protocolValue !== null) return reject(400, "pseudo-header-invalid")
        protocolValue = value
      } else if (name !== ":method" && name !== ":path" && name !== ":scheme") return reject(400, "pseudo-header-invalid")
      size += name.length + value.length + 4
      continue
    }
    const line = name.length + value.length + 4
    size += line
    if (line - 2 > config.maxHeaderLineSize) return reject(431, "header-line-too-large")
    if (size > config.maxHeaderSize) return reject(431, "headers-too-large")
    if (!isToken(name)) return reject(400, "header-name-invalid")
    if (isBadFieldValue(value)) return reject(400, "header-value-invalid")
    const lower = name.toLowerCase()
    // HTTP/2 may split the cookie header; HTTP/1.1 upstream gets one, joined with "; " (RFC 9113 §8.2.3)
    if (h2 && lower === "cookie") {
      ;(cookies ??= []).push(trimOws(value))
      continue
    }
    switch (lower) {
      case "host":
        hostCount++
        hostValue = value
        continue
      case "content-length":
        clCount++
        clValue = value
        continue
      case "transfer-encoding":
        teCount++
        teValue = value
        continue
      case "connection":
        for (const t of value.split(",")) {
          const token = trimOws(t).toLowerCase()
          if (token.length > 0) (connectionTokens ??= []).push(token)
        }
        continue
      case "upgrade":
        upgradeValue = trimOws(value)
        continue
      case "expect":
        expectValue = trimOws(value).toLowerCase()
        continue
    }
    if (HOP_BY_HOP.has(lower)) continue
    if (lower.includes("_")) {
      if (config.underscoresInHeaders === "reject") return reject(400, "header-underscore")
      if (config.underscoresInHeaders === "drop") {
        ;(dropped ??= []).push(lower)
        continue
      }
    }
    kept.push([lower, trimOws(value)])
  }
  if (size > config.maxHeaderSize) return reject(431, "headers-too-large")
  // extended CONNECT (RFC 8441 §4): `:protocol` only with CONNECT, and a plain CONNECT is not tunnelled
  if (method === "CONNECT") {
    if (protocolValue === null) return reject(405, "method-connect")
    if (protocolValue !== "websocket") return reject(501, "connect-protocol-unsupported")
  } else if (protocolValue !== null) return reject(400, "pseudo-header-invalid")
  if (cookies !== null) kept.push(["cookie", cookies.join("; ")])

  // 4. Framing: never two descriptions of the body (RFC 9112 §6.1, §6.3).
  if (clCount > 1) return reject(400, "content-length-duplicate")
  if (teCount > 1) return reject(400, "transfer-encoding-duplicate")
  if (clCount === 1 && teCount === 1) return reject(400, "content-length-and-transfer-encoding")
  let contentLength: number | null = null
  if (clCount === 1) {
    const t = trimOws(clValue)
    // 1*DIGIT only: never parseInt/Number on the raw text (`+1`, `0x1`, `1e3`, ` 1 2`)
    if (t.length === 0 || t.length > 15) return reject(400, "content-length-invalid")
    for (let i = 0; i < t.length; i++) {
      const c = t.charCodeAt(i)
      if (c < 48 || c > 57) return reject(400, "content-length-invalid")
    }
    contentLength = Number(t)
  }
  let chunked = false
  if (teCount === 1) {
    if (v === "1.0") return reject(400, "transfer-encoding-http10")
    let codings = 0
    let sawChunked = false
    for (const part of teValue.split(",")) {
      const coding = trimOws(part).toLowerCase()
      if (coding.length === 0) continue // RFC-legal empty list element (`,chunked`)
      codings++
      if (coding === "chunked") sawChunked = true
    }
    // Anything but exactly one `chunked` coding: nginx 501, and we do not decode other codings.
    if (codings !== 1 || !sawChunked) return reject(501, "transfer-encoding-unsupported")
    chunked = true
  }
  if (expectValue !== null && expectValue !== "100-continue") return reject(417, "expect-unsupported")

  // 5. Request-target and Host (RFC 9112 §3.2, §3.2.2).
  if (hostCount > 1) return reject(400, "host-duplicate")
  let hostAuthority: Authority | null = null
  if (hostCount === 1) {
    hostAuthority = parseAuthority(trimOws(hostValue))
    if (hostAuthority === null) return reject(400, "host-invalid")
  } else if (v === "1.1") return reject(400, "host-missing")
  if (h2) {
    // :authority is the host; a Host that names another one is refused (one value for routing and upstream)
    if (authorityValue !== null) {
      const a = parseAuthority(authorityValue)
      if (a === null || authorityValue.includes("@")) return reject(400, "host-invalid")
      if (hostAuthority !== null && !sameAuthority(a, hostAuthority, encrypted ? 443 : 80)) return reject(400, "host-mismatch")
      hostAuthority = a
    } else if (hostAuthority === null) return reject(400, "host-missing")
  }

  const scheme: "http" | "https" = encrypted ? "https" : "http"
  let authority = hostAuthority
  let pathAndQuery: string
  let absoluteForm = false
  if (url.charCodeAt(0) === 47 /* / */) {
    pathAndQuery = url
  } else if (url === "*") {
    if (method !== "OPTIONS") return reject(400, "asterisk-form")
    pathAndQuery = "*"
  } else {
    const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/.exec(url)
    if (m === null) return reject(400, "target-invalid")
    const targetScheme = m[1].toLowerCase()
    if (targetScheme !== "http" && targetScheme !== "https") return reject(400, "absolute-scheme")
    if (m[2].includes("@")) return reject(400, "absolute-userinfo")
    const targetAuthority = parseAuthority(m[2])
    if (targetAuthority === null) return reject(400, "host-invalid")
    // Routing and the forwarded Host must come from one value: reject when they disagree (HAProxy).
    if (hostAuthority !== null && !sameAuthority(targetAuthority, hostAuthority, targetScheme === "https" ? 443 : 80)) {
      return reject(400, "host-mismatch")
    }
    authority = hostAuthority ?? targetAuthority
    absoluteForm = true
    pathAndQuery = m[3].length === 0 ? "/" : m[3]
    if (pathAndQuery.charCodeAt(0) !== 47 && pathAndQuery.charCodeAt(0) !== 63) return reject(400, "target-invalid")
    if (pathAndQuery.charCodeAt(0) === 63) pathAndQuery = "/" + pathAndQuery
  }
  if (pathAndQuery.includes("#")) return reject(400, "target-fragment")

  const qIndex = pathAndQuery.indexOf("?")
  const rawPath = qIndex < 0 ? pathAndQuery : pathAndQuery.slice(0, qIndex)
  const query = qIndex < 0 ? null : pathAndQuery.slice(qIndex + 1)
  let path: string
  if (rawPath === "*") path = "*"
  else {
    const n = normalizePath(rawPath, config)
    if (n.charCodeAt(0) !== 47) return reject(400, n as RejectReason)
    path = n
  }
  if (query !== null && !isValidQuery(query)) return reject(400, "query-bad-char")

  // 6. Connection-named headers are hop-by-hop too (RFC 9110 §7.6.1).
  let headers: ReadonlyArray<readonly [string, string]> = kept
  if (connectionTokens !== null) {
    const named = new Set(connectionTokens.filter((t) => !CONNECTION_PROTECTED.has(t)))
    if (named.size > 0) headers = kept.filter(([n]) => !named.has(n))
  }
  const upgrade = upgradeValue !== null && connectionTokens?.includes("upgrade") === true ? upgradeValue : null

  return {
    _tag: "Valid",
    request: {
      method,
      httpVersion: v,
      scheme,
      host: authority === null ? null : formatAuthority(authority),
      hostname: authority?.hostname ?? null,
      port: authority?.port ?? null,
      path,
      rawPath,
      query,
      target: query === null ? path : `${path}?${query}`,
      absoluteForm,
      contentLength,
      chunked,
      upgrade,
      connectProtocol: protocolValue,
      headers,
      droppedHeaders: dropped ?? []
    }
  }
}
