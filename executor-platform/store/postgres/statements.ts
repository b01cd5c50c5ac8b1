/**
 * Every SQL statement the PostgreSQL store runs after migration, in one place. Constant text
 * (parameters as `$n`), except for the list query, which {@link listInstances} builds.
 */
import { DEFINITION_COLUMNS } from "../definition-row.js";
import { INSTANCE_COLUMNS, instanceColumnList, REPLACE_FROM_EXCLUDED } from "../instance-columns.js";
import type { StoreListQuery } from "../store.js";

/** The LISTEN/NOTIFY channel every daemon of a store listens on. */
export const CHANNEL = "numerous_tasks";

/** First key of every advisory lock taken here ("NTSK"); the second says which lock. */
export const LOCK_NAMESPACE = 0x4e54534b;
/** Serialises every write that assigns sequences, so commit order is sequence order. */
export const LOCK_WRITE = 1;
/** Serialises schema migrations of daemons that start at once. */
export const LOCK_MIGRATE = 2;

const COLUMNS = instanceColumnList();
/** The same columns of the table aliased `i`, for UPDATE ... FROM ... RETURNING. */
const I_COLUMNS = instanceColumnList("i");

// Counters and events.

export const SELECT_COUNTERS = "SELECT sequence, position FROM counters WHERE singleton";
export const SELECT_SEQUENCE = "SELECT sequence FROM counters WHERE singleton";

/**
 * Opens the write transaction: READ COMMITTED explicitly (each statement after the lock then sees
 * every write committed before it), the write lock, then the counters as the last writer left them.
 * Constant text, sent as one simple query to save round trips while the lock is held; the
 * counters are the result of its third statement.
 */
export const BEGIN_WRITE = `BEGIN ISOLATION LEVEL READ COMMITTED;
  SELECT pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${LOCK_WRITE});
  ${SELECT_COUNTERS}`;

/**
 * Sets the counters ($1 sequence, $2 position, never lowering it) and queues the events, which
 * PostgreSQL delivers when the transaction commits: $4 on channel $3 always, $6 when $5.
 */
export const FINISH_WRITE = `UPDATE counters SET sequence = $1, position = GREATEST(position, $2) WHERE singleton
  RETURNING pg_notify($3, $4), CASE WHEN $5 THEN pg_notify($3, $6) END`;

/** $1 channel, $2 payload. */
export const NOTIFY = "SELECT pg_notify($1, $2)";
export const LISTEN = `LISTEN ${CHANNEL}`;
export const PING = "SELECT 1";

// Saving.

/** Whole rows as one array per column (no bound-parameter limit), inserted or replaced by id. */
export const UPSERT_INSTANCES = `
  INSERT INTO instances (${COLUMNS})
  SELECT * FROM unnest(${INSTANCE_COLUMNS.map((column, i) => `$${i + 1}::${column.postgres}[]`).join(", ")})
  ON CONFLICT (id) DO UPDATE SET ${REPLACE_FROM_EXCLUDED}`;

export const UPSERT_DEFINITIONS = `
  INSERT INTO definitions (${DEFINITION_COLUMNS})
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
  ON CONFLICT (deployment_id, name) DO UPDATE SET id = excluded.id, module = excluded.module`;

/** The positions of those of ids $1 that exist. */
export const SELECT_POSITIONS = "SELECT id, position FROM instances WHERE id = ANY($1::text[])";

// Reading.

export const SELECT_BY_IDS = `SELECT ${COLUMNS} FROM instances WHERE id = ANY($1::text[])`;

/** $1 deployment, $2 after sequence, $3 limit. */
export const CHANGES_SINCE = `SELECT ${COLUMNS} FROM instances WHERE deployment_id = $1 AND sequence > $2
  ORDER BY sequence LIMIT $3`;

/** $1 after sequence, $2 limit. */
export const CHANGES_SINCE_ALL = `SELECT ${COLUMNS} FROM instances WHERE sequence > $1 ORDER BY sequence LIMIT $2`;

export const UNFINISHED = `SELECT ${COLUMNS} FROM instances WHERE status IN ('pending', 'running') ORDER BY position`;

export const LIST_DEFINITIONS = `SELECT ${DEFINITION_COLUMNS} FROM definitions WHERE deployment_id = $1 ORDER BY name`;

/** The query of `Store.list` (whose statuses, when given, are not empty) at most `limit` rows. */
export function listInstances(query: StoreListQuery, limit: number): { text: string; values: unknown[] } {
  const values: unknown[] = [query.deploymentId];
  const where = ["deployment_id = $1"];
  if (query.task !== undefined) {
    values.push(query.task);
    where.push(`(task_id = $${values.length} OR task_name = $${values.length})`);
  }
  if (query.statuses !== undefined) {
    values.push([...new Set(query.statuses)]);
    where.push(`status = ANY($${values.length}::text[])`);
  }
  if (query.afterPosition !== undefined) {
    values.push(query.afterPosition);
    where.push(`position > $${values.length}`);
  }
  values.push(limit);
  return {
    text: `SELECT ${COLUMNS} FROM instances WHERE ${where.join(" AND ")} ORDER BY position LIMIT $${values.length}`,
    values,
  };
}

// Leases, by the database clock. $1 owner, $2 lease in milliseconds.

export const REGISTER_LEASE = `INSERT INTO daemons (owner, lease_until)
  VALUES ($1, now() + $2::float8 * interval '1 millisecond')
  ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until`;

export const RENEW_LEASE = `UPDATE daemons SET lease_until = now() + $2::float8 * interval '1 millisecond'
  WHERE owner = $1 RETURNING owner`;

// Claiming.

/** Outside the write lock: is there anything to claim at all? */
export const ANY_CLAIMABLE =
  "SELECT 1 FROM instances WHERE status = 'pending' AND owner = '' ORDER BY position LIMIT 1";

/** Up to $1 claimable rows in creation order, locked; rows another claim holds are skipped. */
export const PICK_CLAIMABLE = `SELECT id FROM instances WHERE status = 'pending' AND owner = ''
  ORDER BY position LIMIT $1 FOR UPDATE SKIP LOCKED`;

/** Gives rows $2 to owner $1 with sequences $3 (a new revision each). */
export const CLAIM = `UPDATE instances AS i SET owner = $1, revision = i.revision + 1, sequence = u.sequence
  FROM unnest($2::text[], $3::int8[]) AS u(id, sequence) WHERE i.id = u.id
  RETURNING ${I_COLUMNS}`;

/** Row $1, if pending and unowned, becomes cancelled at $2 with sequence $3. */
export const CANCEL_PENDING = `UPDATE instances SET status = 'cancelled', args = NULL, result = NULL, error = NULL,
    finished_at = $2, revision = revision + 1, sequence = $3
  WHERE id = $1 AND status = 'pending' AND owner = ''
  RETURNING ${COLUMNS}`;

// Reaping.

/** Outside the write lock: has any lease run out? */
export const ANY_EXPIRED = "SELECT owner FROM daemons WHERE lease_until < now() LIMIT 1";

/** Under the write lock; FOR UPDATE makes a concurrent renewal wait (and lose) or win. */
export const LOCK_EXPIRED = "SELECT owner FROM daemons WHERE lease_until < now() ORDER BY owner FOR UPDATE";

/** The open rows of owners $1, locked. */
export const LOCK_HELD = `SELECT id, owner, status FROM instances
  WHERE owner = ANY($1::text[]) AND status IN ('pending', 'running')
  ORDER BY position FOR UPDATE`;

/**
 * Rows $1 get sequences $2: running ones fail with error $3 at $4 (args dropped), pending ones
 * lose their owner; each gets a new revision.
 */
export const REAP = `UPDATE instances AS i SET
    status = CASE WHEN i.status = 'running' THEN 'failed' ELSE i.status END,
    error = CASE WHEN i.status = 'running' THEN u.error ELSE i.error END,
    args = CASE WHEN i.status = 'running' THEN NULL ELSE i.args END,
    finished_at = CASE WHEN i.status = 'running' THEN $4::int8 ELSE i.finished_at END,
    owner = CASE WHEN i.status = 'pending' THEN '' ELSE i.owner END,
    revision = i.revision + 1,
    sequence = u.sequence
  FROM unnest($1::text[], $2::int8[], $3::text[]) AS u(id, sequence, error) WHERE i.id = u.id
  RETURNING ${I_COLUMNS}`;

export const DELETE_LEASES = "DELETE FROM daemons WHERE owner = ANY($1::text[])";
