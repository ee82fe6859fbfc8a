/**
 * The RFC 6455 frame code as pure functions: properties over generated frame sequences cut
 * into arbitrary chunks (the scanner and the parser agree with the encoder whatever the
 * chunking), and the rules one by one.
 */
import { describe, expect, it } from "vitest"
import * as fc from "fast-check"
import {
  applyMask,
  CloseCode,
  decodeClosePayload,
  isViolation,
  Opcode,
  type FrameLimits,
  type Sender
} from "../../src/websocket/Frame.js"
import { closePayload, encodeClose, encodeFrame } from "../../src/websocket/FrameEncode.js"
import { FrameParser, type ParsedFrame } from "../../src/websocket/FrameParser.js"
import { FrameScanner } from "../../src/websocket/FrameScanner.js"
import { acceptKey, checkClientHandshake, checkUpstreamAnswer, hasToken, rsvAllowedBy } from "../../src/websocket/Handshake.js"

const limits: FrameLimits = { maxFrameSize: 1 << 20, maxMessageSize: 0, allowedRsv: 0 }

interface Spec {
  readonly opcode: number
  readonly fin: boolean
  readonly payload: Buffer
}

/** A valid sequence of frames: whole messages (maybe fragmented) with control frames in between. */
const message = fc.record({
  binary: fc.boolean(),
  parts: fc.array(fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)), { minLength: 1, maxLength: 4 }),
  control: fc.option(fc.record({ ping: fc.boolean(), payload: fc.uint8Array({ maxLength: 125 }).map((u) => Buffer.from(u)) }), { nil: undefined })
}).map(({ binary, parts, control }): Array<Spec> => {
  const frames: Array<Spec> = parts.map((payload, i) => ({
    opcode: i === 0 ? (binary ? Opcode.Binary : Opcode.Text) : Opcode.Continuation,
    fin: i === parts.length - 1,
    payload
  }))
  // a control frame may come between the fragments of a message
  if (control !== undefined) frames.splice(1, 0, { opcode: control.ping ? Opcode.Ping : Opcode.Pong, fin: true, payload: control.payload })
  return frames
})

const sequence = fc.array(message, { maxLength: 5 }).map((ms) => ms.flat())

const encodeAll = (frames: ReadonlyArray<Spec>, sender: Sender, seed: number): Buffer =>
  Buffer.concat(
    frames.map((f, i) =>
      encodeFrame({ ...f, mask: sender === "client" ? Buffer.from([seed & 255, (seed + i) & 255, 7, 11]) : undefined })
    )
  )

/** Cuts `buf` at the given (sorted, unique) offsets. */
const cut = (buf: Buffer, cuts: ReadonlyArray<number>): Array<Buffer> => {
  const at = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b)
  const out: Array<Buffer> = []
  let prev = 0
  for (const c of at) {
    out.push(buf.subarray(prev, c))
    prev = c
  }
  out.push(buf.subarray(prev))
  return out
}

describe("frames: properties", () => {
  it("the parser gives back the encoded frames, payloads unmasked and raw bytes as sent, however the stream is cut", () => {
    fc.assert(
      fc.property(sequence, fc.constantFrom<Sender>("client", "server"), fc.nat(), fc.array(fc.nat(), { maxLength: 20 }), (frames, sender, seed, cuts) => {
        const bytes = encodeAll(frames, sender, seed)
        const p = new FrameParser(sender, limits)
        const out: Array<ParsedFrame> = []
        for (const chunk of cut(bytes, cuts)) {
          p.push(chunk)
          for (let f = p.next(); f !== undefined; f = p.next()) {
            if (isViolation(f)) throw new Error(f.reason)
            out.push(f)
          }
        }
        expect(out.map((f) => ({ opcode: f.opcode, fin: f.fin, payload: f.payload }))).toEqual(frames)
        expect(Buffer.concat(out.map((f) => f.raw))).toEqual(bytes)
        expect(p.buffered).toBe(0)
      }),
      { numRuns: 300 }
    )
  })

  it("the scanner counts the same frames at the same boundaries, whatever the chunking", () => {
    fc.assert(
      fc.property(sequence, fc.constantFrom<Sender>("client", "server"), fc.nat(), fc.array(fc.nat(), { maxLength: 20 }), (frames, sender, seed, cuts) => {
        const bytes = encodeAll(frames, sender, seed)
        const s = new FrameScanner(sender, limits)
        let n = 0
        for (const chunk of cut(bytes, cuts)) {
          const r = s.scan(chunk)
          expect(r.violation).toBeUndefined()
          n += r.frames
        }
        expect(n).toBe(frames.length)
        expect(s.atBoundary).toBe(true)
      }),
      { numRuns: 300 }
    )
  })

  it("the scanner reads a close frame's code and reason (masked or not), split anywhere", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 1000, max: 1003 }), fc.integer({ min: 1007, max: 1014 }), fc.integer({ min: 3000, max: 4999 })),
        fc.string({ maxLength: 40 }),
        fc.constantFrom<Sender>("client", "server"),
        fc.array(fc.nat(), { maxLength: 6 }),
        (code, reason, sender, cuts) => {
          const frame = encodeClose(code, reason, sender === "client" ? Buffer.from([1, 2, 3, 4]) : undefined)
          const s = new FrameScanner(sender, limits)
          let seen: { code: number; reason: string } | undefined
          for (const chunk of cut(frame, cuts)) seen ??= s.scan(chunk).close
          const expectedReason = closePayload(code, reason).subarray(2).toString("utf8")
          expect(seen).toEqual({ code, reason: expectedReason })
        }
      )
    )
  })

  it("masking twice is the identity", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ minLength: 4, maxLength: 4 }), (data, key) => {
        const b = Buffer.from(data)
        applyMask(b, Buffer.from(key))
        applyMask(b, Buffer.from(key))
        expect(b).toEqual(Buffer.from(data))
      })
    )
  })

  it("a random stream never throws: it parses or it is a violation", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.constantFrom<Sender>("client", "server"), (data, sender) => {
        const p = new FrameParser(sender, { maxFrameSize: 256, maxMessageSize: 512, allowedRsv: 0 })
        p.push(Buffer.from(data))
        for (let i = 0; i < 500; i++) if (p.next() === undefined) break
        const s = new FrameScanner(sender, { maxFrameSize: 256, maxMessageSize: 0, allowedRsv: 0 })
        s.scan(Buffer.from(data))
      })
    )
  })
})

describe("frames: the rules", () => {
  const mask = Buffer.from([1, 2, 3, 4])
  const firstViolation = (sender: Sender, bytes: Buffer, l: FrameLimits = limits) => {
    const p = new FrameParser(sender, l)
    p.push(bytes)
    for (let f = p.next(); f !== undefined; f = p.next()) if (isViolation(f)) return f
    return undefined
  }

  it("client frames must be masked, server frames must not", () => {
    expect(firstViolation("client", encodeFrame({ opcode: Opcode.Text, payload: Buffer.from("x") }))?.code).toBe(1002)
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Text, payload: Buffer.from("x"), mask }))?.code).toBe(1002)
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Text, payload: Buffer.from("x") }))).toBeUndefined()
  })

  it("RSV bits only as the negotiated extensions allow", () => {
    const f = encodeFrame({ opcode: Opcode.Text, rsv: 0x40, payload: Buffer.from("x") })
    expect(firstViolation("server", f)?.code).toBe(1002)
    expect(firstViolation("server", f, { ...limits, allowedRsv: rsvAllowedBy("permessage-deflate; client_max_window_bits") })).toBeUndefined()
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Text, rsv: 0x20, payload: Buffer.from("x") }), { ...limits, allowedRsv: 0x40 })?.code).toBe(1002)
  })

  it("control frames: at most 125 bytes, unfragmented, valid close codes", () => {
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Ping, payload: Buffer.alloc(125) }))).toBeUndefined()
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Ping, payload: Buffer.alloc(126) }))?.code).toBe(1002)
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Pong, fin: false, payload: Buffer.alloc(1) }))?.code).toBe(1002)
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Close, payload: Buffer.from([3]) }))?.code).toBe(1002)
    for (const bad of [999, 1004, 1005, 1006, 1015, 2999, 5000]) {
      expect(isViolation(decodeClosePayload(closePayload(bad)))).toBe(true)
    }
    expect(decodeClosePayload(Buffer.alloc(0))).toEqual({ code: CloseCode.NoStatus, reason: "" })
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Close, payload: Buffer.from([0x03, 0xe8, 0xff, 0xfe]) }))?.code).toBe(1007)
  })

  it("reserved opcodes and broken fragmentation are protocol errors", () => {
    for (const op of [0x3, 0x7, 0xb, 0xf]) expect(firstViolation("server", encodeFrame({ opcode: op, payload: Buffer.alloc(0) }))?.code).toBe(1002)
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Continuation, payload: Buffer.from("x") }))?.code).toBe(1002)
    const twoStarts = Buffer.concat([
      encodeFrame({ opcode: Opcode.Text, fin: false, payload: Buffer.from("a") }),
      encodeFrame({ opcode: Opcode.Text, payload: Buffer.from("b") })
    ])
    expect(firstViolation("server", twoStarts)?.code).toBe(1002)
  })

  it("frame and message sizes: 1009 past the limits; non-minimal lengths are 1002", () => {
    const l = { maxFrameSize: 100, maxMessageSize: 150, allowedRsv: 0 }
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Binary, payload: Buffer.alloc(100) }), l)).toBeUndefined()
    expect(firstViolation("server", encodeFrame({ opcode: Opcode.Binary, payload: Buffer.alloc(101) }), l)?.code).toBe(1009)
    const fragments = Buffer.concat([
      encodeFrame({ opcode: Opcode.Binary, fin: false, payload: Buffer.alloc(100) }),
      encodeFrame({ opcode: Opcode.Continuation, payload: Buffer.alloc(60) })
    ])
    expect(firstViolation("server", fragments, l)?.code).toBe(1009)
    // 5 bytes written in the 16-bit form
    const nonMinimal = Buffer.from([0x81, 126, 0, 5, 1, 2, 3, 4, 5])
    expect(firstViolation("server", nonMinimal)?.code).toBe(1002)
    // a 64-bit length with its top bit set
    const huge = Buffer.from([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0])
    expect(firstViolation("server", huge)?.code).toBe(1002)
    // the size is judged from the header: nothing of the payload needs to arrive
    const s = new FrameScanner("server", l)
    const r = s.scan(Buffer.from([0x82, 126, 0x10, 0x00]))
    expect(r.violation).toMatchObject({ code: 1009, at: 0, clean: true })
  })
})

describe("handshake checks", () => {
  const ok = { method: "GET", httpVersion: "1.1", headers: { connection: "keep-alive, Upgrade", upgrade: "websocket", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" } }
  it("RFC 6455's example key gives its example accept value", () => {
    expect(acceptKey("dGhlIHNhbXBsZSBub25jZQ==")).toBe("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
  })
  it("a valid handshake passes; each broken rule has its status and reason", () => {
    expect(checkClientHandshake(ok)).toBeUndefined()
    expect(checkClientHandshake({ ...ok, method: "POST" })?.status).toBe(400)
    expect(checkClientHandshake({ ...ok, headers: { ...ok.headers, connection: "close" } })?.reason).toBe("websocket_connection_not_upgrade")
    expect(checkClientHandshake({ ...ok, headers: { ...ok.headers, "sec-websocket-key": "short" } })?.reason).toBe("websocket_invalid_key")
    expect(checkClientHandshake({ ...ok, headers: { ...ok.headers, "sec-websocket-version": "8" } })).toMatchObject({ status: 426 })
  })
  it("tokens are case-insensitive and comma-separated", () => {
    expect(hasToken("Keep-Alive, UPGRADE", "upgrade")).toBe(true)
    expect(hasToken("WebSocket", "websocket")).toBe(true)
    expect(hasToken("websockets", "websocket")).toBe(false)
  })
  it("the upstream's answer must carry the right accept value and no extension that was not offered", () => {
    const key = "dGhlIHNhbXBsZSBub25jZQ=="
    const good = new Map([["upgrade", "websocket"], ["sec-websocket-accept", acceptKey(key)]])
    expect(checkUpstreamAnswer(key, good, false)).toMatchObject({ allowedRsv: 0 })
    expect(checkUpstreamAnswer(key, new Map([...good, ["sec-websocket-accept", "x"]]), false)).toBe("websocket_upstream_bad_accept")
    const deflate = new Map([...good, ["sec-websocket-extensions", "permessage-deflate"]])
    expect(checkUpstreamAnswer(key, deflate, false)).toBe("websocket_upstream_extension_not_offered")
    expect(checkUpstreamAnswer(key, deflate, true)).toMatchObject({ allowedRsv: 0x40 })
  })
})
