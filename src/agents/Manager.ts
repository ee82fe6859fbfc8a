/**
 * The agents stage: runs a route's agents for each phase and turns their
 * answers (or failures) into one decision the pipeline acts on.
 *
 * - request headers: the route's agents run in parallel; the first non-allow
 *   outcome in filter order wins (later calls are cancelled as soon as the
 *   winner is known); header mutations of allowing agents apply in filter order.
 * - request body, response headers, response body: agents run one after the
 *   other in filter order, each seeing the body as mutated by the ones before.
 * - request complete (`log`): sent after the response; answers are ignored.
 * - a failure (timeout, no connection, garbage, overload, open circuit) is
 *   resolved by failure mode (filter, else route, else agent): `closed`
 *   answers 503 (504 on timeout), `open` continues; both are audited and
 *   counted. A malformed answer is a failure, never an allow.
 * - decisions: block -> its status/body/headers; redirect -> status +
 *   Location; challenge -> 403 (configurable) with the challenge in a header.
 *
 * Each phase runs on plain callbacks (`start*`: done once, or cancelled), no fiber
 * (DESIGN.md §2). The service it implements: AgentManager.ts; one call and its outcome
 * (audit, metrics, failure mode): AgentCalls.ts, its base class; this file fans the calls out.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { BodyChunk } from "../pipeline/Stage.js"
import { type AgentConfig, type AgentFilterRef, filterBodyCap } from "./AgentConfig.js"
import { AgentCalls, noop } from "./AgentCalls.js"
import {
  type Acc,
  type AgentDecision,
  WEBSOCKET_ALLOW,
  type WebSocketVerdict,
  CONTINUE,
  merge,
  type Outcome,
  type PhaseContext,
  toContinue
} from "./AgentDecision.js"
import {
  AgentManager,
  type AgentManagerOptions,
  type AgentManagerService,
  type AgentStatus,
  type BodyPhase,
  type BodyStream
} from "./AgentManager.js"
import { AgentRuntime } from "./AgentRuntime.js"
import type { AgentClient, CancelCall } from "./Channels.js"
import { make as makeClient } from "./Client.js"
import { make as makeGrpcClient } from "./GrpcTransport.js"
import {
  CancelReason,
  type RequestCompleteEvent,
  type RequestHeadersEvent,
  type ResponseHeadersEvent,
  type WebSocketFrameEvent
} from "./Protocol.js"

// ---------------------------------------------------------------------------
// Implementation

const EMPTY = Buffer.alloc(0)

class Manager extends AgentCalls implements AgentManagerService {
  readonly startBodyChunk = (
    filters: ReadonlyArray<AgentFilterRef>,
    phase: BodyPhase,
    chunk: BodyChunk,
    ctx: PhaseContext,
    stream: BodyStream,
    done: (decision: AgentDecision) => void
  ): (() => void) => {
    const acc: Acc = { requestHeaders: [], responseHeaders: [], routingMetadata: {}, body: undefined }
    let i = 0
    let finished = false
    let current: CancelCall | undefined
    let data: string | undefined
    const finish = (decision: AgentDecision) => {
      finished = true
      done(decision)
    }
    const next = (): void => {
      while (!finished) {
        if (i >= filters.length) return finish(toContinue(acc))
        const ref = filters[i++]
        if (stream.settled.has(ref) || !this.streamsBodyOf(ref, phase)) continue
        const rt = this.runtimes.get(ref.agent)!
        const cap = filterBodyCap(ref, rt.config, phase)
        if (chunk.bytes > cap) {
          stream.settled.add(ref)
          const o = this.failed(ref, phase, ctx, rt, performance.now(), "body-too-large", undefined,
            `body of more than ${cap} bytes exceeds the agent's limit of ${cap}`)
          if (o.respond) return finish(o.respond)
          continue
        }
        data ??= chunk.data.toString("base64")
        const event = bodyChunkEvent(phase, ctx.traceId, data, chunk.isLast, chunk.total ?? null, chunk.index, chunk.bytes)
        current = this.one(ref, phase, ctx, event, (o) => {
          if (finished) return
          if (o.respond) {
            stream.settled.add(ref)
            return finish(o.respond)
          }
          // body mutations do not apply in stream mode (the body is not held chunk by chunk)
          if (o.response !== undefined) merge(acc, { ...o.response, request_body_mutation: null, response_body_mutation: null }, phase)
          if (chunk.isLast || o.response === undefined || !o.response.needs_more) stream.settled.add(ref)
          next()
        }, chunk.isLast ? "last" : "chunk")
        return
      }
    }
    next()
    return () => {
      if (finished) return
      finished = true
      current?.(CancelReason.ClientDisconnect)
    }
  }

  // -- phases ---------------------------------------------------------------

  readonly startRequestHeaders = (
    filters: ReadonlyArray<AgentFilterRef>,
    event: RequestHeadersEvent,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ): (() => void) => {
    const refs = filters.filter((f) => this.subscribed(f, "request_headers"))
    const n = refs.length
    if (n === 0) {
      done(CONTINUE)
      return noop
    }
    const outcomes: Array<Outcome | undefined> = new Array(n)
    const cancels: Array<CancelCall | undefined> = new Array(n)
    let finished = false
    const finish = (decision: AgentDecision, reason: CancelReason) => {
      finished = true
      for (let i = 0; i < n; i++) if (outcomes[i] === undefined) cancels[i]?.(reason)
      done(decision)
    }
    const evaluate = () => {
      const acc: Acc = { requestHeaders: [], responseHeaders: [], routingMetadata: {}, body: undefined }
      for (let i = 0; i < n; i++) {
        const o = outcomes[i]
        if (o === undefined) return // an earlier agent (in filter order) may still decide
        if (o.respond) return finish(o.respond, CancelReason.BlockedByAgent)
        merge(acc, o.response, "request_headers")
      }
      finish(toContinue(acc), CancelReason.Manual)
    }
    for (let i = 0; i < n && !finished; i++) {
      cancels[i] = this.one(refs[i], "request_headers", ctx, event, (o) => {
        if (finished) return
        outcomes[i] = o
        evaluate()
      })
    }
    return () => {
      if (finished) return
      finished = true
      for (let i = 0; i < n; i++) if (outcomes[i] === undefined) cancels[i]?.(CancelReason.ClientDisconnect)
    }
  }

  /**
   * Agents of `phase` one after the other, in filter order: `done` once, unless the returned
   * cancel runs first.
   */
  private startSequential(
    filters: ReadonlyArray<AgentFilterRef>,
    phase: "request_body" | "response_headers" | "response_body",
    ctx: PhaseContext,
    headersEvent: ResponseHeadersEvent | undefined,
    body: Buffer | undefined,
    done: (decision: AgentDecision) => void
  ): () => void {
    const acc: Acc = { requestHeaders: [], responseHeaders: [], routingMetadata: {}, body: undefined }
    let i = 0
    let finished = false
    let current: CancelCall | undefined
    const finish = (decision: AgentDecision) => {
      finished = true
      done(decision)
    }
    const onOutcome = (o: Outcome) => {
      if (finished) return
      if (o.respond) return finish(o.respond)
      merge(acc, o.response, phase)
      next()
    }
    const next = (): void => {
      while (!finished) {
        if (i >= filters.length) return finish(toContinue(acc))
        const ref = filters[i++]
        if (!this.subscribed(ref, phase)) continue
        // stream-mode agents had the body chunk by chunk
        if (phase !== "response_headers" && this.streams(ref, phase)) continue
        if (phase === "response_headers") {
          current = this.one(ref, phase, ctx, headersEvent!, onOutcome)
          return
        }
        const rt = this.runtimes.get(ref.agent)!
        const data = acc.body ?? body ?? EMPTY
        const cap = filterBodyCap(ref, rt.config, phase)
        if (data.length > cap) {
          const o = this.failed(
            ref,
            phase,
            ctx,
            rt,
            performance.now(),
            "body-too-large",
            undefined,
            `body of ${data.length} bytes exceeds the agent's limit of ${cap}`
          )
          if (o.respond) return finish(o.respond)
          continue
        }
        const event = bodyChunkEvent(phase, ctx.traceId, data.toString("base64"), true, data.length, 0, data.length)
        current = this.one(ref, phase, ctx, event, onOutcome)
        return
      }
    }
    next()
    return () => {
      if (finished) return
      finished = true
      current?.(CancelReason.ClientDisconnect)
    }
  }

  readonly startRequestBody = (
    filters: ReadonlyArray<AgentFilterRef>,
    body: Buffer,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ): (() => void) => this.startSequential(filters, "request_body", ctx, undefined, body, done)

  readonly startResponseHeaders = (
    filters: ReadonlyArray<AgentFilterRef>,
    event: ResponseHeadersEvent,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ): (() => void) => this.startSequential(filters, "response_headers", ctx, event, undefined, done)

  readonly startResponseBody = (
    filters: ReadonlyArray<AgentFilterRef>,
    body: Buffer,
    ctx: PhaseContext,
    done: (decision: AgentDecision) => void
  ): (() => void) => this.startSequential(filters, "response_body", ctx, undefined, body, done)

  readonly startWebSocketFrame = (
    filters: ReadonlyArray<AgentFilterRef>,
    event: WebSocketFrameEvent,
    ctx: PhaseContext,
    done: (verdict: WebSocketVerdict) => void
  ): (() => void) => {
    let i = 0
    let finished = false
    let current: CancelCall | undefined
    const next = (): void => {
      while (!finished) {
        if (i >= filters.length) {
          finished = true
          return done(WEBSOCKET_ALLOW)
        }
        const ref = filters[i++]
        if (!this.subscribed(ref, "websocket_frame")) continue
        current = this.oneFrame(ref, ctx, event, (v) => {
          if (finished) return
          if (v._tag !== "allow") {
            finished = true
            return done(v)
          }
          next()
        })
        return
      }
    }
    next()
    return () => {
      if (finished) return
      finished = true
      current?.(CancelReason.ClientDisconnect)
    }
  }

  readonly notifyComplete = (
    filters: ReadonlyArray<AgentFilterRef>,
    event: RequestCompleteEvent,
    ctx: PhaseContext
  ): void => {
    for (const ref of filters) {
      if (this.runtimes.get(ref.agent)?.config.events.includes("request_complete")) {
        this.one(ref, "request_complete", ctx, event, () => {})
      }
    }
  }

  readonly status = (): ReadonlyArray<AgentStatus> =>
    [...this.runtimes.values()].map((rt) => ({ id: rt.config.id, client: rt.client.status(), runtime: rt.status() }))
}


/** A RequestBodyChunk (`bytes_received`) or ResponseBodyChunk (`bytes_sent`) event. */
const bodyChunkEvent = (
  phase: BodyPhase,
  correlationId: string,
  data: string,
  isLast: boolean,
  total: number | null,
  index: number,
  bytes: number
) =>
  phase === "request_body"
    ? { correlation_id: correlationId, data, is_last: isLast, total_size: total, chunk_index: index, bytes_received: bytes }
    : { correlation_id: correlationId, data, is_last: isLast, total_size: total, chunk_index: index, bytes_sent: bytes }

/** The agent's transport: a Unix-socket pool (Client.ts) or a gRPC channel (GrpcTransport.ts), one interface. */
const makeTransport = (a: AgentConfig, options: AgentManagerOptions): Effect.Effect<AgentClient, never, Scope.Scope> => {
  const common = {
    id: a.id,
    connectTimeoutMs: a.connectTimeoutMs,
    reconnectBaseMs: a.reconnectBaseMs,
    reconnectMaxMs: a.reconnectMaxMs,
    handshakeConfig: a.config,
    ...(options.proxyId ? { proxyId: options.proxyId } : {}),
    ...(options.proxyVersion ? { proxyVersion: options.proxyVersion } : {}),
    ...(options.onClientEvent ? { onEvent: options.onClientEvent } : {})
  }
  if (a.grpc !== undefined) {
    return makeGrpcClient({
      ...common,
      address: a.grpc.address,
      ...(a.grpc.tls !== undefined ? { tls: a.grpc.tls } : {}),
      streams: a.poolSize,
      keepaliveMs: a.pingIntervalMs
    })
  }
  return makeClient({ ...common, socketPath: a.socketPath ?? "", poolSize: a.poolSize, pingIntervalMs: a.pingIntervalMs })
}


/**
 * Opens one connection pool per agent (connections are attempted at once;
 * missing sockets are retried in the background). Closing the scope fails
 * queued calls and closes every socket and timer.
 */
export const make = (
  agents: ReadonlyArray<AgentConfig>,
  options: AgentManagerOptions = {}
): Effect.Effect<AgentManagerService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const runtimes = new Map<string, AgentRuntime>()
    for (const a of agents) {
      const client = yield* makeTransport(a, options)
      runtimes.set(
        a.id,
        new AgentRuntime(a, client, (from, to) => options.onCircuitTransition?.(a.id, from, to))
      )
    }
    // runs before the clients' finalizers (reverse order): queued calls fail, then sockets close
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const rt of runtimes.values()) rt.close()
      })
    )
    return new Manager(runtimes, options)
  })

export const layer = (agents: ReadonlyArray<AgentConfig>, options: AgentManagerOptions = {}) =>
  Layer.scoped(AgentManager, make(agents, options))
