/**
 * Keys in the wrong block: an unknown key is looked up in every other block of
 * the registered top-level spec, so the message can say where it belongs.
 */
import type { BlockSpec, Field } from "./KdlDecoder.js"

let rootSpec: BlockSpec<any> | undefined
let placements: Map<string, Array<string>> | undefined

/** Registers the top-level spec, so an unknown key can be looked up in every other block. */
export const registerRootSpec = (spec: BlockSpec<any>): void => {
  rootSpec = spec
  placements = undefined
}

/** KDL name -> dotted paths of the blocks that have it (canonical names and aliases). */
const placementIndex = (): Map<string, Array<string>> => {
  if (placements !== undefined) return placements
  const index = new Map<string, Array<string>>()
  const seen = new Set<BlockSpec<any>>()
  const walk = (spec: BlockSpec<any>, path: string) => {
    if (seen.has(spec)) return
    seen.add(spec)
    for (const field of Object.values(spec.fields) as Array<Field<unknown>>) {
      for (const n of field.names) {
        const at = index.get(n) ?? []
        if (!at.includes(path)) at.push(path)
        index.set(n, at)
      }
      if (field.nested !== undefined) walk(field.nested, path === "" ? field.names[0] : `${path}.${field.names[0]}`)
    }
  }
  if (rootSpec !== undefined) walk(rootSpec, "")
  placements = index
  return index
}

/** `routes.route.policies` -> "`routes { route { policies { timeout-secs ... } } }`". */
const chain = (path: string, name: string): string => {
  const parts = path === "" ? [] : path.split(".")
  return `\`${parts.map((p) => `${p} { `).join("")}${name} ...${" }".repeat(parts.length)}\``
}

/**
 * `"; it belongs in ..."` when `name` is a key of another block (e.g. `timeout-secs` written
 * directly in a route belongs in its `policies`), nearest blocks first (inside this one, then
 * those sharing most of its path); `""` when no block has it.
 */
export const belongsElsewhere = (name: string, here: string): string => {
  const at = (placementIndex().get(name) ?? []).filter((p) => p !== here)
  if (at.length === 0) return ""
  const hereParts = here === "" ? [] : here.split(".")
  const shared = (p: string) => {
    const parts = p === "" ? [] : p.split(".")
    let k = 0
    while (k < parts.length && k < hereParts.length && parts[k] === hereParts[k]) k++
    return k
  }
  const inside = (p: string) => (here === "" ? p !== "" : p.startsWith(`${here}.`))
  const depth = (p: string) => (p === "" ? 0 : p.split(".").length)
  const ranked = [...at].sort((a, b) =>
    Number(inside(b)) - Number(inside(a)) || shared(b) - shared(a) || depth(a) - depth(b) || (a < b ? -1 : 1))
  const best = ranked.filter((p) => inside(p) === inside(ranked[0]) && shared(p) === shared(ranked[0])).slice(0, 2)
  if (here !== "" && inside(best[0])) {
    const rel = best.map((p) => chain(p.slice(here.length + 1), name)).join(" or ")
    return `; it belongs in ${rel} inside this \`${hereParts[hereParts.length - 1]}\``
  }
  return `; it belongs in ${best.map((p) => chain(p, name)).join(" or ")}`
}
