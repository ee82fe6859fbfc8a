/**
 * `type "compress"`: gzip / brotli / deflate of proxied responses (node:zlib), negotiated with
 * the client's `Accept-Encoding` (src/http/ContentCoding.ts).
 *
 * `compressResponse` is the one place a response is re-encoded: it takes the response head and
 * the request's method and `Accept-Encoding`, edits the head (no `Content-Length`, the
 * `Content-Encoding`, a weak `ETag`, `Vary: Accept-Encoding`, no `Accept-Ranges`) and returns the
 * encoder the body is streamed through, or why the response is left alone. Left alone: HEAD,
 * 1xx/204/205/304 (no body), 206 or a `Content-Range` (a range of the identity bytes), an
 * already encoded body, `Cache-Control: no-transform`, a type not listed, a `Content-Length`
 * below `min-size`, and a client that accepts none of the algorithms. A body of unknown length
 * (chunked) is compressed: its size is not known before it is sent.
 *
 * Memory: zlib's own state per response (gzip/deflate ~256 KiB at the default memLevel, and a
 * few idle ones pooled; brotli's window is bounded by `BROTLI_LGWIN`, below its 4 MiB default)
 * and one output buffer: the body streams through with back-pressure (./BodyEncoder.ts).
 */
import { constants, createBrotliCompress, createDeflate, createGzip, type Gzip, type BrotliCompress, type Deflate } from "node:zlib"
import { DEFAULT_COMPRESS_TYPES } from "../config/FilterSchema.js"
import type { BodyEncoder } from "../pipeline/Stage.js"
import { createBodyEncoder } from "./BodyEncoder.js"
import { type ContentCoding, hasDirective, mediaType, negotiateEncoding, varyWith, weakEtag } from "../http/ContentCoding.js"

export interface CompressConfig {
  /** KDL `algorithms "gzip,br"`: the codings offered, in order of preference. Default gzip, br. */
  readonly algorithms: ReadonlyArray<ContentCoding>
  /** KDL `min-size`: a response with a smaller `Content-Length` is sent as is. Default 1024. */
  readonly minSize: number
  /** KDL `level` (1-9): gzip/deflate level, brotli quality. Default 6. */
  readonly level: number
  /**
   * KDL `content-types`: media types compressed; `"text/*"` (or Sentinel's `"text/"`) matches a
   * whole top-level type. Default Sentinel's list: text/html, text/css, text/plain, text/xml,
   * application/json, application/javascript, application/xml, image/svg+xml.
   */
  readonly contentTypes: ReadonlyArray<string>
}

export const defaultCompressConfig: CompressConfig = {
  algorithms: ["gzip", "br"],
  minSize: 1024,
  level: 6,
  contentTypes: DEFAULT_COMPRESS_TYPES
}

/** Why a response was sent as it came (the `sentinel_compression_skipped_total{reason}` label). */
export type CompressSkip = "head" | "status" | "range" | "encoded" | "no-transform" | "type" | "size" | "not-accepted"

export type Encoder = Gzip | BrotliCompress | Deflate

/** Largest brotli window (2^19 = 512 KiB): bounds brotli's memory per response. */
const BROTLI_LGWIN_MAX = 19

/** Brotli's parameters for quality `level` (0-11) and a body of `sizeHint` bytes when known (its window sized to it). */
export const brotliParams = (level: number, sizeHint?: number): Record<number, number> => {
  const params: Record<number, number> = {
    [constants.BROTLI_PARAM_QUALITY]: Math.max(0, Math.min(11, level)),
    [constants.BROTLI_PARAM_LGWIN]: sizeHint === undefined
      ? BROTLI_LGWIN_MAX
      : Math.max(constants.BROTLI_MIN_WINDOW_BITS, Math.min(BROTLI_LGWIN_MAX, Math.ceil(Math.log2(Math.max(1, sizeHint)))))
  }
  if (sizeHint !== undefined) params[constants.BROTLI_PARAM_SIZE_HINT] = sizeHint
  return params
}

const zlibLevel = (level: number): number => Math.max(1, Math.min(9, level))

/**
 * A streaming encoder for `coding` (static files' on-the-fly variants). `level`: zlib level for
 * gzip/deflate (1-9), quality for brotli (0-11); `sizeHint`: the body's size when known.
 */
export const createEncoder = (coding: ContentCoding, level: number, sizeHint?: number): Encoder => {
  if (coding === "br") return createBrotliCompress({ params: brotliParams(level, sizeHint) })
  const options = { level: zlibLevel(level) }
  return coding === "gzip" ? createGzip(options) : createDeflate(options)
}

/** Whether `type` (a lower-case media type) is one of `listed` ("a/b" exact, "a/*" or "a/" a whole top-level type). */
export const typeListed = (listed: ReadonlyArray<string>, type: string): boolean => {
  if (type === "") return false
  for (const t of listed) {
    if (t.endsWith("/*") ? type.startsWith(t.slice(0, -1)) : t.endsWith("/") ? type.startsWith(t) : type === t) return true
  }
  return false
}

const indexOf = (flat: ReadonlyArray<string>, lower: string): number => {
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i].length === lower.length && flat[i].toLowerCase() === lower) return i
  }
  return -1
}
const valueOf = (flat: ReadonlyArray<string>, lower: string): string | undefined => {
  const i = indexOf(flat, lower)
  return i === -1 ? undefined : flat[i + 1]
}
/** Every value of a header, joined as a list (Cache-Control may come as several fields). */
const joined = (flat: ReadonlyArray<string>, lower: string): string => {
  let out = ""
  for (let i = 0; i < flat.length; i += 2) {
    if (flat[i].length === lower.length && flat[i].toLowerCase() === lower) out = out === "" ? flat[i + 1] : `${out},${flat[i + 1]}`
  }
  return out
}
const removeAll = (flat: Array<string>, lower: string): void => {
  for (let i = flat.length - 2; i >= 0; i -= 2) {
    if (flat[i].length === lower.length && flat[i].toLowerCase() === lower) flat.splice(i, 2)
  }
}

/** Adds `Accept-Encoding` to the head's `Vary` (merged into the first `Vary` field, or a new one). */
const addVary = (flat: Array<string>): void => {
  const i = indexOf(flat, "vary")
  const next = varyWith(i === -1 ? undefined : joined(flat, "vary"), "Accept-Encoding")
  if (next === undefined) return
  removeAll(flat, "vary")
  flat.push("vary", next)
}

/** Whether the response itself can be compressed (undefined), whatever the request, or why not. */
const responseSkip = (config: CompressConfig, status: number, flat: ReadonlyArray<string>): CompressSkip | undefined => {
  if (status < 200 || status === 204 || status === 205 || status === 304) return "status"
  if (status === 206 || indexOf(flat, "content-range") !== -1) return "range"
  const encoding = valueOf(flat, "content-encoding")
  if (encoding !== undefined && encoding.trim().toLowerCase() !== "identity") return "encoded"
  const cc = joined(flat, "cache-control")
  if (cc !== "" && hasDirective(cc, "no-transform")) return "no-transform"
  if (!typeListed(config.contentTypes, mediaType(valueOf(flat, "content-type") ?? ""))) return "type"
  const length = valueOf(flat, "content-length")
  if (length !== undefined && Number(length) < Math.max(1, config.minSize)) return "size"
  return undefined
}

export type CompressDecision =
  | { readonly _tag: "Compress"; readonly coding: ContentCoding; readonly encoder: BodyEncoder }
  | { readonly _tag: "Skip"; readonly reason: CompressSkip }

/**
 * Decides for one response and edits its flat head in place (see the module comment). A
 * compressed response's head loses `Content-Length` and `Accept-Ranges` and gains
 * `Content-Encoding`, a weak `ETag` and `Vary: Accept-Encoding`; a response that could have been
 * compressed for another request (a HEAD, a client that did not ask) gains only the `Vary`.
 */
export const compressResponse = (
  config: CompressConfig,
  method: string,
  acceptEncoding: string | undefined,
  status: number,
  flat: Array<string>
): CompressDecision => {
  const skip = responseSkip(config, status, flat)
  if (skip !== undefined) return { _tag: "Skip", reason: skip }
  addVary(flat)
  if (method === "HEAD") return { _tag: "Skip", reason: "head" }
  const coding = negotiateEncoding(acceptEncoding, config.algorithms)
  if (coding === null) return { _tag: "Skip", reason: "not-accepted" }
  const length = valueOf(flat, "content-length")
  removeAll(flat, "content-length")
  removeAll(flat, "content-encoding")
  // ranges of the encoded body are not served (the upstream's ranges are of the identity bytes)
  removeAll(flat, "accept-ranges")
  const e = indexOf(flat, "etag")
  if (e !== -1) flat[e + 1] = weakEtag(flat[e + 1])
  flat.push("content-encoding", coding)
  const size = length === undefined ? undefined : Number(length)
  const hint = size !== undefined && Number.isFinite(size) ? size : undefined
  const encoder = createBodyEncoder(coding, zlibLevel(config.level), coding === "br" ? brotliParams(config.level, hint) : {})
  return { _tag: "Compress", coding, encoder }
}
