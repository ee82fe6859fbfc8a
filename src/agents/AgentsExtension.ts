/**
 * Agents on the request path: the `RouteExtension` for filters of
 * `type "agent"` and the scoped `AgentManager` built from the `agents { }`
 * block, with its metrics (`sentinel_agent_*`) and audit lines wired.
 *
 * Per route (filter order, failure mode filter > route `policies` > agent):
 * - request stage: RequestHeaders to the route's agents in parallel (the
 *   Manager picks the first non-allow in filter order and merges header
 *   mutations in filter order), then, for agents subscribed to
 *   `request_body`, the body buffered up to the largest agent cap and sent
 *   to each in turn. Over the cap the Manager sees `cap + 1` bytes: fail
 *   closed answers 413, fail open skips the agent (counted) and the body
 *   streams on unchanged.
 * - response hook (only with `response_headers` / `response_body` agents):
 *   the upstream head (and body up to the cap) is held while the agents
 *   decide; a block replaces the response, mutations edit it. With
 *   `response-body-mode "stream"` agents, the head is decided alone, then each
 *   body chunk goes to them before the client (ResponseHold.ts), and the
 *   buffer-mode agents beside them get what they passed, held up to their cap.
 * - response stage: response-header mutations decided in the request phase.
 * - complete stage: RequestComplete to `log` / `request_complete` agents,
 *   after the response; answers only audited.
 *
 * Routes without agent filters get no stage at all (nothing on their hot
 * path). Each phase is one `Effect.async` in the Manager, over the client's
 * callback `start` (DESIGN.md §2).
 *
 * The body phase of the request: AgentRequestBody.ts; the response phases (the response
 * hook): AgentResponsePhases.ts; both built once per route from what `compile` works out.
 *
 * Reload: `reload(config)` builds a new manager (new connections) in a new
 * child scope when the `agents { }` block changed, before the dataplane is
 * recompiled; the old manager stays with the requests that captured it and
 * is closed after the grace period.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { FilterConfig, RouteConfig, SentinelConfig } from "../config/Schema.js"
import type { AuditLog } from "../observability/AuditLog.js"
import type { Metrics } from "../observability/Metrics.js"
import type { RequestContext } from "../pipeline/RequestContext.js"
import { callbackAsEffect, pendingStep } from "../pipeline/Stage.js"
import type {
  Answer,
  CompleteStage,
  RequestStage,
  ResponseStage,
  RouteContribution,
  RouteExtension,
  StageStep
} from "../pipeline/Stage.js"
import { type AgentConfig, type AgentFilterRef, filterBodyCap, filterSubscribes } from "./AgentConfig.js"
import type { AgentDecision, AgentMetric, AgentRespond, ChallengePolicy, PhaseContext, WebSocketVerdict } from "./AgentDecision.js"
import { requestCompleteEvent, requestHeadersEvent } from "./AgentEvents.js"
import { applyHeaderOps } from "./AgentHeaders.js"
import type { AgentManagerService, AgentStatus } from "./AgentManager.js"
import { requestBodyPhase, type RequestState } from "./AgentRequestBody.js"
import { applyInPlace, responseHookOf } from "./AgentResponsePhases.js"
import { make as makeManager } from "./Manager.js"
import type { RequestHeadersEvent, WebSocketFrameEvent } from "./Protocol.js"

export interface AgentsOptions {
  readonly metrics: Metrics
  readonly audit: AuditLog
  /** What a challenge decision becomes. Default 403 with `x-sentinel-challenge`. */
  readonly challenge?: Partial<ChallengePolicy>
  /** Grace period before a replaced manager is closed, ms (read at reload). */
  readonly graceMs: () => number
  readonly proxyVersion?: string
}

export interface Agents {
  /** Add to the dataplane's extensions. */
  readonly extension: RouteExtension
  /** Call before recompiling the dataplane; true when the manager was rebuilt. */
  readonly reload: (config: SentinelConfig) => Effect.Effect<boolean>
  /** The manager routes compiled now will use. */
  readonly manager: () => AgentManagerService
  readonly status: () => ReadonlyArray<AgentStatus>
  /**
   * The route's agents that subscribe to `websocket_frame` (filter order), with the manager of
   * the configuration being compiled; undefined when there are none. A tunnel keeps what it
   * got at its handshake (a reload leaves open tunnels on their configuration).
   */
  readonly websocketFrames: (route: RouteConfig, config: SentinelConfig) => WebSocketFrameAgents | undefined
}

/** One frame to a route's `websocket_frame` agents; `done` once unless the returned cancel runs first. */
export interface WebSocketFrameAgents {
  readonly start: (event: WebSocketFrameEvent, ctx: PhaseContext, done: (verdict: WebSocketVerdict) => void) => () => void
}

/** The decoded config is the manager's config (same fields and units). */
const runtimeConfig = (a: SentinelConfig["agents"][number]): AgentConfig => a

/** A route's agent filters, in filter order. */
const agentRefs = (route: RouteConfig, filters: ReadonlyMap<string, FilterConfig>): Array<AgentFilterRef> => {
  const refs: Array<AgentFilterRef> = []
  for (const id of route.filters) {
    const f = filters.get(id)
    if (f === undefined || f.type !== "agent") continue
    refs.push({
      agent: f.agent,
      filterId: f.id,
      ...(f.failureMode !== undefined ? { failureMode: f.failureMode } : {}),
      ...(f.timeoutMs !== undefined ? { timeoutMs: f.timeoutMs } : {}),
      ...(f.inspectBody !== undefined ? { inspectBody: f.inspectBody } : {}),
      ...(f.maxBodyBytes !== undefined ? { maxBodyBytes: f.maxBodyBytes } : {})
    })
  }
  return refs
}

/** The client's answer for a non-allow decision. */
export const answerOf = (d: AgentRespond): Answer => {
  const headers: Array<string> = []
  let contentType: string | undefined
  for (const [name, value] of d.headers) {
    if (name.toLowerCase() === "content-type") contentType = value
    else headers.push(name, value)
  }
  return { status: d.status, headers, body: d.body, contentType: contentType ?? "text/plain; charset=utf-8", reason: d.reason }
}

export const makeAgents = (initial: SentinelConfig, options: AgentsOptions): Effect.Effect<Agents, never, Scope.Scope> =>
  Effect.gen(function* () {
    const parent = yield* Effect.scope
    const { metrics, audit } = options
    // Managers close when the proxy's scope does, at the point where makeAgents was called
    // (after the listeners drained), including one built by a reload.
    const scopes = new Set<Scope.CloseableScope>()
    yield* Effect.addFinalizer(() =>
      Effect.forEach([...scopes].reverse(), (s) => Scope.close(s, Exit.void), { discard: true })
    )

    const onMetric = (m: AgentMetric) => {
      metrics.agentCall(m.agent, m.phase, m.result, m.durationMs)
      if (m.result === "timeout") metrics.agentTimeouts.inc(m.agent, m.phase)
      switch (m.result) {
        case "allow":
        case "block":
        case "redirect":
        case "challenge":
          break
        default:
          metrics.agentFailures.inc(m.agent, m.result)
      }
      if (m.failOpen) metrics.agentFailOpen.inc(m.agent)
    }

    const build = (config: SentinelConfig) =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        scopes.add(scope)
        const manager = yield* makeManager(config.agents.map(runtimeConfig), {
          onAudit: audit.agent,
          onMetric,
          onCircuitTransition: (agent, _from, to) => metrics.circuitChanged("agent", agent, to),
          ...(options.challenge ? { challenge: options.challenge } : {}),
          ...(options.proxyVersion ? { proxyVersion: options.proxyVersion } : {})
        }).pipe(Scope.extend(scope))
        for (const a of config.agents) metrics.circuitState.set(0, "agent", a.id)
        return { key: JSON.stringify(config.agents), manager, scope }
      })

    let current = yield* build(initial)

    const reload = (config: SentinelConfig): Effect.Effect<boolean> =>
      Effect.gen(function* () {
        if (JSON.stringify(config.agents) === current.key) return false
        const old = current
        current = yield* build(config)
        // requests in flight keep the old manager; close it once they had their grace period
        yield* Effect.forkIn(
          Effect.sleep(Duration.millis(options.graceMs())).pipe(
            Effect.zipRight(Scope.close(old.scope, Exit.void)),
            Effect.ensuring(Effect.sync(() => scopes.delete(old.scope)))
          ),
          parent
        )
        return true
      })

    const filterMaps = new WeakMap<SentinelConfig, ReadonlyMap<string, FilterConfig>>()
    const filtersOf = (config: SentinelConfig) => {
      let m = filterMaps.get(config)
      if (m === undefined) {
        m = new Map(config.filters.map((f) => [f.id, f]))
        filterMaps.set(config, m)
      }
      return m
    }

    const compile = (route: RouteConfig, config: SentinelConfig): RouteContribution | undefined => {
      if (route.filters.length === 0) return undefined
      const refs = agentRefs(route, filtersOf(config))
      if (refs.length === 0) return undefined
      const manager = current.manager
      const agentsById = new Map(config.agents.map((a) => [a.id, a]))
      const routeFailureMode = route.policies.failureMode
      const wantsHeaders = manager.wants(refs, "request_headers")
      const wantsBody = manager.wants(refs, "request_body")
      const wantsResponseHeaders = manager.wants(refs, "response_headers")
      const wantsResponseBody = manager.wants(refs, "response_body")
      const wantsComplete = manager.wants(refs, "request_complete")
      const capOf = (phase: "request_body" | "response_body") => {
        let cap = 0
        for (const r of refs) {
          const a = agentsById.get(r.agent)
          if (a === undefined || !filterSubscribes(r, a.events, phase)) continue
          cap = Math.max(cap, filterBodyCap(r, a, phase))
        }
        return cap
      }
      // the route's own body limit (`policies { max-body-size }`) when it has one
      const maxBodySize = route.policies.maxBodySize ?? config.limits.maxBodySize
      const requestCap = Math.min(capOf("request_body"), maxBodySize)
      // stream-mode agents (request-body-mode "stream"): the others' cap bounds what is held
      const streamsBody = manager.streamsBody(refs, "request_body")
      const streamRefs = new Set(refs.filter((r) => manager.streamsBodyOf(r, "request_body")))
      /** The largest cap of the buffer-mode agents of a body phase (0 when all stream). */
      const bufferedCapOf = (phase: "request_body" | "response_body") =>
        refs.reduce((cap, r) => {
          const a = agentsById.get(r.agent)
          return a === undefined || manager.streamsBodyOf(r, phase) || !filterSubscribes(r, a.events, phase) ? cap : Math.max(cap, filterBodyCap(r, a, phase))
        }, 0)
      const bufferedRequestCap = Math.min(bufferedCapOf("request_body"), maxBodySize)
      const responseCap = capOf("response_body")
      // response-body-mode "stream" agents: each response chunk is theirs before the client's
      const streamsResponse = manager.streamsBody(refs, "response_body")
      const responseStreamRefs = refs.filter((r) => manager.streamsBodyOf(r, "response_body"))
      const bufferedResponseCap = bufferedCapOf("response_body")
      const wantsBufferedResponseBody = refs.some((r) => {
        const a = agentsById.get(r.agent)
        return a !== undefined && filterSubscribes(r, a.events, "response_body") && !manager.streamsBodyOf(r, "response_body")
      })

      const states = new WeakMap<RequestContext, RequestState>()
      const stateOf = (ctx: RequestContext): RequestState => {
        let s = states.get(ctx)
        if (s === undefined) {
          s = { responseOps: [], requestBodySize: 0 }
          states.set(ctx, s)
        }
        return s
      }

      const phaseContext = (ctx: RequestContext): PhaseContext => ({
        traceId: ctx.traceId,
        routeId: route.id,
        clientIp: ctx.clientIp,
        method: ctx.method,
        path: ctx.path,
        ...(routeFailureMode !== undefined ? { routeFailureMode } : {})
      })

      const respond = (d: AgentRespond): Answer => {
        metrics.blocked.inc(d.reason)
        return answerOf(d)
      }

      /** Applies a request-phase decision; an Answer when the request stops here. */
      const applyRequest = (ctx: RequestContext, d: AgentDecision): StageStep => {
        if (d._tag === "Respond") return respond(d)
        if (d.requestHeaders.length > 0) ctx.upstreamHeaders = applyHeaderOps(ctx.upstreamHeaders, d.requestHeaders)
        if (d.responseHeaders.length > 0) stateOf(ctx).responseOps.push(...d.responseHeaders)
        return undefined
      }

      /** The request-body phase (AgentRequestBody.ts), built once for the route. */
      const startBodyPhase = requestBodyPhase({
        refs,
        manager,
        maxBodySize,
        requestCap,
        streamsBody,
        streamRefs,
        bufferedRequestCap,
        applyRequest,
        stateOf
      })

      /** The request phases on callbacks: headers, then (if subscribed) the body. */
      const startRequest = (ctx: RequestContext, event: RequestHeadersEvent | undefined, done: (step: StageStep) => void): (() => void) => {
        const pc = phaseContext(ctx)
        if (event === undefined) return startBodyPhase(ctx, pc, done)
        let onBody: (() => void) | undefined
        const onHeaders = manager.startRequestHeaders(refs, event, pc, (d) => {
          const step = applyRequest(ctx, d)
          if (step !== undefined || !wantsBody) return done(step)
          onBody = startBodyPhase(ctx, pc, done)
        })
        return () => (onBody ?? onHeaders)()
      }

      const request: RequestStage = (ctx) => {
        // sampled requests: a `sentinel.agents` span; the agents get its traceparent
        const span = ctx.trace?.startAgents(route.id, refs)
        const event = wantsHeaders
          ? requestHeadersEvent({
              traceId: ctx.traceId,
              method: ctx.method,
              uri: ctx.req.url ?? "/",
              // The request as it stands at the agents' place in the filter chain: filters before
              // them (headers, url-rewrite) have edited the list that goes upstream. A route
              // without an upstream has no such list: the client's headers.
              rawHeaders: route.upstream !== undefined ? ctx.upstreamHeaders : ctx.req.rawHeaders,
              clientIp: ctx.clientIp,
              clientPort: ctx.req.socket.remotePort ?? 0,
              serverName: ctx.tls?.servername ?? (ctx.host === "" ? null : ctx.host),
              protocol: ctx.http2 ? "HTTP/2" : `HTTP/${ctx.req.httpVersion}`,
              tlsVersion: ctx.tls?.version ?? null,
              tlsCipher: ctx.tls?.cipher ?? null,
              routeId: route.id,
              upstreamId: route.upstream ?? null,
              traceparent: span !== undefined ? span.traceparent : ctx.header("traceparent") ?? null
            })
          : undefined
        // On callbacks, no fiber (Stage.ts); a sampled request keeps the Effect its span tracks.
        if (span === undefined) return pendingStep((done) => startRequest(ctx, event, done))
        return span.trackStep(callbackAsEffect<StageStep>((done) => startRequest(ctx, event, done)), ctx)
      }

      const response: ResponseStage = (ctx, _status, headers) => {
        const s = states.get(ctx)
        if (s !== undefined && s.responseOps.length > 0) applyInPlace(headers, s.responseOps)
      }

      const responseHook = responseHookOf({
        refs,
        manager,
        wantsResponseHeaders,
        wantsResponseBody,
        streamsResponse,
        responseStreamRefs,
        responseCap,
        bufferedResponseCap,
        wantsBufferedResponseBody,
        phaseContext,
        respond
      })

      const complete: CompleteStage | undefined = wantsComplete
        ? (ctx) => {
            const cl = Number(ctx.req.headers["content-length"])
            manager.notifyComplete(
              refs,
              requestCompleteEvent({
                traceId: ctx.traceId,
                status: ctx.status,
                durationMs: Math.round(performance.now() - ctx.start),
                requestBodySize: states.get(ctx)?.requestBodySize || (Number.isFinite(cl) ? cl : 0),
                responseBodySize: ctx.bytesSent,
                upstreamAttempts: ctx.attempts,
                ...(ctx.error !== undefined ? { error: ctx.error } : {})
              }),
              phaseContext(ctx)
            )
          }
        : undefined

      return {
        ...(wantsHeaders || wantsBody ? { request: [request] } : {}),
        response: [response],
        ...(complete ? { complete: [complete] } : {}),
        ...(responseHook ? { responseHook } : {})
      }
    }

    const websocketFrames = (route: RouteConfig, config: SentinelConfig): WebSocketFrameAgents | undefined => {
      const refs = agentRefs(route, filtersOf(config))
      const manager = current.manager
      if (refs.length === 0 || !manager.wants(refs, "websocket_frame")) return undefined
      return { start: (event, pc, done) => manager.startWebSocketFrame(refs, event, pc, done) }
    }

    return {
      extension: { name: "agents", compile },
      reload,
      manager: () => current.manager,
      status: () => current.manager.status(),
      websocketFrames
    }
  })
