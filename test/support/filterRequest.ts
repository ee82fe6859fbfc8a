import type { FilterRequest } from "../../src/filters/FilterOutcome.js"

/** A FilterRequest built from a plain object (header names are matched lower-case). */
export const filterRequest = (
  over: Partial<Omit<FilterRequest, "header">> & { readonly headers?: Readonly<Record<string, string>> } = {}
): FilterRequest => {
  const headers = Object.fromEntries(Object.entries(over.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]))
  return {
    method: over.method ?? "GET",
    scheme: over.scheme ?? "http",
    host: over.host ?? "a.example",
    path: over.path ?? "/",
    query: over.query ?? "",
    clientIp: over.clientIp ?? "192.0.2.1",
    routeId: over.routeId ?? "r1",
    header: (n) => headers[n]
  }
}

/** Flat header list -> lower-case name -> values. */
export const headerMap = (flat: ReadonlyArray<string> | undefined): Record<string, Array<string>> => {
  const out: Record<string, Array<string>> = {}
  for (let i = 0; flat !== undefined && i < flat.length; i += 2) (out[flat[i].toLowerCase()] ??= []).push(flat[i + 1])
  return out
}
