/**
 * One request's use of the cache (the route's `ResponseTap`): what the lookup found, whether
 * this request fills the key (and holds its lock), the stale entry it may fall back on, and the
 * verdict the `Cache-Status` field and the access log report. `Fill.ts` is its response side.
 */
import type CachePolicy from "http-cache-semantics"
import { etagMatches } from "../handlers/HttpConditional.js"
import { connectionTokens, isHopByHop } from "../http/HopByHop.js"
import type { RequestContext, ResponseTap } from "../pipeline/RequestContext.js"
import type { ResponseSink } from "../upstream/Forward.js"
import type { ResponseCache } from "./Cache.js"
import { FillSink } from "./Fill.js"
import { judge, parseCacheControl, refusal, resourceOf, type CacheRules, type Judged } from "./Rules.js"
import type { ServedSink } from "../pipeline/Stage.js"
import type { CacheEntry } from "./Store.js"
import { policyRequestHeaders, unionNames, variantKey, varyNames } from "./Variants.js"

/** Upstream failures a stale entry may answer (stale-if-error); never the client's side or our own limits. */
const UPSTREAM_FAULTS: ReadonlySet<string> = new Set([
  "UpstreamConnectFailed", "UpstreamTimeout", "UpstreamProtocolError", "UpstreamBadAnswer", "UpstreamSaturated",
  "NoHealthyUpstream", "RouteCircuitOpen", "RequestTimeout"
])

const CONDITIONALS: ReadonlySet<string> = new Set(["if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"])

/** Fields a 304 does not replace in the stored head (RFC 9111 §3.2). */
const KEPT_ON_304: ReadonlySet<string> = new Set(["content-length", "content-encoding", "transfer-encoding", "content-range", "age"])

/** Flat raw head as one value per lower-case name (repeated fields joined). */
export const headerRecord = (raw: ReadonlyArray<Buffer | string>): Record<string, string> => {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i].toString("latin1").toLowerCase()
    const v = raw[i + 1].toString("latin1")
    out[n] = out[n] === undefined ? v : `${out[n]}, ${v}`
  }
  return out
}

const bodiless = (status: number): boolean => status === 204 || status === 304 || status < 200

/** The head kept with an entry: no hop-by-hop field (nor one `Connection` names), no `Age`, a `Content-Length`. */
const storedHead = (raw: ReadonlyArray<Buffer>, status: number, bodyLength: number): Array<string> => {
  let connection: string | undefined
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i].toString("latin1").toLowerCase() === "connection") connection = raw[i + 1].toString("latin1")
  }
  const named = connectionTokens(connection)
  const out: Array<string> = []
  let length = false
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i].toString("latin1")
    const lower = n.toLowerCase()
    if (isHopByHop(n) || lower === "age" || named?.has(lower)) continue
    if (lower === "content-length") length = true
    out.push(n, raw[i + 1].toString("latin1"))
  }
  if (!length && !bodiless(status)) out.push("content-length", String(bodyLength))
  return out
}

/** The times an entry is fresh, servable stale and servable on error until (cache clock, ms), from the library's lifetime. */
const timesOf = (policy: CachePolicy, judged: Judged, now: number) => {
  const cc = parseCacheControl(judged.headers["cache-control"])
  const swr = judged.mustRevalidate ? 0 : Number(cc.get("stale-while-revalidate")) || 0
  const ageAtStore = policy.age()
  const freshUntil = now + Math.max(0, policy.maxAge() - ageAtStore) * 1000
  return {
    storedAt: now,
    ageAtStore,
    freshUntil,
    staleUntil: freshUntil + Math.max(0, swr) * 1000,
    errorUntil: judged.mustRevalidate ? freshUntil : freshUntil + judged.staleIfErrorSecs * 1000
  }
}

/** What a fill decided at the response head: the library's view and the variant it becomes. */
interface Pending {
  readonly policy: CachePolicy
  readonly judged: Judged
  readonly names: ReadonlyArray<string>
  readonly headers: Record<string, string>
}

export class CacheExchange implements ResponseTap {
  result: string | undefined = undefined
  /** RFC 9211 parameters after the cache's name (`hit; ttl=30`, `fwd=miss; stored`). */
  status = ""
  primary = ""
  /** This request fills the key; `lockKey` is the lock it holds (if any). */
  filling = false
  lockKey: string | undefined = undefined
  /** An entry that is stale for this request: revalidated when it has validators, else the stale-if-error fallback. */
  stale: CacheEntry | undefined = undefined
  revalidating = false
  collapsed = false
  committed = false
  /** A background refresh (stale-while-revalidate): not a client's request, so not counted. */
  background = false
  pending: Pending | undefined = undefined
  readonly startedAt: number

  constructor(
    readonly cache: ResponseCache,
    readonly rules: CacheRules,
    readonly ctx: RequestContext
  ) {
    this.startedAt = cache.now()
  }

  wrap(sink: ResponseSink): ResponseSink {
    return this.filling || this.stale !== undefined ? new FillSink(this, sink) : sink
  }

  /** The library's request: GET for HEAD (answered from the GET), the key's URI, the host, normalised selecting fields. */
  policyRequest(names: ReadonlyArray<string>): { method: string; url: string; headers: Record<string, string> } {
    const ctx = this.ctx
    const headers = policyRequestHeaders(ctx.req.headers as Record<string, string | Array<string> | undefined>, names, this.rules.codings)
    headers.host = ctx.host
    return { method: ctx.method === "HEAD" ? "GET" : ctx.method, url: resourceOf(ctx, this.rules), headers }
  }

  /** The stored variant this request selects (with the names its resource is selected by). */
  variantOf(): string {
    const names = this.cache.store.namesOf(this.primary) ?? this.rules.varyHeaders
    return `${this.primary}\u0000${variantKey(names, this.ctx.header, this.rules.codings)}`
  }

  count(result: string): void {
    this.result = result
    if (this.background) return
    const s = this.cache.store.routeStats(this.rules.routeId)
    if (result === "hit") s.hits++
    else if (result === "stale" || result === "stale-if-error") s.stale++
    else if (result === "revalidated") s.revalidated++
    else if (result === "bypass") s.bypass++
    else s.misses++
    this.cache.hooks.result?.(this.rules.routeId, result)
  }

  /** Seconds an entry stays fresh from now (negative once stale). */
  ttlOf(e: CacheEntry): number {
    return Math.round((e.freshUntil - this.cache.now()) / 1000)
  }

  /** Whether the client's own validators match the entry (answered 304). */
  clientNotModified(e: CacheEntry): boolean {
    const inm = this.ctx.header("if-none-match")
    if (inm !== undefined) return e.etag !== undefined && etagMatches(inm, e.etag)
    const ims = this.ctx.header("if-modified-since")
    if (ims === undefined || e.lastModified === undefined) return false
    const since = Date.parse(ims)
    const modified = Date.parse(e.lastModified)
    return !Number.isNaN(since) && !Number.isNaN(modified) && modified <= since
  }

  /** Writes an entry into `sink` (the client's way): its head with `Age`, its body (not for HEAD), or a 304. */
  writeEntry(sink: ServedSink, e: CacheEntry): boolean {
    const notModified = (e.etag !== undefined || e.lastModified !== undefined) && this.clientNotModified(e)
    const head: Array<string> = []
    for (let i = 0; i + 1 < e.head.length; i += 2) {
      if (notModified && e.head[i].length === 14 && e.head[i].toLowerCase() === "content-length") continue
      head.push(e.head[i], e.head[i + 1])
    }
    head.push("age", String(Math.max(0, Math.floor(e.ageAtStore + (this.cache.now() - e.storedAt) / 1000))))
    const status = notModified ? 304 : e.status
    if (!sink.start(status, head)) return false
    if (!notModified && this.ctx.method !== "HEAD" && e.body.length > 0) sink.data(e.body)
    return true
  }

  /** Revalidation: the client's validators go, the entry's are sent (its answer is compared with the entry). */
  conditionalHeaders(headers: Array<string>, e: CacheEntry): Array<string> {
    const out: Array<string> = []
    for (let i = 0; i + 1 < headers.length; i += 2) if (!CONDITIONALS.has(headers[i].toLowerCase())) out.push(headers[i], headers[i + 1])
    if (e.etag !== undefined) out.push("if-none-match", e.etag)
    if (e.lastModified !== undefined) out.push("if-modified-since", e.lastModified)
    return out
  }

  /** At the response head: whether it is stored (and how), else why not (in `Cache-Status`). */
  decideStore(status: number, raw: ReadonlyArray<Buffer>): boolean {
    if (!this.filling || this.ctx.method === "HEAD") return false
    const headers = headerRecord(raw)
    let why = refusal(this.rules, status, this.ctx.header("authorization") !== undefined, headers)
    const declared = Number(headers["content-length"])
    if (why === undefined && Number.isFinite(declared) && declared > this.rules.maxSizeBytes) why = "too-big"
    const vary = varyNames(headers["vary"])
    if (why === undefined && vary === "*") why = "vary-star"
    if (why === undefined) {
      const names = unionNames(this.rules.varyHeaders, vary === "*" ? [] : vary)
      const judged = judge(this.rules, headers)
      const policy = new this.cache.Policy(this.policyRequest(names), { status, headers: judged.headers }, { shared: true, cacheHeuristic: 0 })
      const validators = headers["etag"] !== undefined || headers["last-modified"] !== undefined
      if (!policy.storable()) why = "not-storable"
      else if (policy.timeToLive() <= 0 && !validators) why = "expired"
      else {
        this.pending = { policy, judged, names, headers }
        return true
      }
    }
    this.status += `; detail=${why}`
    return false
  }

  /** A fill completed: the variant is stored (unless a purge since it started covers it); waiters are woken. */
  commit(status: number, raw: ReadonlyArray<Buffer>, body: Buffer): void {
    const p = this.pending
    if (p === undefined || this.committed) return
    this.committed = true
    const ctx = this.ctx
    if (this.cache.store.purgedSince(this.startedAt, ctx.host, ctx.path)) return this.release(false)
    const head = storedHead(raw, status, body.length)
    let headBytes = 0
    for (const h of head) headBytes += h.length + 4
    const key = `${this.primary}\u0000${variantKey(p.names, ctx.header, this.rules.codings)}`
    const stored = this.cache.store.set({
      key,
      primary: this.primary,
      routeId: this.rules.routeId,
      host: ctx.host,
      path: ctx.path,
      status,
      head,
      body,
      size: body.length + headBytes + 256,
      policy: p.policy,
      etag: p.headers["etag"],
      lastModified: p.headers["last-modified"],
      contentEncoding: p.headers["content-encoding"],
      ...timesOf(p.policy, p.judged, this.cache.now()),
      mustRevalidate: p.judged.mustRevalidate,
      public: /(^|,)\s*public\s*(,|$)/i.test(p.headers["cache-control"] ?? ""),
      names: p.names
    })
    this.release(stored)
  }

  /**
   * A 304 answered the revalidation: the entry's head takes the 304's fields (not its length or
   * coding), its freshness restarts from now. Returns the refreshed entry.
   */
  refreshed(raw304: ReadonlyArray<Buffer>): CacheEntry {
    const e = this.stale!
    const update = headerRecord(raw304)
    const before = headerRecord(e.head)
    const head: Array<string> = []
    const seen = new Set<string>()
    for (let i = 0; i + 1 < e.head.length; i += 2) {
      const n = e.head[i].toLowerCase()
      if (update[n] !== undefined && !KEPT_ON_304.has(n) && !isHopByHop(n)) {
        if (!seen.has(n)) head.push(e.head[i], update[n])
        seen.add(n)
      } else head.push(e.head[i], e.head[i + 1])
    }
    for (const n in update) {
      if (seen.has(n) || KEPT_ON_304.has(n) || isHopByHop(n) || before[n] !== undefined) continue
      head.push(n, update[n])
    }
    const headers = headerRecord(head)
    const judged = judge(this.rules, { ...headers, ...(update["age"] !== undefined ? { age: update["age"] } : {}) })
    const policy = new this.cache.Policy(this.policyRequest(e.names), { status: e.status, headers: judged.headers }, { shared: true, cacheHeuristic: 0 })
    const next: CacheEntry = {
      ...e,
      head,
      policy,
      etag: headers["etag"],
      lastModified: headers["last-modified"],
      ...timesOf(policy, judged, this.cache.now()),
      mustRevalidate: judged.mustRevalidate
    }
    this.committed = true
    const stored = this.cache.store.set(next)
    this.release(stored)
    return next
  }

  /** Whether `e` may still answer when the upstream fails (RFC 5861 stale-if-error). */
  usableOnError(e: CacheEntry | undefined): e is CacheEntry {
    if (e === undefined || e.mustRevalidate) return false
    if (this.ctx.header("authorization") !== undefined && !e.public) return false
    return this.cache.now() < e.errorUntil
  }

  /** The response head is a 5xx and a stale entry may answer instead: the upstream's answer is dropped. */
  staleOnErrorStatus(status: number): boolean {
    return status >= 500 && status <= 599 && this.usableOnError(this.stale)
  }

  rescue(error: string, sink: ServedSink): boolean {
    const e = this.stale
    if (!UPSTREAM_FAULTS.has(error) || !this.usableOnError(e)) return false
    this.count("stale-if-error")
    this.status = `hit; ttl=${this.ttlOf(e)}; detail=stale-if-error`
    if (!this.writeEntry(sink, e)) return false
    sink.end()
    return true
  }

  /** Releases the key's lock: waiters look again (filled) or go upstream themselves. */
  release(filled: boolean): void {
    const k = this.lockKey
    if (k === undefined) return
    this.lockKey = undefined
    this.cache.locks.release(k, filled)
  }
}
