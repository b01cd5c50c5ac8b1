/**
 * The PostgreSQL store's writes. None takes a cluster-wide lock: each is one statement (so one
 * transaction, waiting only on the rows it writes) that stamps its rows with its transaction's
 * sequence and queues its events, which PostgreSQL delivers at commit. Only a save of more rows
 * than one statement takes spans several statements, in one transaction.
 */
import type { Pool } from "pg";
import type { TaskErrorInfo } from "../../../sdk/errors.js";
import { isTerminalStatus } from "../../../sdk/task-status.js";
import { INSTANCE_COLUMNS, type InstanceRow, instanceValues, toInstance } from "../instance-columns.js";
import type { ClaimedInstance } from "../cluster-store.js";
import type { StoredDefinition, StoredInstance } from "../store.js";
import { encodeEvent } from "./cluster-event-listener.js";
import {
  CANCEL_PENDING,
  CHANNEL,
  CLAIM,
  DELETE_FINISHED,
  NEXT_READY,
  REAP,
  REQUEST_STOP,
  SAVE,
  SELECT_BY_IDS,
  SELECT_EXPIRED,
  STARTABLE,
  STOPS_REQUESTED,
} from "./statements.js";
import { prepared } from "./prepared.js";
import { storeError } from "./store-error.js";
import { transaction } from "./transaction.js";

/** Rows per save statement (arrays through unnest: no bound-parameter limit, just memory). */
const UPSERT_CHUNK = 5_000;

const PENDING = encodeEvent({ kind: "pending" });
/** The most JSON a `changed` event carries rows in (NOTIFY payloads end at 8,000 bytes). */
const PUSH_MAX_CHARS = 7_000;

/** Where a write goes: the pool, the feed offset of its database, and the store's label for errors. */
export interface WriteTarget {
  readonly pool: Pool;
  /** Connections with `synchronous_commit` off, for the saves that promise nothing (see {@link saveRows}). */
  readonly lazyPool?: Pool;
  readonly offset: number;
  readonly label: string;
}

/** What a save claimed in the same statement (see {@link saveRows}). */
export interface SaveClaim {
  /** The daemon saving: its `changed` event names it, and it is the owner of what it claims. */
  readonly owner: string;
  /** Claims at most this many rows; 0 for none. */
  readonly limit: number;
}

/** The rows as stored, and what the save claimed. */
export interface SavedRows {
  readonly stored: StoredInstance[];
  /** Claimed rows, highest priority first, then by position. */
  readonly claimed: ClaimedInstance[];
  /** Whether a ready, unowned pending row of a task with a concurrency limit waits (looked for only with a claim). */
  readonly limitedWaiting: boolean;
  /** Saved rows, not ended, whose stop was asked for (`requestStop`): their owner must stop them. */
  readonly stopsRequested: string[];
  /** Changed rows not saved: the saving daemon's lease was reaped, so it was presumed dead. */
  readonly fenced: string[];
}

/**
 * Upserts `rows` (unique ids) with this transaction's sequence, and the next positions for rows
 * given with position 0 (a row that already exists keeps its position), plus `definitions`
 * (unique by deployment and name). With `claim`, names the saving daemon in the `changed` event
 * and, in the same statement, claims for it up to `claim.limit` ready pending rows without a
 * concurrency limit (none when the rows take more than one statement). Resolves the rows as
 * stored, in the given order, and the claimed ones.
 */
export async function saveRows(
  target: WriteTarget,
  rows: readonly StoredInstance[],
  definitions: readonly StoredDefinition[],
  claim?: SaveClaim,
): Promise<SavedRows> {
  const chunks: Array<readonly StoredInstance[]> = [];
  for (let i = 0; i < rows.length; i += UPSERT_CHUNK) chunks.push(rows.slice(i, i + UPSERT_CHUNK));
  if (chunks.length === 0) chunks.push([]);
  const now = Date.now();
  const claimLimit = chunks.length === 1 ? Math.max(0, Math.floor(claim?.limit ?? 0)) : 0;
  const params = (chunk: readonly StoredInstance[], i: number): unknown[] => [
    ...columnsOf(chunk),
    target.offset,
    chunk.filter((row) => row.position === 0).map((row) => row.id),
    ...definitionColumns(i === 0 ? definitions : []),
    CHANNEL,
    chunk.some((row) => (row.status === "pending" && row.owner === "") || freesLimitedSlot(row)),
    pendingPayload(chunk),
    claim?.owner ?? null,
    claimLimit,
    now,
    claim === undefined || claimLimit > 0 || chunks.length > 1 ? null : pushedRows(chunk),
  ];
  // What a user was promised waits for the disk: a new instance, an end, a definition, and a
  // row given back to the store (a retry's next attempt, which any daemon may claim). Progress,
  // output and starts of rows this daemon holds are committed without waiting for the WAL flush:
  // the next commit that waits flushes them too, and only a crash of PostgreSQL's machine can
  // lose the last of them, never a result. (The embedded SQLite store does the same.)
  const pool =
    target.lazyPool !== undefined &&
    definitions.length === 0 &&
    !rows.some((row) => row.revision === 1 || isTerminalStatus(row.status) || row.owner === "")
      ? target.lazyPool
      : target.pool;
  const assigned = new Map<string, { sequence: number; position: number }>();
  const claimed: ClaimedInstance[] = [];
  let limitedWaiting = false;
  const stopped = new Set<string>();
  const keep = (result: { rows: SaveResultRow[] }): void => {
    for (const row of result.rows) {
      if (row.limited_waiting === true) limitedWaiting = true;
      if (row.claimed) claimed.push(toClaimed(row));
      else {
        assigned.set(row.id, { sequence: row.sequence, position: row.position });
        if (row.stop_requested === true) stopped.add(row.id);
      }
    }
  };
  try {
    if (chunks.length === 1)
      keep(await pool.query<SaveResultRow>(prepared(SAVE, params(chunks[0] as StoredInstance[], 0))));
    else {
      // Too many rows for one statement: one transaction, so one sequence and one commit.
      await transaction(pool, "BEGIN ISOLATION LEVEL READ COMMITTED", async (client) => {
        for (const [i, chunk] of chunks.entries())
          keep(await client.query<SaveResultRow>(prepared(SAVE, params(chunk, i))));
      });
    }
  } catch (error) {
    throw storeError(target.label, error);
  }
  // A new row whose id existed (another daemon created it first: one idempotency key) was left
  // alone: what is stored is the answer.
  const kept = rows.filter((row) => !assigned.has(row.id) && row.revision === 1).map((row) => row.id);
  const existing = new Map<string, StoredInstance>();
  if (kept.length > 0) {
    for (const row of await run(target, SELECT_BY_IDS, [kept])) {
      const instance = toInstance(row);
      existing.set(instance.id, instance);
    }
  }
  // A change the store refused: the saving daemon's lease was reaped (it was presumed dead).
  const fenced = rows.filter((row) => row.revision > 1 && !assigned.has(row.id)).map((row) => row.id);
  const stored = rows.flatMap((row): StoredInstance[] => {
    const found = existing.get(row.id);
    if (found !== undefined) return [found];
    const saved = assigned.get(row.id);
    if (saved === undefined) {
      if (claim !== undefined && row.revision > 1) return [];
      throw storeError(target.label, new Error(`row ${row.id} was not saved`));
    }
    return [{ ...row, sequence: saved.sequence, position: saved.position }];
  });
  claimed.sort((a, b) => b.priority - a.priority || a.position - b.position);
  const stopsRequested = stored
    .filter((row) => stopped.has(row.id) && !isTerminalStatus(row.status))
    .map((row) => row.id);
  return { stored, claimed, limitedWaiting, stopsRequested, fenced: claim === undefined ? [] : fenced };
}

/** A row of {@link SAVE}'s answer: a saved row's id, sequence and position, or a claimed row whole. */
type SaveResultRow = InstanceRow & {
  id: string;
  sequence: number;
  position: number;
  claimed: boolean;
  limited_waiting: boolean | null;
  stop_requested: boolean | null;
};

/**
 * The rows of a save as its `changed` event carries them, so that the other daemons pass them on
 * without reading them back: only when they are all the transaction's rows (no claim), none is
 * new (its position is the store's to give), and they fit well within a NOTIFY payload's 8,000
 * bytes. Null otherwise: the daemons read them.
 */
function pushedRows(rows: readonly StoredInstance[]): string | null {
  if (rows.length === 0 || rows.some((row) => row.revision === 1 || row.position === 0)) return null;
  const json = JSON.stringify(rows);
  return json.length <= PUSH_MAX_CHARS && Buffer.byteLength(json) <= PUSH_MAX_CHARS ? json : null;
}

/**
 * An ended instance of a task with a concurrency limit: its slot is free once this commits, and
 * a daemon that found the limit full must hear of it to claim what waited.
 */
function freesLimitedSlot(row: StoredInstance): boolean {
  return isTerminalStatus(row.status) && (row.concurrencyLimit > 0 || row.perKeyLimit > 0);
}

/** The `pending` event of a save: with `at` when its pending rows all wait for a later time. */
function pendingPayload(rows: readonly StoredInstance[]): string {
  const now = Date.now();
  let at = Number.POSITIVE_INFINITY;
  for (const row of rows) {
    if (freesLimitedSlot(row)) return PENDING;
    if (row.status !== "pending" || row.owner !== "") continue;
    if (row.readyAt <= now) return PENDING;
    at = Math.min(at, row.readyAt);
  }
  return Number.isFinite(at) ? encodeEvent({ kind: "pending", at }) : PENDING;
}

/** The earliest time after now at which an unowned pending row becomes ready. */
export async function nextReadyAt(target: WriteTarget): Promise<number | undefined> {
  const rows = await run(target, NEXT_READY, [Date.now()]);
  const at = rows[0]?.at;
  return at === null || at === undefined ? undefined : Number(at);
}

/** Deletes up to `limit` rows that finished before `before`; resolves how many. */
export async function deleteFinished(target: WriteTarget, before: number, limit: number): Promise<number> {
  const rows = await run(target, DELETE_FINISHED, [before, limit]);
  return Number(rows[0]?.deleted ?? 0);
}

/** Gives up to `limit` unowned pending rows, in creation order, to `owner`; resolves them by position. */
export async function claimRows(
  target: WriteTarget,
  owner: string,
  limit: number,
): Promise<ClaimedInstance[]> {
  return (await run(target, CLAIM, [owner, limit, target.offset, CHANNEL, Date.now()])).map(toClaimed);
}

/** A claimed row as stored, marked when its stop was asked for. */
function toClaimed(row: InstanceRow): ClaimedInstance {
  const instance = toInstance(row);
  return (row as { stop_requested?: boolean }).stop_requested === true
    ? { ...instance, stopRequested: true }
    : instance;
}

/** See `ClusterStore.requestStop`. */
export async function requestStop(
  target: WriteTarget,
  id: string,
): Promise<{ owner: string; status: string } | undefined> {
  // It does not wait for the disk (the lazy connections): its event goes out a flush sooner, and
  // only a crash of the database's machine could lose the mark, not the stop already sent.
  const rows = await run(target, REQUEST_STOP, [id, CHANNEL], target.lazyPool);
  const row = rows[0] as { owner?: unknown; status?: unknown } | undefined;
  return row === undefined ? undefined : { owner: String(row.owner), status: String(row.status) };
}

/** See `ClusterStore.stopsRequested`. */
export async function stopsRequested(target: WriteTarget, owner: string): Promise<string[]> {
  return (await run(target, STOPS_REQUESTED, [owner])).map((row) => String(row.id));
}

/** See `ClusterStore.startable`. */
export async function startableRows(
  target: WriteTarget,
  owner: string,
  ids: readonly string[],
): Promise<{ id: string; stopRequested: boolean }[]> {
  return (await run(target, STARTABLE, [owner, ids])).map((row) => ({
    id: String(row.id),
    stopRequested: (row as { stop_requested?: unknown }).stop_requested === true,
  }));
}

/** Cancels row `id` if it is pending and unowned; resolves it as stored, or undefined. */
export async function cancelPendingRow(target: WriteTarget, id: string): Promise<StoredInstance | undefined> {
  const rows = await run(target, CANCEL_PENDING, [id, Date.now(), target.offset, CHANNEL]);
  return rows[0] === undefined ? undefined : toInstance(rows[0]);
}

/**
 * Ends the work of every daemon whose lease ran out by the database clock: its running rows fail
 * with `reason(owner)`, its pending rows lose their owner, its lease row goes. Resolves the
 * changed rows by position. What `reason` throws reaches the caller as it is.
 */
export async function reapExpired(
  target: WriteTarget,
  reason: (owner: string) => TaskErrorInfo,
): Promise<StoredInstance[]> {
  const expired = await run(target, SELECT_EXPIRED, []);
  if (expired.length === 0) return [];
  const owners = expired.map((row) => String(row.owner));
  const errors = owners.map((owner) => JSON.stringify(reason(owner)));
  const reaped = await run(target, REAP, [owners, errors, Date.now(), target.offset, CHANNEL, PENDING]);
  return reaped.map(toInstance);
}

async function run(
  target: WriteTarget,
  sql: string,
  params: unknown[],
  pool: Pool = target.pool,
): Promise<InstanceRow[]> {
  try {
    return (await pool.query<InstanceRow>(prepared(sql, params))).rows;
  } catch (error) {
    throw storeError(target.label, error);
  }
}

/** The rows as one array per column, in the order of {@link INSTANCE_COLUMNS}. */
function columnsOf(rows: readonly StoredInstance[]): unknown[][] {
  const columns: unknown[][] = INSTANCE_COLUMNS.map(() => new Array(rows.length));
  for (let r = 0; r < rows.length; r++) {
    const values = instanceValues(rows[r] as StoredInstance);
    for (let c = 0; c < values.length; c++) (columns[c] as unknown[])[r] = values[c];
  }
  return columns;
}

function definitionColumns(definitions: readonly StoredDefinition[]): string[][] {
  return [
    definitions.map((d) => d.deploymentId),
    definitions.map((d) => d.id),
    definitions.map((d) => d.name),
    definitions.map((d) => d.module),
  ];
}
