/**
 * Every SQL statement the PostgreSQL store runs after migration, in one place. Constant text
 * (parameters as `$n`), except for the list query, which {@link listInstances} builds.
 */
import { DEFINITION_COLUMNS } from "../definition-row.js";
import { INSTANCE_COLUMNS, instanceColumnList } from "../instance-columns.js";
import type { StoreListQuery } from "../store.js";

/** The LISTEN/NOTIFY channel every daemon of a store listens on. */
export const CHANNEL = "numerous_tasks";

/** First key of every advisory lock taken here ("NTSK"); the second says which lock. */
export const LOCK_NAMESPACE = 0x4e54534b;
/** Serialises schema migrations of daemons that start at once. */
export const LOCK_MIGRATE = 2;

const COLUMNS = instanceColumnList();
/** The same columns of the table aliased `i`, for UPDATE ... FROM ... RETURNING. */
const I_COLUMNS = instanceColumnList("i");

// The change feed. A row's sequence is the id of the transaction that last wrote it plus the
// feed offset (fixed by migration 2, passed as a parameter): every row one transaction writes
// shares one sequence, and no write waits for another to get one. Readers see only sequences
// below the horizon, the oldest transaction still running (the snapshot's xmin) plus the
// offset: every transaction below it has ended, so nothing new can appear below a horizon
// once read.

/** The sequence of the writing transaction, with the feed offset `param` (an int8). */
const sequenceOf = (param: string) => `(pg_current_xact_id()::text::int8 + ${param}::int8)`;
/** The horizon of the statement's snapshot, with the feed offset `param`. */
const horizonOf = (param: string) => `(pg_snapshot_xmin(pg_current_snapshot())::text::int8 + ${param}::int8)`;
/** The payload of the `changed` event for sequence column `column`. */
const changedOf = (column: string, by?: string, rows?: string) =>
  by === undefined
    ? `json_build_object('kind', 'changed', 'sequence', ${column})::text`
    : rows === undefined
      ? `json_build_object('kind', 'changed', 'sequence', ${column}, 'by', ${by})::text`
      : `CASE WHEN ${rows} IS NULL
          THEN json_build_object('kind', 'changed', 'sequence', ${column}, 'by', ${by})
          ELSE json_build_object('kind', 'changed', 'sequence', ${column}, 'by', ${by}, 'rows', ${rows})
        END::text`;

export const SELECT_FEED_OFFSET = "SELECT value FROM feed_offset WHERE singleton";

/** $1 feed offset: everything at or below this sequence is final. */
export const SELECT_SEQUENCE = `SELECT ${horizonOf("$1")} - 1 AS sequence`;

/** $1 feed offset: the final sequence and the highest position stored. */
export const SELECT_COUNTERS = `SELECT ${horizonOf("$1")} - 1 AS sequence,
  (SELECT COALESCE(max(position), 0) FROM instances) AS position`;

/** $1 channel, $2 payload. */
export const NOTIFY = "SELECT pg_notify($1, $2)";
export const LISTEN = `LISTEN ${CHANNEL}`;
export const PING = "SELECT 1";

// Saving.

const COLUMN_COUNT = INSTANCE_COLUMNS.length;
/** Parameters after the columns' arrays. */
const P_OFFSET = `$${COLUMN_COUNT + 1}`;
const P_FRESH = `$${COLUMN_COUNT + 2}`;
const P_DEFINITIONS = [3, 4, 5, 6].map((i) => `$${COLUMN_COUNT + i}::text[]`).join(", ");
const P_CHANNEL = `$${COLUMN_COUNT + 7}`;
const P_PENDING = `$${COLUMN_COUNT + 8}`;
const P_PENDING_PAYLOAD = `$${COLUMN_COUNT + 9}`;
/** The saving daemon (named in the `changed` event) and its claim: at most this many rows, ready by now (epoch ms). */
const P_BY = `$${COLUMN_COUNT + 10}::text`;
const P_CLAIM = `$${COLUMN_COUNT + 11}::int4`;
const P_NOW = `$${COLUMN_COUNT + 12}::int8`;
/** The saved rows themselves for the `changed` event, when small (JSON, or null). */
const P_ROWS = `$${COLUMN_COUNT + 13}::json`;
/** The ids' array. */
const P_IDS = `$${INSTANCE_COLUMNS.findIndex((column) => column.name === "id") + 1}::text[]`;
/** The positions' array. */
const P_POSITIONS = `$${INSTANCE_COLUMNS.findIndex((column) => column.name === "position") + 1}::int8[]`;

/**
 * One statement, so one transaction with no lock but the rows' own: whole rows as one array per
 * column (no bound-parameter limit), inserted or replaced by id, with this transaction's sequence;
 * rows given position 0 get the next positions in input order, unless their id is among the
 * existing rows (ids given with position 0, parameter after the offset), which keep theirs; a
 * position given explicitly beyond the last one handed out moves the next ones past it (a
 * daemon gives only positions the store handed out, so this never races with other saves).
 * Inserts in id order, so concurrent saves of the same rows lock them in the same order.
 * Then the definitions (unique by deployment and name) and the events, delivered at commit:
 * `changed` with the sequence and the saving daemon when rows were saved (and the rows
 * themselves when given: the daemon gives them when they are all of the transaction's rows and
 * small), `pending` when told.
 *
 * With a claim limit above 0, the same statement also claims for the saving daemon up to that
 * many ready, unowned pending rows without a concurrency limit (as `numerous_tasks_claim` does,
 * skipping rows another claim holds and the rows being saved), in the same transaction: a daemon
 * whose instance ended writes the end and takes its next work in one commit.
 *
 * Returns a row per saved row (`claimed` false: id, sequence, position and whether its stop
 * was asked for; other columns null),
 * then a row per claimed row (`claimed` true, whole), each with `limited_waiting`: whether a
 * ready, unowned pending row with a concurrency limit waits (only looked for with a claim).
 */
/** The saving daemon still holds its lease (or the save names none: not a daemon's). */
const LEASED = `(${P_BY} IS NULL OR EXISTS (SELECT 1 FROM daemons WHERE owner = ${P_BY}))`;

export const SAVE = `
  WITH explicit AS MATERIALIZED (
    SELECT CASE WHEN x.top > s.last_value OR (x.top = s.last_value AND NOT s.is_called)
      THEN setval('instance_positions', x.top) END AS moved
    FROM (SELECT max(p) AS top FROM unnest(${P_POSITIONS}) AS p) AS x, instance_positions AS s
  ),
  input AS MATERIALIZED (
    SELECT u.*, CASE
        WHEN u.position <> 0 THEN u.position
        -- Not for a row that exists (it keeps its position): no position is used up.
        WHEN NOT EXISTS (SELECT 1 FROM instances AS i WHERE i.id = u.id) THEN nextval('instance_positions')
        ELSE 0
      END AS assigned
    FROM explicit, unnest(${INSTANCE_COLUMNS.map((column, i) => `$${i + 1}::${column.postgres}[]`).join(", ")})
      AS u(${COLUMNS})
  ),
  defined AS (
    INSERT INTO definitions (${DEFINITION_COLUMNS})
    SELECT * FROM unnest(${P_DEFINITIONS})
    ON CONFLICT (deployment_id, name) DO UPDATE SET id = excluded.id, module = excluded.module
  ),
  saved AS (
    INSERT INTO instances (${COLUMNS})
    SELECT ${INSTANCE_COLUMNS.map((column) =>
      column.name === "sequence"
        ? sequenceOf(P_OFFSET)
        : column.name === "position"
          ? "assigned"
          : column.name,
    ).join(", ")}
    FROM input ORDER BY id
    ON CONFLICT (id) DO UPDATE SET ${INSTANCE_COLUMNS.filter((column) => column.name !== "id")
      .map((column) =>
        column.name === "position"
          ? `position = CASE WHEN instances.id = ANY(${P_FRESH}::text[]) THEN instances.position ELSE excluded.position END`
          : `${column.name} = excluded.${column.name}`,
      )
      .join(", ")}
    -- A new row (revision 1) never replaces one that exists: two daemons creating one id (an
    -- idempotency key) leave the first; the caller reads it back. A daemon presumed dead (its
    -- lease reaped) changes nothing any more: its rows were failed or given to others.
    WHERE excluded.revision > 1 AND ${LEASED}
    RETURNING id, sequence, position, stop_requested
  ),
  claimable AS (
    SELECT id FROM instances
    WHERE ${P_CLAIM} > 0 AND status = 'pending' AND owner = '' AND ready_at <= ${P_NOW}
      AND concurrency_limit = 0 AND per_key_limit = 0 AND id <> ALL(${P_IDS}) AND ${LEASED}
    ORDER BY priority DESC, position LIMIT ${P_CLAIM} FOR UPDATE SKIP LOCKED
  ),
  claimed AS (
    UPDATE instances AS i SET owner = ${P_BY}, revision = i.revision + 1, sequence = ${sequenceOf(P_OFFSET)}
    FROM claimable WHERE i.id = claimable.id
    RETURNING ${I_COLUMNS}, i.stop_requested
  ),
  limited AS (
    SELECT ${P_CLAIM} > 0 AND EXISTS (
      SELECT 1 FROM instances WHERE status = 'pending' AND owner = '' AND ready_at <= ${P_NOW}
        AND (concurrency_limit > 0 OR per_key_limit > 0)
    ) AS waiting
  ),
  notified AS (
    SELECT pg_notify(${P_CHANNEL}, ${changedOf("max(sequence)", P_BY, P_ROWS)}),
      CASE WHEN ${P_PENDING}::bool THEN pg_notify(${P_CHANNEL}, ${P_PENDING_PAYLOAD}) END
    FROM (SELECT sequence FROM saved UNION ALL SELECT sequence FROM claimed) AS written HAVING count(*) > 0
  )
  SELECT written.*, (SELECT waiting FROM limited) AS limited_waiting
  FROM (
    SELECT false AS claimed, ${INSTANCE_COLUMNS.map((column) =>
      ["id", "sequence", "position"].includes(column.name)
        ? `saved.${column.name}`
        : `NULL::${column.postgres} AS ${column.name}`,
    ).join(", ")}
      , saved.stop_requested
    FROM saved
    UNION ALL
    SELECT true, ${INSTANCE_COLUMNS.map((column) => `claimed.${column.name}`).join(", ")}, claimed.stop_requested
    FROM claimed
  ) AS written LEFT JOIN notified ON true`;

// Reading.

export const SELECT_BY_IDS = `SELECT ${COLUMNS} FROM instances WHERE id = ANY($1::text[])`;

/**
 * $1 deployment, $2 after sequence, $3 limit, $4 feed offset: final rows after $2, by sequence
 * then id, at least $3 of them when there are, ending at a transaction's last row.
 */
export const CHANGES_SINCE = `
  WITH page AS (
    SELECT sequence FROM instances
    WHERE deployment_id = $1 AND sequence > $2 AND sequence < (SELECT ${horizonOf("$4")})
    ORDER BY sequence LIMIT $3
  )
  SELECT ${COLUMNS} FROM instances
  WHERE deployment_id = $1 AND sequence > $2 AND sequence <= (SELECT max(sequence) FROM page)
  ORDER BY sequence, id`;

/** As {@link CHANGES_SINCE} for every deployment: $1 after sequence, $2 limit, $3 feed offset. */
export const CHANGES_SINCE_ALL = `
  WITH page AS (
    SELECT sequence FROM instances WHERE sequence > $1 AND sequence < (SELECT ${horizonOf("$3")})
    ORDER BY sequence LIMIT $2
  )
  SELECT ${COLUMNS} FROM instances
  WHERE sequence > $1 AND sequence <= (SELECT max(sequence) FROM page)
  ORDER BY sequence, id`;

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

// Claiming, cancelling and reaping: each one statement, with its events (delivered at commit).

/** The events of `rows`' change: `changed` with their sequence, when there were rows. */
const notifyChanged = (rows: string, channel: string) =>
  `notified AS (SELECT pg_notify(${channel}, ${changedOf("max(sequence)")}) FROM ${rows} HAVING count(*) > 0)`;

/**
 * Gives up to $2 ready, unowned pending rows to owner $1 (a new revision each), highest priority
 * first, then creation order, within their tasks' concurrency limits, skipping rows another claim
 * holds; $3 feed offset, $4 channel, $5 now (epoch ms). See `numerous_tasks_claim` (migration 3).
 */
export const CLAIM = `SELECT ${COLUMNS}, stop_requested FROM numerous_tasks_claim($1, $2, $3, $4, $5)`;

/**
 * Keeps a stop of row $1 on the row while it is pending or running, and tells its owner ($2
 * channel) at commit; returns its owner and status (no row: it has ended or is unknown).
 */
export const REQUEST_STOP = `
  WITH marked AS (
    UPDATE instances SET stop_requested = true
    WHERE id = $1 AND status IN ('pending', 'running')
    RETURNING owner, status
  ),
  notified AS (
    SELECT pg_notify($2, json_build_object('kind', 'stop', 'instanceId', $1::text, 'owner', owner)::text)
    FROM marked WHERE owner <> ''
  )
  SELECT marked.owner, marked.status FROM marked LEFT JOIN notified ON true`;

/** $1 owner: the rows it holds whose stop was asked for. */
export const STOPS_REQUESTED = `SELECT id FROM instances
  WHERE owner = $1 AND status IN ('pending', 'running') AND stop_requested`;

/**
 * Of the rows $2 (ids), those $1 holds still pending, with whether a stop was asked for: what a
 * daemon checks before it lets a workload begin one (see `ClusterStore.startable`).
 */
export const STARTABLE = `SELECT id, stop_requested FROM instances
  WHERE id = ANY($2::text[]) AND owner = $1 AND status = 'pending'`;

/** The earliest time after $1 (epoch ms) at which an unowned pending row becomes ready, or null. */
export const NEXT_READY = `SELECT min(ready_at) AS at FROM instances
  WHERE status = 'pending' AND owner = '' AND ready_at > $1`;

/** Deletes up to $2 rows that finished before $1 (epoch ms); returns how many. */
export const DELETE_FINISHED = `WITH gone AS (
    DELETE FROM instances WHERE id IN (
      SELECT id FROM instances WHERE finished_at < $1 AND status IN ('completed', 'failed', 'cancelled') LIMIT $2
    ) RETURNING 1
  ) SELECT count(*)::int8 AS deleted FROM gone`;

/** Row $1, if pending and unowned, becomes cancelled at $2; $3 feed offset, $4 channel. */
export const CANCEL_PENDING = `
  WITH cancelled AS (
    UPDATE instances SET status = 'cancelled', args = NULL, result = NULL, error = NULL,
      finished_at = $2, revision = revision + 1, sequence = ${sequenceOf("$3")}
    WHERE id = $1 AND status = 'pending' AND owner = ''
    RETURNING ${COLUMNS}
  ),
  ${notifyChanged("cancelled", "$4")}
  SELECT cancelled.* FROM cancelled LEFT JOIN notified ON true`;

/**
 * Reading only: the owners whose lease ran out by the database clock, and those holding open
 * rows with no lease at all (reaped while a claim of theirs was committing: nobody else would
 * ever free those rows).
 */
export const SELECT_EXPIRED = `SELECT owner FROM daemons WHERE lease_until < now()
  UNION
  SELECT DISTINCT i.owner FROM instances AS i
  WHERE i.owner > '' AND i.status IN ('pending', 'running')
    AND NOT EXISTS (SELECT 1 FROM daemons AS d WHERE d.owner = i.owner)
  ORDER BY owner`;

/** A row whose stop was asked for: the reaper cancels it, pending or running. */
const CANCELS = "i.stop_requested";
/** A running row with attempts left: the reaper retries it rather than failing it. */
const RETRIES = "(i.status = 'running' AND i.attempt < i.max_attempts AND NOT i.stop_requested)";
/** A running row on its last attempt: the reaper fails it. */
const FAILS = "(i.status = 'running' AND i.attempt >= i.max_attempts AND NOT i.stop_requested)";

/**
 * Of owners $1 (errors $2), those whose lease is still out lose their lease row (a renewal that
 * committed first wins: the row's lease is checked again once it is locked), and those with no
 * lease row at all count as gone too; their running rows fail with their error at $3 (args
 * dropped), or, with attempts left, wait pending for their next attempt, ready at once (the
 * attempt's record closed with the error); their pending rows lose their owner; each gets a new
 * revision. $4 feed offset, $5 channel, $6 the `pending` payload,
 * sent when rows were freed. A row whose stop was asked for is cancelled instead, pending or
 * running (args dropped, finished at $3), never run again. Returns the changed rows by position.
 */
export const REAP = `
  WITH expired AS (
    DELETE FROM daemons WHERE owner = ANY($1::text[]) AND lease_until < now() RETURNING owner
  ),
  dead AS (
    SELECT owner FROM expired
    UNION
    SELECT o FROM unnest($1::text[]) AS o WHERE NOT EXISTS (SELECT 1 FROM daemons AS d WHERE d.owner = o)
  ),
  reaped AS (
    UPDATE instances AS i SET
      status = CASE WHEN ${CANCELS} THEN 'cancelled' WHEN ${RETRIES} THEN 'pending' WHEN ${FAILS} THEN 'failed' ELSE i.status END,
      error = CASE WHEN ${FAILS} THEN r.error WHEN ${CANCELS} THEN NULL ELSE i.error END,
      args = CASE WHEN ${FAILS} OR ${CANCELS} THEN NULL ELSE i.args END,
      result = CASE WHEN ${CANCELS} THEN NULL ELSE i.result END,
      finished_at = CASE WHEN ${FAILS} OR ${CANCELS} THEN $3::int8 ELSE i.finished_at END,
      owner = CASE WHEN (i.status = 'pending' AND NOT ${CANCELS}) OR ${RETRIES} THEN '' ELSE i.owner END,
      attempt = CASE WHEN ${RETRIES} THEN i.attempt + 1 ELSE i.attempt END,
      ready_at = CASE WHEN ${RETRIES} THEN $3::int8 ELSE i.ready_at END,
      attempts = CASE
        WHEN i.status = 'running' AND NOT ${CANCELS} AND i.attempts IS NOT NULL AND jsonb_array_length(i.attempts::jsonb) > 0 THEN
          jsonb_set(i.attempts::jsonb, ARRAY[(jsonb_array_length(i.attempts::jsonb) - 1)::text],
            (i.attempts::jsonb -> -1) || jsonb_build_object('finishedAt', $3::int8, 'error', r.error::jsonb))::text
        ELSE i.attempts END,
      revision = i.revision + 1,
      sequence = ${sequenceOf("$4")}
    FROM dead JOIN unnest($1::text[], $2::text[]) AS r(owner, error) ON r.owner = dead.owner
    WHERE i.owner = dead.owner AND i.status IN ('pending', 'running')
    RETURNING ${I_COLUMNS}
  ),
  notified AS (
    SELECT pg_notify($5, ${changedOf("max(sequence)")}),
      CASE WHEN bool_or(status = 'pending') THEN pg_notify($5, $6) END
    FROM reaped HAVING count(*) > 0
  )
  SELECT reaped.* FROM reaped LEFT JOIN notified ON true ORDER BY position`;
