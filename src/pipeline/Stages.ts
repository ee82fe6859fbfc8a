/**
 * Running a route's request stages (filters, agents, extensions) in order: synchronous until a
 * stage has to wait, then either on callbacks (`PendingStep`, driven by the pipeline) or as
 * one Effect for the rest of the stages.
 */
import * as Effect from "effect/Effect"
import type { RequestContext } from "./RequestContext.js"
import { callbackAsEffect, isPendingStep, type PendingStep, type RequestStage, type StageStep } from "./Stage.js"

/** Request stages stopped at a `PendingStep`; the stages from `next` run once it is done. */
export class Waiting {
  constructor(
    readonly pending: PendingStep,
    readonly next: number
  ) {}
}

/** The stages from `i` as one Effect (a fiber already runs the request). */
const stagesAsEffect = (ctx: RequestContext, stages: ReadonlyArray<RequestStage>, i: number): Effect.Effect<StageStep> => {
  const rest = runStages(ctx, stages, i)
  if (rest instanceof Waiting) {
    return Effect.flatMap(callbackAsEffect(rest.pending.start), (s) => (s !== undefined ? Effect.succeed(s) : stagesAsEffect(ctx, stages, rest.next)))
  }
  return Effect.isEffect(rest) ? rest : Effect.succeed(rest)
}

/**
 * Run request stages from `i`; synchronous until a stage has to wait: a `PendingStep` stops
 * here (`Waiting`, driven on callbacks), an Effect takes the rest of the stages with it.
 */
export const runStages = (
  ctx: RequestContext,
  stages: ReadonlyArray<RequestStage>,
  i: number
): StageStep | Effect.Effect<StageStep> | Waiting => {
  for (; i < stages.length; i++) {
    const step = stages[i](ctx)
    if (step === undefined) continue
    if (isPendingStep(step)) return new Waiting(step, i + 1)
    if (Effect.isEffect(step)) {
      const next = i + 1
      return Effect.flatMap(step, (s): Effect.Effect<StageStep> => (s !== undefined ? Effect.succeed(s) : stagesAsEffect(ctx, stages, next)))
    }
    return step
  }
  return undefined
}
