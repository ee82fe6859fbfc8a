/**
 * The listener's own answers (parser refusals, CONNECT, slow clients, admission and connection
 * limits), with status, reason and headers from the error table, written raw on the socket or
 * through node's response. Refusal paths only.
 */
import type * as http from "node:http"
import { errorAnswer, errorBody, statusText, type ErrorAnswer } from "../pipeline/ErrorResponse.js"
import { ClientTooSlow, RequestRejected } from "../pipeline/Errors.js"

/** The parser's refusals by error code (anything else: 400 `bad_request`), answered from the error table. */
export const CLIENT_ERRORS: Record<string, ErrorAnswer> = {
  HPE_HEADER_OVERFLOW: errorAnswer(new RequestRejected({ status: 431, reason: "header_too_large" })),
  ERR_HTTP_REQUEST_TIMEOUT: errorAnswer(new ClientTooSlow({ reason: "request_timeout" })),
  HPE_HEADERS_TIMEOUT: errorAnswer(new ClientTooSlow({ reason: "headers_timeout" })),
  ERR_HTTP_HEADERS_TIMEOUT: errorAnswer(new ClientTooSlow({ reason: "headers_timeout" }))
}
export const BAD_REQUEST = errorAnswer(new RequestRejected({ status: 400, reason: "bad_request" }))
/** CONNECT: a reverse proxy does not tunnel (nginx answers 405 too). */
export const METHOD_CONNECT = errorAnswer(new RequestRejected({ status: 405, reason: "method_connect" }))
export const WRITE_TIMEOUT = errorAnswer(new ClientTooSlow({ reason: "write_timeout" }))
export const BODY_IDLE_TIMEOUT = errorAnswer(new ClientTooSlow({ reason: "body_idle_timeout" }))

/** Body bytes of `rawAnswer(answer)` (for the log line; refusal paths only). */
export const answerBytes = (answer: ErrorAnswer): number => Buffer.byteLength(errorBody(answer.status, answer.reason, "-"))

/** The listener's answer written on the socket itself (no `ServerResponse`), closing the connection. */
export const rawAnswer = (answer: ErrorAnswer, extra = ""): string => {
  const body = errorBody(answer.status, answer.reason, "-")
  let head = `HTTP/1.1 ${answer.status} ${statusText(answer.status)}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n`
  for (const [name, value] of answer.headers) head += `${name}: ${value}\r\n`
  return `${head}${extra}connection: close\r\n\r\n${body}`
}

/** The listener's answer through node's response (an admitted request, or one whose body it gave up on). */
export const writeAnswer = (res: http.ServerResponse, answer: ErrorAnswer, closing: boolean): string => {
  const body = errorBody(answer.status, answer.reason, "-")
  const head: http.OutgoingHttpHeaders = { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
  for (const [name, value] of answer.headers) head[name] = value
  if (closing) head.connection = "close"
  res.writeHead(answer.status, head)
  return body
}
