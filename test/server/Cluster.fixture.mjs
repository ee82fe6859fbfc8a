// Test fixture for Cluster.test.ts: a tiny proxy-like worker under runCluster.
// Every event is printed as one JSON line on stdout (workers inherit the primary's stdout).
import * as http from "node:http"

const { runCluster } = await import(process.env.CLUSTER_MODULE)
const { makeMetrics } = await import(process.env.METRICS_MODULE)
const env = process.env
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n")

const code = await runCluster({
  workers: Number(env.WORKERS ?? 2),
  gracefulTimeoutMs: Number(env.GRACE ?? 2000),
  shutdownMarginMs: Number(env.MARGIN ?? 500),
  repeatSignalGapMs: Number(env.REPEAT_GAP ?? 500),
  backoff: { initialMs: 50, maxMs: Number(env.BACKOFF_MAX ?? 400), stableMs: Number(env.STABLE_MS ?? 5000) },
  metrics: env.METRICS ? { host: "127.0.0.1", port: 0 } : undefined,
  onEvent: (e) => out({ role: "primary", ...e }),
  workerMain: async () => {
    if (env.CRASH) throw new Error("crash on start (fixture)")
    const metrics = makeMetrics({ defaultMetrics: false })
    const server = http.createServer((req, res) => {
      metrics.requests.inc("r", req.method, 200)
      if (req.url === "/slow") {
        out({ role: "worker", type: "slow-start", pid: process.pid })
        setTimeout(() => res.end(`slow ${process.pid}`), Number(env.SLOW_MS ?? 500))
      } else if (req.url === "/hang") {
        out({ role: "worker", type: "hang-start", pid: process.pid })
      } else {
        res.end(`ok ${process.pid}`)
      }
    })
    await new Promise((r) => server.listen(Number(env.PORT ?? 0), "127.0.0.1", r))
    out({ role: "worker", type: "listening", pid: process.pid, port: server.address().port, execArgv: process.execArgv })
    return {
      shutdown: async () => {
        await new Promise((r) => {
          server.close(r)
          server.closeIdleConnections()
        })
        out({ role: "worker", type: "drained", pid: process.pid })
      },
      reload: () => out({ role: "worker", type: "reloaded", pid: process.pid }),
      reopenLogs: () => out({ role: "worker", type: "reopened", pid: process.pid }),
      metricsRegistry: () => metrics.registry
    }
  }
})
process.exit(code)
