/**
 * The request's way through the proxy (DESIGN.md §3), as one function per
 * request. The synchronous stages (limits, trace id, route match, builtin
 * answers) are plain code; only the upstream exchange runs as a fiber, forked
 * once on the runtime built at start-up. The response's early `close` (the
 * client left, or the listener cut the connection: ListenerCut.ts) interrupts
 * it, which aborts the upstream request. Logging always runs, exactly once.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Socket } from "node:net"
import { performance } from "node:perf_hooks"
import { Cause, Effect, Exit, Runtime } from "effect"
import { runBuiltin, type BuiltinView } from "../handlers/Builtin.js"
import { normalizeHost } from "../routing/Router.js"
import type { Dataplane, RoutePlan } from "./Dataplane.js"
import { callbackAsEffect, isPendingStep, type Answer, type PendingStep, type RequestStage, type StageStep } from "./Stage.js"
import { proxyToUpstream, runUpstream, withDeadline } from "./Upstream.js"
import type { UpstreamRuntime } from "../upstream/Upstreams.js"
import { errorAnswer, errorBody } from "./ErrorResponse.js"
import { RequestRejected, RequestTimeout, type ProxyError } from "./Errors.js"
import { connectionTls, splitTarget, type RequestContext } from "./RequestContext.js"
import { edgePolicyFor, markClosing, type EdgePolicy } from "../server/EdgePolicy.js"
import { onResponseClose } from "../server/ResponseClose.js"
import { abortResponse, isHttp2Message } from "../http/Response.js"
import { closedEarly, cutOf, settleEarlyClose } from "../server/ListenerCut.js"
import {
  appendUpstreamHeaders,
  resolveForwarded,
  validateRequest,
  type ForwardedInfo,
  type ValidatedRequest,
  type ValidationResult
} from "../server/RequestValidation.js"
import { incomingTraceId } from "./TraceId.js"
import { isUpgradeRequest } from "../websocket/Upgrade.js"
import { startRequestTrace } from "../observability/RequestTrace.js"
import type { RequestTracing } from "../observability/Tracing.js"

/** Hooks the pipeline reports to; metrics and logs plug in here. */
export interface PipelineHooks {
  readonly onComplete: (ctx: RequestContext) => void
  readonly onReject: (ctx: RequestContext, reason: string, status: number) => void
}

export interface PipelineEnv {
  readonly listenerId: string
  readonly scheme: "http" | "https"
  readonly runtime: Runtime.Runtime<never>
  readonly dataplane: () => Dataplane
  readonly builtinView: () => BuiltinView
  readonly hooks: PipelineHooks
  /** Set while the listener drains: answers carry `Connection: close`. */
  readonly draining: () => boolean
  /**
   * Tracing, when configured: sampled requests get `ctx.trace` (RequestTrace.ts), whose server
   * span `hooks.onComplete` must end (`ctx.trace?.end(ctx)`; App.ts wraps its hooks so).
   * Absent = nothing is done.
   */
  readonly tracing?: RequestTracing | undefined
}

/**
 * The client's own trace-id headers are replaced by ours upstream; Via is merged; the mTLS
 * headers are only ever the proxy's (a client cannot claim a certificate it did not present).
 */
const SET_BY_PROXY = new Set([
  "x-request-id", "x-correlation-id", "via",
  "x-client-cert-subject", "x-client-cert-issuer", "x-client-cert-serial", "x-client-cert-fingerprint"
])

const headerLookup = (req: IncomingMessage) => (lowerName: string): string | undefined => {
  const v = req.headers[lowerName]
  return Array.isArray(v) ? v[0] : v
}

/**
 * `headerLookup` for a request whose head lost headers at the edge (underscore names under
 * `underscores-in-headers "drop"`): routing, filters, agents and balancing must not see what
 * never reaches the upstream.
 */
const headerLookupWithout = (req: IncomingMessage, dropped: ReadonlyArray<string>) => {
  const lookup = headerLookup(req)
  return (lowerName: string): string | undefined => (dropped.includes(lowerName) ? undefined : lookup(lowerName))
}

/**
 * The request head as the edge validated it (RequestValidation.ts): routing, logs and the
 * upstream all use the validated, normalised host and path; `X-Forwarded-*` is believed only
 * from the listener's `trusted-proxies`. A rejected head keeps the raw values for the log.
 */
interface Head {
  readonly result: ValidationResult
  readonly forwarded: ForwardedInfo | undefined
}


const makeContext = (env: PipelineEnv, dp: Dataplane, edge: EdgePolicy, req: IncomingMessage, res: ServerResponse): RequestContext => {
  const http2 = isHttp2Message(req)
  const result = validateRequest(req, edge.validation, env.scheme === "https", http2)
  const header =
    result._tag === "Valid" && result.request.droppedHeaders.length > 0
      ? headerLookupWithout(req, result.request.droppedHeaders)
      : headerLookup(req)
  let host: string
  let path: string
  let query: string
  let clientIp: string
  let forwarded: ForwardedInfo | undefined
  if (result._tag === "Valid") {
    const v = result.request
    forwarded = resolveForwarded(v, { remoteAddress: req.socket.remoteAddress, encrypted: env.scheme === "https" }, edge.trusted)
    host = v.hostname ?? ""
    path = v.path
    query = v.query ?? ""
    clientIp = forwarded.clientIp
  } else {
    const target = splitTarget(req.url ?? "/")
    host = normalizeHost(target.authority ?? req.headers.host)
    path = target.path
    query = target.query
    clientIp = req.socket.remoteAddress ?? ""
  }
  const ctx: RequestContext = {
    req,
    res,
    start: performance.now(),
    traceId: incomingTraceId(header) ?? dp.newTraceId(),
    clientIp,
    method: req.method ?? "GET",
    host,
    path,
    query,
    listenerId: env.listenerId,
    scheme: env.scheme,
    http2,
    tls: env.scheme === "https" ? connectionTls(req) : undefined,
    routeId: "",
    upstreamId: "",
    upstreamAddr: "",
    attempts: 0,
    status: 0,
    bytesSent: 0,
    error: undefined,
    bodyTooLarge: false,
    clientGone: false,
    upstreamHeaders: [],
    upstreamPath: result._tag === "Valid" ? result.request.target : req.url ?? "/",
    upstreamBody: undefined,
    edge: undefined,
    trace: undefined,
    responseHeaders: undefined,
    header
  }
  ctx.edge = { result, forwarded } satisfies Head
  return ctx
}

/**
 * Edge validation and the limits that can be judged from the head alone: 400/405/414/417/431/
 * 501/505 from the validator, 413 for a declared body over `limits { max-body-size }` (answered
 * before any of the body is read). Headers dropped for an underscore are counted.
 */
const checkHead = (ctx: RequestContext, dp: Dataplane, env: PipelineEnv): RequestRejected | undefined => {
  const head = ctx.edge as Head
  const result = head.result
  if (result._tag === "Rejected") {
    return new RequestRejected({ status: result.status, reason: result.reason.replace(/-/g, "_") })
  }
  const v = result.request
  if (v.droppedHeaders.length > 0) env.hooks.onReject(ctx, "underscore_header_dropped", 0)
  return undefined
}

/** A declared body over the route's limit (`policies { max-body-size }`, else `limits`): 413 before any of it is read. */
const bodyTooLarge = (ctx: RequestContext, max: number): boolean => {
  const v = ((ctx.edge as Head).result as { readonly request: ValidatedRequest }).request
  return v.contentLength !== null && v.contentLength > max
}

/** Send a proxy-made answer (errors and rejections); never throws. */
const sendAnswer = (
  ctx: RequestContext,
  env: PipelineEnv,
  status: number,
  headers: ReadonlyArray<string>,
  body: string | Buffer,
  contentType: string,
  plan?: RoutePlan
): void => {
  const res = ctx.res
  ctx.status = status
  if (res.headersSent || res.destroyed) {
    abortResponse(res)
    return
  }
  const flat: Array<string> = ["content-type", contentType, "x-request-id", ctx.traceId, "x-correlation-id", ctx.traceId]
  for (let i = 0; i < headers.length; i++) flat.push(headers[i])
  if (ctx.responseHeaders !== undefined) flat.push(...ctx.responseHeaders)
  if (plan !== undefined) for (const stage of plan.response) stage(ctx, status, flat)
  if (env.draining() && !ctx.http2) flat.push("connection", "close")
  const buf = typeof body === "string" ? Buffer.from(body) : body
  flat.push("content-length", String(buf.length))
  try {
    res.writeHead(status, flat)
    res.end(ctx.method === "HEAD" ? undefined : buf)
    ctx.bytesSent += ctx.method === "HEAD" ? 0 : buf.length
  } catch {
    abortResponse(res)
  }
}

const sendError = (
  ctx: RequestContext,
  env: PipelineEnv,
  error: ProxyError,
  plan?: RoutePlan,
  /** The request's connection, when `ctx.req.socket` may be gone already (`settleEarlyClose`). */
  socket: Socket | null = ctx.req.socket
): void => {
  if (error._tag === "ClientClosed") {
    // 499, or what the listener answered when it cut the request (its body stopped, ...)
    settleEarlyClose(ctx, socket)
    return
  }
  const answer = errorAnswer(error)
  ctx.error ??= answer.reason
  // our own limits refusing or cutting the request: counted with the other refusals
  if (error._tag === "DownstreamError" || error._tag === "UpstreamSaturated" || error._tag === "RouteCircuitOpen") {
    env.hooks.onReject(ctx, answer.reason, answer.status)
  }
  const headers = answer.headers.flat()
  if (answer.body !== undefined) {
    sendAnswer(ctx, env, answer.status, headers, answer.body, "text/plain; charset=utf-8", plan)
  } else {
    sendAnswer(ctx, env, answer.status, headers, errorBody(answer.status, answer.reason, ctx.traceId), "application/json", plan)
  }
}

/** Answer decided by a stage (filters, agents). */
const sendStageAnswer = (ctx: RequestContext, env: PipelineEnv, answer: Answer, plan: RoutePlan): void => {
  ctx.error ??= answer.reason
  env.hooks.onReject(ctx, answer.reason, answer.status)
  sendAnswer(ctx, env, answer.status, answer.headers, answer.body, answer.contentType ?? "application/json", plan)
}

/**
 * Request headers for the upstream, re-serialised from the validated head (never the raw
 * client bytes): Host, end-to-end headers, X-Forwarded-* as `resolveForwarded` decided,
 * a decimal Content-Length when the request had one (a chunked body is re-chunked by the
 * client: one canonical `Transfer-Encoding: chunked`), Via and our trace id; then the route's
 * header policy.
 */
/** Our Via entry (RFC 9110 §7.6.3: received-protocol and pseudonym). */
const viaOf = (httpVersion: string): string =>
  httpVersion === "1.1" ? "1.1 sentinel" : httpVersion === "2.0" ? "2 sentinel" : `${httpVersion} sentinel`

const buildUpstreamHeaders = (ctx: RequestContext, plan: RoutePlan): Array<string> => {
  const head = ctx.edge as Head
  const v = (head.result as { readonly request: ValidatedRequest }).request
  const out = appendUpstreamHeaders([], v, head.forwarded!)
  // the client's Via is merged into ours, its trace-id headers replaced (names are lower-case here)
  let via: string | undefined
  let w = 0
  for (let r = 0; r < out.length; r += 2) {
    const n = out[r]
    if (SET_BY_PROXY.has(n)) {
      if (n === "via") via = via === undefined ? out[r + 1] : `${via}, ${out[r + 1]}`
      continue
    }
    out[w++] = n
    out[w++] = out[r + 1]
  }
  out.length = w
  out.push(
    "via", via === undefined ? viaOf(v.httpVersion) : `${via}, ${viaOf(v.httpVersion)}`,
    "x-request-id", ctx.traceId,
    "x-correlation-id", ctx.traceId
  )
  const cert = ctx.tls?.clientCert
  if (cert !== undefined) {
    out.push(
      "x-client-cert-subject", cert.subject,
      "x-client-cert-issuer", cert.issuer,
      "x-client-cert-serial", cert.serial,
      "x-client-cert-fingerprint", cert.fingerprint256
    )
  }
  plan.requestPolicy?.(out)
  return out
}


/** A WebSocket handshake on a dataplane without the websocket extension: 403, as on a route without `websocket`. */
const upgradeRefused = (ctx: RequestContext): Answer => ({
  status: 403,
  headers: [],
  body: errorBody(403, "websocket_not_enabled", ctx.traceId),
  contentType: "application/json",
  reason: "websocket_not_enabled"
})

/** Request stages stopped at a `PendingStep`; the stages from `next` run once it is done. */
class Waiting {
  constructor(
    readonly pending: PendingStep,
    readonly next: number
  ) {}
}

/** The stages from `i` as one Effect (a fiber already runs the request). */
const stagesAsEffect = (ctx: RequestContext, stages: ReadonlyArray<RequestStage>, i: number): Effect.Effect<StageStep> => {
  const rest = runStages(ctx, stages, i)
  if (rest instanceof Waiting) {
    return Effect.flatMap(callbackAsEffect(rest.pending.start), (s) => (s !== undefined ? Effect.succeed(s) : stagesAsEffect(ctx, stages, rest.next)))
  }
  return Effect.isEffect(rest) ? rest : Effect.succeed(rest)
}

/**
 * Run request stages from `i`; synchronous until a stage has to wait: a `PendingStep` stops
 * here (`Waiting`, driven on callbacks), an Effect takes the rest of the stages with it.
 */
const runStages = (
  ctx: RequestContext,
  stages: ReadonlyArray<RequestStage>,
  i: number
): StageStep | Effect.Effect<StageStep> | Waiting => {
  for (; i < stages.length; i++) {
    const step = stages[i](ctx)
    if (step === undefined) continue
    if (isPendingStep(step)) return new Waiting(step, i + 1)
    if (Effect.isEffect(step)) {
      const next = i + 1
      return Effect.flatMap(step, (s): Effect.Effect<StageStep> => (s !== undefined ? Effect.succeed(s) : stagesAsEffect(ctx, stages, next)))
    }
    return step
  }
  return undefined
}

/** Build the `request` listener for one listener. */
export const makeRequestHandler = (env: PipelineEnv) => {
  const runFork = Runtime.runFork(env.runtime)

  const complete = (ctx: RequestContext, plan?: RoutePlan) => {
    if (plan !== undefined) {
      for (const stage of plan.complete) {
        try {
          stage(ctx)
        } catch {
          // complete stages are best effort; they must never break logging
        }
      }
    }
    env.hooks.onComplete(ctx)
  }

  /**
   * The response closed before its answer was complete: what was under way is cancelled, the
   * request is logged once: 499 if the client left, else what the listener answered or sent
   * and why it cut the connection (`settleEarlyClose`).
   */
  const clientLeft = (ctx: RequestContext, plan: RoutePlan, cancel: (() => void) | undefined) => {
    settleEarlyClose(ctx)
    cancel?.()
    complete(ctx, plan)
  }

  const answerBuiltin = (ctx: RequestContext, plan: RoutePlan) => {
    runBuiltin(plan.builtin!, env.builtinView(), ctx.traceId).then(
      (answer) => {
        sendAnswer(ctx, env, answer.status, ["cache-control", "no-store"], answer.body, answer.contentType, plan)
        complete(ctx, plan)
      },
      () => {
        sendError(ctx, env, new RequestRejected({ status: 500, reason: "builtin_failed" }), plan)
        complete(ctx, plan)
      }
    )
  }

  const answerLocal = (ctx: RequestContext, plan: RoutePlan) => {
    plan.local!(ctx).then(
      () => complete(ctx, plan),
      () => {
        sendError(ctx, env, new RequestRejected({ status: 500, reason: "handler_failed" }), plan)
        complete(ctx, plan)
      }
    )
  }

  /** After the request stages: the route's handler. */
  const dispatch = (ctx: RequestContext, dp: Dataplane, plan: RoutePlan): Effect.Effect<void, ProxyError> | undefined => {
    if (plan.local !== undefined) {
      answerLocal(ctx, plan)
      return undefined
    }
    if (plan.builtin !== undefined) {
      answerBuiltin(ctx, plan)
      return undefined
    }
    const upstream = plan.upstream
    if (upstream === undefined) {
      sendError(ctx, env, new RequestRejected({ status: 502, reason: "no_upstream" }), plan)
      complete(ctx, plan)
      return undefined
    }
    ctx.upstreamId = upstream.id
    return withDeadline(proxyToUpstream(ctx, env.draining, dp, plan, upstream), plan)
  }

  /**
   * The upstream stage without a fiber: when every request stage was
   * synchronous (no agents waiting), the exchange runs on plain callbacks
   * (`runUpstream`). A fiber per request costs more CPU than the whole rest of
   * the pipeline on this path (see bench/README.md), so the fiber is kept for
   * requests that really wait on Effects. Same semantics: the route deadline,
   * the client's `close` (499, upstream aborted), logging exactly once.
   */
  const proxyDirect = (ctx: RequestContext, dp: Dataplane, plan: RoutePlan, upstream: UpstreamRuntime) => {
    ctx.upstreamId = upstream.id
    let over = false
    let timer: NodeJS.Timeout | undefined
    const end = (error: ProxyError | undefined) => {
      if (over) return
      over = true
      if (timer !== undefined) clearTimeout(timer)
      if (error !== undefined) sendError(ctx, env, error, plan)
      complete(ctx, plan)
    }
    let cancel: () => void
    try {
      cancel = runUpstream(ctx, env.draining, dp, plan, upstream, end)
    } catch {
      ctx.error ??= "internal"
      return end(new RequestRejected({ status: 500, reason: "internal" }))
    }
    if (over) return
    if (plan.timeoutMs > 0) {
      timer = setTimeout(() => {
        cancel()
        end(new RequestTimeout({ phase: "route" }))
      }, plan.timeoutMs)
    }
    onResponseClose(ctx.res, () => {
      if (over || !closedEarly(ctx)) return
      over = true
      if (timer !== undefined) clearTimeout(timer)
      clientLeft(ctx, plan, cancel)
    })
  }

  /** Fork the waiting part of a request; the client's `close` interrupts it. */
  const fork = (
    ctx: RequestContext,
    plan: RoutePlan,
    effect: Effect.Effect<void, ProxyError>,
    /** A builtin/local handler took the request over and completes it itself. */
    handedOff: () => boolean = () => false
  ) => {
    // settled after the exchange was aborted, when the request may have lost its socket
    const socket = ctx.req.socket
    const program = effect.pipe(
      Effect.catchAll((error) => Effect.sync(() => sendError(ctx, env, error, plan, socket))),
      Effect.onExit((exit) =>
        Effect.sync(() => {
          if (handedOff()) return
          if (Exit.isFailure(exit)) {
            if (Cause.isInterruptedOnly(exit.cause) || ctx.clientGone) {
              settleEarlyClose(ctx, socket)
            } else {
              ctx.error ??= "internal"
              sendError(ctx, env, new RequestRejected({ status: 500, reason: "internal" }), plan)
            }
          }
          complete(ctx, plan)
        })
      )
    )
    const fiber = runFork(program)
    onResponseClose(ctx.res, () => {
      if (closedEarly(ctx, socket)) {
        // the listener cutting the connection is not the client leaving (settled at the exit)
        ctx.clientGone = cutOf(socket) === undefined
        fiber.unsafeInterruptAsFork(fiber.id())
      }
    })
  }

  /** After the request stages ran (or stopped): answer, wait, proxy or dispatch. */
  const handleStep = (ctx: RequestContext, dp: Dataplane, plan: RoutePlan, step: StageStep | Effect.Effect<StageStep> | Waiting): void => {
    if (step === undefined) {
      if (plan.upstream !== undefined && plan.local === undefined && plan.builtin === undefined) {
        return proxyDirect(ctx, dp, plan, plan.upstream)
      }
      const next = dispatch(ctx, dp, plan)
      if (next !== undefined) fork(ctx, plan, next)
      return
    }
    if (step instanceof Waiting) return waitFor(ctx, dp, plan, step)
    if (!Effect.isEffect(step)) {
      sendStageAnswer(ctx, env, step, plan)
      return complete(ctx, plan)
    }
    let handedOff = false
    fork(
      ctx,
      plan,
      Effect.flatMap(step, (s): Effect.Effect<void, ProxyError> => {
        if (s !== undefined) {
          sendStageAnswer(ctx, env, s, plan)
          return Effect.void
        }
        const next = dispatch(ctx, dp, plan)
        if (next !== undefined) return next
        handedOff = true
        return Effect.void
      }),
      () => handedOff
    )
  }

  /**
   * A stage waits on callbacks (an agent call): no fiber. The client going away cancels the
   * wait (499, logged once); otherwise the remaining stages run when it is done.
   */
  const waitFor = (ctx: RequestContext, dp: Dataplane, plan: RoutePlan, waiting: Waiting): void => {
    let over = false
    let cancel: (() => void) | undefined
    onResponseClose(ctx.res, () => {
      if (over || !closedEarly(ctx)) return
      over = true
      clientLeft(ctx, plan, cancel)
    })
    const failed = () => {
      ctx.error ??= "internal"
      sendError(ctx, env, new RequestRejected({ status: 500, reason: "internal" }), plan)
      complete(ctx, plan)
    }
    const resume = (s: StageStep): void => {
      if (over) return
      over = true
      try {
        handleStep(ctx, dp, plan, s !== undefined ? s : runStages(ctx, plan.request, waiting.next))
      } catch {
        failed()
      }
    }
    try {
      cancel = waiting.pending.start(resume)
    } catch {
      // a stage that cannot even start its wait fails the request, never lets it through
      if (over) return
      over = true
      failed()
    }
  }

  /**
   * A refusal of a request whose body will not be read: counted, answered, logged. Over HTTP/1.1
   * the stream may be desynchronised: the answer carries `Connection: close` (node writes it when
   * keep-alive is off) and requests pipelined behind this one are never served. An HTTP/2 stream
   * ends on its own.
   */
  const refuseUnread = (ctx: RequestContext, rejected: RequestRejected, plan?: RoutePlan): void => {
    env.hooks.onReject(ctx, rejected.reason, rejected.status)
    if (!ctx.http2) {
      ctx.res.shouldKeepAlive = false
      markClosing(ctx.req.socket)
    }
    sendError(ctx, env, rejected, plan)
    complete(ctx, plan)
  }

  // the edge policy of the configuration in force, looked up again only when it changes
  let edgeOf: Dataplane | undefined
  let edge: EdgePolicy | undefined
  return (req: IncomingMessage, res: ServerResponse): void => {
    const dp = env.dataplane()
    if (dp !== edgeOf) {
      edge = edgePolicyFor(dp.config, env.listenerId)
      edgeOf = dp
    }
    const ctx = makeContext(env, dp, edge!, req, res)
    if (env.tracing !== undefined) startRequestTrace(ctx, env.tracing)

    const rejected = checkHead(ctx, dp, env)
    if (rejected !== undefined) return refuseUnread(ctx, rejected)

    const route = dp.router.match(ctx)
    if (route === undefined) {
      sendError(ctx, env, new RequestRejected({ status: 404, reason: "no_route" }))
      return complete(ctx)
    }
    ctx.routeId = route.id
    const plan = dp.plans.get(route.id)!
    if (bodyTooLarge(ctx, plan.maxBodySize)) return refuseUnread(ctx, new RequestRejected({ status: 413, reason: "body_too_large" }), plan)
    if (plan.upstream !== undefined) ctx.upstreamHeaders = buildUpstreamHeaders(ctx, plan)
    // WebSocket handshakes (src/websocket/): the route's policy refuses them or prepares the upgrade
    if (ctx.header("upgrade") !== undefined) {
      const refusal = plan.upgrade !== undefined ? plan.upgrade.check(ctx) : isUpgradeRequest(req) ? upgradeRefused(ctx) : undefined
      if (refusal !== undefined) {
        sendStageAnswer(ctx, env, refusal, plan)
        return complete(ctx, plan)
      }
    }

    handleStep(ctx, dp, plan, runStages(ctx, plan.request, 0))
  }
}
