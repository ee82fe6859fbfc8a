/**
 * A fake OTLP/HTTP collector on 127.0.0.1:0: records every JSON body POSTed
 * to /v1/traces, and flattens them into spans for assertions.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"

/** One exported span as OTLP/JSON has it (ids in hex), with attributes flattened. */
export interface ExportedSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  /** 1 internal, 2 server, 3 client. */
  readonly kind: number
  readonly status?: { readonly code?: number; readonly message?: string }
  readonly attributes: Record<string, unknown>
  readonly serviceName: string | undefined
}

export interface OtlpCollector {
  readonly port: number
  readonly url: string
  readonly bodies: Array<any>
  /** Every span exported so far. */
  readonly spans: () => Array<ExportedSpan>
  readonly close: () => Promise<void>
}

const valueOf = (v: any): unknown => {
  if (v === undefined || v === null) return undefined
  if ("stringValue" in v) return v.stringValue
  if ("intValue" in v) return Number(v.intValue)
  if ("doubleValue" in v) return v.doubleValue
  if ("boolValue" in v) return v.boolValue
  if ("arrayValue" in v) return (v.arrayValue.values ?? []).map(valueOf)
  return undefined
}

const attributesOf = (attrs: ReadonlyArray<any> | undefined): Record<string, unknown> =>
  Object.fromEntries((attrs ?? []).map((a) => [a.key, valueOf(a.value)]))

export const startOtlpCollector = async (): Promise<OtlpCollector> => {
  const bodies: Array<any> = []
  const server = http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      if (req.method === "POST" && req.url === "/v1/traces") {
        bodies.push(JSON.parse(Buffer.concat(chunks).toString("utf8")))
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const { port } = server.address() as AddressInfo
  const spans = (): Array<ExportedSpan> =>
    bodies.flatMap((b) =>
      (b.resourceSpans ?? []).flatMap((rs: any) => {
        const serviceName = attributesOf(rs.resource?.attributes)["service.name"] as string | undefined
        return (rs.scopeSpans ?? []).flatMap((ss: any) =>
          (ss.spans ?? []).map(
            (s: any): ExportedSpan => ({
              traceId: s.traceId,
              spanId: s.spanId,
              ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
              name: s.name,
              kind: s.kind,
              status: s.status,
              attributes: attributesOf(s.attributes),
              serviceName
            })
          )
        )
      })
    )
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    bodies,
    spans,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r())
        server.closeAllConnections()
      })
  }
}
