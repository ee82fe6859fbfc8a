/**
 * Denylist decision logic: IPs and CIDRs (v4 and v6), path patterns and
 * user-agent patterns. Pure functions, no I/O; `main.ts` loads the file and
 * wires this to the socket.
 */

/** A parsed address: family and its value as an unsigned integer. */
export interface IpAddress {
  readonly family: 4 | 6
  readonly value: bigint
}

/** A CIDR block; a single address is a block with the full prefix. */
export interface Cidr {
  readonly family: 4 | 6
  readonly network: bigint
  readonly prefix: number
  /** The entry as written in the list (for audit rule ids). */
  readonly source: string
}

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

const parseV4 = (s: string): bigint | undefined => {
  const m = V4.exec(s)
  if (m === null) return undefined
  let v = 0n
  for (let i = 1; i <= 4; i++) {
    const part = m[i]
    // Leading zeros are ambiguous (octal in some parsers): reject them.
    if (part.length > 1 && part.startsWith("0")) return undefined
    const n = Number(part)
    if (n > 255) return undefined
    v = (v << 8n) | BigInt(n)
  }
  return v
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/

const parseV6 = (input: string): bigint | undefined => {
  // Zone ids ("fe80::1%eth0") do not take part in matching.
  const s = input.includes("%") ? input.slice(0, input.indexOf("%")) : input
  if (s.length === 0 || s.length > 45) return undefined
  let groups: Array<string>
  const dbl = s.indexOf("::")
  let tailV4: bigint | undefined
  let body = s
  const lastColon = s.lastIndexOf(":")
  if (lastColon >= 0 && s.slice(lastColon + 1).includes(".")) {
    tailV4 = parseV4(s.slice(lastColon + 1))
    if (tailV4 === undefined) return undefined
    body = s.slice(0, lastColon + 1) + "0:0"
  }
  if (dbl >= 0) {
    if (body.indexOf("::", dbl + 1) >= 0) return undefined
    const [l, r] = [body.slice(0, dbl), body.slice(dbl + 2)]
    const left = l === "" ? [] : l.split(":")
    const right = r === "" ? [] : r.split(":")
    const missing = 8 - left.length - right.length
    if (missing < 1) return undefined
    groups = [...left, ...Array<string>(missing).fill("0"), ...right]
  } else {
    groups = body.split(":")
  }
  if (groups.length !== 8) return undefined
  let v = 0n
  for (const g of groups) {
    if (!HEX_GROUP.test(g)) return undefined
    v = (v << 16n) | BigInt(parseInt(g, 16))
  }
  if (tailV4 !== undefined) v = (v & ~0xffffffffn) | tailV4
  return v
}

const V4_MAPPED_PREFIX = 0xffffn << 32n

/**
 * Parses an IPv4 or IPv6 address. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is
 * folded to IPv4 so a v4 entry matches a client seen on a dual-stack socket.
 */
export const parseIp = (s: string): IpAddress | undefined => {
  const t = s.trim()
  const v4 = parseV4(t)
  if (v4 !== undefined) return { family: 4, value: v4 }
  const v6 = parseV6(t.startsWith("[") && t.endsWith("]") ? t.slice(1, -1) : t)
  if (v6 === undefined) return undefined
  if (v6 >> 32n === 0xffffn && (v6 & ~0xffffffffn) === V4_MAPPED_PREFIX) {
    return { family: 4, value: v6 & 0xffffffffn }
  }
  return { family: 6, value: v6 }
}

const bits = (family: 4 | 6): number => (family === 4 ? 32 : 128)

const mask = (family: 4 | 6, prefix: number): bigint => {
  const width = BigInt(bits(family))
  const all = (1n << width) - 1n
  return prefix === 0 ? 0n : (all >> (width - BigInt(prefix))) << (width - BigInt(prefix))
}

/** Parses `addr` or `addr/prefix`; host bits are cleared. */
export const parseCidr = (s: string): Cidr | undefined => {
  const t = s.trim()
  const slash = t.indexOf("/")
  const addr = parseIp(slash < 0 ? t : t.slice(0, slash))
  if (addr === undefined) return undefined
  let prefix = bits(addr.family)
  if (slash >= 0) {
    const p = t.slice(slash + 1)
    if (!/^\d{1,3}$/.test(p)) return undefined
    prefix = Number(p)
    // A v4-mapped v6 entry (::ffff:10.0.0.0/104) has its prefix shifted to v4.
    const written = parseV4(t.slice(0, slash)) === undefined ? 128 : 32
    if (addr.family === 4 && written === 128) prefix -= 96
    if (prefix < 0 || prefix > bits(addr.family)) return undefined
  }
  return { family: addr.family, network: addr.value & mask(addr.family, prefix), prefix, source: t }
}

export const cidrContains = (c: Cidr, ip: IpAddress): boolean =>
  c.family === ip.family && (ip.value & mask(c.family, c.prefix)) === c.network

/**
 * Case-sensitive (or insensitive) glob where `*` matches any run of
 * characters and `?` one character. Linear-time two-pointer algorithm with a
 * single backtrack point, so hostile patterns or inputs cannot blow up.
 */
export const globMatch = (pattern: string, input: string, caseInsensitive = false): boolean => {
  const p = caseInsensitive ? pattern.toLowerCase() : pattern
  const s = caseInsensitive ? input.toLowerCase() : input
  let pi = 0
  let si = 0
  let star = -1
  let mark = 0
  while (si < s.length) {
    if (pi < p.length && (p[pi] === "?" || p[pi] === s[si])) {
      pi++
      si++
    } else if (pi < p.length && p[pi] === "*") {
      star = pi++
      mark = si
    } else if (star >= 0) {
      pi = star + 1
      si = ++mark
    } else {
      return false
    }
  }
  while (pi < p.length && p[pi] === "*") pi++
  return pi === p.length
}

export interface Denylist {
  readonly cidrs: ReadonlyArray<Cidr>
  /** Path globs matched against the path without its query. */
  readonly paths: ReadonlyArray<string>
  /** User-agent patterns, case-insensitive: a glob if it has `*`/`?`, else a substring. */
  readonly userAgents: ReadonlyArray<string>
}

export const emptyDenylist: Denylist = { cidrs: [], paths: [], userAgents: [] }

export class DenylistParseError extends Error {
  constructor(readonly line: number, message: string) {
    super(`line ${line}: ${message}`)
  }
}

const addEntry = (acc: { cidrs: Array<Cidr>; paths: Array<string>; userAgents: Array<string> }, kind: string, value: string, line: number) => {
  switch (kind) {
    case "ip":
    case "cidr": {
      const c = parseCidr(value)
      if (c === undefined) throw new DenylistParseError(line, `invalid IP or CIDR '${value}'`)
      acc.cidrs.push(c)
      return
    }
    case "path":
      if (!value.startsWith("/") && !value.startsWith("*")) throw new DenylistParseError(line, `path pattern must start with '/' or '*': '${value}'`)
      acc.paths.push(value)
      return
    case "ua":
    case "user-agent":
      if (value.length === 0) throw new DenylistParseError(line, "empty user-agent pattern")
      acc.userAgents.push(value)
      return
    default:
      throw new DenylistParseError(line, `unknown entry kind '${kind}' (expected ip, cidr, path, ua)`)
  }
}

/**
 * Parses a denylist file. JSON form:
 * `{"ips": ["10.0.0.0/8", "2001:db8::/32"], "paths": ["/admin/*"], "user_agents": ["sqlmap"]}`
 * (`cidrs` is accepted as an alias of `ips`, `userAgents` of `user_agents`).
 * Text form, one entry a line, `#` comments: `ip 1.2.3.4`, `cidr 10.0.0.0/8`,
 * `path /wp-admin*`, `ua *bot*`; a bare address/CIDR line is an IP entry.
 * Throws {@link DenylistParseError} on any invalid entry (a reload keeps the
 * previous list in that case).
 */
export const parseDenylist = (text: string): Denylist => {
  const acc = { cidrs: [] as Array<Cidr>, paths: [] as Array<string>, userAgents: [] as Array<string> }
  const trimmed = text.trim()
  if (trimmed.startsWith("{")) {
    let doc: unknown
    try {
      doc = JSON.parse(trimmed)
    } catch (e) {
      throw new DenylistParseError(1, `invalid JSON: ${(e as Error).message}`)
    }
    const o = doc as Record<string, unknown>
    const list = (keys: Array<string>): Array<string> => {
      const out: Array<string> = []
      for (const k of keys) {
        const v = o[k]
        if (v === undefined) continue
        if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw new DenylistParseError(1, `'${k}' must be an array of strings`)
        out.push(...(v as Array<string>))
      }
      return out
    }
    for (const k of Object.keys(o)) {
      if (!["ips", "cidrs", "paths", "user_agents", "userAgents"].includes(k)) throw new DenylistParseError(1, `unknown key '${k}'`)
    }
    for (const v of list(["ips", "cidrs"])) addEntry(acc, "ip", v, 1)
    for (const v of list(["paths"])) addEntry(acc, "path", v, 1)
    for (const v of list(["user_agents", "userAgents"])) addEntry(acc, "ua", v, 1)
    return acc
  }
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const hash = lines[i].indexOf("#")
    const line = (hash >= 0 ? lines[i].slice(0, hash) : lines[i]).trim()
    if (line === "") continue
    const sp = line.search(/\s/)
    if (sp < 0) {
      addEntry(acc, "ip", line, i + 1)
    } else {
      addEntry(acc, line.slice(0, sp).toLowerCase(), line.slice(sp).trim(), i + 1)
    }
  }
  return acc
}

export interface DenylistInput {
  readonly clientIp: string
  /** The request URI (path and query). */
  readonly uri: string
  readonly userAgent: string | undefined
}

export type DenylistVerdict =
  | { readonly _tag: "Allow" }
  | { readonly _tag: "Deny"; readonly kind: "ip" | "path" | "user-agent"; readonly ruleId: string; readonly entry: string }

const ALLOW: DenylistVerdict = { _tag: "Allow" }

/** Longest user agent looked at; longer values are truncated (bounded work). */
export const MAX_UA_LENGTH = 1024
/** Longest path looked at. */
export const MAX_PATH_LENGTH = 8192

const hasWildcard = (p: string) => p.includes("*") || p.includes("?")

/** First matching entry wins, in order ip, path, user-agent. */
export const evaluateDenylist = (list: Denylist, input: DenylistInput): DenylistVerdict => {
  const ip = parseIp(input.clientIp)
  if (ip !== undefined) {
    for (const c of list.cidrs) {
      if (cidrContains(c, ip)) return { _tag: "Deny", kind: "ip", ruleId: "denylist-ip", entry: c.source }
    }
  }
  const q = input.uri.indexOf("?")
  const path = (q >= 0 ? input.uri.slice(0, q) : input.uri).slice(0, MAX_PATH_LENGTH)
  for (const p of list.paths) {
    if (globMatch(p, path)) return { _tag: "Deny", kind: "path", ruleId: "denylist-path", entry: p }
  }
  if (input.userAgent !== undefined) {
    const ua = input.userAgent.slice(0, MAX_UA_LENGTH)
    const lower = ua.toLowerCase()
    for (const p of list.userAgents) {
      const hit = hasWildcard(p) ? globMatch(p, ua, true) : lower.includes(p.toLowerCase())
      if (hit) return { _tag: "Deny", kind: "user-agent", ruleId: "denylist-user-agent", entry: p }
    }
  }
  return ALLOW
}
