/**
 * An HTTP origin that holds every answer until `gate` requests are waiting, then answers
 * them all (and every later request at once). A burst of `gate` concurrent requests through
 * a pool therefore needs `gate` connections at the same time: the way to fill a pool and then
 * watch how many connections stay open once it idles. Counts connections at the origin side
 * (`connection` / `close` events). Listens on 127.0.0.1 port 0; `close()` destroys every socket.
 */
import * as http from "node:http"
import { type CountingOrigin, serveCounting } from "./faults.js"

export const gatedOrigin = async (gate: number): Promise<CountingOrigin> => {
  let requests = 0
  let open = false
  const held: Array<http.ServerResponse> = []
  const answer = (res: http.ServerResponse) => {
    res.writeHead(200, { "content-type": "text/plain", "content-length": "3" })
    res.end("ok\n")
  }
  const server = http.createServer((req, res) => {
    requests++
    req.resume()
    if (open) return answer(res)
    held.push(res)
    if (held.length >= gate) {
      open = true
      for (const r of held.splice(0)) answer(r)
    }
  })
  server.keepAliveTimeout = 60_000
  const { sockets: _, ...origin } = await serveCounting(server, () => requests)
  return origin
}
