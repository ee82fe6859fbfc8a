/**
 * A CommonJS dependency loaded the first time it is used, not when the proxy starts: the gRPC
 * stack and the Redis client cost resident memory (about 4 and 7 MiB) that a proxy without gRPC
 * agents or a Redis backend never needs, mime-types (its database) and http-cache-semantics
 * about 1 and 0.4 MiB of heap without static routes or a cache (bench/README.md, "Memory").
 */
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)

/** `load()` requires `id` once and returns the same module after that. */
export const lazyModule = <M>(id: string): (() => M) => {
  let loaded: M | undefined
  return () => (loaded ??= require(id) as M)
}
