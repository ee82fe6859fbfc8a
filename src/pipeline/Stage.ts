/**
 * The seams of the request path. A route's plan is a list of request-phase
 * stages, one handler, and response/complete stages; features (filters,
 * agents, static files) contribute them through a `RouteExtension` when the
 * configuration is compiled, so the pipeline itself never grows a hook per
 * feature (Pingora's lesson: phases named after when they run).
 *
 * A request stage returns `undefined` to continue, an `Answer` to respond,
 * or, when it has to wait (agents, delays), an Effect of either or a
 * `PendingStep`. Synchronous stages cost a function call; a `PendingStep` is
 * driven on callbacks (the common agent call, DESIGN.md §2: a fiber per request
 * costs more than the rest of the pipeline); an Effect runs the rest of the
 * request as one fiber.
 */
import type { Socket } from "node:net"
import * as Effect from "effect/Effect"
import type { RouteConfig, SentinelConfig } from "../config/Schema.js"
import type { RequestContext } from "./RequestContext.js"
import type { ResponseSink } from "../upstream/Forward.js"

/** A proxy-made answer. `headers` is a flat `[name, value, ...]` list. */
export interface Answer {
  readonly status: number
  readonly headers: ReadonlyArray<string>
  readonly body: string | Buffer
  /** Content type of `body` (default `application/json`). */
  readonly contentType?: string
  /** Why (access log `error`, metrics `reason`, audit). */
  readonly reason: string
}

/**
 * A stage answers with a response it has ready (a cache hit): `write` puts it into `sink`, the
 * route's way to the client (response policy and stages applied, as for an upstream answer).
 */
export interface Served {
  readonly _tag: "Served"
  readonly write: (sink: ServedSink) => void
}

/** Where a ready response is written: a `ResponseSink` whose head may be strings (a stored head). */
export interface ServedSink extends Omit<ResponseSink, "start"> {
  readonly start: (status: number, head: ReadonlyArray<string | Buffer>) => boolean
}

export const served = (write: Served["write"]): Served => ({ _tag: "Served", write })

export const isServed = (u: unknown): u is Served =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "Served"

export type StageStep = Answer | Served | undefined

/**
 * A wait on plain callbacks: `start` begins it and calls `done` exactly once with the
 * stage's outcome, unless the returned cancel (client gone) is called first. `done` may be
 * called synchronously.
 */
export interface PendingStep {
  readonly _tag: "PendingStep"
  readonly start: (done: (step: StageStep) => void) => () => void
}

export const pendingStep = (start: PendingStep["start"]): PendingStep => ({ _tag: "PendingStep", start })

/**
 * A wait on plain callbacks as one `Effect.async`, for code that already runs as a fiber:
 * `start` calls `done` once and returns its cancel, which interruption calls.
 */
export const callbackAsEffect = <A>(start: (done: (a: A) => void) => () => void): Effect.Effect<A> =>
  Effect.async<A>((resume) => {
    const cancel = start((a) => resume(Effect.succeed(a)))
    return Effect.sync(cancel)
  })

export const isPendingStep = (u: unknown): u is PendingStep =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "PendingStep"

/**
 * `R`: services an Effect stage needs. They come from the layer the proxy is built in
 * (`App.layer`'s requirements): an embedder provides them beside `ConfigSource`.
 */
export type RequestStage<R = never> = (ctx: RequestContext) => StageStep | PendingStep | Effect.Effect<StageStep, never, R>

/** Edits the response head (flat list) before it goes to the client; runs for proxied and proxy-made answers. */
export type ResponseStage = (ctx: RequestContext, status: number, headers: Array<string>) => void

/** Runs once after the response (logging-like work: agents' `request_complete`). Must not throw. */
export type CompleteStage = (ctx: RequestContext) => void

/**
 * What a response hook decided: `undefined` sends the upstream's response
 * (its head possibly edited in place), an `Answer` replaces it (the upstream
 * body is dropped), `{ replaceBody }` sends that body instead of the buffered
 * one (only when the buffered body was complete).
 */
export type ResponseHookStep = Answer | { readonly replaceBody: Buffer } | undefined

/** One chunk of a body inspected as it arrives (agents' body mode "stream"). */
export interface BodyChunk {
  readonly data: Buffer
  /** 0-based. */
  readonly index: number
  /** The last chunk of the body (an empty one at the end when the size was not known). */
  readonly isLast: boolean
  /** Body bytes up to and including this chunk. */
  readonly bytes: number
  /** The body's size when known (Content-Length). */
  readonly total: number | undefined
}

/**
 * What a response hook decided about one streamed chunk: "more" passes it on and wants the
 * next, "done" passes it and the rest of the body uninspected, an `Answer` stops the response.
 */
export type ChunkStep = Answer | "more" | "done"

/**
 * An asynchronous look at the upstream's response before anything reaches the
 * client (response-phase agents). The head is held (and the upstream paused)
 * until `run` resolves; routes without a hook pay nothing.
 */
export interface ResponseHook {
  /**
   * Response body bytes buffered before `run`; 0 = the head alone. A longer
   * body gives `run` its first `bufferBytes + 1` bytes with `complete: false`.
   */
  readonly bufferBytes: number
  /** `headers` is the flat upstream head (hop-by-hop removed); edit it in place. */
  readonly run: (
    ctx: RequestContext,
    status: number,
    headers: Array<string>,
    body: Buffer | undefined,
    complete: boolean
  ) => Effect.Effect<ResponseHookStep>
  /**
   * `run` on plain callbacks, when the hook offers it (the agents' hook does): `done` is called
   * once unless the returned cancel runs first (then never). Used instead of `run`, so a held
   * response costs no fiber.
   */
  readonly start?: (
    ctx: RequestContext,
    status: number,
    headers: Array<string>,
    body: Buffer | undefined,
    complete: boolean,
    done: (step: ResponseHookStep) => void
  ) => () => void
  /**
   * Body chunks looked at as they arrive (response-body-mode "stream" agents); needs `start`,
   * which is then called on the head alone (`body` undefined) as soon as it arrives. Once the
   * head is allowed, each chunk goes to `chunk` before the client gets it (the upstream paused
   * meanwhile), and the head goes out with the first chunk passed. An `Answer` before anything
   * was written replaces the response; after, the response is cut short (it never ends as if
   * complete). With `bufferBytes > 0` (buffer-mode agents beside them), the chunks passed are
   * held up to `bufferBytes + 1` bytes and given to `body`, which decides as `start` does.
   */
  readonly stream?: {
    readonly chunk: (ctx: RequestContext, chunk: BodyChunk, done: (step: ChunkStep) => void) => () => void
    readonly body: (
      ctx: RequestContext,
      status: number,
      headers: Array<string>,
      body: Buffer,
      complete: boolean,
      done: (step: ResponseHookStep) => void
    ) => () => void
  }
}

/**
 * A synchronous body encoder (filters/BodyEncoder.ts): `write` and `finish` hand every piece of
 * encoded output to `emit` before they return, and throw when the encoder failed. `finish` ends
 * the body and frees the encoder; `discard` frees it unfinished (idempotent, also after finish).
 */
export interface BodyEncoder {
  write(chunk: Buffer, emit: (encoded: Buffer) => void): void
  finish(emit: (encoded: Buffer) => void): void
  discard(): void
}

/**
 * A body re-encoding chosen for one response (the `compress` filter): the encoder the body goes
 * through, and `end`, called once when the response is over, with the bytes that went in and
 * came out and whether the encoded body was complete (false: the client left, the upstream
 * failed).
 */
export interface BodyEncoding {
  readonly coding: string
  readonly encoder: BodyEncoder
  readonly end: (ctx: RequestContext, bytesIn: number, bytesOut: number, complete: boolean) => void
}

/**
 * Re-encodes upstream response bodies (the `compress` filter; pipeline/EncodingSink.ts streams
 * them). `start` sees the flat head (hop-by-hop removed) before anything reaches the client,
 * edits it in place (even when it returns undefined: `Vary`), and returns the encoding, or
 * undefined to send the body as it is.
 */
export interface ResponseEncoding {
  readonly start: (ctx: RequestContext, status: number, headers: Array<string>) => BodyEncoding | undefined
}

/** Serves the request itself (static files); resolves when the response is finished. */
export type LocalHandler = (ctx: RequestContext) => Promise<void>

/**
 * How a route treats WebSocket handshakes (contributed by src/websocket/ for every route). The
 * pipeline asks `check` for a request that asks for a WebSocket, before the route's request
 * stages; the upstream exchange is then made as an upgrade, and its 101 goes to `accept`.
 */
export interface UpgradePolicy {
  /**
   * The answer refusing the handshake (403 on a route without `websocket`, 400/426 for a
   * malformed one, 503 over the tunnel limits), or undefined: go on, with `ctx.websocket` set
   * and the upstream headers prepared.
   */
  readonly check: (ctx: RequestContext) => Answer | undefined
  /**
   * The upstream answered 101 on `upstream`: write the 101 to the client (`editHead` applies the
   * route's response-header stages to its flat head) and start the tunnel. Undefined = done;
   * "upstream": its answer does not fit the handshake (502); "client": the client is gone.
   */
  readonly accept: (
    ctx: RequestContext,
    rawHeaders: ReadonlyArray<Buffer>,
    upstream: Socket,
    editHead: (status: number, flat: Array<string>) => void
  ) => "upstream" | "client" | undefined
}

export interface RouteContribution<R = never> {
  readonly request?: ReadonlyArray<RequestStage<R>>
  readonly response?: ReadonlyArray<ResponseStage>
  readonly complete?: ReadonlyArray<CompleteStage>
  /** Replaces the upstream/builtin handler of the route. */
  readonly handler?: LocalHandler
  /** Whole-request deadline of the route in ms, overriding `policies { timeout-secs }` (`timeout` filter). */
  readonly timeoutMs?: number
  /** Response-head deadline per upstream attempt in ms (`timeout` filter `upstream-timeout-secs`). */
  readonly upstreamTimeoutMs?: number
  /** Deadline to get a request onto a connected upstream socket in ms (`connect-timeout-secs`). */
  readonly connectTimeoutMs?: number
  /** Holds the upstream response until it resolves (one per route; the last extension's wins). */
  readonly responseHook?: ResponseHook
  /** WebSocket handshakes on this route (src/websocket/; the last extension's wins). */
  readonly upgrade?: UpgradePolicy
  /** Re-encodes the upstream's response bodies (the `compress` filter; the last one's wins). */
  readonly encoding?: ResponseEncoding
}

/** A feature that adds stages to routes when a configuration is compiled. */
export interface RouteExtension<R = never> {
  readonly name: string
  readonly compile: (route: RouteConfig, config: SentinelConfig) => RouteContribution<R> | undefined
}
