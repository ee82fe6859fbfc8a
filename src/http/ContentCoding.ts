/**
 * Content codings (RFC 9110 §8.4, §12.5.3): which coding a client accepts (`Accept-Encoding`
 * with q-values) and the head edits a re-encoded representation needs (weak ETag, `Vary`,
 * `Cache-Control: no-transform`). Pure functions over header strings; the proxied responses'
 * compression (src/filters/Compress.ts) and the static files (src/handlers/StaticFiles.ts) both
 * negotiate here.
 */

/** The codings node:zlib produces. */
export type ContentCoding = "gzip" | "br" | "deflate"

/** qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) (RFC 9110 §12.4.2). */
const QVALUE = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/**
 * The weights an `Accept-Encoding` value gives, by lower-case coding name (`*` and `identity`
 * included; `x-gzip` counted as `gzip`, RFC 9110 §8.4.1.3). The first mention of a coding
 * counts; a malformed weight refuses its coding (q=0: never send what the client may not have
 * asked for); elements that are not tokens are ignored.
 */
export const acceptEncodingWeights = (value: string): Map<string, number> => {
  const weights = new Map<string, number>()
  for (const element of value.split(",")) {
    const semi = element.indexOf(";")
    let name = (semi === -1 ? element : element.slice(0, semi)).trim().toLowerCase()
    if (name === "" || !TOKEN.test(name)) continue
    if (name === "x-gzip") name = "gzip"
    let q = 1
    if (semi !== -1) {
      for (const param of element.slice(semi + 1).split(";")) {
        const eq = param.indexOf("=")
        if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== "q") continue
        const v = param.slice(eq + 1).trim()
        q = QVALUE.test(v) ? Number(v) : 0
        break
      }
    }
    if (!weights.has(name)) weights.set(name, q)
  }
  return weights
}

/**
 * The weight of `coding` (a lower-case name) under `weights`: its own entry, else `*`'s, else 0
 * (identity: 1 unless refused by `identity;q=0` or `*;q=0`, RFC 9110 §12.5.3).
 */
export const codingWeight = (weights: ReadonlyMap<string, number>, coding: string): number =>
  weights.get(coding) ?? weights.get("*") ?? (coding === "identity" ? 1 : 0)

/**
 * The coding to send for a request's `Accept-Encoding`, among `offered` (the server's order of
 * preference): the one with the highest non-zero weight, ties going to the earlier in
 * `offered`; null = identity. No header, an empty one, or every offered coding at q=0 is
 * identity: a proxy compresses only for clients that ask (as nginx does), and a client that
 * also refuses identity still gets identity, the only representation there is (RFC 9110
 * §12.5.3: "respond without any content coding").
 */
export const negotiateEncoding = <C extends ContentCoding>(
  acceptEncoding: string | undefined,
  offered: ReadonlyArray<C>
): C | null => {
  if (acceptEncoding === undefined || acceptEncoding === "") return null
  const weights = acceptEncodingWeights(acceptEncoding)
  let best: C | null = null
  let bestQ = 0
  for (const c of offered) {
    const q = codingWeight(weights, c)
    if (q > bestQ) {
      best = c
      bestQ = q
    }
  }
  return best
}

/** `W/"x"` for `"x"`; a weak tag stays as it is (a re-encoded body is not byte-identical, RFC 9110 §8.8.3). */
export const weakEtag = (etag: string): string => {
  const t = etag.trim()
  return t.startsWith("W/") ? t : `W/${t}`
}

/**
 * The `Vary` value after adding `name` to `current` (a comma list, case-insensitive), or
 * undefined when nothing changes (already listed, or `*`).
 */
export const varyWith = (current: string | undefined, name: string): string | undefined => {
  if (current === undefined || current.trim() === "") return name
  const lower = name.toLowerCase()
  for (const part of current.split(",")) {
    const p = part.trim().toLowerCase()
    if (p === "*" || p === lower) return undefined
  }
  return `${current}, ${name}`
}

/** Whether a `Cache-Control` value carries `directive` (case-insensitive, arguments ignored). */
export const hasDirective = (cacheControl: string, directive: string): boolean => {
  for (const part of cacheControl.split(",")) {
    const eq = part.indexOf("=")
    if ((eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase() === directive) return true
  }
  return false
}

/** The media type of a `Content-Type` value, lower-case, parameters dropped ("" when absent). */
export const mediaType = (contentType: string): string => {
  const semi = contentType.indexOf(";")
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
}
