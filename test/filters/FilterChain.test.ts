/**
 * The filter chain: a route's `filters` list compiled into stages, in order, and applied end to
 * end through the proxy (rate limit 429 with its headers, CORS, redirect, url-rewrite, headers,
 * security headers, timeout), with agent filters left to the agents' extension at their position.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { makeConfig, type SentinelConfigInput } from "../../src/config/Schema.js"
import { agentPosition, makeFilterChain, routeFilters } from "../../src/filters/Chain.js"
import type { RequestContext } from "../../src/pipeline/RequestContext.js"
import type { RouteExtension } from "../../src/pipeline/Stage.js"
import { echoOrigin } from "../support/origins.js"
import { request, startProxy, testConfig } from "../support/proxy.js"

const route = (id: string, prefix: string, upstream: string, filters: Array<string>) => ({
  id,
  matches: [{ _tag: "PathPrefix" as const, prefix }],
  upstream,
  filters
})

const fakeCtx = (over: Partial<RequestContext> = {}): RequestContext =>
  ({
    method: "GET",
    scheme: "http",
    host: "a.example",
    path: "/",
    query: "",
    clientIp: "192.0.2.1",
    routeId: "r",
    upstreamHeaders: ["host", "a.example"],
    upstreamPath: "/",
    responseHeaders: undefined,
    error: undefined,
    header: () => undefined,
    ...over
  }) as RequestContext

const configWith = (filters: Array<object>, routeFilterIds: Array<string>) =>
  makeConfig({
    listeners: [{ id: "l", address: "127.0.0.1:0" }],
    upstreams: [{ id: "u", targets: [{ address: "127.0.0.1:1" }] }],
    routes: [route("r", "/", "u", routeFilterIds)],
    filters,
    agents: [{ id: "waf", socketPath: "/tmp/none.sock" }]
  } as unknown as SentinelConfigInput)

describe("FilterChain (compile)", () => {
  it("keeps the route's order and puts the agents' stage where the first agent filter stands", () => {
    const config = configWith(
      [
        { id: "h1", type: "headers", set: [["X-One", "1"]] },
        { id: "waf", type: "agent", agent: "waf" },
        { id: "h2", type: "headers", set: [["X-Two", "2"]] }
      ],
      ["h1", "waf", "h2"]
    )
    const seen: Array<string> = []
    const agents: RouteExtension = {
      name: "agents",
      compile: () => ({ request: [(ctx) => void seen.push(`agents saw ${ctx.upstreamHeaders.join(",")}`)] })
    }
    const chain = makeFilterChain({ agents })
    const r = config.routes[0]
    expect(routeFilters(r, config).map((f) => f.id)).toEqual(["h1", "waf", "h2"])
    expect(agentPosition(r, config)).toBe(1)
    const c = chain.compile(r, config)!
    const ctx = fakeCtx()
    for (const stage of c.request!) expect(stage(ctx)).toBeUndefined()
    expect(seen).toEqual(["agents saw host,a.example,X-One,1"])
    expect(ctx.upstreamHeaders).toEqual(["host", "a.example", "X-One", "1", "X-Two", "2"])
  })

  it("without an agents extension, agent filters are skipped (and routes without filters get nothing)", () => {
    const config = configWith([{ id: "waf", type: "agent", agent: "waf" }], ["waf"])
    const chain = makeFilterChain()
    expect(chain.compile(config.routes[0], config)).toEqual({})
    const bare = configWith([], [])
    expect(chain.compile(bare.routes[0], bare)).toBeUndefined()
  })

  it("sync filters cost no Effect: stages return undefined or an Answer", () => {
    const config = configWith(
      [
        { id: "rl", type: "rate-limit", maxRps: 1, burst: 1 },
        { id: "cors", type: "cors" }
      ],
      ["rl", "cors"]
    )
    const c = makeFilterChain({ now: () => 0 }).compile(config.routes[0], config)!
    const ctx = fakeCtx()
    expect(c.request!.map((s) => s(ctx))).toEqual([undefined, undefined])
    const second = c.request![0](fakeCtx())
    expect(second).toMatchObject({ status: 429, reason: "rate-limited", contentType: "text/plain; charset=utf-8" })
  })

  it("keeps a limiter across recompiles (reload) while its definition is unchanged; replaces it when it changes", () => {
    const chain = makeFilterChain({ now: () => 0 })
    const a = configWith([{ id: "rl", type: "rate-limit", maxRps: 1, burst: 1 }], ["rl"])
    chain.compile(a.routes[0], a)
    const first = chain.limiter("rl")
    const again = configWith([{ id: "rl", type: "rate-limit", maxRps: 1, burst: 1 }], ["rl"])
    chain.compile(again.routes[0], again)
    expect(chain.limiter("rl")).toBe(first)
    const changed = configWith([{ id: "rl", type: "rate-limit", maxRps: 2, burst: 1 }], ["rl"])
    chain.compile(changed.routes[0], changed)
    expect(chain.limiter("rl")).not.toBe(first)
    const removed = configWith([], [])
    chain.compile(removed.routes[0], removed)
    expect(chain.limiter("rl")).toBeUndefined()
  })

  it("a timeout filter's request-timeout-secs becomes the route's deadline", () => {
    const config = configWith([{ id: "t", type: "timeout", requestTimeoutSecs: 0.25 }], ["t"])
    expect(makeFilterChain().compile(config.routes[0], config)?.timeoutMs).toBe(250)
  })
})

describe("FilterChain (end to end)", () => {
  it.scoped("rate-limit: 429 with Retry-After and X-RateLimit-* once the burst is spent; counted", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "a", targets: [{ address: origin.address }] }],
          routes: [route("api", "/", "a", ["rl", "sec"])],
          filters: [{ id: "rl", type: "rate-limit", maxRps: 0.5, burst: 2 }, { id: "sec", type: "security-headers" }]
        } as never)
      )
      const replies = []
      for (let i = 0; i < 3; i++) replies.push(yield* Effect.promise(() => request(proxy.port, { path: `/r${i}` })))
      expect(replies.map((r) => r.status)).toEqual([200, 200, 429])
      expect(replies[0].headers["x-ratelimit-limit"]).toBe("0.5")
      expect(replies[0].headers["x-ratelimit-remaining"]).toBe("1")
      const limited = replies[2]
      expect(Number(limited.headers["retry-after"])).toBeGreaterThanOrEqual(1)
      expect(limited.headers["x-ratelimit-remaining"]).toBe("0")
      expect(limited.headers["x-ratelimit-reset"]).toBeDefined()
      expect(limited.headers["x-request-id"]).toBeDefined()
      expect(limited.body.toString()).toBe("Too Many Requests")
      expect(limited.headers["content-type"]).toBe("text/plain; charset=utf-8")
      // the proxy's own answer goes through the route's response stages too
      expect(limited.headers["x-content-type-options"]).toBe("nosniff")
      expect(origin.requests.map((r) => r.url)).toEqual(["/r0", "/r1"])
      const text = yield* Effect.promise(() => proxy.metrics.registry.metrics())
      expect(text).toMatch(/sentinel_rate_limited_total\{route="api"\} 1/)
      expect(text).toMatch(/sentinel_rejected_requests_total\{reason="rate-limited"\} 1/)
    })
  )

  it.scoped("cors answers preflights itself and decorates actual responses; redirect answers; url-rewrite changes what goes upstream", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "a", targets: [{ address: origin.address }] }],
          routes: [route("api", "/api", "a", ["cors", "rw"]), route("old", "/old", "a", ["go"])],
          filters: [
            { id: "cors", type: "cors", allowedOrigins: ["https://app.example"] },
            { id: "rw", type: "url-rewrite", hostname: "internal.example", path: { _tag: "ReplacePrefixMatch", prefix: "/v2" } },
            { id: "go", type: "redirect", statusCode: 301, scheme: "https", path: { _tag: "ReplacePrefixMatch", prefix: "/new" } }
          ]
        } as never)
      )
      const pre = yield* Effect.promise(() =>
        request(proxy.port, {
          method: "OPTIONS",
          path: "/api/x",
          headers: { origin: "https://app.example", "access-control-request-method": "PUT" }
        })
      )
      expect(pre.status).toBe(204)
      expect(pre.headers["access-control-allow-origin"]).toBe("https://app.example")
      expect(origin.requests.length).toBe(0)
      const actual = yield* Effect.promise(() => request(proxy.port, { path: "/api/items?x=1", headers: { origin: "https://app.example" } }))
      expect(actual.status).toBe(200)
      expect(actual.headers["access-control-allow-origin"]).toBe("https://app.example")
      const seen = JSON.parse(actual.body.toString())
      expect(seen.url).toBe("/v2/items?x=1")
      expect(seen.headers.host).toBe("internal.example")
      const moved = yield* Effect.promise(() => request(proxy.port, { path: "/old/page?q=2", headers: { host: "site.example" } }))
      expect(moved.status).toBe(301)
      expect(moved.headers.location).toBe("https://site.example/new/page?q=2")
      expect(origin.requests.length).toBe(1)
    })
  )

  it.scoped("headers (both phases) and security-headers edit the request and the response", () =>
    Effect.gen(function* () {
      const origin = yield* echoOrigin()
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "a", targets: [{ address: origin.address }] }],
          routes: [route("all", "/", "a", ["hq", "hr", "sec"])],
          filters: [
            { id: "hq", type: "headers", set: [["X-Added", "yes"]], remove: ["X-Secret"] },
            { id: "hr", type: "headers", phase: "response", set: [["X-Served-By", "sentinel"]], remove: ["X-Origin"] },
            { id: "sec", type: "security-headers" }
          ]
        } as never)
      )
      const reply = yield* Effect.promise(() => request(proxy.port, { path: "/h", headers: { "x-secret": "s" } }))
      const seen = JSON.parse(reply.body.toString())
      expect(seen.headers["x-added"]).toBe("yes")
      expect(seen.headers["x-secret"]).toBeUndefined()
      expect(reply.headers["x-served-by"]).toBe("sentinel")
      expect(reply.headers["x-origin"]).toBeUndefined()
      expect(reply.headers["x-content-type-options"]).toBe("nosniff")
      expect(reply.headers["x-frame-options"]).toBe("DENY")
      // HSTS only over HTTPS
      expect(reply.headers["strict-transport-security"]).toBeUndefined()
    })
  )

  it.scoped("a timeout filter's request-timeout-secs becomes the compiled route's deadline", () =>
    Effect.gen(function* () {
      const proxy = yield* startProxy(
        testConfig({
          upstreams: [{ id: "a", targets: [{ address: "127.0.0.1:1" }] }],
          routes: [route("all", "/", "a", ["t"]), { ...route("plain", "/p", "a", []), policies: { timeout: Duration.seconds(7) } }],
          filters: [{ id: "t", type: "timeout", requestTimeoutSecs: 0.3 }]
        } as never)
      )
      // (the deadline itself is enforced by the upstream stage's `withDeadline`)
      expect(proxy.dataplane().plans.get("all")?.timeoutMs).toBe(300)
      expect(proxy.dataplane().plans.get("plain")?.timeoutMs).toBe(7000)
    })
  )
})
