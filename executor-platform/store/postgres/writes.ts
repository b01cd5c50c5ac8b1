/**
 * The PostgreSQL store's writes that assign sequences: each runs in one transaction under the
 * write lock ({@link writeTransaction}), so commit order is sequence order, and ends with
 * {@link finishWrite}, which moves the counters and queues the events.
 */
import type { Pool, PoolClient } from "pg";
import type { TaskErrorInfo } from "../../../sdk/errors.js";
import type { ClusterEvent } from "../cluster-store.js";
import { INSTANCE_COLUMNS, type InstanceRow, instanceValues, toInstance } from "../instance-columns.js";
import type { StoredDefinition, StoredInstance } from "../store.js";
import { encodeEvent } from "./cluster-event-listener.js";
import {
  BEGIN_WRITE,
  CANCEL_PENDING,
  CHANNEL,
  CLAIM,
  DELETE_LEASES,
  FINISH_WRITE,
  LOCK_EXPIRED,
  LOCK_HELD,
  PICK_CLAIMABLE,
  REAP,
  SELECT_POSITIONS,
  UPSERT_DEFINITIONS,
  UPSERT_INSTANCES,
} from "./statements.js";
import { storeError } from "./store-error.js";
import { transaction } from "./transaction.js";

/** Rows per upsert statement (arrays through unnest: no bound-parameter limit, just memory). */
const UPSERT_CHUNK = 5_000;

/** The highest sequence and position handed out. */
export interface Counters {
  readonly sequence: number;
  readonly position: number;
}

/**
 * Runs `body` in a transaction holding the write lock, with the counters as of the lock.
 * `body` updates the counters (through {@link finishWrite}) when it assigned sequences.
 * Errors reach the caller as {@link storeError}s naming `label`, except what a caller's
 * `reason` threw in {@link reapExpired}, which passes as it is.
 */
export async function writeTransaction<T>(
  pool: Pool,
  label: string,
  body: (client: PoolClient, counters: Counters) => Promise<T>,
): Promise<T> {
  try {
    return await transaction(pool, BEGIN_WRITE, async (client, begun) => {
      // BEGIN_WRITE is three statements: the counters are the third one's row.
      const row = (begun as unknown as Array<{ rows: Counters[] }>)[2]?.rows[0];
      if (row === undefined) throw new Error("the counters row is missing");
      return body(client, { sequence: row.sequence, position: row.position });
    });
  } catch (error) {
    if (error instanceof ReasonError) throw error.cause;
    throw storeError(label, error);
  }
}

/**
 * Upserts `rows` (unique ids) with sequences `counters.sequence + 1 ...` in order, and positions
 * after `counters.position` for rows given with position 0 (a row that already exists keeps its
 * position), plus `definitions` (unique by deployment and name). Resolves the rows as stored.
 */
export async function saveRows(
  client: PoolClient,
  counters: Counters,
  rows: readonly StoredInstance[],
  definitions: readonly StoredDefinition[],
): Promise<StoredInstance[]> {
  const fresh = rows.filter((row) => row.position === 0).map((row) => row.id);
  const existing = new Map<string, number>();
  if (fresh.length > 0) {
    const found = await client.query<{ id: string; position: number }>(SELECT_POSITIONS, [fresh]);
    for (const row of found.rows) existing.set(row.id, row.position);
  }
  let sequence = counters.sequence;
  let position = counters.position;
  let pending = false;
  const stored = rows.map((row): StoredInstance => {
    let rowPosition = row.position;
    if (rowPosition === 0) rowPosition = existing.get(row.id) ?? ++position;
    else if (rowPosition > position) position = rowPosition;
    if (row.status === "pending" && row.owner === "") pending = true;
    return { ...row, sequence: ++sequence, position: rowPosition };
  });
  for (let i = 0; i < stored.length; i += UPSERT_CHUNK) {
    await client.query(UPSERT_INSTANCES, columnsOf(stored.slice(i, i + UPSERT_CHUNK)));
  }
  if (definitions.length > 0) {
    await client.query(UPSERT_DEFINITIONS, [
      definitions.map((d) => d.deploymentId),
      definitions.map((d) => d.id),
      definitions.map((d) => d.name),
      definitions.map((d) => d.module),
    ]);
  }
  if (stored.length > 0) await finishWrite(client, { sequence, position }, pending);
  return stored;
}

/** Gives up to `limit` unowned pending rows, in creation order, to `owner`; resolves them by sequence. */
export async function claimRows(
  client: PoolClient,
  counters: Counters,
  owner: string,
  limit: number,
): Promise<StoredInstance[]> {
  const picked = await client.query<{ id: string }>(PICK_CLAIMABLE, [limit]);
  if (picked.rows.length === 0) return [];
  const ids = picked.rows.map((row) => row.id);
  const sequences = ids.map((_, i) => counters.sequence + i + 1);
  const claimed = await client.query<InstanceRow>(CLAIM, [owner, ids, sequences]);
  await finishWrite(client, { sequence: counters.sequence + ids.length, position: counters.position }, false);
  return claimed.rows.map(toInstance).sort((a, b) => a.sequence - b.sequence);
}

/** Cancels row `id` if it is pending and unowned; resolves it as stored, or undefined. */
export async function cancelPendingRow(
  client: PoolClient,
  counters: Counters,
  id: string,
): Promise<StoredInstance | undefined> {
  const sequence = counters.sequence + 1;
  const cancelled = await client.query<InstanceRow>(CANCEL_PENDING, [id, Date.now(), sequence]);
  const row = cancelled.rows[0];
  if (row === undefined) return undefined;
  await finishWrite(client, { sequence, position: counters.position }, false);
  return toInstance(row);
}

/**
 * Ends the work of every daemon whose lease ran out by the database clock: its running rows fail
 * with `reason(owner)`, its pending rows lose their owner, its lease row goes. Resolves the
 * changed rows by sequence.
 */
export async function reapExpired(
  client: PoolClient,
  counters: Counters,
  reason: (owner: string) => TaskErrorInfo,
): Promise<StoredInstance[]> {
  // Checked again under the lock: a renewal that committed first wins.
  const dead = await client.query<{ owner: string }>(LOCK_EXPIRED);
  const owners = dead.rows.map((row) => row.owner);
  if (owners.length === 0) return [];
  const held = await client.query<{ id: string; owner: string; status: string }>(LOCK_HELD, [owners]);
  const errors = new Map<string, string>();
  for (const owner of owners) errors.set(owner, JSON.stringify(callReason(reason, owner)));
  const ids = held.rows.map((row) => row.id);
  const sequences = ids.map((_, i) => counters.sequence + i + 1);
  const rowErrors = held.rows.map((row) =>
    row.status === "running" ? (errors.get(row.owner) ?? null) : null,
  );
  let changed: InstanceRow[] = [];
  if (ids.length > 0) {
    const updated = await client.query<InstanceRow>(REAP, [ids, sequences, rowErrors, Date.now()]);
    changed = updated.rows;
  }
  await client.query(DELETE_LEASES, [owners]);
  if (ids.length > 0) {
    const freed = held.rows.some((row) => row.status === "pending");
    await finishWrite(
      client,
      { sequence: counters.sequence + ids.length, position: counters.position },
      freed,
    );
  }
  return changed.map(toInstance).sort((a, b) => a.sequence - b.sequence);
}

/** Moves the counters and queues `changed` (and `pending` when `pending`), delivered at commit. */
async function finishWrite(client: PoolClient, counters: Counters, pending: boolean): Promise<void> {
  const changed: ClusterEvent = { kind: "changed", sequence: counters.sequence };
  await client.query(FINISH_WRITE, [
    counters.sequence,
    counters.position,
    CHANNEL,
    encodeEvent(changed),
    pending,
    encodeEvent({ kind: "pending" }),
  ]);
}

/** The rows as one array per column, in the order of {@link UPSERT_INSTANCES}'s parameters. */
function columnsOf(rows: readonly StoredInstance[]): unknown[][] {
  const columns: unknown[][] = INSTANCE_COLUMNS.map(() => new Array(rows.length));
  for (let r = 0; r < rows.length; r++) {
    const values = instanceValues(rows[r] as StoredInstance);
    for (let c = 0; c < values.length; c++) (columns[c] as unknown[])[r] = values[c];
  }
  return columns;
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
