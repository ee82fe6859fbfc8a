/**
 * Which stored variant of a resource answers a request (RFC 9111 §4.1): the request headers a
 * response names in `Vary` (plus the route's `vary-headers`) select it. This is the one place
 * that decides what a selecting header's value is: `selectingValue` normalises it (case of the
 * name, whitespace around commas), and a later change that keys by something derived from the
 * header is made here: on a route with a `compress` filter, `Accept-Encoding` selects by the
 * coding that filter negotiates for it (`gzip`, `br`, ... or `identity`), so the many ways
 * clients spell the same preferences share one stored variant per encoding.
 */
import { acceptEncodingWeights, codingWeight, negotiateEncoding, type ContentCoding } from "../http/ContentCoding.js"

/** The codings the route's `compress` filter offers, in its order (undefined: the route does not compress). */
export type RouteCodings = ReadonlyArray<ContentCoding> | undefined

/** The field names a `Vary` value lists (lower-case, sorted, deduplicated); "*" when it has `*`. */
export const varyNames = (vary: string | undefined): ReadonlyArray<string> | "*" => {
  if (vary === undefined || vary.trim() === "") return []
  const names = new Set<string>()
  for (const part of vary.split(",")) {
    const n = part.trim().toLowerCase()
    if (n === "") continue
    if (n === "*") return "*"
    names.add(n)
  }
  return [...names].sort()
}

/** Both name lists in one (route `vary-headers` and the response's `Vary`), sorted. */
export const unionNames = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): ReadonlyArray<string> =>
  a.length === 0 ? b : b.length === 0 ? a : [...new Set([...a, ...b])].sort()

/**
 * The value a selecting header contributes to the variant: absent stays absent (distinct from
 * empty), list members are trimmed and joined with ", " (so `gzip,br` and `gzip, br` select
 * the same variant), case kept (values may be case-sensitive).
 */
export const selectingValue = (name: string, value: string | undefined, codings?: RouteCodings): string | undefined => {
  if (codings !== undefined && name === "accept-encoding") return negotiateEncoding(value, codings) ?? "identity"
  if (value === undefined) return undefined
  return value.split(",").map((s) => s.trim()).filter((s) => s !== "").join(", ")
}

/** The secondary key of a request for these names: the selecting values in order, absent ones marked. */
export const variantKey = (
  names: ReadonlyArray<string>,
  header: (lowerName: string) => string | undefined,
  codings?: RouteCodings
): string => {
  if (names.length === 0) return ""
  let key = ""
  for (const n of names) {
    const v = selectingValue(n, header(n), codings)
    key += v === undefined ? `${n}\u0001` : `${n}=${v}\u0002`
  }
  return key
}

/**
 * The request headers as the freshness library sees them: every header once (lower-case name,
 * values joined), the selecting ones normalised as `selectingValue` does, so its own `Vary`
 * check agrees with `variantKey`.
 */
export const policyRequestHeaders = (
  raw: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>,
  names: ReadonlyArray<string>,
  codings?: RouteCodings
): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const k in raw) {
    const v = raw[k]
    if (v === undefined) continue
    out[k] = typeof v === "string" ? v : v.join(", ")
  }
  for (const n of names) {
    const v = selectingValue(n, out[n], codings)
    if (v === undefined) delete out[n]
    else out[n] = v
  }
  return out
}

/**
 * Whether a stored response's `Content-Encoding` is one this request accepts: identity always;
 * a coding only when the request's `Accept-Encoding` gives it a non-zero weight (no header: no
 * coding). Checked at every hit, so that a variant chosen by someone else's negotiation (an
 * origin that encodes by itself) never reaches a client that cannot decode it.
 */
export const encodingAcceptable = (contentEncoding: string | undefined, acceptEncoding: string | undefined): boolean => {
  if (contentEncoding === undefined) return true
  const coding = contentEncoding.trim().toLowerCase()
  if (coding === "" || coding === "identity") return true
  if (acceptEncoding === undefined) return false
  return codingWeight(acceptEncodingWeights(acceptEncoding), coding) > 0
}
