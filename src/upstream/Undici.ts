/**
 * The parts of undici the proxy uses, required from their own modules. `import "undici"`
 * evaluates its index, which loads every part of the library at once: fetch, WebSocket,
 * EventSource, the mock agents, the cache stores, every interceptor (142 modules). A proxy
 * needs the dispatchers and `request`: about 3 MiB less heap and 8 MiB less resident memory
 * per process (bench/README.md, "Memory"). undici is pinned to an exact version in
 * package.json; test/upstream/Undici.test.ts checks that these are the very objects the
 * index exports, so an upgrade that moves a file fails there, not in production.
 */
import { createRequire } from "node:module"
import type * as Undici from "undici"

const require = createRequire(import.meta.url)

export const Client: typeof Undici.Client = require("undici/lib/dispatcher/client.js")
export const Pool: typeof Undici.Pool = require("undici/lib/dispatcher/pool.js")
export const Agent: typeof Undici.Agent = require("undici/lib/dispatcher/agent.js")

type RequestOptions = Omit<Undici.Dispatcher.RequestOptions, "origin" | "path"> & { readonly dispatcher: Undici.Dispatcher }
const dispatcherRequest: (this: Undici.Dispatcher, opts: Undici.Dispatcher.RequestOptions) => Promise<Undici.Dispatcher.ResponseData> =
  require("undici/lib/api/api-request.js")

/** undici's `request(url, { dispatcher, ... })`, for an absolute `http(s)://` URL. */
export const request = (url: string, { dispatcher, ...opts }: RequestOptions): Promise<Undici.Dispatcher.ResponseData> => {
  const u = new URL(url)
  return dispatcherRequest.call(dispatcher, { ...opts, origin: u.origin, path: `${u.pathname}${u.search}` })
}

export type Client = Undici.Client
export type Pool = Undici.Pool
export type Agent = Undici.Agent
