import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { isoTimestamp, requestHeadersEvent } from "../../src/agents/AgentEvents.js"
import { proxyEventOf, proxyToAgentOf } from "../../src/agents/GrpcMapping.js"
import { decodeProxyToAgent, encodeProxyToAgent, type ProxyToAgent } from "../../src/agents/GrpcProto.js"
import { MessageType, type RequestHeadersEvent } from "../../src/agents/Protocol.js"

/** Epoch ms from 1970 to 2100, often repeated (the cache's case) and often not. */
const instants = fc.array(fc.oneof(fc.integer({ min: 0, max: 4102444800000 }), fc.constantFrom(1765000000000, 1765000000001)), { maxLength: 30 })

const facts = (ms: number, traceparent: string | undefined) => ({
  traceId: "t-1",
  method: "GET",
  uri: "/a?b=1",
  rawHeaders: ["Host", "example.test", "X-A", "1", "x-a", "2"],
  clientIp: "127.0.0.1",
  clientPort: 4242,
  protocol: "HTTP/1.1",
  routeId: "r",
  startedAt: ms,
  ...(traceparent !== undefined ? { traceparent } : {})
})

describe("agent events", () => {
  it("isoTimestamp is toISOString for every instant, repeated or not", () => {
    fc.assert(fc.property(instants, (xs) => {
      for (const ms of xs) expect(isoTimestamp(ms)).toBe(new Date(ms).toISOString())
    }))
  })

  it("a RequestHeaders event carries its instant, and traceparent only when there is one", () => {
    fc.assert(fc.property(instants, fc.option(fc.constantFrom("", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), { nil: undefined }), (xs, tp) => {
      for (const ms of xs) {
        const e = requestHeadersEvent(facts(ms, tp))
        expect(e.metadata.timestamp).toBe(new Date(ms).toISOString())
        expect("traceparent" in e.metadata).toBe(tp !== undefined && tp !== "")
        expect(e.headers).toEqual({ host: ["example.test"], "x-a": ["1", "2"] })
      }
    }))
  })

  it("over gRPC, each event's timestamp arrives at the agent as sent (ms precision), in any order", () => {
    fc.assert(fc.property(instants, (xs) => {
      for (const ms of xs) {
        const e = requestHeadersEvent(facts(ms, undefined))
        const pb = proxyToAgentOf(MessageType.RequestHeaders, e) as ProxyToAgent
        expect(pb.request_headers?.metadata?.timestamp_ms).toBe(ms)
        const back = proxyEventOf(decodeProxyToAgent(encodeProxyToAgent(pb)))
        expect((back?.event as RequestHeadersEvent).metadata.timestamp).toBe(e.metadata.timestamp)
      }
    }))
  })
})
