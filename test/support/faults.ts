/**
 * Named fault-injection origins for tests (Caddy style: small, named after the fault).
 *
 * Every helper listens on 127.0.0.1 port 0 and returns `{ port, url, close }`; `close()`
 * destroys every open socket so no test leaves a handle behind. Raw `node:net` origins are
 * used where the fault is below HTTP (reset, hang, trickle); `statusOrigin` is a real
 * `node:http` server. Counters (`connections`, `requests`) let tests wait on events instead
 * of sleeping.
 */
import * as http from "node:http"
import * as net from "node:net"
import * as Effect from "effect/Effect"

export interface FaultOrigin {
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  /** Stops listening and destroys every open socket. Idempotent. */
  readonly close: () => Promise<void>
}

export interface CountingOrigin extends FaultOrigin {
  /** TCP connections accepted so far. */
  readonly connections: () => number
  /** Complete request heads received so far. */
  readonly requests: () => number
  /** Connections open now (to check a client closed its pool). */
  readonly openConnections: () => number
}

/** Wraps a fault origin as a scoped Effect resource (closed when the scope closes). */
export const scoped = <A extends FaultOrigin>(make: () => Promise<A>): Effect.Effect<A, never, import("effect").Scope.Scope> =>
  Effect.acquireRelease(Effect.promise(make), (o) => Effect.promise(() => o.close()))

const listen = (server: net.Server): Promise<number> =>
  new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject)
      resolve((server.address() as net.AddressInfo).port)
    })
  })

/** `close()` for a fault origin: destroys its sockets, then closes the server (once). */
const closer = (server: net.Server, sockets: Set<net.Socket>, extra?: () => void) => {
  let closing: Promise<void> | undefined
  return () =>
    (closing ??= new Promise<void>((resolve) => {
      extra?.()
      for (const s of sockets) s.destroy()
      sockets.clear()
      server.close(() => resolve())
    }))
}

/**
 * Listens on 127.0.0.1 port 0 and counts `server`'s connections: the part every counting
 * origin shares. `sockets` holds the open ones, for origins that act on them.
 */
export const serveCounting = async (
  server: net.Server,
  requests: () => number,
  extra?: () => void
): Promise<CountingOrigin & { readonly sockets: ReadonlySet<net.Socket> }> => {
  const sockets = new Set<net.Socket>()
  let connections = 0
  server.on("connection", (socket: net.Socket) => {
    connections++
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  const port = await listen(server)
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: closer(server, sockets, extra),
    connections: () => connections,
    requests,
    openConnections: () => sockets.size,
    sockets
  }
}

/**
 * A raw origin: calls `onHead(socket)` once per complete request head (up to `\r\n\r\n`).
 * Bodies are not parsed; the faults here do not need them.
 */
const rawOrigin = async (onHead: (socket: net.Socket) => void, extra?: () => void): Promise<CountingOrigin> => {
  let requests = 0
  const server = net.createServer((socket) => {
    socket.on("error", () => {})
    let buffered = ""
    socket.on("data", (chunk) => {
      buffered += chunk.toString("latin1")
      // bounded: a test origin, but never grow without limit
      if (buffered.length > 1 << 20) buffered = buffered.slice(-4096)
      let at: number
      while ((at = buffered.indexOf("\r\n\r\n")) !== -1) {
        buffered = buffered.slice(at + 4)
        requests++
        onHead(socket)
      }
    })
  })
  const { sockets: _, ...origin } = await serveCounting(server, () => requests, extra)
  return origin
}

/**
 * A port on which nothing listens: connecting gets ECONNREFUSED. Bound once on port 0 to
 * get a free number, then released (another process could take it in between; unlikely in
 * the short life of a test).
 */
export const refusingPort = async (): Promise<FaultOrigin> => {
  const server = net.createServer()
  const port = await listen(server)
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return { port, url: `http://127.0.0.1:${port}`, close: async () => {} }
}

/**
 * Accepts connections and reads requests but never writes a byte: the client's
 * header timeout (or ours) must fire.
 */
export const hangingOrigin = (): Promise<CountingOrigin> => rawOrigin(() => {})

export interface ResettingOriginOptions {
  /**
   * "mid-body" (default): status + headers with `Content-Length: declaredLength`, then
   * `sentBytes` of body, then the fault. "before-response": the fault as soon as the request
   * head arrives (nothing written).
   */
  readonly when?: "mid-body" | "before-response"
  /** "rst" (default): TCP reset (`resetAndDestroy`). "fin": a clean close, i.e. short body. */
  readonly how?: "rst" | "fin"
  /** Declared Content-Length; default 100. */
  readonly declaredLength?: number
  /** Body bytes actually sent before the fault; default 10. */
  readonly sentBytes?: number
}

/** An origin that resets (or closes) the connection, by default in the middle of the body. */
export const resettingOrigin = (options: ResettingOriginOptions = {}): Promise<CountingOrigin> => {
  const when = options.when ?? "mid-body"
  const how = options.how ?? "rst"
  const declared = options.declaredLength ?? 100
  const sent = Math.min(options.sentBytes ?? 10, declared)
  const fault = (socket: net.Socket) => {
    if (how === "rst") socket.resetAndDestroy()
    else socket.end()
  }
  return rawOrigin((socket) => {
    if (when === "before-response") return fault(socket)
    socket.write(
      `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${declared}\r\n\r\n` + "x".repeat(sent),
      // the fault goes out after the partial body has been handed to the kernel
      () => setImmediate(() => fault(socket))
    )
  })
}

export interface TricklingOriginOptions {
  /** Bytes written per tick; default 1. */
  readonly bytesPerTick?: number
  /** Milliseconds between ticks; default 1000. */
  readonly intervalMs?: number
  /** Declared Content-Length (the body it would eventually complete); default 1000. */
  readonly declaredLength?: number
  /** "body" (default): headers at once, then the body trickles. "headers": the status line and headers trickle. */
  readonly phase?: "body" | "headers"
}

/** An origin that answers, but slowly: one small write per interval. */
export const tricklingOrigin = (options: TricklingOriginOptions = {}): Promise<CountingOrigin> => {
  const per = options.bytesPerTick ?? 1
  const interval = options.intervalMs ?? 1000
  const declared = options.declaredLength ?? 1000
  const phase = options.phase ?? "body"
  const timers = new Set<NodeJS.Timeout>()
  const head = `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${declared}\r\n\r\n`
  return rawOrigin(
    (socket) => {
      let pending = phase === "headers" ? head + "x".repeat(declared) : "x".repeat(declared)
      if (phase === "body") socket.write(head)
      const timer = setInterval(() => {
        if (socket.destroyed || pending.length === 0) {
          clearInterval(timer)
          timers.delete(timer)
          return
        }
        socket.write(pending.slice(0, per))
        pending = pending.slice(per)
      }, interval)
      timers.add(timer)
    },
    () => {
      for (const t of timers) clearInterval(t)
      timers.clear()
    }
  )
}

export interface StatusOrigin extends CountingOrigin {
  /** Changes the status answered from now on (e.g. to flip a health check). */
  readonly setStatus: (status: number) => void
  /** Paths requested so far, in order (bounded to the last 1000). */
  readonly paths: () => ReadonlyArray<string>
}

/** A real HTTP origin answering every request with `status` (changeable) and a short body. */
export const statusOrigin = async (status = 503, body = "status-origin\n"): Promise<StatusOrigin> => {
  let current = status
  let requests = 0
  const paths: Array<string> = []
  const server = http.createServer((req, res) => {
    requests++
    paths.push(req.url ?? "")
    if (paths.length > 1000) paths.shift()
    req.resume()
    res.writeHead(current, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) })
    res.end(body)
  })
  const { sockets: _, ...origin } = await serveCounting(server, () => requests)
  return {
    ...origin,
    setStatus: (s) => {
      current = s
    },
    paths: () => paths
  }
}
