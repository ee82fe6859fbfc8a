/**
 * An origin for slow-reader tests: `GET /<name>?n=BYTES` answers BYTES of a pattern seeded
 * by the path (so a response delivered to the wrong request, or cut and spliced, shows), in
 * 64 KiB writes with back-pressure, and reports per path when its response:
 * - `stalled`: the proxy stopped reading it (the origin's socket kept bytes pending that did
 *   not move over three 20 ms checks: the proxy paused the exchange);
 * - `finished`: was handed to the kernel whole; `aborted`: was cut by the proxy.
 * `?after=/<other>` holds the head back until `/<other>` stalled, which makes a pipelined
 * response start exactly while the one before it is paused on its client. A POST is answered
 * once its body arrived whole.
 */
import * as http from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { patternBytes } from "./origins.js"

export interface BigOrigin {
  readonly port: number
  readonly address: string
  /** Paths requested, in arrival order. */
  readonly arrived: Array<string>
  /** Responses being written now. */
  readonly active: () => number
  readonly stalled: (path: string) => Promise<void>
  readonly finished: (path: string) => Promise<void>
  readonly aborted: (path: string) => Promise<void>
  readonly close: () => Promise<void>
}

/** The body `GET path?n=size` answers. */
export const bigBody = (path: string, size: number): Buffer => {
  let seed = 0
  for (const c of path) seed = (seed * 33 + c.charCodeAt(0)) % 1_000_003
  return patternBytes(size, seed)
}

const events = () => {
  const seen = new Set<string>()
  const waiting = new Map<string, Array<() => void>>()
  return {
    mark(key: string) {
      if (seen.has(key)) return
      seen.add(key)
      for (const w of waiting.get(key) ?? []) w()
      waiting.delete(key)
    },
    wait: (key: string): Promise<void> =>
      seen.has(key) ? Promise.resolve() : new Promise((r) => waiting.set(key, [...(waiting.get(key) ?? []), r]))
  }
}

export const startBigOrigin = async (): Promise<BigOrigin> => {
  const stalls = events()
  const finishes = events()
  const aborts = events()
  const arrived: Array<string> = []
  let active = 0
  const sockets = new Set<Socket>()

  /** Marks `path` stalled once its socket's pending output stops moving (bounded: stops with the response). */
  const watchStall = (path: string, res: http.ServerResponse) => {
    const socket = res.socket!
    let last = -1
    let still = 0
    const timer = setInterval(() => {
      if (res.writableFinished || socket.destroyed) return clearInterval(timer)
      const moved = socket.bytesWritten
      if (socket.writableLength > 0 && moved === last) {
        if (++still >= 3) {
          clearInterval(timer)
          stalls.mark(path)
        }
      } else still = 0
      last = moved
    }, 20)
    res.once("close", () => clearInterval(timer))
  }

  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x")
    const path = u.pathname
    arrived.push(path)
    req.resume()
    const size = Number(u.searchParams.get("n") ?? 1 << 20)
    const body = bigBody(path, size)
    res.once("close", () => {
      active--
      if (res.writableFinished) finishes.mark(path)
      else aborts.mark(path)
    })
    active++
    const send = () => {
      if (res.destroyed) return
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size })
      let at = 0
      const pump = () => {
        while (at < size) {
          const chunk = body.subarray(at, Math.min(size, at + 65536))
          at += chunk.length
          if (!res.write(chunk)) {
            res.once("drain", pump)
            return
          }
        }
        res.end()
      }
      pump()
      watchStall(path, res)
    }
    const after = u.searchParams.get("after")
    // an upload is answered once it arrived whole
    if (req.method === "POST") req.once("end", send)
    else if (after === null) send()
    else void stalls.wait(after).then(send)
  })
  server.on("connection", (s: Socket) => {
    sockets.add(s)
    s.once("close", () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    address: `127.0.0.1:${port}`,
    arrived,
    active: () => active,
    stalled: stalls.wait,
    finished: finishes.wait,
    aborted: aborts.wait,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      })
  }
}
