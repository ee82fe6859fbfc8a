/**
 * `static-files` on a route, through the whole proxy: files served from the root on the
 * validated path, the route's filters and trace id on the answer, traversal refused at the edge
 * or by the handler (never a byte from outside the root), and a client that goes away mid-body
 * logged as 499.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { request, startProxy, testConfig, type ProxyHandle } from "../support/proxy.js"
import { connect, rawRequest } from "../support/rawHttp.js"

const canary = "CANARY-" + randomBytes(8).toString("hex")
let tmp = ""
let proxy: ProxyHandle
let scope: Scope.CloseableScope

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "sentinel-static-route-"))
  const root = path.join(tmp, "www")
  fs.mkdirSync(path.join(root, "assets"), { recursive: true })
  fs.writeFileSync(path.join(root, "index.html"), "<h1>home</h1>")
  fs.writeFileSync(path.join(root, "assets", "app.js"), "console.log(1)\n")
  fs.writeFileSync(path.join(root, "big.bin"), randomBytes(32 * 1024 * 1024))
  fs.writeFileSync(path.join(root, ".env"), "SECRET=1")
  fs.writeFileSync(path.join(tmp, "outside.txt"), canary)
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(
    startProxy(
      testConfig({
        routes: [
          { id: "site", matches: [{ _tag: "PathPrefix", prefix: "/" }], staticFiles: { root }, filters: ["sec"] },
          { id: "status", matches: [{ _tag: "Path", path: "/_status" }], builtinHandler: "status", priority: 100 }
        ],
        filters: [{ id: "sec", type: "security-headers" }]
      } as never)
    ).pipe(Scope.extend(scope))
  )
})

afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  fs.rmSync(tmp, { recursive: true, force: true })
})

describe("static-files route", () => {
  it("serves files and the index, with the route's response stages and the trace id", async () => {
    const index = await request(proxy.port, { path: "/" })
    expect(index.status).toBe(200)
    expect(index.body.toString()).toBe("<h1>home</h1>")
    expect(index.headers["x-request-id"]).toBeDefined()
    expect(index.headers["x-frame-options"]).toBe("DENY")
    const js = await request(proxy.port, { path: "/assets/app.js" })
    expect(js.status).toBe(200)
    expect(js.headers["content-type"]).toContain("javascript")
  })

  it("maps the validated (normalised) path: dot segments resolve inside the root", async () => {
    const reply = await request(proxy.port, { path: "/assets/../assets/./app.js" })
    expect(reply.status).toBe(200)
    expect(reply.body.toString()).toBe("console.log(1)\n")
  })

  it("never serves a byte from outside the root, whatever the encoding", async () => {
    const vectors = [
      "/../outside.txt",
      "/%2e%2e/outside.txt",
      "/..%2foutside.txt",
      "/%252e%252e/outside.txt",
      "/%c0%ae%c0%ae/outside.txt",
      "/assets/..%5c..%5coutside.txt",
      "/.env",
      "/outside.txt%00.html"
    ]
    for (const v of vectors) {
      const reply = await rawRequest(proxy.port, `GET ${v} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`)
      expect(reply.raw, v).not.toContain(canary)
      expect(reply.raw, v).not.toContain("SECRET")
      expect(reply.status, v).toBeGreaterThanOrEqual(400)
      expect(reply.status, v).toBeLessThan(500)
    }
  })

  it("only GET and HEAD", async () => {
    const reply = await request(proxy.port, { method: "POST", path: "/index.html", body: "x" })
    expect(reply.status).toBe(405)
    expect(reply.headers["allow"]).toBe("GET, HEAD")
  })

  it("a client that goes away mid-body is counted as 499", async () => {
    const s = await connect(proxy.port)
    s.write("GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    await new Promise<void>((r) => s.once("data", () => r()))
    s.destroy()
    const seen = async () => (await proxy.metrics.registry.getSingleMetricAsString("sentinel_requests_total")).includes('status="499"')
    for (let i = 0; i < 100 && !(await seen()); i++) await new Promise((r) => setTimeout(r, 20))
    expect(await seen()).toBe(true)
  })
})
