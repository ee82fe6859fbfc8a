/**
 * The validator's settings (`limits {…}`), their defaults, and the node:http parser options a
 * listener must set so that the validator sees every header that arrived.
 */
import type { LimitsConfig } from "../../config/Schema.js"
import type { EscapedSlashAction, PathOptions } from "../../http/Path.js"

export type { EscapedSlashAction } from "../../http/Path.js"


/** What to do with a request header whose name contains `_` (CGI back-ends fold `_` into `-`). */
export type UnderscoreHeaderAction = "drop" | "reject" | "allow"

export interface RequestValidationConfig extends PathOptions {
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

/** `limits {…}` -> the validator's settings (every field has its documented default in config/LimitsSchema.ts). */
export const validationConfigFor = (limits: LimitsConfig): RequestValidationConfig => ({
  ...defaultRequestValidationConfig,
  maxHeaderCount: limits.maxHeaderCount,
  maxHeaderSize: limits.maxHeaderSize,
  maxUriLength: limits.maxUriLength,
  maxHeaderLineSize: limits.maxHeaderLineSize ?? defaultRequestValidationConfig.maxHeaderLineSize,
  underscoresInHeaders: limits.underscoresInHeaders ?? defaultRequestValidationConfig.underscoresInHeaders,
  allowTrace: limits.allowTrace ?? defaultRequestValidationConfig.allowTrace,
  mergeSlashes: limits.mergeSlashes ?? defaultRequestValidationConfig.mergeSlashes,
  normalizePath: limits.normalizePath ?? defaultRequestValidationConfig.normalizePath,
  escapedSlashes: limits.escapedSlashes ?? defaultRequestValidationConfig.escapedSlashes
})
