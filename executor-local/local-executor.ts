import {
  type Executor,
  type InstancePage,
  type InstanceQuery,
  type InstanceSnapshot,
  type LogsOptions,
  type SubmitRequest,
  type TaskDefinition,
  type TaskLogLine,
  listLimit,
} from "../sdk/executor.js";
import { TaskNotFoundError, TaskTimeoutError } from "../sdk/errors.js";
import { type AnyTaskFunction, runTaskFunction, type TaskOutcome } from "../sdk/run-task-function.js";
import { TaskControllerImpl } from "../sdk/task-controller.js";
import { isTerminalStatus } from "../sdk/task-status.js";
import { IdIndex } from "./id-index.js";
import { LocalScheduler } from "./local-scheduler.js";
import type { ScheduleExecutor, ScheduleRecord, ScheduleSnapshot } from "../sdk/schedules.js";
import { findTaskFunction, localDefinitions } from "../sdk/task.js";
import { DEFAULT_CONCURRENCY } from "../sdk/config.js";
import { failures } from "../sdk/failures.js";
import { isTracing, runInProcessSpan } from "../sdk/tracing.js";
import { ConcurrencyGates } from "./concurrency-gates.js";
import { Entry, type Listener, OptionEntry, publish, readyFirst, snapshotOf } from "./entry.js";
import { Heap } from "../sdk/heap.js";
import { DEFAULT_LOG_BYTES } from "../sdk/log-lines.js";
import { installOutputCapture } from "../sdk/output-capture.js";
import { LocalLogs } from "./local-logs.js";

/** Options of {@link LocalExecutor}. */
export interface LocalExecutorOptions {
  /**
   * How many instances run at once; the rest wait `pending`, higher priority first, then in
   * creation order. Default 4.
   */
  readonly concurrency?: number;
  /**
   * Console output kept per instance, in bytes: the first quarter of it and the most recent
   * rest. Default 1 MiB; 0 keeps none. Output is written to the terminal as well.
   */
  readonly logBytes?: number;
}

/**
 * Runs instances in this process: zero configuration, for development and tests. Instances run
 * on a decoded copy of their arguments, as on the platform.
 *
 * Instances without run options take the fast path: first come, first served from the creation
 * order itself. Those with options (SPEC §4) wait in a priority queue once they are ready (their
 * delay or backoff over), held back by their task's concurrency limits where those are full;
 * each free slot goes to the better of the two queues' heads (no options means priority 0).
 */
export class LocalExecutor implements Executor, ScheduleExecutor {
  readonly #concurrency: number;
  /** Each instance's position in #order. */
  readonly #indexes = new IdIndex(
    (position) => snapshotOf(this.#order[position] as Entry | InstanceSnapshot).id,
  );
  /**
   * Every instance in creation order: its entry while it may change, its final snapshot once
   * it ended (so a finished instance holds one object less). Those without options from #next
   * on may still wait to start.
   */
  readonly #order: Array<Entry | InstanceSnapshot> = [];
  #next = 0;
  /** Instances with run options that are ready to start, best first; stopped ones are dropped when met. */
  readonly #ready = new Heap<OptionEntry>(readyFirst);
  readonly #gates = new ConcurrencyGates((entry) => this.#ready.push(entry));
  /** Instances with a timer running: their delay, backoff or attempt timeout. */
  readonly #timed = new Set<OptionEntry>();
  #running = 0;
  #pumpScheduled = false;
  #pumping = false;
  #closed = false;
  /** The entry submitted last: a handle watches it right away, and needs no lookup for that. */
  #submitted: Entry | undefined;
  /** Console output of each instance that wrote any; undefined when none is kept. */
  readonly #logs: LocalLogs | undefined;

  constructor(options: LocalExecutorOptions = {}) {
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`concurrency must be a whole number of at least 1, got ${concurrency}`);
    }
    this.#concurrency = concurrency;
    const logBytes = options.logBytes ?? DEFAULT_LOG_BYTES;
    if (!Number.isInteger(logBytes) || logBytes < 0) {
      throw new RangeError(`logBytes must be a whole number of at least 0, got ${logBytes}`);
    }
    if (logBytes > 0) {
      this.#logs = new LocalLogs(logBytes);
      installOutputCapture();
    }
  }

  /** Submitting an id again (an idempotency key's id too) returns the instance it already names. */
  submit(request: SubmitRequest): InstanceSnapshot {
    const existing = this.#find(request.id);
    if (existing !== undefined) return snapshotOf(existing);
    if (request.spec !== undefined) return this.#submitWithOptions(request);
    const snapshot: InstanceSnapshot = {
      id: request.id,
      taskId: request.taskId,
      taskName: request.taskName,
      status: "pending",
      progress: 0,
      output: undefined,
      result: undefined,
      error: undefined,
      createdAt: request.createdAt,
      startedAt: undefined,
      finishedAt: undefined,
      revision: 1,
    };
    const entry = new Entry(snapshot, request.args, this.#indexes.add(request.id));
    if (request.traceContext !== undefined) entry.traceContext = request.traceContext;
    this.#order.push(entry);
    this.#submitted = entry;
    this.#schedulePump();
    return snapshot;
  }

  async get(id: string): Promise<InstanceSnapshot | undefined> {
    const found = this.#find(id);
    return found === undefined ? undefined : snapshotOf(found);
  }

  async list(query: InstanceQuery): Promise<InstancePage> {
    const limit = listLimit(query);
    let start = 0;
    if (query.cursor !== undefined) {
      const after = this.#indexes.get(query.cursor);
      start = after === undefined ? this.#order.length : after + 1;
    }
    const statuses = query.status === undefined ? undefined : new Set(query.status);
    const instances: InstanceSnapshot[] = [];
    let i = start;
    for (; i < this.#order.length && instances.length < limit; i++) {
      const snapshot = snapshotOf(this.#order[i] as Entry | InstanceSnapshot);
      if (query.task !== undefined && snapshot.taskName !== query.task && snapshot.taskId !== query.task) {
        continue;
      }
      if (statuses !== undefined && !statuses.has(snapshot.status)) continue;
      instances.push(snapshot);
    }
    const last = instances.at(-1);
    return i < this.#order.length && last !== undefined ? { instances, nextCursor: last.id } : { instances };
  }

  async listDefinitions(): Promise<readonly TaskDefinition[]> {
    return localDefinitions();
  }

  async stop(id: string): Promise<boolean> {
    const entry = this.#find(id);
    if (entry === undefined) return false;
    if (!(entry instanceof Entry)) return true;
    const s = entry.snapshot;
    if (entry instanceof OptionEntry) {
      // A user's stop is final: no attempt starts after it, whether it came while the
      // instance waited for its start time, its turn or its next attempt, or while it ran.
      entry.stopped = true;
      if (s.status === "pending") {
        this.#clearTimer(entry);
        entry.nextAttemptAt = undefined;
      }
    }
    if (s.status === "pending") {
      entry.args = undefined;
      publish(entry, "cancelled", s.progress, s.output, s.result, s.error, s.startedAt, Date.now());
      this.#ended(entry);
    } else if (s.status === "running") {
      entry.controller?.requestStop();
    }
    return true;
  }

  watch(id: string, afterRevision: number, listener: Listener): () => void {
    const submitted = this.#submitted;
    const found = submitted !== undefined && submitted.snapshot.id === id ? submitted : this.#find(id);
    if (found === undefined) return () => {};
    const current = snapshotOf(found);
    if (current.revision > afterRevision) {
      queueMicrotask(() => listener(current));
      if (isTerminalStatus(current.status)) return () => {};
    }
    // An instance that ended has no entry: nothing will change any more.
    if (!(found instanceof Entry)) return () => {};
    const entry = found;
    const listeners = entry.listeners;
    if (listeners === undefined) entry.listeners = listener;
    else if (typeof listeners === "function") entry.listeners = [listeners, listener];
    else listeners.push(listener);
    return () => {
      const current = entry.listeners;
      if (current === listener) {
        entry.listeners = undefined;
      } else if (Array.isArray(current)) {
        const index = current.indexOf(listener);
        if (index >= 0) current.splice(index, 1);
      }
    };
  }

  logs(id: string, options: LogsOptions = {}): AsyncIterable<TaskLogLine> {
    return this.#readLogs(id, options);
  }

  async *#readLogs(id: string, options: LogsOptions): AsyncGenerator<TaskLogLine, void> {
    const found = this.#find(id);
    if (found === undefined) throw new TaskNotFoundError(id);
    if (this.#logs === undefined) return;
    if (isTerminalStatus(snapshotOf(found).status)) this.#logs.end(id);
    yield* this.#logs.read(id, options, (onEnd) =>
      this.watch(id, 0, (snapshot) => {
        if (isTerminalStatus(snapshot.status)) onEnd();
      }),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const entry of this.#timed) clearTimeout(entry.timer);
    this.#timed.clear();
    this.#scheduler?.close();
  }

  // Schedules (SPEC §5), fired in this process.
  #scheduler: LocalScheduler | undefined;

  #schedules(): LocalScheduler {
    this.#scheduler ??= new LocalScheduler({
      submit: (request) => this.submit(request),
      snapshot: (id) => {
        const found = this.#find(id);
        return found === undefined ? undefined : snapshotOf(found);
      },
    });
    return this.#scheduler;
  }

  upsertSchedule(record: ScheduleRecord): Promise<ScheduleSnapshot> {
    return this.#schedules().upsertSchedule(record);
  }

  listSchedules(): Promise<readonly ScheduleSnapshot[]> {
    return this.#schedules().listSchedules();
  }

  setSchedulePaused(name: string, paused: boolean): Promise<ScheduleSnapshot | undefined> {
    return this.#schedules().setSchedulePaused(name, paused);
  }

  deleteSchedule(name: string): Promise<boolean> {
    return this.#schedules().deleteSchedule(name);
  }

  triggerSchedule(name: string): Promise<InstanceSnapshot | undefined> {
    return this.#schedules().triggerSchedule(name);
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    // Starting on a later microtask lets the caller see `pending` right after the call.
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    // A function that returns at once finishes inside #start, and #finish pumps: this loop
    // carries on instead, so a long queue of such tasks never deepens the stack.
    if (this.#pumping) return;
    this.#pumping = true;
    const order = this.#order;
    while (!this.#closed && this.#running < this.#concurrency) {
      if (this.#ready.size === 0) {
        if (this.#next >= order.length) break;
        const entry = order[this.#next++];
        if (waitsWithoutOptions(entry)) this.#start(entry);
      } else {
        this.#startBest(this.#ready.peek() as OptionEntry);
      }
    }
    this.#pumping = false;
  }

  /**
   * Takes the better of the next instance without options (priority 0) and `top`, the best
   * ready one with options, and starts it, or holds `top` back under its task's limits.
   */
  #startBest(top: OptionEntry): void {
    const order = this.#order;
    while (this.#next < order.length) {
      const plain = order[this.#next];
      if (waitsWithoutOptions(plain)) {
        if (top.priority > 0 || (top.priority === 0 && top.index < plain.index)) break;
        this.#next++;
        this.#start(plain);
        return;
      }
      this.#next++;
    }
    this.#ready.pop();
    if (!top.waiting) {
      this.#gates.dropped(top);
      return;
    }
    const fn = findTaskFunction(top.snapshot.taskName);
    if (fn === undefined) {
      this.#notDefined(top);
      return;
    }
    if (this.#gates.admit(top)) this.#startAttempt(top, fn);
  }

  #start(entry: Entry): void {
    const s = entry.snapshot;
    const args = entry.args as string;
    entry.args = undefined;
    const fn = findTaskFunction(s.taskName);
    if (fn === undefined) {
      this.#notDefined(entry);
      return;
    }
    this.#running++;
    const controller = new TaskControllerImpl(s.id, s.taskName, entry);
    controller.outputSink = this.#logs;
    entry.controller = controller;
    publish(entry, "running", s.progress, s.output, s.result, s.error, Date.now(), s.finishedAt);
    const outcome = runAttempt(entry, fn, args, controller, 1);
    if (outcome instanceof Promise) outcome.then((ended) => this.#finish(entry, ended));
    else this.#finish(entry, outcome);
  }

  #finish(entry: Entry, outcome: TaskOutcome): void {
    this.#running--;
    entry.controller = undefined;
    const s = entry.snapshot;
    publish(
      entry,
      outcome.status,
      outcome.status === "completed" ? 1 : s.progress,
      s.output,
      "result" in outcome ? outcome.result : s.result,
      "error" in outcome ? outcome.error : s.error,
      s.startedAt,
      Date.now(),
    );
    this.#ended(entry);
    this.#pump();
  }

  /** The process never defined the task (a `runTask` by a name nobody defined, say). */
  #notDefined(entry: Entry): void {
    const s = entry.snapshot;
    const error = failures.taskNotDefined(s.taskName, "in this process");
    publish(entry, "failed", s.progress, s.output, s.result, error, s.startedAt, Date.now());
    this.#ended(entry);
  }

  #ended(entry: Entry): void {
    this.#order[entry.index] = entry.snapshot;
    if (this.#submitted === entry) this.#submitted = undefined;
  }

  #find(id: string): Entry | InstanceSnapshot | undefined {
    const index = this.#indexes.get(id);
    return index === undefined ? undefined : this.#order[index];
  }

  // Instances with run options (SPEC §4) ------------------------------------------------------

  #submitWithOptions(request: SubmitRequest): InstanceSnapshot {
    const spec = request.spec ?? {};
    const snapshot: InstanceSnapshot = {
      id: request.id,
      taskId: request.taskId,
      taskName: request.taskName,
      status: "pending",
      progress: 0,
      output: undefined,
      result: undefined,
      error: undefined,
      createdAt: request.createdAt,
      startedAt: undefined,
      finishedAt: undefined,
      revision: 1,
      spec,
      attempt: 1,
      attempts: undefined,
      nextAttemptAt: undefined,
    };
    const entry = new OptionEntry(snapshot, request.args, this.#indexes.add(request.id), spec);
    if (request.traceContext !== undefined) entry.traceContext = request.traceContext;
    this.#order.push(entry);
    this.#submitted = entry;
    if (spec.startAt !== undefined && spec.startAt > Date.now()) this.#readyAt(entry, spec.startAt);
    else this.#ready.push(entry);
    this.#schedulePump();
    return snapshot;
  }

  /** Makes `entry` ready at `at` (its start time, or its next attempt's), not a millisecond before. */
  #readyAt(entry: OptionEntry, at: number): void {
    this.#timed.add(entry);
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      this.#timed.delete(entry);
      if (!entry.waiting || this.#closed) return;
      // Timers may fire a little early: a start is never before its time.
      if (Date.now() < at) {
        this.#readyAt(entry, at);
        return;
      }
      this.#ready.push(entry);
      this.#pump();
    }, at - Date.now());
  }

  #clearTimer(entry: OptionEntry): void {
    if (entry.timer === undefined) return;
    clearTimeout(entry.timer);
    entry.timer = undefined;
    this.#timed.delete(entry);
  }

  /** Starts an attempt, with progress and output reset and its timeout set. */
  #startAttempt(entry: OptionEntry, fn: AnyTaskFunction): void {
    const s = entry.snapshot;
    this.#running++;
    const now = Date.now();
    entry.beginAttempt(now);
    const controller = new TaskControllerImpl(s.id, s.taskName, entry);
    controller.outputSink = this.#logs;
    entry.controller = controller;
    const timeoutMs = entry.spec.timeoutMs;
    if (timeoutMs !== undefined) {
      this.#timed.add(entry);
      entry.timer = setTimeout(() => this.#timeOut(entry, controller, timeoutMs), timeoutMs);
    }
    publish(entry, "running", 0, undefined, undefined, undefined, now, undefined);
    const outcome = runAttempt(entry, fn, entry.encodedArgs, controller, entry.attempt);
    if (outcome instanceof Promise) outcome.then((ended) => this.#endAttempt(entry, ended));
    else this.#endAttempt(entry, outcome);
  }

  /**
   * The attempt ran past its `timeoutMs`. In this process a running function cannot be
   * killed: the local executor can only ask it to stop, as `stop()` does (its signal's reason
   * is a `TaskTimeoutError`), and a function that ignores the request runs on. Whenever it ends,
   * the attempt counts as failed by its timeout.
   */
  #timeOut(entry: OptionEntry, controller: TaskControllerImpl, timeoutMs: number): void {
    entry.timer = undefined;
    this.#timed.delete(entry);
    if (entry.controller !== controller || entry.stopped) return;
    entry.timedOut = true;
    controller.requestStop(new TaskTimeoutError(entry.snapshot.id, timeoutMs, "attempt"));
  }

  /** Ends an attempt: pending again until its backoff is over, or ended. */
  #endAttempt(entry: OptionEntry, outcome: TaskOutcome): void {
    this.#running--;
    entry.controller = undefined;
    this.#clearTimer(entry);
    this.#gates.release(entry);
    const s = entry.snapshot;
    const now = Date.now();
    const { status, result, error, retry } = entry.endAttempt(outcome, now, !this.#closed);
    if (retry) {
      publish(entry, "pending", s.progress, s.output, undefined, undefined, s.startedAt, undefined);
      this.#readyAt(entry, entry.nextAttemptAt as number);
    } else {
      publish(
        entry,
        status,
        status === "completed" ? 1 : s.progress,
        s.output,
        result,
        error,
        s.startedAt,
        now,
      );
      this.#ended(entry);
    }
    this.#pump();
  }
}

/** A pending instance made without run options: its turn comes in creation order. */
function waitsWithoutOptions(found: Entry | InstanceSnapshot | undefined): found is Entry {
  return found instanceof Entry && found.snapshot.status === "pending" && !(found instanceof OptionEntry);
}

/** Runs an attempt of the function, in the attempt's span when an OpenTelemetry SDK is registered. */
function runAttempt(
  entry: Entry,
  fn: AnyTaskFunction,
  args: string,
  controller: TaskControllerImpl,
  attempt: number,
): TaskOutcome | Promise<TaskOutcome> {
  if (!isTracing()) return runTaskFunction(fn, args, controller);
  const s = entry.snapshot;
  return runInProcessSpan(
    { taskName: s.taskName, instanceId: s.id, attempt, traceContext: entry.traceContext },
    () => runTaskFunction(fn, args, controller),
  );
}
