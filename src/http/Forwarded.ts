/**
 * X-Forwarded-* and trusted proxies: which client-supplied forwarding headers to believe (the
 * listener's `trusted-proxies`), and the request headers re-serialised for the upstream with
 * the forwarding facts the proxy decided (X-Forwarded-For/-Proto/-Host, Via). Pure functions
 * over a validated head; node's `BlockList` and `isIP` are pure checks.
 */
import { BlockList, isIP } from "node:net"
import { parseAuthority, formatAuthority, trimOws } from "./Authority.js"
import { parseCidr, unmapIpv4 } from "./Cidr.js"

/** The parts of a validated request head (`ValidatedRequest`) forwarding reads. */
export interface ForwardedHead {
  /** The validated authority (lower-case host, `:port` when given); null for HTTP/1.0 without Host. */
  readonly host: string | null
  /** End-to-end request headers, lower-case names, hop-by-hop already removed. */
  readonly headers: ReadonlyArray<readonly [string, string]>
  /** A validated Content-Length, null when absent. */
  readonly contentLength: number | null
}

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
  req: ForwardedHead,
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
  req: ForwardedHead,
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
  req: ForwardedHead,
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

/** Our Via entry (RFC 9110 §7.6.3: received-protocol and pseudonym). */
export const viaEntry = (httpVersion: string): string =>
  httpVersion === "1.1" ? "1.1 sentinel" : httpVersion === "2.0" ? "2 sentinel" : `${httpVersion} sentinel`
