/** Address and CIDR syntax of `trusted-proxies` (what the config decoder checks and the runtime compiles). */
import { isIP } from "node:net"
import { trimOws } from "./Authority.js"

export interface Cidr {
  readonly address: string
  readonly prefix: number
  readonly family: "ipv4" | "ipv6"
}

/** Parses `a.b.c.d/n`, `x::y/n` or a bare address (full-length prefix). null when invalid (for the config decoder). */
export const parseCidr = (text: string): Cidr | null => {
  const slash = text.indexOf("/")
  const address = unmapIpv4(slash < 0 ? trimOws(text) : trimOws(text.slice(0, slash)))
  const fam = isIP(address)
  if (fam === 0) return null
  const max = fam === 4 ? 32 : 128
  let prefix = max
  if (slash >= 0) {
    const p = trimOws(text.slice(slash + 1))
    if (!/^[0-9]{1,3}$/.test(p)) return null
    prefix = Number(p)
    if (prefix > max) return null
  }
  return { address, prefix, family: fam === 4 ? "ipv4" : "ipv6" }
}

/** `::ffff:1.2.3.4` (IPv4 on a dual-stack socket) -> `1.2.3.4`. */
export const unmapIpv4 = (ip: string): string => {
  if (ip.length > 7 && ip.slice(0, 7).toLowerCase() === "::ffff:" && isIP(ip.slice(7)) === 4) return ip.slice(7)
  return ip
}

