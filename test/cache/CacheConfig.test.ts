/**
 * The cache blocks in KDL: Sentinel's names and defaults, errors with positions for what is
 * not supported or wrong, and the lint warnings for a cache nothing can use.
 */
import * as Duration from "effect/Duration"
import { describe, expect, it } from "vitest"
import { decodeKdl } from "../../src/config/Kdl.js"
import { formatIssue } from "../../src/config/ConfigIssue.js"
import { lintConfig } from "../../src/config/Lint.js"

const L = `listeners { listener "l" { address "127.0.0.1:0" } }\nupstreams { upstream "u" { target "127.0.0.1:1" } }\n`
const errors = (text: string): Array<string> => decodeKdl(text, { file: "t.kdl" }).errors.map(formatIssue)
const config = (text: string) => {
  const r = decodeKdl(text, { file: "t.kdl", cores: 4 })
  expect(r.errors.map(formatIssue)).toEqual([])
  return r.config!
}

describe("cache configuration", () => {
  it("Sentinel's defaults: store on, 100 MiB, lock-timeout 10 s, no status header; route cache off, 3600 s, 10 MiB, 60 s / 300 s", () => {
    const c = config(L + `routes { route "r" { upstream "u"; cache { } } }`)
    expect(c.cache).toEqual({ enabled: true, backend: "memory", maxSize: 104857600, lockTimeout: Duration.seconds(10), statusHeader: false, statusHeaderName: "sentinel", adminOnly: true })
    expect(c.routes[0].cache).toMatchObject({
      enabled: false, maxSizeBytes: 10 * 1024 * 1024, cachePrivate: false, cacheableMethods: ["GET", "HEAD"],
      cacheableStatusCodes: [200, 203, 204, 206, 300, 301, 308, 404, 410], varyHeaders: [], ignoreQueryParams: []
    })
    expect(Duration.toSeconds(c.routes[0].cache!.defaultTtl)).toBe(3600)
    expect(Duration.toSeconds(c.routes[0].cache!.staleWhileRevalidate)).toBe(60)
    expect(Duration.toSeconds(c.routes[0].cache!.staleIfError)).toBe(300)
  })

  it("every key read as Sentinel writes it", () => {
    const c = config(L + `routes { route "r" { upstream "u"; cache {
      enabled #true; default-ttl-secs 30; max-size-bytes "1MiB"; cache-private #true; stale-while-revalidate-secs 5; stale-if-error-secs 7
      cacheable-methods "get" "HEAD"; cacheable-status-codes 200 404; vary-headers "Accept-Encoding"; ignore-query-params "utm_source"
      exclude-extensions ".PHP" "cgi"; exclude-paths "/admin" } } }
cache { enabled #true; backend "memory"; max-size 268435456; lock-timeout 2; status-header #true; status-header-name "edge-1"; admin-only #false }`)
    expect(c.routes[0].cache).toMatchObject({ enabled: true, maxSizeBytes: 1048576, cachePrivate: true, cacheableMethods: ["GET", "HEAD"], cacheableStatusCodes: [200, 404],
      varyHeaders: ["Accept-Encoding"], ignoreQueryParams: ["utm_source"], excludeExtensions: ["php", "cgi"], excludePaths: ["/admin"] })
    expect(c.cache).toMatchObject({ maxSize: 268435456, statusHeader: true, statusHeaderName: "edge-1", adminOnly: false })
    expect(Duration.toMillis(c.cache.lockTimeout)).toBe(2000)
  })

  it("disk and hybrid backends and their keys are not supported yet; wrong values are errors with positions", () => {
    expect(errors(L + `cache { backend "disk"; disk-path "/var/cache"; }`)).toEqual([
      't.kdl:3:17: `backend` "disk" is not supported yet',
      "t.kdl:3:25: `disk-path` is not supported yet"
    ])
    expect(errors(L + `routes { route "r" { upstream "u"; cache { cacheable-status-codes 99; exclude-paths "admin"; } } }`)).toEqual([
      "t.kdl:3:67: `cacheable-status-codes` must be at least 100, got 99",
      't.kdl:3:85: `exclude-paths` must be a path starting with "/", got "admin"'
    ])
    expect(errors(L + `routes { route "r" { builtin-handler "status"; cache { enabled #true; } } }`)).toEqual([
      't.kdl:3:48: route "r": `cache { enabled #true }` needs an `upstream` (only proxied responses are cached)'
    ])
  })

  it("lint: a route cache with the store off; purge/stats with no admin listener", () => {
    const rules = (text: string) => lintConfig(config(text), 1).map((w) => w.rule)
    expect(rules(L + `routes { route "r" { upstream "u"; cache { enabled #true; } } }\ncache { enabled #false }`)).toContain("cache-disabled")
    expect(rules(L + `routes { route "p" { builtin-handler "cache-purge" } }`)).toContain("cache-handler-unreachable")
    expect(rules(L + `routes { route "p" { builtin-handler "cache-purge" } }\ncache { admin-only #false }`)).not.toContain("cache-handler-unreachable")
  })
})
