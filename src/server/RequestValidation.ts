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
import { BlockList, isIP } from "node:net"
import { HOP_BY_HOP } from "../http/HopByHop.js"
import { ALNUM, table } from "../http/Chars.js"
import { formatAuthority, parseAuthority, sameAuthority, trimOws, type Authority } from "../http/Authority.js"
import { parseCidr, unmapIpv4, type Cidr } from "../http/Cidr.js"

export { parseAuthority, trimOws, type Authority } from "../http/Authority.js"
export { parseCidr, unmapIpv4, type Cidr } from "../http/Cidr.js"

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/** What to do with a request header whose name contains `_` (CGI back-ends fold `_` into `-`). */
export type UnderscoreHeaderAction = "drop" | "reject" | "allow"

/** What to do with `%2F` inside a path segment. */
export type EscapedSlashAction = "keep" | "reject"

export interface RequestValidationConfig {
  /** KDL `limits { max-header-count }`. Header lines counted on `rawHeaders` (what arrived). Default 100 (Envoy/HAProxy), above it 431. */
  readonly maxHeaderCount: number
  /** KDL `limits { max-header-size }`. Bytes of request line + header lines as on the wire (`name: value\r\n`). Default 16384, above it 431. */
  readonly maxHeaderSize: number
  /** KDL `limits { max-header-line-size }` (not in Sentinel). Bytes of one header line. Default 8192 (nginx), above it 431. */
  readonly maxHeaderLineSize: number
  /** KDL `limits { max-uri-length }` (not in Sentinel). Bytes of the request-target. Default 8192 (nginx), above it 414. */
  readonly maxUriLength: number
  /** KDL `limits { underscores-in-headers "drop"|"reject"|"allow" }`. Default "drop" (nginx `underscores_in_headers off`). */
  readonly underscoresInHeaders: UnderscoreHeaderAction
  /** KDL `limits { allow-trace }`. TRACE is answered 405 unless true. Default #false (nginx). */
  readonly allowTrace: boolean
  /** KDL `limits { merge-slashes }`. Collapse `//` in the path before routing and forwarding. Default #true (nginx, Envoy edge guide). */
  readonly mergeSlashes: boolean
  /** KDL `limits { normalize-path }`. Decode %-encoded unreserved bytes, upper-case other escapes, remove `.`/`..` segments (RFC 3986 §6.2.2). Default #true (Envoy edge guide). */
  readonly normalizePath: boolean
  /** KDL `limits { escaped-slashes "keep"|"reject" }`. `%2F` in the path is kept encoded or answered 400. Default "keep". */
  readonly escapedSlashes: EscapedSlashAction
}

export const defaultRequestValidationConfig: RequestValidationConfig = {
  maxHeaderCount: 100,
  maxHeaderSize: 16384,
  maxHeaderLineSize: 8192,
  maxUriLength: 8192,
  underscoresInHeaders: "drop",
  allowTrace: false,
  mergeSlashes: true,
  normalizePath: true,
  escapedSlashes: "keep"
}

/**
 * node:http server options the listener must set so that this module sees every header that
 * arrived: Node silently truncates above `maxHeadersCount` while llhttp still frames with the
 * dropped headers (edge-security.md §2.4.1). With limit + 1 we see one too many and answer 431.
 */
export const nodeServerOptionsFor = (config: RequestValidationConfig) => ({
  maxHeadersCount: config.maxHeaderCount + 1,
  // Node counts only name/value bytes; give it head-room so our exact wire-byte check decides.
  maxHeaderSize: config.maxHeaderSize + config.maxHeaderCount * 4 + config.maxUriLength,
  // Never lenient, whatever the command line says (edge-security.md §2.2): not configurable.
  insecureHTTPParser: false,
  // Node's own Host check answers 400 yet still parses and emits the requests pipelined
  // behind it, which would then go upstream unseen by the client: the validator answers
  // "host-missing" instead, and closes the connection like every other rejection.
  requireHostHeader: false
})

// ---------------------------------------------------------------------------------------------
// Input and output
// ---------------------------------------------------------------------------------------------

/** The parts of `http.IncomingMessage` this module reads. */
export interface IncomingRequestHead {
  readonly method?: string | undefined
  readonly url?: string | undefined
  readonly httpVersion: string
  readonly rawHeaders: ReadonlyArray<string>
}

export type RejectReason =
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
  | "path-bad-char"
  | "path-bad-encoding"
  | "path-nul"
  | "path-escaped-slash"
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

// ---------------------------------------------------------------------------------------------
// Character tables
// ---------------------------------------------------------------------------------------------

/** RFC 9110 tchar. */
const TCHAR = table("!#$%&'*+-.^_`|~", ALNUM)
/**
 * Path bytes: RFC 3986 pchar and "/" plus `|`, `^`, `[`, `]` which browsers send unencoded.
 * Excluded: controls, SP, `"`, `<`, `>`, `\`, `{`, `}`, backtick, `#`, `?` (splits), non-ASCII.
 * Backslash is excluded because some back-ends treat it as a separator.
 */
const PATH_CHAR = table("-._~!$&'()*+,;=:@/%|^[]", ALNUM)
const UNRESERVED = table("-._~", ALNUM)
const HEX_DIGITS = "0123456789ABCDEF"

const hexValue = (c: number): number =>
  c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1

/** Field value: HTAB, SP..~, obs-text. Never strip obs-text (http-garden #12/#41), only CTLs are fatal. */
const isBadValue = (v: string): boolean => {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i)
    if ((c < 32 && c !== 9) || c === 127 || c > 255) return true
  }
  return false
}

const isToken = (s: string): boolean => {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 127 || TCHAR[c] === 0) return false
  }
  return true
}

/** Connection may not remove these: they carry framing and routing we re-serialise ourselves. */
const CONNECTION_PROTECTED = new Set(["host", "content-length"])

// ---------------------------------------------------------------------------------------------
// Authority (Host) parsing
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Path
// ---------------------------------------------------------------------------------------------

/**
 * Validates and normalises an origin-form path (starts with "/"). Returns the normalised path or
 * the reason to reject. Percent-decoding is limited to unreserved bytes, so the result decodes to
 * the same bytes as the input, and only once (`%252e` stays `%252e`, i.e. the literal text `%2e`).
 */
export const normalizePath = (raw: string, config: RequestValidationConfig): string | RejectReason => {
  let needsRebuild = false
  let hasDotOrSlashRun = false
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (c > 127 || PATH_CHAR[c] === 0) return "path-bad-char"
    if (c === 37 /* % */) {
      const h1 = hexValue(raw.charCodeAt(i + 1))
      const h2 = hexValue(raw.charCodeAt(i + 2))
      if (h1 < 0 || h2 < 0) return "path-bad-encoding"
      const v = h1 * 16 + h2
      if (v === 0) return "path-nul"
      if (v === 0x2f && config.escapedSlashes === "reject") return "path-escaped-slash"
      needsRebuild = true
      i += 2
    } else if (c === 47 /* / */) {
      const n = raw.charCodeAt(i + 1)
      if (n === 47 || n === 46) hasDotOrSlashRun = true
    }
  }
  if (!config.normalizePath && !config.mergeSlashes) return raw
  let path = raw
  if (needsRebuild && config.normalizePath) {
    let out = ""
    for (let i = 0; i < raw.length; i++) {
      const c = raw.charCodeAt(i)
      if (c === 37) {
        const h1 = hexValue(raw.charCodeAt(i + 1))
        const h2 = hexValue(raw.charCodeAt(i + 2))
        const v = h1 * 16 + h2
        if (v < 128 && UNRESERVED[v] === 1) {
          out += String.fromCharCode(v)
          if (v === 46) hasDotOrSlashRun = true
        } else out += "%" + HEX_DIGITS[h1] + HEX_DIGITS[h2]
        i += 2
      } else out += raw[i]
    }
    path = out
  }
  if (!hasDotOrSlashRun) return path
  const segments = path.split("/")
  const out: Array<string> = []
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]
    const last = i === segments.length - 1
    if (config.normalizePath && s === ".") {
      if (last) out.push("")
      continue
    }
    if (config.normalizePath && s === "..") {
      out.pop()
      if (last) out.push("")
      continue
    }
    if (s === "" && config.mergeSlashes && !last) continue
    out.push(s)
  }
  return "/" + out.join("/")
}

const validateQuery = (q: string): boolean => {
  for (let i = 0; i < q.length; i++) {
    const c = q.charCodeAt(i)
    // visible ASCII only; `#` would be a fragment, which a client must not send
    if (c <= 32 || c >= 127 || c === 35) return false
  }
  return true
}

// ---------------------------------------------------------------------------------------------
// The validator
// ---------------------------------------------------------------------------------------------

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
  if (method === "CONNECT") return reject(405, "method-connect")
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
      } else if (name !== ":method" && name !== ":path" && name !== ":scheme") return reject(400, "pseudo-header-invalid")
      size += name.length + value.length + 4
      continue
    }
    const line = name.length + value.length + 4
    size += line
    if (line - 2 > config.maxHeaderLineSize) return reject(431, "header-line-too-large")
    if (size > config.maxHeaderSize) return reject(431, "headers-too-large")
    if (!isToken(name)) return reject(400, "header-name-invalid")
    if (isBadValue(value)) return reject(400, "header-value-invalid")
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
  if (query !== null && !validateQuery(query)) return reject(400, "query-bad-char")

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
      headers,
      droppedHeaders: dropped ?? []
    }
  }
}

// ---------------------------------------------------------------------------------------------
// X-Forwarded-* and trusted proxies
// ---------------------------------------------------------------------------------------------

export interface ForwardingConfig {
  /**
   * KDL `trusted-proxies "10.0.0.0/8" "2001:db8::/32" "127.0.0.1"`: peers whose X-Forwarded-*
   * headers are believed. Default: none (every client X-Forwarded-*, Forwarded, X-Real-IP is
   * replaced by what the proxy itself saw).
   */
  readonly trustedProxies: ReadonlyArray<string>
}

export const defaultForwardingConfig: ForwardingConfig = { trustedProxies: [] }

export interface TrustedProxies {
  /** Whether `ip` (any textual form; IPv4-mapped IPv6 accepted) is a trusted proxy. */
  readonly contains: (ip: string) => boolean
  readonly isEmpty: boolean
}

/** Compiles the `trusted-proxies` list. Throws on an invalid entry (the decoder validates first with `parseCidr`). */
export const compileTrustedProxies = (list: ReadonlyArray<string>): TrustedProxies => {
  const block = new BlockList()
  for (const entry of list) {
    const c = parseCidr(entry)
    if (c === null) throw new Error(`invalid trusted-proxies entry: ${JSON.stringify(entry)}`)
    block.addSubnet(c.address, c.prefix, c.family)
  }
  const isEmpty = list.length === 0
  return {
    isEmpty,
    contains: (ip) => {
      if (isEmpty) return false
      const a = unmapIpv4(ip)
      const fam = isIP(a)
      return fam !== 0 && block.check(a, fam === 4 ? "ipv4" : "ipv6")
    }
  }
}

export interface ClientConnection {
  /** `socket.remoteAddress` (may be undefined once the socket closed). */
  readonly remoteAddress: string | undefined
  /** TLS on the client connection. */
  readonly encrypted: boolean
}

export interface ForwardedInfo {
  /** The client address to use for logs, rate-limit keys and geo: the nearest untrusted hop. */
  readonly clientIp: string
  /** The direct peer address. */
  readonly peerIp: string
  /** Whether the peer is a trusted proxy (its X-Forwarded-* were used). */
  readonly peerTrusted: boolean
  readonly xForwardedFor: string
  readonly xForwardedProto: "http" | "https"
  /** null when the request had no Host (HTTP/1.0). */
  readonly xForwardedHost: string | null
}

const headerValues = (headers: ReadonlyArray<readonly [string, string]>, name: string): Array<string> => {
  const out: Array<string> = []
  for (const [n, v] of headers) if (n === name) out.push(v)
  return out
}

/**
 * Decides which client X-Forwarded-* to believe and builds the values to send upstream.
 * Untrusted peer: everything comes from the socket. Trusted peer: the X-Forwarded-For chain is
 * walked from the right, skipping trusted hops; the first untrusted address is the client. An
 * entry that is not an IP address ends the walk (everything left of it is discarded, not
 * forwarded: a garbage chain must not reach the back-end).
 */
export const resolveForwarded = (
  req: ValidatedRequest,
  conn: ClientConnection,
  trusted: TrustedProxies
): ForwardedInfo => {
  const peerIp = unmapIpv4(conn.remoteAddress ?? "")
  const socketProto: "http" | "https" = conn.encrypted ? "https" : "http"
  if (!trusted.contains(peerIp)) {
    return {
      clientIp: peerIp,
      peerIp,
      peerTrusted: false,
      xForwardedFor: peerIp,
      xForwardedProto: socketProto,
      xForwardedHost: req.host
    }
  }
  const chain: Array<string> = []
  for (const value of headerValues(req.headers, "x-forwarded-for")) {
    for (const part of value.split(",")) {
      const p = trimOws(part)
      if (p.length > 0) chain.push(p)
    }
  }
  // keep only the valid suffix of the chain
  let start = chain.length
  while (start > 0 && isIP(unmapIpv4(chain[start - 1])) !== 0) start--
  const valid = chain.slice(start).map(unmapIpv4)
  let clientIp = peerIp
  for (let i = valid.length - 1; i >= 0; i--) {
    clientIp = valid[i]
    if (!trusted.contains(valid[i])) break
  }
  const protoFirst = headerValues(req.headers, "x-forwarded-proto")[0]?.split(",")[0]
  const protoHeader = protoFirst === undefined ? undefined : trimOws(protoFirst).toLowerCase()
  const hostFirst = headerValues(req.headers, "x-forwarded-host")[0]?.split(",")[0]
  const hostHeader = hostFirst === undefined ? undefined : trimOws(hostFirst)
  const fwdHost = hostHeader === undefined ? null : parseAuthority(hostHeader)
  return {
    clientIp,
    peerIp,
    peerTrusted: true,
    xForwardedFor: [...valid, peerIp].join(", "),
    xForwardedProto: protoHeader === "http" || protoHeader === "https" ? protoHeader : socketProto,
    xForwardedHost: fwdHost !== null ? formatAuthority(fwdHost) : req.host
  }
}

/** Headers describing the client that only a trusted proxy may set. */
const CLIENT_DESCRIBING = new Set(["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip"])

export interface UpstreamHeaderOptions {
  /** Host to send upstream. Default: the client's (validated) Host. */
  readonly host?: string
  /** Add X-Forwarded-For/-Proto/-Host. Default true. */
  readonly xForwarded?: boolean
}

/**
 * The request headers to send upstream, re-serialised (lower-case names): `host` first, the
 * end-to-end headers, X-Forwarded-* as decided by `resolveForwarded`, and `content-length`
 * (decimal) when the request had one. Never Transfer-Encoding or any hop-by-hop header: the
 * upstream client frames the body itself (undici also throws on several of them).
 */
export const upstreamHeaders = (
  req: ValidatedRequest,
  fwd: ForwardedInfo,
  options: UpstreamHeaderOptions = {}
): Array<[string, string]> => {
  const flat = appendUpstreamHeaders([], req, fwd, options)
  const out: Array<[string, string]> = []
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i], flat[i + 1]])
  return out
}

/** `upstreamHeaders`, appended to a flat `[name, value, ...]` list (the request path). Returns `out`. */
export const appendUpstreamHeaders = (
  out: Array<string>,
  req: ValidatedRequest,
  fwd: ForwardedInfo,
  options: UpstreamHeaderOptions = {}
): Array<string> => {
  const host = options.host ?? req.host
  if (host !== null) out.push("host", host)
  const headers = req.headers
  for (let i = 0; i < headers.length; i++) {
    const n = headers[i][0]
    if (CLIENT_DESCRIBING.has(n)) {
      // a trusted proxy's Forwarded / X-Real-IP pass through; X-Forwarded-* are rebuilt below
      if (!fwd.peerTrusted || n.startsWith("x-forwarded-")) continue
    }
    out.push(n, headers[i][1])
  }
  if (options.xForwarded !== false) {
    out.push("x-forwarded-for", fwd.xForwardedFor, "x-forwarded-proto", fwd.xForwardedProto)
    if (fwd.xForwardedHost !== null) out.push("x-forwarded-host", fwd.xForwardedHost)
  }
  if (req.contentLength !== null) out.push("content-length", String(req.contentLength))
  return out
}

/** Flattens pairs to `[k, v, k, v, ...]` (undici's `headers` accepts this and keeps duplicates). */
export const flattenHeaders = (pairs: ReadonlyArray<readonly [string, string]>): Array<string> => {
  const out = new Array<string>(pairs.length * 2)
  for (let i = 0; i < pairs.length; i++) {
    out[2 * i] = pairs[i][0]
    out[2 * i + 1] = pairs[i][1]
  }
  return out
}
