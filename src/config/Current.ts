/**
 * The configuration in force and who follows it (the metrics listener of a single process).
 * A value and a list of followers: effect's `SubscriptionRef` did the same through its
 * `Stream` and `PubSub` machinery, which costs about 2 MiB of heap in every process from the
 * start (bench/README.md, "Memory") for one follower per reload.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export interface Current<A> {
  /** The value in force. */
  readonly get: Effect.Effect<A>
  /** Replaces the value, then runs each follower with it, one after another, in the order they started following. */
  readonly set: (a: A) => Effect.Effect<void>
  /** Runs `f` with every value set from now on, for as long as the scope lasts. */
  readonly follow: (f: (a: A) => Effect.Effect<void>) => Effect.Effect<void, never, Scope.Scope>
}

export const makeCurrent = <A>(initial: A): Current<A> => {
  let value = initial
  const followers = new Set<(a: A) => Effect.Effect<void>>()
  return {
    get: Effect.sync(() => value),
    set: (a) =>
      Effect.suspend(() => {
        value = a
        return Effect.forEach([...followers], (f) => f(a), { discard: true })
      }),
    follow: (f) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          // a function may follow twice (two scopes): each subscription is its own entry
          const entry = (a: A) => f(a)
          followers.add(entry)
          return entry
        }),
        (entry) => Effect.sync(() => followers.delete(entry))
      ).pipe(Effect.asVoid)
  }
}
