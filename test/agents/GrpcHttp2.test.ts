import fc from "fast-check"
import * as http2 from "node:http2"
import type { AddressInfo } from "node:net"
import { afterEach, describe, expect, it } from "vitest"
import { Deframer, frameOf, H2Channel, Status, statusOfHttp } from "../../src/agents/GrpcHttp2.js"

const messages = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 })

/** `whole` cut at the given points (sorted, deduplicated, within it). */
const cut = (whole: Buffer, points: ReadonlyArray<number>): Array<Buffer> => {
  const at = [...new Set(points.map((p) => p % (whole.length + 1)))].sort((a, b) => a - b)
  const out: Array<Buffer> = []
  let from = 0
  for (const p of [...at, whole.length]) {
    out.push(whole.subarray(from, p))
    from = p
  }
  return out
}

describe("Deframer: gRPC messages out of HTTP/2 data however it is cut", () => {
  it("hands over each message once, in order, with its bytes, for any cutting of the stream", () => {
    fc.assert(
      fc.property(messages, fc.array(fc.nat(), { maxLength: 20 }), (ms, points) => {
        const d = new Deframer(1000)
        const got: Array<Buffer> = []
        for (const chunk of cut(Buffer.concat(ms.map(frameOf)), points)) {
          expect(d.push(chunk, (b) => got.push(Buffer.from(b)))).toBeUndefined()
        }
        expect(got.map((b) => b.toString("hex"))).toEqual(ms.map((m) => Buffer.from(m).toString("hex")))
      }),
      { numRuns: 500 }
    )
  })

  it("a compressed message or one over the limit is an error (as soon as its header is in), and nothing is read after it", () => {
    fc.assert(
      fc.property(messages, fc.constantFrom("compressed", "oversize"), fc.array(fc.nat(), { maxLength: 10 }), (before, bad, points) => {
        const d = new Deframer(300)
        const wrong = bad === "compressed" ? Buffer.from([1, 0, 0, 0, 1, 7]) : Buffer.from([0, 0, 0, 1, 45])
        const got: Array<Buffer> = []
        const errors: Array<number> = []
        for (const chunk of cut(Buffer.concat([...before.map(frameOf), wrong, frameOf(Buffer.from("after"))]), points)) {
          const e = d.push(chunk, (b) => got.push(Buffer.from(b)))
          if (e !== undefined) errors.push(e.code)
        }
        expect(errors).toEqual([bad === "compressed" ? Status.INTERNAL : Status.RESOURCE_EXHAUSTED])
        expect(got.length).toBe(before.length)
      })
    )
  })

  it("HTTP statuses map to gRPC codes as the spec says", () => {
    expect([400, 401, 403, 404, 429, 502, 503, 504, 500, 302].map(statusOfHttp)).toEqual([13, 16, 7, 12, 14, 14, 14, 14, 2, 2])
  })
})

// -- H2Channel against a real node:http2 server ---------------------------------

type Handler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void
const servers: Array<http2.Http2Server> = []
const channels: Array<H2Channel> = []
afterEach(async () => {
  for (const c of channels.splice(0)) c.close()
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))))
})

const serve = async (handler: Handler): Promise<string> => {
  const server = http2.createServer()
  server.on("stream", handler)
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const channel = (address: string, keepaliveMs = 0): H2Channel => {
  const c = new H2Channel({ address, keepaliveMs, keepaliveTimeoutMs: 1000, maxMessageBytes: 1 << 20 })
  channels.push(c)
  return c
}

/** A call's messages and its close, as promises. */
const open = (c: H2Channel, path = "/p.S/M") => {
  const got: Array<string> = []
  let closed!: (v: { code: number; details: string }) => void
  const close = new Promise<{ code: number; details: string }>((r) => (closed = r))
  const call = c.call(path, { onMessage: (b) => got.push(b.toString()), onClose: (code, details) => closed({ code, details }) })
  return { call, got, close }
}

const answer = (stream: http2.ServerHttp2Stream) =>
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true })

describe("H2Channel: gRPC calls on node:http2", () => {
  it("sends a gRPC request (POST, content-type, te, path), frames both ways, and the trailers' status ends the call", async () => {
    let seen: http2.IncomingHttpHeaders | undefined
    const address = await serve((stream, headers) => {
      seen = headers
      answer(stream)
      const d = new Deframer(1 << 20)
      let n = 0
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }))
      stream.on("data", (chunk: Buffer) =>
        d.push(chunk, (b) => {
          stream.write(frameOf(Buffer.from(`echo ${b.toString()}`)))
          if (++n === 3) stream.end()
        })
      )
    })
    const { call, got, close } = open(channel(address))
    for (const m of ["a", "bb", "ccc"]) call.write(frameOf(Buffer.from(m)))
    expect(await close).toEqual({ code: Status.OK, details: "" })
    expect(got).toEqual(["echo a", "echo bb", "echo ccc"])
    expect(seen).toMatchObject({ ":method": "POST", ":path": "/p.S/M", "content-type": "application/grpc", te: "trailers" })
  })

  it("a trailers-only answer's status (UNIMPLEMENTED, percent-encoded message); an HTTP error status", async () => {
    const address = await serve((stream, headers) => {
      if (headers[":path"] === "/http")
        return stream.respond({ ":status": 503 }, { endStream: true })
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12", "grpc-message": "unknown%20service" }, { endStream: true })
    })
    const c = channel(address)
    expect(await open(c).close).toEqual({ code: Status.UNIMPLEMENTED, details: "unknown service" })
    expect(await open(c, "/http").close).toEqual({ code: Status.UNAVAILABLE, details: "HTTP status 503" })
  })

  it("a compressed message from the agent fails the call (INTERNAL) and resets the stream", async () => {
    let reset: Promise<number> | undefined
    const address = await serve((stream) => {
      reset = new Promise((r) => stream.on("close", () => r(stream.rstCode)))
      answer(stream)
      stream.write(Buffer.from([1, 0, 0, 0, 1, 9]))
    })
    const { close } = open(channel(address))
    expect((await close).code).toBe(Status.INTERNAL)
    expect(await reset).toBe(http2.constants.NGHTTP2_CANCEL)
  })

  it("cancel resets the stream (CANCEL) and reports nothing; the connection serves the next call", async () => {
    const resets: Array<number> = []
    let closedOne!: () => void
    const oneClosed = new Promise<void>((r) => (closedOne = r))
    const address = await serve((stream) => {
      answer(stream)
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }))
      stream.on("close", () => {
        resets.push(stream.rstCode)
        closedOne()
      })
      stream.on("data", () => stream.end())
    })
    const c = channel(address)
    const first = open(c)
    let reported = false
    void first.close.then(() => (reported = true))
    first.call.write(frameOf(Buffer.from("x")))
    first.call.cancel()
    await oneClosed
    expect(resets).toEqual([http2.constants.NGHTTP2_CANCEL])
    const second = open(c)
    second.call.write(frameOf(Buffer.from("y")))
    expect((await second.close).code).toBe(Status.OK)
    expect(reported).toBe(false)
  })

  it("an agent that is not there: the call fails UNAVAILABLE with the connect error", async () => {
    const address = await serve(() => {})
    await new Promise((r) => servers.pop()!.close(r)) // the port is free again
    const { close } = open(channel(address))
    const { code, details } = await close
    expect(code).toBe(Status.UNAVAILABLE)
    expect(details).toMatch(/ECONNREFUSED/)
  })

  it("keepalive pings go out on the connection while it is open", async () => {
    let pings = 0
    const server = http2.createServer()
    server.on("session", (s) => s.on("ping", () => pings++))
    server.on("stream", (stream) => answer(stream))
    servers.push(server)
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const c = channel(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 20)
    open(c)
    for (let i = 0; i < 200 && pings < 3; i++) await new Promise((r) => setTimeout(r, 10))
    expect(pings).toBeGreaterThanOrEqual(3)
  })
})
