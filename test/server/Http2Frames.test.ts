/**
 * HTTP/2 at the frame level, with raw sockets (test/support/h2frames.ts): the client preface
 * and every frame are written by hand to a cleartext `protocol "h2"` listener, and the test
 * waits for the server's frames (or the socket's close) with a deadline. Organised like
 * h2spec's sections, a few cases each, plus the floods of edge-security.md §3 (CVE-2019-951x,
 * CONTINUATION flood, rapid reset): each ends the session within a bounded count, is counted
 * in `sentinel_http2_defences_total`, and leaves the proxy serving other clients.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  ErrorCode,
  Flag,
  FrameType,
  connectRaw,
  continuationFrame,
  dataFrame,
  frame,
  headersFrame,
  hpackLiteral,
  isGoaway,
  isResponse,
  isRst,
  pingFrame,
  requestBlock,
  rstCodeOf,
  rstStream,
  serverSettings,
  settingsFrame,
  Setting,
  statusOf,
  windowUpdate,
  type RawH2
} from "../support/h2frames.js"
import { startEchoOrigin, type EchoOrigin } from "../support/origins.js"
import { metricSum, startProxy, testConfig, type ProxyHandle } from "../support/proxy.js"

const MAX_STREAMS = 10
let origin: EchoOrigin
let proxy: ProxyHandle
let scope: Scope.CloseableScope

beforeAll(async () => {
  origin = await startEchoOrigin("h2frames")
  scope = Effect.runSync(Scope.make())
  proxy = await Effect.runPromise(
    startProxy(
      testConfig({
        listeners: [{ id: "main", address: "127.0.0.1:0", protocol: "h2", maxConcurrentStreams: MAX_STREAMS, maxEarlyResets: 20 }] as never,
        upstreams: [{ id: "o", targets: [{ address: origin.address }] }],
        routes: [{ id: "all", matches: [{ _tag: "PathPrefix", prefix: "/" }], upstream: "o" }] as never,
        system: { gracefulShutdownTimeout: Duration.millis(200) } as never
      })
    ).pipe(Scope.extend(scope))
  )
})
afterAll(async () => {
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await origin.close()
})

const defences = (reason: string) => metricSum(proxy, "sentinel_http2_defences_total", { listener: "main", reason })

/** The connection ends with a GOAWAY carrying `code` (then closes or is left for the client to close). */
const expectGoaway = async (c: RawH2, code: number) => {
  const g = await c.waitFor(isGoaway, "GOAWAY")
  expect(g.payload.readUInt32BE(4)).toBe(code)
}

/** A request on a fresh connection is still answered 200: the process lives and serves. */
const expectServed = async (path = "/alive") => {
  const c = await connectRaw(proxy.port)
  try {
    c.send(headersFrame(1, requestBlock(path)))
    const h = await c.waitFor(isResponse(1), "the response HEADERS")
    expect(statusOf(h.payload)).toBe(200)
  } finally {
    c.destroy()
  }
}

const sawPath = (prefix: string) => origin.requests.filter((r) => r.url.startsWith(prefix)).length

/** Sends `make(i)` for i < max in batches, yielding to the event loop, until the socket closes. */
const flood = async (c: RawH2, max: number, make: (i: number) => Buffer, batch = 100): Promise<number> => {
  let i = 0
  while (i < max && !c.closed()) {
    const chunk: Array<Buffer> = []
    for (let j = 0; j < batch && i < max; j++, i++) chunk.push(make(i))
    c.send(Buffer.concat(chunk))
    if (c.socket.writableLength > 1024 * 1024) await new Promise((r) => c.socket.once("drain", r))
    else await new Promise((r) => setImmediate(r))
  }
  return i
}

describe("3.4 connection preface", () => {
  it("the server's SETTINGS announce max concurrent streams, the header list size and no push; a request is served", async () => {
    const c = await connectRaw(proxy.port)
    try {
      const s = await serverSettings(c)
      expect(s.get(Setting.MAX_CONCURRENT_STREAMS)).toBe(MAX_STREAMS)
      expect(s.get(Setting.MAX_HEADER_LIST_SIZE)).toBeGreaterThan(0)
      expect(s.get(Setting.MAX_HEADER_LIST_SIZE)).toBeLessThanOrEqual(64 * 1024)
      expect(s.get(Setting.ENABLE_PUSH)).toBe(0)
      // our empty SETTINGS is acknowledged
      await c.waitFor((f) => f.type === FrameType.SETTINGS && f.flags === Flag.ACK, "the SETTINGS ACK")
      c.send(headersFrame(1, requestBlock("/preface/ok")))
      expect(statusOf((await c.waitFor(isResponse(1), "the response")).payload)).toBe(200)
    } finally {
      c.destroy()
    }
  })

  it("the connection window is opened to what the streams' windows add up to (nginx's flow control), with extended CONNECT announced", async () => {
    const c = await connectRaw(proxy.port)
    try {
      const s = await serverSettings(c)
      expect(s.get(Setting.ENABLE_CONNECT_PROTOCOL)).toBe(1)
      const w = await c.waitFor((f) => f.type === FrameType.WINDOW_UPDATE && f.streamId === 0, "the connection WINDOW_UPDATE")
      // 65535 to begin with (RFC 9113 §6.9.2), raised to max-concurrent-streams x 65535
      expect(w.payload.readUInt32BE(0) & 0x7fffffff).toBe(MAX_STREAMS * 65535 - 65535)
    } finally {
      c.destroy()
    }
  })

  it("a bad preface is closed without an answer; nothing reaches the upstream", async () => {
    const c = await connectRaw(proxy.port, { preface: false })
    c.send(Buffer.from("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", "latin1"), frame(FrameType.SETTINGS, 0, 0))
    await c.waitClose()
    expect(c.frames).toEqual([])
  })

  it("the preface followed by something other than SETTINGS: GOAWAY and close (session_error)", async () => {
    const before = await defences("session_error")
    const c = await connectRaw(proxy.port, { preface: false })
    c.send(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"), pingFrame())
    // nghttp2 wants PROTOCOL_ERROR; node tears the session down with INTERNAL_ERROR
    await c.waitFor(isGoaway, "GOAWAY")
    await c.waitClose()
    expect(await defences("session_error")).toBe(before + 1)
  })
})

describe("4.2 frame size", () => {
  it("a DATA frame over SETTINGS_MAX_FRAME_SIZE (16384): GOAWAY FRAME_SIZE_ERROR", async () => {
    const c = await connectRaw(proxy.port)
    try {
      c.send(headersFrame(1, requestBlock("/fs/upload", { method: "POST" }), { endStream: false }))
      c.send(frame(FrameType.DATA, 0, 1, Buffer.alloc(16385)))
      await expectGoaway(c, ErrorCode.FRAME_SIZE_ERROR)
    } finally {
      c.destroy()
    }
  })

  it("a HEADERS frame over it: GOAWAY FRAME_SIZE_ERROR, nothing upstream", async () => {
    const c = await connectRaw(proxy.port)
    try {
      c.send(headersFrame(1, Buffer.concat([requestBlock("/fs/headers"), hpackLiteral("x-big", "a".repeat(16500))])))
      await expectGoaway(c, ErrorCode.FRAME_SIZE_ERROR)
      expect(sawPath("/fs/headers")).toBe(0)
    } finally {
      c.destroy()
    }
  })
})

describe("5.1 stream states", () => {
  it("DATA on an idle stream: GOAWAY PROTOCOL_ERROR", async () => {
    const c = await connectRaw(proxy.port)
    try {
      c.send(dataFrame(1, "hello"))
      await expectGoaway(c, ErrorCode.PROTOCOL_ERROR)
    } finally {
      c.destroy()
    }
  })

  it("HEADERS on an even (server-initiated) stream id: a connection error, GOAWAY and close", async () => {
    const c = await connectRaw(proxy.port)
    c.send(headersFrame(2, requestBlock("/even")))
    // PROTOCOL_ERROR per RFC 9113 §5.1.1; node reports it as INTERNAL_ERROR when it destroys the session
    await c.waitFor(isGoaway, "GOAWAY")
    expect([ErrorCode.PROTOCOL_ERROR, ErrorCode.INTERNAL_ERROR]).toContain(c.goaway()!.code)
    await c.waitClose()
    expect(sawPath("/even")).toBe(0)
  })

  it("HEADERS again on a stream half-closed by END_STREAM: a STREAM_CLOSED error ends the session", async () => {
    const c = await connectRaw(proxy.port)
    c.send(headersFrame(1, requestBlock("/twice/hold")))
    await origin.arrived("/twice/hold")
    c.send(headersFrame(1, requestBlock("/twice/again")))
    const f = await c.waitFor((x) => isGoaway(x) || isRst(1)(x), "RST_STREAM or GOAWAY")
    const code = f.type === FrameType.GOAWAY ? f.payload.readUInt32BE(4) : rstCodeOf(f)
    expect([ErrorCode.STREAM_CLOSED, ErrorCode.INTERNAL_ERROR]).toContain(code)
    await c.waitClose()
    // the first request's upstream exchange is cut with it
    await origin.aborted("/twice/hold")
    expect(sawPath("/twice/again")).toBe(0)
  })
})

describe("6.5 SETTINGS", () => {
  it("ENABLE_PUSH = 2: connection error", async () => {
    const c = await connectRaw(proxy.port)
    c.send(settingsFrame([[Setting.ENABLE_PUSH, 2]]))
    await c.waitFor(isGoaway, "GOAWAY")
    expect([ErrorCode.PROTOCOL_ERROR, ErrorCode.INTERNAL_ERROR]).toContain(c.goaway()!.code)
    await c.waitClose()
  })

  it("INITIAL_WINDOW_SIZE over 2^31-1: connection error", async () => {
    const c = await connectRaw(proxy.port)
    c.send(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 2 ** 31]]))
    await c.waitFor(isGoaway, "GOAWAY")
    expect([ErrorCode.FLOW_CONTROL_ERROR, ErrorCode.INTERNAL_ERROR]).toContain(c.goaway()!.code)
    await c.waitClose()
  })

  it("a valid SETTINGS is acknowledged", async () => {
    const c = await connectRaw(proxy.port)
    try {
      await c.waitFor((f) => f.type === FrameType.SETTINGS && f.flags === Flag.ACK, "the first ACK")
      c.send(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 1000], [Setting.MAX_FRAME_SIZE, 20000]]))
      await c.waitFor((f) => f.type === FrameType.SETTINGS && f.flags === Flag.ACK && c.frames.filter((x) => x.type === FrameType.SETTINGS && x.flags === Flag.ACK).length === 2, "the second ACK")
      expect(c.closed()).toBe(false)
    } finally {
      c.destroy()
    }
  })
})

describe("6.9 flow control", () => {
  it("WINDOW_UPDATE with increment 0 on the connection: connection error", async () => {
    const c = await connectRaw(proxy.port)
    c.send(windowUpdate(0, 0))
    await c.waitFor(isGoaway, "GOAWAY")
    expect([ErrorCode.PROTOCOL_ERROR, ErrorCode.INTERNAL_ERROR]).toContain(c.goaway()!.code)
    await c.waitClose()
  })

  it("a connection window over 2^31-1: connection error", async () => {
    const c = await connectRaw(proxy.port)
    c.send(windowUpdate(0, 2 ** 31 - 1))
    await c.waitFor(isGoaway, "GOAWAY")
    expect([ErrorCode.FLOW_CONTROL_ERROR, ErrorCode.INTERNAL_ERROR]).toContain(c.goaway()!.code)
    await c.waitClose()
  })

  it("a stream window over 2^31-1: RST_STREAM FLOW_CONTROL_ERROR, and the upstream exchange is aborted", async () => {
    const c = await connectRaw(proxy.port)
    try {
      c.send(headersFrame(1, requestBlock("/wo/hold")))
      await origin.arrived("/wo/hold")
      c.send(windowUpdate(1, 2 ** 31 - 1))
      const r = await c.waitFor(isRst(1), "RST_STREAM")
      expect(rstCodeOf(r)).toBe(ErrorCode.FLOW_CONTROL_ERROR)
      await origin.aborted("/wo/hold")
    } finally {
      c.destroy()
    }
  })
})

describe("4.3 header compression", () => {
  it("an HPACK index past the tables: GOAWAY COMPRESSION_ERROR, nothing upstream", async () => {
    const before = origin.requests.length
    const c = await connectRaw(proxy.port)
    try {
      c.send(headersFrame(1, Buffer.from([0xff, 0x7f]))) // indexed field 127 + 127
      await expectGoaway(c, ErrorCode.COMPRESSION_ERROR)
      expect(origin.requests.length).toBe(before)
    } finally {
      c.destroy()
    }
  })
})

describe("6.10 CONTINUATION", () => {
  it("a CONTINUATION flood (CVE-2024-27316 class) is cut off after a bounded amount of header data; nothing upstream", async () => {
    const c = await connectRaw(proxy.port)
    c.send(headersFrame(1, requestBlock("/cont"), { endHeaders: false }))
    const sent = await flood(c, 2000, (i) => continuationFrame(1, hpackLiteral(`x-c${i}`, "v".repeat(500))), 20)
    await c.waitClose()
    expect(c.goaway()).toBeDefined()
    // the header list bound (SETTINGS_MAX_HEADER_LIST_SIZE) is far below 1 MiB
    expect(c.sent()).toBeLessThan(1024 * 1024)
    expect(sent).toBeLessThan(2000)
    expect(sawPath("/cont")).toBe(0)
    await expectServed()
  })
})

describe("floods (CVE-2019-9512…9518, CVE-2023-44487)", () => {
  it("PING flood: GOAWAY ENHANCE_YOUR_CALM after a bounded burst (ping_flood)", async () => {
    const before = await defences("ping_flood")
    const c = await connectRaw(proxy.port)
    const sent = await flood(c, 5000, () => pingFrame())
    await c.waitClose()
    expect(c.goaway()?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM)
    expect(sent).toBeLessThan(5000)
    expect(c.frames.filter((f) => f.type === FrameType.PING).length).toBeLessThanOrEqual(200)
    expect(await defences("ping_flood")).toBe(before + 1)
    await expectServed()
  })

  it("SETTINGS flood: GOAWAY ENHANCE_YOUR_CALM after a bounded burst (settings_flood)", async () => {
    const before = await defences("settings_flood")
    const c = await connectRaw(proxy.port)
    const sent = await flood(c, 5000, () => settingsFrame())
    await c.waitClose()
    expect(c.goaway()?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM)
    expect(sent).toBeLessThan(5000)
    expect(await defences("settings_flood")).toBe(before + 1)
    await expectServed()
  })

  it("empty DATA frames without END_STREAM on an open stream: closed after about 100 (invalid_frames)", async () => {
    const before = await defences("invalid_frames")
    const c = await connectRaw(proxy.port)
    c.send(headersFrame(1, requestBlock("/empty/hold", { method: "POST" }), { endStream: false }))
    const sent = await flood(c, 5000, () => dataFrame(1, ""), 50)
    await c.waitClose()
    expect(c.goaway()).toBeDefined()
    expect(sent).toBeLessThanOrEqual(500)
    expect(await defences("invalid_frames")).toBe(before + 1)
    await expectServed()
  })

  it("WINDOW_UPDATE flood (connection and stream): GOAWAY ENHANCE_YOUR_CALM after about 1 MiB of them (control_flood)", async () => {
    for (const stream of [0, 1]) {
      const before = await defences("control_flood")
      const c = await connectRaw(proxy.port)
      if (stream === 1) c.send(headersFrame(1, requestBlock("/wu/hold")))
      const max = (8 * 1024 * 1024) / 13
      const sent = await flood(c, max, () => windowUpdate(stream, 1), 2000)
      await c.waitClose()
      expect(c.goaway()?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM)
      expect(sent).toBeLessThan(max)
      expect(await defences("control_flood")).toBe(before + 1)
    }
    await expectServed()
  })

  it("PRIORITY flood: GOAWAY ENHANCE_YOUR_CALM (control_flood)", async () => {
    const before = await defences("control_flood")
    const c = await connectRaw(proxy.port)
    const max = (8 * 1024 * 1024) / 14
    const sent = await flood(c, max, (i) => frame(FrameType.PRIORITY, 0, 2 * (i % 1000) + 1, Buffer.from([0, 0, 0, 0, 16])), 2000)
    await c.waitClose()
    expect(c.goaway()?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM)
    expect(sent).toBeLessThan(max)
    expect(await defences("control_flood")).toBe(before + 1)
  })

  it("RST_STREAM on idle streams: a connection error, closed at the first", async () => {
    const c = await connectRaw(proxy.port)
    const sent = await flood(c, 5000, (i) => rstStream(2 * i + 1, ErrorCode.CANCEL))
    await c.waitClose()
    expect(c.goaway()).toBeDefined()
    expect(sent).toBeLessThan(5000)
  })

  it("rapid reset at the frame level: HEADERS + RST_STREAM pairs get GOAWAY ENHANCE_YOUR_CALM; the upstream saw a bounded number", async () => {
    const before = await defences("rapid_reset")
    const c = await connectRaw(proxy.port)
    const sent = await flood(c, 1000, (i) => Buffer.concat([headersFrame(2 * i + 1, requestBlock(`/rr/hold?i=${i}`)), rstStream(2 * i + 1, ErrorCode.CANCEL)]), 10)
    await c.waitClose()
    expect(c.goaway()?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM)
    expect(sent).toBeLessThan(1000)
    // max-early-resets (20) plus a window of concurrent streams
    expect(sawPath("/rr/hold")).toBeLessThanOrEqual(20 + MAX_STREAMS)
    expect(await defences("rapid_reset")).toBe(before + 1)
    await expectServed()
  })

  it("a legitimate upload of 3 MiB is not taken for a flood", async () => {
    const c = await connectRaw(proxy.port, { settings: [[Setting.INITIAL_WINDOW_SIZE, 65535]] })
    try {
      c.send(headersFrame(1, requestBlock("/up/upload", { method: "POST" }), { endStream: false }))
      const total = 3 * 1024 * 1024
      let sent = 0
      // the server's windows: 65535 for stream and connection, widened by its WINDOW_UPDATEs
      let connWindow = 65535
      let streamWindow = 65535
      let seen = 0
      while (sent < total) {
        for (; seen < c.frames.length; seen++) {
          const f = c.frames[seen]
          if (f.type === FrameType.WINDOW_UPDATE) {
            const inc = f.payload.readUInt32BE(0) & 0x7fffffff
            if (f.streamId === 0) connWindow += inc
            else if (f.streamId === 1) streamWindow += inc
          }
        }
        const n = Math.min(16384, total - sent, connWindow, streamWindow)
        if (n <= 0) {
          const have = c.frames.length
          await c.waitFor((_f) => c.frames.length > have, "a WINDOW_UPDATE")
          continue
        }
        c.send(dataFrame(1, Buffer.alloc(n, 1), sent + n === total))
        sent += n
        connWindow -= n
        streamWindow -= n
      }
      const h = await c.waitFor(isResponse(1), "the response", 5000)
      expect(statusOf(h.payload)).toBe(200)
      expect(c.goaway()).toBeUndefined()
    } finally {
      c.destroy()
    }
  })
})

describe("8.1.1 malformed requests", () => {
  it("content-length 10, then 20 bytes of DATA: RST_STREAM PROTOCOL_ERROR, the upstream exchange cut; the session serves on", async () => {
    const c = await connectRaw(proxy.port)
    try {
      c.send(headersFrame(1, requestBlock("/cl20/hold", { method: "POST", extra: [["content-length", "10"]] }), { endStream: false }))
      c.send(dataFrame(1, "x".repeat(20), true))
      expect(rstCodeOf(await c.waitFor(isRst(1), "RST_STREAM"))).toBe(ErrorCode.PROTOCOL_ERROR)
      c.send(headersFrame(3, requestBlock("/cl20/after")))
      expect(statusOf((await c.waitFor(isResponse(3), "the next stream's response")).payload)).toBe(200)
      // the upstream never got it whole: never sent, or aborted
      if (sawPath("/cl20/hold") > 0) await origin.aborted("/cl20/hold")
      expect(c.goaway()).toBeUndefined()
    } finally {
      c.destroy()
    }
  })

  it("content-length 10, END_STREAM after 5 bytes: RST_STREAM PROTOCOL_ERROR; the session serves on", async () => {
    const c = await connectRaw(proxy.port)
    try {
      c.send(headersFrame(1, requestBlock("/cl5/hold", { method: "POST", extra: [["content-length", "10"]] }), { endStream: false }))
      c.send(dataFrame(1, "x".repeat(5), true))
      expect(rstCodeOf(await c.waitFor(isRst(1), "RST_STREAM"))).toBe(ErrorCode.PROTOCOL_ERROR)
      c.send(headersFrame(3, requestBlock("/cl5/after")))
      expect(statusOf((await c.waitFor(isResponse(3), "the next stream's response")).payload)).toBe(200)
      if (sawPath("/cl5/hold") > 0) await origin.aborted("/cl5/hold")
    } finally {
      c.destroy()
    }
  })

  it("a body larger than the buffer streams upstream, then contradicts its content-length: the upstream request is aborted", async () => {
    const c = await connectRaw(proxy.port)
    try {
      c.send(headersFrame(1, requestBlock("/clbig/hold", { method: "POST", extra: [["content-length", "100000"]] }), { endStream: false }))
      c.send(dataFrame(1, Buffer.alloc(16000, 1)))
      await origin.arrived("/clbig/hold")
      c.send(dataFrame(1, "short", true))
      expect(rstCodeOf(await c.waitFor(isRst(1), "RST_STREAM"))).toBe(ErrorCode.PROTOCOL_ERROR)
      await origin.aborted("/clbig/hold")
    } finally {
      c.destroy()
    }
  })

  it("connection-specific fields (connection, transfer-encoding): RST_STREAM PROTOCOL_ERROR, nothing upstream", async () => {
    const c = await connectRaw(proxy.port)
    try {
      c.send(headersFrame(1, requestBlock("/cs/connection", { extra: [["connection", "keep-alive"]] })))
      expect(rstCodeOf(await c.waitFor(isRst(1), "RST_STREAM 1"))).toBe(ErrorCode.PROTOCOL_ERROR)
      c.send(headersFrame(3, requestBlock("/cs/te", { method: "POST", extra: [["transfer-encoding", "chunked"]] })))
      expect(rstCodeOf(await c.waitFor(isRst(3), "RST_STREAM 3"))).toBe(ErrorCode.PROTOCOL_ERROR)
      c.send(headersFrame(5, requestBlock("/cs/ok")))
      expect(statusOf((await c.waitFor(isResponse(5), "the next stream's response")).payload)).toBe(200)
      expect(sawPath("/cs/connection") + sawPath("/cs/te")).toBe(0)
    } finally {
      c.destroy()
    }
  })
})
