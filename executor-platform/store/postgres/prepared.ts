import { createHash } from "node:crypto";
import type { QueryConfig } from "pg";

/** The name of each statement text, made once. */
const names = new Map<string, string>();

/**
 * `text` with `values` as a named statement: each connection parses and plans it once, then only
 * binds and runs it. Parsing and planning the store's long statements (a save names every column
 * in five places) cost PostgreSQL more CPU than running them. The name is a hash of the text, so
 * a text built at run time (the list query) gets one name per shape, never one name for two texts.
 */
export function prepared(text: string, values?: readonly unknown[]): QueryConfig {
  let name = names.get(text);
  if (name === undefined) {
    name = `ntsk_${createHash("sha256").update(text).digest("hex").slice(0, 24)}`;
    names.set(text, name);
  }
  return { name, text, values: values as unknown[] };
}
