/**
 * Per-agent call policy around the connection pool: circuit breaker, bounded
 * concurrency with a bounded wait, and one deadline (`timeoutMs`) covering the
 * wait and the call. Plain callbacks: this runs once per agent per phase.
 */
import * as Data from "effect/Data"
import * as Either from "effect/Either"
import { CircuitBreaker, type CircuitState } from "../upstream/Circuit.js"
import type { AgentConfig } from "./AgentConfig.js"
import { type AgentCallError, type AgentClient, AgentUnavailable, type CancelCall } from "./Channels.js"
import { type AgentResponse, CancelReason, type MessageType } from "./Protocol.js"

/** No slot within `max-concurrent-calls` and the bounded wait is full or ran out of time. */
export class AgentOverloaded extends Data.TaggedError("AgentOverloaded")<{
  readonly agent: string
  readonly reason: "queue-full" | "queue-timeout"
  readonly maxConcurrentCalls: number
}> {}

/** The agent's circuit breaker is open: the call was not attempted. */
export class AgentCircuitOpen extends Data.TaggedError("AgentCircuitOpen")<{
  readonly agent: string
}> {}

export type AgentFailure = AgentCallError | AgentOverloaded | AgentCircuitOpen

type Done = (result: Either.Either<AgentResponse, AgentFailure>) => void

interface Waiter {
  readonly type: MessageType
  readonly event: { readonly correlation_id: string }
  readonly deadline: number
  readonly done: Done
  timer: ReturnType<typeof setTimeout> | undefined
  cancelCall: CancelCall | undefined
  state: "queued" | "running" | "settled"
}

export interface AgentRuntimeStatus {
  readonly inflight: number
  readonly queued: number
  readonly circuit: CircuitState
}

export class AgentRuntime {
  private inflight = 0
  private readonly queue: Array<Waiter> = []
  readonly breaker: CircuitBreaker

  constructor(
    readonly config: AgentConfig,
    readonly client: AgentClient,
    onCircuitTransition?: (from: CircuitState, to: CircuitState) => void,
    private readonly now: () => number = () => performance.now()
  ) {
    this.breaker = new CircuitBreaker(config.circuitBreaker, onCircuitTransition, now)
  }

  status(): AgentRuntimeStatus {
    return { inflight: this.inflight, queued: this.queue.length, circuit: this.breaker.state }
  }

  /**
   * One call under the agent's policy. `done` runs exactly once unless the
   * returned cancel runs first (which sends Cancel to the agent if the call
   * was already on the wire). `timeoutMs` (a filter's `timeout-ms`) replaces the agent's.
   */
  invoke(type: MessageType, event: { readonly correlation_id: string }, done: Done, timeoutMs?: number): CancelCall {
    if (!this.breaker.tryAcquire()) {
      done(Either.left(new AgentCircuitOpen({ agent: this.config.id })))
      return noop
    }
    const w: Waiter = {
      type,
      event,
      deadline: this.now() + (timeoutMs ?? this.config.timeoutMs),
      done,
      timer: undefined,
      cancelCall: undefined,
      state: "queued"
    }
    if (this.inflight < this.config.maxConcurrentCalls) {
      this.run(w)
    } else if (this.queue.length >= this.config.maxQueuedCalls) {
      this.breaker.release()
      w.state = "settled"
      done(Either.left(this.overloaded("queue-full")))
      return noop
    } else {
      this.queue.push(w)
      w.timer = setTimeout(() => {
        w.timer = undefined
        if (w.state !== "queued") return
        this.unqueue(w)
        w.state = "settled"
        this.breaker.release()
        w.done(Either.left(this.overloaded("queue-timeout")))
      }, Math.max(0, w.deadline - this.now()))
    }
    return (reason: CancelReason = CancelReason.ClientDisconnect) => this.cancel(w, reason)
  }

  private overloaded(reason: AgentOverloaded["reason"]): AgentOverloaded {
    return new AgentOverloaded({ agent: this.config.id, reason, maxConcurrentCalls: this.config.maxConcurrentCalls })
  }

  private run(w: Waiter): void {
    w.state = "running"
    this.inflight++
    const remaining = Math.max(1, Math.round(w.deadline - this.now()))
    w.cancelCall = this.client.start(w.type, w.event, remaining, (result) => {
      if (w.state !== "running") return
      w.state = "settled"
      this.inflight--
      if (Either.isRight(result)) this.breaker.onSuccess()
      else if (result.left._tag === "AgentUnavailable" && result.left.reason === "duplicate-correlation-id") {
        // the caller reused a correlation id: not the agent's fault, must not open its circuit
        this.breaker.release()
      } else this.breaker.onFailure()
      this.wake()
      w.done(result)
    })
  }

  private cancel(w: Waiter, reason: CancelReason): void {
    if (w.state === "queued") {
      this.unqueue(w)
      if (w.timer) clearTimeout(w.timer)
      w.timer = undefined
      w.state = "settled"
      this.breaker.release()
    } else if (w.state === "running") {
      w.state = "settled"
      this.inflight--
      w.cancelCall?.(reason)
      this.breaker.release()
      this.wake()
    }
  }

  private unqueue(w: Waiter): void {
    const i = this.queue.indexOf(w)
    if (i >= 0) this.queue.splice(i, 1)
  }

  /** Starts queued calls while slots are free. */
  private wake(): void {
    while (this.inflight < this.config.maxConcurrentCalls && this.queue.length > 0) {
      const next = this.queue.shift()!
      if (next.timer) clearTimeout(next.timer)
      next.timer = undefined
      if (next.deadline - this.now() < 1) {
        // its whole budget went on waiting: starting it could only time out
        next.state = "settled"
        this.breaker.release()
        next.done(Either.left(this.overloaded("queue-timeout")))
        continue
      }
      this.run(next)
    }
  }

  /** Fails queued calls (scope closing); running ones are failed by the client. */
  close(): void {
    for (const w of this.queue.splice(0)) {
      if (w.timer) clearTimeout(w.timer)
      w.state = "settled"
      w.done(Either.left(new AgentUnavailable({ agent: this.config.id, reason: "closed", message: "agent manager closed" })))
    }
  }
}

const noop: CancelCall = () => {}
