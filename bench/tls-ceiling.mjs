// The Node TLS ceiling: one `http2.createSecureServer` (ALPN h2 + http/1.1, the compat API) and
// one undici Pool (Pool.stream), hop-by-hop and pseudo headers stripped, nothing else: what a
// Node proxy terminating TLS and HTTP/2 costs before it does anything of its own.
//   PORT, UPSTREAM_URL, CERT, KEY, RESUME=0|1
import { constants } from "node:crypto"
import { readFileSync } from "node:fs"
import http2 from "node:http2"
import { Pool } from "undici"

const pool = new Pool(process.env.UPSTREAM_URL, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })
const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "http2-settings"])
const requestHeaders = (req) => {
  const raw = req.rawHeaders
  const out = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    if (name === ":authority") out.push("host", raw[i + 1])
    else if (name[0] !== ":" && !HOP.has(name.toLowerCase())) out.push(name, raw[i + 1])
  }
  return out
}
const factory = ({ statusCode, headers, opaque: res }) => {
  for (const h of HOP) delete headers[h]
  res.writeHead(statusCode, headers)
  return res
}
const resume = process.env.RESUME !== "0"
http2
  .createSecureServer(
    {
      cert: readFileSync(process.env.CERT),
      key: readFileSync(process.env.KEY),
      allowHTTP1: true,
      minVersion: "TLSv1.2",
      ...(resume ? {} : { secureOptions: constants.SSL_OP_NO_TICKET, sessionTimeout: 0 })
    },
    (req, res) => {
      const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined
      pool.stream({ path: req.url, method: req.method, headers: requestHeaders(req), body: hasBody ? req : null, opaque: res }, factory, (err) => {
        if (!err) return
        if (!res.headersSent) {
          res.writeHead(502)
          res.end()
        } else res.destroy(err)
      })
    }
  )
  .listen(Number(process.env.PORT), "127.0.0.1")
process.on("SIGTERM", () => process.exit(0)) // a profile (bench/profile.mjs) is written on exit
