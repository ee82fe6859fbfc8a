/**
 * The gRPC client calls of an agent, on node:http2 directly: one HTTP/2 connection per agent
 * and ProcessStream calls on it (gRPC over HTTP/2 as the spec has it: POST, `content-type:
 * application/grpc`, `te: trailers`, messages framed `[compressed u8][length u32 BE][bytes]`,
 * the status in the trailers, or in the headers of a trailers-only answer).
 *
 * Why not @grpc/grpc-js's client: every message there goes through its call layers (retrying
 * call, filter stack with the compression filter's promises, load-balancing and subchannel
 * calls, a stream decoder, an object-mode Duplex): the transport cost ~19 µs of CPU per call
 * with it, ~12 µs without (bench/README.md, "profile.mjs --agent", issue 16). What the proxy
 * used of that channel is here: TLS / mTLS (the same options), HTTP/2 keepalive pings with a
 * timeout, message limits both ways, the status of a call (UNIMPLEMENTED for the package
 * fallback, others as the reason of the drop); reconnecting is the transport's own backoff per
 * stream (GrpcTransport.ts). Messages are never compressed (`grpc-accept-encoding: identity`;
 * a compressed one fails the call, as Sentinel's agents never compress).
 */
import * as fs from "node:fs"
import * as http2 from "node:http2"
import * as net from "node:net"
import * as tlsModule from "node:tls"

/** TLS to the agent (`grpc address="https://..." { tls; ca-cert ...; client-cert ...; client-key ... }`). */
export interface GrpcTlsConfig {
  /** `tls-insecure`: TLS without verifying the agent's certificate. Default false. */
  readonly insecure?: boolean
  /** `ca-cert`: PEM file of the CA(s) the agent's certificate must chain to. Default: the system roots. */
  readonly caCert?: string
  /** `client-cert` / `client-key`: PEM files of the proxy's certificate for mTLS. Default none. */
  readonly clientCert?: string
  readonly clientKey?: string
}

/** gRPC status codes by number (their names, for reasons). */
const STATUS_NAMES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
  "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"
] as const
export const Status = { OK: 0, CANCELLED: 1, UNKNOWN: 2, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14 } as const
export const statusName = (code: number): string => STATUS_NAMES[code] ?? String(code)

/** The gRPC status of an answer that is not HTTP 200 (the spec's mapping). */
export const statusOfHttp = (status: number): number =>
  status === 400 ? 13 : status === 401 ? 16 : status === 403 ? 7 : status === 404 ? 12 : status === 429 || status === 502 || status === 503 || status === 504 ? 14 : 2

/**
 * The `http2.connect` authority and options for an address and its TLS settings (files read now:
 * throws when one cannot be read). The connection is made here (`createConnection`), as grpc-js
 * makes it: TCP with TCP_NODELAY (a message waits for no ACK: without it, under load, a call
 * waited up to the agent's delayed ACK), TLS over it when configured (ALPN h2, the certificate
 * checked against the address's host).
 */
export const connectOptions = (address: string, tls: GrpcTlsConfig | undefined): { readonly authority: string; readonly options: http2.SecureClientSessionOptions } => {
  const u = new URL(address)
  const https = u.protocol === "https:" || tls !== undefined
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname
  const port = u.port === "" ? (u.protocol === "https:" ? 443 : 80) : Number(u.port)
  const authority = `${https ? "https" : "http"}://${u.host}`
  // as grpc-js: node's 10 MB session memory limit off (its behaviour at the limit degrades
  // badly; bodies go out in messages of up to 10 MiB, the proxy's own limits bound them)
  const session = { settings: { enablePush: false }, maxSessionMemory: Number.MAX_SAFE_INTEGER, maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER }
  const tcp = () => net.connect({ host, port }).setNoDelay(true)
  if (!https) return { authority, options: { ...session, createConnection: tcp } }
  const read = (f: string | undefined) => (f === undefined ? undefined : fs.readFileSync(f))
  const insecure = tls?.insecure === true
  const ca = read(tls?.caCert)
  const cert = read(tls?.clientCert)
  const key = read(tls?.clientKey)
  // made now, so a bad PEM is a setup error of the agent, not a failure of every connect
  const secureContext = tlsModule.createSecureContext({
    ...(ca !== undefined ? { ca } : {}),
    ...(cert !== undefined && key !== undefined ? { cert, key } : {})
  })
  const tlsOptions: tlsModule.ConnectionOptions = {
    host,
    ...(net.isIP(host) === 0 ? { servername: host } : {}),
    ALPNProtocols: ["h2"],
    secureContext,
    rejectUnauthorized: !insecure,
    ...(insecure ? { checkServerIdentity: () => undefined } : {})
  }
  return { authority, options: { ...session, createConnection: () => tlsModule.connect({ ...tlsOptions, socket: tcp() }) } }
}

export interface CallHandlers {
  /** One message's bytes (a view into the received data: decode it before returning). */
  readonly onMessage: (bytes: Buffer) => void
  /** The call ended (not after `cancel`): its status, OK when the agent ended it normally. */
  readonly onClose: (code: number, details: string) => void
}

const grpcMessage = (v: unknown): string => {
  if (typeof v !== "string") return ""
  try {
    return decodeURIComponent(v)
  } catch {
    return v
  }
}

/**
 * gRPC messages out of the received data, however HTTP/2 cut it: each whole message handed
 * over as a view (no copy when it lies in one chunk), the rest kept for the next chunk. A
 * compressed message or one over the limit is an error, and nothing is read after it.
 */
export class Deframer {
  private buffered: Buffer | undefined
  private failed = false
  constructor(private readonly maxMessageBytes: number) {}

  push(chunk: Buffer, onMessage: (bytes: Buffer) => void): { readonly code: number; readonly details: string } | undefined {
    if (this.failed) return undefined
    const buf = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk])
    this.buffered = undefined
    let at = 0
    while (buf.length - at >= 5) {
      const len = buf.readUInt32BE(at + 1)
      if (buf[at] !== 0) return this.fail(Status.INTERNAL, "received a compressed message (compression is not negotiated)")
      if (len > this.maxMessageBytes) return this.fail(Status.RESOURCE_EXHAUSTED, `received a message of ${len} bytes, over the limit of ${this.maxMessageBytes}`)
      if (buf.length - at - 5 < len) break
      onMessage(buf.subarray(at + 5, at + 5 + len))
      if (this.failed) return undefined
      at += 5 + len
    }
    if (at < buf.length) this.buffered = at === 0 ? buf : buf.subarray(at)
    return undefined
  }

  /** Stops reading (the call ended). */
  stop(): void {
    this.failed = true
    this.buffered = undefined
  }

  private fail(code: number, details: string) {
    this.stop()
    return { code, details }
  }
}

/** One bidirectional call: frames out, messages in, one close. */
export class H2Call {
  private done = false
  private code = -1
  private details = ""
  private readonly deframer: Deframer

  constructor(
    private readonly stream: http2.ClientHttp2Stream,
    private readonly handlers: CallHandlers,
    maxMessageBytes: number
  ) {
    this.deframer = new Deframer(maxMessageBytes)
    stream.on("response", (headers) => {
      const status = Number(headers[":status"])
      if (headers["grpc-status"] !== undefined) this.status(headers) // trailers-only
      else if (status !== 200) this.fail(statusOfHttp(status), `HTTP status ${status}`)
    })
    stream.on("trailers", (trailers) => this.status(trailers))
    stream.on("data", (chunk: Buffer) => this.data(chunk))
    // the agent ended its side (after the trailers, normally): end ours, so the stream closes
    stream.on("end", () => {
      if (!this.done && !stream.destroyed) stream.close(this.code === Status.OK ? http2.constants.NGHTTP2_NO_ERROR : http2.constants.NGHTTP2_CANCEL)
    })
    stream.on("error", (e: Error & { code?: string }) => {
      if (this.code < 0) this.fail(Status.UNAVAILABLE, e.message)
    })
    stream.on("close", () => this.closed())
  }

  /** Sends one framed message (`frame`: from `frameOf` or an encoder that leaves the 5 bytes). */
  write(frame: Buffer): void {
    if (this.done) return
    this.stream.write(frame)
  }

  /** Ends the call from this side (RST_STREAM CANCEL); no `onClose`. */
  cancel(): void {
    if (this.done) return
    this.done = true
    this.deframer.stop()
    if (!this.stream.destroyed) this.stream.close(http2.constants.NGHTTP2_CANCEL)
  }

  private status(h: http2.IncomingHttpHeaders): void {
    if (this.code >= 0) return
    const code = Number(h["grpc-status"])
    this.code = Number.isInteger(code) && code >= 0 ? code : Status.UNKNOWN
    this.details = grpcMessage(h["grpc-message"])
  }

  private fail(code: number, details: string): void {
    if (this.code < 0) {
      this.code = code
      this.details = details
    }
    if (!this.done && !this.stream.destroyed) this.stream.close(http2.constants.NGHTTP2_CANCEL)
  }

  private data(chunk: Buffer): void {
    const error = this.deframer.push(chunk, this.handlers.onMessage)
    if (error !== undefined) this.fail(error.code, error.details)
  }

  private closed(): void {
    if (this.done) return
    this.done = true
    this.deframer.stop()
    if (this.code < 0) {
      const rst = this.stream.rstCode
      if (rst === undefined || rst === http2.constants.NGHTTP2_NO_ERROR) this.fail(Status.INTERNAL, "the call ended without a status")
      else if (rst === http2.constants.NGHTTP2_REFUSED_STREAM) this.fail(Status.UNAVAILABLE, "stream refused by the agent")
      else if (rst === http2.constants.NGHTTP2_CANCEL) this.fail(Status.CANCELLED, "stream cancelled by the agent")
      else this.fail(Status.INTERNAL, `received RST_STREAM with code ${rst}`)
    }
    this.handlers.onClose(this.code, this.details)
  }
}

/** A gRPC message framed: 5 bytes of header, then the bytes (a copy). */
export const frameOf = (bytes: Uint8Array): Buffer => {
  const f = Buffer.allocUnsafe(bytes.length + 5)
  f[0] = 0
  f.writeUInt32BE(bytes.length, 1)
  f.set(bytes, 5)
  return f
}

export interface ChannelConfig {
  readonly address: string
  readonly tls?: GrpcTlsConfig
  /** HTTP/2 ping period, ms; 0 = none. */
  readonly keepaliveMs: number
  /** How long a ping may stay unanswered before the connection is closed, ms. */
  readonly keepaliveTimeoutMs: number
  readonly maxMessageBytes: number
}

const REQUEST_HEADERS = {
  "content-type": "application/grpc",
  te: "trailers",
  "grpc-accept-encoding": "identity",
  "user-agent": "sentinel-ts-grpc/1"
} as const

/** One HTTP/2 connection to the agent, opened on the first call and again after it closed. */
export class H2Channel {
  private session: http2.ClientHttp2Session | undefined
  private pingTimer: ReturnType<typeof setInterval> | undefined
  private readonly authority: string
  private readonly options: http2.SecureClientSessionOptions

  /** Throws when a TLS file cannot be read or the address does not parse. */
  constructor(private readonly config: ChannelConfig) {
    const { authority, options } = connectOptions(config.address, config.tls)
    this.authority = authority
    this.options = options
  }

  /** Starts a call on `path` (on a connection being opened, if need be: it waits for it). */
  call(path: string, handlers: CallHandlers): H2Call {
    const stream = this.connected().request({ ":method": "POST", ":path": path, ...REQUEST_HEADERS }, { endStream: false })
    return new H2Call(stream, handlers, this.config.maxMessageBytes)
  }

  /** Closes a connection that never came up (its calls fail), so the next call dials again. */
  abandonIfConnecting(): void {
    const s = this.session
    if (s !== undefined && s.connecting) s.destroy(new Error("connect timed out"))
  }

  /** Closes the connection; calls on it fail. */
  close(): void {
    this.session?.destroy()
    this.session = undefined
    this.stopPings()
  }

  private connected(): http2.ClientHttp2Session {
    const current = this.session
    if (current !== undefined && !current.closed && !current.destroyed) return current
    const s = http2.connect(this.authority, this.options)
    this.session = s
    s.unref() // as grpc-js: the connection alone keeps no process alive
    s.on("error", () => {
      // each call on it fails with the error and reports it
    })
    s.on("close", () => {
      if (this.session === s) {
        this.session = undefined
        this.stopPings()
      }
    })
    if (this.config.keepaliveMs > 0) {
      this.stopPings()
      s.once("connect", () => {
        if (this.session === s) this.startPings(s)
      })
    }
    return s
  }

  private startPings(s: http2.ClientHttp2Session): void {
    let unanswered: ReturnType<typeof setTimeout> | undefined
    this.pingTimer = setInterval(() => {
      if (unanswered !== undefined || s.destroyed) return
      unanswered = setTimeout(() => s.destroy(new Error("keepalive ping not answered")), this.config.keepaliveTimeoutMs)
      unanswered.unref()
      try {
        s.ping(() => {
          clearTimeout(unanswered)
          unanswered = undefined
        })
      } catch {
        // the session is closing
      }
    }, this.config.keepaliveMs)
    this.pingTimer.unref()
    s.once("close", () => clearTimeout(unanswered))
  }

  private stopPings(): void {
    if (this.pingTimer !== undefined) clearInterval(this.pingTimer)
    this.pingTimer = undefined
  }
}
