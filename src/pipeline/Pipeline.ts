/**
 * The request's way through the proxy (DESIGN.md §3), one function per request, in named
 * phases:
 *   1. validate  (`validate/`: the head against the edge rules, the request's context, the
 *                 limits judged from the head alone; a refusal closes an HTTP/1.1 connection)
 *   2. trace     (the trace id and, when tracing is configured, the request's spans)
 *   3. route     (`dp.router.match`; 404 `NoRoute`)
 *   4. stages    (`Stages.ts`: the route's filters, agents and extensions, in order)
 *   5. upstream  (`Upstream.ts`: select, send, retry, within the route's deadline), or the
 *                 route's builtin / local handler
 *   6. response  (`ResponseSinks.ts` for the upstream's answer, `Answer.ts` for the proxy's
 *                 own: errors through the one error table, `ErrorResponse.ts`)
 *   7. log       (`complete`: the route's complete stages, then `hooks.onComplete`, exactly once)
 *
 * Callbacks and Effects. The request path runs on plain callbacks: every phase above is a
 * function call, and a wait is a callback with a cancel function (`PendingStep`,
 * `runUpstream`, the exchange, the agents' `start*` calls). A fiber per request costs more CPU
 * than the whole rest of the pipeline (bench/README.md), so none is made unless a stage hands
 * back an Effect (an extension's own stage, a rate-limit delay). Then the rest of that request
 * runs as one fiber forked on the runtime built at start-up, and each callback wait it meets is
 * entered through a thin wrapper (`callbackAsEffect`, `proxyToUpstream`): the behaviour is
 * written once, on callbacks, and Effect code only wraps it. The boundary is therefore the
 * stage's return value, never the upstream or the agents. Either way the response's early
 * `close` (the client left, or the listener cut the connection: Connection.ts) cancels what is
 * under way (or interrupts the fiber), which aborts the upstream request.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Runtime from "effect/Runtime"
import { runBuiltin, type BuiltinView } from "../handlers/Builtin.js"
import { onResponseClose } from "../http/ResponseClose.js"
import { startRequestTrace } from "../observability/RequestTrace.js"
import type { RequestTracing } from "../observability/Tracing.js"
import type { UpstreamRuntime } from "../upstream/Upstreams.js"
import { sendAnswer, sendError, sendStageAnswer } from "./Answer.js"
import { closedEarly, cutOf, markClosing, settleEarlyClose } from "./Connection.js"
import type { Dataplane, RoutePlan } from "./Dataplane.js"
import { errorAnswer, errorBody } from "./ErrorResponse.js"
import { isUpgradeRequest } from "../websocket/Upgrade.js"
import { isServed, type Answer } from "./Stage.js"
import { BodyTooLarge, InternalError, NoRoute, NoUpstream, RequestRejected, type ProxyError } from "./Errors.js"
import type { RequestContext } from "./RequestContext.js"
import { runStages, Waiting } from "./Stages.js"
import type { StageStep } from "./Stage.js"
import { proxyToUpstream, runUpstream } from "./Upstream.js"
import { rescueFromTap, serveStep } from "./Served.js"
import { buildUpstreamHeaders } from "./UpstreamHeaders.js"
import { checkHead, declaredBodyOver, makeContext } from "./validate/Context.js"
import { edgePolicyFor, type EdgePolicy } from "./validate/EdgePolicy.js"

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

/** Build the `request` listener for one listener. */
/** A WebSocket handshake on a dataplane without the websocket extension: 403, as on a route without `websocket`. */
const upgradeRefused = (ctx: RequestContext): Answer => ({
  status: 403,
  headers: [],
  body: errorBody(403, "websocket_not_enabled", ctx.traceId),
  contentType: "application/json",
  reason: "websocket_not_enabled"
})

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
    const admin = env.dataplane().config.listeners.find((l) => l.id === ctx.listenerId)?.admin === true
    const request = { method: ctx.method, host: ctx.host, path: ctx.path, header: ctx.header, traceId: ctx.traceId, clientIp: ctx.clientIp, routeId: ctx.routeId, admin }
    runBuiltin(plan.builtin!, env.builtinView(), ctx.traceId, request).then(
      (answer) => {
        sendAnswer(ctx, env, answer.status, ["cache-control", "no-store"], answer.body, answer.contentType, plan)
        complete(ctx, plan)
      },
      () => {
        sendError(ctx, env, new InternalError({ reason: "builtin_failed" }), plan)
        complete(ctx, plan)
      }
    )
  }

  const answerLocal = (ctx: RequestContext, plan: RoutePlan) => {
    plan.local!(ctx).then(
      () => complete(ctx, plan),
      () => {
        sendError(ctx, env, new InternalError({ reason: "handler_failed" }), plan)
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
      sendError(ctx, env, new NoUpstream({ route: plan.id }), plan)
      complete(ctx, plan)
      return undefined
    }
    ctx.upstreamId = upstream.id
    return proxyToUpstream(ctx, env.draining, dp, plan, upstream)
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
    const end = (error: ProxyError | undefined) => {
      if (over) return
      over = true
      if (error !== undefined && !rescueFromTap(ctx, env, dp, plan, error)) sendError(ctx, env, error, plan)
      complete(ctx, plan)
    }
    let cancel: () => void
    try {
      cancel = runUpstream(ctx, env.draining, dp, plan, upstream, end)
    } catch {
      ctx.error ??= "internal"
      return end(new InternalError({ reason: "internal" }))
    }
    if (over) return
    onResponseClose(ctx.res, () => {
      if (over || !closedEarly(ctx)) return
      over = true
      clientLeft(ctx, plan, cancel)
    })
  }

  /** Fork the waiting part of a request; the client's `close` interrupts it. */
  const fork = (
    ctx: RequestContext,
    dp: Dataplane,
    plan: RoutePlan,
    effect: Effect.Effect<void, ProxyError>,
    /** A builtin/local handler took the request over and completes it itself. */
    handedOff: () => boolean = () => false
  ) => {
    // settled after the exchange was aborted, when the request may have lost its socket
    const socket = ctx.req.socket
    const program = effect.pipe(
      Effect.catchAll((error) => Effect.sync(() => {
        if (!rescueFromTap(ctx, env, dp, plan, error)) sendError(ctx, env, error, plan, socket)
      })),
      Effect.onExit((exit) =>
        Effect.sync(() => {
          if (handedOff()) return
          if (Exit.isFailure(exit)) {
            if (Cause.isInterruptedOnly(exit.cause) || ctx.clientGone) {
              settleEarlyClose(ctx, socket)
            } else {
              ctx.error ??= "internal"
              sendError(ctx, env, new InternalError({ reason: "internal" }), plan)
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
      if (next !== undefined) fork(ctx, dp, plan, next)
      return
    }
    if (step instanceof Waiting) return waitFor(ctx, dp, plan, step)
    if (!Effect.isEffect(step)) {
      if (isServed(step)) serveStep(ctx, env, dp, plan, step)
      else sendStageAnswer(ctx, env, step, plan)
      return complete(ctx, plan)
    }
    let handedOff = false
    fork(
      ctx,
      dp,
      plan,
      Effect.flatMap(step, (s): Effect.Effect<void, ProxyError> => {
        if (s !== undefined) {
          if (isServed(s)) serveStep(ctx, env, dp, plan, s)
          else sendStageAnswer(ctx, env, s, plan)
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
      sendError(ctx, env, new InternalError({ reason: "internal" }), plan)
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
  const refuseUnread = (ctx: RequestContext, rejected: RequestRejected | BodyTooLarge, plan?: RoutePlan): void => {
    const answer = errorAnswer(rejected)
    env.hooks.onReject(ctx, answer.reason, answer.status)
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

    const rejected = checkHead(ctx, env.hooks.onReject)
    if (rejected !== undefined) return refuseUnread(ctx, rejected)

    const route = dp.router.match(ctx)
    if (route === undefined) {
      sendError(ctx, env, new NoRoute({ host: ctx.host, path: ctx.path }))
      return complete(ctx)
    }
    ctx.routeId = route.id
    const plan = dp.plans.get(route.id)!
    if (declaredBodyOver(ctx, plan.maxBodySize)) return refuseUnread(ctx, new BodyTooLarge(), plan)
    if (plan.upstream !== undefined) ctx.upstreamHeaders = buildUpstreamHeaders(ctx, plan)
    // WebSocket handshakes (src/websocket/): the route's policy refuses them or prepares the upgrade
    if (ctx.header("upgrade") !== undefined || ctx.webSocketOverH2) {
      const refusal =
        plan.upgrade !== undefined ? plan.upgrade.check(ctx) : isUpgradeRequest(req) || ctx.webSocketOverH2 ? upgradeRefused(ctx) : undefined
      if (refusal !== undefined) {
        sendStageAnswer(ctx, env, refusal, plan)
        return complete(ctx, plan)
      }
    }

    handleStep(ctx, dp, plan, runStages(ctx, plan.request, 0))
  }
}
