import { decodeValue } from "./codec.js";
import {
  TaskCancelledError,
  TaskError,
  type TaskErrorInfo,
  TaskTimeoutError,
  errorForFailure,
} from "./errors.js";
import type { AttemptRecord, Executor, InstanceSnapshot, LogsOptions, TaskLogLine } from "./executor.js";
import { failures } from "./failures.js";
import { type TaskStatus, isTerminalStatus } from "./task-status.js";

/** Options of {@link TaskInstanceState.wait} and `waitForCompletion`. */
export interface WaitOptions {
  /** Give up after this many milliseconds with {@link TaskTimeoutError}; the task goes on. */
  readonly timeoutMs?: number;
  /** Give up when this aborts, rejecting with its reason. */
  readonly signal?: AbortSignal;
}

/** An instance's state at one moment, decoded. */
export interface TaskSnapshot<R = unknown> {
  readonly id: string;
  readonly taskId: string;
  readonly taskName: string;
  readonly status: TaskStatus;
  readonly progress: number;
  readonly output: Record<string, unknown> | undefined;
  readonly result: R | undefined;
  readonly error: TaskErrorInfo | undefined;
  readonly createdAt: Date;
  readonly startedAt: Date | undefined;
  readonly finishedAt: Date | undefined;
  /** The current attempt (or the next, while it waits to retry), from 1. */
  readonly attempt: number;
  readonly attempts: readonly TaskAttempt[];
  readonly nextAttemptAt: Date | undefined;
  readonly scheduledFor: Date | undefined;
  readonly priority: number;
  readonly idempotencyKey: string | undefined;
  /** Platform: its workload's exit code, once known. */
  readonly exitCode: number | undefined;
  /** Platform: CPU time of its last attempt's workload. */
  readonly cpuSeconds: number | undefined;
  /** Platform: peak resident memory of its last attempt's workload. */
  readonly peakMemoryBytes: number | undefined;
}

/** One attempt of an instance. */
export interface TaskAttempt {
  readonly attempt: number;
  readonly startedAt: Date;
  readonly finishedAt: Date | undefined;
  /** Why it failed. */
  readonly error: TaskErrorInfo | undefined;
}

/**
 * A live handle on one task instance. Its fields follow the executor by themselves (a stream
 * in platform mode, never polling); read them any time, or follow them with
 * {@link TaskInstanceState.onChange} or `for await (const s of instance)`.
 *
 * In a polling loop, yield to the event loop (`await sleep(100)`): fields change between
 * turns of the loop, never inside a synchronous spin.
 */
export class TaskInstanceState<R = unknown> {
  readonly #executor: Executor;
  #snapshot: InstanceSnapshot;
  // Stored without R so a TaskInstanceState<number> is still a TaskInstanceState<unknown>.
  #listeners: Array<() => void> | undefined;
  #unwatch: (() => void) | undefined;
  /** Calls of `wait` still waiting, settled when the instance ends. */
  #waiters: Waiter<R> | Waiter<R>[] | undefined;
  /** The first plain `wait()`, the common case, kept without a waiter object. */
  #resolveFirst: ((value: unknown) => void) | undefined; // without R, as #listeners
  #rejectFirst: ((reason: unknown) => void) | undefined;
  #decodedOutput: { from: string; value: Record<string, unknown> } | undefined;
  #resultDecoded = false;
  #decodedResult: R | undefined;

  /** @internal Made by the SDK; use a task call or `getTaskInstance`. */
  constructor(executor: Executor, snapshot: InstanceSnapshot) {
    this.#executor = executor;
    this.#snapshot = snapshot;
    if (!isTerminalStatus(snapshot.status)) {
      this.#unwatch = executor.watch(snapshot.id, snapshot.revision, (next) => this.#update(next));
    }
  }

  get id(): string {
    return this.#snapshot.id;
  }
  get taskId(): string {
    return this.#snapshot.taskId;
  }
  get taskName(): string {
    return this.#snapshot.taskName;
  }
  get status(): TaskStatus {
    return this.#snapshot.status;
  }
  /** From 0 to 1. */
  get progress(): number {
    return this.#snapshot.progress;
  }
  /** The last object the task passed to `setOutput`. */
  get output(): Record<string, unknown> | undefined {
    const encoded = this.#snapshot.output;
    if (encoded === undefined) return undefined;
    if (this.#decodedOutput?.from !== encoded) {
      this.#decodedOutput = { from: encoded, value: decodeValue(encoded) as Record<string, unknown> };
    }
    return this.#decodedOutput.value;
  }
  /** The function's return value, once it returned one. */
  get result(): R | undefined {
    const encoded = this.#snapshot.result;
    if (encoded === undefined) return undefined;
    if (!this.#resultDecoded) {
      this.#decodedResult = decodeValue(encoded) as R;
      this.#resultDecoded = true;
    }
    return this.#decodedResult;
  }
  /** What the function threw, or why its workload died. */
  get error(): TaskErrorInfo | undefined {
    return this.#snapshot.error;
  }
  get createdAt(): Date {
    return new Date(this.#snapshot.createdAt);
  }
  get startedAt(): Date | undefined {
    return toDate(this.#snapshot.startedAt);
  }
  get finishedAt(): Date | undefined {
    return toDate(this.#snapshot.finishedAt);
  }
  /** The current attempt, or the next one while it waits to retry; from 1. */
  get attempt(): number {
    return this.#snapshot.attempt ?? 1;
  }
  /**
   * Each attempt so far: its start, end and error. An instance that may make only one attempt
   * keeps no list: its one attempt is its own start, end and error.
   */
  get attempts(): readonly TaskAttempt[] {
    const s = this.#snapshot;
    if (s.attempts !== undefined) return s.attempts.map(toAttempt);
    if (s.startedAt === undefined) return [];
    return [
      {
        attempt: 1,
        startedAt: new Date(s.startedAt),
        finishedAt: toDate(s.finishedAt),
        error: s.status === "failed" || s.status === "cancelled" ? s.error : undefined,
      },
    ];
  }
  /** While pending between attempts: when the next may start. */
  get nextAttemptAt(): Date | undefined {
    return toDate(this.#snapshot.nextAttemptAt);
  }
  /** A delayed instance's start time (`delayMs` or `startAt`). */
  get scheduledFor(): Date | undefined {
    return toDate(this.#snapshot.spec?.startAt);
  }
  get priority(): number {
    return this.#snapshot.spec?.priority ?? 0;
  }
  get idempotencyKey(): string | undefined {
    return this.#snapshot.spec?.idempotencyKey;
  }
  /**
   * Platform: its workload's exit code (128 + the signal's number when a signal killed it), once
   * known: when its own workload process ended, or when a pool worker died running it.
   */
  get exitCode(): number | undefined {
    return this.#snapshot.exitCode;
  }
  /** Platform: the CPU time (user and system) its last attempt's workload used. */
  get cpuSeconds(): number | undefined {
    return this.#snapshot.cpuSeconds;
  }
  /** Platform: the peak resident memory of its last attempt's workload (a pool worker's, so far). */
  get peakMemoryBytes(): number | undefined {
    return this.#snapshot.peakMemoryBytes;
  }

  /**
   * Its stdout and stderr (console output included), line by line as kept: the first part and
   * the most recent part of what it wrote, with a line saying how much was dropped between.
   * With `follow`, goes on with what it writes next and ends once it has ended.
   *
   * ```ts
   * for await (const { at, stream, line } of instance.logs({ follow: true, tail: 20 })) console.log(line);
   * ```
   * @throws {RangeError} when `tail` is not a whole number of at least 0.
   * @throws {TaskError} (code `LOGS_UNAVAILABLE`) when the executor keeps no logs.
   */
  logs(options: LogsOptions = {}): AsyncIterable<TaskLogLine> {
    const { tail } = options;
    if (tail !== undefined && !(Number.isInteger(tail) && tail >= 0)) {
      throw new RangeError(`logs: tail must be a whole number of at least 0, got ${String(tail)}`);
    }
    if (this.#executor.logs === undefined) {
      throw new TaskError("LOGS_UNAVAILABLE", "this executor keeps no logs of task instances");
    }
    return this.#executor.logs(this.id, options);
  }

  /** True once completed, failed or cancelled. */
  isDone(): boolean {
    return isTerminalStatus(this.#snapshot.status);
  }

  /** Requests a stop; see `stopTaskInstance`. */
  async stop(): Promise<void> {
    await this.#executor.stop(this.id);
  }

  /**
   * Waits for the end: resolves with the return value, or rejects as `waitForCompletion` does.
   */
  wait(options: WaitOptions = NO_OPTIONS): Promise<R> {
    // One promise per call, settled straight from the final update: no async function and no
    // await between the instance's end and the caller (a throw here rejects, as in an async
    // function).
    return new Promise<R>((resolve, reject) => {
      if (this.isDone()) {
        resolve(this.#settle());
        return;
      }
      const { timeoutMs, signal } = options;
      if (timeoutMs === undefined && signal === undefined) {
        if (this.#resolveFirst === undefined && this.#waiters === undefined) {
          this.#resolveFirst = resolve as (value: unknown) => void;
          this.#rejectFirst = reject;
        } else {
          this.#addWaiter({ resolve, reject });
        }
        return;
      }
      signal?.throwIfAborted();
      this.#waitBounded(timeoutMs, signal, resolve, reject);
    });
  }

  /** Calls `listener` after every change; returns a function that removes it. */
  onChange(listener: (instance: TaskInstanceState<R>) => void): () => void {
    const call = () => listener(this);
    (this.#listeners ??= []).push(call);
    return () => {
      const index = this.#listeners?.indexOf(call) ?? -1;
      if (index >= 0) this.#listeners?.splice(index, 1);
    };
  }

  /** The current state as a plain, decoded object. */
  snapshot(): TaskSnapshot<R> {
    return {
      id: this.id,
      taskId: this.taskId,
      taskName: this.taskName,
      status: this.status,
      progress: this.progress,
      output: this.output,
      result: this.result,
      error: this.error,
      createdAt: this.createdAt,
      startedAt: this.startedAt,
      finishedAt: this.finishedAt,
      attempt: this.attempt,
      attempts: this.attempts,
      nextAttemptAt: this.nextAttemptAt,
      scheduledFor: this.scheduledFor,
      priority: this.priority,
      idempotencyKey: this.idempotencyKey,
      exitCode: this.exitCode,
      cpuSeconds: this.cpuSeconds,
      peakMemoryBytes: this.peakMemoryBytes,
    };
  }

  /**
   * Every change from now on as a snapshot, ending after the final one. Snapshots a slow
   * reader missed are coalesced: it always sees the latest state, and always the last.
   */
  async *changes(options: { signal?: AbortSignal } = {}): AsyncGenerator<TaskSnapshot<R>, void> {
    let wake: (() => void) | undefined;
    let revision = -1;
    const off = this.onChange(() => wake?.());
    const onAbort = () => wake?.();
    options.signal?.addEventListener("abort", onAbort);
    try {
      while (!options.signal?.aborted) {
        if (this.#snapshot.revision !== revision) {
          revision = this.#snapshot.revision;
          const snapshot = this.snapshot();
          yield snapshot;
          if (isTerminalStatus(snapshot.status)) return;
          continue;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      off();
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  [Symbol.asyncIterator](): AsyncGenerator<TaskSnapshot<R>, void> {
    return this.changes();
  }

  toJSON(): TaskSnapshot<R> {
    return this.snapshot();
  }

  #update(next: InstanceSnapshot): void {
    if (next.revision <= this.#snapshot.revision) return;
    this.#snapshot = next;
    if (isTerminalStatus(next.status)) {
      this.#unwatch?.();
      this.#unwatch = undefined;
      const resolveFirst = this.#resolveFirst;
      const rejectFirst = this.#rejectFirst;
      const waiters = this.#waiters;
      this.#resolveFirst = undefined;
      this.#rejectFirst = undefined;
      this.#waiters = undefined;
      if (resolveFirst !== undefined && rejectFirst !== undefined)
        this.#settleWaiter(resolveFirst, rejectFirst);
      if (Array.isArray(waiters))
        for (const waiter of waiters) this.#settleWaiter(waiter.resolve, waiter.reject);
      else if (waiters !== undefined) this.#settleWaiter(waiters.resolve, waiters.reject);
    }
    if (this.#listeners === undefined) return;
    for (const listener of [...this.#listeners]) {
      try {
        listener();
      } catch (error) {
        // A listener's bug is the app's to see, but must not stop other listeners or the executor.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  #waitBounded(
    timeoutMs: number | undefined,
    signal: AbortSignal | undefined,
    resolve: (value: R) => void,
    reject: (reason: unknown) => void,
  ): void {
    let timer: NodeJS.Timeout | undefined;
    const waiter: Waiter<R> = {
      resolve: (value) => finish(() => resolve(value)),
      reject: (reason) => finish(() => reject(reason)),
    };
    const onAbort = () => {
      this.#dropWaiter(waiter);
      finish(() => reject(signal?.reason));
    };
    const finish = (settle: () => void) => {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      settle();
    };
    if (timeoutMs !== undefined) {
      timer = setTimeout(
        () => {
          this.#dropWaiter(waiter);
          finish(() => reject(new TaskTimeoutError(this.id, timeoutMs)));
        },
        Math.max(0, timeoutMs),
      );
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#addWaiter(waiter);
  }

  #addWaiter(waiter: Waiter<R>): void {
    const waiters = this.#waiters;
    if (waiters === undefined) this.#waiters = waiter;
    else if (Array.isArray(waiters)) waiters.push(waiter);
    else this.#waiters = [waiters, waiter];
  }

  #dropWaiter(waiter: Waiter<R>): void {
    const waiters = this.#waiters;
    if (waiters === waiter) {
      this.#waiters = undefined;
    } else if (Array.isArray(waiters)) {
      const index = waiters.indexOf(waiter);
      if (index >= 0) waiters.splice(index, 1);
    }
  }

  #settleWaiter(resolve: (value: R) => void, reject: (reason: unknown) => void): void {
    let value: R;
    try {
      value = this.#settle();
    } catch (error) {
      reject(error);
      return;
    }
    resolve(value);
  }

  #settle(): R {
    const snapshot = this.#snapshot;
    if (snapshot.result !== undefined && snapshot.status !== "failed") return this.result as R;
    if (snapshot.status === "cancelled") throw new TaskCancelledError(this.id, snapshot.error);
    throw errorForFailure(this.id, snapshot.error ?? failures.withoutReason(), snapshot.attempt ?? 1);
  }
}

const NO_OPTIONS: WaitOptions = Object.freeze({});

interface Waiter<R> {
  resolve(value: R): void;
  reject(reason: unknown): void;
}

function toAttempt(record: AttemptRecord): TaskAttempt {
  return {
    attempt: record.attempt,
    startedAt: new Date(record.startedAt),
    finishedAt: toDate(record.finishedAt),
    error: record.error,
  };
}

function toDate(time: number | undefined): Date | undefined {
  return time === undefined ? undefined : new Date(time);
}
