import { describe, expect, it } from "vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import fc from "fast-check"
import { makeCurrent } from "../../src/config/Current.js"

describe("Current (the configuration in force and its followers)", () => {
  it("a follower sees every value set while its scope lasts, in order; get is the last value set", () =>
    fc.assert(
      fc.property(fc.array(fc.integer(), { maxLength: 20 }), fc.nat(20), fc.nat(20), (values, startAt, length) => {
        const from = Math.min(startAt, values.length)
        const to = Math.min(from + length, values.length)
        const seen: Array<number> = []
        const order: Array<string> = []
        const program = Effect.gen(function* () {
          const current = makeCurrent(-1)
          for (const v of values.slice(0, from)) yield* current.set(v)
          const scope = yield* Scope.make()
          yield* Scope.extend(current.follow((v) => Effect.sync(() => (seen.push(v), order.push("a")))), scope)
          const other = yield* Scope.make()
          yield* Scope.extend(current.follow(() => Effect.sync(() => order.push("b"))), other)
          for (const v of values.slice(from, to)) yield* current.set(v)
          yield* Scope.close(scope, Exit.void)
          for (const v of values.slice(to)) yield* current.set(v)
          yield* Scope.close(other, Exit.void)
          return yield* current.get
        })
        const last = Effect.runSync(program)
        expect(last).toBe(values.length > 0 ? values[values.length - 1] : -1)
        expect(seen).toEqual(values.slice(from, to))
        // followers run one after another, in the order they started following
        expect(order.join("")).toBe("ab".repeat(to - from) + "b".repeat(values.length - to))
      })
    ))

  it("set waits for its followers: the value is in force and every follower has run when it completes", async () => {
    const current = makeCurrent("one")
    const log: Array<string> = []
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          yield* current.follow((v) => Effect.promise(() => new Promise<void>((r) => setImmediate(() => (log.push(`slow ${v}`), r())))))
          yield* current.follow((v) => Effect.sync(() => log.push(`fast ${v}`)))
          yield* current.set("two")
          log.push(`set done, get ${yield* current.get}`)
        })
      )
    )
    expect(log).toEqual(["slow two", "fast two", "set done, get two"])
  })
})
