import {
  Client,
  type ClientConfig,
  Pool,
  type PoolClient,
  type QueryResult,
  type QueryResultRow,
  TypeOverrides,
} from "pg";
import type { TaskErrorInfo } from "../../../sdk/errors.js";
import type { ClusterEvent, ClusterStore } from "../cluster-store.js";
import { StoreUnavailableError } from "../store-errors.js";
import type { StoredDefinition, StoredInstance, StoreListQuery } from "../store.js";
import { DEFINITION_COLUMNS, type DefinitionRow, toDefinition } from "../definition-row.js";
import {
  INSTANCE_COLUMNS,
  type InstanceRow,
  instanceColumnList,
  instanceValues,
  REPLACE_FROM_EXCLUDED,
  toInstance,
} from "../instance-columns.js";

/** Where {@link PostgresStore} reports what it recovers from by itself. */
export interface PostgresStoreLogger {
  warn(obj: object, msg: string): void;
}

export interface PostgresStoreOptions {
  readonly logger?: PostgresStoreLogger | undefined;
}

/** The LISTEN/NOTIFY channel every daemon of a store listens on. */
export const CHANNEL = "numerous_tasks";

/** First key of every advisory lock taken here ("NTSK"); the second says which lock. */
const LOCK_NAMESPACE = 0x4e54534b;
/** Serialises every write that assigns sequences, so commit order is sequence order. */
const LOCK_WRITE = 1;
/** Serialises schema migrations of daemons that start at once. */
const LOCK_MIGRATE = 2;

const POOL_SIZE = 10;
const CONNECT_TIMEOUT_MS = 10_000;
/** Rows per upsert statement (arrays through unnest: no bound-parameter limit, just memory). */
const UPSERT_CHUNK = 5_000;
const ID_CHUNK = 10_000;
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 2_000;
/** How often the LISTEN connection is pinged, to notice a connection that died silently. */
const PING_INTERVAL_MS = 15_000;
const PING_TIMEOUT_MS = 10_000;

/**
 * Applied in order at open, in one transaction; step i brings the schema from version i to i + 1.
 * Never edit a shipped step: add one.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE instances (
    id            text             NOT NULL PRIMARY KEY,
    deployment_id text             NOT NULL,
    task_id       text             NOT NULL,
    task_name     text             NOT NULL,
    module        text             NOT NULL,
    args          text,
    status        text             NOT NULL,
    progress      double precision NOT NULL,
    output        text,
    result        text,
    error         text,
    created_at    bigint           NOT NULL,
    started_at    bigint,
    finished_at   bigint,
    revision      bigint           NOT NULL,
    sequence      bigint           NOT NULL,
    position      bigint           NOT NULL,
    owner         text             NOT NULL
  );
  CREATE INDEX instances_by_position ON instances (deployment_id, position);
  CREATE INDEX instances_by_sequence ON instances (deployment_id, sequence);
  CREATE INDEX instances_all_by_sequence ON instances (sequence);
  -- One index for the open rows serves claims (owner '' by position), reaping (by owner) and
  -- unfinished(); every index costs on the hot insert path.
  CREATE INDEX instances_open ON instances (owner, position) WHERE status IN ('pending', 'running');

  CREATE TABLE definitions (
    deployment_id text NOT NULL,
    id            text NOT NULL,
    name          text NOT NULL,
    module        text NOT NULL,
    PRIMARY KEY (deployment_id, name)
  );

  -- One row per live daemon; reap() ends the work of those whose lease ran out (database clock).
  CREATE TABLE daemons (
    owner       text        NOT NULL PRIMARY KEY,
    lease_until timestamptz NOT NULL
  );

  -- The highest sequence and position handed out; changed only under the write lock, in the
  -- same transaction as the rows, so it is also the highest committed sequence.
  CREATE TABLE counters (
    singleton boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (singleton),
    sequence  bigint  NOT NULL,
    position  bigint  NOT NULL
  );
  INSERT INTO counters (singleton, sequence, position) VALUES (true, 0, 0);
  `,
];

const COLUMNS = instanceColumnList();

/** Whole rows as one array per column (no bound-parameter limit), inserted or replaced by id. */
const UPSERT_INSTANCES = `
  INSERT INTO instances (${COLUMNS})
  SELECT * FROM unnest(${INSTANCE_COLUMNS.map((column, i) => `$${i + 1}::${column.postgres}[]`).join(", ")})
  ON CONFLICT (id) DO UPDATE SET ${REPLACE_FROM_EXCLUDED}`;

const UPSERT_DEFINITIONS = `
  INSERT INTO definitions (${DEFINITION_COLUMNS})
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
  ON CONFLICT (deployment_id, name) DO UPDATE SET id = excluded.id, module = excluded.module`;

/**
 * Opens the write transaction: READ COMMITTED explicitly (each statement after the lock then sees
 * every write committed before it), the write lock, then the counters as the last writer left them.
 * Constant text, sent as one simple query to save round trips while the lock is held.
 */
const BEGIN_WRITE = `BEGIN ISOLATION LEVEL READ COMMITTED;
  SELECT pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${LOCK_WRITE});
  SELECT sequence, position FROM counters WHERE singleton`;

interface Counters {
  sequence: number;
  position: number;
}

/** bigint columns arrive as numbers (all of ours stay far below 2^53). */
const TYPES = new TypeOverrides();
TYPES.setTypeParser(20, "text", (value: string) => Number(value));

/**
 * The store that several daemons share: a PostgreSQL database. Sequences and positions come from
 * the database under one advisory lock (commit order is sequence order); claims use row locks;
 * leases are judged by the database clock; events travel by LISTEN/NOTIFY.
 */
export class PostgresStore implements ClusterStore {
  readonly shared = true as const;
  /** The URL without its password, e.g. `postgres://daemon@db.internal:5432/tasks`. */
  readonly label: string;
  readonly #pool: Pool;
  readonly #events: Listener;
  /** Owners that heartbeated through this store: a missing lease row then means reaped. */
  readonly #heartbeated = new Set<string>();
  #closing: Promise<void> | undefined;

  /** Use {@link openPostgresStore}; this takes a pool on an already migrated database. */
  constructor(pool: Pool, config: ClientConfig, label: string, logger?: PostgresStoreLogger) {
    this.#pool = pool;
    this.label = label;
    this.#events = new Listener(config, label, logger);
  }

  async counters(): Promise<{ sequence: number; position: number }> {
    const rows = await this.#query<Counters>("SELECT sequence, position FROM counters WHERE singleton");
    return { sequence: rows[0]?.sequence ?? 0, position: rows[0]?.position ?? 0 };
  }

  async currentSequence(): Promise<number> {
    const rows = await this.#query<{ sequence: number }>("SELECT sequence FROM counters WHERE singleton");
    return rows[0]?.sequence ?? 0;
  }

  async save(rows: readonly StoredInstance[], definitions: readonly StoredDefinition[] = []): Promise<void> {
    await this.saveAssigned(rows, definitions);
  }

  /**
   * Upserts the rows (one entry per id: of repeated ids the last wins) with sequences
   * `current + 1 ...` in order, and positions after the current one for rows given with
   * position 0 (a row that already exists keeps its position), plus the definitions, in one
   * transaction under the write lock. Notifies `changed` and, when a saved row is pending and
   * unowned, `pending` (delivered at commit).
   */
  async saveAssigned(
    rows: readonly StoredInstance[],
    definitions: readonly StoredDefinition[] = [],
  ): Promise<StoredInstance[]> {
    this.#checkOpen();
    const unique = [...new Map(rows.map((row) => [row.id, row])).values()];
    const defs = [...new Map(definitions.map((d) => [`${d.deploymentId}\0${d.name}`, d])).values()];
    if (unique.length === 0 && defs.length === 0) return [];
    return this.#write(async (client, counters) => {
      const fresh = unique.filter((row) => row.position === 0).map((row) => row.id);
      const existing = new Map<string, number>();
      if (fresh.length > 0) {
        const found = await client.query<{ id: string; position: number }>(
          "SELECT id, position FROM instances WHERE id = ANY($1::text[])",
          [fresh],
        );
        for (const row of found.rows) existing.set(row.id, row.position);
      }
      let sequence = counters.sequence;
      let position = counters.position;
      let pending = false;
      const stored = unique.map((row): StoredInstance => {
        let rowPosition = row.position;
        if (rowPosition === 0) rowPosition = existing.get(row.id) ?? ++position;
        else if (rowPosition > position) position = rowPosition;
        if (row.status === "pending" && row.owner === "") pending = true;
        return { ...row, sequence: ++sequence, position: rowPosition };
      });
      for (let i = 0; i < stored.length; i += UPSERT_CHUNK) {
        await client.query(UPSERT_INSTANCES, columnsOf(stored.slice(i, i + UPSERT_CHUNK)));
      }
      if (defs.length > 0) {
        await client.query(UPSERT_DEFINITIONS, [
          defs.map((d) => d.deploymentId),
          defs.map((d) => d.id),
          defs.map((d) => d.name),
          defs.map((d) => d.module),
        ]);
      }
      if (stored.length > 0) await finishWrite(client, { sequence, position }, pending);
      return stored;
    });
  }

  async getMany(ids: readonly string[]): Promise<StoredInstance[]> {
    this.#checkOpen();
    const unique = [...new Set(ids)];
    const found = new Map<string, StoredInstance>();
    for (let i = 0; i < unique.length; i += ID_CHUNK) {
      const rows = await this.#query<InstanceRow>(
        `SELECT ${COLUMNS} FROM instances WHERE id = ANY($1::text[])`,
        [unique.slice(i, i + ID_CHUNK)],
      );
      for (const row of rows) {
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

  async get(deploymentId: string, id: string): Promise<StoredInstance | undefined> {
    const rows = await this.#query<InstanceRow>(
      `SELECT ${COLUMNS} FROM instances WHERE id = $1 AND deployment_id = $2`,
      [id, deploymentId],
    );
    return rows[0] === undefined ? undefined : toInstance(rows[0]);
  }

  async list(query: StoreListQuery): Promise<StoredInstance[]> {
    this.#checkOpen();
    const limit = Math.floor(query.limit);
    // An empty status list matches nothing, as in the local executor.
    if (!(limit > 0) || query.statuses?.length === 0) return [];
    const params: unknown[] = [query.deploymentId];
    const where = ["deployment_id = $1"];
    if (query.task !== undefined) {
      params.push(query.task);
      where.push(`(task_id = $${params.length} OR task_name = $${params.length})`);
    }
    if (query.statuses !== undefined) {
      params.push([...new Set(query.statuses)]);
      where.push(`status = ANY($${params.length}::text[])`);
    }
    if (query.afterPosition !== undefined) {
      params.push(query.afterPosition);
      where.push(`position > $${params.length}`);
    }
    params.push(limit);
    const rows = await this.#query<InstanceRow>(
      `SELECT ${COLUMNS} FROM instances WHERE ${where.join(" AND ")} ORDER BY position LIMIT $${params.length}`,
      params,
    );
    return rows.map(toInstance);
  }

  async changesSince(deploymentId: string, afterSequence: number, limit: number): Promise<StoredInstance[]> {
    this.#checkOpen();
    const n = Math.floor(limit);
    if (!(n > 0)) return [];
    const rows = await this.#query<InstanceRow>(
      `SELECT ${COLUMNS} FROM instances WHERE deployment_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3`,
      [deploymentId, afterSequence, n],
    );
    return rows.map(toInstance);
  }

  async changesSinceAll(afterSequence: number, limit: number): Promise<StoredInstance[]> {
    this.#checkOpen();
    const n = Math.floor(limit);
    if (!(n > 0)) return [];
    const rows = await this.#query<InstanceRow>(
      `SELECT ${COLUMNS} FROM instances WHERE sequence > $1 ORDER BY sequence LIMIT $2`,
      [afterSequence, n],
    );
    return rows.map(toInstance);
  }

  async unfinished(): Promise<StoredInstance[]> {
    const rows = await this.#query<InstanceRow>(
      `SELECT ${COLUMNS} FROM instances WHERE status IN ('pending', 'running') ORDER BY position`,
    );
    return rows.map(toInstance);
  }

  async listDefinitions(deploymentId: string): Promise<StoredDefinition[]> {
    const rows = await this.#query<DefinitionRow>(
      `SELECT ${DEFINITION_COLUMNS} FROM definitions WHERE deployment_id = $1 ORDER BY name`,
      [deploymentId],
    );
    return rows.map(toDefinition);
  }

  /**
   * Renews `owner`'s lease to the database's `now() + leaseMs`. The first heartbeat of an owner
   * through this store registers it; after that, a missing lease row means another daemon reaped
   * it: this resolves false, and keeps doing so for that owner (it does not register again:
   * a daemon presumed dead rejoins under a new owner id, or through a new store).
   */
  async heartbeat(owner: string, leaseMs: number): Promise<boolean> {
    this.#checkOpen();
    const lease = Math.max(0, leaseMs);
    if (!this.#heartbeated.has(owner)) {
      await this.#query(
        `INSERT INTO daemons (owner, lease_until) VALUES ($1, now() + $2::float8 * interval '1 millisecond')
         ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until`,
        [owner, lease],
      );
      this.#heartbeated.add(owner);
      return true;
    }
    const renewed = await this.#query(
      "UPDATE daemons SET lease_until = now() + $2::float8 * interval '1 millisecond' WHERE owner = $1 RETURNING owner",
      [owner, lease],
    );
    return renewed.length > 0;
  }

  async claim(owner: string, limit: number): Promise<StoredInstance[]> {
    this.#checkOpen();
    const n = Math.floor(limit);
    if (!(n > 0)) return [];
    // Most calls answer a `pending` event that another daemon already served: skip the write lock then.
    const any = await this.#query(
      "SELECT 1 FROM instances WHERE status = 'pending' AND owner = '' ORDER BY position LIMIT 1",
    );
    if (any.length === 0) return [];
    return this.#write(async (client, counters) => {
      const picked = await client.query<{ id: string }>(
        `SELECT id FROM instances WHERE status = 'pending' AND owner = ''
         ORDER BY position LIMIT $1 FOR UPDATE SKIP LOCKED`,
        [n],
      );
      if (picked.rows.length === 0) return [];
      const ids = picked.rows.map((row) => row.id);
      const sequences = ids.map((_, i) => counters.sequence + i + 1);
      const claimed = await client.query<InstanceRow>(
        `UPDATE instances AS i SET owner = $1, revision = i.revision + 1, sequence = u.sequence
         FROM unnest($2::text[], $3::int8[]) AS u(id, sequence) WHERE i.id = u.id
         RETURNING ${instanceColumnList("i")}`,
        [owner, ids, sequences],
      );
      await finishWrite(
        client,
        { sequence: counters.sequence + ids.length, position: counters.position },
        false,
      );
      return claimed.rows.map(toInstance).sort((a, b) => a.sequence - b.sequence);
    });
  }

  /** Pending and unowned → cancelled (args, result and error cleared, finishedAt now), with a new sequence. */
  async cancelPending(id: string): Promise<StoredInstance | undefined> {
    this.#checkOpen();
    return this.#write(async (client, counters) => {
      const sequence = counters.sequence + 1;
      const cancelled = await client.query<InstanceRow>(
        `UPDATE instances SET status = 'cancelled', args = NULL, result = NULL, error = NULL,
           finished_at = $2, revision = revision + 1, sequence = $3
         WHERE id = $1 AND status = 'pending' AND owner = ''
         RETURNING ${COLUMNS}`,
        [id, Date.now(), sequence],
      );
      const row = cancelled.rows[0];
      if (row === undefined) return undefined;
      await finishWrite(client, { sequence, position: counters.position }, false);
      return toInstance(row);
    });
  }

  /**
   * For every daemon whose lease ran out by the database clock: its running rows become failed
   * with `reason(owner)` (args dropped, finishedAt now), its pending rows unowned, each with a
   * new revision and sequence; its lease row is deleted. Notifies `changed`, and `pending` when
   * rows were freed. A renewal that commits first wins: that daemon is not reaped.
   */
  async reap(reason: (owner: string) => TaskErrorInfo): Promise<StoredInstance[]> {
    this.#checkOpen();
    const expired = await this.#query("SELECT owner FROM daemons WHERE lease_until < now() LIMIT 1");
    if (expired.length === 0) return [];
    return this.#write(async (client, counters) => {
      // Checked again under the lock; FOR UPDATE makes a concurrent renewal wait (and lose) or win.
      const dead = await client.query<{ owner: string }>(
        "SELECT owner FROM daemons WHERE lease_until < now() ORDER BY owner FOR UPDATE",
      );
      const owners = dead.rows.map((row) => row.owner);
      if (owners.length === 0) return [];
      const held = await client.query<{ id: string; owner: string; status: string }>(
        `SELECT id, owner, status FROM instances WHERE owner = ANY($1::text[]) AND status IN ('pending', 'running')
         ORDER BY position FOR UPDATE`,
        [owners],
      );
      const errors = new Map<string, string>();
      for (const owner of owners) errors.set(owner, JSON.stringify(callReason(reason, owner)));
      const ids = held.rows.map((row) => row.id);
      const sequences = ids.map((_, i) => counters.sequence + i + 1);
      const rowErrors = held.rows.map((row) =>
        row.status === "running" ? (errors.get(row.owner) ?? null) : null,
      );
      let changed: InstanceRow[] = [];
      if (ids.length > 0) {
        const updated = await client.query<InstanceRow>(
          `UPDATE instances AS i SET
             status = CASE WHEN i.status = 'running' THEN 'failed' ELSE i.status END,
             error = CASE WHEN i.status = 'running' THEN u.error ELSE i.error END,
             args = CASE WHEN i.status = 'running' THEN NULL ELSE i.args END,
             finished_at = CASE WHEN i.status = 'running' THEN $4::int8 ELSE i.finished_at END,
             owner = CASE WHEN i.status = 'pending' THEN '' ELSE i.owner END,
             revision = i.revision + 1,
             sequence = u.sequence
           FROM unnest($1::text[], $2::int8[], $3::text[]) AS u(id, sequence, error) WHERE i.id = u.id
           RETURNING ${instanceColumnList("i")}`,
          [ids, sequences, rowErrors, Date.now()],
        );
        changed = updated.rows;
      }
      await client.query("DELETE FROM daemons WHERE owner = ANY($1::text[])", [owners]);
      if (ids.length > 0) {
        const freed = held.rows.some((row) => row.status === "pending");
        await finishWrite(
          client,
          { sequence: counters.sequence + ids.length, position: counters.position },
          freed,
        );
      }
      return changed.map(toInstance).sort((a, b) => a.sequence - b.sequence);
    });
  }

  async publish(event: ClusterEvent): Promise<void> {
    this.#checkOpen();
    const payload = encodeEvent(event);
    await this.#query("SELECT pg_notify($1, $2)", [CHANNEL, payload]);
  }

  /**
   * Listens on a dedicated connection (opened with the first subscriber, closed with the last).
   * Whenever that connection starts listening (the first time, and after every reconnect: it
   * reconnects with backoff when the connection drops), listeners get `{ kind: "changed",
   * sequence: currentSequence }` and `{ kind: "pending" }`, so nothing published while it was
   * not listening is missed.
   */
  subscribe(listener: (event: ClusterEvent) => void): () => void {
    this.#checkOpen();
    this.#events.add(listener);
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      this.#events.remove(listener);
    };
  }

  /** Resolves once the event connection is listening (there must be a subscriber). For tests. */
  listening(): Promise<void> {
    this.#checkOpen();
    return this.#events.listening();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#events.close();
      await this.#pool.end();
    })();
    return this.#closing;
  }

  #checkOpen(): void {
    if (this.#closing !== undefined) throw new Error(`the task store ${this.label} is closed`);
  }

  async #query<R extends QueryResultRow = QueryResultRow>(sql: string, params?: unknown[]): Promise<R[]> {
    this.#checkOpen();
    try {
      const result = await this.#pool.query<R>(sql, params);
      return result.rows;
    } catch (error) {
      throw storeError(this.label, error);
    }
  }

  /**
   * Runs `body` in a transaction holding the write lock, with the counters as of the lock.
   * `body` updates the counters (through {@link finishWrite}) when it assigned sequences.
   */
  async #write<T>(body: (client: PoolClient, counters: Counters) => Promise<T>): Promise<T> {
    this.#checkOpen();
    try {
      return await transaction(this.#pool, BEGIN_WRITE, async (client, begun) => {
        const row = (begun as unknown as Array<{ rows: Counters[] }>)[2]?.rows[0];
        if (row === undefined) throw new Error("the counters row is missing");
        return body(client, { sequence: row.sequence, position: row.position });
      });
    } catch (error) {
      if (error instanceof ReasonError) throw error.cause;
      throw storeError(this.label, error);
    }
  }
}

/**
 * Checks out a connection, runs `body` between `begin` (whose result it gets) and COMMIT, rolls
 * back when anything fails, and releases the connection (destroying it when it broke).
 */
async function transaction<T>(
  pool: Pool,
  begin: string,
  body: (client: PoolClient, begun: QueryResult) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  // pg-pool leaves a checked-out connection without an 'error' listener, so one that dies now
  // would crash the process. The failure reaches the pending query anyway; just remember it.
  let broken: Error | undefined;
  const onError = (error: Error): void => {
    broken = error;
  };
  client.on("error", onError);
  try {
    const begun = await client.query(begin);
    const value = await body(client, begun);
    await client.query("COMMIT");
    return value;
  } catch (error) {
    if (broken === undefined) {
      await client.query("ROLLBACK").catch((rollbackError: unknown) => {
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      });
    }
    throw error;
  } finally {
    client.off("error", onError);
    client.release(broken ?? false);
  }
}

/**
 * Connects to PostgreSQL at `url` (`postgres://` or `postgresql://`), creates or migrates the
 * schema (once, however many daemons start at once) and returns the store.
 */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresStore> {
  const label = describeUrl(url);
  const logger = options.logger;
  const config: ClientConfig = {
    connectionString: url,
    types: TYPES,
    keepAlive: true,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: "numerous-tasks",
  };
  const pool = new Pool({ ...config, max: POOL_SIZE, idleTimeoutMillis: 30_000 });
  // Without a listener, an idle connection that dies (the server restarting) would crash the process.
  pool.on("error", (error) => {
    logger?.warn(
      { store: label, err: errorMessage(error) },
      "an idle task store connection failed; it is replaced",
    );
  });
  try {
    await migrate(pool);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw new Error(`cannot open the task store ${label}: ${errorMessage(error)}`, { cause: error });
  }
  return new PostgresStore(pool, config, label, logger);
}

async function migrate(pool: Pool): Promise<void> {
  // Up to date (the usual case): no DDL, no lock, so a daemon needs no CREATE privilege.
  const known = await pool.query<{ present: string | null }>(
    "SELECT to_regclass('numerous_tasks_schema')::text AS present",
  );
  if (known.rows[0]?.present != null) {
    const current = await pool.query<{ version: number }>("SELECT version FROM numerous_tasks_schema");
    const version = current.rows[0]?.version ?? 0;
    checkVersion(version);
    if (version === MIGRATIONS.length) return;
  }
  await transaction(pool, "BEGIN ISOLATION LEVEL READ COMMITTED", async (client) => {
    await client.query("SELECT pg_advisory_xact_lock($1, $2)", [LOCK_NAMESPACE, LOCK_MIGRATE]);
    await client.query(
      `CREATE TABLE IF NOT EXISTS numerous_tasks_schema (
         singleton boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (singleton),
         version   integer NOT NULL
       )`,
    );
    const current = await client.query<{ version: number }>("SELECT version FROM numerous_tasks_schema");
    const version = current.rows[0]?.version ?? 0;
    checkVersion(version);
    for (let v = version; v < MIGRATIONS.length; v++) {
      try {
        await client.query(MIGRATIONS[v] as string);
      } catch (error) {
        throw new Error(`migrating the schema to version ${v + 1} failed: ${errorMessage(error)}`, {
          cause: error,
        });
      }
    }
    await client.query(
      `INSERT INTO numerous_tasks_schema (singleton, version) VALUES (true, $1)
       ON CONFLICT (singleton) DO UPDATE SET version = excluded.version`,
      [MIGRATIONS.length],
    );
  });
}

function checkVersion(version: number): void {
  if (version > MIGRATIONS.length) {
    throw new Error(
      `the database has schema version ${version}, but this numerous-tasks knows only up to ${MIGRATIONS.length}; upgrade numerous-tasks`,
    );
  }
}

/** Bumps the counters and queues the events, delivered when the transaction commits. */
async function finishWrite(client: PoolClient, counters: Counters, pending: boolean): Promise<void> {
  await client.query(
    `UPDATE counters SET sequence = $1, position = GREATEST(position, $2) WHERE singleton
     RETURNING pg_notify($3, $4), CASE WHEN $5 THEN pg_notify($3, $6) END`,
    [
      counters.sequence,
      counters.position,
      CHANNEL,
      encodeEvent({ kind: "changed", sequence: counters.sequence }),
      pending,
      encodeEvent({ kind: "pending" }),
    ],
  );
}

/** The rows as one array per column, in the order of {@link UPSERT_INSTANCES}'s parameters. */
function columnsOf(rows: readonly StoredInstance[]): unknown[][] {
  const columns: unknown[][] = INSTANCE_COLUMNS.map(() => new Array(rows.length));
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r] as StoredInstance;
    const values = instanceValues(row);
    for (let c = 0; c < values.length; c++) (columns[c] as unknown[])[r] = values[c];
  }
  return columns;
}

function encodeEvent(event: ClusterEvent): string {
  switch (event.kind) {
    case "changed":
      return JSON.stringify({ kind: "changed", sequence: event.sequence });
    case "pending":
      return JSON.stringify({ kind: "pending" });
    case "stop":
      return JSON.stringify({ kind: "stop", instanceId: event.instanceId, owner: event.owner });
    default:
      throw new Error(`unknown cluster event ${JSON.stringify(event)}`);
  }
}

function decodeEvent(payload: string): ClusterEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const event = value as Record<string, unknown>;
  if (event.kind === "changed" && typeof event.sequence === "number")
    return { kind: "changed", sequence: event.sequence };
  if (event.kind === "pending") return { kind: "pending" };
  if (event.kind === "stop" && typeof event.instanceId === "string" && typeof event.owner === "string") {
    return { kind: "stop", instanceId: event.instanceId, owner: event.owner };
  }
  return undefined;
}

/** `reason` threw: that error reaches the caller of `reap` as it is. */
class ReasonError extends Error {}

function callReason(reason: (owner: string) => TaskErrorInfo, owner: string): TaskErrorInfo {
  try {
    return reason(owner);
  } catch (error) {
    throw new ReasonError("reason threw", { cause: error });
  }
}

/** `postgres://user@host:port/db`: what error messages name; never the password. */
function describeUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error("the task store URL is not a URL; expected postgres://user:password@host:port/database");
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new Error(
      `the task store URL must start with postgres:// or postgresql:// (got ${parsed.protocol}//${parsed.host}...)`,
    );
  }
  const user = parsed.username === "" ? "" : `${decodeURIComponent(parsed.username)}@`;
  const host = parsed.host === "" ? "localhost" : parsed.host;
  return `${parsed.protocol}//${user}${host}${parsed.pathname === "/" ? "" : parsed.pathname}`;
}

function storeError(label: string, error: unknown): Error {
  const message = `task store ${label}: ${errorMessage(error)}`;
  const wrapped = isConnectionFailure(error)
    ? new StoreUnavailableError(message, { cause: error })
    : new Error(message, { cause: error });
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") Object.assign(wrapped, { code });
  return wrapped;
}

/** SQLSTATEs that mean the server cannot serve now: connection exceptions, shutting down, starting up, full. */
const UNAVAILABLE_STATES = /^(08|57P0[123]|53300|53400)/;
/** What node and pg say when a connection could not be made or was lost. */
const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ENOTFOUND",
]);
const UNAVAILABLE_MESSAGES =
  /Connection terminated|connection timeout|timeout exceeded when trying to connect|not queryable|Client was closed|the database system is (starting up|shutting down)/i;

/** Whether a failure says the server could not be reached (worth retrying), not that the request was wrong. */
function isConnectionFailure(error: unknown): boolean {
  if (error instanceof AggregateError) return error.errors.some(isConnectionFailure);
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && (UNAVAILABLE_STATES.test(code) || UNAVAILABLE_CODES.has(code))) return true;
  return UNAVAILABLE_MESSAGES.test(error.message);
}

/** A message that says something even for errors without one (a refused connection to several addresses). */
function errorMessage(error: unknown): string {
  if (error instanceof AggregateError && error.message === "") {
    return error.errors.map(errorMessage).join("; ") || "connection failed";
  }
  if (error instanceof Error) {
    if (error.message !== "") return error.message;
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" ? code : error.name;
  }
  return String(error);
}

/**
 * The LISTEN connection of one store, shared by its subscribers: connects on the first, ends
 * with the last, reconnects with backoff when the connection drops, and emits the catch-up
 * events each time it starts listening.
 */
class Listener {
  readonly #config: ClientConfig;
  readonly #label: string;
  readonly #logger: PostgresStoreLogger | undefined;
  readonly #listeners = new Set<(event: ClusterEvent) => void>();
  #client: Client | undefined;
  #active = false;
  #listening = false;
  #closed = false;
  #failures = 0;
  #retry: NodeJS.Timeout | undefined;
  #ping: NodeJS.Timeout | undefined;
  #waiters: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];

  constructor(config: ClientConfig, label: string, logger: PostgresStoreLogger | undefined) {
    this.#config = config;
    this.#label = label;
    this.#logger = logger;
  }

  add(listener: (event: ClusterEvent) => void): void {
    this.#listeners.add(listener);
    if (!this.#active) {
      this.#active = true;
      void this.#connect();
    }
  }

  remove(listener: (event: ClusterEvent) => void): void {
    this.#listeners.delete(listener);
    if (this.#listeners.size === 0) this.#stop();
  }

  listening(): Promise<void> {
    if (this.#listening) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#stop();
    const waiters = this.#waiters.splice(0);
    for (const waiter of waiters) waiter.reject(new Error(`the task store ${this.#label} is closed`));
  }

  #stop(): void {
    this.#active = false;
    this.#listening = false;
    this.#failures = 0;
    clearTimeout(this.#retry);
    clearInterval(this.#ping);
    this.#retry = undefined;
    this.#ping = undefined;
    const client = this.#client;
    this.#client = undefined;
    client?.end().catch(() => undefined);
  }

  async #connect(): Promise<void> {
    this.#retry = undefined;
    if (!this.#active || this.#closed) return;
    const client = new Client(this.#config);
    this.#client = client;
    client.on("error", (error) => this.#lost(client, error));
    client.on("end", () => this.#lost(client, new Error("the connection ended")));
    client.on("notification", (message) => {
      if (client !== this.#client || message.channel !== CHANNEL) return;
      const event = decodeEvent(message.payload ?? "");
      if (event === undefined) {
        this.#logger?.warn(
          { store: this.#label, payload: message.payload },
          "ignored a malformed task store event",
        );
        return;
      }
      this.#emit(event);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      // Read after LISTEN: whatever commits later is notified, whatever committed before is in this.
      const result = await client.query<{ sequence: number }>(
        "SELECT sequence FROM counters WHERE singleton",
      );
      if (client !== this.#client) return;
      if (this.#failures > 0) {
        this.#logger?.warn({ store: this.#label, attempts: this.#failures }, "task store events reconnected");
      }
      this.#failures = 0;
      this.#listening = true;
      clearInterval(this.#ping);
      this.#ping = setInterval(() => this.#checkAlive(client), PING_INTERVAL_MS);
      this.#ping.unref();
      for (const waiter of this.#waiters.splice(0)) waiter.resolve();
      this.#emit({ kind: "changed", sequence: result.rows[0]?.sequence ?? 0 });
      this.#emit({ kind: "pending" });
    } catch (error) {
      this.#lost(client, error);
    }
  }

  #checkAlive(client: Client): void {
    if (client !== this.#client) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
    });
    Promise.race([client.query("SELECT 1"), timeout])
      .catch((error: unknown) => this.#lost(client, error))
      .finally(() => clearTimeout(timer));
  }

  #lost(client: Client, error: unknown): void {
    if (client !== this.#client) return;
    this.#client = undefined;
    this.#listening = false;
    clearInterval(this.#ping);
    this.#ping = undefined;
    client.end().catch(() => undefined);
    if (!this.#active || this.#closed) return;
    this.#failures++;
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** (this.#failures - 1));
    const jittered = Math.round(delay * (0.75 + Math.random() * 0.5));
    // Once per outage, then every tenth attempt, so a long outage does not flood the log.
    if (this.#failures === 1 || this.#failures % 10 === 0) {
      this.#logger?.warn(
        { store: this.#label, err: errorMessage(error), attempt: this.#failures, retryInMs: jittered },
        "task store events disconnected; reconnecting",
      );
    }
    this.#retry = setTimeout(() => void this.#connect(), jittered);
  }

  #emit(event: ClusterEvent): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event);
      } catch (error) {
        this.#logger?.warn(
          { store: this.#label, err: errorMessage(error), event },
          "a task store event listener threw",
        );
      }
    }
  }
}
