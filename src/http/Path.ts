/**
 * Request-target path and query syntax (RFC 3986 §3.3-3.4, §6.2.2): which bytes a path may
 * hold, percent-encoding checks, and the normalisation the validator applies before routing
 * and forwarding (one value for both). Pure functions.
 */
import { ALNUM, table } from "./Chars.js"

/** What to do with `%2F` inside a path segment. */
export type EscapedSlashAction = "keep" | "reject"

/** The path settings of `limits { merge-slashes; normalize-path; escaped-slashes }`. */
export interface PathOptions {
  readonly mergeSlashes: boolean
  readonly normalizePath: boolean
  readonly escapedSlashes: EscapedSlashAction
}

/** Why a path is refused (the validator answers 400 with it). */
export type PathRejectReason = "path-bad-char" | "path-bad-encoding" | "path-nul" | "path-escaped-slash"

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



/**
 * Validates and normalises an origin-form path (starts with "/"). Returns the normalised path or
 * the reason to reject. Percent-decoding is limited to unreserved bytes, so the result decodes to
 * the same bytes as the input, and only once (`%252e` stays `%252e`, i.e. the literal text `%2e`).
 */
export const normalizePath = (raw: string, config: PathOptions): string | PathRejectReason => {
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

/** A query the validator forwards as it is: visible ASCII, no `#`. Never decoded. */
export const isValidQuery = (q: string): boolean => {
  for (let i = 0; i < q.length; i++) {
    const c = q.charCodeAt(i)
    // visible ASCII only; `#` would be a fragment, which a client must not send
    if (c <= 32 || c >= 127 || c === 35) return false
  }
  return true
}
