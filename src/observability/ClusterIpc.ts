/**
 * Metrics across `node:cluster`: workers answer the primary's IPC request with their registry
 * as JSON (`installWorkerMetricsResponder`), the primary merges them with prom-client's
 * `AggregatorRegistry.aggregate` (`collectClusterMetrics`). A worker that does not answer
 * within the timeout is left out rather than failing the scrape.
 */
import type { Worker } from "node:cluster"
import { AggregatorRegistry, Registry, type MetricObjectWithValues, type MetricValue } from "prom-client"

/** IPC message types; distinct from prom-client's own so both can coexist. */
export const METRICS_REQUEST = "sentinel:metrics-req"
export const METRICS_RESPONSE = "sentinel:metrics-res"

interface MetricsRequestMessage {
  readonly type: typeof METRICS_REQUEST
  readonly id: number
}
interface MetricsResponseMessage {
  readonly type: typeof METRICS_RESPONSE
  readonly id: number
  readonly metrics?: Array<MetricObjectWithValues<MetricValue<string>>>
  readonly error?: string
}

const isRequest = (m: unknown): m is MetricsRequestMessage =>
  typeof m === "object" && m !== null && (m as { type?: unknown }).type === METRICS_REQUEST
const isResponse = (m: unknown): m is MetricsResponseMessage =>
  typeof m === "object" && m !== null && (m as { type?: unknown }).type === METRICS_RESPONSE

/**
 * In a cluster worker: answer the primary's metric requests with `current()`'s
 * registry (a function, so a new registry after a rebuild is picked up).
 * Returns a function that removes the listener. No-op outside a cluster worker.
 */
export const installWorkerMetricsResponder = (current: () => Registry): (() => void) => {
  if (typeof process.send !== "function") return () => {}
  const onMessage = (message: unknown) => {
    if (!isRequest(message)) return
    const reply = (body: Omit<MetricsResponseMessage, "type" | "id">) => {
      // The channel may be closing during shutdown; a lost reply only means a
      // worker is missing from one scrape.
      try {
        process.send?.({ type: METRICS_RESPONSE, id: message.id, ...body })
      } catch {
        /* channel closed */
      }
    }
    current()
      .getMetricsAsJSON()
      .then(
        (metrics) => reply({ metrics }),
        (e: unknown) => reply({ error: String(e) })
      )
  }
  process.on("message", onMessage)
  return () => {
    process.off("message", onMessage)
  }
}

/** Merges worker registries (as JSON) into one, each metric by its aggregator (default sum). */
export const aggregateMetrics = (
  perWorker: ReadonlyArray<ReadonlyArray<MetricObjectWithValues<MetricValue<string>>>>
): Registry => AggregatorRegistry.aggregate(perWorker as Array<object>) as Registry

let nextRequestId = 1

/**
 * In the primary: asks every connected worker for its metrics, waits at most
 * `timeoutMs` (default 2000), and merges the answers that arrived. A worker that
 * died or hangs is left out of this scrape instead of failing it.
 * `extra` registries (e.g. the primary's own) are merged in too.
 */
export const collectClusterMetrics = (
  workers: ReadonlyArray<Worker>,
  options: { readonly timeoutMs?: number; readonly extra?: ReadonlyArray<Registry> } = {}
): Promise<{ readonly text: string; readonly contentType: string; readonly answered: number; readonly asked: number }> =>
  new Promise((resolve, reject) => {
    const id = nextRequestId++
    const answers: Array<Array<MetricObjectWithValues<MetricValue<string>>>> = []
    const pending = new Set<Worker>()
    let settled = false
    let launched = false
    const cleanups: Array<() => void> = []
    const finish = () => {
      if (settled || !launched) return
      settled = true
      clearTimeout(timer)
      for (const c of cleanups) c()
      Promise.all((options.extra ?? []).map((r) => r.getMetricsAsJSON()))
        .then((extra) => {
          const merged = aggregateMetrics([...answers, ...(extra as Array<Array<MetricObjectWithValues<MetricValue<string>>>>)])
          return merged.metrics().then((text) => resolve({ text, contentType: merged.contentType, answered: answers.length, asked: cleanups.length }))
        })
        .catch(reject)
    }
    const timer = setTimeout(() => {
      launched = true
      finish()
    }, options.timeoutMs ?? 2000)
    for (const worker of workers) {
      if (!worker.isConnected()) continue
      const onMessage = (message: unknown) => {
        if (!isResponse(message) || message.id !== id) return
        if (message.metrics) answers.push(message.metrics)
        pending.delete(worker)
        if (pending.size === 0) finish()
      }
      const onExit = () => {
        pending.delete(worker)
        if (pending.size === 0) finish()
      }
      worker.on("message", onMessage)
      worker.once("exit", onExit)
      cleanups.push(() => {
        worker.off("message", onMessage)
        worker.off("exit", onExit)
      })
      pending.add(worker)
      try {
        worker.send({ type: METRICS_REQUEST, id } satisfies MetricsRequestMessage)
      } catch {
        pending.delete(worker)
      }
    }
    launched = true
    if (pending.size === 0) finish()
  })
