import http from "node:http"
import { Pool } from "undici"
import { Effect, Runtime, Exit, Scheduler, FiberRef, Layer } from "effect"
const pool = new Pool(process.env.UPSTREAM_URL, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })
const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "http2-settings"])
const immediate = Scheduler.make((task) => task(), () => false)
const rt = process.env.SYNC ? Effect.runSync(Effect.runtime().pipe(Effect.withScheduler(immediate))) : Runtime.defaultRuntime
const runFork = Runtime.runFork(rt)
const fwd = (req, res) => Effect.async((resume) => {
  const headers = []
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (!HOP.has(req.rawHeaders[i].toLowerCase())) headers.push(req.rawHeaders[i], req.rawHeaders[i + 1])
  let abort
  const t = setTimeout(() => { abort?.(new Error("t")) }, 30000)
  pool.dispatch({ path: req.url, method: req.method, headers, body: null }, {
    onConnect(a) { abort = a },
    onHeaders(status, raw, resumeFn) {
      const flat = []
      for (let i = 0; i < raw.length; i += 2) { const n = raw[i].toString("latin1"); if (!HOP.has(n.toLowerCase())) flat.push(n, raw[i + 1].toString("latin1")) }
      res.writeHead(status, flat); return true
    },
    onData(c) { return res.write(c) },
    onComplete() { clearTimeout(t); res.end(); resume(Effect.void) },
    onError(e) { clearTimeout(t); resume(Effect.fail(e)) }
  })
  return Effect.sync(() => { clearTimeout(t); abort?.(new Error("gone")) })
})
http.createServer((req, res) => {
  const f = runFork(fwd(req, res).pipe(Effect.catchAll(() => Effect.sync(() => { res.writeHead(502); res.end() })), Effect.onExit(() => Effect.void)))
  res.once("close", () => { if (!res.writableFinished) f.unsafeInterruptAsFork(f.id()) })
}).listen(Number(process.env.PORT), "127.0.0.1")
