/**
 * Raw HTTP/1.x over `node:net`: exact request bytes in, every response byte out. For tests that
 * must send what no HTTP client would (smuggling vectors, bad Host, HTTP/0.9, trickled heads).
 */
import * as net from "node:net"

export interface RawReply {
  /** Everything the server sent until it closed (or the deadline). */
  readonly raw: string
  /** Status of the first response, 0 when none arrived. */
  readonly status: number
  /** Statuses of every response found in `raw` (pipelining). */
  readonly statuses: ReadonlyArray<number>
  /** The server closed the connection (FIN or reset) before the deadline. */
  readonly closed: boolean
  /** Milliseconds from connect to close (or deadline). */
  readonly elapsedMs: number
}

export const statusesOf = (raw: string): Array<number> => [...raw.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]))

/** Headers of the first response, lower-case names. */
export const headersOf = (raw: string): Record<string, string> => {
  const head = raw.split("\r\n\r\n")[0] ?? ""
  const out: Record<string, string> = {}
  for (const line of head.split("\r\n").slice(1)) {
    const i = line.indexOf(":")
    if (i > 0) out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  return out
}

export interface RawOptions {
  /** Give up (and destroy the socket) after this long. Default 3000 ms. */
  readonly timeoutMs?: number
  /** Half-close after writing (the server sees EOF). Default false. */
  readonly end?: boolean
  /** Resolve as soon as this many responses are complete-looking (status lines seen). Default: wait for close. */
  readonly responses?: number
  readonly localAddress?: string
}

/** Sends `bytes` on a fresh connection and collects the answer until the server closes it. */
export const rawRequest = (port: number, bytes: string | Buffer, options: RawOptions = {}): Promise<RawReply> =>
  new Promise((resolve) => {
    const started = Date.now()
    const chunks: Array<Buffer> = []
    const socket = net.connect({ port, host: "127.0.0.1", localAddress: options.localAddress })
    let done = false
    const finish = (closed: boolean) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      const raw = Buffer.concat(chunks).toString("latin1")
      const statuses = statusesOf(raw)
      resolve({ raw, status: statuses[0] ?? 0, statuses, closed, elapsedMs: Date.now() - started })
    }
    const timer = setTimeout(() => finish(false), options.timeoutMs ?? 3000)
    socket.on("data", (c: Buffer) => {
      chunks.push(c)
      if (options.responses !== undefined && statusesOf(Buffer.concat(chunks).toString("latin1")).length >= options.responses) {
        // let the body of the last response arrive in the same turn; the caller only needs heads
        setImmediate(() => finish(false))
      }
    })
    socket.on("close", () => finish(true))
    socket.on("error", () => finish(true))
    socket.on("connect", () => {
      socket.write(bytes)
      if (options.end === true) socket.end()
    })
  })

/** Resolves when `socket` is closed by the peer (or rejects after `timeoutMs`). */
export const closedWithin = (socket: net.Socket, timeoutMs: number): Promise<number> =>
  new Promise((resolve, reject) => {
    const started = Date.now()
    if (socket.destroyed) return resolve(0)
    const t = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs)
    socket.once("close", () => {
      clearTimeout(t)
      resolve(Date.now() - started)
    })
  })

/** Opens a connection and resolves once connected. */
export const connect = (port: number, localAddress?: string): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1", localAddress })
    s.once("connect", () => resolve(s))
    s.once("error", reject)
  })
