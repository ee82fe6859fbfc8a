/**
 * A well-behaved origin for integration tests: echoes what it received,
 * streams large deterministic bodies, hashes uploads, and records aborts so a
 * test can wait for "the upstream saw the client go away".
 */
import * as http from "node:http"
import { createHash } from "node:crypto"
import type { AddressInfo } from "node:net"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export interface EchoOrigin {
  readonly port: number
  readonly address: string
  readonly requests: Array<{ method: string; url: string; rawHeaders: Array<string> }>
  /** Resolves when a request to `url` was aborted by the proxy. */
  readonly aborted: (url: string) => Promise<void>
  /** Resolves when a request to `url` arrived. */
  readonly arrived: (url: string) => Promise<void>
  readonly close: () => Promise<void>
}

/** Deterministic bytes: byte i = (i * 31 + 7) & 0xff. */
export const patternBytes = (n: number, offset = 0): Buffer => {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = ((offset + i) * 31 + 7) & 0xff
  return b
}

export const sha256 = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex")

const waiter = () => {
  const seen = new Set<string>()
  const waiting = new Map<string, Array<() => void>>()
  return {
    mark(key: string) {
      seen.add(key)
      for (const w of waiting.get(key) ?? []) w()
      waiting.delete(key)
    },
    wait(key: string): Promise<void> {
      if (seen.has(key)) return Promise.resolve()
      return new Promise((resolve) => waiting.set(key, [...(waiting.get(key) ?? []), resolve]))
    }
  }
}

export const startEchoOrigin = async (name = "origin"): Promise<EchoOrigin> => {
  const requests: EchoOrigin["requests"] = []
  const aborts = waiter()
  const arrivals = waiter()
  const server = http.createServer((req, res) => {
    const url = req.url ?? "/"
    requests.push({ method: req.method ?? "", url, rawHeaders: req.rawHeaders })
    arrivals.mark(url)
    res.on("close", () => {
      if (!res.writableFinished) aborts.mark(url)
    })
    const u = new URL(url, "http://x")
    if (u.pathname.endsWith("/upload")) {
      const hash = createHash("sha256")
      let bytes = 0
      req.on("data", (c: Buffer) => {
        bytes += c.length
        hash.update(c)
      })
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({ bytes, sha256: hash.digest("hex") }))
      })
      return
    }
    if (u.pathname.endsWith("/big")) {
      const n = Number(u.searchParams.get("n") ?? "1048576")
      const chunk = 64 * 1024
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(n) })
      let sent = 0
      const pump = () => {
        while (sent < n) {
          const size = Math.min(chunk, n - sent)
          const ok = res.write(patternBytes(size, sent))
          sent += size
          if (!ok) return res.once("drain", pump)
        }
        res.end()
      }
      return pump()
    }
    if (u.pathname.endsWith("/slow")) {
      // Answers after `ms`; a stand-in for a long in-flight request.
      const ms = Number(u.searchParams.get("ms") ?? "500")
      res.writeHead(200, { "content-type": "text/plain" })
      res.write("start\n")
      const t = setTimeout(() => res.end("end\n"), ms)
      res.on("close", () => clearTimeout(t))
      return
    }
    if (u.pathname.endsWith("/cookies")) {
      // repeated and mixed-case names, and one that is an Object.prototype property
      res.writeHead(200, ["Set-Cookie", "a=1", "set-cookie", "b=2", "X-Mixed", "M", "__proto__", "p", "content-length", "2"])
      res.end("ok")
      return
    }
    if (u.pathname.endsWith("/hold")) {
      // Never answers; the test aborts or times out.
      return
    }
    req.resume()
    req.on("end", () => {
      const body = JSON.stringify({ origin: name, method: req.method, url, headers: req.headers, rawHeaders: req.rawHeaders })
      res.writeHead(200, {
        "content-type": "application/json",
        "x-origin": name,
        "connection": "keep-alive, x-hop",
        "x-hop": "should-be-stripped",
        "keep-alive": "timeout=5"
      })
      res.end(body)
    })
  })
  const sockets = new Set<import("node:net").Socket>()
  server.on("connection", (s) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    address: `127.0.0.1:${port}`,
    requests,
    aborted: aborts.wait,
    arrived: arrivals.wait,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      })
  }
}

export const echoOrigin = (name?: string): Effect.Effect<EchoOrigin, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.promise(() => startEchoOrigin(name)), (o) => Effect.promise(() => o.close()))
