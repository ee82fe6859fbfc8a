/**
 * What both SDK servers (Unix socket, AgentConnection.ts; gRPC,
 * GrpcAgentServer.ts) do with one event: find its handler, run it, and turn
 * its decision (or its failure, through the `onError` policy) into the
 * answer's wire form. A handler that returned a ready success (an `Exit`, as
 * `Effect.succeed(...)` is) is answered at once, without a fiber; any other
 * runs as a fiber on the server's runtime, tracked by correlation id so a
 * Cancel interrupts it (nothing is answered then).
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import { type ConfigureEvent, EventNumber, MessageType, type ProxyEvent } from "../Protocol.js"
import type { AgentHandlers, ErrorContext } from "./AgentServer.js"
import { allow, block } from "./Decision.js"
import type { AgentDecision } from "./Decision.js"

export type RunFork = <A, E>(effect: Effect.Effect<A, E, any>) => Fiber.RuntimeFiber<A, E>

/** The default failure policy: fail closed. */
export const defaultOnError = (): AgentDecision =>
  block(500, { body: "agent error" }).withAudit({ reasonCodes: ["AGENT_HANDLER_FAILED"] })

/** The failure policy's decision for a failed handler (`onError`, else, or when it throws, the default). */
export const failureDecision = (onError: ((e: ErrorContext) => AgentDecision) | undefined, e: ErrorContext): AgentDecision => {
  try {
    return (onError ?? defaultOnError)(e)
  } catch {
    return defaultOnError()
  }
}

export type EventHandler = () => Effect.Effect<AgentDecision | void, unknown, any>

/** The handler of an event, or undefined (answered allow). */
export const handlerFor = (h: AgentHandlers<any>, ev: ProxyEvent): EventHandler | undefined => {
  switch (ev.type) {
    case MessageType.RequestHeaders:
      return h.onRequestHeaders && (() => h.onRequestHeaders!(ev.event))
    case MessageType.RequestBodyChunk:
      return h.onRequestBody && (() => h.onRequestBody!(ev.event))
    case MessageType.ResponseHeaders:
      return h.onResponseHeaders && (() => h.onResponseHeaders!(ev.event))
    case MessageType.ResponseBodyChunk:
      return h.onResponseBody && (() => h.onResponseBody!(ev.event))
    case MessageType.RequestComplete:
      return h.onRequestComplete && (() => h.onRequestComplete!(ev.event))
    case MessageType.WebSocketFrame:
      return h.onWebSocketFrame && (() => h.onWebSocketFrame!(ev.event))
    case MessageType.GuardrailInspect:
      return h.onGuardrailInspect && (() => h.onGuardrailInspect!(ev.event))
    case MessageType.Configure:
      return h.onConfigure && (() => h.onConfigure!(ev.event))
  }
}

/** One server connection (a socket, a gRPC stream) as the runner sees it. */
export interface HandlerHost<W> {
  readonly run: RunFork
  readonly onError: ((e: ErrorContext) => AgentDecision) | undefined
  /** Fibers running, by correlation id (Cancel interrupts them). */
  readonly running: Map<string, Set<Fiber.RuntimeFiber<unknown, unknown>>>
  /** A decision's wire form for this transport. */
  readonly wire: (d: AgentDecision, correlationId: string) => W
  /** Logs a handler failure. */
  readonly warn: (message: string, cause: Cause.Cause<unknown>) => void
  /** A fiber started (count it, apply the concurrency bound). */
  readonly started: () => void
  /** A fiber ended: `answer` is its answer, undefined when it was interrupted. */
  readonly ended: (answer: W | undefined, type: number, correlationId: string) => void
}

/** The answer for a failed handler, as `wire` forms it. */
export const failureAnswer = <W>(host: HandlerHost<W>, type: number, correlationId: string, cause: Cause.Cause<unknown>): W =>
  host.wire(failureDecision(host.onError, { type, correlationId, cause }), correlationId)

/**
 * Runs `handler` for the event `type` of `correlationId`; its answer goes to `answerNow` when it
 * was ready at once, else to `host.ended` when its fiber ends.
 */
export const runHandler = <W>(host: HandlerHost<W>, type: number, correlationId: string, handler: EventHandler, answerNow: (w: W) => void): void => {
  let effect: Effect.Effect<AgentDecision | void, unknown, any>
  try {
    effect = handler()
  } catch (e) {
    effect = Effect.die(e)
  }
  if (Exit.isExit(effect) && Exit.isSuccess(effect)) {
    let w: W | undefined
    try {
      w = host.wire((effect.value as AgentDecision | undefined) ?? allow(), correlationId)
    } catch (e) {
      effect = Effect.die(e)
    }
    if (w !== undefined) return answerNow(w)
  }
  const fiber = host.run(
    Effect.suspend(() => effect).pipe(
      Effect.map((d) => host.wire((d as AgentDecision | undefined) ?? allow(), correlationId)),
      Effect.catchAllCause((cause) =>
        Effect.sync(() => {
          host.warn(`agent handler for ${correlationId} failed`, cause)
          return failureAnswer(host, type, correlationId, cause)
        })
      )
    )
  ) as Fiber.RuntimeFiber<unknown, unknown>
  let set = host.running.get(correlationId)
  if (set === undefined) host.running.set(correlationId, (set = new Set()))
  set.add(fiber)
  host.started()
  fiber.addObserver((exit) => {
    const s = host.running.get(correlationId)
    if (s !== undefined) {
      s.delete(fiber)
      if (s.size === 0) host.running.delete(correlationId)
    }
    host.ended(Exit.isSuccess(exit) ? (exit.value as W) : undefined, type, correlationId)
  })
}

/**
 * The handshake's configuration through `onConfigure`, as both servers apply it: `settled` gets
 * undefined when it was accepted (an allow, or nothing), else the refusal's text (a block, with
 * its body; a failing handler is logged and refused as "configuration handler failed").
 */
export const applyHandshakeConfig = (
  run: RunFork,
  onConfigure: NonNullable<AgentHandlers<any>["onConfigure"]>,
  config: unknown,
  settled: (refusal: string | undefined) => void
): void => {
  const event: ConfigureEvent = { correlation_id: null, config, config_version: null }
  const fiber = run(
    Effect.suspend(() => onConfigure(event)).pipe(
      Effect.map((d) => (d as AgentDecision | undefined) ?? allow()),
      Effect.catchAllCause((cause) =>
        Effect.as(Effect.logWarning("agent configuration failed", cause), block(500, { body: "configuration handler failed" }))
      )
    )
  )
  fiber.addObserver((exit) => {
    if (Exit.isSuccess(exit) && exit.value.isAllow) return settled(undefined)
    const d = Exit.isSuccess(exit) ? exit.value.decision : undefined
    const why = typeof d === "object" && "block" in d ? d.block.body : null
    settled(`configuration rejected${why ? `: ${why}` : ""}`)
  })
}

/**
 * `supported_events` of the handshake: the events with a handler (RequestHeaders when none);
 * WebSocket frames and guardrail inspection only where the transport carries them (`all`).
 */
export const supportedEvents = (h: AgentHandlers<any>, all: boolean): Array<number> => {
  const events: Array<number> = []
  if (h.onRequestHeaders) events.push(EventNumber.RequestHeaders)
  if (h.onRequestBody) events.push(EventNumber.RequestBodyChunk)
  if (h.onResponseHeaders) events.push(EventNumber.ResponseHeaders)
  if (h.onResponseBody) events.push(EventNumber.ResponseBodyChunk)
  if (h.onRequestComplete) events.push(EventNumber.RequestComplete)
  if (all && h.onWebSocketFrame) events.push(EventNumber.WebSocketFrame)
  if (all && h.onGuardrailInspect) events.push(EventNumber.GuardrailInspect)
  if (events.length === 0) events.push(EventNumber.RequestHeaders)
  return events
}
