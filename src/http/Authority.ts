/**
 * Host and authority syntax (RFC 9110 §4.2, RFC 9112 §3.2), and OWS trimming: pure functions the
 * validator, the filters and the config decoder share. No I/O (node's `isIP` is a pure check).
 */
import { isIP } from "node:net"
import { ALNUM, table } from "./Chars.js"

/**
 * Trims RFC 9110 OWS (SP, HTAB) only. `String.prototype.trim` also strips NBSP (\xa0) and other
 * Unicode spaces, which turns `\xa0chunked` into `chunked` (a known TE smuggling vector).
 */
export const trimOws = (s: string): string => {
  let a = 0
  let b = s.length
  while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++
  while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--
  return a === 0 && b === s.length ? s : s.slice(a, b)
}

export interface Authority {
  readonly hostname: string
  readonly port: number | null
}

const HOSTNAME_CHAR = table("-._~", ALNUM)

/**
 * `uri-host [":" port]` restricted to what a real host name can be: reg-name letters/digits/`-._~`
 * or a bracketed IPv6 literal. Userinfo, spaces, `/`, `\`, `%` and sub-delims are rejected
 * (`Host: a@evil`, `Host: a b` pass Node, edge-security.md §2.1 #21). Lower-cases the name.
 */
export const parseAuthority = (s: string): Authority | null => {
  if (s.length === 0 || s.length > 255 + 6) return null
  let hostEnd: number
  let hostname: string
  if (s.charCodeAt(0) === 91 /* [ */) {
    const close = s.indexOf("]")
    if (close < 0) return null
    const inner = s.slice(1, close)
    if (isIP(inner) !== 6) return null
    hostname = `[${inner.toLowerCase()}]`
    hostEnd = close + 1
  } else {
    hostEnd = s.indexOf(":")
    if (hostEnd < 0) hostEnd = s.length
    if (hostEnd === 0) return null
    for (let i = 0; i < hostEnd; i++) {
      const c = s.charCodeAt(i)
      if (c > 127 || HOSTNAME_CHAR[c] === 0) return null
    }
    hostname = s.slice(0, hostEnd).toLowerCase()
  }
  if (hostEnd === s.length) return { hostname, port: null }
  if (s.charCodeAt(hostEnd) !== 58 /* : */) return null
  const portText = s.slice(hostEnd + 1)
  if (portText.length === 0 || portText.length > 5) return null
  for (let i = 0; i < portText.length; i++) {
    const c = portText.charCodeAt(i)
    if (c < 48 || c > 57) return null
  }
  const port = Number(portText)
  if (port > 65535) return null
  return { hostname, port }
}

export const formatAuthority = (a: Authority): string => (a.port === null ? a.hostname : `${a.hostname}:${a.port}`)

export const sameAuthority = (a: Authority, b: Authority, defaultPort: number): boolean =>
  a.hostname === b.hostname && (a.port ?? defaultPort) === (b.port ?? defaultPort)

