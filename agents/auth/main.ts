/**
 * auth: verifies `Authorization: Bearer <JWT>` (HS*, RS*, PS*, ES*, EdDSA
 * via `jose`) or an `X-API-Key`. Success: the request goes upstream with
 * `X-Auth-Subject` and `X-Auth-Method` (client-sent copies are replaced).
 * Failure or no credentials: 401 with `WWW-Authenticate`.
 */
import * as Fs from "node:fs"
import * as Effect from "effect/Effect"
import { runAgentMain } from "sentinel-proxy/agents/sdk/AgentMain.js"
import { allow, block } from "sentinel-proxy/agents/sdk/Decision.js"
import { ApiKeys, authenticate, credentials, localJwks, publicKeyFromPem, secretKey, wwwAuthenticate } from "./Logic.js"
import type { JwtKeys, JwtOptions } from "./Logic.js"

runAgentMain({
  info: { agentId: "auth", name: "auth", version: "0.1.0" },
  description:
    "JWT (HS*/RS*/PS*/ES*/EdDSA) and API-key authentication. Adds X-Auth-Subject / X-Auth-Method on success; 401 with WWW-Authenticate otherwise.",
  options: {
    secret: { description: "HMAC secret for HS256/384/512 tokens (prefer --secret-file: argv is visible to other users)" },
    "secret-file": { description: "file holding the HMAC secret (trailing newline ignored)" },
    "public-key-file": { description: "PEM public key (SPKI or certificate) for RS*/PS*/ES*/EdDSA tokens" },
    "jwks-file": { description: "JWKS JSON file for RS*/PS*/ES*/EdDSA tokens, key chosen by kid" },
    issuer: { description: "required iss claim" },
    audience: { description: "accepted aud value (repeatable; the token needs one of them)", repeatable: true },
    leeway: { description: "clock skew tolerated on exp/nbf, seconds", default: "30" },
    "api-keys": { description: "API key file: JSON {key: subject} or lines 'key [subject]'; keys sent in X-API-Key" },
    realm: { description: "realm in WWW-Authenticate", default: "sentinel" }
  },
  handlers: (args) =>
    Effect.gen(function*() {
      const v = args.values
      const secret = v.secret ?? (v["secret-file"] !== undefined ? Fs.readFileSync(v["secret-file"], "utf8").replace(/\r?\n$/, "") : undefined)
      const keys: JwtKeys = {
        ...(secret !== undefined ? { secret: secretKey(secret) } : {}),
        ...(v["public-key-file"] !== undefined ? { publicKey: publicKeyFromPem(Fs.readFileSync(v["public-key-file"], "utf8")) } : {}),
        ...(v["jwks-file"] !== undefined ? { jwks: localJwks(Fs.readFileSync(v["jwks-file"], "utf8")) } : {})
      }
      const apiKeys = v["api-keys"] !== undefined ? ApiKeys.parse(Fs.readFileSync(v["api-keys"], "utf8")) : undefined
      if (keys.secret === undefined && keys.publicKey === undefined && keys.jwks === undefined && apiKeys === undefined) {
        return yield* Effect.fail(new Error("configure at least one of --secret, --secret-file, --public-key-file, --jwks-file, --api-keys"))
      }
      const leeway = Number(v.leeway)
      if (!(leeway >= 0)) return yield* Effect.fail(new Error("--leeway must be >= 0"))
      const options: JwtOptions = {
        leewaySeconds: leeway,
        ...(v.issuer !== undefined ? { issuer: v.issuer } : {}),
        ...(args.all.audience !== undefined ? { audience: args.all.audience } : {})
      }
      const realm = v.realm
      return {
        onRequestHeaders: (e) =>
          Effect.promise(() => authenticate(credentials(e.headers), apiKeys, keys, options)).pipe(
            Effect.map((r) => {
              if (r._tag === "Authenticated") {
                return allow()
                  .setRequestHeader("X-Auth-Subject", r.subject)
                  .setRequestHeader("X-Auth-Method", r.method)
                  .withAudit({ tags: ["auth", `auth-${r.method}`], custom: { subject: r.subject } })
              }
              return block(401, { body: "Unauthorized", headers: { "WWW-Authenticate": wwwAuthenticate(realm, r) } }).withAudit({
                tags: ["auth"],
                ruleIds: ["auth-required"],
                reasonCodes: [r._tag === "Missing" ? "CREDENTIALS_MISSING" : r.code]
              })
            })
          )
      }
    })
})
