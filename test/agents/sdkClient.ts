/**
 * A raw proxy-side client for agent tests: node:net plus the Protocol.ts
 * codec, no SDK code, so tests see exactly the bytes an agent writes.
 */
import * as Net from "node:net"
import { AgentProtocolError, MessageType } from "../../src/agents/Protocol.js"
import { encodeFrame, FrameDecoder } from "../../src/agents/ProtocolFrames.js"
import type { Frame } from "../../src/agents/ProtocolFrames.js"

export class RawAgentClient {
  private readonly frames: Array<Frame> = []
  private waiters: Array<() => void> = []
  private readonly decoder = new FrameDecoder()
  protocolError: AgentProtocolError | undefined
  isClosed = false
  readonly closed: Promise<void>

  private constructor(readonly socket: Net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      for (const item of this.decoder.push(chunk)) {
        if (item instanceof AgentProtocolError) this.protocolError = item
        else this.frames.push(item)
      }
      this.wake()
    })
    socket.on("error", () => {})
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.isClosed = true
        this.wake()
        resolve()
      })
    )
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  static connect(path: string): Promise<RawAgentClient> {
    return new Promise((resolve, reject) => {
      const s = Net.connect(path)
      s.once("connect", () => resolve(new RawAgentClient(s)))
      s.once("error", reject)
    })
  }

  /** Connects, retrying while the socket is not there yet (a child process starting), for at most `timeoutMs`. */
  static async connectWhenReady(path: string, timeoutMs = 10_000): Promise<RawAgentClient> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      try {
        return await RawAgentClient.connect(path)
      } catch (e) {
        if (Date.now() > deadline) throw e
        await new Promise((r) => setTimeout(r, 25))
      }
    }
  }

  send(type: number, payload: unknown): void {
    this.socket.write(encodeFrame(type as MessageType, payload))
  }

  writeRaw(bytes: Uint8Array): void {
    this.socket.write(bytes)
  }

  /** The next frame matching `pred` (others stay queued), or throws after `timeoutMs` / on close. */
  async next(pred: (f: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const i = this.frames.findIndex(pred)
      if (i >= 0) return this.frames.splice(i, 1)[0]
      if (this.isClosed) throw new Error("connection closed while waiting for a frame")
      const left = deadline - Date.now()
      if (left <= 0) throw new Error("timed out waiting for a frame")
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  /** The answer whose audit.custom.correlation_id is `cid`. */
  answerFor(cid: string, timeoutMs = 5000): Promise<Record<string, any>> {
    return this.next(
      (f) => f.type === MessageType.AgentResponse && (f.payload as any)?.audit?.custom?.correlation_id === cid,
      timeoutMs
    ).then((f) => f.payload as Record<string, any>)
  }

  /** Frames received and not yet taken. */
  pending(): ReadonlyArray<Frame> {
    return this.frames
  }

  async handshake(extra: Record<string, unknown> = {}): Promise<Record<string, any>> {
    this.send(MessageType.HandshakeRequest, {
      supported_versions: [2],
      proxy_id: "test-proxy",
      proxy_version: "0.0.0",
      config: null,
      ...extra
    })
    const f = await this.next((x) => x.type === MessageType.HandshakeResponse)
    return f.payload as Record<string, any>
  }

  close(): void {
    this.socket.destroy()
  }
}

let seq = 0

/** A RequestHeaders event as the proxy sends it. */
export const requestHeadersEvent = (
  over: { cid?: string; method?: string; uri?: string; headers?: Record<string, Array<string>>; clientIp?: string } = {}
) => {
  const cid = over.cid ?? `cid-${process.pid}-${++seq}`
  return {
    correlation_id: cid,
    metadata: {
      correlation_id: cid,
      request_id: `req-${seq}`,
      client_ip: over.clientIp ?? "127.0.0.1",
      client_port: 40000,
      server_name: "example.test",
      protocol: "HTTP/1.1",
      tls_version: null,
      tls_cipher: null,
      route_id: "default",
      upstream_id: "backend",
      timestamp: new Date(0).toISOString()
    },
    method: over.method ?? "GET",
    uri: over.uri ?? "/",
    headers: over.headers ?? { host: ["example.test"] }
  }
}

export const requestBodyEvent = (cid: string, body: string | Buffer, chunkIndex = 0, isLast = true) => {
  const data = Buffer.isBuffer(body) ? body : Buffer.from(body)
  return {
    correlation_id: cid,
    data: data.toString("base64"),
    is_last: isLast,
    total_size: isLast ? data.length : null,
    chunk_index: chunkIndex,
    bytes_received: data.length
  }
}
