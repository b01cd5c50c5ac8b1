import type { TaskErrorInfo } from "../../sdk/errors.js";
import type { AttemptRecord } from "../../sdk/executor.js";
import type { RunSpec } from "../../sdk/run-options.js";
import type { TaskStatus } from "../../sdk/task-status.js";

/** An instance as the daemon keeps it. Values stay codec-encoded strings. */
export interface StoredInstance {
  readonly id: string;
  readonly deploymentId: string;
  readonly taskId: string;
  readonly taskName: string;
  /** Absolute path of the module that defines the task, inside the app root. */
  readonly module: string;
  /** Encoded argument list; dropped (undefined) once the instance is finished. */
  readonly args: string | undefined;
  readonly status: TaskStatus;
  readonly progress: number;
  readonly output: string | undefined;
  readonly result: string | undefined;
  readonly error: TaskErrorInfo | undefined;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly startedAt: number | undefined;
  readonly finishedAt: number | undefined;
  /** Per instance: grows with every change. */
  readonly revision: number;
  /**
   * Store-wide: the change counter when this row last changed; watchers resume from it. Rows
   * written together may share one (PostgreSQL numbers each write, SQLite each row).
   */
  readonly sequence: number;
  /** Store-wide creation order; list cursors page by it. */
  readonly position: number;
  /** Which daemon runs it (several daemons share a store later); empty when none. */
  readonly owner: string;
  // Run options (SPEC section 4). The spec as the SDK resolved it; the fields after it are the
  // parts of it that the store's queries use, and the attempts so far.
  readonly spec: RunSpec | undefined;
  /** Higher first among ready instances. */
  readonly priority: number;
  /** Epoch milliseconds before which it does not start (a delay, or a retry's backoff); 0: now. */
  readonly readyAt: number;
  /** The current attempt, or the next one while it waits to retry; from 1. */
  readonly attempt: number;
  readonly maxAttempts: number;
  /** Attempts that started, with their ends and errors. */
  readonly attempts: readonly AttemptRecord[] | undefined;
  /** At most this many of the task's instances run at once (0: no limit). */
  readonly concurrencyLimit: number;
  /** With `concurrencyKey`: at most this many with that key (0: no limit). */
  readonly perKeyLimit: number;
  readonly concurrencyKey: string | undefined;
  /** The call's OpenTelemetry trace context (JSON), which each attempt's span links to. */
  readonly traceContext: string | undefined;
  // What its workload used (SPEC section 6), once known; see the Instance message.
  readonly exitCode: number | undefined;
  readonly cpuSeconds: number | undefined;
  readonly peakMemoryBytes: number | undefined;
}

/** The run fields of a new row made with `spec`: its run options, and what it used (nothing yet). */
export function runFields(
  spec: RunSpec | undefined,
): Pick<
  StoredInstance,
  | "exitCode"
  | "cpuSeconds"
  | "peakMemoryBytes"
  | "spec"
  | "priority"
  | "readyAt"
  | "attempt"
  | "maxAttempts"
  | "attempts"
  | "concurrencyLimit"
  | "perKeyLimit"
  | "concurrencyKey"
> {
  return {
    spec,
    priority: spec?.priority ?? 0,
    readyAt: spec?.startAt ?? 0,
    attempt: 1,
    maxAttempts: spec?.maxAttempts ?? 1,
    attempts: undefined,
    concurrencyLimit: spec?.concurrencyLimit ?? 0,
    perKeyLimit: spec?.perKeyLimit ?? 0,
    concurrencyKey: spec?.concurrencyKey,
    exitCode: undefined,
    cpuSeconds: undefined,
    peakMemoryBytes: undefined,
  };
}

export interface StoredDefinition {
  readonly deploymentId: string;
  readonly id: string;
  readonly name: string;
  readonly module: string;
}

export interface StoreListQuery {
  readonly deploymentId: string;
  /** A task's id or name. */
  readonly task?: string | undefined;
  readonly statuses?: readonly TaskStatus[] | undefined;
  /** Only instances with a greater position. */
  readonly afterPosition?: number | undefined;
  readonly limit: number;
}

/** A piece of an instance's kept output, as stored. */
export interface StoredLogChunk {
  /** Grows with every chunk the store takes: an instance's chunks in order. */
  readonly chunk: number;
  readonly instanceId: string;
  /** JSON: `[[atMs, stream (0 stdout, 1 stderr), line], ...]`. */
  readonly lines: string;
  readonly lineCount: number;
}

/** One write of logs, in one transaction: new chunks, chunks rewritten in place, chunks deleted. */
export interface LogWrite {
  readonly append: ReadonlyArray<Omit<StoredLogChunk, "chunk">>;
  readonly rewrite: ReadonlyArray<Omit<StoredLogChunk, "instanceId">>;
  readonly remove: readonly number[];
}

/**
 * Where the daemon keeps instances and definitions durably. The embedded SQLite store is the
 * default; a shared PostgreSQL store implements the same contract. All methods may be called
 * concurrently; `save` must be atomic for its whole batch and durable when it resolves.
 */
export interface Store extends ScheduleStore, ConsoleStore {
  /** The highest `sequence` and `position` stored, so the daemon continues from them. */
  counters(): Promise<{ sequence: number; position: number }>;
  /**
   * Writes whole rows (insert or replace by id) in one transaction. Rows that are new are
   * inserted; existing ones replaced. Durable once resolved.
   */
  save(rows: readonly StoredInstance[], definitions?: readonly StoredDefinition[]): Promise<void>;
  /** Rows by id (any deployment); missing ids are left out. */
  getMany(ids: readonly string[]): Promise<StoredInstance[]>;
  /** In creation order (position ascending). */
  list(query: StoreListQuery): Promise<StoredInstance[]>;
  /**
   * Rows of a deployment whose `sequence` is greater than `afterSequence`, by sequence then id:
   * `limit` of them, or more when rows sharing the last one's sequence follow (a page never
   * splits a sequence).
   */
  changesSince(deploymentId: string, afterSequence: number, limit: number): Promise<StoredInstance[]>;
  /** Every pending or running row, in creation order: what a restarted daemon takes up again. */
  unfinished(): Promise<StoredInstance[]>;
  listDefinitions(deploymentId: string): Promise<StoredDefinition[]>;
  /**
   * Deletes up to `limit` finished rows whose `finishedAt` is before `before`, with their logs;
   * resolves how many.
   */
  deleteFinished(before: number, limit: number): Promise<number>;
  /**
   * Writes logs (see {@link LogWrite}); resolves the appended chunks' numbers in order. Not
   * synced to disk on its own: logs ride along with the next synced write, and survive a crash
   * of the daemon either way.
   */
  writeLogs(write: LogWrite): Promise<number[]>;
  /** Up to `limit` of an instance's chunks after chunk `after` (0: from the first), oldest first. */
  readLogs(instanceId: string, after: number, limit: number): Promise<StoredLogChunk[]>;
  /** Up to `limit` of an instance's chunks before chunk `before`, newest first. */
  readLogsBackward(instanceId: string, before: number, limit: number): Promise<StoredLogChunk[]>;
  close(): Promise<void>;
}

/** A schedule as the daemon keeps it (SPEC §5). Times are epoch milliseconds. */
export interface StoredSchedule {
  readonly deploymentId: string;
  readonly name: string;
  readonly taskName: string;
  /** Absolute path of the module that defines the task, inside the app root. */
  readonly module: string;
  /** Encoded argument list of every instance it starts. */
  readonly args: string;
  readonly cron: string | undefined;
  readonly timezone: string | undefined;
  readonly everyMs: number | undefined;
  readonly overlap: "allow" | "skip";
  readonly catchUp: "none" | "latest" | "all";
  readonly spec: RunSpec | undefined;
  readonly paused: boolean;
  /** An interval schedule counts from here. */
  readonly anchorAt: number;
  /** Every occurrence up to this is handled (fired or skipped): the scheduler's watermark. */
  readonly handledThrough: number;
  readonly lastFiredAt: number | undefined;
  readonly lastInstanceId: string | undefined;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** Where schedules are kept: both stores implement it beside {@link Store}. */
export interface ScheduleStore {
  /** Every schedule, of one deployment or of all, by deployment and name. */
  listSchedules(deploymentId?: string): Promise<StoredSchedule[]>;
  getSchedule(deploymentId: string, name: string): Promise<StoredSchedule | undefined>;
  /** Inserts or replaces the whole row. */
  putSchedule(schedule: StoredSchedule): Promise<void>;
  /** Resolves false when there was none. */
  deleteSchedule(deploymentId: string, name: string): Promise<boolean>;
  /**
   * Moves the schedule's watermark from `expectedHandledThrough` to the given one, with its last
   * fire: only if nobody moved it first (one daemon of a cluster wins each occurrence). Resolves
   * whether it moved.
   */
  advanceSchedule(
    deploymentId: string,
    name: string,
    expectedHandledThrough: number,
    next: { handledThrough: number; lastFiredAt: number | undefined; lastInstanceId: string | undefined },
  ): Promise<boolean>;
}

/** One minute's finished instances of one status, for the console's throughput view. */
export interface FinishedCount {
  /** The minute's start, epoch milliseconds. */
  readonly minute: number;
  readonly status: TaskStatus;
  readonly count: number;
}

/** What the web console reads that the daemon's own work never needs; both stores implement it. */
export interface ConsoleStore {
  /** How many instances of the deployment have each status (statuses with none left out). */
  statusCounts(deploymentId: string): Promise<Partial<Record<TaskStatus, number>>>;
  /**
   * Instances of the deployment that finished at or after `since` (the start of a minute), counted
   * per minute and status.
   */
  finishedPerMinute(deploymentId: string, since: number): Promise<FinishedCount[]>;
}
