import {
  type Executor,
  type InstancePage,
  type InstanceQuery,
  type InstanceSnapshot,
  type SubmitRequest,
  type TaskDefinition,
  listLimit,
} from "../sdk/executor.js";
import type { EncodedValue } from "../sdk/codec.js";
import type { TaskErrorInfo } from "../sdk/errors.js";
import { runTaskFunction, type TaskOutcome } from "../sdk/run-task-function.js";
import { type ControllerSink, TaskControllerImpl } from "../sdk/task-controller.js";
import { type TaskStatus, isTerminalStatus } from "../sdk/task-status.js";
import { IdIndex } from "./id-index.js";
import { LocalScheduler } from "./local-scheduler.js";
import type { ScheduleExecutor, ScheduleRecord, ScheduleSnapshot } from "../sdk/schedules.js";
import { findTaskFunction, localDefinitions } from "../sdk/task.js";
import { DEFAULT_CONCURRENCY } from "../sdk/config.js";
import { failures } from "../sdk/failures.js";

/** Options of {@link LocalExecutor}. */
export interface LocalExecutorOptions {
  /** How many instances run at once; the rest wait `pending` in creation order. Default 4. */
  readonly concurrency?: number;
}

type Listener = (snapshot: InstanceSnapshot) => void;

/**
 * One instance. It is also its controller's sink: what the running function reports goes
 * straight into its snapshot, with no closures made per instance.
 */
class Entry implements ControllerSink {
  snapshot: InstanceSnapshot;
  /** Until the instance starts. */
  args: string | undefined;
  controller: TaskControllerImpl | undefined = undefined;
  /** One listener as itself (the common case: the instance's handle), more as an array. */
  listeners: Listener | Listener[] | undefined = undefined;

  constructor(
    snapshot: InstanceSnapshot,
    args: string,
    /** Position in creation order, for cursors. */
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
 * Runs instances in this process: zero configuration, for development and tests. Instances run
 * on a decoded copy of their arguments, as on the platform.
 */
export class LocalExecutor implements Executor, ScheduleExecutor {
  readonly #concurrency: number;
  /** Each instance's position in #order. */
  readonly #indexes = new IdIndex(
    (position) => snapshotOf(this.#order[position] as Entry | InstanceSnapshot).id,
  );
  /**
   * Every instance in creation order: its entry while it may change, its final snapshot once
   * it ended (so a finished instance holds one object less). Those from #next on may still
   * wait to start.
   */
  readonly #order: Array<Entry | InstanceSnapshot> = [];
  #next = 0;
  #running = 0;
  #pumpScheduled = false;
  #pumping = false;
  #closed = false;
  /** The entry submitted last: a handle watches it right away, and needs no lookup for that. */
  #submitted: Entry | undefined;

  constructor(options: LocalExecutorOptions = {}) {
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`concurrency must be a whole number of at least 1, got ${concurrency}`);
    }
    this.#concurrency = concurrency;
  }

  submit(request: SubmitRequest): InstanceSnapshot {
    const existing = this.#find(request.id);
    if (existing !== undefined) return snapshotOf(existing);
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

  async close(): Promise<void> {
    this.#closed = true;
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
    while (!this.#closed && this.#running < this.#concurrency && this.#next < order.length) {
      const entry = order[this.#next++];
      if (entry instanceof Entry && entry.snapshot.status === "pending") this.#start(entry);
    }
    this.#pumping = false;
  }

  #start(entry: Entry): void {
    const s = entry.snapshot;
    const args = entry.args as string;
    entry.args = undefined;
    const fn = findTaskFunction(s.taskName);
    if (fn === undefined) {
      const error = failures.taskNotDefinedHere(s.taskName);
      publish(entry, "failed", s.progress, s.output, s.result, error, s.startedAt, Date.now());
      this.#ended(entry);
      return;
    }
    this.#running++;
    const controller = new TaskControllerImpl(s.id, s.taskName, entry);
    entry.controller = controller;
    publish(entry, "running", s.progress, s.output, s.result, s.error, Date.now(), s.finishedAt);
    const outcome = runTaskFunction(fn, args, controller);
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

  #ended(entry: Entry): void {
    this.#order[entry.index] = entry.snapshot;
    if (this.#submitted === entry) this.#submitted = undefined;
  }

  #find(id: string): Entry | InstanceSnapshot | undefined {
    const index = this.#indexes.get(id);
    return index === undefined ? undefined : this.#order[index];
  }
}

function snapshotOf(found: Entry | InstanceSnapshot): InstanceSnapshot {
  return found instanceof Entry ? found.snapshot : found;
}

/**
 * Gives `entry` its next snapshot and tells its listeners; nothing changes once it ended. Every
 * field is passed, so each snapshot is one object literal of one shape.
 */
function publish(
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
  const snapshot: InstanceSnapshot = {
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
