/**
 * Which header fields describe one connection and never travel further (RFC 9110 §7.6.1, plus
 * legacy ones and whatever `Connection` names), and a cheap case-insensitive name test. Pure.
 */

/** Headers that describe one connection and never travel further (RFC 9110 §7.6.1 plus legacy ones). */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
  "http2-settings"
])

/**
 * A case-insensitive test for a fixed set of lower-case header names that lower-cases a name
 * only when its length is one of theirs: most header names of a message are then compared
 * without making a new string (the request path, DESIGN.md §2).
 */
export const nameMatcher = (lowerNames: Iterable<string>): ((name: string) => boolean) => {
  const names = new Set(lowerNames)
  const lengths = new Uint8Array(256)
  for (const n of names) lengths[Math.min(n.length, 255)] = 1
  return (name) => name.length < 255 && lengths[name.length] === 1 && names.has(name.toLowerCase())
}

/** Whether `name` (any case) is a hop-by-hop header. */
export const isHopByHop = nameMatcher(HOP_BY_HOP)

/** Names listed in `Connection` (lower-case), which are hop-by-hop for this message. */
export const connectionTokens = (value: string | undefined): ReadonlySet<string> | undefined => {
  if (value === undefined) return undefined
  if (value.indexOf(",") === -1) {
    // one token, the usual `keep-alive` or `close`: nothing more is hop-by-hop
    const t = value.trim().toLowerCase()
    return t === "" || t === "close" || t === "keep-alive" ? undefined : new Set([t])
  }
  const out = new Set<string>()
  for (const token of value.split(",")) {
    const t = token.trim().toLowerCase()
    if (t !== "" && t !== "close" && t !== "keep-alive") out.add(t)
  }
  return out.size === 0 ? undefined : out
}

