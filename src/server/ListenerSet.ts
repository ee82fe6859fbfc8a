/**
 * The listeners of a proxy as a service: every `listener { }` bound (TLS material loaded,
 * HTTP/1.1 and HTTP/2 served by the request path's handler), one in-flight admission and one
 * connection count shared by all of them, the refusals they make before the pipeline
 * (counted, and logged per AccessLog.ts), and the certificate expiry gauge.
 *
 * A reload is staged: `stage(next)` first re-reads the certificates of the https listeners it
 * keeps (one that fails changes nothing), then `rebind()` stops removed or changed listeners
 * and starts new ones (a rebind may reuse an address), and `renew()` hands kept listeners
 * their new certificates (open connections keep theirs). Closing the layer drains every
 * listener (in-flight requests finish, up to the graceful shutdown timeout).
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { ConfigSource } from "../config/ConfigSource.js"
import type { LimitsConfig, ListenerConfig, SentinelConfig } from "../config/Schema.js"
import { makeRejectionLog } from "../observability/AccessLog.js"
import { MetricsService } from "../observability/Metrics.js"
import { callbackLogger, Logs } from "../observability/ProxyLogs.js"
import { RequestPath } from "../pipeline/RequestPath.js"
import { Admission, ConnectionTracker } from "./Admission.js"
import { ListenerBindFailed, startListener, type ListenerHandle } from "./Listener.js"
import { admissionConfigFor, connectionLimitsFor } from "./ListenerSettings.js"
import { loadListenerTls, type ListenerTls } from "../tls/Certificates.js"

export interface BoundAddress {
  readonly host: string
  readonly port: number
}

export interface ListenerStage {
  /** Stop listeners the next configuration removed or changed, start its new ones. */
  readonly rebind: () => Effect.Effect<{ readonly started: number; readonly stopped: number }, ListenerBindFailed>
  /** Kept https listeners serve their re-read certificates to new handshakes. */
  readonly renew: () => Effect.Effect<void>
}

export interface ListenersService {
  /** Where each listener is bound (port 0 in config = chosen by the OS). Updated by reloads. */
  readonly addresses: ReadonlyMap<string, BoundAddress>
  readonly stage: (next: SentinelConfig) => Effect.Effect<ListenerStage, ListenerBindFailed>
  /** Requests in flight over every listener. */
  readonly inFlight: () => number
}

interface ListenerEntry {
  readonly key: string
  readonly handle: ListenerHandle
  readonly scope: Scope.CloseableScope
}

/** A listener is rebound when its own settings or the limits its server was built with change. */
const listenerKey = (l: ListenerConfig, limits: LimitsConfig): string => JSON.stringify([l, limits])

/** A listener's certificates, read now: a failure is the listener's (startup or reload fails, nothing changes). */
const loadTls = (listener: ListenerConfig): Effect.Effect<ListenerTls | undefined, ListenerBindFailed> =>
  listener.protocol !== "https" || listener.tls === undefined
    ? Effect.succeed(undefined)
    : Either.match(loadListenerTls(listener.id, listener.tls), {
        onLeft: (problems) =>
          Effect.fail(
            new ListenerBindFailed({
              listener: listener.id,
              address: `${listener.address.host}:${listener.address.port}`,
              message: problems.join("; ")
            })
          ),
        onRight: (material) => Effect.succeed(material)
      })

/** Names (and fingerprints) whose certificate a reload changed, for the log. */
const certificateChanges = (before: ListenerTls, after: ListenerTls): Array<string> => {
  const fp = (m: ListenerTls) => new Map(m.certificates.flatMap((c) => c.hostnames.map((h) => [h, c.fingerprint256] as const)))
  const a = fp(before)
  const b = fp(after)
  const changed: Array<string> = []
  for (const [h, f] of b) if (a.get(h) !== f) changed.push(`${h} ${f.slice(0, 23)}...`)
  for (const h of a.keys()) if (!b.has(h)) changed.push(`${h} removed`)
  return changed
}

export class Listeners extends Context.Tag("sentinel/server/Listeners")<Listeners, ListenersService>() {
  /** Binds every listener of the source's initial configuration (fails with the first that cannot). */
  static readonly layer: Layer.Layer<Listeners, ListenerBindFailed, ConfigSource | MetricsService | Logs | RequestPath> =
    Layer.scoped(
      Listeners,
      Effect.gen(function* () {
        const initial = (yield* ConfigSource).initial.config
        const metrics = yield* MetricsService
        const logs = yield* Logs
        const path = yield* RequestPath
        const scope = yield* Effect.scope
        let graceMs = Duration.toMillis(initial.system.gracefulShutdownTimeout)
        const log = callbackLogger(yield* Effect.runtime<never>())
        // One in-flight admission and one connection count for all listeners of the process.
        const admission = new Admission(admissionConfigFor(initial.limits))
        const connections = new ConnectionTracker(connectionLimitsFor(initial.limits))

        // Refusals made by the listeners before the pipeline: counted exactly, logged per
        // AccessLog.ts (access log, or rate-limited warn lines). Its finalizer runs after the
        // listeners drained (added before them) and reports what was still suppressed.
        const rejections = makeRejectionLog({
          accessLog: logs.access,
          newTraceId: () => path.dataplane().newTraceId(),
          warn: (message, fields) => log(Effect.logWarning(message).pipe(Effect.annotateLogs(fields)))
        })
        yield* Effect.addFinalizer(() => Effect.sync(() => rejections.close()))

        const addresses = new Map<string, BoundAddress>()
        const listeners = new Map<string, ListenerEntry>()
        // Read at scrape time from the listeners' own in-flight counts: nothing per request.
        const inFlight = () => {
          let n = 0
          for (const l of listeners.values()) n += l.handle.inFlight()
          return n
        }
        metrics.readActiveRequestsFrom(inFlight)

        /** Served certificates by listener, for the expiry gauge (refreshed every minute) and the reload log. */
        const served = new Map<string, ListenerTls>()
        const refreshExpiry = () => {
          const now = Date.now()
          for (const [id, material] of served) {
            for (const c of material.certificates) {
              for (const h of c.hostnames.length > 0 ? c.hostnames : [c.subject]) {
                metrics.tlsCertificateExpiry.set(Math.round((c.notAfter.getTime() - now) / 1000), id, h)
              }
            }
          }
        }
        const expiryTimer = setInterval(refreshExpiry, 60_000)
        expiryTimer.unref()
        yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(expiryTimer)))

        const open = (listener: ListenerConfig, limits: LimitsConfig) =>
          Effect.gen(function* () {
            const tls = yield* loadTls(listener)
            const child = yield* Scope.fork(scope, { _tag: "Sequential" } as never)
            const handle = yield* startListener(listener, limits, (h) => path.handlerFor(listener, h.draining), {
              onClientError: (rejection) => {
                metrics.rejected.inc(rejection.reason)
                rejections.record(rejection)
              },
              onConnection: () => metrics.openConnections.set(connections.count),
              onDefence: (reason, clientIp) => {
                if (reason.startsWith("tls_handshake_")) metrics.tlsHandshakeErrors.inc(listener.id, reason.slice("tls_handshake_".length))
                else metrics.http2Defences.inc(listener.id, reason)
                rejections.record({ listener: listener.id, status: 0, reason, clientIp, stage: "connection" })
              },
              admission,
              connections,
              tunnels: path.websockets.tunnels,
              ...(tls !== undefined ? { tls } : {})
            }).pipe(
              Scope.extend(child),
              Effect.tapError(() => Scope.close(child, Exit.void))
            )
            yield* Scope.addFinalizer(child, Effect.promise(() => handle.drain(graceMs)))
            listeners.set(listener.id, { key: listenerKey(listener, limits), handle, scope: child })
            addresses.set(listener.id, { host: handle.host, port: handle.port })
            if (tls !== undefined) {
              served.set(listener.id, tls)
              refreshExpiry()
            }
            return handle
          })

        const close = (id: string) =>
          Effect.suspend(() => {
            const entry = listeners.get(id)
            if (entry === undefined) return Effect.void
            listeners.delete(id)
            addresses.delete(id)
            return Scope.close(entry.scope, Exit.void)
          })

        for (const listener of initial.listeners) yield* open(listener, initial.limits)

        const stage = (next: SentinelConfig): Effect.Effect<ListenerStage, ListenerBindFailed> =>
          Effect.gen(function* () {
            // Listeners kept as they are re-read their certificate files (same paths, new contents):
            // all of them first, so that one that fails changes nothing
            const wantedKeys = new Map(next.listeners.map((l) => [l.id, listenerKey(l, next.limits)]))
            const renewed: Array<readonly [ListenerConfig, ListenerTls]> = []
            for (const l of next.listeners) {
              if (l.protocol === "https" && listeners.get(l.id)?.key === wantedKeys.get(l.id)) {
                const material = yield* loadTls(l)
                if (material !== undefined) renewed.push([l, material])
              }
            }
            const rebind = () =>
              Effect.gen(function* () {
                let stopped = 0
                let started = 0
                // stop removed/changed ones first (a rebind may reuse the address), then start new ones
                for (const [id, entry] of [...listeners]) {
                  if (wantedKeys.get(id) !== entry.key) {
                    yield* close(id)
                    stopped++
                  }
                }
                admission.configure(admissionConfigFor(next.limits))
                path.websockets.configure(next.limits)
                connections.configure(connectionLimitsFor(next.limits))
                graceMs = Duration.toMillis(next.system.gracefulShutdownTimeout)
                for (const l of next.listeners) {
                  if (!listeners.has(l.id)) {
                    yield* open(l, next.limits)
                    started++
                  }
                }
                return { started, stopped }
              })
            const renew = () =>
              Effect.gen(function* () {
                for (const [l, material] of renewed) {
                  const changes = certificateChanges(served.get(l.id)!, material)
                  listeners.get(l.id)!.handle.setTls(material)
                  served.set(l.id, material)
                  if (changes.length > 0) {
                    yield* Effect.logInfo("listener certificates changed").pipe(
                      Effect.annotateLogs({ listener: l.id, changed: changes.join(", ") })
                    )
                  }
                }
                for (const id of [...served.keys()]) if (!listeners.has(id)) served.delete(id)
                refreshExpiry()
              })
            return { rebind, renew }
          })

        return { addresses, stage, inFlight }
      })
    )
}
