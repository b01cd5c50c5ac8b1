import { closeSync, mkdirSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { type TaskStatus, isTerminalStatus } from "../../../sdk/task-status.js";
import { SCHEDULE_COLUMNS, scheduleValues, toSchedule } from "../schedule-row.js";
import type {
  FinishedCount,
  Store,
  StoredDefinition,
  StoredInstance,
  LogWrite,
  StoredLogChunk,
  StoredSchedule,
  StoreListQuery,
} from "../store.js";
import { DEFINITION_COLUMNS, type DefinitionRow, toDefinition } from "../definition-row.js";
import { type CountChanges, OverviewCounts } from "./overview-counts.js";
import { WalCheckpointer } from "./wal-checkpointer.js";
import {
  INSTANCE_COLUMNS,
  type InstanceRow,
  instanceColumnList,
  instanceValues,
  REPLACE_FROM_EXCLUDED,
  toInstance,
} from "../instance-columns.js";

export const DATABASE_FILE = "numerous-tasks.db";

/** "NTSK": marks the file as ours, so a foreign SQLite database is refused instead of migrated. */
const APPLICATION_ID = 0x4e54534b;
const SQLITE_HEADER = "SQLite format 3\0";
const BUSY_TIMEOUT_MS = 5_000;
/** Well under SQLite's bound-parameter limit (32766 since 3.32, 999 before). */
const ID_CHUNK = 512;

/** Applied in order at open; step i brings the schema from version i to i + 1. Never edit a shipped step. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE instances (
    id            TEXT    NOT NULL PRIMARY KEY,
    deployment_id TEXT    NOT NULL,
    task_id       TEXT    NOT NULL,
    task_name     TEXT    NOT NULL,
    module        TEXT    NOT NULL,
    args          TEXT,
    status        TEXT    NOT NULL,
    progress      REAL    NOT NULL,
    output        TEXT,
    result        TEXT,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    revision      INTEGER NOT NULL,
    sequence      INTEGER NOT NULL,
    position      INTEGER NOT NULL,
    owner         TEXT    NOT NULL
  ) STRICT;
  CREATE INDEX instances_by_position ON instances (deployment_id, position);
  CREATE INDEX instances_by_sequence ON instances (deployment_id, sequence);
  CREATE INDEX instances_unfinished ON instances (position) WHERE status IN ('pending', 'running');

  CREATE TABLE definitions (
    deployment_id TEXT NOT NULL,
    id            TEXT NOT NULL,
    name          TEXT NOT NULL,
    module        TEXT NOT NULL,
    PRIMARY KEY (deployment_id, name)
  ) STRICT;

  -- Kept in step with every save so counters() need not scan the instances table.
  CREATE TABLE counters (
    singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    sequence  INTEGER NOT NULL,
    position  INTEGER NOT NULL
  ) STRICT;
  INSERT INTO counters (singleton, sequence, position) VALUES (1, 0, 0);
  `,
  `
  -- Run options (SPEC section 4): the options as JSON, and the parts of them queries use.
  ALTER TABLE instances ADD COLUMN options           TEXT;
  ALTER TABLE instances ADD COLUMN priority          INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE instances ADD COLUMN ready_at          INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE instances ADD COLUMN attempt           INTEGER NOT NULL DEFAULT 1;
  ALTER TABLE instances ADD COLUMN max_attempts      INTEGER NOT NULL DEFAULT 1;
  ALTER TABLE instances ADD COLUMN attempts          TEXT;
  ALTER TABLE instances ADD COLUMN concurrency_limit INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE instances ADD COLUMN per_key_limit     INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE instances ADD COLUMN concurrency_key   TEXT;
  -- Retention deletes finished rows by age.
  CREATE INDEX instances_finished ON instances (finished_at) WHERE finished_at IS NOT NULL;
  `,
  `
  -- Schedules (SPEC section 5).
  CREATE TABLE schedules (
    deployment_id    TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    task_name        TEXT    NOT NULL,
    module           TEXT    NOT NULL,
    args             TEXT    NOT NULL,
    cron             TEXT,
    timezone         TEXT,
    every_ms         INTEGER,
    overlap          TEXT    NOT NULL,
    catch_up         TEXT    NOT NULL,
    options          TEXT,
    paused           INTEGER NOT NULL,
    anchor_at        INTEGER NOT NULL,
    handled_through  INTEGER NOT NULL,
    last_fired_at    INTEGER,
    last_instance_id TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, name)
  ) STRICT;
  `,
  `
  -- The call's OpenTelemetry trace context (SPEC section 6), which each attempt's span links to.
  ALTER TABLE instances ADD COLUMN trace_context TEXT;
  `,
  `
  -- Logs (SPEC section 6): what the workload used, and its output in chunks, which are appended
  -- (rewriting a growing row would cost more with every line) and go with their instance.
  ALTER TABLE instances ADD COLUMN exit_code         INTEGER;
  ALTER TABLE instances ADD COLUMN cpu_seconds       REAL;
  ALTER TABLE instances ADD COLUMN peak_memory_bytes INTEGER;
  CREATE TABLE instance_logs (
    chunk       INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT    NOT NULL,
    lines       TEXT    NOT NULL,
    line_count  INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX instance_logs_by_instance ON instance_logs (instance_id, chunk);
  CREATE TRIGGER instance_logs_go_with_instances AFTER DELETE ON instances
  BEGIN
    DELETE FROM instance_logs WHERE instance_id = old.id;
  END;
  `,
  `
  -- The console's overview (SPEC section 6) reads these counts rather than count every row: by
  -- deployment and status, and rows with a finished_at by deployment, minute of it and status.
  -- Every write of the instances table changes them in the same transaction.
  CREATE TABLE status_counts (
    deployment_id TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    n             INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, status)
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE finished_counts (
    deployment_id TEXT    NOT NULL,
    minute        INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    n             INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, minute, status)
  ) STRICT, WITHOUT ROWID;
  INSERT INTO status_counts (deployment_id, status, n)
    SELECT deployment_id, status, count(*) FROM instances GROUP BY deployment_id, status;
  INSERT INTO finished_counts (deployment_id, minute, status, n)
    SELECT deployment_id, (finished_at / 60000) * 60000, status, count(*) FROM instances
      WHERE finished_at IS NOT NULL GROUP BY 1, 2, 3;
  `,
];

const COLUMNS = instanceColumnList();

type Statement<R = unknown> = Database.Statement<unknown[], R>;

export class SqliteStore implements Store {
  readonly file: string;
  #db: Database.Database | undefined;
  /** Whether commits fsync now (synchronous=FULL); switched per batch by `save`. */
  #synced = true;
  readonly #statements = new Map<string, Statement<unknown>>();
  readonly #upsertInstance: Statement;
  readonly #upsertDefinition: Statement;
  readonly #bumpCounters: Statement;
  readonly #saveBatch: Database.Transaction<
    (rows: readonly StoredInstance[], definitions: readonly StoredDefinition[]) => CountChanges
  >;
  readonly #writeLogs: Database.Transaction<(write: LogWrite) => number[]>;
  readonly #counts: OverviewCounts;
  readonly #deleteFinished: Database.Transaction<(before: number, limit: number) => number>;
  /** Checkpoints off the event loop; started with the first write. */
  #checkpointer: WalCheckpointer | undefined;

  /** Use {@link openSqliteStore}; this takes an already opened and migrated database. */
  constructor(db: Database.Database, file: string) {
    this.#db = db;
    this.file = file;
    this.#upsertInstance = db.prepare(
      `INSERT INTO instances (${COLUMNS}) VALUES (${INSTANCE_COLUMNS.map(() => "?").join(", ")})
       ON CONFLICT (id) DO UPDATE SET ${REPLACE_FROM_EXCLUDED}`,
    );
    this.#upsertDefinition = db.prepare(
      `INSERT INTO definitions (${DEFINITION_COLUMNS}) VALUES (?, ?, ?, ?)
       ON CONFLICT (deployment_id, name) DO UPDATE SET id = excluded.id, module = excluded.module`,
    );
    this.#bumpCounters = db.prepare(
      "UPDATE counters SET sequence = MAX(sequence, ?), position = MAX(position, ?) WHERE singleton = 1",
    );
    const counts = new OverviewCounts(db);
    this.#counts = counts;
    this.#saveBatch = db.transaction(
      (rows: readonly StoredInstance[], definitions: readonly StoredDefinition[]) => {
        let sequence = 0;
        let position = 0;
        const upsert = this.#upsertInstance;
        const changes = counts.saving(rows);
        for (const row of rows) {
          upsert.run(...instanceValues(row));
          if (row.sequence > sequence) sequence = row.sequence;
          if (row.position > position) position = row.position;
        }
        for (const d of definitions) this.#upsertDefinition.run(d.deploymentId, d.id, d.name, d.module);
        if (rows.length > 0) this.#bumpCounters.run(sequence, position);
        counts.write(changes);
        return changes;
      },
    );
    const deleteFinished = db.prepare<
      [number, number],
      { deployment_id: string; status: TaskStatus; finished_at: number }
    >(
      `DELETE FROM instances WHERE id IN (
         SELECT id FROM instances WHERE finished_at < ? AND status IN ('completed', 'failed', 'cancelled') LIMIT ?)
       RETURNING deployment_id, status, finished_at`,
    );
    this.#deleteFinished = db.transaction((before: number, limit: number) => {
      const deleted = deleteFinished.all(before, limit);
      counts.write(
        counts.deleting(
          deleted.map((row) => ({
            deploymentId: row.deployment_id,
            status: row.status,
            finishedAt: row.finished_at,
          })),
        ),
      );
      return deleted.length;
    });
    const appendLog = db.prepare(
      "INSERT INTO instance_logs (instance_id, lines, line_count) VALUES (?, ?, ?)",
    );
    const rewriteLog = db.prepare("UPDATE instance_logs SET lines = ?, line_count = ? WHERE chunk = ?");
    const removeLog = db.prepare("DELETE FROM instance_logs WHERE chunk = ?");
    this.#writeLogs = db.transaction((write: LogWrite) => {
      const chunks: number[] = [];
      for (const c of write.append) {
        chunks.push(Number(appendLog.run(c.instanceId, c.lines, c.lineCount).lastInsertRowid));
      }
      for (const c of write.rewrite) rewriteLog.run(c.lines, c.lineCount, c.chunk);
      for (const chunk of write.remove) removeLog.run(chunk);
      return chunks;
    });
  }

  async counters(): Promise<{ sequence: number; position: number }> {
    const row = this.#prepare<{ sequence: number; position: number }>(
      "SELECT sequence, position FROM counters WHERE singleton = 1",
    ).get();
    return { sequence: row?.sequence ?? 0, position: row?.position ?? 0 };
  }

  async save(rows: readonly StoredInstance[], definitions: readonly StoredDefinition[] = []): Promise<void> {
    const db = this.#open();
    if (rows.length === 0 && definitions.length === 0) return;
    // What a user was promised is synced to disk before this resolves: a new instance, an end,
    // a definition. A batch of progress and output alone is written without the fsync: it
    // survives the daemon's crash (the page cache keeps it) and reaches the disk with the next
    // synced commit; only a power cut in between loses it, and never a result.
    this.#checkpointer ??= this.#startCheckpointer(db);
    const sync =
      definitions.length > 0 || rows.some((row) => row.revision === 1 || isTerminalStatus(row.status));
    if (sync !== this.#synced) {
      db.pragma(sync ? "synchronous = FULL" : "synchronous = NORMAL");
      this.#synced = sync;
    }
    // IMMEDIATE: a deferred transaction in WAL mode can fail with SQLITE_BUSY without waiting
    // when another process writes between its read and its write.
    this.#counts.committed(this.#saveBatch.immediate(rows, definitions));
  }

  async getMany(ids: readonly string[]): Promise<StoredInstance[]> {
    this.#open();
    const unique = [...new Set(ids)];
    const found = new Map<string, StoredInstance>();
    for (let i = 0; i < unique.length; i += ID_CHUNK) {
      const chunk = unique.slice(i, i + ID_CHUNK);
      // Padding to a power of two (repeating an id is harmless in IN) bounds the cached statements.
      const size = Math.min(ID_CHUNK, 2 ** Math.ceil(Math.log2(chunk.length)));
      while (chunk.length < size) chunk.push(chunk[0] as string);
      const statement = this.#prepare<InstanceRow>(
        `SELECT ${COLUMNS} FROM instances WHERE id IN (${chunk.map(() => "?").join(", ")})`,
      );
      for (const row of statement.all(...chunk)) {
        const instance = toInstance(row);
        found.set(instance.id, instance);
      }
    }
    const result: StoredInstance[] = [];
    for (const id of unique) {
      const instance = found.get(id);
      if (instance !== undefined) result.push(instance);
    }
    return result;
  }

  async list(query: StoreListQuery): Promise<StoredInstance[]> {
    this.#open();
    const limit = Math.floor(query.limit);
    // An empty status list matches nothing, as in the local executor.
    if (!(limit > 0) || query.statuses?.length === 0) return [];
    const where = ["deployment_id = ?"];
    const params: unknown[] = [query.deploymentId];
    if (query.task !== undefined) {
      where.push("(task_id = ? OR task_name = ?)");
      params.push(query.task, query.task);
    }
    if (query.statuses !== undefined) {
      const statuses = [...new Set(query.statuses)];
      where.push(`status IN (${statuses.map(() => "?").join(", ")})`);
      params.push(...statuses);
    }
    if (query.afterPosition !== undefined) {
      where.push("position > ?");
      params.push(query.afterPosition);
    }
    params.push(limit);
    const statement = this.#prepare<InstanceRow>(
      `SELECT ${COLUMNS} FROM instances WHERE ${where.join(" AND ")} ORDER BY position LIMIT ?`,
    );
    return statement.all(...params).map(toInstance);
  }

  async changesSince(deploymentId: string, afterSequence: number, limit: number): Promise<StoredInstance[]> {
    this.#open();
    const n = Math.floor(limit);
    if (!(n > 0)) return [];
    return this.#prepare<InstanceRow>(
      `SELECT ${COLUMNS} FROM instances WHERE deployment_id = ? AND sequence > ? ORDER BY sequence LIMIT ?`,
    )
      .all(deploymentId, afterSequence, n)
      .map(toInstance);
  }

  async unfinished(): Promise<StoredInstance[]> {
    // The WHERE clause repeats the partial index's, so SQLite can use it.
    return this.#prepare<InstanceRow>(
      `SELECT ${COLUMNS} FROM instances WHERE status IN ('pending', 'running') ORDER BY position`,
    )
      .all()
      .map(toInstance);
  }

  async listSchedules(deploymentId?: string): Promise<StoredSchedule[]> {
    const rows =
      deploymentId === undefined
        ? this.#prepare<Record<string, unknown>>(
            `SELECT ${SCHEDULE_COLUMNS.join(", ")} FROM schedules ORDER BY deployment_id, name`,
          ).all()
        : this.#prepare<Record<string, unknown>>(
            `SELECT ${SCHEDULE_COLUMNS.join(", ")} FROM schedules WHERE deployment_id = ? ORDER BY name`,
          ).all(deploymentId);
    return rows.map(toSchedule);
  }

  async getSchedule(deploymentId: string, name: string): Promise<StoredSchedule | undefined> {
    const row = this.#prepare<Record<string, unknown>>(
      `SELECT ${SCHEDULE_COLUMNS.join(", ")} FROM schedules WHERE deployment_id = ? AND name = ?`,
    ).get(deploymentId, name);
    return row === undefined ? undefined : toSchedule(row);
  }

  async putSchedule(schedule: StoredSchedule): Promise<void> {
    this.#prepare(
      `INSERT OR REPLACE INTO schedules (${SCHEDULE_COLUMNS.join(", ")})
       VALUES (${SCHEDULE_COLUMNS.map(() => "?").join(", ")})`,
    ).run(...scheduleValues(schedule));
  }

  async deleteSchedule(deploymentId: string, name: string): Promise<boolean> {
    return (
      this.#prepare("DELETE FROM schedules WHERE deployment_id = ? AND name = ?").run(deploymentId, name)
        .changes > 0
    );
  }

  async advanceSchedule(
    deploymentId: string,
    name: string,
    expectedHandledThrough: number,
    next: { handledThrough: number; lastFiredAt: number | undefined; lastInstanceId: string | undefined },
  ): Promise<boolean> {
    return (
      this.#prepare(
        `UPDATE schedules SET handled_through = ?, last_fired_at = ?, last_instance_id = ?
         WHERE deployment_id = ? AND name = ? AND handled_through = ?`,
      ).run(
        next.handledThrough,
        next.lastFiredAt ?? null,
        next.lastInstanceId ?? null,
        deploymentId,
        name,
        expectedHandledThrough,
      ).changes > 0
    );
  }

  async deleteFinished(before: number, limit: number): Promise<number> {
    this.#open();
    return this.#deleteFinished.immediate(before, Math.max(0, Math.floor(limit)));
  }

  async statusCounts(deploymentId: string): Promise<Partial<Record<TaskStatus, number>>> {
    this.#open();
    return this.#counts.statusCounts(deploymentId);
  }

  async finishedPerMinute(deploymentId: string, since: number): Promise<FinishedCount[]> {
    this.#open();
    return this.#counts.finishedPerMinute(deploymentId, since);
  }

  async writeLogs(write: LogWrite): Promise<number[]> {
    const db = this.#open();
    this.#checkpointer ??= this.#startCheckpointer(db);
    if (this.#synced) {
      db.pragma("synchronous = NORMAL");
      this.#synced = false;
    }
    return this.#writeLogs.immediate(write);
  }

  async readLogs(instanceId: string, after: number, limit: number): Promise<StoredLogChunk[]> {
    return this.#prepare<LogRow>(
      "SELECT chunk, lines, line_count FROM instance_logs WHERE instance_id = ? AND chunk > ? ORDER BY chunk LIMIT ?",
    )
      .all(instanceId, after, Math.max(0, Math.floor(limit)))
      .map((row) => toLogChunk(instanceId, row));
  }

  async readLogsBackward(instanceId: string, before: number, limit: number): Promise<StoredLogChunk[]> {
    return this.#prepare<LogRow>(
      "SELECT chunk, lines, line_count FROM instance_logs WHERE instance_id = ? AND chunk < ? ORDER BY chunk DESC LIMIT ?",
    )
      .all(instanceId, before, Math.max(0, Math.floor(limit)))
      .map((row) => toLogChunk(instanceId, row));
  }

  async listDefinitions(deploymentId: string): Promise<StoredDefinition[]> {
    return this.#prepare<DefinitionRow>(
      `SELECT ${DEFINITION_COLUMNS} FROM definitions WHERE deployment_id = ? ORDER BY name`,
    )
      .all(deploymentId)
      .map(toDefinition);
  }

  async close(): Promise<void> {
    const db = this.#db;
    if (db === undefined) return;
    this.#db = undefined;
    this.#statements.clear();
    // Its connection first: the last one to close checkpoints what is left and removes the log.
    await this.#checkpointer?.close();
    try {
      db.pragma("optimize");
    } finally {
      db.close();
    }
  }

  /** The checkpoint thread; the connection's own checkpoints off while it runs. */
  #startCheckpointer(db: Database.Database): WalCheckpointer {
    const checkpointer = new WalCheckpointer(this.file, () => {
      if (this.#db === db) db.pragma("wal_autocheckpoint = 1000");
    });
    db.pragma("wal_autocheckpoint = 0");
    return checkpointer;
  }

  #open(): Database.Database {
    if (this.#db === undefined) throw new Error(`the task store ${this.file} is closed`);
    return this.#db;
  }

  #prepare<R>(sql: string): Statement<R> {
    const db = this.#open();
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement as Statement<R>;
  }
}

interface LogRow {
  chunk: number;
  lines: string;
  line_count: number;
}

function toLogChunk(instanceId: string, row: LogRow): StoredLogChunk {
  return { chunk: row.chunk, instanceId, lines: row.lines, lineCount: row.line_count };
}

/** Opens (creating if needed) the store in `dataDir` and brings its schema up to date. */
export async function openSqliteStore(dataDir: string): Promise<SqliteStore> {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, DATABASE_FILE);
  const notOurs = (why: string, cause?: unknown): Error =>
    new Error(
      `${file} is not a numerous-tasks database (${why})`,
      cause === undefined ? undefined : { cause },
    );

  // Checked before SQLite touches the file, so a foreign file is refused without SQLite writing beside it.
  const header = readHeader(file);
  if (header !== undefined && header.length > 0 && header !== SQLITE_HEADER) {
    throw notOurs("it is not an SQLite file");
  }

  let db: Database.Database | undefined;
  try {
    db = new Database(file);
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const mode = db.pragma("journal_mode = WAL", { simple: true });
    if (mode !== "wal") throw new Error(`${file}: SQLite could not switch to WAL mode (got ${String(mode)})`);
    // FULL syncs the WAL on every commit, so a resolved save survives power loss, not just a crash.
    db.pragma("synchronous = FULL");
    // On macOS a plain fsync does not reach the platter; elsewhere these are no-ops.
    db.pragma("fullfsync = ON");
    db.pragma("checkpoint_fullfsync = ON");
    migrate(db, file, notOurs);
    const store = new SqliteStore(db, file);
    db = undefined;
    return store;
  } catch (error) {
    if (isSqliteError(error, "SQLITE_NOTADB") || isSqliteError(error, "SQLITE_CORRUPT")) {
      throw notOurs("SQLite cannot read it", error);
    }
    throw error;
  } finally {
    db?.close();
  }
}

function migrate(db: Database.Database, file: string, notOurs: (why: string) => Error): void {
  // IMMEDIATE takes the write lock first, so two processes opening a fresh directory migrate once.
  db.transaction(() => {
    const applicationId = Number(db.pragma("application_id", { simple: true }));
    const version = Number(db.pragma("user_version", { simple: true }));
    if (applicationId !== APPLICATION_ID) {
      const objects = db.prepare("SELECT count(*) AS n FROM sqlite_schema").get() as { n: number };
      if (applicationId !== 0 || version !== 0 || objects.n > 0) {
        throw notOurs("it is an SQLite database of some other program");
      }
    }
    if (version > MIGRATIONS.length) {
      throw new Error(
        `${file} has schema version ${version}, but this numerous-tasks knows only up to ${MIGRATIONS.length}; upgrade numerous-tasks`,
      );
    }
    for (let v = version; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v] as string);
    if (version < MIGRATIONS.length) db.pragma(`user_version = ${MIGRATIONS.length}`);
    if (applicationId !== APPLICATION_ID) db.pragma(`application_id = ${APPLICATION_ID}`);
  }).immediate();
}

/** The first 16 bytes of the file, or undefined when it does not exist. */
function readHeader(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    const buffer = Buffer.alloc(SQLITE_HEADER.length);
    const n = readSync(fd, buffer, 0, buffer.length, 0);
    return buffer.subarray(0, n).toString("latin1");
  } finally {
    closeSync(fd);
  }
}

function isSqliteError(error: unknown, code: string): boolean {
  return (
    error instanceof Error && "code" in error && typeof error.code === "string" && error.code.startsWith(code)
  );
}
