/**
 * The metrics listener (`observability { metrics { enabled #true; address
 * "127.0.0.1:9090"; path "/metrics" } }`): a small `node:http` server of its
 * own, apart from the traffic listeners, so scrapes never compete with
 * requests for admission slots and a traffic listener's limits or reloads
 * never hide the metrics.
 *
 * It serves one path with prom-client's text format; everything else is 404.
 * In cluster mode the primary serves the aggregated metrics (Cluster.ts) and
 * workers do not start this listener.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export interface MetricsEndpoint {
  readonly host: string
  readonly port: number
  /** Path served. Default "/metrics". */
  readonly path?: string | undefined
}

/** What a scrape renders: a registry's text and content type. */
export type RenderMetrics = () => Promise<{ readonly contentType: string; readonly body: string }>

export interface MetricsListenerHandle {
  readonly host: string
  readonly port: number
  readonly path: string
  /** Stops accepting and closes open scrape connections. Idempotent. */
  readonly close: () => Promise<void>
}

export class MetricsListenerBindFailed extends Data.TaggedError("MetricsListenerBindFailed")<{
  readonly address: string
  readonly message: string
}> {}

/** Starts the listener (not scoped: the caller closes it, e.g. when a reload moves it). */
export const startMetricsListenerUnscoped = (
  endpoint: MetricsEndpoint,
  render: RenderMetrics
): Promise<MetricsListenerHandle> =>
  new Promise((resolve, reject) => {
    const path = endpoint.path ?? "/metrics"
    const server = http.createServer((req, res) => {
      const url = (req.url ?? "/").split("?")[0]
      if (url !== path || (req.method !== "GET" && req.method !== "HEAD")) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n")
        return
      }
      render().then(
        (r) => res.writeHead(200, { "content-type": r.contentType }).end(req.method === "HEAD" ? undefined : r.body),
        (e: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${String(e)}\n`)
      )
    })
    // Scrapes are small and rare: a short idle keep-alive and a bounded header wait.
    server.keepAliveTimeout = 5000
    server.headersTimeout = 10_000
    server.requestTimeout = 30_000
    server.maxConnections = 64
    const onError = (e: Error) => reject(e)
    server.once("error", onError)
    server.listen(endpoint.port, endpoint.host, () => {
      server.off("error", onError)
      // After start-up an error (e.g. EMFILE on accept) must not crash the process.
      server.on("error", () => {})
      const a = server.address() as AddressInfo
      let closed: Promise<void> | undefined
      resolve({
        host: a.address,
        port: a.port,
        path,
        close: () =>
          (closed ??= new Promise<void>((done) => {
            server.close(() => done())
            server.closeAllConnections()
          }))
      })
    })
  })

/** Starts the listener for the life of the scope. */
export const startMetricsListener = (
  endpoint: MetricsEndpoint,
  render: RenderMetrics
): Effect.Effect<MetricsListenerHandle, MetricsListenerBindFailed, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => startMetricsListenerUnscoped(endpoint, render),
      catch: (e) =>
        new MetricsListenerBindFailed({ address: `${endpoint.host}:${endpoint.port}`, message: (e as Error).message })
    }),
    (h) => Effect.promise(() => h.close())
  )
