/**
 * The opening handshake of RFC 6455 §4, pure: is a request a WebSocket upgrade, is it a valid
 * one (400, or 426 for a version other than 13), and is the upstream's 101 the answer to it
 * (its `Sec-WebSocket-Accept`, the extensions it chose).
 */
import { createHash, randomBytes } from "node:crypto"

/** RFC 6455 §1.3: appended to the key before hashing. */
export const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/** The only version of the protocol (RFC 6455 §4.1). */
export const WEBSOCKET_VERSION = "13"

/** The value of `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`. */
export const acceptKey = (key: string): string => createHash("sha1").update(key + WEBSOCKET_GUID).digest("base64")

type HeaderValue = string | ReadonlyArray<string> | undefined

const joined = (v: HeaderValue): string | undefined => (v === undefined ? undefined : typeof v === "string" ? v : v.join(","))

/** Whether a comma-separated header value has `token` (ASCII case-insensitive; `websocket/13` counts as `websocket`). */
export const hasToken = (value: HeaderValue, token: string): boolean => {
  const s = joined(value)
  if (s === undefined) return false
  for (const part of s.split(",")) {
    const t = part.trim()
    const slash = t.indexOf("/")
    if ((slash === -1 ? t : t.slice(0, slash)).toLowerCase() === token) return true
  }
  return false
}

/** The request asks for a WebSocket: its `Upgrade` names `websocket` (with or without `Connection: upgrade`). */
export const asksForWebSocket = (upgrade: HeaderValue): boolean => upgrade !== undefined && hasToken(upgrade, "websocket")

/** Sixteen bytes, base64: 22 characters and `==` (RFC 6455 §4.1, item 7). */
const KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/

export interface HandshakeRefusal {
  readonly status: number
  /** Machine-readable reason: `rejected{reason}`, the access log's `error`. */
  readonly reason: string
  /** Extra response headers (flat). */
  readonly headers: ReadonlyArray<string>
}

export interface HandshakeRequest {
  readonly method: string
  readonly httpVersion: string
  readonly headers: Readonly<Record<string, HeaderValue>>
}

/**
 * The rules of a client's opening handshake (RFC 6455 §4.2.1), in the order a client most
 * likely breaks them. Undefined = valid.
 */
export const checkClientHandshake = (req: HandshakeRequest): HandshakeRefusal | undefined => {
  if (req.method !== "GET") return { status: 400, reason: "websocket_method_not_get", headers: [] }
  if (req.httpVersion !== "1.1") return { status: 400, reason: "websocket_http_version", headers: [] }
  if (!hasToken(req.headers["connection"], "upgrade")) return { status: 400, reason: "websocket_connection_not_upgrade", headers: [] }
  const key = joined(req.headers["sec-websocket-key"])
  if (key === undefined || !KEY.test(key.trim())) return { status: 400, reason: "websocket_invalid_key", headers: [] }
  const version = joined(req.headers["sec-websocket-version"])?.trim()
  if (version !== WEBSOCKET_VERSION) {
    // §4.4: tell the client which version we speak
    return { status: 426, reason: "websocket_unsupported_version", headers: ["sec-websocket-version", WEBSOCKET_VERSION, "upgrade", "websocket"] }
  }
  return undefined
}

/**
 * The rules of an HTTP/2 WebSocket handshake (RFC 8441 §5: an extended CONNECT with
 * `:protocol websocket`, which the validator already checked): no key, no `Connection`, but
 * the version must be 13. A wrong version is a 400 naming the version we speak (HTTP/2 has no
 * 426 upgrade: `Upgrade` is a connection-specific header there).
 */
export const checkHttp2Handshake = (headers: Readonly<Record<string, HeaderValue>>): HandshakeRefusal | undefined => {
  const version = joined(headers["sec-websocket-version"])?.trim()
  if (version !== WEBSOCKET_VERSION) return { status: 400, reason: "websocket_unsupported_version", headers: ["sec-websocket-version", WEBSOCKET_VERSION] }
  return undefined
}

/** A fresh `Sec-WebSocket-Key` for the upstream leg of an HTTP/2 WebSocket (the client sends none). */
export const newKey = (): string => randomBytes(16).toString("base64")

/** RSV bits the negotiated extensions may set (RFC 7692: permessage-deflate uses RSV1; any other: all). */
export const rsvAllowedBy = (extensions: string | undefined): number => {
  if (extensions === undefined || extensions.trim() === "") return 0
  let rsv = 0
  for (const ext of extensions.split(",")) {
    const name = ext.split(";")[0].trim().toLowerCase()
    if (name === "") continue
    rsv |= name === "permessage-deflate" ? 0x40 : 0x70
  }
  return rsv
}

export interface UpstreamAnswer {
  /** What the negotiated extensions allow in RSV bits. */
  readonly allowedRsv: number
  readonly protocol: string | undefined
}

/**
 * Checks the upstream's 101 against the client's key: `Sec-WebSocket-Accept` must match, and
 * without an extension offer (inspection removes it) none may be chosen. A reason string = refused.
 */
export const checkUpstreamAnswer = (
  clientKey: string,
  headers: ReadonlyMap<string, string>,
  extensionsOffered: boolean
): UpstreamAnswer | string => {
  if (!hasToken(headers.get("upgrade"), "websocket")) return "websocket_upstream_no_upgrade"
  if (headers.get("sec-websocket-accept")?.trim() !== acceptKey(clientKey.trim())) return "websocket_upstream_bad_accept"
  const ext = headers.get("sec-websocket-extensions")
  if (ext !== undefined && ext.trim() !== "" && !extensionsOffered) return "websocket_upstream_extension_not_offered"
  return { allowedRsv: rsvAllowedBy(ext), protocol: headers.get("sec-websocket-protocol") }
}
