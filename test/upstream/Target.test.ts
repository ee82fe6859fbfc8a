import { assert, describe, it } from "@effect/vitest"
import { type BalancerContext, makeBalancer, pick } from "../../src/upstream/Balancer.js"
import { CircuitBreaker } from "../../src/upstream/Circuit.js"
import { UpstreamHealth } from "../../src/upstream/Health.js"
import { resultOfStatus, TargetState } from "../../src/upstream/Target.js"

const ctx: BalancerContext = { clientIp: "192.0.2.1", header: () => undefined, cookie: () => undefined, path: "/" }

const setup = (n: number) => {
  let t = 0
  const health = new UpstreamHealth("api", Array.from({ length: n }, (_, i) => `t${i}`), { now: () => t })
  const targets = health.targets.map(
    (h, i) => new TargetState(i, h.id, 1, h, new CircuitBreaker({ failureThreshold: 2, successThreshold: 2, openTimeoutMs: 1000 }, undefined, () => t), { now: () => t })
  )
  return { targets, tick: (ms: number) => void (t += ms), balancer: makeBalancer({ algorithm: "round_robin" }, targets) }
}

describe("Target", () => {
  it("regression (Sentinel #261): an open target that selection keeps skipping still recovers", () => {
    const { targets, tick, balancer } = setup(3)
    // target 0 fails twice: open
    for (let i = 0; i < 2; i++) {
      assert.isTrue(targets[0].eligible())
      targets[0].begin()
      targets[0].end("connect-failure")
    }
    assert.strictEqual(targets[0].circuit.state, "open")
    // while open, it is never picked
    for (let i = 0; i < 30; i++) {
      const p = pick(balancer, ctx, targets)!
      assert.notStrictEqual(p.index, 0)
      targets[p.index].begin()
      targets[p.index].end("success", 5)
    }
    tick(1000)
    // after the timeout it gets probes from ordinary selection and closes after 2 successes
    let probes = 0
    for (let i = 0; i < 30 && targets[0].circuit.state !== "closed"; i++) {
      const p = pick(balancer, ctx, targets)!
      if (p.index === 0) probes++
      targets[p.index].begin()
      targets[p.index].end("success", 5)
    }
    assert.strictEqual(probes, 2)
    assert.strictEqual(targets[0].circuit.state, "closed")
  })

  it("a probe whose client left gives its slot back; load counters return to zero", () => {
    const { targets, tick } = setup(1)
    targets[0].end("server-error")
    targets[0].end("server-error")
    tick(1000)
    assert.isTrue(targets[0].eligible())
    targets[0].begin()
    assert.isFalse(targets[0].eligible(), "one probe at a time")
    targets[0].end("aborted")
    assert.isTrue(targets[0].eligible(), "slot released")
    targets[0].cancel()
    assert.strictEqual(targets[0].activeRequests, 0)
  })

  it("5xx counts as a failure, below 500 as success (Sentinel's definition)", () => {
    assert.strictEqual(resultOfStatus(200), "success")
    assert.strictEqual(resultOfStatus(404), "success")
    assert.strictEqual(resultOfStatus(503), "server-error")
    assert.strictEqual(resultOfStatus(0), "server-error")
  })

  it("an aborted attempt (client gone) gives a half-open probe slot back; a retry skips the tried target while another is eligible", () => {
    const { targets, tick, balancer } = setup(2)
    for (let i = 0; i < 2; i++) {
      assert.isTrue(targets[0].eligible())
      targets[0].begin()
      targets[0].end("server-error")
    }
    assert.strictEqual(targets[0].circuit.state, "open")
    assert.isFalse(targets[0].eligible())
    tick(1000)
    // half-open: one probe; the client leaves before it is settled
    assert.isTrue(targets[0].eligible())
    targets[0].begin()
    assert.isFalse(targets[0].circuit.wouldAdmit(), "the probe slot is taken")
    targets[0].end("aborted")
    assert.strictEqual(targets[0].circuit.state, "half-open")
    assert.isTrue(targets[0].circuit.wouldAdmit(), "the aborted probe released its slot")
    // the selection the upstream stage makes (Upstreams.select): untried first, a tried one as the fall-back
    assert.strictEqual(pick(balancer, ctx, targets, 2, [0])?.index, 1)
    targets[1].circuit.onFailure()
    targets[1].circuit.onFailure()
    assert.strictEqual(pick(balancer, ctx, targets, 2, [0])?.index, 0)
  })
})
