// The Node ceiling (bench/ceiling.mjs) plus the per-request work issue 18 names, written the plain
// way, by hand, with nothing else: a trace id sent back as `x-request-id` and `x-correlation-id`,
// a JSON access line with Sentinel's fields (buffered, one async file write per 64 KiB), and the
// request counter and duration histogram in prom-client (children cached per label set: its
// cheapest use). No routing, no validation, no limits, no balancer, no breaker, no timeouts of
// its own. What this costs over the ceiling is the least those features cost on this platform.
import http from "node:http"
import { open, write } from "node:fs"
import { HOP, requestHeaders, upstreamPool } from "./ceiling-parts.mjs"
import client from "prom-client"

const PORT = Number(process.env.PORT)
const pool = upstreamPool()

// trace id: milliseconds and a counter, base 36 (cheaper than Sentinel's TinyFlake)
let seq = 0
const traceId = () => `${Date.now().toString(36)}${(seq = (seq + 1) & 0xffff).toString(36)}`

// access log: lines gathered in a string, written when 64 KiB are waiting, one write in flight
const fd = await new Promise((res, rej) => open(process.env.ACCESS_LOG ?? "/dev/null", "a", (e, f) => (e ? rej(e) : res(f))))
let pending = ""
let writing = false
const flush = () => {
  if (writing || pending.length === 0) return
  const chunk = pending
  pending = ""
  writing = true
  write(fd, chunk, () => {
    writing = false
    if (pending.length >= 65536) flush()
  })
}
setInterval(flush, 100).unref()

const registry = new client.Registry()
const requests = new client.Counter({ name: "requests_total", help: "requests", labelNames: ["route", "method", "status"], registers: [registry] })
const duration = new client.Histogram({ name: "request_duration_seconds", help: "duration", labelNames: ["route", "method"], registers: [registry] })
const children = new Map()
const observe = (method, status, seconds) => {
  const key = `${method} ${status}`
  let c = children.get(key)
  if (c === undefined) children.set(key, (c = { n: requests.labels("all", method, String(status)), d: duration.labels("all", method) }))
  c.n.inc()
  c.d.observe(seconds)
}

const factory = ({ statusCode, headers, opaque }) => {
  for (const h of HOP) delete headers[h]
  headers["x-request-id"] = opaque.id
  headers["x-correlation-id"] = opaque.id
  opaque.status = statusCode
  opaque.res.writeHead(statusCode, headers)
  return opaque.res
}
http
  .createServer((req, res) => {
    const ctx = { id: traceId(), res, status: 0, start: performance.now(), ip: req.socket.remoteAddress }
    const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined
    res.on("finish", () => {
      const ms = performance.now() - ctx.start
      const q = req.url.indexOf("?")
      pending += `${JSON.stringify({
        timestamp: new Date().toISOString(), trace_id: ctx.id, method: req.method, path: q === -1 ? req.url : req.url.slice(0, q),
        query: q === -1 ? null : req.url.slice(q + 1), protocol: `HTTP/${req.httpVersion}`, status: ctx.status,
        body_bytes: Number(req.headers["content-length"] ?? 0), duration_ms: Math.round(ms * 1000) / 1000,
        client_ip: ctx.ip, user_agent: req.headers["user-agent"] ?? null, referer: req.headers.referer ?? null,
        host: req.headers.host ?? null, route_id: "all", upstream: "origin", upstream_attempts: 1, upstream_addr: process.env.UPSTREAM_URL,
        instance_id: "bench", body_bytes_sent: Number(res.getHeader("content-length") ?? 0)
      })}\n`
      if (pending.length >= 65536) flush()
      observe(req.method, ctx.status, ms / 1000)
    })
    pool.stream({ path: req.url, method: req.method, headers: requestHeaders(req.rawHeaders), body: hasBody ? req : null, opaque: ctx }, factory, (err) => {
      if (!err) return
      ctx.status = 502
      if (!res.headersSent) {
        res.writeHead(502)
        res.end()
      } else res.destroy(err)
    })
  })
  .listen(PORT, "127.0.0.1")
process.on("SIGTERM", () => process.exit(0))
