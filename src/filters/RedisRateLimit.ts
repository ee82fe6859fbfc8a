/**
 * `filter "<id>" { type "rate-limit"; backend "redis"; redis-url "redis://..."; ... }`: the token
 * buckets of a fleet, in one Redis, so N proxies behind a load balancer enforce one limit.
 *
 * The decision (RateLimit.ts's bucket: capacity `burst`, refilled at `max-rps`) is one Lua script
 * per call, atomic in Redis, on Redis's clock (`TIME`, so the proxies' clocks do not matter); each
 * bucket key expires by itself once it would be full again. Sentinel's sliding log ignores
 * `burst` and collapses requests of the same millisecond into one entry: not copied.
 *
 * Off the critical path: requests for the same key that arrive in one turn of the event loop
 * are one script call that takes n tokens (`setImmediate` collects them), and the calls of one
 * turn go out as one pipelined write (ioredis auto-pipelining) over a bounded pool of
 * `redis-pool-size` connections, shared by every filter that names the same Redis.
 *
 * Redis slow or down never holds a request: there is no offline queue (a command on a
 * connection that is not ready fails at once), our own deadline (`redis-timeout-ms`, one timer
 * per turn) ends a call, and then the fallback decides at once: the local limiter (default),
 * admit (`"open"`) or 503 (`"closed"`). Each such decision is counted in
 * `sentinel_ratelimit_backend_errors_total{filter,reason}` and logged at most once per
 * `BACKEND_LOG_INTERVAL_MS`. `redis-failure-threshold` consecutive failures open a circuit
 * around that Redis for `redis-circuit-open-ms` (then one probe call): a dead Redis costs no
 * request its timeout. Reconnecting happens in the background (capped backoff), never on a
 * request's time.
 */
import type { Redis, RedisOptions } from "ioredis"
import { lazyModule } from "../LazyModule.js"
import type { FilterOutcome, FilterRequest } from "./FilterOutcome.js"
import {
  makeOutcomeOf, rateLimitKeyOf, type RateLimitConfig, type RedisBackendConfig, type TakeResult, TokenBuckets
} from "./RateLimit.js"

/**
 * ioredis, loaded when the first Redis store is made: a proxy without a Redis backend never
 * loads it (about 7 MiB of resident memory, issue 18's idle target).
 */
const ioredis = lazyModule<typeof import("ioredis")>("ioredis")

/**
 * One decision for `n` requests of one bucket. KEYS[1] the bucket (a hash: `tk` tokens, `ts` ms);
 * ARGV: tokens per ms, capacity, n, the longest delay allowed in ms (0 unless `on-limit "delay"`).
 * Returns { granted, tokens before, tokens after } (the last two as strings: Lua numbers to Redis
 * integers would truncate). A request may take a token while the bucket holds at least
 * `1 - maxDelay * rate` (a delayed one borrows, as the local limiter does).
 */
export const REDIS_TAKE_SCRIPT = `
if redis.replicate_commands then redis.replicate_commands() end
local perMs = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local maxDelay = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local s = redis.call('HMGET', KEYS[1], 'tk', 'ts')
local tokens = tonumber(s[1])
local ts = tonumber(s[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
elseif now > ts then
  tokens = math.min(cap, tokens + (now - ts) * perMs)
  ts = now
end
local before = tokens
local floor = 1 - maxDelay * perMs
local granted = 0
if tokens >= floor then
  granted = math.min(n, math.floor(tokens - floor) + 1)
end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tk', tostring(tokens), 'ts', tostring(ts))
local ttl = 1000
if perMs > 0 then ttl = math.min(2592000000, math.ceil((cap - tokens) / perMs) + 1000) end
redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
return { granted, tostring(before), tostring(tokens) }
`

/** Why Redis did not decide (label `reason` of `sentinel_ratelimit_backend_errors_total`). */
export type RedisFailure = "timeout" | "error" | "not_connected" | "circuit_open" | "closed"

/** At most one "backend failing" log line per backend in this interval. */
export const BACKEND_LOG_INTERVAL_MS = 10_000
/** Reconnect backoff: 50 ms doubling, capped here (a restarted Redis is found within about this). */
export const RECONNECT_MAX_MS = 1000

/**
 * The TakeResult of each of `n` requests of one call, in arrival order, from the bucket before
 * the call and the number granted: the i-th granted one found `before - i` tokens (RateLimit.ts's
 * `take`, applied n times).
 */
export const takeResultAt = (before: number, granted: number, i: number, perMs: number, capacity: number): TakeResult => {
  const allowed = i < granted
  const found = before - Math.min(i, granted)
  const after = allowed ? found - 1 : found
  const delayMs = allowed && found < 1 && perMs > 0 ? Math.ceil((1 - found) / perMs) : 0
  const deficit = Math.max(0, 1 - after)
  return {
    allowed,
    delayMs,
    remaining: Math.max(0, Math.floor(after)),
    resetSecs: perMs > 0 ? Math.ceil((capacity - after) / perMs / 1000) : 0,
    retryAfterSecs: perMs > 0 ? Math.max(1, Math.ceil(deficit / perMs / 1000)) : 1
  }
}

/** `takeResultAt` for each of `n` requests. */
export const batchResults = (before: number, granted: number, n: number, perMs: number, capacity: number): Array<TakeResult> =>
  Array.from({ length: n }, (_, i) => takeResultAt(before, granted, i, perMs, capacity))

export type CircuitName = "closed" | "open" | "half-open"

/**
 * Consecutive failures open it; open, calls are refused until `openMs` passed, then one probe
 * call goes out (half-open) while the others stay refused; the probe's success closes it, its
 * failure opens it again. The clock is injectable.
 */
export class RedisCircuit {
  state: CircuitName = "closed"
  private failures = 0
  private openedAt = 0
  private probing = false

  constructor(
    private readonly threshold: number,
    private readonly openMs: number,
    private readonly onChange: (from: CircuitName, to: CircuitName) => void = () => {},
    private readonly now: () => number = () => performance.now()
  ) {}

  private set(to: CircuitName): void {
    const from = this.state
    if (from === to) return
    this.state = to
    this.onChange(from, to)
  }

  /** May a call go out now? A `true` in half-open is the probe: report its outcome. */
  tryAcquire(): boolean {
    if (this.state === "closed") return true
    if (this.state === "open") {
      if (this.now() - this.openedAt < this.openMs) return false
      this.set("half-open")
    }
    if (this.probing) return false
    this.probing = true
    return true
  }

  success(): void {
    this.failures = 0
    this.probing = false
    this.set("closed")
  }

  failure(): void {
    this.probing = false
    this.failures++
    if (this.state === "half-open" || (this.state === "closed" && this.failures >= this.threshold)) {
      this.openedAt = this.now()
      this.set("open")
    }
  }
}

/** `redis://user:secret@host:6379/2` -> `host:6379/2`: the backend's name in metrics and logs (no credentials). */
export const redisBackendName = (url: string): string => {
  try {
    const u = new URL(url)
    const db = u.pathname.replace(/^\//, "")
    return `${u.protocol === "rediss:" ? "rediss://" : ""}${u.hostname}:${u.port === "" ? "6379" : u.port}${db === "" || db === "0" ? "" : `/${db}`}`
  } catch {
    return "redis"
  }
}

/** What a store reports (App wires it to metrics and the error log). */
export interface RedisBackendHooks {
  /** A decision that Redis did not make, by filter and reason. */
  readonly backendError?: (filterId: string, reason: RedisFailure) => void
  /** The circuit of a backend changed (`from === to` once, when the backend is created). */
  readonly circuitChanged?: (backend: string, from: CircuitName, to: CircuitName) => void
  /** A backend no filter uses any more was closed (its series can go). */
  readonly backendClosed?: (backend: string) => void
  readonly log?: (level: "warn" | "info", message: string, fields: Record<string, string | number>) => void
}

/** The connection settings that make two filters share one pool and one circuit. */
export type RedisConnection = Pick<RedisBackendConfig, "url" | "poolSize" | "timeoutMs" | "failureThreshold" | "circuitOpenMs">
export const connectionKey = (c: RedisConnection): string =>
  JSON.stringify([c.url, c.poolSize, c.timeoutMs, c.failureThreshold, c.circuitOpenMs])

type TakeReply = { readonly before: number; readonly granted: number }
type Waiter = (reply: TakeReply | RedisFailure, index: number) => void

interface Batch {
  readonly key: string
  readonly perMs: number
  readonly capacity: number
  readonly maxDelayMs: number
  /** The filter of the requests (one key belongs to one filter: the filter id is in it). */
  readonly filterId: string
  readonly waiters: Array<Waiter>
}

const settleBatch = (b: Batch, r: TakeReply | RedisFailure): void => {
  for (let i = 0; i < b.waiters.length; i++) b.waiters[i](r, i)
}

interface TakeCommand {
  sentinelTake(key: string, perMs: string, capacity: string, n: string, maxDelayMs: string): Promise<[number, string, string]>
}

export interface RedisStoreOptions {
  readonly hooks?: RedisBackendHooks
  /** Extra ioredis options (tests). */
  readonly clientOptions?: Partial<RedisOptions>
  readonly now?: () => number
}

/**
 * One Redis: its connections, its circuit, the batch of the current turn and the calls in flight.
 * Shared by the filters that name it (RedisStores counts them).
 */
export class RedisStore {
  readonly name: string
  readonly circuit: RedisCircuit
  private readonly clients: Array<Redis & TakeCommand> = []
  private next = 0
  private pending = new Map<string, Batch>()
  private flushScheduled: NodeJS.Immediate | undefined
  /** Calls in flight, to fail at close. */
  private readonly inFlight = new Set<{ settle: (r: TakeReply | RedisFailure) => void }>()
  private closed = false
  // throttled logging
  private lastLogAt = -Infinity
  private failuresSinceLog = 0
  private reasonsSinceLog = new Map<string, number>()
  private failingLogged = false
  private readonly now: () => number

  constructor(readonly connection: RedisConnection, private readonly options: RedisStoreOptions = {}) {
    this.name = redisBackendName(connection.url)
    this.now = options.now ?? (() => performance.now())
    this.circuit = new RedisCircuit(connection.failureThreshold, connection.circuitOpenMs, (from, to) => {
      options.hooks?.circuitChanged?.(this.name, from, to)
      if (to === "closed" && this.failingLogged) {
        this.failingLogged = false
        options.hooks?.log?.("info", "rate-limit backend answering again", { backend: this.name })
      }
    }, this.now)
    const clientOptions: RedisOptions = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      enableAutoPipelining: true,
      enableReadyCheck: true,
      connectTimeout: Math.max(1000, connection.timeoutMs * 10),
      keepAlive: 10_000,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times - 1, 10), RECONNECT_MAX_MS),
      reconnectOnError: () => false,
      ...options.clientOptions
    }
    options.hooks?.circuitChanged?.(this.name, "closed", "closed")
    for (let i = 0; i < Math.max(1, connection.poolSize); i++) {
      const client = new (ioredis().Redis)(connection.url, clientOptions) as Redis & TakeCommand
      client.defineCommand("sentinelTake", { numberOfKeys: 1, lua: REDIS_TAKE_SCRIPT })
      // connection errors show up as failed calls (counted, logged); without a listener ioredis prints them
      client.on("error", (e: Error) => void (this.lastError = e.message))
      this.clients.push(client)
    }
  }

  /** Connections ready now. */
  get ready(): number {
    return this.clients.filter((c) => c.status === "ready").length
  }

  /**
   * Asks for one token of bucket `key`; `done` gets the reply (or why there is none) and this
   * request's index in its batch. Always asynchronous, never later than the deadline.
   */
  take(filterId: string, key: string, perMs: number, capacity: number, maxDelayMs: number, done: Waiter): void {
    if (this.closed) {
      queueMicrotask(() => done("closed", 0))
      return
    }
    let batch = this.pending.get(key)
    if (batch === undefined) {
      batch = { key, perMs, capacity, maxDelayMs, filterId, waiters: [] }
      this.pending.set(key, batch)
    }
    batch.waiters.push(done)
    this.flushScheduled ??= setImmediate(() => this.flush())
  }

  private pickClient(): (Redis & TakeCommand) | undefined {
    for (let i = 0; i < this.clients.length; i++) {
      const c = this.clients[(this.next + i) % this.clients.length]
      if (c.status === "ready") {
        this.next = (this.next + i + 1) % this.clients.length
        return c
      }
    }
    return undefined
  }

  private flush(): void {
    this.flushScheduled = undefined
    const batches = this.pending
    this.pending = new Map()
    const go: Array<{ readonly batch: Batch; readonly client: Redis & TakeCommand }> = []
    for (const b of batches.values()) {
      if (!this.circuit.tryAcquire()) {
        this.failed(b.filterId, "circuit_open", b.waiters.length)
        settleBatch(b, "circuit_open")
        continue
      }
      const client = this.pickClient()
      if (client === undefined) {
        this.circuit.failure()
        this.failed(b.filterId, "not_connected", b.waiters.length)
        settleBatch(b, "not_connected")
        continue
      }
      go.push({ batch: b, client })
    }
    if (go.length === 0) return
    // one deadline for the calls of this turn
    let open = go.length
    const calls: Array<{ settle: (r: TakeReply | RedisFailure) => void }> = []
    // A reply that arrived while the event loop was busy past the deadline is read in the poll
    // phase, which runs before `setImmediate`'s: it wins over the timeout.
    const timer = setTimeout(() => {
      setImmediate(() => {
        for (const c of calls) c.settle("timeout")
      })
    }, this.connection.timeoutMs)
    for (const { batch: b, client } of go) {
      let settled = false
      const call = {
        settle: (r: TakeReply | RedisFailure) => {
          if (settled) return
          settled = true
          this.inFlight.delete(call)
          if (--open === 0) clearTimeout(timer)
          if (typeof r !== "string") this.circuit.success()
          else if (r !== "closed") {
            this.circuit.failure()
            this.failed(b.filterId, r, b.waiters.length)
          }
          settleBatch(b, r)
        }
      }
      calls.push(call)
      this.inFlight.add(call)
      client
        .sentinelTake(b.key, String(b.perMs), String(b.capacity), String(b.waiters.length), String(b.maxDelayMs))
        .then(
          (reply) => {
            const granted = Number(reply[0])
            const before = Number(reply[1])
            call.settle(Number.isFinite(granted) && Number.isFinite(before) ? { granted, before } : "error")
          },
          (e: unknown) => {
            this.lastError = e instanceof Error ? e.message : String(e)
            call.settle("error")
          }
        )
    }
  }

  private lastError = ""

  /** Counts and (throttled) logs `n` decisions Redis did not make. */
  private failed(filterId: string, reason: RedisFailure, n: number): void {
    const hooks = this.options.hooks
    if (hooks?.backendError !== undefined) for (let i = 0; i < n; i++) hooks.backendError(filterId, reason)
    this.failuresSinceLog += n
    this.reasonsSinceLog.set(reason, (this.reasonsSinceLog.get(reason) ?? 0) + n)
    const t = this.now()
    if (t - this.lastLogAt < BACKEND_LOG_INTERVAL_MS) return
    this.lastLogAt = t
    this.failingLogged = true
    hooks?.log?.("warn", "rate-limit backend failing; the fallback decides", {
      backend: this.name,
      decisions: this.failuresSinceLog,
      reasons: [...this.reasonsSinceLog].map(([r, k]) => `${r}=${k}`).join(","),
      circuit: this.circuit.state,
      error: this.lastError === "" ? "-" : this.lastError.slice(0, 200)
    })
    this.failuresSinceLog = 0
    this.reasonsSinceLog = new Map()
  }

  /** Disconnects at once; calls queued or in flight get "closed" (their fallback decides). */
  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.flushScheduled !== undefined) clearImmediate(this.flushScheduled)
    this.flushScheduled = undefined
    for (const b of this.pending.values()) settleBatch(b, "closed")
    this.pending.clear()
    for (const c of [...this.inFlight]) c.settle("closed")
    for (const c of this.clients) c.disconnect()
  }
}

/** The stores of a process, one per distinct connection, counted by the limiters using them. */
export class RedisStores {
  private readonly stores = new Map<string, { store: RedisStore; users: number }>()
  constructor(private readonly options: RedisStoreOptions = {}) {}

  acquire(c: RedisConnection): RedisStore {
    const key = connectionKey(c)
    let e = this.stores.get(key)
    if (e === undefined) {
      e = { store: new RedisStore(c, this.options), users: 0 }
      this.stores.set(key, e)
    }
    e.users++
    return e.store
  }

  release(store: RedisStore): void {
    const key = connectionKey(store.connection)
    const e = this.stores.get(key)
    if (e === undefined || e.store !== store) return
    if (--e.users > 0) return
    this.stores.delete(key)
    store.close()
    this.options.hooks?.backendClosed?.(store.name)
  }

  get size(): number {
    return this.stores.size
  }

  closeAll(): void {
    for (const e of this.stores.values()) e.store.close()
    this.stores.clear()
  }
}

/** A Redis-backed rate limit: asks the store, else decides by its fallback. */
export interface RedisRateLimiter {
  readonly config: RateLimitConfig & { readonly backend: RedisBackendConfig }
  /** The fallback buckets (`redis-fallback "local"`). */
  readonly buckets: TokenBuckets
  readonly store: RedisStore
  /**
   * Decides one request: `done` gets the outcome, or `"unavailable"` when Redis could not
   * decide and the fallback is `"closed"`. `done` is called once, never synchronously.
   */
  readonly decide: (req: FilterRequest, done: (outcome: FilterOutcome | "unavailable") => void) => void
}

export const makeRedisRateLimiter = (
  filterId: string,
  config: RateLimitConfig & { readonly backend: RedisBackendConfig },
  store: RedisStore,
  now?: () => number
): RedisRateLimiter => {
  const buckets = new TokenBuckets(config.maxRps, config.burst, config.maxKeys, now)
  const outcomeOf = makeOutcomeOf(config)
  const perMs = config.maxRps / 1000
  const capacity = Math.max(1, config.burst)
  const maxDelayMs = config.onLimit === "delay" ? config.maxDelayMs : 0
  const prefix = `${config.backend.prefix}${filterId}:`
  const fallback = config.backend.fallback
  const decide = (req: FilterRequest, done: (outcome: FilterOutcome | "unavailable") => void): void => {
    const key = rateLimitKeyOf(config.key, req)
    store.take(filterId, prefix + key, perMs, capacity, maxDelayMs, (reply, index) => {
      if (typeof reply !== "string") {
        // the fallback table follows Redis, so a fallback goes on from the fleet's state (once per batch)
        if (index === 0 && fallback === "local") buckets.sync(key, reply.before - reply.granted)
        // only this request's result of the batch is built
        done(outcomeOf(takeResultAt(reply.before, reply.granted, index, perMs, capacity)))
        return
      }
      if (fallback === "local") done(outcomeOf(buckets.take(key, maxDelayMs)))
      else if (fallback === "open") done({ _tag: "Continue" })
      else done("unavailable")
    })
  }
  return { config, buckets, store, decide }
}
