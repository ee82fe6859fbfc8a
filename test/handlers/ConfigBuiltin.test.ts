/**
 * `builtin-handler "config"`: the running configuration as JSON, answered on admin listeners
 * only (404 on the others, the same route), with secrets masked: a Redis URL's password,
 * agents' `config` blocks, credential headers a filter sets. A reload shows the new config.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { decodeKdl } from "../../src/config/Kdl.js"
import { maskUrlPassword, REDACTED } from "../../src/config/ConfigView.js"
import { request, startProxy, type ProxyHandle } from "../support/proxy.js"

const kdl = (marker: string) => `
listeners {
  listener "public" { address "127.0.0.1:0" }
  listener "admin" { address "127.0.0.1:0"; admin #true }
}
upstreams { upstream "o" { target "127.0.0.1:9" } }
observability { logging { access-log { enabled #false } } }
filters {
  filter "creds" { type "headers"; set { "Authorization" "Bearer s3cr3t-token"; "X-Marker" "${marker}" } }
  filter "rl" { type "rate-limit"; max-rps 100; backend "redis"; redis-url "redis://app:hunter2@127.0.0.1:6399/0" }
}
agents {
  agent "waf" { unix-socket "/tmp/sentinel-config-builtin-none.sock"; events "request_headers"; config { api-key "k-123456" } }
}
routes {
  route "config" { priority 1000; matches { path "/admin/config" }; builtin-handler "config" }
  route "all" { matches { path-prefix "/" }; upstream "o"; filters "creds" }
}
`

let scope: Scope.CloseableScope
let proxy: ProxyHandle
beforeAll(async () => {
  const d = decodeKdl(kdl("first"), { file: "config-builtin.kdl" })
  expect(d.errors).toEqual([])
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(startProxy(d.config!).pipe(Scope.extend(scope)))
})
afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

const at = (listener: string) => request(proxy.addresses.get(listener)!.port, { path: "/admin/config" })

describe('builtin-handler "config"', () => {
  it("answers only on the admin listener; elsewhere the same route is a 404 that shows nothing", async () => {
    const pub = await at("public")
    expect(pub.status).toBe(404)
    expect(pub.body.toString()).not.toContain("listeners")
    const admin = await at("admin")
    expect(admin.status).toBe(200)
    expect(admin.headers["content-type"]).toContain("application/json")
    expect(admin.headers["cache-control"]).toBe("no-store")
    const view = JSON.parse(admin.body.toString())
    expect(view.listeners.map((l: { id: string }) => l.id)).toEqual(["public", "admin"])
    expect(view.routes.map((r: { id: string }) => r.id)).toEqual(["config", "all"])
  })

  it("masks secrets: the Redis password, the agent's config block, a credential header's value; keeps the rest", async () => {
    const text = (await at("admin")).body.toString()
    for (const secret of ["hunter2", "s3cr3t-token", "k-123456"]) expect(text).not.toContain(secret)
    const view = JSON.parse(text)
    const rl = view.filters.find((f: { id: string }) => f.id === "rl")
    expect(JSON.stringify(rl)).toContain(`redis://app:${REDACTED}@127.0.0.1:6399/0`)
    expect(view.agents[0].config).toBe(REDACTED)
    const creds = view.filters.find((f: { id: string }) => f.id === "creds")
    expect(creds.set).toEqual([["Authorization", REDACTED], ["X-Marker", "first"]])
  })

  it("shows the configuration a reload installed", async () => {
    const next = decodeKdl(kdl("second"), { file: "config-builtin.kdl" })
    await Effect.runPromise(proxy.reload(next.config!))
    const view = JSON.parse((await at("admin")).body.toString())
    expect(view.filters.find((f: { id: string }) => f.id === "creds").set[1]).toEqual(["X-Marker", "second"])
  })

  it("masks only the password of URLs with user info", () => {
    expect(maskUrlPassword("redis://:pw@h:1/0")).toBe(`redis://:${REDACTED}@h:1/0`)
    expect(maskUrlPassword("rediss://user:p%40ss@h")).toBe(`rediss://user:${REDACTED}@h`)
    expect(maskUrlPassword("redis://h:6379")).toBe("redis://h:6379")
    expect(maskUrlPassword("http://example.com/a:b@c")).toBe("http://example.com/a:b@c")
  })
})
