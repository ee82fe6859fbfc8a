/** The WebSocket keys of the KDL configuration: Sentinel's scalar flags, the limits, and the errors. */
import * as Duration from "effect/Duration"
import { describe, expect, it } from "vitest"
import { formatIssue } from "../../src/config/ConfigIssue.js"
import { decodeKdl } from "../../src/config/Kdl.js"

const L = `listeners { listener "main" { address "127.0.0.1:8080"; }; }\nupstreams { upstream "app" { target "127.0.0.1:3000"; }; }\n`
const errs = (text: string) => decodeKdl(text, { file: "t.kdl" }).errors.map(formatIssue)
const ok = (text: string) => {
  const r = decodeKdl(text, { file: "t.kdl" })
  expect(r.errors.map(formatIssue)).toEqual([])
  return r.config!
}
const route = (body: string) => `${L}routes { route "ws" { matches { path-prefix "/ws"; }; upstream "app"; ${body} } }`

describe("WebSocket configuration", () => {
  it("websocket and websocket-inspection are flags on a route; off by default", () => {
    expect(ok(route("")).routes[0]).toMatchObject({ websocket: false, websocketInspection: false })
    expect(ok(route("websocket #true; websocket-inspection #true;")).routes[0]).toMatchObject({ websocket: true, websocketInspection: true })
  })

  it("the block form Sentinel silently reads as off is an error with the form that works", () => {
    expect(errs(route("websocket { max-frame-size 10; }"))).toEqual([
      expect.stringMatching(/t\.kdl:\d+:\d+: `websocket` is a flag, not a block: write `websocket #true`/)
    ])
    expect(errs(route("websocket"))[0]).toMatch(/`websocket` needs a value: `websocket #true`/)
    expect(errs(route('websocket "yes"'))[0]).toMatch(/must be #true or #false/)
  })

  it("inspection needs websocket; websocket needs an upstream", () => {
    expect(errs(route("websocket-inspection #true;"))[0]).toMatch(/`websocket-inspection #true` needs `websocket #true`/)
    expect(errs(`${L}routes { route "h" { matches { path "/h"; }; builtin-handler "health"; websocket #true; } }`)[0]).toMatch(
      /`websocket #true` needs an `upstream`/
    )
  })

  it("limits: frame and message sizes, idle timeout, lifetime, tunnel counts", () => {
    const c = ok(`${L}limits { websocket-max-frame-size "64KiB"; websocket-max-message-size 0; websocket-idle-timeout-secs 30; websocket-max-lifetime-secs 3600; max-websocket-tunnels 50; max-websocket-tunnels-per-client 5; }`)
    expect(c.limits).toMatchObject({
      websocketMaxFrameSize: 65536,
      websocketMaxMessageSize: 0,
      websocketIdleTimeout: Duration.seconds(30),
      websocketMaxLifetime: Duration.seconds(3600),
      maxWebsocketTunnels: 50,
      maxWebsocketTunnelsPerClient: 5
    })
    expect(errs(`${L}limits { websocket-max-frame-size 0; }`)[0]).toMatch(/at least 1/)
    expect(errs(`${L}limits { max-websocket-tunnels 0; }`)[0]).toMatch(/at least 1/)
  })
})

describe("WebSocket lint", () => {
  it("websocket-inspection without a websocket_frame agent is a warning", async () => {
    const { lintConfig } = await import("../../src/config/Lint.js")
    const base = `${L}agents { agent "a" { unix-socket "/tmp/a.sock"; events "request_headers"; } }\nfilters { filter "f" { type "agent"; agent "a"; } }\n`
    const c = ok(`${base}routes { route "ws" { matches { path-prefix "/ws"; }; upstream "app"; filters "f"; websocket #true; websocket-inspection #true; } }`)
    expect(lintConfig(c).map((w) => w.rule)).toContain("websocket-inspection-without-agent")
    const d = ok(`${base.replace('events "request_headers"', 'events "websocket_frame"')}routes { route "ws" { matches { path-prefix "/ws"; }; upstream "app"; filters "f"; websocket #true; websocket-inspection #true; } }`)
    expect(lintConfig(d).map((w) => w.rule)).not.toContain("websocket-inspection-without-agent")
  })
})
