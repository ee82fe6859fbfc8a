/**
 * An origin for the cache tests that counts its requests: each path answers what the test set
 * for it (status, headers, body, or a function of the request), and can hold its answer until
 * the test releases it, or cut its body short.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"

export interface Reply {
  readonly status?: number
  readonly headers?: Record<string, string | Array<string> | undefined>
  readonly body?: string | Buffer
  /** Write this much of the body, then reset the connection (a fill cut short). */
  readonly cutAfter?: number
  /** No Content-Length: the body goes chunked. */
  readonly chunked?: boolean
  /** Write this much of the body, then wait until `release()` before the rest. */
  readonly holdAfter?: number
}

export type Handler = (req: http.IncomingMessage, n: number) => Reply

export interface CacheOrigin {
  readonly port: number
  readonly address: string
  /** Requests per path (with the query). */
  readonly count: (url: string) => number
  /** Every request seen, in order. */
  readonly seen: Array<{ url: string; headers: http.IncomingHttpHeaders }>
  readonly on: (url: string, handler: Handler | Reply) => void
  /** Holds every answer until `release` (a gate for collapsing tests). */
  readonly hold: () => void
  readonly release: () => void
  /** Resolves once `n` requests for `url` arrived. */
  readonly arrived: (url: string, n?: number) => Promise<void>
  readonly close: () => Promise<void>
}

export const startCacheOrigin = async (): Promise<CacheOrigin> => {
  const handlers = new Map<string, Handler>()
  const counts = new Map<string, number>()
  const seen: CacheOrigin["seen"] = []
  let held: Array<() => void> | undefined
  const waiting: Array<{ url: string; n: number; resolve: () => void }> = []
  let releaseBody: Array<() => void> = []
  const server = http.createServer((req, res) => {
    const url = req.url ?? "/"
    const n = (counts.get(url) ?? 0) + 1
    counts.set(url, n)
    seen.push({ url, headers: req.headers })
    for (const w of [...waiting]) if (w.url === url && n >= w.n) (waiting.splice(waiting.indexOf(w), 1), w.resolve())
    const answer = () => {
      const h = handlers.get(url) ?? handlers.get(url.split("?")[0])
      const r = h === undefined ? { status: 404, body: "no handler\n" } : h(req, n)
      const body = typeof r.body === "string" ? Buffer.from(r.body) : r.body ?? Buffer.alloc(0)
      res.writeHead(r.status ?? 200, { ...(r.chunked === true ? {} : { "content-length": String(body.length) }), ...r.headers })
      if (r.cutAfter !== undefined) {
        res.write(body.subarray(0, r.cutAfter), () => res.destroy())
        return
      }
      if (r.holdAfter !== undefined) {
        res.write(body.subarray(0, r.holdAfter))
        releaseBody.push(() => res.end(body.subarray(r.holdAfter)))
        return
      }
      if (r.chunked === true && body.length > 1) {
        // two writes at least, so the body really goes in chunks
        res.write(body.subarray(0, body.length >> 1))
        return void res.end(body.subarray(body.length >> 1))
      }
      res.end(req.method === "HEAD" ? undefined : body)
    }
    req.resume()
    req.on("end", () => (held !== undefined ? held.push(answer) : answer()))
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    address: `127.0.0.1:${port}`,
    count: (url) => counts.get(url) ?? 0,
    seen,
    on: (url, h) => handlers.set(url, typeof h === "function" ? h : () => h),
    hold: () => {
      held ??= []
    },
    release: () => {
      const h = held ?? []
      held = undefined
      for (const a of h) a()
      const b = releaseBody
      releaseBody = []
      for (const f of b) f()
    },
    arrived: (url, n = 1) =>
      (counts.get(url) ?? 0) >= n ? Promise.resolve() : new Promise((resolve) => waiting.push({ url, n, resolve })),
    close: () =>
      new Promise((r) => {
        server.closeAllConnections()
        server.close(() => r())
      })
  }
}
