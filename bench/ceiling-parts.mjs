// What bench/ceiling.mjs and bench/ceiling-plus.mjs share: the upstream pool from UPSTREAM_URL
// and the hop-by-hop filter of the request's raw headers.
import { Pool } from "undici"

export const upstreamPool = () => new Pool(process.env.UPSTREAM_URL, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })
export const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "http2-settings"])
export const requestHeaders = (raw) => {
  const out = []
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1])
  return out
}
