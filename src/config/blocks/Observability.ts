/** `observability { logging { ... } }`: logs (metrics and tracing come later). */
import type { AccessLogConfig, ObservabilityConfig } from "../Schema.js"
import { type BlockSpec, block, bool, oneOf, positive, scalar, str } from "../KdlDecoder.js"

export const accessLogSpec: BlockSpec<AccessLogConfig> = {
  path: "observability.logging.access-log",
  fields: {
    enabled: scalar("enabled", bool),
    file: scalar("file", str),
    format: scalar("format", oneOf(["json", "combined"] as const)),
    bufferSize: scalar("buffer-size", positive)
  }
}

export const loggingSpec: BlockSpec<ObservabilityConfig["logging"]> = {
  path: "observability.logging",
  fields: {
    level: scalar("level", oneOf(["trace", "debug", "info", "warn", "error"] as const, { aliases: { warning: "warn" } })),
    format: scalar("format", oneOf(["json", "pretty"] as const)),
    accessLog: block("access-log", accessLogSpec)
  }
}

export const observabilitySpec: BlockSpec<ObservabilityConfig> = {
  path: "observability",
  fields: {
    logging: block("logging", loggingSpec)
  }
}

export const observabilityField = block("observability", observabilitySpec)
