/**
 * The public entry of the package (`import { ... } from "sentinel-proxy"`). Importing it starts
 * nothing: no command line, no socket. The command line is `dist/main.js`; agent authors use
 * `sentinel-proxy/agents/sdk/*.js`.
 *
 * The proxy is `App.layer(options)`, which requires a `ConfigSource` and a `MetricsService`
 * (and the services of your own Effect stages); `App.layerFrom(config)` and `App.make(config)`
 * wire the defaults. See the README's "Embedding and extending".
 */
export * as App from "./App.js"
export { Sentinel, type SentinelOptions, type SentinelService, type ReloadSummary, type BoundAddress } from "./App.js"

// configuration
export { ConfigSource, type ConfigSourceService } from "./config/ConfigSource.js"
export { ConfigInvalid, formatInvalid, loadConfig, loadConfigDetailed, type Loaded } from "./config/Load.js"
export type { ConfigReloader, ReloadOutcome, ReloadTrigger } from "./config/Reload.js"
export { makeConfig, type SentinelConfig, type RouteConfig } from "./config/Schema.js"

// the parts App.layer builds, each a service
export { Listeners, type ListenersService } from "./server/ListenerSet.js"
export { ListenerBindFailed } from "./server/Listener.js"
export { RequestPath, type RequestPathService } from "./pipeline/RequestPath.js"
export { Agents, type AgentsService } from "./agents/Agents.js"
export { Upstreams, type UpstreamsService } from "./upstream/UpstreamSet.js"
export { Logs, ErrorLogService, type LogsService } from "./observability/ProxyLogs.js"
export { LogOpenFailed } from "./observability/LogWriter.js"
export { MetricsService, makeMetrics, type Metrics, type MetricsOptions } from "./observability/Metrics.js"
export { Tracing, tracingLayer, type RequestTracing, type TracingConfig } from "./observability/Tracing.js"

// writing stages
export {
  callbackAsEffect,
  pendingStep,
  type Answer,
  type CompleteStage,
  type LocalHandler,
  type PendingStep,
  type RequestStage,
  type ResponseHook,
  type ResponseStage,
  type RouteContribution,
  type RouteExtension,
  type StageStep
} from "./pipeline/Stage.js"
export { after, before, replace, PHASE_NAMES, type PhaseEdit, type PhaseName } from "./pipeline/Phases.js"
export type { RequestContext } from "./pipeline/RequestContext.js"
export { VERSION } from "./Version.js"
