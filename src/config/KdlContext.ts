/**
 * What every KDL decoder reports into: the `Sink` of one decoding (issues, id
 * definitions and references, facts) and the per-file context `Cx` with the
 * positions of nodes.
 */
import { type Entry, getLocation, type Node } from "@bgotink/kdl"
import * as os from "node:os"
import type { ConfigIssue } from "./ConfigIssue.js"

export type Located = Node | Entry

export interface Pos {
  readonly file: string
  readonly line: number
  readonly col: number
}

/** Collects issues and the id definitions/references checked after decoding. */
export class Sink {
  /**
   * @param cores Cores of the machine the config is for, for limits relative to it
   *   (`worker-threads`); an input rather than read inside, so decoding is deterministic in tests.
   */
  constructor(readonly cores: number = os.availableParallelism()) {}
  readonly errors: Array<ConfigIssue> = []
  readonly warnings: Array<ConfigIssue> = []
  readonly defs = new Map<string, Map<string, Pos>>()
  readonly refs: Array<{ kind: string; id: string; at: Pos; what: string }> = []
  /** Facts established somewhere in the document (e.g. "admin-listener"), checked against `needs`. */
  readonly facts = new Set<string>()
  /** Requirements on facts: an error at `at` unless the fact is established. */
  readonly needs: Array<{ fact: string; at: Pos; message: string }> = []
  /**
   * Some configuration could not be read (a file with a syntax error, a missing or unreadable
   * include): what is "missing" from the rest (a listener, a referenced id) may be in it.
   */
  incomplete = false
}

/** Decoding context: the file being read plus the shared sink. */
export class Cx {
  /** The entity being decoded (`route "api"`), for messages about references. */
  owner = ""
  constructor(readonly file: string, readonly sink: Sink) {}

  pos(at: Located | undefined): Pos {
    const loc = at === undefined ? undefined : getLocation(at)
    // 1-based; the parser reports column 0 on some malformed tokens (e.g. v1-style `r#""#`)
    return { file: this.file, line: Math.max(1, loc?.start.line ?? 1), col: Math.max(1, loc?.start.column ?? 1) }
  }
  error(at: Located | undefined, message: string): undefined {
    this.sink.errors.push({ ...this.pos(at), message })
    return undefined
  }
  warn(at: Located | undefined, message: string): void {
    this.sink.warnings.push({ ...this.pos(at), message })
  }
  /** Registers an id; a second definition is an error pointing at the first. */
  define(kind: string, id: string, at: Located): void {
    let ids = this.sink.defs.get(kind)
    if (ids === undefined) this.sink.defs.set(kind, (ids = new Map()))
    const first = ids.get(id)
    if (first !== undefined) {
      this.error(at, `duplicate ${kind} id "${id}" (first defined at ${first.file}:${first.line}:${first.col})`)
    } else ids.set(id, this.pos(at))
  }
  /** Establishes a fact about the whole document (see `Sink.facts`). */
  fact(name: string): void {
    this.sink.facts.add(name)
  }
  /** Requires a fact; `message` is reported at `at` when no part of the document establishes it. */
  need(fact: string, at: Located, message: string): void {
    this.sink.needs.push({ fact, at: this.pos(at), message })
  }
  /** Records a reference to an id of `kind`, resolved once the whole document is read. */
  reference(kind: string, id: string, at: Located, what: string): void {
    this.sink.refs.push({ kind, id, at: this.pos(at), what: this.owner === "" ? what : `${this.owner} ${what}` })
  }
}

export const nodeName = (n: Node): string => n.getName()
