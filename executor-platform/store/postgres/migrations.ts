import type { Pool } from "pg";
import { LOCK_MIGRATE, LOCK_NAMESPACE } from "./statements.js";
import { errorMessage } from "./store-error.js";
import { transaction } from "./transaction.js";

/**
 * The claim function (see migration 3), created by step 3 and replaced by step 7 with an event
 * that names the claiming daemon; `changed` is the JSON of its `changed` event.
 */
function claimFunction(create: "CREATE" | "CREATE OR REPLACE", changed: string, fenced = false): string {
  return `
  ${create} FUNCTION numerous_tasks_claim(p_owner text, p_limit int, p_offset int8, p_channel text, p_now int8)
  RETURNS SETOF instances LANGUAGE plpgsql AS $fn$
  DECLARE
    v_sequence int8 := pg_current_xact_id()::text::int8 + p_offset;
    v_taken int := 0;
    v_count int;
    v_full text[] := '{}';
    c record;
  BEGIN${
    fenced
      ? `
    -- A daemon presumed dead (its lease reaped) claims nothing: it would hold rows nobody reaps.
    IF NOT EXISTS (SELECT 1 FROM daemons WHERE owner = p_owner) THEN
      RETURN;
    END IF;`
      : ""
  }
    RETURN QUERY
      WITH picked AS (
        SELECT id FROM instances
        WHERE status = 'pending' AND owner = '' AND ready_at <= p_now
          AND concurrency_limit = 0 AND per_key_limit = 0
        ORDER BY priority DESC, position LIMIT p_limit FOR UPDATE SKIP LOCKED
      )
      UPDATE instances AS i SET owner = p_owner, revision = i.revision + 1, sequence = v_sequence
      FROM picked WHERE i.id = picked.id RETURNING i.*;
    GET DIAGNOSTICS v_taken = ROW_COUNT;
    IF v_taken < p_limit THEN
      FOR c IN
        SELECT id, deployment_id, task_id, concurrency_key, concurrency_limit, per_key_limit FROM instances
        WHERE status = 'pending' AND owner = '' AND ready_at <= p_now
          AND (concurrency_limit > 0 OR per_key_limit > 0)
        ORDER BY priority DESC, position LIMIT 1000
      LOOP
        CONTINUE WHEN (c.deployment_id || E'\n' || c.task_id) = ANY (v_full)
          OR (c.deployment_id || E'\n' || c.task_id || E'\n' || coalesce(c.concurrency_key, '')) = ANY (v_full);
        PERFORM pg_advisory_xact_lock(1314149195, hashtext(c.deployment_id || E'\n' || c.task_id));
        PERFORM 1 FROM instances WHERE id = c.id AND status = 'pending' AND owner = '' FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        IF c.concurrency_limit > 0 THEN
          SELECT count(*) INTO v_count FROM instances
          WHERE deployment_id = c.deployment_id AND task_id = c.task_id AND owner <> ''
            AND status IN ('pending', 'running') AND (concurrency_limit > 0 OR per_key_limit > 0);
          IF v_count >= c.concurrency_limit THEN
            v_full := v_full || (c.deployment_id || E'\n' || c.task_id);
            CONTINUE;
          END IF;
        END IF;
        IF c.per_key_limit > 0 THEN
          SELECT count(*) INTO v_count FROM instances
          WHERE deployment_id = c.deployment_id AND task_id = c.task_id AND concurrency_key = c.concurrency_key
            AND owner <> '' AND status IN ('pending', 'running') AND (concurrency_limit > 0 OR per_key_limit > 0);
          IF v_count >= c.per_key_limit THEN
            v_full := v_full || (c.deployment_id || E'\n' || c.task_id || E'\n' || coalesce(c.concurrency_key, ''));
            CONTINUE;
          END IF;
        END IF;
        RETURN QUERY
          UPDATE instances AS i SET owner = p_owner, revision = i.revision + 1, sequence = v_sequence
          WHERE i.id = c.id RETURNING i.*;
        v_taken := v_taken + 1;
        EXIT WHEN v_taken >= p_limit;
      END LOOP;
    END IF;
    IF v_taken > 0 THEN
      PERFORM pg_notify(p_channel, ${changed}::text);
    END IF;
  END
  $fn$;`;
}

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
  `
  -- Run options (SPEC section 4): the options as JSON, and the parts of them queries use.
  ALTER TABLE instances
    ADD COLUMN options           text,
    ADD COLUMN priority          bigint NOT NULL DEFAULT 0,
    ADD COLUMN ready_at          bigint NOT NULL DEFAULT 0,
    ADD COLUMN attempt           bigint NOT NULL DEFAULT 1,
    ADD COLUMN max_attempts      bigint NOT NULL DEFAULT 1,
    ADD COLUMN attempts          text,
    ADD COLUMN concurrency_limit bigint NOT NULL DEFAULT 0,
    ADD COLUMN per_key_limit     bigint NOT NULL DEFAULT 0,
    ADD COLUMN concurrency_key   text;
  -- Claims take the highest priority first, then creation order.
  DROP INDEX IF EXISTS instances_open;
  CREATE INDEX instances_open ON instances (owner, priority DESC, position) WHERE status IN ('pending', 'running');
  -- Counting what a limited task has claimed or running, per task and per key.
  CREATE INDEX instances_limited ON instances (deployment_id, task_id, concurrency_key)
    WHERE status IN ('pending', 'running') AND (concurrency_limit > 0 OR per_key_limit > 0);
  -- Retention deletes finished rows by age.
  CREATE INDEX instances_finished ON instances (finished_at) WHERE finished_at IS NOT NULL;

  -- Claims up to p_limit ready, unowned pending rows for p_owner, highest priority first, then
  -- creation order; SKIP LOCKED, so claims never wait on each other. Rows of tasks without a
  -- concurrency limit are taken in one statement. A limited task's rows are admitted one by one
  -- under a transaction lock of that task: the count of its claimed rows is read after the lock
  -- is taken (a statement of a volatile function sees what committed before it), so two daemons
  -- never both admit past the limit. Notifies 'changed' with the claim's sequence.
${claimFunction("CREATE", "json_build_object('kind', 'changed', 'sequence', v_sequence)")}
  `,
  `
  -- Schedules (SPEC section 5).
  CREATE TABLE schedules (
    deployment_id    text    NOT NULL,
    name             text    NOT NULL,
    task_name        text    NOT NULL,
    module           text    NOT NULL,
    args             text    NOT NULL,
    cron             text,
    timezone         text,
    every_ms         bigint,
    overlap          text    NOT NULL,
    catch_up         text    NOT NULL,
    options          text,
    paused           integer NOT NULL,
    anchor_at        bigint  NOT NULL,
    handled_through  bigint  NOT NULL,
    last_fired_at    bigint,
    last_instance_id text,
    created_at       bigint  NOT NULL,
    updated_at       bigint  NOT NULL,
    PRIMARY KEY (deployment_id, name)
  );
  `,
  `
  -- The call's OpenTelemetry trace context (SPEC section 6), which each attempt's span links to.
  ALTER TABLE instances ADD COLUMN trace_context text;
  `,
  `
  -- Logs (SPEC section 6): what the workload used, and its output in chunks, which are appended
  -- (rewriting a growing row would cost more with every line) and go with their instance.
  ALTER TABLE instances
    ADD COLUMN exit_code         bigint,
    ADD COLUMN cpu_seconds       double precision,
    ADD COLUMN peak_memory_bytes bigint;
  CREATE TABLE instance_logs (
    chunk       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id text    NOT NULL,
    lines       text    NOT NULL,
    line_count  integer NOT NULL
  );
  CREATE INDEX instance_logs_by_instance ON instance_logs (instance_id, chunk);
  CREATE FUNCTION numerous_tasks_drop_logs() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    DELETE FROM instance_logs WHERE instance_id IN (SELECT id FROM gone);
    RETURN NULL;
  END
  $fn$;
  CREATE TRIGGER instance_logs_go_with_instances AFTER DELETE ON instances
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION numerous_tasks_drop_logs();
  `,
  `
  -- A claim's changed event names the claiming daemon, which has the rows already and need
  -- not read them back (the same function otherwise).
${claimFunction("CREATE OR REPLACE", "json_build_object('kind', 'changed', 'sequence', v_sequence, 'by', p_owner)")}
  `,
  `
  -- A stop asked of an instance another daemon holds is kept on its row, not only sent as an
  -- event: a daemon that missed the event (cut off the database, restarting, not yet holding
  -- the row it claimed) finds it when it claims, renews its lease or reconnects, and reaping
  -- cancels a stopped instance rather than run it again.
  ALTER TABLE instances ADD COLUMN stop_requested boolean NOT NULL DEFAULT false;
  `,
  `
  -- A daemon presumed dead (its lease reaped) claims nothing any more (its saves are refused
  -- the same way, in the SAVE statement).
${claimFunction("CREATE OR REPLACE", "json_build_object('kind', 'changed', 'sequence', v_sequence, 'by', p_owner)", true)}
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
