import type { EncodedValue } from "./codec.js";
import type { TaskErrorInfo } from "./errors.js";
import type { RunSpec } from "./run-options.js";
import type { TaskStatus } from "./task-status.js";

/** One attempt of an instance that may be retried. Epoch milliseconds. */
export interface AttemptRecord {
  readonly attempt: number;
  readonly startedAt: number;
  readonly finishedAt?: number | undefined;
  /** Why it failed; absent for the attempt that ended the instance otherwise. */
  readonly error?: TaskErrorInfo | undefined;
}

/** A task as executors know it: `id` depends only on `name`. */
export interface TaskDefinition {
  readonly id: string;
  readonly name: string;
}

/**
 * One instance at one moment. Plain data, so it can cross any transport; values are
 * codec-encoded and decoded by the SDK only when read.
 */
export interface InstanceSnapshot {
  readonly id: string;
  readonly taskId: string;
  readonly taskName: string;
  readonly status: TaskStatus;
  readonly progress: number;
  /** The last `setOutput` object, encoded. */
  readonly output?: EncodedValue | undefined;
  /** The function's return value, encoded; present exactly when it returned one. */
  readonly result?: EncodedValue | undefined;
  readonly error?: TaskErrorInfo | undefined;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly startedAt?: number | undefined;
  readonly finishedAt?: number | undefined;
  /** Grows with every change, so a watcher can tell old news from new. */
  readonly revision: number;
  /** The run options it was made with (absent: all defaults). */
  readonly spec?: RunSpec | undefined;
  /** The current attempt, or the next one while it waits to retry; 1-based, absent means 1. */
  readonly attempt?: number | undefined;
  /** Each attempt that ended before the current one, and the current one once it started. */
  readonly attempts?: readonly AttemptRecord[] | undefined;
  /** While pending between attempts: when the next one may start (epoch ms). */
  readonly nextAttemptAt?: number | undefined;
  /** Platform: its workload's exit code (128 + the signal's number when killed by one), once known. */
  readonly exitCode?: number | undefined;
  /** Platform: the CPU time its last attempt's workload used, once it ended. */
  readonly cpuSeconds?: number | undefined;
  /** Platform: the peak resident memory of its last attempt's workload, once it ended. */
  readonly peakMemoryBytes?: number | undefined;
}

/** One line a task instance wrote to stdout or stderr (console output included). */
export interface TaskLogLine {
  /** When it was written (read, for a workload's own pipes). */
  readonly at: Date;
  readonly stream: "stdout" | "stderr";
  /** Without its line break. */
  readonly line: string;
}

/** Options of `instance.logs()` and {@link Executor.logs}. */
export interface LogsOptions {
  /**
   * After the lines kept so far, go on with each line the instance writes next, until it has
   * ended (the iteration then ends by itself). Default false: only what is kept now.
   */
  readonly follow?: boolean;
  /** Only the last this many lines of what is kept (with `follow`, then the new ones). Default: all. */
  readonly tail?: number;
  /** Ends the iteration early, throwing the signal's reason. */
  readonly signal?: AbortSignal;
}

/** What calling a task hands its executor. */
export interface SubmitRequest {
  readonly id: string;
  readonly taskId: string;
  readonly taskName: string;
  /** The argument list, encoded. */
  readonly args: EncodedValue;
  readonly createdAt: number;
  /** The file that defined the task, so a daemon knows which module a workload imports. */
  readonly module: string;
  /** Its run options; absent for all defaults. */
  readonly spec?: RunSpec | undefined;
  /**
   * The call's OpenTelemetry trace context, a JSON object of the propagator's fields; absent
   * when nothing traces. Each attempt's span links to it.
   */
  readonly traceContext?: string | undefined;
}

/** The most instances one list call returns, and what it returns when given no limit. */
export const MAX_LIST_LIMIT = 1000;

/** How many instances a list call returns at most: its limit, within 1 and {@link MAX_LIST_LIMIT}. */
export function listLimit(query: InstanceQuery): number {
  return Math.min(Math.max(1, Math.floor(query.limit ?? MAX_LIST_LIMIT)), MAX_LIST_LIMIT);
}

/** A page of instances, in creation order. */
export interface InstanceQuery {
  /** A task's id or name. */
  readonly task?: string | undefined;
  readonly status?: readonly TaskStatus[] | undefined;
  /** At most this many (default and cap {@link MAX_LIST_LIMIT}); fewer only on the last page. */
  readonly limit?: number | undefined;
  /** The id of the last instance of the previous page. */
  readonly cursor?: string | undefined;
}

export interface InstancePage {
  readonly instances: readonly InstanceSnapshot[];
  /** Pass as `cursor` for the next page; absent on the last page. */
  readonly nextCursor?: string | undefined;
}

/**
 * The contract every executor implements: in-process, over a daemon, or your own. It holds no
 * transport type. The same contract test suite (`test/executor-contract.ts`) runs against each.
 */
export interface Executor {
  /**
   * The namespace instances live in (the platform's deployment), which scopes idempotency keys:
   * the id an idempotency key gives depends on it. Absent: one namespace.
   */
  readonly namespace?: string | undefined;
  /**
   * Starts an instance. Called synchronously when a task is called and must not block or throw
   * for transport reasons: an executor that cannot reach its backend fails the instance
   * instead. Returns the pending snapshot.
   */
  submit(request: SubmitRequest): InstanceSnapshot;
  /** The latest snapshot, or `undefined` for an unknown id. */
  get(id: string, options?: { signal?: AbortSignal }): Promise<InstanceSnapshot | undefined>;
  list(query: InstanceQuery, options?: { signal?: AbortSignal }): Promise<InstancePage>;
  listDefinitions(options?: { signal?: AbortSignal }): Promise<readonly TaskDefinition[]>;
  /**
   * Requests a stop. Pending instances become cancelled and never run (also between attempts);
   * running ones see `shouldStop()`. A stopped instance is never retried. Resolves `false` for
   * an unknown id.
   */
  stop(id: string, options?: { signal?: AbortSignal }): Promise<boolean>;
  /**
   * Calls `listener` with every snapshot of `id` newer than `afterRevision`, until a terminal
   * one (then the watch ends by itself) or until the returned function is called.
   */
  watch(id: string, afterRevision: number, listener: (snapshot: InstanceSnapshot) => void): () => void;
  /**
   * The instance's stdout and stderr lines as the executor keeps them, bounded per instance: the
   * first part and the most recent part, with a line saying what was dropped between. Optional:
   * an executor without it keeps no logs. The iteration throws `TaskNotFoundError` for an
   * unknown id.
   */
  logs?(id: string, options: LogsOptions): AsyncIterable<TaskLogLine>;
  /** Releases connections and timers; running local work is not awaited. */
  close(): Promise<void>;
}
