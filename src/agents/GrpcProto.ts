/**
 * The gRPC form of agent protocol v2: Sentinel's `AgentServiceV2` loaded from
 * our `.proto` files (proto/, shipped in the package) with @grpc/proto-loader,
 * and the plain-object shapes of the messages the proxy and the SDK use.
 *
 * Two packages serve the same service: `zentinel.agent.v2` (Zentinel since
 * its rename, and what the proxy calls first) and `sentinel.agent.v2` (the
 * original; the proxy falls back to it when an agent answers UNIMPLEMENTED).
 * Their files would differ only in their `package` line, so one is shipped
 * (proto/zentinel_agent_v2.proto) and the other package derived from it at
 * load time: the same message codecs, only the method paths differ.
 *
 * Loader options: field names as in the .proto (snake_case), 64-bit integers
 * as numbers, no defaults filled in on decode (absent = undefined, so proto3
 * `optional` presence survives), and `oneofs` naming the set member.
 */
import * as path from "node:path"
import type * as protoLoader from "@grpc/proto-loader"
import { lazyModule } from "../LazyModule.js"
import { packagePath } from "../PackageRoot.js"

const protoLoaderJs = lazyModule<typeof protoLoader>("@grpc/proto-loader")

export const GRPC_PACKAGES = ["zentinel.agent.v2", "sentinel.agent.v2"] as const
export type GrpcPackage = (typeof GRPC_PACKAGES)[number]
/** The package the proxy calls first. */
export const DEFAULT_GRPC_PACKAGE: GrpcPackage = "zentinel.agent.v2"

export { GRPC_ENVELOPE_BYTES, GRPC_MAX_BODY_BYTES, GRPC_MAX_MESSAGE_BYTES } from "./AgentConfig.js"

/** proto/ of the package, from src/ (tests), dist/ (the modules) and dist/bundle/ (the service) alike. */
export const protoDir = (): string => packagePath("proto")

/** The one .proto file shipped: package `zentinel.agent.v2`; `sentinel.agent.v2` is derived from it (`derivePackage`). */
export const protoFile = (): string => path.join(protoDir(), "zentinel_agent_v2.proto")

export const loaderOptions: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: false,
  oneofs: true
}

/**
 * The definitions of package `from` again under package `to`: the same message types (their
 * codecs do not depend on the package), the services' methods with their paths renamed. The
 * two packages' files would differ in their `package` line only.
 */
export const derivePackage = (def: protoLoader.PackageDefinition, from: string, to: string): protoLoader.PackageDefinition => {
  const out: protoLoader.PackageDefinition = {}
  for (const [name, v] of Object.entries(def)) {
    if (!name.startsWith(`${from}.`)) continue
    const renamed = `${to}${name.slice(from.length)}`
    if ("format" in v) {
      out[renamed] = v // a message or enum type
      continue
    }
    const service: Record<string, protoLoader.MethodDefinition<object, object>> = {}
    for (const [method, m] of Object.entries(v as protoLoader.ServiceDefinition)) {
      service[method] = { ...m, path: m.path.replace(`/${from}.`, `/${to}.`) }
    }
    out[renamed] = service
  }
  return out
}

let loaded: protoLoader.PackageDefinition | undefined

/** Both packages' definitions (loaded once). */
export const packageDefinition = (): protoLoader.PackageDefinition => {
  if (loaded === undefined) {
    const def = protoLoaderJs().loadSync(protoFile(), loaderOptions)
    loaded = { ...def, ...derivePackage(def, GRPC_PACKAGES[0], GRPC_PACKAGES[1]) }
  }
  return loaded
}

/** `AgentServiceV2` of one package (method paths, serializers). */
export const serviceDefinition = (pkg: GrpcPackage): protoLoader.ServiceDefinition =>
  packageDefinition()[`${pkg}.AgentServiceV2`] as protoLoader.ServiceDefinition

export const processStreamPath = (pkg: GrpcPackage): string => `/${pkg}.AgentServiceV2/ProcessStream`

let processStream: protoLoader.MethodDefinition<object, object> | undefined
/** ProcessStream's codecs (the same for both packages), looked up once: every message goes through them. */
const codecs = (): protoLoader.MethodDefinition<object, object> =>
  (processStream ??= serviceDefinition(DEFAULT_GRPC_PACKAGE).ProcessStream as protoLoader.MethodDefinition<object, object>)

/** Encodes a ProxyToAgent (plain object) to its protobuf bytes. */
export const encodeProxyToAgent = (m: ProxyToAgent): Buffer => codecs().requestSerialize(m)
/** Decodes protobuf bytes of a ProxyToAgent (throws on malformed input). */
export const decodeProxyToAgent = (b: Buffer): ProxyToAgent => codecs().requestDeserialize(b) as ProxyToAgent
export const encodeAgentToProxy = (m: AgentToProxy): Buffer => codecs().responseSerialize(m)
/** Decodes protobuf bytes of an AgentToProxy (throws on malformed input). */
export const decodeAgentToProxy = (b: Buffer): AgentToProxy => codecs().responseDeserialize(b) as AgentToProxy

// ---------------------------------------------------------------------------
// Message shapes (the subset of fields this project reads or writes; all optional on decode)

export interface PbHeader {
  readonly name?: string
  readonly value?: string
}

export interface PbHandshakeRequest {
  readonly supported_versions?: ReadonlyArray<number>
  readonly proxy_id?: string
  readonly proxy_version?: string
  readonly config_json?: string
}

export interface PbAgentFeatures {
  readonly streaming_body?: boolean
  readonly websocket?: boolean
  readonly guardrails?: boolean
  readonly config_push?: boolean
  readonly metrics_export?: boolean
  readonly concurrent_requests?: number
  readonly cancellation?: boolean
  readonly flow_control?: boolean
  readonly health_reporting?: boolean
}

export interface PbAgentLimits {
  readonly max_body_size?: number
  readonly max_concurrency?: number
  readonly preferred_chunk_size?: number
  readonly max_memory?: number
  readonly max_processing_time_ms?: number
}

export interface PbAgentCapabilities {
  readonly protocol_version?: number
  readonly agent_id?: string
  readonly name?: string
  readonly version?: string
  readonly supported_events?: ReadonlyArray<number>
  readonly features?: PbAgentFeatures
  readonly limits?: PbAgentLimits
  readonly health_config?: { readonly report_interval_ms?: number; readonly include_load_metrics?: boolean; readonly include_resource_metrics?: boolean }
}

export interface PbHandshakeResponse {
  readonly protocol_version?: number
  readonly capabilities?: PbAgentCapabilities
  readonly success?: boolean
  readonly error?: string
}

export interface PbRequestMetadata {
  readonly correlation_id?: string
  readonly request_id?: string
  readonly client_ip?: string
  readonly client_port?: number
  readonly server_name?: string
  readonly protocol?: string
  readonly tls_version?: string
  readonly route_id?: string
  readonly upstream_id?: string
  readonly timestamp_ms?: number
  readonly traceparent?: string
}

export interface PbRequestHeadersEvent {
  readonly metadata?: PbRequestMetadata
  readonly method?: string
  readonly uri?: string
  readonly http_version?: string
  readonly headers?: ReadonlyArray<PbHeader>
}

export interface PbResponseHeadersEvent {
  readonly correlation_id?: string
  readonly status_code?: number
  readonly headers?: ReadonlyArray<PbHeader>
}

export interface PbBodyChunkEvent {
  readonly correlation_id?: string
  readonly chunk_index?: number
  readonly data?: Uint8Array
  readonly is_last?: boolean
  readonly total_size?: number
  readonly bytes_transferred?: number
  readonly proxy_buffer_available?: number
  readonly timestamp_ms?: number
}

export interface PbWebSocketFrameEvent {
  readonly correlation_id?: string
  readonly client_to_server?: boolean
  readonly frame_type?: number
  readonly payload?: Uint8Array
}

export interface PbRequestCompleteEvent {
  readonly correlation_id?: string
  readonly status_code?: number
  readonly duration_ms?: number
  readonly bytes_received?: number
  readonly bytes_sent?: number
  readonly upstream?: string
  readonly from_cache?: boolean
  readonly error?: string
}

export interface PbConfigureEvent {
  readonly config_json?: string
  readonly config_version?: string
  readonly is_initial?: boolean
  readonly timestamp_ms?: number
}

export interface PbCancelRequest {
  readonly correlation_id?: string
  readonly reason?: number
  readonly timestamp_ms?: number
}

export interface PbPing {
  readonly sequence?: number
  readonly timestamp_ms?: number
}

export interface PbPong {
  readonly sequence?: number
  readonly ping_timestamp_ms?: number
  readonly timestamp_ms?: number
}

/** A ProxyToAgent: exactly one member set. */
export interface ProxyToAgent {
  readonly handshake?: PbHandshakeRequest
  readonly request_headers?: PbRequestHeadersEvent
  readonly request_body_chunk?: PbBodyChunkEvent
  readonly response_headers?: PbResponseHeadersEvent
  readonly response_body_chunk?: PbBodyChunkEvent
  readonly websocket_frame?: PbWebSocketFrameEvent
  readonly guardrail?: Record<string, unknown>
  readonly request_complete?: PbRequestCompleteEvent
  readonly cancel?: PbCancelRequest
  readonly configure?: PbConfigureEvent
  readonly ping?: PbPing
  /** Set on decode (`oneofs`): the member present. */
  readonly message?: string
}

export interface PbHeaderOp {
  readonly set?: PbHeader
  readonly add?: PbHeader
  readonly remove?: string
  readonly operation?: string
}

export interface PbAuditMetadata {
  readonly tags?: ReadonlyArray<string>
  readonly rule_ids?: ReadonlyArray<string>
  readonly confidence?: number
  readonly reason_codes?: ReadonlyArray<string>
  readonly custom?: Readonly<Record<string, string>>
}

export interface PbAgentResponse {
  readonly correlation_id?: string
  readonly allow?: Record<string, never>
  readonly block?: { readonly status?: number; readonly body?: string; readonly headers?: ReadonlyArray<PbHeader> }
  readonly redirect?: { readonly url?: string; readonly status?: number }
  readonly challenge?: { readonly challenge_type?: string; readonly params?: Readonly<Record<string, string>> }
  readonly request_headers?: ReadonlyArray<PbHeaderOp>
  readonly response_headers?: ReadonlyArray<PbHeaderOp>
  readonly audit?: PbAuditMetadata
  readonly processing_time_ms?: number
  readonly needs_more?: boolean
  readonly decision?: string
}

/** An AgentToProxy: exactly one member set. */
export interface AgentToProxy {
  readonly handshake?: PbHandshakeResponse
  readonly response?: PbAgentResponse
  readonly health?: { readonly agent_id?: string; readonly state?: number; readonly message?: string }
  readonly metrics?: Record<string, unknown>
  readonly config_update?: Record<string, unknown>
  readonly flow_control?: { readonly correlation_id?: string; readonly action?: number }
  readonly pong?: PbPong
  readonly log?: { readonly level?: number; readonly message?: string; readonly correlation_id?: string }
  readonly message?: string
}
