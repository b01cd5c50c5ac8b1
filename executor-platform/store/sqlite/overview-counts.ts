import type Database from "better-sqlite3";
import { type TaskStatus, isTerminalStatus } from "../../../sdk/task-status.js";
import type { FinishedCount } from "../store.js";

/** What of a row the counts depend on. */
interface Counted {
  readonly deploymentId: string;
  readonly status: TaskStatus;
  readonly finishedAt: number | undefined;
}

interface PriorRow {
  id: string;
  deployment_id: string;
  status: TaskStatus;
  finished_at: number | null;
}

const MINUTE_MS = 60_000;
/** Rows remembered at most (about 100 bytes each); the others are read when written again. */
const MAX_REMEMBERED = 200_000;
/** Ids read at once; well under SQLite's bound-parameter limit. */
const READ_CHUNK = 256;

/**
 * The console's overview counts (SPEC section 6) in the SQLite store: instances by deployment and
 * status, and those with an end by deployment, minute and status, kept in the `status_counts`
 * and `finished_counts` tables so that reading them costs the same with 100 rows or 1,000,000.
 * A write of instances adds up what it changes there and writes the sums in its own transaction
 * (a batch of 500 rows that all end costs a few statements more). What a row counted as before is
 * remembered for the rows this store wrote that have not ended, and read otherwise: a daemon
 * alone writes its SQLite store (it numbers the rows itself). Triggers on the instances table
 * would cost every save about a fifth more, even one that changes no status, and two statements
 * a row on top.
 */
export class OverviewCounts {
  readonly #db: Database.Database;
  /** How the rows written here that have not ended count, by id; at most {@link MAX_REMEMBERED}. */
  readonly #open = new Map<string, Counted>();
  readonly #priors = new Map<number, Database.Statement<string[], PriorRow>>();
  readonly #addStatus: Database.Statement<[string, string, number]>;
  readonly #addFinished: Database.Statement<[string, number, string, number]>;
  readonly #dropFinished: Database.Statement<[string, number, string]>;
  readonly #readStatus: Database.Statement<[string], { status: TaskStatus; n: number }>;
  readonly #readFinished: Database.Statement<
    [string, number],
    { minute: number; status: TaskStatus; n: number }
  >;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#addStatus = db.prepare(
      "INSERT INTO status_counts (deployment_id, status, n) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n",
    );
    this.#addFinished = db.prepare(
      `INSERT INTO finished_counts (deployment_id, minute, status, n) VALUES (?, ?, ?, ?)
       ON CONFLICT DO UPDATE SET n = n + excluded.n`,
    );
    this.#dropFinished = db.prepare(
      "DELETE FROM finished_counts WHERE deployment_id = ? AND minute = ? AND status = ? AND n <= 0",
    );
    this.#readStatus = db.prepare("SELECT status, n FROM status_counts WHERE deployment_id = ? AND n > 0");
    this.#readFinished = db.prepare(
      "SELECT minute, status, n FROM finished_counts WHERE deployment_id = ? AND minute >= ? ORDER BY minute",
    );
  }

  /**
   * What writing `rows` over the stored rows of their ids changes; in the write's transaction,
   * before it. Once the transaction commits, pass the changes to {@link committed}.
   */
  saving(rows: readonly ({ readonly id: string } & Counted)[]): CountChanges {
    const changes = new CountChanges();
    const current = this.#read(rows.filter((row) => !this.#open.has(row.id)).map((row) => row.id));
    for (const row of rows) {
      const before = current.get(row.id) ?? this.#open.get(row.id);
      if (
        before === undefined ||
        before.status !== row.status ||
        before.deploymentId !== row.deploymentId ||
        before.finishedAt !== row.finishedAt
      ) {
        if (before !== undefined) changes.count(before, -1);
        changes.count(row, 1);
      }
      // A batch that has an id twice: its second row replaces the first.
      const counted = { deploymentId: row.deploymentId, status: row.status, finishedAt: row.finishedAt };
      current.set(row.id, counted);
      changes.written.set(row.id, counted);
    }
    return changes;
  }

  /** The write of `changes` is committed: its rows count as written from now on. */
  committed(changes: CountChanges): void {
    for (const [id, row] of changes.written) {
      if (isTerminalStatus(row.status)) this.#open.delete(id);
      else if (this.#open.size < MAX_REMEMBERED || this.#open.has(id)) this.#open.set(id, row);
    }
  }

  /** What deleting these rows changes. */
  deleting(rows: Iterable<Counted>): CountChanges {
    const changes = new CountChanges();
    for (const row of rows) changes.count(row, -1);
    return changes;
  }

  /** Stores the changes; in the transaction of the write that made them. */
  write(changes: CountChanges): void {
    for (const [key, n] of changes.statuses) {
      if (n === 0) continue;
      const [deploymentId, status] = key.split("\u0000") as [string, string];
      this.#addStatus.run(deploymentId, status, n);
    }
    for (const [key, n] of changes.finished) {
      if (n === 0) continue;
      const [deploymentId, minute, status] = key.split("\u0000") as [string, string, string];
      this.#addFinished.run(deploymentId, Number(minute), status, n);
      if (n < 0) this.#dropFinished.run(deploymentId, Number(minute), status);
    }
  }

  statusCounts(deploymentId: string): Partial<Record<TaskStatus, number>> {
    return Object.fromEntries(this.#readStatus.all(deploymentId).map((row) => [row.status, row.n]));
  }

  finishedPerMinute(deploymentId: string, since: number): FinishedCount[] {
    return this.#readFinished
      .all(deploymentId, since)
      .map((row) => ({ minute: row.minute, status: row.status, count: row.n }));
  }

  /** The counted part of the stored rows of these ids. */
  #read(ids: readonly string[]): Map<string, Counted> {
    const found = new Map<string, Counted>();
    for (let i = 0; i < ids.length; i += READ_CHUNK) {
      const chunk = ids.slice(i, i + READ_CHUNK);
      // Padded to a power of two (an id twice is harmless in IN): a few statements serve every size.
      const size = 2 ** Math.ceil(Math.log2(chunk.length));
      while (chunk.length < size) chunk.push(chunk[0] as string);
      let statement = this.#priors.get(size);
      if (statement === undefined) {
        statement = this.#db.prepare(
          `SELECT id, deployment_id, status, finished_at FROM instances WHERE id IN (${chunk.map(() => "?").join(", ")})`,
        );
        this.#priors.set(size, statement);
      }
      for (const row of statement.all(...chunk)) {
        found.set(row.id, {
          deploymentId: row.deployment_id,
          status: row.status,
          finishedAt: row.finished_at ?? undefined,
        });
      }
    }
    return found;
  }
}

/** One write's changes to the overview counts, summed by key. */
export class CountChanges {
  readonly statuses = new Map<string, number>();
  readonly finished = new Map<string, number>();
  /** How the rows of the write count once it is committed. */
  readonly written = new Map<string, Counted>();

  count(row: Counted, by: number): void {
    const key = `${row.deploymentId}\u0000${row.status}`;
    this.statuses.set(key, (this.statuses.get(key) ?? 0) + by);
    if (row.finishedAt === undefined) return;
    const minute = Math.floor(row.finishedAt / MINUTE_MS) * MINUTE_MS;
    const finishedKey = `${row.deploymentId}\u0000${minute}\u0000${row.status}`;
    this.finished.set(finishedKey, (this.finished.get(finishedKey) ?? 0) + by);
  }
}
