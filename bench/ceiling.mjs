// The Node ceiling: node:http + one undici Pool, Pool.stream, hop-by-hop stripped, nothing else.
// The same ceiling the side-by-side comparisons in bench/README.md use, with the project's own undici.
import http from "node:http"
import { HOP, requestHeaders, upstreamPool } from "./ceiling-parts.mjs"

const PORT = Number(process.env.PORT)
const pool = upstreamPool()
const factory = ({ statusCode, headers, opaque: res }) => {
  for (const h of HOP) delete headers[h]
  res.writeHead(statusCode, headers)
  return res
}
http
  .createServer((req, res) => {
    const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined
    pool.stream({ path: req.url, method: req.method, headers: requestHeaders(req.rawHeaders), body: hasBody ? req : null, opaque: res }, factory, (err) => {
      if (!err) return
      if (!res.headersSent) {
        res.writeHead(502)
        res.end()
      } else res.destroy(err)
    })
  })
  .listen(PORT, "127.0.0.1")
process.on("SIGTERM", () => process.exit(0)) // a profile (bench/profile.mjs) is written on exit
