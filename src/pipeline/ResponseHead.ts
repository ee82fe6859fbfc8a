/**
 * Writing a response head given as a flat `[name, value, ...]` list, alike over HTTP/1.1 and
 * HTTP/2 (the compat API wants another form; see below).
 */
import type { ServerResponse } from "node:http"
import { sensitiveHeaders } from "node:http2"

/**
 * `res.writeHead(status, flat)` for a flat `[name, value, ...]` list, alike over HTTP/1.1 and
 * HTTP/2. node's HTTP/1.1 response takes the list as it is (no object built). Its HTTP/2
 * compat response, given a list, first calls `removeHeader` for every name and then appends
 * one by one (validating each twice); given an object it sets each name once. So HTTP/2 gets
 * an object, a repeated name (set-cookie) as an array of its values. Throws what node throws
 * for an invalid name or value.
 */
export const writeHead = (res: ServerResponse, status: number, flat: Array<string>, http2: boolean): void => {
  if (!http2) {
    res.writeHead(status, flat)
    return
  }
  neverIndexTraceIds(res)
  const head: Record<string, string | Array<string>> = Object.create(null)
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i].toLowerCase()
    const seen = head[name]
    if (seen === undefined) head[name] = flat[i + 1]
    else if (typeof seen === "string") head[name] = [seen, flat[i + 1]]
    else seen.push(flat[i + 1])
  }
  res.writeHead(status, head)
}

/**
 * The trace id headers differ on every response: HPACK-indexed, each would take a fresh entry
 * in the client's dynamic table (4 KiB by default) and push out the entries that repeat
 * (content-type, server, ...), so nghttp2 would re-encode and re-insert those too. Sent as
 * "never indexed" (node's `sensitiveHeaders`, set on the compat response's own header object,
 * which is what it hands to `respond`); when node keeps that object elsewhere, nothing changes.
 */
const UNIQUE_PER_RESPONSE = ["x-request-id", "x-correlation-id"]
let headersKey: symbol | null | undefined
const neverIndexTraceIds = (res: ServerResponse): void => {
  if (headersKey === undefined) headersKey = Object.getOwnPropertySymbols(res).find((s) => s.description === "headers") ?? null
  if (headersKey === null) return
  const own = (res as unknown as Record<symbol, Record<symbol, unknown> | undefined>)[headersKey]
  if (own !== undefined && typeof own === "object") own[sensitiveHeaders] = UNIQUE_PER_RESPONSE
}
