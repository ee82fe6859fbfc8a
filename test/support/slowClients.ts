/**
 * Misbehaving clients for the edge's slow-client deadlines (edge-security.md §3), each a raw
 * `node:net` socket that records when the proxy closed it and what it answered:
 * - `slowlorisClient`: a request head that never ends (one header line every `everyMs`);
 * - `slowPostClient`: a complete head, then the body one byte every `everyMs` (or never);
 * - `slowReader`: asks for a large response and never reads it.
 */
import * as net from "node:net"

export interface SlowClient {
  readonly socket: net.Socket
  /** Resolves with ms from connect to the proxy closing the socket. */
  readonly closed: Promise<number>
  /** Bytes received so far (latin1). */
  readonly received: () => string
  readonly stop: () => void
}

const open = (port: number, onConnect: (s: net.Socket) => NodeJS.Timeout | undefined, readable = true): Promise<SlowClient> =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1" })
    const chunks: Array<Buffer> = []
    let timer: NodeJS.Timeout | undefined
    let started = 0
    const closed = new Promise<number>((r) => socket.once("close", () => {
      clearInterval(timer)
      r(Date.now() - started)
    }))
    socket.on("error", () => undefined)
    if (readable) socket.on("data", (c: Buffer) => chunks.push(c))
    socket.once("connect", () => {
      started = Date.now()
      timer = onConnect(socket)
      resolve({
        socket,
        closed,
        received: () => Buffer.concat(chunks).toString("latin1"),
        stop: () => {
          clearInterval(timer)
          socket.destroy()
        }
      })
    })
    socket.once("error", reject)
  })

/** Sends a request line, then one header line every `everyMs`, never the blank line. */
export const slowlorisClient = (port: number, everyMs = 200): Promise<SlowClient> =>
  open(port, (s) => {
    s.write("GET /slowloris HTTP/1.1\r\nHost: a.example\r\n")
    let i = 0
    return setInterval(() => {
      if (!s.destroyed) s.write(`X-Slow-${i++}: a\r\n`)
    }, everyMs)
  })

/** A POST announcing `length` bytes, then one byte every `everyMs` (0 = the body never comes). */
export const slowPostClient = (port: number, length: number, everyMs: number, path = "/upload"): Promise<SlowClient> =>
  open(port, (s) => {
    s.write(`POST ${path} HTTP/1.1\r\nHost: a.example\r\nContent-Length: ${length}\r\n\r\nx`)
    if (everyMs === 0) return undefined
    return setInterval(() => {
      if (!s.destroyed) s.write("x")
    }, everyMs)
  })

/** Requests `path` and never reads the answer (the TCP window fills, the proxy's writes stall). */
export const slowReader = (port: number, path: string): Promise<SlowClient> =>
  open(
    port,
    (s) => {
      s.pause()
      s.write(`GET ${path} HTTP/1.1\r\nHost: a.example\r\n\r\n`)
      return undefined
    },
    false
  )
