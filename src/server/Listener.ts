/**
 * One configured listener: a `node:http` server with the limits and
 * timeouts of the configuration, malformed-request answers that are logged
 * and counted, connection accounting, and a drain that lets in-flight
 * requests finish before the sockets close.
 *
 * Slow clients (edge-security.md §3), each with its own deadline:
 * - header timeout (slowloris) and total request timeout: node's own timers,
 *   swept every `connectionsCheckingInterval` (set to at most 500 ms, so a
 *   socket is closed well within a second of its deadline; node's default is 30 s);
 * - body idle timeout (slow POST): the socket's inactivity timer while a body
 *   is being received;
 * - write timeout (slow read): a sweep that closes a connection whose pending
 *   response bytes made no progress for that long;
 * - keep-alive timeout and requests per connection: node's.
 *
 * Admission: connections are counted in total and per client IP (503 and
 * close above either limit), requests go through the shared in-flight
 * `Admission` (bounded queue, 503 when full or after the queue timeout).
 */
import * as http from "node:http"
import type * as http2 from "node:http2"
import * as https from "node:https"
import type { Socket } from "node:net"
import type { TLSSocket } from "node:tls"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import type { LimitsConfig, ListenerConfig } from "../config/Schema.js"
import { errorAnswer } from "../pipeline/ErrorResponse.js"
import { Overloaded } from "../pipeline/Errors.js"
import { Admission, ConnectionTracker } from "./Admission.js"
import { isClosing, markClosing, type ClientRejection } from "../pipeline/Connection.js"
import { handleClientError } from "./ClientErrors.js"
import { answerBytes, METHOD_CONNECT, rawAnswer, writeAnswer } from "./ListenerAnswers.js"
import { admissionConfigFor, connectionLimitsFor, listenerTimeouts } from "./ListenerSettings.js"
import { OpenConnections, startWriteSweep, watchBody, type OpenConnection } from "./SlowClients.js"
import { nodeServerOptionsFor, validationConfigFor } from "../pipeline/validate/Settings.js"
import { onResponseClose } from "../http/ResponseClose.js"
import { sniffPreface, startHttp2 } from "./Http2.js"
import { isHttp2Message } from "../http/Response.js"
import { onTicketKeys, ticketKeys } from "./TicketKeys.js"
import { startOcspStapler, type OcspStapler } from "./Ocsp.js"
import { handleUpgrade, UpgradeAwareRequest } from "../websocket/Upgrade.js"

export class ListenerBindFailed extends Data.TaggedError("ListenerBindFailed")<{
  readonly listener: string
  readonly address: string
  readonly message: string
}> {}

/** What a TLS listener needs of its certificates (built by `Tls.ts` from the listener's `tls` block). */
export interface ListenerTls {
  /** Options of `https.createServer` (certificate, key, versions, ciphers, client auth). */
  readonly serverOptions: import("node:tls").TlsOptions
  /** The secure context for a server name (SNI); prebuilt, a lookup. */
  readonly contextFor: (servername: string | undefined) => import("node:tls").SecureContext
}

export interface ListenerHooks {
  /**
   * A request or connection refused before it reached the pipeline: the HTTP parser's
   * refusals (400/408/413/431), slow clients (408, or closed), admission and connection
   * limits (503), CONNECT (405). Count and log it. Called synchronously at the decision, on
   * refusal paths only (never for a request that is served).
   */
  readonly onClientError: (rejection: ClientRejection) => void
  readonly onConnection: (open: number) => void
  /** In-flight admission shared by every listener of the process. Default: one per listener from `limits`. */
  readonly admission?: Admission
  /** Connection accounting shared by every listener. Default: one per listener from `limits`. */
  readonly connections?: ConnectionTracker
  /**
   * An HTTP/2 or TLS defence refused or closed something (`rapid_reset`, `max_requests`,
   * `idle_timeout`, `session_error`, `tls_handshake_<reason>`): count and log it.
   */
  readonly onDefence?: (reason: string, clientIp: string) => void
  /** `protocol "https"`: the certificates and TLS settings (Tls.ts), loaded before the listener starts. */
  readonly tls?: ListenerTls
  /**
   * WebSocket tunnels (src/websocket/Tunnels.ts): a drain gives this listener's tunnels what is
   * left of the grace period, then closes them with 1001, before the sockets are destroyed.
   */
  readonly tunnels?: { readonly drain: (listener: string, graceMs: number) => Promise<void> }
}

export interface ListenerHandle {
  readonly id: string
  readonly host: string
  readonly port: number
  readonly server: http.Server
  /** Open HTTP/2 sessions (0 on a listener without HTTP/2). */
  readonly http2Sessions: () => number
  /** New certificates for new handshakes (reload); open connections keep theirs. */
  readonly setTls: (tls: ListenerTls) => void
  readonly inFlight: () => number
  readonly draining: () => boolean
  /** Stop accepting, let requests finish for up to `graceMs`, then close every socket. */
  readonly drain: (graceMs: number) => Promise<void>
}

/** The TCP socket under a server-side TLS socket (node keeps it as `_parent`), else the socket itself. */
const tcpSocketOf = (socket: Socket): Socket => (socket as unknown as { _parent?: Socket })._parent ?? socket

/** A failed TLS handshake, by what went wrong (the `reason` of `sentinel_tls_handshake_errors_total`). */
export const tlsErrorReason = (err: NodeJS.ErrnoException): string => {
  const code = err.code ?? ""
  const text = `${code} ${err.message ?? ""}`.toLowerCase()
  if (code === "ERR_TLS_HANDSHAKE_TIMEOUT") return "timeout"
  if (code === "ECONNRESET" || code === "EPIPE") return "reset"
  if (text.includes("http request") || text.includes("wrong version number") && text.includes("http")) return "not_tls"
  if (text.includes("did not return a certificate") || text.includes("peer did not return")) return "no_client_certificate"
  if (text.includes("certificate") || text.includes("unknown ca") || text.includes("bad certificate")) return "bad_certificate"
  if (text.includes("protocol") || text.includes("version")) return "version"
  if (text.includes("cipher") || text.includes("sigalg") || text.includes("group")) return "cipher"
  return "other"
}


/** The methods a CONNECT's 405 names. */
const CONNECT_ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

export const startListener = (
  config: ListenerConfig,
  limits: LimitsConfig,
  onRequest: (handle: ListenerHandle) => http.RequestListener,
  hooks: ListenerHooks
): Effect.Effect<ListenerHandle, ListenerBindFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const t = listenerTimeouts(config)
    const nodeOptions = nodeServerOptionsFor(validationConfigFor(limits))
    const protocol = config.protocol
    let tls = hooks.tls
    if (protocol === "https" && tls === undefined) throw new Error(`listener "${config.id}": protocol "https" needs its TLS settings`)
    const httpOptions: http.ServerOptions = {
      maxHeaderSize: nodeOptions.maxHeaderSize,
      requestTimeout: t.requestMs,
      headersTimeout: t.headerMs,
      keepAliveTimeout: t.keepAliveMs,
      connectionsCheckingInterval: t.checkMs,
      // parser settings of the edge policy (pipeline/validate/Settings.ts says why)
      insecureHTTPParser: nodeOptions.insecureHTTPParser,
      requireHostHeader: nodeOptions.requireHostHeader,
      joinDuplicateHeaders: false,
      noDelay: true,
      // only `Upgrade: websocket` leaves the HTTP parser (the `upgrade` event below)
      IncomingMessage: UpgradeAwareRequest
    }
    const server: http.Server =
      protocol === "https"
        ? https.createServer({
            ...httpOptions,
            ...tls!.serverOptions,
            ALPNProtocols: ["h2", "http/1.1"],
            // the process tree's keys: a session resumes on any worker (TicketKeys.ts)
            ticketKeys: ticketKeys(),
            // the handshake is part of the head: bounded by the same deadline (slowloris over TLS)
            handshakeTimeout: t.headerMs > 0 ? t.headerMs : 10_000,
            // built once at load: a lookup per handshake, never a context; a throw would be a bug, never a crash
            SNICallback: (servername: string, cb: (err: Error | null, ctx?: import("node:tls").SecureContext) => void) => {
              try {
                cb(null, tls!.contextFor(servername))
              } catch (e) {
                cb(e as Error, undefined)
              }
            }
          })
        : http.createServer(httpOptions)
    // Node silently drops headers past the count but still uses them for framing:
    // keep one more than the limit so the validator sees the overflow and answers 431.
    server.maxHeadersCount = nodeOptions.maxHeadersCount
    server.maxRequestsPerSocket = config.keepaliveMaxRequests ?? 0
    if (protocol === "https") {
      const stop = onTicketKeys((keys) => (server as https.Server).setTicketKeys(keys))
      yield* Effect.addFinalizer(() => Effect.sync(stop))
    }
    // OCSP stapling (Ocsp.ts): a cached response or none, never a wait
    const logWarning = Runtime.runFork(yield* Effect.runtime<never>())
    const startStapling = (previous?: OcspStapler): OcspStapler | undefined => {
      const c = config.tls
      if (protocol !== "https" || c === undefined || !c.ocspStapling) return undefined
      return startOcspStapler([c.certFile, ...c.sni.map((s) => s.certFile)], {
        ...(previous !== undefined ? { previous } : {}),
        onProblem: (certFile, message) =>
          void logWarning(Effect.logWarning("OCSP stapling").pipe(Effect.annotateLogs({ listener: config.id, cert_file: certFile, problem: message })))
      })
    }
    let stapler = startStapling()
    if (stapler !== undefined) {
      server.on("OCSPRequest", (cert: Buffer, _issuer: Buffer, cb: (err: Error | null, response: Buffer | null) => void) => {
        let response: Buffer | undefined
        try {
          response = stapler?.responseFor(cert)
        } catch {
          response = undefined
        }
        cb(null, response ?? null)
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => stapler?.stop()))
    }
    const admission = hooks.admission ?? new Admission(admissionConfigFor(limits))
    const connections = hooks.connections ?? new ConnectionTracker(connectionLimitsFor(limits))
    const onDefence = hooks.onDefence ?? (() => undefined)

    let inFlight = 0
    let draining = false
    let idle: (() => void) | undefined
    let open = 0
    const connectionsOpen = new OpenConnections()
    /** Sockets refused at accept time: whatever they send is never served. */
    const refused = new WeakSet<Socket>()
    /** TCP socket -> its entry, so that a TLS connection's entry can watch the TLS socket instead. */
    const entries = new WeakMap<Socket, OpenConnection>()

    // Runs before node's own connection listener, so a refused socket never gets a parser.
    server.prependListener("connection", (socket: Socket) => {
      const ip = socket.remoteAddress ?? ""
      const refusal = connections.tryOpen(ip)
      if (refusal !== undefined) {
        refused.add(socket)
        const overloaded = errorAnswer(new Overloaded({ reason: refusal }))
        hooks.onClientError({ listener: config.id, status: overloaded.status, reason: refusal, clientIp: ip, stage: "connection" })
        socket.on("error", () => socket.destroy())
        // an HTTP answer means nothing before a TLS handshake: just close
        if (protocol === "https") return void socket.destroy()
        socket.end(rawAnswer(overloaded))
        // do not wait for the client to read: a flood must not hold sockets open
        const timer = setTimeout(() => socket.destroy(), 1000)
        socket.once("close", () => clearTimeout(timer))
        return
      }
      open++
      const entry = connectionsOpen.add(socket)
      if (protocol === "https") entries.set(socket, entry)
      hooks.onConnection(open)
      socket.once("close", () => {
        connectionsOpen.remove(entry)
        connections.close(ip)
        open--
        hooks.onConnection(open)
      })
    })

    /** Connections whose TLS handshake failed: counted once, closed, never answered in HTTP. */
    const tlsFailed = new WeakSet<Socket>()
    if (protocol === "https") {
      // before https's own listener, which re-emits it as a clientError
      server.prependListener("tlsClientError", (err: NodeJS.ErrnoException, socket: TLSSocket) => {
        tlsFailed.add(socket)
        if (refused.has(tcpSocketOf(socket))) return
        onDefence(`tls_handshake_${tlsErrorReason(err)}`, socket.remoteAddress ?? "")
      })
    }

    server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) =>
      handleClientError(err, socket, { listenerId: config.id, t, onClientError: hooks.onClientError, refused, tlsFailed })
    )


    // CONNECT never reaches the request handler in node (it is an upgrade); without a listener
    // the socket would just be dropped. A reverse proxy does not tunnel: 405 (nginx).
    server.on("connect", (req: http.IncomingMessage, socket: Socket) => {
      hooks.onClientError({
        listener: config.id,
        status: METHOD_CONNECT.status,
        reason: METHOD_CONNECT.reason,
        clientIp: socket.remoteAddress ?? "",
        stage: "request",
        req,
        bytesSent: answerBytes(METHOD_CONNECT)
      })
      socket.on("error", () => socket.destroy())
      socket.end(rawAnswer(METHOD_CONNECT, `allow: ${CONNECT_ALLOW}\r\n`))
    })

    // WebSocket handshakes (src/websocket/Upgrade.ts): node hands the connection over; the request
    // runs the pipeline like any other, on a response of its own, and may become a tunnel.
    server.on("upgrade", (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
      if (refused.has(socket) || isClosing(socket)) return void socket.destroy()
      handleUpgrade(req, socket, head, admitAndHandle)
    })

    const sweep = startWriteSweep(config.id, t, connectionsOpen, hooks.onClientError)
    yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(sweep)))

    const handle: ListenerHandle = {
      id: config.id,
      host: config.address.host,
      port: 0,
      server,
      inFlight: () => inFlight,
      draining: () => draining,
      http2Sessions: () => h2?.count() ?? 0,
      setTls: (next) => {
        tls = next
        // new certificate files: fetch their responses, keeping the old ones meanwhile
        if (stapler !== undefined) {
          const old = stapler
          stapler = startStapling(old)
          old.stop()
        }
        // the default certificate (no SNI, or an unknown name) and the settings of new handshakes
        // (a new context would otherwise get keys of its own: resumption across workers would break)
        ;(server as unknown as https.Server).setSecureContext({ ...next.serverOptions, ticketKeys: ticketKeys() })
      },
      drain: async (graceMs) => {
        const deadline = Date.now() + graceMs
        draining = true
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        // HTTP/2: GOAWAY now; sessions close as their streams finish
        h2?.closeAll()
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
        if (hooks.tunnels !== undefined) await hooks.tunnels.drain(config.id, Math.max(0, deadline - Date.now()))
        server.closeAllConnections()
        h2?.destroyAll()
        for (const c of connectionsOpen.all()) c.socket.destroy()
        clearInterval(sweep)
        await closed
      }
    }

    /**
     * A pipelined request's response waits in node's queue without a socket, and node never
     * emits its `close` when the connection dies first (node 20). Everything downstream (the
     * in-flight count that drain waits on, admission, the pipeline's client-gone handling)
     * keys on that `close`, so emit it here when the connection goes before the response
     * got its socket.
     */
    const settleQueuedOnClose = (res: http.ServerResponse, socket: Socket) => {
      const gone = () => res.emit("close")
      socket.once("close", gone)
      res.once("socket", () => socket.off("close", gone))
    }

    const handler = onRequest(handle)

    /**
     * HTTP/2 (Http2.ts): TLS connections whose ALPN chose h2, and on `protocol "h2"` cleartext
     * connections that open with the preface. Node's own HTTP/1.1 connection handler is taken
     * off the server and called here for everything else, so each connection goes one way.
     */
    const h2 =
      protocol === "http"
        ? undefined
        : startHttp2(
            {
              maxConcurrentStreams: config.maxConcurrentStreams,
              maxHeaderListSize: nodeOptions.maxHeaderSize,
              maxStreamsPerSession: config.keepaliveMaxRequests ?? 0,
              maxEarlyResets: config.maxEarlyResets,
              idleTimeoutMs: t.keepAliveMs
            },
            { onRequest: (req, res) => onHttp2Request(req, res), onConnect: (req, res) => onHttp2Connect(req, res), onDefence }
          )
    if (h2 !== undefined) {
      const http1 = (http as unknown as { _connectionListener?: (this: http.Server, socket: Socket) => void })._connectionListener
      const event = protocol === "https" ? "secureConnection" : "connection"
      if (http1 === undefined || !server.listeners(event).includes(http1)) {
        throw new Error(`this Node.js (${process.version}) does not expose its HTTP/1.1 connection handler; HTTP/2 listeners cannot share a port with it`)
      }
      server.removeListener(event, http1)
      if (protocol === "https") {
        server.on("secureConnection", (socket: TLSSocket) => {
          // the write-timeout sweep watches what the TLS socket has not yet flushed
          const entry = entries.get(tcpSocketOf(socket))
          if (entry !== undefined) (entry as { socket: Socket }).socket = socket
          if (socket.alpnProtocol === "h2") h2.accept(socket)
          else http1.call(server, socket)
        })
      } else {
        server.on("connection", (socket: Socket) => {
          if (refused.has(socket)) return
          sniffPreface(socket, (p) => (p === "h2" ? h2.accept(socket) : http1.call(server, socket)))
        })
      }
    }

    /**
     * In-flight admission, then the pipeline; the slot is given back when the response closes.
     * The handler runs first so that its own close handling (client gone, logging) comes
     * before the slot is given back.
     */
    const admitAndHandle = (req: http.IncomingMessage, res: http.ServerResponse) => {
      inFlight++
      if (admission.tryEnter()) {
        handler(req, res)
        onResponseClose(res, leaveAndSettle)
        return
      }
      const ticket = admission.admit(
        () => handler(req, res),
        (why) => refuse(req, res, why)
      )
      onResponseClose(res, () => {
        ticket.release()
        settled()
      })
    }

    /** An HTTP/2 stream: the same admission and in-flight accounting as an HTTP/1.1 request. */
    const onHttp2Request = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) =>
      admitAndHandle(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse)
    /**
     * An HTTP/2 CONNECT stream. Extended CONNECT (`:protocol`, RFC 8441) is a request like any
     * other (the pipeline validates it and src/websocket/ tunnels `websocket` over the stream); a
     * plain CONNECT gets 405, as on HTTP/1.1.
     */
    const onHttp2Connect = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
      if (req.headers[":protocol"] !== undefined) return onHttp2Request(req, res)
      hooks.onClientError({
        listener: config.id,
        status: METHOD_CONNECT.status,
        reason: METHOD_CONNECT.reason,
        clientIp: req.socket?.remoteAddress ?? "",
        stage: "request",
        req: req as unknown as http.IncomingMessage,
        bytesSent: answerBytes(METHOD_CONNECT)
      })
      const r = res as unknown as http.ServerResponse
      r.setHeader("allow", CONNECT_ALLOW)
      r.end(writeAnswer(r, METHOD_CONNECT, false))
    }
    const queueTimeoutMs = admissionConfigFor(limits).queueTimeoutMs
    const refuse = (req: http.IncomingMessage, res: http.ServerResponse, reason: string) => {
      const answer = errorAnswer(new Overloaded({ reason }))
      hooks.onClientError({
        listener: config.id,
        status: answer.status,
        reason,
        clientIp: req.socket.remoteAddress ?? "",
        stage: "request",
        req,
        // a queue timeout waited the whole queue deadline; a full queue refuses at once
        durationMs: reason === "in_flight_queue_timeout" ? queueTimeoutMs : 0,
        bytesSent: res.headersSent || res.destroyed ? 0 : answerBytes(answer)
      })
      if (res.headersSent || res.destroyed) return
      const h1 = !isHttp2Message(req)
      if (h1) {
        res.shouldKeepAlive = false
        markClosing(req.socket)
      }
      res.end(writeAnswer(res, answer, h1))
    }

    /** A request's response closed: one fewer in flight (drain waits for none). */
    const settled = () => {
      inFlight--
      if (draining) {
        // Responses during a drain carry `Connection: close`; sweep what went idle.
        setImmediate(() => server.closeIdleConnections())
        if (inFlight === 0) idle?.()
      }
    }
    const leaveAndSettle = () => {
      admission.leave()
      settled()
    }

    server.on("request", (req, res) => {
      const socket = req.socket
      if (refused.has(socket)) {
        socket.destroy()
        return
      }
      // pipelined behind a refused request: never served (node closes after the refusal)
      if (isClosing(socket)) return
      if (res.socket === null) settleQueuedOnClose(res, socket)
      if (t.bodyIdleMs > 0) watchBody(req, res, socket, config.id, t, hooks.onClientError)
      admitAndHandle(req, res)
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
    // node's cluster hands a worker the keys the first worker listened with; after a rotation
    // (or a restart) the process tree's current keys are the ones every worker must use
    if (protocol === "https") (server as https.Server).setTicketKeys(ticketKeys())
    return handle
  })
