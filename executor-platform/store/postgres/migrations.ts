import type { Pool } from "pg";
import { LOCK_MIGRATE, LOCK_NAMESPACE } from "./statements.js";
import { errorMessage } from "./store-error.js";
import { transaction } from "./transaction.js";

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
  `
  -- Writes take no cluster-wide lock any more: a row's sequence is its writing transaction's id
  -- plus this offset (the highest sequence stored before, so sequences never go backwards), and
  -- new rows' positions come from a sequence. The counters table is no longer written.
  CREATE TABLE feed_offset (
    singleton boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (singleton),
    value     bigint  NOT NULL
  );
  INSERT INTO feed_offset (singleton, value)
    SELECT true, GREATEST((SELECT sequence FROM counters WHERE singleton),
                          (SELECT COALESCE(max(sequence), 0) FROM instances));
  CREATE SEQUENCE instance_positions AS bigint;
  SELECT setval('instance_positions', GREATEST(m.position, 1), m.position > 0)
    FROM (SELECT GREATEST((SELECT position FROM counters WHERE singleton),
                          (SELECT COALESCE(max(position), 0) FROM instances)) AS position) AS m;
  `,
];

/**
 * Brings the schema of the database behind `pool` up to date, once however many daemons start at
 * once. Leaves an up-to-date database alone without taking a lock.
 * @throws {Error} when the database's schema is newer than this version knows, or a step fails.
 */
export async function migrate(pool: Pool): Promise<void> {
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
