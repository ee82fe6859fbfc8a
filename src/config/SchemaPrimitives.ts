/**
 * Building blocks shared by the schema files (Schema.ts and the per-feature
 * schema files it composes). No config semantics here.
 */
import * as Duration from "effect/Duration"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

export const SafeInt = Schema.Int.pipe(Schema.filter((n) => Number.isSafeInteger(n) || "an integer below 2^53"))
/** Non-negative safe integer (counts, bytes). */
export const Count = SafeInt.pipe(Schema.filter((n) => n >= 0 || "a non-negative integer"))
/** Positive safe integer. */
export const PositiveCount = SafeInt.pipe(Schema.filter((n) => n >= 1 || "a positive integer"))
/** TCP port; 0 lets the OS choose (tests). */
export const Port = SafeInt.pipe(Schema.filter((n) => (n >= 0 && n <= 65535) || "a port between 0 and 65535"))
/** A finite number >= 0. */
export const NonNegativeNumber = Schema.Number.pipe(Schema.filter((n) => (Number.isFinite(n) && n >= 0) || "a finite number >= 0"))
/** A number in [0, 1]. */
export const Ratio = Schema.Number.pipe(Schema.filter((n) => (n >= 0 && n <= 1) || "a number between 0 and 1"))
/** An HTTP status code 100..599. */
export const StatusCode = SafeInt.pipe(Schema.filter((n) => (n >= 100 && n <= 599) || "an HTTP status code (100-599)"))
/** A non-negative duration. */
export const NonNegativeDuration = Schema.DurationFromSelf.pipe(
  Schema.filter((d) => Duration.greaterThanOrEqualTo(d, Duration.zero) || "a non-negative duration")
)

/** A field with a default (optional on the input side). */
export const defaulted = <S extends Schema.Schema.AnyNoContext>(schema: S, value: () => Schema.Schema.Type<S>) =>
  Schema.optionalWith(schema, { default: value })

/** Struct whose every field has a default: its own default is the decoding of `{}`. */
export const defaultedStruct = <S extends Schema.Schema.AnyNoContext>(schema: S) =>
  Schema.optionalWith(schema, { default: () => Schema.decodeUnknownSync(schema)({}) as Schema.Schema.Type<S> })

/** A string or `null` (absent = `null`), for module fields typed `string | null`. */
export const nullableString = () => defaulted(Schema.NullOr(Schema.String), () => null)

// ---------------------------------------------------------------------------
// Addresses

/** Splits `"host:port"` / `"[v6]:port"`; `undefined` when malformed. */
export const parseHostPort = (text: string): { host: string; port: number } | undefined => {
  // no controls or format characters in a host name: it is printed and used as a metric label
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s\p{Cc}\p{Cf}:[\]/]+)):(\d{1,5})$/u.exec(text)
  if (m === null) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  return { host: m[1] ?? m[2], port }
}

/** Formats host and port back into `host:port` (brackets for IPv6). */
export const formatHostPort = (host: string, port: number): string =>
  host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`

const HostPortStruct = Schema.Struct({ host: Schema.NonEmptyString, port: Port })

/** A socket address; input may also be the string `"0.0.0.0:8080"` / `"[::1]:80"`. */
export const SocketAddress = Schema.Union(
  HostPortStruct,
  Schema.transformOrFail(Schema.String, HostPortStruct, {
    strict: true,
    decode: (s, _, ast) => {
      const hp = parseHostPort(s)
      return hp === undefined
        ? ParseResult.fail(new ParseResult.Type(ast, s, `expected "host:port", got ${JSON.stringify(s)}`))
        : ParseResult.succeed(hp)
    },
    encode: (hp) => ParseResult.succeed(formatHostPort(hp.host, hp.port))
  })
)
