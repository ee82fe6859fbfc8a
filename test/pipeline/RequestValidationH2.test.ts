/**
 * The validator on HTTP/2 heads (node's compat API hands it `httpVersion` "2.0" and the
 * pseudo-headers in `rawHeaders`): `:authority` is the host, a Host naming another authority
 * is refused, split cookies are joined, unknown pseudo-headers are refused, and "2.0" from an
 * HTTP/1.1 request line is still a 505.
 */
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { validateRequest } from "../../src/pipeline/validate/RequestHead.js"
import { defaultRequestValidationConfig } from "../../src/pipeline/validate/Settings.js"

const h2 = (rawHeaders: Array<string>, method = "GET", url = "/p?q=1") =>
  validateRequest({ method, url, httpVersion: "2.0", rawHeaders: [":method", method, ":path", url, ":scheme", "https", ...rawHeaders] }, defaultRequestValidationConfig, true, true)

describe("validateRequest on HTTP/2 heads", () => {
  it(":authority is the host; a Host that agrees is accepted, one that disagrees is refused", () => {
    const ok = h2([":authority", "App.Example:8443", "x-a", "1"])
    expect(ok._tag).toBe("Valid")
    if (ok._tag !== "Valid") return
    expect([ok.request.hostname, ok.request.host, ok.request.target, ok.request.httpVersion]).toEqual(["app.example", "app.example:8443", "/p?q=1", "2.0"])
    expect(ok.request.headers).toEqual([["x-a", "1"]])
    expect(h2([":authority", "app.example", "host", "app.example"])._tag).toBe("Valid")
    expect(h2([":authority", "app.example", "host", "evil.example"])).toEqual({ _tag: "Rejected", status: 400, reason: "host-mismatch" })
    expect(h2([":authority", "u@app.example"])).toEqual({ _tag: "Rejected", status: 400, reason: "host-invalid" })
    expect(h2([":authority", "a", ":authority", "b"])).toEqual({ _tag: "Rejected", status: 400, reason: "host-duplicate" })
    // Host alone (allowed by RFC 9113 §8.3.1) still names the host; neither is a 400
    expect(h2(["host", "app.example"])._tag).toBe("Valid")
    expect(h2([])).toEqual({ _tag: "Rejected", status: 400, reason: "host-missing" })
  })

  it("unknown pseudo-headers are refused; cookies split into several fields reach the upstream as one", () => {
    expect(h2([":authority", "a", ":protocol", "websocket"])).toEqual({ _tag: "Rejected", status: 400, reason: "pseudo-header-invalid" })
    const r = h2([":authority", "a", "cookie", "a=1", "x", "y", "cookie", "b=2"])
    expect(r._tag === "Valid" && r.request.headers).toEqual([["x", "y"], ["cookie", "a=1; b=2"]])
  })

  it("extended CONNECT (RFC 8441): only with :protocol websocket, only on HTTP/2; a plain CONNECT stays 405", () => {
    const ok = h2([":protocol", "websocket", ":authority", "app.example", "sec-websocket-version", "13"], "CONNECT", "/chat?x=1")
    expect(ok._tag).toBe("Valid")
    if (ok._tag !== "Valid") return
    expect([ok.request.method, ok.request.connectProtocol, ok.request.target, ok.request.hostname]).toEqual(["CONNECT", "websocket", "/chat?x=1", "app.example"])
    expect(ok.request.headers).toEqual([["sec-websocket-version", "13"]])
    expect(h2([":protocol", "chat", ":authority", "a"], "CONNECT", "/")).toEqual({ _tag: "Rejected", status: 501, reason: "connect-protocol-unsupported" })
    expect(h2([":authority", "a"], "CONNECT", "/")).toEqual({ _tag: "Rejected", status: 405, reason: "method-connect" })
    expect(h2([":protocol", "websocket", ":protocol", "websocket", ":authority", "a"], "CONNECT", "/")).toEqual({ _tag: "Rejected", status: 400, reason: "pseudo-header-invalid" })
    // the same head over HTTP/1.1 is a CONNECT as ever
    expect(validateRequest({ method: "CONNECT", url: "/chat", httpVersion: "1.1", rawHeaders: ["host", "a"] })).toEqual({ _tag: "Rejected", status: 405, reason: "method-connect" })
    // an ordinary request has no connect protocol
    const get = h2([":authority", "a"])
    expect(get._tag === "Valid" && get.request.connectProtocol).toBeNull()
  })

  it(":protocol is refused with every method but CONNECT", () => {
    fc.assert(
      fc.property(fc.constantFrom("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"), fc.constantFrom("websocket", "chat", "x"), (method, protocol) => {
        expect(h2([":protocol", protocol, ":authority", "a"], method, "/")).toEqual({ _tag: "Rejected", status: 400, reason: "pseudo-header-invalid" })
      })
    )
  })

  it("HTTP/2.0 in an HTTP/1.1 request line is never taken for HTTP/2", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(":authority", ":path", "host", "x-y"), { maxLength: 4 }), (names) => {
        const raw = names.flatMap((n) => [n, "a.example"])
        expect(validateRequest({ method: "GET", url: "/", httpVersion: "2.0", rawHeaders: raw })).toEqual({ _tag: "Rejected", status: 505, reason: "version-unsupported" })
      })
    )
  })
})
