import type { Logger } from "pino";
import type { TaskErrorInfo } from "../../sdk/errors.js";
import type { AttemptRecord } from "../../sdk/executor.js";
import { failures } from "../../sdk/failures.js";
import { backoffDelay } from "../../sdk/run-options.js";
import { isTerminalStatus } from "../../sdk/task-status.js";
import type { StoredInstance } from "../store/store.js";
import type { ActiveInstance } from "./active-instance.js";
import type { DaemonState } from "./daemon-options.js";
import { Heap } from "../../sdk/heap.js";
import type { InstanceTable } from "./instance-table.js";
import type { Workers } from "./workers.js";
import type { WorkloadLauncher } from "./workload-launcher.js";

export interface RunQueueOptions {
  readonly table: InstanceTable;
  readonly workers: Workers;
  readonly state: DaemonState;
  readonly log: Logger;
  readonly concurrency: number;
  readonly stopGraceMs: number;
  /** Called when the queue ran dry while there is room: a cluster claims more then. */
  readonly onDrained: () => void;
  /**
   * Whether an instance waiting for its next attempt stays here (a lone daemon), or goes back
   * to the shared store for any daemon to claim once it is ready (a cluster: its concurrency
   * slot is then free while it waits).
   */
  readonly holdsRetries: boolean;
}

/** How an instance ended, as the daemon records it. */
export interface InstanceEnd {
  readonly result?: string | undefined;
  readonly error?: TaskErrorInfo | undefined;
  readonly output?: string | undefined;
}

interface Queued {
  readonly id: string;
  readonly priority: number;
  readonly position: number;
  /** Epoch ms; 0 when ready now. */
  readonly readyAt: number;
}

/** Higher priority first, then creation order. */
const readyFirst = (a: Queued, b: Queued): boolean =>
  a.priority !== b.priority ? a.priority > b.priority : a.position < b.position;
const dueFirst = (a: Queued, b: Queued): boolean => a.readyAt < b.readyAt;

/**
 * The instances waiting to run here and the slots they run in. Ready instances start by priority,
 * then first come first served; delayed ones (a `delayMs`, a retry's backoff) wait for their
 * time; a task's concurrency limits hold back what would pass them. It starts attempts, times
 * them out, ends them or retries them, and carries out stops (a stop ignored past its grace
 * period kills the workload).
 */
export class RunQueue {
  readonly #o: RunQueueOptions;
  #launcher: WorkloadLauncher | undefined;
  readonly #ready = new Heap<Queued>(readyFirst);
  readonly #delayed = new Heap<Queued>(dueFirst);
  #delayTimer: NodeJS.Timeout | undefined;
  #delayTimerAt = 0;
  /** Instances held back by a full concurrency limit, by the limit's key. */
  readonly #blocked = new Map<string, Queued[]>();
  /** Slots taken per limit key (a task's, and a task's per concurrency key). */
  readonly #taken = new Map<string, number>();
  #blockedCount = 0;
  #running = 0;
  #idleWaiters: Array<() => void> = [];

  constructor(options: RunQueueOptions) {
    this.#o = options;
  }

  /** Set once at start-up: the launcher and the queue each need the other. */
  useLauncher(launcher: WorkloadLauncher): void {
    this.#launcher = launcher;
  }

  /** Instances holding a slot. */
  get running(): number {
    return this.#running;
  }

  /** How many more instances this daemon could take on now. */
  room(): number {
    return Math.min(this.#o.concurrency - this.#running, this.#launcherOf().ready) - this.#ready.size;
  }

  /** Queues an instance held in the table; it starts when it is ready and a slot is free, unless it ended first. */
  enqueue(id: string): void {
    const active = this.#o.table.get(id);
    if (active === undefined || active.queued) return;
    active.queued = true;
    const row = active.row;
    const entry: Queued = { id, priority: row.priority, position: row.position, readyAt: row.readyAt };
    if (row.readyAt > Date.now()) {
      this.#delayed.push(entry);
      this.#armDelayTimer();
    } else this.#ready.push(entry);
  }

  /** Starts ready instances while there are free slots. */
  pump(): void {
    const state = this.#o.state;
    if (!state.accepting || !state.listening || state.stopped) return;
    const launcher = this.#launcherOf();
    const table = this.#o.table;
    while (this.#running < this.#o.concurrency && this.#ready.size > 0) {
      if (launcher.ready === 0) break;
      const entry = this.#ready.pop() as Queued;
      const active = table.get(entry.id);
      if (active === undefined || active.row.status !== "pending" || !active.queued) continue;
      const limits = limitKeys(active.row);
      if (limits !== undefined && !this.#admit(active.row, limits)) {
        const key = limits[0] as string;
        const list = this.#blocked.get(key);
        if (list === undefined) this.#blocked.set(key, [entry]);
        else list.push(entry);
        this.#blockedCount++;
        continue;
      }
      active.queued = false;
      this.#running++;
      active.holdsSlot = true;
      if (limits !== undefined)
        for (const key of limits) this.#taken.set(key, (this.#taken.get(key) ?? 0) + 1);
      launcher.start(active);
    }
    if (this.#ready.size === 0) this.#o.onDrained();
  }

  /**
   * A running instance recovered after a restart: it holds its slot while its workload has
   * `windowMs` to reattach, and fails once that passes without it.
   */
  holdOrphan(active: ActiveInstance, windowMs: number): void {
    this.#running++;
    active.holdsSlot = true;
    const limits = limitKeys(active.row);
    if (limits !== undefined) for (const key of limits) this.#taken.set(key, (this.#taken.get(key) ?? 0) + 1);
    active.orphanTimer = setTimeout(() => {
      if (active.worker === undefined && !isTerminalStatus(active.row.status)) {
        this.finish(active, "failed", { error: failures.workloadLost(windowMs) });
      }
    }, windowMs);
  }

  /**
   * An attempt begins to run (its workload has it): the row turns running, the attempt is
   * recorded (a later attempt starts with progress and output reset). `now`: when it began, if
   * not now (a cluster counts from the statement that showed its row had no stop).
   */
  began(active: ActiveInstance, now = Date.now()): void {
    const row = active.row;
    const attempts: AttemptRecord[] | undefined =
      row.maxAttempts > 1 || row.attempt > 1
        ? [...(row.attempts ?? []), { attempt: row.attempt, startedAt: now }]
        : row.attempts === undefined
          ? undefined
          : [...row.attempts];
    this.#o.table.change(active, {
      status: "running",
      startedAt: now,
      ...(row.attempt > 1 ? { progress: 0, output: undefined } : {}),
      ...(attempts === undefined ? {} : { attempts }),
    });
  }

  /**
   * The workload is about to call the task function (its module is loaded): the attempt's
   * timeout starts now, so a fresh process's start-up is not counted against the task.
   */
  functionStarted(active: ActiveInstance): void {
    const timeoutMs = active.row.spec?.timeoutMs;
    if (timeoutMs === undefined || active.row.status !== "running" || active.timeoutTimer !== undefined)
      return;
    active.timeoutTimer = setTimeout(() => this.#timeOut(active, timeoutMs), timeoutMs);
  }

  /**
   * Ends the current attempt. A failed attempt (or one that timed out) is retried when attempts
   * remain, unless a user stopped it or it threw `NonRetryableError`; otherwise the instance ends.
   */
  finish(active: ActiveInstance, status: "completed" | "failed" | "cancelled", end: InstanceEnd): void {
    if (isTerminalStatus(active.row.status)) return;
    let final = status;
    let error = end.error;
    let result = end.result;
    const timeoutMs = active.row.spec?.timeoutMs;
    if (active.timedOut && !active.userStopped && timeoutMs !== undefined) {
      final = "failed";
      error = failures.attemptTimedOut(active.row.id, timeoutMs);
      result = undefined;
    }
    this.#release(active);
    const row = active.row;
    const retry =
      final === "failed" &&
      !active.userStopped &&
      row.attempt < row.maxAttempts &&
      error?.code !== "NON_RETRYABLE" &&
      !this.#o.state.stopped;
    const now = Date.now();
    // The attempt that just ended, closed with its end and error.
    const attempts = closeAttempt(row, now, final === "completed" ? undefined : error);
    if (retry) {
      this.#retry(active, attempts, error, now);
    } else {
      this.#o.table.change(active, {
        status: final,
        result,
        error,
        args: undefined,
        finishedAt: now,
        progress: final === "completed" ? 1 : row.progress,
        readyAt: 0,
        ...(attempts === undefined ? {} : { attempts }),
        ...(end.output === undefined ? {} : { output: end.output }),
      });
    }
    queueMicrotask(() => this.pump());
  }

  /** Stops an instance held here: a pending one never runs; a running one is asked, then killed after the grace. */
  stop(active: ActiveInstance): void {
    active.userStopped = true;
    if (active.row.status === "pending") {
      // Its process may be starting: it never gets to run the task.
      const worker = active.worker;
      if (worker !== undefined) {
        this.#o.workers.detach(worker);
        this.#o.workers.kill(worker);
      }
      this.finish(active, "cancelled", {});
      return;
    }
    if (active.stopRequested) return;
    this.#o.workers.send(active.worker, {
      kind: { $case: "stop", value: { instanceId: active.row.id, timeoutMs: 0 } },
    });
    this.stopRequested(active, Date.now());
  }

  /**
   * Records a stop asked for at `at` (ms since the epoch): the workload is killed when its grace
   * period is over. Returns the milliseconds left of it.
   */
  stopRequested(active: ActiveInstance, at: number): number {
    const left = Math.max(0, at + this.#o.stopGraceMs - Date.now());
    active.stopRequested = true;
    clearTimeout(active.stopTimer);
    active.stopTimer = setTimeout(() => this.#forceStop(active), left);
    return left;
  }

  /** Resolves when no instance holds a slot. */
  whenIdle(): Promise<void> {
    return new Promise<void>((done) => {
      if (this.#running === 0) done();
      else this.#idleWaiters.push(done);
    });
  }

  /** On shutdown: no timer of an instance fires any more. */
  clearTimers(instances: Iterable<ActiveInstance>): void {
    clearTimeout(this.#delayTimer);
    this.#delayTimer = undefined;
    for (const active of instances) {
      clearTimeout(active.stopTimer);
      clearTimeout(active.orphanTimer);
      clearTimeout(active.timeoutTimer);
    }
  }

  /** The attempt ran past its timeout: asked to stop as by `stop()`, killed after the grace. */
  #timeOut(active: ActiveInstance, timeoutMs: number): void {
    if (active.row.status !== "running" || active.stopRequested) return;
    active.timedOut = true;
    this.#o.log.info({ instance: active.row.id, timeoutMs }, "attempt timed out: stopping it");
    this.#o.workers.send(active.worker, {
      kind: { $case: "stop", value: { instanceId: active.row.id, timeoutMs } },
    });
    this.stopRequested(active, Date.now());
  }

  #forceStop(active: ActiveInstance): void {
    if (isTerminalStatus(active.row.status) || active.row.status === "pending") return;
    const worker = active.worker;
    const graceMs = this.#o.stopGraceMs;
    this.#o.log.warn({ instance: active.row.id, graceMs }, "task ignored its stop: killing its workload");
    if (worker) this.#o.workers.detach(worker);
    this.finish(active, "cancelled", { error: failures.stopGraceExceeded(graceMs) });
    if (worker) {
      this.#o.workers.kill(worker);
      worker.call?.end();
    }
  }

  /** The attempt failed and another remains: pending again until its backoff is over. */
  #retry(
    active: ActiveInstance,
    attempts: readonly AttemptRecord[] | undefined,
    error: TaskErrorInfo | undefined,
    now: number,
  ): void {
    const row = active.row;
    const next = row.attempt + 1;
    const readyAt = now + backoffDelay(row.spec ?? {}, next);
    this.#o.log.info(
      { instance: row.id, attempt: row.attempt, next, readyAt, error: error?.message },
      "attempt failed: retrying",
    );
    const held = this.#o.holdsRetries;
    this.#o.table.change(active, {
      status: "pending",
      attempt: next,
      readyAt,
      error: undefined,
      attempts,
      ...(held ? {} : { owner: "" }),
    });
    active.stopRequested = false;
    active.timedOut = false;
    active.worker = undefined;
    if (held) this.enqueue(row.id);
    else active.released = true;
  }

  /** The instance gives up its slot, its limits and its timers. */
  #release(active: ActiveInstance): void {
    clearTimeout(active.stopTimer);
    clearTimeout(active.orphanTimer);
    clearTimeout(active.timeoutTimer);
    active.timeoutTimer = undefined;
    active.queued = false;
    if (!active.holdsSlot) return;
    active.holdsSlot = false;
    const limits = limitKeys(active.row);
    if (limits !== undefined) {
      for (const key of limits) this.#taken.set(key, (this.#taken.get(key) ?? 1) - 1);
      this.#unblock(limits);
    }
    this.#running--;
    if (this.#running === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const waiter of waiters) waiter();
    }
  }

  /** Whether `row` fits under its limits now. */
  #admit(row: StoredInstance, limits: readonly string[]): boolean {
    if (row.concurrencyLimit > 0 && (this.#taken.get(limits[0] as string) ?? 0) >= row.concurrencyLimit) {
      return false;
    }
    const perKey = limits[1];
    return !(
      perKey !== undefined &&
      row.perKeyLimit > 0 &&
      (this.#taken.get(perKey) ?? 0) >= row.perKeyLimit
    );
  }

  /** A slot under `limits` came free: what waited on the task's limit may fit now. */
  #unblock(limits: readonly string[]): void {
    if (this.#blockedCount === 0) return;
    const list = this.#blocked.get(limits[0] as string);
    if (list === undefined) return;
    this.#blocked.delete(limits[0] as string);
    this.#blockedCount -= list.length;
    for (const entry of list) this.#ready.push(entry);
  }

  #armDelayTimer(): void {
    const next = this.#delayed.peek();
    if (next === undefined) return;
    if (this.#delayTimer !== undefined && this.#delayTimerAt <= next.readyAt) return;
    clearTimeout(this.#delayTimer);
    this.#delayTimerAt = next.readyAt;
    this.#delayTimer = setTimeout(() => this.#due(), Math.max(0, next.readyAt - Date.now()));
    this.#delayTimer.unref();
  }

  /** Moves what is due from the delayed heap to the ready one. */
  #due(): void {
    this.#delayTimer = undefined;
    const now = Date.now();
    for (
      let next = this.#delayed.peek();
      next !== undefined && next.readyAt <= now;
      next = this.#delayed.peek()
    ) {
      this.#ready.push(this.#delayed.pop() as Queued);
    }
    this.#armDelayTimer();
    this.pump();
  }

  #launcherOf(): WorkloadLauncher {
    if (this.#launcher === undefined) throw new Error("the run queue has no launcher yet");
    return this.#launcher;
  }
}

/** The keys of a limited instance's limits: its task's, then its concurrency key's; undefined when unlimited. */
function limitKeys(row: StoredInstance): readonly string[] | undefined {
  if (row.concurrencyLimit === 0 && row.perKeyLimit === 0) return undefined;
  const task = `${row.deploymentId}\u0000${row.taskName}`;
  return row.perKeyLimit > 0 && row.concurrencyKey !== undefined
    ? [task, `${task}\u0000${row.concurrencyKey}`]
    : [task];
}

/** The attempts with the last one (if it is open) closed at `now` with `error`. */
function closeAttempt(
  row: StoredInstance,
  now: number,
  error: TaskErrorInfo | undefined,
): readonly AttemptRecord[] | undefined {
  const attempts = row.attempts;
  const last = attempts?.at(-1);
  if (attempts === undefined || last === undefined || last.finishedAt !== undefined) return attempts;
  return [...attempts.slice(0, -1), { ...last, finishedAt: now, ...(error === undefined ? {} : { error }) }];
}
