/**
 * The HTTP parser's refusals (`clientError`): a malformed head, a head over the limits, a head
 * deadline, a body the parser refused. Answered raw (the connection closes), counted and logged
 * once; a request whose body was still arriving is the pipeline's, which logs it with the
 * listener's status and reason (`markCut`); garbage pipelined behind a request still being
 * answered waits until that answer is out (a raw answer now would desynchronise the stream).
 */
import type * as http from "node:http"
import type { Socket } from "node:net"
import { isClosing, markClosing, markCut, type ClientRejection } from "../pipeline/Connection.js"
import { answerBytes, BAD_REQUEST, CLIENT_ERRORS, rawAnswer } from "./ListenerAnswers.js"
import type { ListenerTimeouts } from "./ListenerSettings.js"

export interface ClientErrorEnv {
  readonly listenerId: string
  readonly t: ListenerTimeouts
  readonly onClientError: (rejection: ClientRejection) => void
  /** Sockets refused at accept: never answered. */
  readonly refused: WeakSet<Socket>
  /** Connections whose TLS handshake failed: closed, never answered in HTTP. */
  readonly tlsFailed: WeakSet<Socket>
}

export const handleClientError = (err: NodeJS.ErrnoException, socket: Socket, env: ClientErrorEnv): void => {
  const { listenerId, t, onClientError, refused, tlsFailed } = env
  if (tlsFailed.has(socket)) {
    socket.destroy()
    return
  }
  const known = CLIENT_ERRORS[err.code ?? ""] ?? BAD_REQUEST
  const { status, reason } = known
  if (err.code === "ECONNRESET" || !socket.writable || refused.has(socket)) {
    socket.destroy()
    return
  }
  // after a refusal on this connection, whatever follows is not answered again
  const alreadyClosing = isClosing(socket)
  markClosing(socket)
  const answer = alreadyClosing ? "" : rawAnswer(known)
  // a head deadline: the client had the whole header timeout (node checks every checkMs)
  const waited = status === 408 ? t.headerMs : 0
  const pending = (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage
  if (pending === null || pending === undefined || pending.writableFinished) {
    if (!alreadyClosing) {
      // Nothing pending on the connection: the chunk being parsed starts at this request's
      // line (or at a later chunk of its head, which `rawPacket` readers must tolerate).
      const rawPacket = (err as { rawPacket?: unknown }).rawPacket
      onClientError({
        listener: listenerId,
        status,
        reason,
        clientIp: socket.remoteAddress ?? "",
        stage: "head",
        rawPacket: Buffer.isBuffer(rawPacket) ? rawPacket : undefined,
        durationMs: waited,
        bytesSent: answerBytes(known)
      })
    }
    socket.end(answer)
    return
  }
  const current = (pending as { req?: http.IncomingMessage }).req
  if (status === 408 || (current !== undefined && !current.complete)) {
    // a request whose body is still arriving is the pipeline's: it logs that request
    const owned = current !== undefined && !current.complete
    if (!alreadyClosing) {
      onClientError({
        listener: listenerId,
        status,
        reason,
        clientIp: socket.remoteAddress ?? "",
        stage: owned ? "in-flight" : "head",
        req: owned ? current : undefined,
        durationMs: status === 408 ? (owned ? t.requestMs : t.headerMs) : 0,
        bytesSent: pending.headersSent ? 0 : answerBytes(known)
      })
    }
    // The error is in the request being answered (its body, or its deadline). If its answer
    // has not started, the raw answer is its answer; closing the socket then interrupts the
    // pipeline, which aborts the upstream exchange (never completed with a broken body) and
    // logs the request with this status and reason; a body ended by the client's FIN is
    // the client leaving first (499).
    const answering = !pending.headersSent && !alreadyClosing
    if (err.code !== "HPE_INVALID_EOF_STATE") {
      markCut(socket, {
        status,
        reason,
        // a later head's deadline (not owned) has its own access line, with the answer's bytes
        answered: answering && owned ? pending : undefined,
        bytesSent: answering && owned ? answerBytes(known) : 0
      })
    }
    if (answering) socket.end(answer)
    else socket.destroy()
    return
  }
  // Garbage pipelined behind a request still being answered: a raw answer now would be
  // taken as that request's response (desync). Let it finish, then refuse and close.
  if (!alreadyClosing) {
    onClientError({ listener: listenerId, status, reason, clientIp: socket.remoteAddress ?? "", stage: "head" })
  }
  pending.once("finish", () => {
    if (socket.writable) socket.end(answer)
  })
  pending.once("close", () => {
    if (!pending.writableFinished) socket.destroy()
  })
}
