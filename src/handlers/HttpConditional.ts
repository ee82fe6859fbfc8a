/**
 * Conditional requests (RFC 9110 §13) and single byte ranges (RFC 9110 §14) for the static file
 * handler (its Accept-Encoding negotiation is src/http/ContentCoding.ts). Pure functions over
 * header strings.
 */

/** Strong validator from size and mtime (what Sentinel does), with a suffix per content coding. */
export const makeEtag = (size: number, mtimeMs: number, coding: "" | "br" | "gzip" = ""): string =>
  `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}${coding === "" ? "" : "-" + coding}"`

const opaque = (tag: string): string => (tag.startsWith("W/") ? tag.slice(2) : tag)

/** If-None-Match uses the weak comparison (RFC 9110 §13.1.2). */
export const etagMatches = (ifNoneMatch: string, etag: string): boolean => {
  const trimmed = ifNoneMatch.trim()
  if (trimmed === "*") return true
  const want = opaque(etag)
  for (const part of trimmed.split(",")) if (opaque(part.trim()) === want) return true
  return false
}

/**
 * Whether the client's cached copy is fresh: If-None-Match wins over If-Modified-Since when both
 * are present (RFC 9110 §13.2.2). HTTP dates have one-second resolution.
 */
export const notModified = (
  headers: { readonly "if-none-match"?: string | undefined; readonly "if-modified-since"?: string | undefined },
  etag: string,
  mtimeMs: number
): boolean => {
  const inm = headers["if-none-match"]
  if (inm !== undefined) return etagMatches(inm, etag)
  const ims = headers["if-modified-since"]
  if (ims === undefined) return false
  const since = Date.parse(ims)
  if (Number.isNaN(since)) return false
  return Math.floor(mtimeMs / 1000) * 1000 <= since
}

export type RangeResult =
  | { readonly _tag: "None" }
  | { readonly _tag: "Single"; readonly start: number; readonly end: number }
  | { readonly _tag: "Unsatisfiable" }

/**
 * Parses a Range header for a representation of `size` bytes. Only one range is served; a
 * multi-range request (or any syntax we do not understand) falls back to the full 200 response,
 * which RFC 9110 §14.2 allows and which also defuses `bytes=0-,1-,2-,...` abuse.
 */
export const parseRange = (header: string | undefined, size: number): RangeResult => {
  if (header === undefined) return { _tag: "None" }
  const m = /^\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*$/i.exec(header)
  if (m === null) return { _tag: "None" }
  const [, a, b] = m
  if (a.length > 15 || b.length > 15) return { _tag: "None" }
  if (a === "" && b === "") return { _tag: "None" }
  if (a === "") {
    const suffix = Number(b)
    if (suffix === 0 || size === 0) return { _tag: "Unsatisfiable" }
    return { _tag: "Single", start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(a)
  const end = b === "" ? size - 1 : Math.min(Number(b), size - 1)
  if (b !== "" && Number(b) < start) return { _tag: "None" } // invalid range-spec: ignore the header
  if (start >= size) return { _tag: "Unsatisfiable" }
  return { _tag: "Single", start, end }
}

/** If-Range: serve the range only when the validator still matches (strong comparison for ETags). */
export const ifRangeAllows = (ifRange: string | undefined, etag: string, mtimeMs: number): boolean => {
  if (ifRange === undefined) return true
  const v = ifRange.trim()
  if (v.startsWith('"') || v.startsWith("W/")) return v === etag
  const date = Date.parse(v)
  return !Number.isNaN(date) && Math.floor(mtimeMs / 1000) * 1000 === date
}

/** Types worth compressing on the fly (already-compressed media and archives are not). */
export const isCompressible = (contentType: string): boolean => {
  const t = contentType.split(";")[0].trim().toLowerCase()
  return (
    t.startsWith("text/") ||
    t === "application/json" ||
    t === "application/javascript" ||
    t === "application/xml" ||
    t === "application/wasm" ||
    t === "image/svg+xml" ||
    t === "application/manifest+json" ||
    t === "font/ttf" ||
    t === "font/otf" ||
    t === "application/vnd.ms-fontobject" ||
    t.endsWith("+json") ||
    t.endsWith("+xml")
  )
}
