/**
 * `sentinel run --listen --upstream` (no config file) through the built binary: the proxy's
 * own `/health` and `/status` are answered locally, everything else goes upstream.
 */
import { afterEach, describe, expect, it } from "vitest"
import { request } from "../support/proxy.js"
import { type EchoOrigin, startEchoOrigin } from "../support/origins.js"
import { listenerPort, type SentinelProcess, startSentinel } from "../ops/sentinelProcess.js"

let running: Array<SentinelProcess> = []
let origins: Array<EchoOrigin> = []
afterEach(async () => {
  await Promise.all(running.map((p) => p.stop()))
  await Promise.all(origins.map((o) => o.close()))
  running = []
  origins = []
})

describe("quick mode", () => {
  it("answers /health and /status itself and forwards every other path, /healthz and /status/x included", async () => {
    const origin = await startEchoOrigin("app")
    origins.push(origin)
    const p = startSentinel(["run", "--listen", "127.0.0.1:0", "--upstream", `http://${origin.address}`])
    running.push(p)
    const port = await listenerPort(p)

    const health = await request(port, { path: "/health" })
    expect(health.status).toBe(200)
    expect(JSON.parse(health.body.toString())).toEqual({ status: "healthy" })
    const status = await request(port, { path: "/status" })
    expect(status.status).toBe(200)
    const view = JSON.parse(status.body.toString())
    expect(view).toMatchObject({ status: "running", upstreams: [{ id: "upstream", targets: 1 }] })
    expect(typeof view.version).toBe("string")

    for (const path of ["/", "/healthz", "/status/x", "/api/health"]) {
      const r = await request(port, { path })
      expect(r.status, path).toBe(200)
      expect(JSON.parse(r.body.toString()).origin, path).toBe("app")
    }
    expect(origin.requests.map((r) => r.url)).toEqual(["/", "/healthz", "/status/x", "/api/health"])
  })

  it("--help says so", async () => {
    const p = startSentinel(["--help"])
    running.push(p)
    await p.exited
    expect(p.stdout()).toMatch(/--upstream URL[\s\S]*\/health and \/status are answered by the proxy itself/)
  })
})
