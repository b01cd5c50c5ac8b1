import type { TaskErrorInfo } from "../../sdk/errors.js";
import type { AttemptRecord } from "../../sdk/executor.js";
import type { RunSpec } from "../../sdk/run-options.js";
import { isTaskStatus, type TaskStatus } from "../../sdk/task-status.js";
import type { StoredInstance } from "./store.js";

/** How values of type `T` are kept in one column, in each dialect. */
interface ColumnCodec<T> {
  /** The column's type in SQLite (the tables are STRICT). */
  readonly sqlite: "TEXT" | "REAL" | "INTEGER";
  /** The column's type in PostgreSQL, as `information_schema` spells it; also the unnest array's element type. */
  readonly postgres: "text" | "double precision" | "bigint";
  /** Whether the column admits NULL, which stands for undefined. */
  readonly nullable: boolean;
  // Properties, not methods, so the compiler checks each codec against its field's exact type.
  readonly write: (value: T) => string | number | null;
  readonly read: (value: unknown, id: string) => T;
}

const text: ColumnCodec<string> = {
  sqlite: "TEXT",
  postgres: "text",
  nullable: false,
  write: (value) => value,
  read: (value) => value as string,
};

const optionalText: ColumnCodec<string | undefined> = {
  sqlite: "TEXT",
  postgres: "text",
  nullable: true,
  write: (value) => value ?? null,
  read: (value) => (value ?? undefined) as string | undefined,
};

const real: ColumnCodec<number> = {
  sqlite: "REAL",
  postgres: "double precision",
  nullable: false,
  write: (value) => value,
  read: (value) => value as number,
};

/** bigint in PostgreSQL: the pool's type parser hands it over as a number (ours stay far below 2^53). */
const integer: ColumnCodec<number> = {
  sqlite: "INTEGER",
  postgres: "bigint",
  nullable: false,
  write: (value) => value,
  read: (value) => value as number,
};

const optionalReal: ColumnCodec<number | undefined> = {
  sqlite: "REAL",
  postgres: "double precision",
  nullable: true,
  write: (value) => value ?? null,
  read: (value) => (value ?? undefined) as number | undefined,
};

const optionalInteger: ColumnCodec<number | undefined> = {
  sqlite: "INTEGER",
  postgres: "bigint",
  nullable: true,
  write: (value) => value ?? null,
  read: (value) => (value ?? undefined) as number | undefined,
};

const status: ColumnCodec<TaskStatus> = {
  ...text,
  read: (value, id) => {
    // A row written by a newer SDK version: refuse it rather than guess what it means.
    if (!isTaskStatus(value))
      throw new Error(`instance ${id} has an unknown status ${JSON.stringify(value)}`);
    return value;
  },
};

/** A value kept as JSON text; NULL for undefined. */
function json<T>(): ColumnCodec<T | undefined> {
  return {
    sqlite: "TEXT",
    postgres: "text",
    nullable: true,
    write: (value) => (value === undefined ? null : JSON.stringify(value)),
    read: (value) => (value === null || value === undefined ? undefined : (JSON.parse(value as string) as T)),
  };
}

const errorJson = json<TaskErrorInfo>();

/**
 * Every column of the `instances` table, once: its name and how its field is kept. The mapped
 * type makes the compiler insist on exactly one column per field of {@link StoredInstance}, with a
 * codec of that field's type. Declared in table order; a migration that adds a column appends it
 * (ALTER TABLE ADD COLUMN does), so add its line last. The stores' tests check these against the
 * migrated tables.
 */
const DECLARED: {
  readonly [K in keyof StoredInstance]: { name: string; codec: ColumnCodec<StoredInstance[K]> };
} = {
  id: { name: "id", codec: text },
  deploymentId: { name: "deployment_id", codec: text },
  taskId: { name: "task_id", codec: text },
  taskName: { name: "task_name", codec: text },
  module: { name: "module", codec: text },
  args: { name: "args", codec: optionalText },
  status: { name: "status", codec: status },
  progress: { name: "progress", codec: real },
  output: { name: "output", codec: optionalText },
  result: { name: "result", codec: optionalText },
  error: { name: "error", codec: errorJson },
  createdAt: { name: "created_at", codec: integer },
  startedAt: { name: "started_at", codec: optionalInteger },
  finishedAt: { name: "finished_at", codec: optionalInteger },
  revision: { name: "revision", codec: integer },
  sequence: { name: "sequence", codec: integer },
  position: { name: "position", codec: integer },
  owner: { name: "owner", codec: text },
  // Added by migration 3 (run options).
  spec: { name: "options", codec: json<RunSpec>() },
  priority: { name: "priority", codec: integer },
  readyAt: { name: "ready_at", codec: integer },
  attempt: { name: "attempt", codec: integer },
  maxAttempts: { name: "max_attempts", codec: integer },
  attempts: { name: "attempts", codec: json<readonly AttemptRecord[]>() },
  concurrencyLimit: { name: "concurrency_limit", codec: integer },
  perKeyLimit: { name: "per_key_limit", codec: integer },
  concurrencyKey: { name: "concurrency_key", codec: optionalText },
  // Added by SQLite migration 4, PostgreSQL migration 5 (traces).
  traceContext: { name: "trace_context", codec: optionalText },
  // Added by SQLite migration 5, PostgreSQL migration 6 (what the workload used).
  exitCode: { name: "exit_code", codec: optionalInteger },
  cpuSeconds: { name: "cpu_seconds", codec: optionalReal },
  peakMemoryBytes: { name: "peak_memory_bytes", codec: optionalInteger },
};

/** One column of the `instances` table, bound to its field of {@link StoredInstance}. */
export interface InstanceColumn {
  readonly field: keyof StoredInstance;
  /** The SQL name (snake_case). */
  readonly name: string;
  readonly sqlite: ColumnCodec<unknown>["sqlite"];
  readonly postgres: ColumnCodec<unknown>["postgres"];
  readonly nullable: boolean;
  /** This column's SQL value for the field's value (of the type {@link DECLARED} checks). */
  readonly write: (value: never) => string | number | null;
  /** The field's value from this column's SQL value; `id` names the row in errors. */
  readonly read: (value: unknown, id: string) => unknown;
}

/** The columns of the `instances` table, in table order. */
export const INSTANCE_COLUMNS: readonly InstanceColumn[] = (
  Object.keys(DECLARED) as Array<keyof StoredInstance>
).map((field) => {
  const { name, codec } = DECLARED[field];
  return { field, name, ...codec };
});

/** `id, deployment_id, ...`, or with `alias` `i.id, i.deployment_id, ...`: a select list of every column. */
export function instanceColumnList(alias?: string): string {
  const prefix = alias === undefined ? "" : `${alias}.`;
  return INSTANCE_COLUMNS.map((column) => `${prefix}${column.name}`).join(", ");
}

/** `deployment_id = excluded.deployment_id, ...`: an upsert that replaces the whole row (both dialects). */
export const REPLACE_FROM_EXCLUDED = INSTANCE_COLUMNS.filter((column) => column.name !== "id")
  .map((column) => `${column.name} = excluded.${column.name}`)
  .join(", ");

/** An instance as a SQL row: column name to value. */
export type InstanceRow = Readonly<Record<string, unknown>>;

/**
 * An instance's column values, in the order of {@link INSTANCE_COLUMNS}: the inverse of {@link toInstance}.
 */
export const instanceValues: (row: StoredInstance) => Array<string | number | null> = compile(
  (column, i) => `columns[${i}].write(row.${column.field})`,
  (items) => `return [${items}];`,
);

/**
 * A stored row as the daemon sees it.
 * @throws {Error} for a status no SDK version knows.
 */
export const toInstance: (row: InstanceRow) => StoredInstance = compile(
  (column, i) => `${column.field}: columns[${i}].read(row.${column.name}, id)`,
  (items) => `const id = String(row.id); return { ${items} };`,
);

/**
 * A function of `row` whose body `body` makes from one `item` per column, compiled once.
 * Every row a store reads or writes passes through these functions, and a loop over the columns
 * with computed property names measured about ten times slower per row than the unrolled code
 * (V8 cannot specialise the property accesses), so the loop is unrolled into source text here.
 * Only the declared names, checked to be plain identifiers, and column indexes go into that text.
 */
function compile<F>(
  item: (column: InstanceColumn, index: number) => string,
  body: (items: string) => string,
): F {
  for (const column of INSTANCE_COLUMNS) {
    if (!/^[a-z][a-z_]*$/.test(column.name) || !/^[a-z][A-Za-z]*$/.test(column.field)) {
      throw new Error(`instance column ${JSON.stringify(column)} does not have plain identifiers as names`);
    }
  }
  const items = INSTANCE_COLUMNS.map(item).join(", ");
  return new Function("columns", `return function (row) { ${body(items)} };`)(INSTANCE_COLUMNS) as F;
}
