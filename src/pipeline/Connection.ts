/**
 * What the listener and the pipeline tell each other about a connection, so that each acts on
 * the other's decision without reaching into it:
 * - closing: a request on the connection was refused (the pipeline's head or body limits, the
 *   listener's own refusals) or a deadline hit; requests node already parsed behind it
 *   (pipelining) are never served, and the connection closes once the refusal is written
 *   (`markClosing`; the listener checks `isClosing` before it hands a request on);
 * - cut: the listener ended the connection under a request the pipeline has (below);
 * - refused: what the listener reports of a request or connection it refused itself
 *   (`ClientRejection`, counted and logged by observability/).
 *
 * Requests the listener cuts short. When a deadline or a broken body makes the listener end a
 * connection under a request the pipeline has (body idle, the total request deadline, a body
 * the parser refused, a stalled reader), it records why on the socket *before* it answers,
 * ends or destroys it. The pipeline only sees its response close early; `settleEarlyClose`
 * then logs what the client got and the listener's reason (`request_timeout`,
 * `body_idle_timeout`, `write_timeout`, ...), and 499 `client_closed` only when nothing was
 * recorded: the client left first.
 *
 * A property set on the refusal path only: a served request allocates nothing for this, and
 * reading it is one missing-property lookup when a response closes.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Socket } from "node:net"
import type { RequestContext } from "./RequestContext.js"

const closing = new WeakSet<object>()

/** No further request is served on this connection; it closes after the current answer. */
export const markClosing = (socket: object): void => {
  closing.add(socket)
}
export const isClosing = (socket: object): boolean => closing.has(socket)

export interface ListenerCut {
  /** Status the listener answered, or would have (408) when it could only close. */
  readonly status: number
  /** The listener's reason, the access log's `error` (and the `rejected{reason}` label). */
  readonly reason: string
  /** The response the listener's own answer stands for, if it answered (raw or through `res`). */
  readonly answered: ServerResponse | undefined
  /** Body bytes of that answer. */
  readonly bytesSent: number
}

const kCut = Symbol("sentinel.listenerCut")

type Slot = { [kCut]?: ListenerCut }

/** Records why the listener cuts `socket`; the first decision on a connection wins. */
export const markCut = (socket: Socket, cut: ListenerCut): void => {
  const slot = socket as Socket & Slot
  if (slot[kCut] === undefined) slot[kCut] = cut
}

/** Why the listener cut the connection, if it did. */
export const cutOf = (socket: Socket | null | undefined): ListenerCut | undefined =>
  socket === null || socket === undefined ? undefined : (socket as Socket & Slot)[kCut]

/**
 * The response of `ctx` closed before the pipeline finished it: not finished at all, or
 * finished by the listener's own answer (body idle 408). Read in `close` handlers. (An HTTP/2
 * compat response reports `writableFinished` when its stream is reset too; `writableEnded`
 * says whether it was ended. A WebSocket over HTTP/2 leaves its response open for the tunnel:
 * once the tunnel started, its handshake was answered.)
 */
export const closedEarly = (ctx: RequestContext, socket: Socket | null = ctx.req.socket): boolean =>
  (!ctx.res.writableFinished || !ctx.res.writableEnded || cutOf(socket)?.answered === ctx.res) && ctx.websocket?.tunnelStarted !== true

/**
 * Status and `error` of a request whose response closed early (once, before it is logged):
 * - the listener cut it: the listener's answer when it answered for this request (its status,
 *   its body bytes), else the status already sent (or the listener's when nothing was), with
 *   the listener's reason;
 * - otherwise the client left first: 499 `client_closed`, `clientGone`.
 *
 * `socket`: the request's connection. `ctx.req.socket` is right until the upstream exchange is
 * aborted (undici sets a destroyed request body's `socket` to null); code that settles after
 * that keeps the socket from before.
 */
export const settleEarlyClose = (ctx: RequestContext, socket: Socket | null = ctx.req.socket): void => {
  const cut = cutOf(socket)
  if (cut === undefined) {
    ctx.clientGone = true
    ctx.status = 499
    ctx.error ??= "client_closed"
    return
  }
  ctx.clientGone = false
  ctx.error = cut.reason
  if (cut.answered === ctx.res) {
    ctx.status = cut.status
    ctx.bytesSent += cut.bytesSent
  } else {
    ctx.status = ctx.res.headersSent ? ctx.res.statusCode : cut.status
  }
}

/**
 * Where a refusal was decided, which says what is known about it and where it is logged
 * (observability/AccessLog.ts `makeRejectionLog`, nginx's split):
 * - `connection`: a connection refused at accept (connection limits), or one closed because
 *   it stopped reading its response (slow read; the request being answered, if any, is
 *   logged by the pipeline with this reason) -> error log;
 * - `head`: a request head refused by the parser or whose head deadline expired; `rawPacket`
 *   holds the bytes being parsed when they reliably start at its request line -> access log;
 * - `request`: a complete head refused before the pipeline (CONNECT, in-flight admission);
 *   `req` is set -> access log;
 * - `in-flight`: a request the pipeline already has cut short by a body deadline or a broken
 *   body; `req` is set -> error log. The pipeline logs that request's access line, with this
 *   status and reason (`markCut`, below).
 */
export type RejectionStage = "connection" | "head" | "request" | "in-flight"

/** A request or connection refused (or cut short) by the listener, with what is known of it. */
export interface ClientRejection {
  readonly listener: string
  /** Status answered (or that would have been, when the connection could only be closed). */
  readonly status: number
  /** Machine-readable reason: the `rejected{reason}` label and the access log's `error`. */
  readonly reason: string
  readonly clientIp: string
  readonly stage: RejectionStage
  /** The parsed request, when there is one. */
  readonly req?: IncomingMessage | undefined
  /** The parser's input at the error, only when it starts at the refused request's line. */
  readonly rawPacket?: Buffer | undefined
  /** How long the client had when the decision was made (a deadline's length); 0/absent = at once. */
  readonly durationMs?: number | undefined
  /** Body bytes of the answer written (the JSON error body). */
  readonly bytesSent?: number | undefined
}
