/**
 * The origin of the compression tests: one path per kind of response (sized JSON, chunked,
 * already encoded, no-transform, ranges, 204/304, other types), and a stream that writes with
 * back-pressure until it is done or aborted, counting what it wrote.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { gzipSync } from "node:zlib"

/** Deterministic JSON-ish text of exactly `n` bytes (compressible, like an API answer). */
export const jsonBody = (n: number): Buffer => {
  let s = "["
  for (let i = 0; s.length < n; i++) s += `{"id":${i},"name":"item-${i}","tags":["alpha","beta"],"value":${(i * 7919) % 1000}},`
  return Buffer.from(s.slice(0, n), "latin1")
}

/** Pseudo-random bytes (xorshift), made in pieces: incompressible, deterministic. */
const noiseSource = () => {
  let x = 1
  return (n: number): Buffer => {
    const b = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i++) {
      x ^= x << 13
      x ^= x >>> 17
      x ^= x << 5
      b[i] = x & 0xff
    }
    return b
  }
}
export const noise = (n: number): Buffer => noiseSource()(n)

export interface StreamState {
  written: number
  aborted: boolean
  finished: boolean
}

export interface CompressOrigin {
  readonly address: string
  readonly streams: Map<string, StreamState>
  /** Resolves when the stream at `id` was aborted by the proxy. */
  readonly aborted: (id: string) => Promise<void>
  readonly close: () => Promise<void>
}

export const startCompressOrigin = async (): Promise<CompressOrigin> => {
  const streams = new Map<string, StreamState>()
  const abortWaiters = new Map<string, Array<() => void>>()
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x")
    const size = Number(u.searchParams.get("size") ?? "65536")
    const type = u.searchParams.get("type") ?? "application/json"
    const body = u.pathname === "/stream" ? Buffer.alloc(0) : jsonBody(size)
    const headers: http.OutgoingHttpHeaders = { "content-type": type, etag: '"v1"', "accept-ranges": "bytes" }
    const vary = u.searchParams.get("vary")
    if (vary !== null) headers.vary = vary
    const cc = u.searchParams.get("cc")
    if (cc !== null) headers["cache-control"] = cc
    switch (u.pathname) {
      case "/json":
        res.writeHead(200, { ...headers, "content-length": body.length })
        return res.end(req.method === "HEAD" ? undefined : body)
      case "/chunked": {
        res.writeHead(200, headers)
        for (let at = 0; at < body.length; at += 4096) res.write(body.subarray(at, at + 4096))
        return res.end()
      }
      case "/encoded": {
        const gz = gzipSync(body)
        res.writeHead(200, { ...headers, "content-encoding": "gzip", "content-length": gz.length })
        return res.end(gz)
      }
      case "/range": {
        const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "")
        if (m === null) {
          res.writeHead(200, { ...headers, "content-length": body.length })
          return res.end(body)
        }
        const [a, b] = [Number(m[1]), Number(m[2])]
        res.writeHead(206, { ...headers, "content-range": `bytes ${a}-${b}/${body.length}`, "content-length": b - a + 1 })
        return res.end(body.subarray(a, b + 1))
      }
      case "/204":
        res.writeHead(204, headers)
        return res.end()
      case "/304":
        res.writeHead(304, { etag: '"v1"' })
        return res.end()
      case "/stream": {
        // writes `size` bytes of noise (or JSON with json=1) with back-pressure; records how far it got
        const id = u.searchParams.get("id") ?? "s"
        const state: StreamState = { written: 0, aborted: false, finished: false }
        streams.set(id, state)
        res.on("close", () => {
          if (res.writableFinished) return
          state.aborted = true
          for (const w of abortWaiters.get(id) ?? []) w()
          abortWaiters.delete(id)
        })
        res.writeHead(200, { "content-type": "text/plain" })
        const chunk = 64 * 1024
        const json = u.searchParams.get("json") === "1" ? jsonBody(size) : undefined
        const next = noiseSource()
        const pump = () => {
          while (state.written < size && !res.destroyed) {
            const n = Math.min(chunk, size - state.written)
            const piece = json !== undefined ? json.subarray(state.written, state.written + n) : next(n)
            state.written += n
            if (!res.write(piece)) return void res.once("drain", pump)
          }
          if (!res.destroyed) {
            state.finished = true
            res.end()
          }
        }
        return pump()
      }
      default:
        res.writeHead(404)
        return res.end()
    }
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const port = (server.address() as AddressInfo).port
  return {
    address: `127.0.0.1:${port}`,
    streams,
    aborted: (id) =>
      streams.get(id)?.aborted === true
        ? Promise.resolve()
        : new Promise((resolve) => abortWaiters.set(id, [...(abortWaiters.get(id) ?? []), resolve])),
    close: () =>
      new Promise((r) => {
        server.closeAllConnections()
        server.close(() => r())
      })
  }
}
