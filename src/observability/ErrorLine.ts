/** The error log's line: one JSON object (`{"timestamp","level","message",...}`). */

/** Levels as spelled in `logging { level "info" }` / `error-log { level "warn" }`. */
export type LogLevelName = "trace" | "debug" | "info" | "warn" | "error"

/** One error-log line for a plain (non-Effect) caller. */
export const formatErrorLine = (
  level: LogLevelName | "fatal",
  message: string,
  fields: Readonly<Record<string, unknown>> = {},
  now: number = Date.now()
): string => {
  try {
    return JSON.stringify({ timestamp: new Date(now).toISOString(), level, message, ...fields })
  } catch {
    return JSON.stringify({ timestamp: new Date(now).toISOString(), level, message })
  }
}
