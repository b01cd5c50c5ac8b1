import { type ClientConfig, Pool, type QueryResultRow, TypeOverrides } from "pg";
import type { TaskErrorInfo } from "../../../sdk/errors.js";
import type { ClaimedInstance, ClusterEvent, ClusterStore } from "../cluster-store.js";
import { type DefinitionRow, toDefinition } from "../definition-row.js";
import { type InstanceRow, toInstance } from "../instance-columns.js";
import { SCHEDULE_COLUMNS, scheduleValues, toSchedule } from "../schedule-row.js";
import type {
  FinishedCount,
  LogWrite,
  StoredDefinition,
  StoredInstance,
  StoredLogChunk,
  StoredSchedule,
  StoreListQuery,
} from "../store.js";
import type { TaskStatus } from "../../../sdk/task-status.js";
import type { DaemonLease } from "../cluster-store.js";

const SCHEDULE_LIST = SCHEDULE_COLUMNS.join(", ");
import { ClusterEventListener, encodeEvent } from "./cluster-event-listener.js";
import { readLogs, writeLogs } from "./logs.js";
import { migrate } from "./migrations.js";
import {
  CHANGES_SINCE,
  CHANGES_SINCE_ALL,
  CHANNEL,
  LIST_DEFINITIONS,
  listInstances,
  NOTIFY,
  REGISTER_LEASE,
  RENEW_LEASE,
  SELECT_BY_IDS,
  SELECT_COUNTERS,
  SELECT_FEED_OFFSET,
  SELECT_SEQUENCE,
  UNFINISHED,
} from "./statements.js";
import { prepared } from "./prepared.js";
import { describeUrl, errorMessage, storeError } from "./store-error.js";
import {
  cancelPendingRow,
  claimRows,
  deleteFinished,
  nextReadyAt,
  reapExpired,
  type SaveClaim,
  type SavedRows,
  requestStop,
  saveRows,
  startableRows,
  stopsRequested,
  type WriteTarget,
} from "./writes.js";

/** Where {@link PostgresStore} reports what it recovers from by itself. */
export interface PostgresStoreLogger {
  warn(obj: object, msg: string): void;
}

export interface PostgresStoreOptions {
  readonly logger?: PostgresStoreLogger | undefined;
}

const POOL_SIZE = 10;
/** Connections for the writes that need not wait for the disk (progress, output, starts). */
const LAZY_POOL_SIZE = 3;
const CONNECT_TIMEOUT_MS = 10_000;
const ID_CHUNK = 10_000;

/** bigint columns arrive as numbers (all of ours stay far below 2^53). */
const TYPES = new TypeOverrides();
TYPES.setTypeParser(20, "text", (value: string) => Number(value));

/**
 * The store that several daemons share: a PostgreSQL database. No write takes a cluster-wide
 * lock: a row's sequence is its writing transaction's id (plus the database's feed offset), and
 * the change feed reads only below the oldest transaction still running, so a reader never skips
 * a change; positions come from a database sequence; claims use row locks with SKIP LOCKED;
 * leases are judged by the database clock; events travel by LISTEN/NOTIFY. The SQL is in
 * `statements.ts`, the writes in `writes.ts`.
 */
export class PostgresStore implements ClusterStore {
  readonly shared = true as const;
  /** The URL without its password, e.g. `postgres://daemon@db.internal:5432/tasks`. */
  readonly label: string;
  readonly #pool: Pool;
  readonly #lazyPool: Pool;
  /** Added to transaction ids to make sequences (see migration 2); fixed per database. */
  readonly #offset: number;
  readonly #target: WriteTarget;
  readonly #events: ClusterEventListener;
  /** Owners that heartbeated through this store: a missing lease row then means reaped. */
  readonly #heartbeated = new Set<string>();
  #closing: Promise<void> | undefined;

  /** Use {@link openPostgresStore}; this takes a pool on an already migrated database. */
  constructor(pool: Pool, config: ClientConfig, label: string, offset: number, logger?: PostgresStoreLogger) {
    this.#pool = pool;
    this.label = label;
    this.#offset = offset;
    // Batches of progress, output and starts are committed without waiting for the WAL flush
    // (see `saveRows`), on connections of their own.
    this.#lazyPool = new Pool({
      ...config,
      options: "-c synchronous_commit=off",
      max: LAZY_POOL_SIZE,
      idleTimeoutMillis: 30_000,
    });
    this.#lazyPool.on("error", (error) => {
      logger?.warn(
        { store: label, err: errorMessage(error) },
        "an idle task store connection failed; it is replaced",
      );
    });
    this.#target = { pool, lazyPool: this.#lazyPool, offset, label };
    this.#events = new ClusterEventListener(config, label, offset, logger);
  }

  /** The final sequence ({@link currentSequence}) and the highest position stored. */
  async counters(): Promise<{ sequence: number; position: number }> {
    const rows = await this.#query<{ sequence: number; position: number }>(SELECT_COUNTERS, [this.#offset]);
    return { sequence: rows[0]?.sequence ?? 0, position: rows[0]?.position ?? 0 };
  }

  /**
   * Every row with a sequence at or below this is final: the transactions that wrote it have
   * ended, and no later write gets a sequence this low.
   */
  async currentSequence(): Promise<number> {
    const rows = await this.#query<{ sequence: number }>(SELECT_SEQUENCE, [this.#offset]);
    return rows[0]?.sequence ?? 0;
  }

  async save(rows: readonly StoredInstance[], definitions: readonly StoredDefinition[] = []): Promise<void> {
    await this.saveAssigned(rows, definitions);
  }

  /**
   * Upserts the rows (one entry per id: of repeated ids the last wins), all with the sequence of
   * this one transaction, and the next positions for rows given with position 0 (a row that
   * already exists keeps its position), plus the definitions: one statement, no lock but the
   * rows'. Notifies `changed` and, when a saved row is pending and unowned, `pending` (delivered
   * at commit).
   */
  async saveAssigned(
    rows: readonly StoredInstance[],
    definitions: readonly StoredDefinition[] = [],
  ): Promise<StoredInstance[]> {
    this.#checkOpen();
    const unique = [...new Map(rows.map((row) => [row.id, row])).values()];
    const defs = [...new Map(definitions.map((d) => [`${d.deploymentId}\0${d.name}`, d])).values()];
    if (unique.length === 0 && defs.length === 0) return [];
    return (await saveRows(this.#target, unique, defs)).stored;
  }

  /**
   * As {@link saveAssigned}, as daemon `claim.owner`'s write (its `changed` event names it), and
   * in the same transaction claims for it up to `claim.limit` ready pending rows of tasks without
   * a concurrency limit.
   */
  async saveAndClaim(
    rows: readonly StoredInstance[],
    definitions: readonly StoredDefinition[],
    claim: SaveClaim,
  ): Promise<SavedRows> {
    this.#checkOpen();
    const unique = [...new Map(rows.map((row) => [row.id, row])).values()];
    const defs = [...new Map(definitions.map((d) => [`${d.deploymentId}\0${d.name}`, d])).values()];
    return saveRows(this.#target, unique, defs, claim);
  }

  async getMany(ids: readonly string[]): Promise<StoredInstance[]> {
    this.#checkOpen();
    const unique = [...new Set(ids)];
    const found = new Map<string, StoredInstance>();
    for (let i = 0; i < unique.length; i += ID_CHUNK) {
      const rows = await this.#query<InstanceRow>(SELECT_BY_IDS, [unique.slice(i, i + ID_CHUNK)]);
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

  async list(query: StoreListQuery): Promise<StoredInstance[]> {
    this.#checkOpen();
    const limit = Math.floor(query.limit);
    // An empty status list matches nothing, as in the local executor.
    if (!(limit > 0) || query.statuses?.length === 0) return [];
    const { text, values } = listInstances(query, limit);
    return (await this.#query<InstanceRow>(text, values)).map(toInstance);
  }

  async changesSince(deploymentId: string, afterSequence: number, limit: number): Promise<StoredInstance[]> {
    this.#checkOpen();
    const n = Math.floor(limit);
    if (!(n > 0)) return [];
    const rows = await this.#query<InstanceRow>(CHANGES_SINCE, [
      deploymentId,
      afterSequence,
      n,
      this.#offset,
    ]);
    return rows.map(toInstance);
  }

  async changesSinceAll(afterSequence: number, limit: number): Promise<StoredInstance[]> {
    this.#checkOpen();
    const n = Math.floor(limit);
    if (!(n > 0)) return [];
    return (await this.#query<InstanceRow>(CHANGES_SINCE_ALL, [afterSequence, n, this.#offset])).map(
      toInstance,
    );
  }

  async unfinished(): Promise<StoredInstance[]> {
    return (await this.#query<InstanceRow>(UNFINISHED)).map(toInstance);
  }

  async statusCounts(deploymentId: string): Promise<Partial<Record<TaskStatus, number>>> {
    const rows = await this.#query<{ status: TaskStatus; n: string }>(
      "SELECT status, count(*) AS n FROM instances WHERE deployment_id = $1 GROUP BY status",
      [deploymentId],
    );
    return Object.fromEntries(rows.map((row) => [row.status, Number(row.n)]));
  }

  async finishedPerMinute(deploymentId: string, since: number): Promise<FinishedCount[]> {
    const rows = await this.#query<{ minute: string; status: TaskStatus; n: string }>(
      `SELECT (finished_at / 60000) * 60000 AS minute, status, count(*) AS n FROM instances
         WHERE finished_at >= $1 AND deployment_id = $2 GROUP BY 1, 2 ORDER BY 1`,
      [since, deploymentId],
    );
    return rows.map((row) => ({ minute: Number(row.minute), status: row.status, count: Number(row.n) }));
  }

  async daemons(): Promise<DaemonLease[]> {
    // The IN repeats the condition of the open rows' partial index (owner, position), so the
    // count per daemon reads that index rather than the table.
    const rows = await this.#query<{ owner: string; lease_until: Date; running: string }>(
      `SELECT d.owner, d.lease_until,
         (SELECT count(*) FROM instances i WHERE i.owner = d.owner AND i.status IN ('pending', 'running')
            AND i.status = 'running') AS running
       FROM daemons d ORDER BY d.owner`,
    );
    return rows.map((row) => ({
      owner: row.owner,
      leaseUntil: new Date(row.lease_until).getTime(),
      running: Number(row.running),
    }));
  }

  async listDefinitions(deploymentId: string): Promise<StoredDefinition[]> {
    return (await this.#query<DefinitionRow>(LIST_DEFINITIONS, [deploymentId])).map(toDefinition);
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
      await this.#query(REGISTER_LEASE, [owner, lease]);
      this.#heartbeated.add(owner);
      return true;
    }
    const renewed = await this.#query(RENEW_LEASE, [owner, lease]);
    return renewed.length > 0;
  }

  async claim(owner: string, limit: number): Promise<ClaimedInstance[]> {
    this.#checkOpen();
    const n = Math.floor(limit);
    if (!(n > 0)) return [];
    return claimRows(this.#target, owner, n);
  }

  async requestStop(id: string): Promise<{ owner: string; status: string } | undefined> {
    this.#checkOpen();
    return requestStop(this.#target, id);
  }

  async stopsRequested(owner: string): Promise<string[]> {
    this.#checkOpen();
    return stopsRequested(this.#target, owner);
  }

  async startable(owner: string, ids: readonly string[]): Promise<{ id: string; stopRequested: boolean }[]> {
    this.#checkOpen();
    if (ids.length === 0) return [];
    return startableRows(this.#target, owner, ids);
  }

  /** Pending and unowned → cancelled (args, result and error cleared, finishedAt now), with a new sequence. */
  async cancelPending(id: string): Promise<StoredInstance | undefined> {
    this.#checkOpen();
    return cancelPendingRow(this.#target, id);
  }

  /**
   * For every daemon whose lease ran out by the database clock: its running rows become failed
   * with `reason(owner)` (args dropped, finishedAt now), its pending rows unowned, each with a
   * new revision and sequence; its lease row is deleted. Notifies `changed`, and `pending` when
   * rows were freed. A renewal that commits first wins: that daemon is not reaped.
   */
  async reap(reason: (owner: string) => TaskErrorInfo): Promise<StoredInstance[]> {
    this.#checkOpen();
    return reapExpired(this.#target, reason);
  }

  async listSchedules(deploymentId?: string): Promise<StoredSchedule[]> {
    const rows =
      deploymentId === undefined
        ? await this.#query(`SELECT ${SCHEDULE_LIST} FROM schedules ORDER BY deployment_id, name`)
        : await this.#query(`SELECT ${SCHEDULE_LIST} FROM schedules WHERE deployment_id = $1 ORDER BY name`, [
            deploymentId,
          ]);
    return rows.map(toSchedule);
  }

  async getSchedule(deploymentId: string, name: string): Promise<StoredSchedule | undefined> {
    const rows = await this.#query(
      `SELECT ${SCHEDULE_LIST} FROM schedules WHERE deployment_id = $1 AND name = $2`,
      [deploymentId, name],
    );
    return rows[0] === undefined ? undefined : toSchedule(rows[0]);
  }

  async putSchedule(schedule: StoredSchedule): Promise<void> {
    await this.#query(
      `INSERT INTO schedules (${SCHEDULE_LIST}) VALUES (${SCHEDULE_COLUMNS.map((_, i) => `$${i + 1}`).join(", ")})
       ON CONFLICT (deployment_id, name) DO UPDATE SET ${SCHEDULE_COLUMNS.slice(2)
         .map((column) => `${column} = excluded.${column}`)
         .join(", ")}`,
      scheduleValues(schedule),
    );
  }

  async deleteSchedule(deploymentId: string, name: string): Promise<boolean> {
    const rows = await this.#query(
      "DELETE FROM schedules WHERE deployment_id = $1 AND name = $2 RETURNING name",
      [deploymentId, name],
    );
    return rows.length > 0;
  }

  async advanceSchedule(
    deploymentId: string,
    name: string,
    expectedHandledThrough: number,
    next: { handledThrough: number; lastFiredAt: number | undefined; lastInstanceId: string | undefined },
  ): Promise<boolean> {
    const rows = await this.#query(
      `UPDATE schedules SET handled_through = $1, last_fired_at = $2, last_instance_id = $3
       WHERE deployment_id = $4 AND name = $5 AND handled_through = $6 RETURNING name`,
      [
        next.handledThrough,
        next.lastFiredAt ?? null,
        next.lastInstanceId ?? null,
        deploymentId,
        name,
        expectedHandledThrough,
      ],
    );
    return rows.length > 0;
  }

  async nextReadyAt(): Promise<number | undefined> {
    this.#checkOpen();
    return nextReadyAt(this.#target);
  }

  async deleteFinished(before: number, limit: number): Promise<number> {
    this.#checkOpen();
    return deleteFinished(this.#target, before, limit);
  }

  async writeLogs(write: LogWrite): Promise<number[]> {
    this.#checkOpen();
    return writeLogs(this.#target, write);
  }

  async readLogs(instanceId: string, after: number, limit: number): Promise<StoredLogChunk[]> {
    this.#checkOpen();
    return readLogs(this.#target, instanceId, after, limit, "forward");
  }

  async readLogsBackward(instanceId: string, before: number, limit: number): Promise<StoredLogChunk[]> {
    this.#checkOpen();
    return readLogs(this.#target, instanceId, before, limit, "backward");
  }

  async publish(event: ClusterEvent): Promise<void> {
    this.#checkOpen();
    await this.#query(NOTIFY, [CHANNEL, encodeEvent(event)]);
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
      await Promise.all([this.#pool.end(), this.#lazyPool.end()]);
    })();
    return this.#closing;
  }

  #checkOpen(): void {
    if (this.#closing !== undefined) throw new Error(`the task store ${this.label} is closed`);
  }

  async #query<R extends QueryResultRow = QueryResultRow>(sql: string, params?: unknown[]): Promise<R[]> {
    this.#checkOpen();
    try {
      const result = await this.#pool.query<R>(prepared(sql, params));
      return result.rows;
    } catch (error) {
      throw storeError(this.label, error);
    }
  }
}

/**
 * Connects to PostgreSQL at `url` (`postgres://` or `postgresql://`), creates or migrates the
 * schema (once, however many daemons start at once) and returns the store.
 * @throws {Error} naming the store (never its password) when the URL is not a PostgreSQL one, the
 *   database cannot be reached, or its schema is newer than this version knows.
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
  let offset: number;
  try {
    await migrate(pool);
    const found = await pool.query<{ value: number }>(SELECT_FEED_OFFSET);
    offset = found.rows[0]?.value ?? 0;
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw new Error(`cannot open the task store ${label}: ${errorMessage(error)}`, { cause: error });
  }
  return new PostgresStore(pool, config, label, offset, logger);
}
