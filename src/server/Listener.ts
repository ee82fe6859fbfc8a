/**
 * One configured listener: a `node:http` server with the limits and
 * timeouts of the configuration, malformed-request answers that are logged
 * and counted, connection accounting, and a drain that lets in-flight
 * requests finish before the sockets close.
 */
import * as http from "node:http"
import type { Socket } from "node:net"
import { Data, Duration, Effect, Scope } from "effect"
import type { LimitsConfig, ListenerConfig } from "../config/Schema.js"
import { errorBody, statusText } from "../pipeline/ErrorResponse.js"

export class ListenerBindFailed extends Data.TaggedError("ListenerBindFailed")<{
  readonly listener: string
  readonly address: string
  readonly message: string
}> {}

export interface ListenerHooks {
  /** A request the HTTP parser refused before it became a request (400/408/413/431). */
  readonly onClientError: (listenerId: string, status: number, reason: string, clientIp: string) => void
  readonly onConnection: (open: number) => void
}

export interface ListenerHandle {
  readonly id: string
  readonly host: string
  readonly port: number
  readonly server: http.Server
  readonly inFlight: () => number
  readonly draining: () => boolean
  /** Stop accepting, let requests finish for up to `graceMs`, then close every socket. */
  readonly drain: (graceMs: number) => Promise<void>
}

const CLIENT_ERRORS: Record<string, readonly [number, string]> = {
  HPE_HEADER_OVERFLOW: [431, "header_too_large"],
  ERR_HTTP_REQUEST_TIMEOUT: [408, "request_timeout"],
  HPE_HEADERS_TIMEOUT: [408, "headers_timeout"],
  ERR_HTTP_HEADERS_TIMEOUT: [408, "headers_timeout"]
}

const rawAnswer = (status: number, reason: string): string => {
  const body = errorBody(status, reason, "-")
  return (
    `HTTP/1.1 ${status} ${statusText(status)}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n` +
    body
  )
}

export const startListener = (
  config: ListenerConfig,
  limits: LimitsConfig,
  onRequest: (handle: ListenerHandle) => http.RequestListener,
  hooks: ListenerHooks
): Effect.Effect<ListenerHandle, ListenerBindFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const requestTimeout = Duration.toMillis(config.requestTimeout)
    const server = http.createServer({
      maxHeaderSize: limits.maxHeaderSize,
      requestTimeout,
      headersTimeout: Math.min(requestTimeout, 60_000),
      keepAliveTimeout: Duration.toMillis(config.keepaliveTimeout),
      insecureHTTPParser: false,
      requireHostHeader: true,
      joinDuplicateHeaders: false,
      noDelay: true,
      connectionsCheckingInterval: 1000
    })
    // Node silently drops headers past the count but still uses them for framing:
    // keep one more than the limit so the pipeline can see the overflow and answer 431.
    server.maxHeadersCount = limits.maxHeaderCount + 1
    server.maxRequestsPerSocket = config.keepaliveMaxRequests ?? 0
    server.maxConnections = limits.maxTotalConnections

    let inFlight = 0
    let draining = false
    let idle: (() => void) | undefined
    let open = 0
    const sockets = new Set<Socket>()

    server.on("connection", (socket: Socket) => {
      open++
      sockets.add(socket)
      hooks.onConnection(open)
      socket.once("close", () => {
        open--
        sockets.delete(socket)
        hooks.onConnection(open)
      })
    })

    server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
      const known = CLIENT_ERRORS[err.code ?? ""]
      const [status, reason] = known ?? [400, "bad_request"]
      if (err.code === "ECONNRESET" || !socket.writable) {
        socket.destroy()
        return
      }
      hooks.onClientError(config.id, status, reason, socket.remoteAddress ?? "")
      socket.end(rawAnswer(status, reason))
    })

    const handle: ListenerHandle = {
      id: config.id,
      host: config.address.host,
      port: 0,
      server,
      inFlight: () => inFlight,
      draining: () => draining,
      drain: async (graceMs) => {
        draining = true
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        if (inFlight > 0) {
          // Wait for the last in-flight request (or the deadline); connections that
          // become idle meanwhile are closed as each response finishes.
          let timer: NodeJS.Timeout | undefined
          await new Promise<void>((resolve) => {
            idle = resolve
            timer = setTimeout(resolve, graceMs)
          })
          clearTimeout(timer)
          idle = undefined
        }
        server.closeAllConnections()
        for (const s of sockets) s.destroy()
        await closed
      }
    }

    const handler = onRequest(handle)
    server.on("request", (req, res) => {
      inFlight++
      res.once("close", () => {
        inFlight--
        if (draining) {
          // Responses during a drain carry `Connection: close`; sweep what went idle.
          setImmediate(() => server.closeIdleConnections())
          if (inFlight === 0) idle?.()
        }
      })
      handler(req, res)
    })

    const port = yield* Effect.async<number, ListenerBindFailed>((resume) => {
      const onError = (err: Error) =>
        resume(
          Effect.fail(
            new ListenerBindFailed({
              listener: config.id,
              address: `${config.address.host}:${config.address.port}`,
              message: err.message
            })
          )
        )
      server.once("error", onError)
      server.listen(config.address.port, config.address.host, () => {
        server.off("error", onError)
        const addr = server.address()
        resume(Effect.succeed(typeof addr === "object" && addr !== null ? addr.port : config.address.port))
      })
    })
    ;(handle as { port: number }).port = port
    return handle
  })
