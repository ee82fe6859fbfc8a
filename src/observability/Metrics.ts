/**
 * Every Prometheus metric Sentinel exposes, in one file (STYLE.md: "all metric
 * definitions in one file").
 *
 * - A registry is made by `makeMetrics()`, never the prom-client global one, so
 *   tests get a fresh registry each and nothing leaks between them.
 * - The hot path calls plain methods (`metrics.requests.inc(route, method, status)`)
 *   that look the label set up in a Map of pre-bound prom-client children: one
 *   string join and one Map lookup per call, no Effect.
 * - Label cardinality is bounded: each labelled metric keeps at most
 *   `maxSeriesPerMetric` distinct label sets; further ones are counted under the
 *   label set where every value is "other" (and the overflow is itself counted in
 *   `sentinel_metric_series_overflow_total{metric}`). Callers pass route ids and
 *   upstream ids, never raw paths.
 *   The primitives are in `BoundedMetrics.ts`; the cluster's IPC in `ClusterIpc.ts`.
 */
// Subpath imports: the cluster primary loads this file and nothing else of
// Effect, and the "effect" barrel costs ~0.5 s of CPU at start-up.
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Aggregator } from "prom-client"
import {
  BoundedCounter,
  BoundedGauge,
  BoundedHistogram,
  ChildPairs,
  type CounterChild,
  type HistogramChild,
  type Overflow
} from "./BoundedMetrics.js"

const MAX_METHODS_PER_ROUTE = 32

/** Circuit breaker state as exported by `sentinel_circuit_breaker_state`. */
export const CircuitStateValue = { closed: 0, open: 1, "half-open": 2 } as const
export type CircuitStateName = keyof typeof CircuitStateValue

export interface MetricsOptions {
  /** Distinct label sets kept per metric before new ones go to "other". Default 2000. */
  readonly maxSeriesPerMetric?: number
  /**
   * Collect prom-client's default process metrics (CPU, memory, event loop lag,
   * GC, handles). Default true. They install process-wide observers, so make one
   * registry per process (not one per reload).
   */
  readonly defaultMetrics?: boolean
  /** Version reported by `sentinel_build_info`. Default "0.0.0". */
  readonly version?: string
  /** Buckets of `sentinel_request_duration_seconds`. */
  readonly requestDurationBuckets?: ReadonlyArray<number>
  /** Buckets of `sentinel_agent_latency_seconds`. */
  readonly agentLatencyBuckets?: ReadonlyArray<number>
  /** Buckets of `sentinel_upstream_duration_seconds`. Default `REQUEST_DURATION_BUCKETS`. */
  readonly upstreamDurationBuckets?: ReadonlyArray<number>
}

/** What `Metrics.retain` keeps after a reload: the configured upstream targets and agents. */
export interface MetricsTopology {
  readonly upstreams: ReadonlyArray<{ readonly id: string; readonly targets: ReadonlyArray<{ readonly address: string }> }>
  readonly agents: ReadonlyArray<{ readonly id: string }>
}

/** Default buckets for request latency: 1 ms .. 60 s. */
export const REQUEST_DURATION_BUCKETS: ReadonlyArray<number> = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
]
/** Default buckets for agent calls: 0.5 ms .. 5 s (agent timeouts are ~100 ms). */
export const AGENT_LATENCY_BUCKETS: ReadonlyArray<number> = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5
]

/** All of Sentinel's metrics on one registry. Built by `makeMetrics`. */
export class Metrics {
  readonly registry: Registry
  readonly maxSeriesPerMetric: number

  /** sentinel_requests_total{route,method,status} */
  readonly requests: BoundedCounter<readonly ["route", "method", "status"]>
  /** sentinel_request_duration_seconds{route,method} */
  readonly requestDuration: BoundedHistogram<readonly ["route", "method"]>
  /** sentinel_active_requests (requests admitted and not yet logged) */
  readonly activeRequests: Gauge<string>
  /** sentinel_open_connections (downstream connections) */
  readonly openConnections: Gauge<string>
  /** sentinel_rejected_requests_total{reason}: every rejection or alteration decision */
  readonly rejected: BoundedCounter<readonly ["reason"]>
  /** sentinel_requests_by_protocol_total{listener,protocol}: requests answered, by HTTP version and TLS */
  readonly requestsByProtocol: BoundedCounter<readonly ["listener", "protocol"]>
  /** sentinel_http2_defences_total{listener,reason}: HTTP/2 sessions closed or refused by a defence */
  readonly http2Defences: BoundedCounter<readonly ["listener", "reason"]>
  /** sentinel_tls_handshake_errors_total{listener,reason}: failed TLS handshakes */
  readonly tlsHandshakeErrors: BoundedCounter<readonly ["listener", "reason"]>
  /** sentinel_tls_certificate_expiry_seconds{listener,hostname}: seconds until a served certificate expires */
  readonly tlsCertificateExpiry: BoundedGauge<readonly ["listener", "hostname"]>
  /** sentinel_upstream_attempts_total{upstream,route} */
  readonly upstreamAttempts: BoundedCounter<readonly ["upstream", "route"]>
  /**
   * sentinel_upstream_duration_seconds{upstream,target}: one observation per attempt, from
   * sending it to its response head (or its failure); `_count` is the attempts per target.
   */
  readonly upstreamDuration: BoundedHistogram<readonly ["upstream", "target"]>
  /** sentinel_upstream_failures_total{upstream,route,reason} */
  readonly upstreamFailures: BoundedCounter<readonly ["upstream", "route", "reason"]>
  /** sentinel_upstream_health{upstream,target}: 1 healthy, 0 unhealthy */
  readonly upstreamHealth: BoundedGauge<readonly ["upstream", "target"]>
  /** sentinel_circuit_breaker_state{component,target}: 0 closed, 1 open, 2 half-open */
  readonly circuitState: BoundedGauge<readonly ["component", "target"]>
  /** sentinel_circuit_breaker_transitions_total{component,target,to} */
  readonly circuitTransitions: BoundedCounter<readonly ["component", "target", "to"]>
  /** sentinel_upstream_retries_total{upstream,route,reason} */
  readonly upstreamRetries: BoundedCounter<readonly ["upstream", "route", "reason"]>
  /** sentinel_connection_pool_size{upstream} */
  readonly connectionPoolSize: BoundedGauge<readonly ["upstream"]>
  /** sentinel_agent_calls_total{agent,event,result} */
  readonly agentCalls: BoundedCounter<readonly ["agent", "event", "result"]>
  /** sentinel_agent_latency_seconds{agent,event} */
  readonly agentLatency: BoundedHistogram<readonly ["agent", "event"]>
  /** sentinel_agent_timeouts_total{agent,event} */
  readonly agentTimeouts: BoundedCounter<readonly ["agent", "event"]>
  /** sentinel_agent_failures_total{agent,reason} */
  readonly agentFailures: BoundedCounter<readonly ["agent", "reason"]>
  /** sentinel_agent_fail_open_total{agent}: requests let through because an agent failed open */
  readonly agentFailOpen: BoundedCounter<readonly ["agent"]>
  /** sentinel_blocked_requests_total{reason} */
  readonly blocked: BoundedCounter<readonly ["reason"]>
  /** sentinel_rate_limited_total{route} */
  readonly rateLimited: BoundedCounter<readonly ["route"]>
  /** sentinel_ratelimit_backend_errors_total{filter,reason}: rate-limit decisions Redis did not make (the fallback did) */
  readonly rateLimitBackendErrors: BoundedCounter<readonly ["filter", "reason"]>
  /** sentinel_websocket_connections_total{route}: WebSocket tunnels opened (upstream answered 101) */
  readonly websocketConnections: BoundedCounter<readonly ["route"]>
  /** sentinel_websocket_connections_active: WebSocket tunnels open now */
  readonly websocketActive: Gauge<string>
  /** sentinel_websocket_frames_total{route,direction,decision}: frames relayed ("allow"), dropped or closed on */
  readonly websocketFrames: BoundedCounter<readonly ["route", "direction", "decision"]>
  /** sentinel_websocket_bytes_total{route,direction}: tunnel bytes received, by direction */
  readonly websocketBytes: BoundedCounter<readonly ["route", "direction"]>
  /** sentinel_websocket_closes_total{route,reason}: tunnels ended, by why */
  readonly websocketCloses: BoundedCounter<readonly ["route", "reason"]>
  /** sentinel_compression_responses_total{route,algorithm}: responses the `compress` filter encoded */
  readonly compressed: BoundedCounter<readonly ["route", "algorithm"]>
  /** sentinel_compression_input_bytes_total{route,algorithm}: body bytes that went into the encoders */
  readonly compressionIn: BoundedCounter<readonly ["route", "algorithm"]>
  /** sentinel_compression_output_bytes_total{route,algorithm}: encoded bytes that came out */
  readonly compressionOut: BoundedCounter<readonly ["route", "algorithm"]>
  /** sentinel_compression_skipped_total{route,reason}: responses a `compress` filter sent as they came, and why */
  readonly compressionSkipped: BoundedCounter<readonly ["route", "reason"]>
  /** sentinel_cache_requests_total{route,result}: requests of caching routes by outcome (hit, stale, stale-if-error, revalidated, miss, bypass) */
  readonly cacheRequests: BoundedCounter<readonly ["route", "result"]>
  /** sentinel_cache_evictions_total{route}: entries the byte bound pushed out */
  readonly cacheEvictions: BoundedCounter<readonly ["route"]>
  /** sentinel_cache_bytes{route}: bytes of the route's stored responses */
  readonly cacheBytes: BoundedGauge<readonly ["route"]>
  /** sentinel_cache_entries{route}: stored responses (variants) of the route */
  readonly cacheEntries: BoundedGauge<readonly ["route"]>
  /** sentinel_config_reload_total{result} ("success" | "error"), counted by config/Reload.ts */
  readonly configReloads: BoundedCounter<readonly ["result"]>
  /** sentinel_log_dropped_total{log} ("access" | "error" | "audit" | ...) */
  readonly logDropped: BoundedCounter<readonly ["log"]>
  /** sentinel_build_info{version,node}, always 1 */
  readonly buildInfo: Gauge<string>
  /** sentinel_metric_series_overflow_total{metric}: label sets mapped to "other" */
  readonly seriesOverflow: Counter<string>

  private readonly attemptChildren = new ChildPairs<CounterChild>((u, r) => this.upstreamAttempts.child(u, r))
  private readonly durationChildren = new ChildPairs<HistogramChild>((u, t) =>
    this.upstreamDuration.child(u, t)
  )
  /** `completed`'s series per (route, method); methods are client tokens, so capped per route. */
  private readonly completedSeries = new ChildPairs<{ readonly duration: HistogramChild; readonly byStatus: Map<number, CounterChild> }>(
    (route, method) => ({ duration: this.requestDuration.child(route, method), byStatus: new Map() }),
    MAX_METHODS_PER_ROUTE
  )

  private readonly protocolChildren = new ChildPairs<CounterChild>((l, p) => this.requestsByProtocol.child(l, p))

  /** `agentCall`'s series per (agent, event): agents and events come from the configuration. */
  private readonly agentSeries = new ChildPairs<{ readonly latency: HistogramChild; readonly byResult: Map<string, CounterChild> }>(
    (agent, event) => ({ latency: this.agentLatency.child(agent, event), byResult: new Map() })
  )

  /** One agent call settled with `result` after `ms` milliseconds (per-call path, as `upstreamAttempt`). */
  agentCall(agent: string, event: string, result: string, ms: number): void {
    const series = this.agentSeries.get(agent, event)
    series.latency.observe(ms / 1000)
    let calls = series.byResult.get(result)
    if (calls === undefined) {
      calls = this.agentCalls.child(agent, event, result)
      series.byResult.set(result, calls)
    }
    calls.inc()
  }

  /** A request answered on `listener` over `protocol` (per-request path, as `upstreamAttempt`). */
  servedOver(listener: string, protocol: string): void {
    this.protocolChildren.get(listener, protocol).inc()
  }

  /** One upstream attempt (per-attempt path: no key string, no allocation once the pair is seen). */
  upstreamAttempt(upstream: string, route: string): void {
    this.attemptChildren.get(upstream, route).inc()
  }

  /** An upstream attempt settled after `ms` milliseconds (per-attempt path, as above). */
  upstreamAttemptDuration(upstream: string, target: string, ms: number): void {
    this.durationChildren.get(upstream, target).observe(ms / 1000)
  }

  /**
   * After a reload: drops the gauge series (health, circuit state, pool size) of upstream
   * targets and agents the configuration no longer has, so they stop being exported.
   * Counters and histograms keep their series (monotonic; they go at the next restart).
   */
  retain(topology: MetricsTopology): void {
    const targets = new Map(topology.upstreams.map((u) => [u.id, new Set(u.targets.map((t) => t.address))]))
    const agents = new Set(topology.agents.map((a) => a.id))
    for (const [upstream, target] of this.upstreamHealth.labelSets()) {
      if (targets.get(upstream)?.has(target) !== true) this.upstreamHealth.remove(upstream, target)
    }
    for (const [component, target] of this.circuitState.labelSets()) {
      const gone = component.startsWith("upstream:")
        ? targets.get(component.slice("upstream:".length))?.has(target) !== true
        : component === "agent" && !agents.has(target)
      if (gone) this.circuitState.remove(component, target)
    }
    for (const [upstream] of this.connectionPoolSize.labelSets()) {
      if (!targets.has(upstream)) this.connectionPoolSize.remove(upstream)
    }
    for (const pairs of [this.attemptChildren, this.durationChildren]) {
      for (const upstream of pairs.firsts()) if (!targets.has(upstream)) pairs.forget(upstream)
    }
  }

  /**
   * One answered request: `requests_total{route,method,status}` + 1 and its duration in
   * `request_duration_seconds{route,method}`. The per-request call of the pipeline: the
   * children are cached per (route, method) and then per status, so no key string is built.
   * Methods are client tokens: past `MAX_METHODS_PER_ROUTE` distinct ones per route the cache
   * stops growing and the (capped) general path is taken.
   */
  completed(route: string, method: string, status: number, seconds: number): void {
    const series = this.completedSeries.find(route, method)
    if (series === undefined) {
      this.requests.inc(route, method, status)
      this.requestDuration.observe(seconds, route, method)
      return
    }
    let counter = series.byStatus.get(status)
    if (counter === undefined) {
      counter = this.requests.child(route, method, status)
      series.byStatus.set(status, counter)
    }
    counter.inc()
    series.duration.observe(seconds)
  }
  /**
   * `sentinel_active_requests` is read at scrape time from `read` (the listeners' in-flight
   * counts) instead of being moved on every request.
   */
  readActiveRequestsFrom(read: () => number): void {
    const gauge = this.activeRequests as unknown as { collect?: () => void }
    gauge.collect = () => this.activeRequests.set(read())
  }

  constructor(options: MetricsOptions = {}) {
    const registry = new Registry()
    this.registry = registry
    const max = options.maxSeriesPerMetric ?? 2000
    this.maxSeriesPerMetric = max
    const registers = [registry]

    const overflowCounter = new Counter({
      name: "sentinel_metric_series_overflow_total",
      help: "Label sets that exceeded the per-metric series cap and were counted as \"other\".",
      labelNames: ["metric"],
      registers
    })
    this.seriesOverflow = overflowCounter
    // The metric label is one of our own fixed names, so this cache needs no cap.
    const overflowChildren = new Map<string, Counter.Internal>()
    const onOverflow: Overflow = (metric) => {
      let c = overflowChildren.get(metric)
      if (c === undefined) {
        c = overflowCounter.labels(metric)
        overflowChildren.set(metric, c)
      }
      c.inc()
    }

    const counter = <L extends ReadonlyArray<string>>(name: string, help: string, labels: L) =>
      new BoundedCounter<L>(
        new Counter({ name, help, labelNames: labels, registers }),
        name,
        labels.length,
        max,
        onOverflow,
        labels
      )
    const gauge = <L extends ReadonlyArray<string>>(name: string, help: string, labels: L, aggregator: Aggregator) =>
      new BoundedGauge<L>(
        new Gauge({ name, help, labelNames: labels, registers, aggregator }),
        name,
        labels.length,
        max,
        onOverflow
      )
    const histogram = <L extends ReadonlyArray<string>>(
      name: string,
      help: string,
      labels: L,
      buckets: ReadonlyArray<number>
    ) =>
      new BoundedHistogram<L>(
        new Histogram({ name, help, labelNames: labels, registers, buckets: [...buckets] }),
        name,
        labels.length,
        max,
        onOverflow,
        labels
      )

    this.requests = counter("sentinel_requests_total", "Requests answered, by route, method and status.", [
      "route",
      "method",
      "status"
    ] as const)
    this.requestDuration = histogram(
      "sentinel_request_duration_seconds",
      "Time from request head received to response finished, by route and method.",
      ["route", "method"] as const,
      options.requestDurationBuckets ?? REQUEST_DURATION_BUCKETS
    )
    this.activeRequests = new Gauge({
      name: "sentinel_active_requests",
      help: "Requests in flight.",
      registers,
      aggregator: "sum"
    })
    this.openConnections = new Gauge({
      name: "sentinel_open_connections",
      help: "Open downstream connections.",
      registers,
      aggregator: "sum"
    })
    this.rejected = counter(
      "sentinel_rejected_requests_total",
      "Requests rejected or altered by a limit, validation, filter or agent decision, by reason.",
      ["reason"] as const
    )
    this.requestsByProtocol = counter(
      "sentinel_requests_by_protocol_total",
      "Requests answered, by listener and protocol (HTTP/1.0, HTTP/1.1, HTTP/2; with +TLS over TLS).",
      ["listener", "protocol"] as const
    )
    this.http2Defences = counter(
      "sentinel_http2_defences_total",
      "HTTP/2 sessions closed or refused by a defence (rapid_reset, max_requests, idle_timeout, session_error).",
      ["listener", "reason"] as const
    )
    this.tlsHandshakeErrors = counter(
      "sentinel_tls_handshake_errors_total",
      "TLS handshakes that failed, by reason (timeout, no_client_certificate, bad_certificate, version, cipher, other).",
      ["listener", "reason"] as const
    )
    this.tlsCertificateExpiry = gauge(
      "sentinel_tls_certificate_expiry_seconds",
      "Seconds until a certificate a listener serves expires (negative once expired).",
      ["listener", "hostname"] as const,
      "min"
    )
    this.upstreamAttempts = counter(
      "sentinel_upstream_attempts_total",
      "Attempts to send a request upstream (first tries and retries).",
      ["upstream", "route"] as const
    )
    this.upstreamDuration = histogram(
      "sentinel_upstream_duration_seconds",
      "Upstream attempt time, from sending to the response head (or the failure), by upstream and target.",
      ["upstream", "target"] as const,
      options.upstreamDurationBuckets ?? REQUEST_DURATION_BUCKETS
    )
    this.upstreamFailures = counter(
      "sentinel_upstream_failures_total",
      "Failed upstream attempts, by reason (connect, timeout, reset, status ...).",
      ["upstream", "route", "reason"] as const
    )
    // Each worker probes on its own; across workers the pessimistic view wins.
    this.upstreamHealth = gauge(
      "sentinel_upstream_health",
      "Health of an upstream target: 1 healthy, 0 unhealthy.",
      ["upstream", "target"] as const,
      "min"
    )
    // Each worker has its own breakers; across workers the worst state wins.
    this.circuitState = gauge(
      "sentinel_circuit_breaker_state",
      "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
      ["component", "target"] as const,
      "max"
    )
    this.circuitTransitions = counter(
      "sentinel_circuit_breaker_transitions_total",
      "Circuit breaker state changes, by the state entered.",
      ["component", "target", "to"] as const
    )
    this.upstreamRetries = counter(
      "sentinel_upstream_retries_total",
      "Retries of upstream requests, by the reason of the failed attempt.",
      ["upstream", "route", "reason"] as const
    )
    this.connectionPoolSize = gauge(
      "sentinel_connection_pool_size",
      "Open connections in the upstream pool.",
      ["upstream"] as const,
      "sum"
    )
    this.agentCalls = counter(
      "sentinel_agent_calls_total",
      "Agent calls, by event and result (allow, block, redirect, challenge, error, timeout ...).",
      ["agent", "event", "result"] as const
    )
    this.agentLatency = histogram(
      "sentinel_agent_latency_seconds",
      "Agent call latency, by event.",
      ["agent", "event"] as const,
      options.agentLatencyBuckets ?? AGENT_LATENCY_BUCKETS
    )
    this.agentTimeouts = counter("sentinel_agent_timeouts_total", "Agent calls that timed out.", [
      "agent",
      "event"
    ] as const)
    this.agentFailures = counter(
      "sentinel_agent_failures_total",
      "Agent call failures, by reason (connect, protocol, circuit-open, overloaded ...).",
      ["agent", "reason"] as const
    )
    this.agentFailOpen = counter(
      "sentinel_agent_fail_open_total",
      "Requests let through because an agent failed and its policy is fail-open.",
      ["agent"] as const
    )
    this.blocked = counter("sentinel_blocked_requests_total", "Requests blocked, by reason.", ["reason"] as const)
    this.rateLimited = counter("sentinel_rate_limited_total", "Requests refused by a rate limit, by route.", [
      "route"
    ] as const)
    this.rateLimitBackendErrors = counter(
      "sentinel_ratelimit_backend_errors_total",
      "Rate-limit decisions the shared backend (Redis) did not make, so the fallback did, by filter and reason (timeout, error, not_connected, circuit_open).",
      ["filter", "reason"] as const
    )
    this.websocketConnections = counter(
      "sentinel_websocket_connections_total",
      "WebSocket tunnels opened (the upstream answered the handshake with 101), by route.",
      ["route"] as const
    )
    this.websocketActive = new Gauge({
      name: "sentinel_websocket_connections_active",
      help: "WebSocket tunnels open now.",
      registers,
      aggregator: "sum"
    })
    this.websocketFrames = counter(
      "sentinel_websocket_frames_total",
      "WebSocket frames, by route, direction (client_to_server, server_to_client) and decision (allow, drop, close).",
      ["route", "direction", "decision"] as const
    )
    this.websocketBytes = counter(
      "sentinel_websocket_bytes_total",
      "WebSocket tunnel bytes received, by route and direction (client_to_server, server_to_client).",
      ["route", "direction"] as const
    )
    this.websocketCloses = counter(
      "sentinel_websocket_closes_total",
      "WebSocket tunnels ended, by route and reason (close_handshake, client_gone, upstream_gone, idle_timeout, max_lifetime, protocol_error, too_big, agent_close, agent_failure, going_away).",
      ["route", "reason"] as const
    )
    this.compressed = counter(
      "sentinel_compression_responses_total",
      "Responses encoded by a compress filter, by route and algorithm (gzip, br, deflate).",
      ["route", "algorithm"] as const
    )
    this.compressionIn = counter(
      "sentinel_compression_input_bytes_total",
      "Response body bytes that went into a compress filter's encoder, by route and algorithm.",
      ["route", "algorithm"] as const
    )
    this.compressionOut = counter(
      "sentinel_compression_output_bytes_total",
      "Encoded response body bytes a compress filter sent, by route and algorithm.",
      ["route", "algorithm"] as const
    )
    this.compressionSkipped = counter(
      "sentinel_compression_skipped_total",
      "Responses a compress filter sent as they came, by route and reason (head, status, range, encoded, no-transform, type, size, not-accepted).",
      ["route", "reason"] as const
    )
    this.cacheRequests = counter(
      "sentinel_cache_requests_total",
      "Requests of caching routes, by route and cache outcome (hit, stale, stale-if-error, revalidated, miss, bypass).",
      ["route", "result"] as const
    )
    this.cacheEvictions = counter("sentinel_cache_evictions_total", "Cached responses evicted to stay within the cache's max-size, by route.", [
      "route"
    ] as const)
    this.cacheBytes = gauge("sentinel_cache_bytes", "Bytes of cached responses (heads and bodies), by route.", ["route"] as const, "sum")
    this.cacheEntries = gauge("sentinel_cache_entries", "Cached responses (one per variant), by route.", ["route"] as const, "sum")
    this.configReloads = counter("sentinel_config_reload_total", "Configuration reloads, by result.", [
      "result"
    ] as const)
    this.logDropped = counter(
      "sentinel_log_dropped_total",
      "Log lines dropped because the log sink was too slow or failing.",
      ["log"] as const
    )
    this.buildInfo = new Gauge({
      name: "sentinel_build_info",
      help: "Build information; always 1.",
      labelNames: ["version", "node"],
      registers,
      aggregator: "first"
    })
    this.buildInfo.labels(options.version ?? "0.0.0", process.version).set(1)

    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry })
  }

  /** Circuit breaker state change: sets the gauge and counts the transition. */
  circuitChanged(component: string, target: string, to: CircuitStateName): void {
    this.circuitState.set(CircuitStateValue[to], component, target)
    this.circuitTransitions.inc(component, target, to)
  }

  /** The exposition text of this registry alone. */
  render(): Promise<string> {
    return this.registry.metrics()
  }

  /** Content type to serve `render()` with. */
  get contentType(): string {
    return this.registry.contentType
  }
}

/** A fresh registry with every Sentinel metric (and the process metrics unless disabled). */
export const makeMetrics = (options: MetricsOptions = {}): Metrics => new Metrics(options)

/** The metrics of this process, as an Effect service. */
export class MetricsService extends Context.Tag("sentinel/observability/Metrics")<MetricsService, Metrics>() {
  static readonly make = (options: MetricsOptions = {}): Effect.Effect<Metrics> =>
    Effect.sync(() => makeMetrics(options))
  /** One registry with default process metrics. */
  static readonly layer: Layer.Layer<MetricsService> = Layer.effect(MetricsService, MetricsService.make())
  static readonly layerOptions = (options: MetricsOptions): Layer.Layer<MetricsService> =>
    Layer.effect(MetricsService, MetricsService.make(options))
  /** A registry without process metrics, for tests. */
  static readonly layerTest: Layer.Layer<MetricsService> = Layer.effect(
    MetricsService,
    MetricsService.make({ defaultMetrics: false })
  )
}

/**
 * The primary's own metrics (it serves no requests): worker supervision. Merged
 * into the aggregated scrape next to the workers' registries.
 */
export class ClusterMetrics {
  readonly registry: Registry
  /** sentinel_cluster_workers: worker processes currently running */
  readonly workers: Gauge<string>
  /** sentinel_worker_restarts_total{reason} ("crash" | "signal" | "exit") */
  readonly workerRestarts: BoundedCounter<readonly ["reason"]>

  constructor() {
    this.registry = new Registry()
    const registers = [this.registry]
    // "sum" over a single registry (only the primary has it) keeps the value as is.
    this.workers = new Gauge({ name: "sentinel_cluster_workers", help: "Worker processes running.", registers })
    this.workerRestarts = new BoundedCounter(
      new Counter({
        name: "sentinel_worker_restarts_total",
        help: "Worker processes restarted after an unexpected exit, by reason.",
        labelNames: ["reason"],
        registers
      }),
      "sentinel_worker_restarts_total",
      1,
      16,
      () => {},
      ["reason"]
    )
  }
}
