import type { TaskErrorInfo } from "../../sdk/errors.js";
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

/**
 * Where the daemon keeps instances and definitions durably. The embedded SQLite store is the
 * default; a shared PostgreSQL store implements the same contract. All methods may be called
 * concurrently; `save` must be atomic for its whole batch and durable when it resolves.
 */
export interface Store {
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
  close(): Promise<void>;
}
