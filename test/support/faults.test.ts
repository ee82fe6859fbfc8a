import { describe, expect, it } from "vitest"
import { request } from "undici"
import { hangingOrigin, refusingPort, resettingOrigin, statusOrigin, tricklingOrigin } from "./faults.js"

describe("faults", () => {
  it("refusingPort: connecting is refused", async () => {
    const o = await refusingPort()
    await expect(request(o.url)).rejects.toMatchObject({ code: "ECONNREFUSED" })
    await o.close()
  })

  it("hangingOrigin: headers never arrive, the header timeout fires", async () => {
    const o = await hangingOrigin()
    await expect(request(o.url, { headersTimeout: 200 })).rejects.toMatchObject({ code: "UND_ERR_HEADERS_TIMEOUT" })
    expect(o.requests()).toBe(1)
    await o.close()
  })

  it("resettingOrigin: headers arrive, the body fails", async () => {
    const o = await resettingOrigin()
    const res = await request(o.url)
    expect(res.statusCode).toBe(200)
    await expect(res.body.text()).rejects.toBeDefined()
    await o.close()
  })

  it("resettingOrigin before-response: the request fails without a response", async () => {
    const o = await resettingOrigin({ when: "before-response" })
    await expect(request(o.url)).rejects.toBeDefined()
    await o.close()
  })

  it("tricklingOrigin: the body-idle timeout fires", async () => {
    const o = await tricklingOrigin({ intervalMs: 5000 })
    const res = await request(o.url, { bodyTimeout: 200 }) // undici body timer is coarse (~1 s)
    await expect(res.body.text()).rejects.toMatchObject({ code: "UND_ERR_BODY_TIMEOUT" })
    await o.close()
  })

  it("statusOrigin: answers the configured status, changeable", async () => {
    const o = await statusOrigin(503)
    const a = await request(o.url + "/x")
    await a.body.text()
    expect(a.statusCode).toBe(503)
    o.setStatus(200)
    const b = await request(o.url + "/y")
    await b.body.text()
    expect(b.statusCode).toBe(200)
    expect(o.paths()).toEqual(["/x", "/y"])
    await o.close()
  })
})
