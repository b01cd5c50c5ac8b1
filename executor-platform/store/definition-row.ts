import type { StoredDefinition } from "./store.js";

/** A task definition as both SQL stores keep it. */
export interface DefinitionRow {
  deployment_id: string;
  id: string;
  name: string;
  module: string;
}

/** `SELECT` list of {@link DefinitionRow}, in table order. */
export const DEFINITION_COLUMNS = "deployment_id, id, name, module";

export function toDefinition(row: DefinitionRow): StoredDefinition {
  return { deploymentId: row.deployment_id, id: row.id, name: row.name, module: row.module };
}
