import type { EncodedValue } from "../sdk/codec.js";
import type { TaskErrorInfo } from "../sdk/errors.js";
import type { AttemptRecord, InstanceSnapshot } from "../sdk/executor.js";
import { failures } from "../sdk/failures.js";
import { type RunSpec, backoffDelay, maxAttemptsOf } from "../sdk/run-options.js";
import type { TaskOutcome } from "../sdk/run-task-function.js";
import type { ControllerSink, TaskControllerImpl } from "../sdk/task-controller.js";
import { type TaskStatus, isTerminalStatus } from "../sdk/task-status.js";

export type Listener = (snapshot: InstanceSnapshot) => void;

/**
 * One instance. It is also its controller's sink: what the running function reports goes
 * straight into its snapshot, with no closures made per instance.
 */
export class Entry implements ControllerSink {
  snapshot: InstanceSnapshot;
  /** Until the instance starts. */
  args: string | undefined;
  controller: TaskControllerImpl | undefined = undefined;
  /** One listener as itself (the common case: the instance's handle), more as an array. */
  listeners: Listener | Listener[] | undefined = undefined;
  /** The call's trace context, which each attempt's span links to. */
  traceContext: string | undefined = undefined;

  constructor(
    snapshot: InstanceSnapshot,
    args: string,
    /** Position in creation order, for cursors, and for first come, first served. */
    readonly index: number,
  ) {
    this.snapshot = snapshot;
    this.args = args;
  }

  progress(progress: number): void {
    const s = this.snapshot;
    publish(this, s.status, progress, s.output, s.result, s.error, s.startedAt, s.finishedAt);
  }

  output(output: EncodedValue): void {
    const s = this.snapshot;
    publish(this, s.status, s.progress, output, s.result, s.error, s.startedAt, s.finishedAt);
  }
}

/**
 * An instance made with run options (SPEC §4). A subclass, so that an instance without any
 * (the common case, and the hot path) carries none of these fields.
 */
export class OptionEntry extends Entry {
  readonly spec: RunSpec;
  /** The arguments, kept for every attempt. */
  readonly encodedArgs: string;
  readonly priority: number;
  readonly maxAttempts: number;
  /** The current attempt, or the next one while it waits to retry. */
  attempt = 1;
  /** Recorded only when a retry is possible, as the platform does. */
  attempts: readonly AttemptRecord[] | undefined = undefined;
  nextAttemptAt: number | undefined = undefined;
  /** Its start delay, its backoff or its attempt's timeout: one at a time. */
  timer: NodeJS.Timeout | undefined = undefined;
  /** The current attempt ran past `timeoutMs` and was asked to stop. */
  timedOut = false;
  /** A user asked for a stop: whatever happens next is final. */
  stopped = false;

  constructor(snapshot: InstanceSnapshot, args: string, index: number, spec: RunSpec) {
    super(snapshot, args, index);
    this.args = undefined;
    this.encodedArgs = args;
    this.spec = spec;
    this.priority = spec.priority ?? 0;
    this.maxAttempts = maxAttemptsOf(spec);
  }

  get waiting(): boolean {
    return this.snapshot.status === "pending";
  }

  /** An attempt starts at `now`: recorded when a retry is possible. */
  beginAttempt(now: number): void {
    if (this.maxAttempts > 1)
      this.attempts = [...(this.attempts ?? []), { attempt: this.attempt, startedAt: now }];
    this.nextAttemptAt = undefined;
    this.timedOut = false;
  }

  /**
   * The attempt ended at `now` as `outcome` says. One that timed out failed by its timeout,
   * whatever it returned or threw, unless a user stopped it. A failed attempt is retried when
   * attempts remain, unless a user stopped it or it threw `NonRetryableError`: then `attempt`
   * and `nextAttemptAt` name the next one and `retry` is true. Otherwise the instance ends as
   * returned, and `attempt` is the number of attempts made.
   */
  endAttempt(
    outcome: TaskOutcome,
    now: number,
    mayRetry: boolean,
  ): {
    status: TaskStatus;
    result: EncodedValue | undefined;
    error: TaskErrorInfo | undefined;
    retry: boolean;
  } {
    let status: TaskStatus = outcome.status;
    let error = "error" in outcome ? outcome.error : undefined;
    let result = "result" in outcome ? outcome.result : undefined;
    const timeoutMs = this.spec.timeoutMs;
    if (this.timedOut && !this.stopped && timeoutMs !== undefined) {
      status = "failed";
      error = failures.attemptTimedOut(this.snapshot.id, timeoutMs);
      result = undefined;
    }
    const attempts = this.attempts;
    const last = attempts?.at(-1);
    if (attempts !== undefined && last !== undefined) {
      const failed = status !== "completed" && error !== undefined;
      this.attempts = [...attempts.slice(0, -1), { ...last, finishedAt: now, ...(failed ? { error } : {}) }];
    }
    const retry =
      mayRetry &&
      status === "failed" &&
      !this.stopped &&
      this.attempt < this.maxAttempts &&
      error?.code !== "NON_RETRYABLE";
    if (retry) {
      this.attempt++;
      this.nextAttemptAt = now + backoffDelay(this.spec, this.attempt);
    }
    return { status, result, error, retry };
  }
}

/** Higher priority first, then creation order. */
export function readyFirst(a: OptionEntry, b: OptionEntry): boolean {
  return a.priority !== b.priority ? a.priority > b.priority : a.index < b.index;
}

export function snapshotOf(found: Entry | InstanceSnapshot): InstanceSnapshot {
  return found instanceof Entry ? found.snapshot : found;
}

/**
 * Gives `entry` its next snapshot and tells its listeners; nothing changes once it ended. Every
 * field is passed, so each snapshot is one object literal of one shape (two: an instance with
 * run options also carries them and its attempts).
 */
export function publish(
  entry: Entry,
  status: TaskStatus,
  progress: number,
  output: EncodedValue | undefined,
  result: EncodedValue | undefined,
  error: TaskErrorInfo | undefined,
  startedAt: number | undefined,
  finishedAt: number | undefined,
): void {
  const s = entry.snapshot;
  if (isTerminalStatus(s.status)) return;
  const snapshot: InstanceSnapshot =
    entry instanceof OptionEntry
      ? {
          id: s.id,
          taskId: s.taskId,
          taskName: s.taskName,
          status,
          progress,
          output,
          result,
          error,
          createdAt: s.createdAt,
          startedAt,
          finishedAt,
          revision: s.revision + 1,
          spec: entry.spec,
          attempt: entry.attempt,
          attempts: entry.attempts,
          nextAttemptAt: entry.nextAttemptAt,
        }
      : {
          id: s.id,
          taskId: s.taskId,
          taskName: s.taskName,
          status,
          progress,
          output,
          result,
          error,
          createdAt: s.createdAt,
          startedAt,
          finishedAt,
          revision: s.revision + 1,
        };
  entry.snapshot = snapshot;
  const listeners = entry.listeners;
  if (listeners === undefined) return;
  if (isTerminalStatus(status)) entry.listeners = undefined;
  if (typeof listeners === "function") listeners(snapshot);
  else for (const listener of [...listeners]) listener(snapshot);
}
