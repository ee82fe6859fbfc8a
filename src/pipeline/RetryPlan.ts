/**
 * A route's retry settings compiled once per plan (the policy, the fail-over policy when
 * nothing was sent, how much of a body is buffered to be replayable, the head deadline of an
 * attempt), and how a failed attempt counts: for the retry decision and for its target.
 */
import type { DownstreamError, ExchangeError } from "../upstream/Errors.js"
import { noRetryPolicy, type FailureKind, type RetryPolicy } from "../upstream/Retry.js"
import type { AttemptResult } from "../upstream/Target.js"
import type { UpstreamRuntime } from "../upstream/Upstreams.js"
import type { Dataplane, RoutePlan } from "./Dataplane.js"

/**
 * Smallest buffering limit of a route whose retry-policy allows more than one attempt: a
 * declared body up to this (or up to `limits { request-buffer-size }`, if larger) is read
 * into memory before the first attempt so that a retry can replay it (a chunked one too, when
 * it ends within it). Larger bodies stream and are not replayed. Also the default of
 * `request-buffer-size`.
 */
export const DEFAULT_RETRY_BUFFER_BYTES = 64 * 1024

/** A route's retry settings, compiled once per (plan, configuration). */
export interface RetryPlan {
  readonly policy: RetryPolicy
  /** The policy used when nothing was sent: at least min(targets, 3) attempts. */
  readonly failover: RetryPolicy
  readonly bufferLimit: number
  readonly headersTimeoutMs: number
}

const retryPlans = new WeakMap<RoutePlan, RetryPlan>()

export const retryPlanOf = (dp: Dataplane, plan: RoutePlan, upstream: UpstreamRuntime): RetryPlan => {
  const cached = retryPlans.get(plan)
  if (cached !== undefined) return cached
  const policy: RetryPolicy = dp.config.routes.find((r) => r.id === plan.id)?.retryPolicy ?? noRetryPolicy
  const failoverAttempts = Math.min(upstream.targets.length, 3)
  const perAttempt = policy.perAttemptTimeoutMs ?? 0
  const read = plan.upstreamTimeoutMs > 0 ? plan.upstreamTimeoutMs : upstream.headersTimeoutMs
  const compiled: RetryPlan = {
    policy,
    failover: policy.maxAttempts >= failoverAttempts ? policy : { ...policy, maxAttempts: failoverAttempts },
    // Small declared bodies are read whole first (limits.request-buffer-size, nginx-like): one
    // piece upstream, replayable on failover; a route that retries buffers at least 64 KiB.
    bufferLimit: plan.bufferRequests
      ? plan.maxBodySize
      : Math.min(
          plan.maxBodySize,
          policy.maxAttempts > 1 ? Math.max(dp.limits.requestBufferSize, DEFAULT_RETRY_BUFFER_BYTES) : dp.limits.requestBufferSize
        ),
    headersTimeoutMs: perAttempt > 0 && (read <= 0 || perAttempt < read) ? perAttempt : read
  }
  retryPlans.set(plan, compiled)
  return compiled
}

export const nothingSentKinds: ReadonlySet<FailureKind> = new Set(["connect-refused", "connect-timeout", "reset-before-send"])

/** Failures of the target's exchange (the client's side, `DownstreamError`, is handled apart). */
export type TargetError = Exclude<ExchangeError, DownstreamError>

export const failureKind = (e: TargetError): FailureKind => {
  switch (e._tag) {
    case "UpstreamConnectFailed":
    case "UpstreamSaturated":
      // nothing was sent: another target may take it
      return "connect-refused"
    case "UpstreamTimeout":
      return e.phase === "connect" ? "connect-timeout" : "timeout"
    case "UpstreamProtocolError":
      return e.requestSent ? "reset-after-send" : "reset-before-send"
  }
}

export const requestSentOf = (e: TargetError): boolean =>
  e._tag === "UpstreamConnectFailed" || e._tag === "UpstreamSaturated" ? false : e.requestSent

export const targetResult = (e: TargetError): AttemptResult => {
  switch (e._tag) {
    case "UpstreamSaturated":
      // our own connection limits: the target did nothing wrong
      return "aborted"
    case "UpstreamConnectFailed":
      return "connect-failure"
    case "UpstreamTimeout":
      return e.phase === "connect" ? "connect-failure" : "timeout"
    case "UpstreamProtocolError":
      return "server-error"
  }
}

export type Decision = { readonly retry: true; readonly delayMs: number; readonly reason: string } | { readonly retry: false }
export const NO: Decision = { retry: false }
