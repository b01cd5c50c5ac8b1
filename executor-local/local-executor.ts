import {
  type Executor,
  type InstancePage,
  type InstanceQuery,
  type InstanceSnapshot,
  type SubmitRequest,
  type TaskDefinition,
  listLimit,
} from "../sdk/executor.js";
import { runTaskFunction, type TaskOutcome } from "../sdk/run-task-function.js";
import { TaskControllerImpl } from "../sdk/task-controller.js";
import { isTerminalStatus } from "../sdk/task-status.js";
import { findTaskFunction, localDefinitions } from "../sdk/task.js";
import { DEFAULT_CONCURRENCY } from "../sdk/config.js";
import { failures } from "../sdk/failures.js";

/** Options of {@link LocalExecutor}. */
export interface LocalExecutorOptions {
  /** How many instances run at once; the rest wait `pending` in creation order. Default 4. */
  readonly concurrency?: number;
}

type Listener = (snapshot: InstanceSnapshot) => void;

interface Entry {
  snapshot: InstanceSnapshot;
  /** Until the instance starts. */
  args: string | undefined;
  controller: TaskControllerImpl | undefined;
  listeners: Listener[] | undefined;
  /** Position in creation order, for cursors. */
  readonly index: number;
}

/**
 * Runs instances in this process: zero configuration, for development and tests. Instances run
 * on a decoded copy of their arguments, as on the platform.
 */
export class LocalExecutor implements Executor {
  readonly #concurrency: number;
  readonly #entries = new Map<string, Entry>();
  readonly #order: Entry[] = [];
  readonly #queue: Entry[] = [];
  #queueHead = 0;
  #running = 0;
  #pumpScheduled = false;
  #closed = false;

  constructor(options: LocalExecutorOptions = {}) {
    const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`concurrency must be a whole number of at least 1, got ${concurrency}`);
    }
    this.#concurrency = concurrency;
  }

  submit(request: SubmitRequest): InstanceSnapshot {
    const existing = this.#entries.get(request.id);
    if (existing !== undefined) return existing.snapshot;
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
    const entry: Entry = {
      snapshot,
      args: request.args,
      controller: undefined,
      listeners: undefined,
      index: this.#order.length,
    };
    this.#entries.set(request.id, entry);
    this.#order.push(entry);
    this.#queue.push(entry);
    this.#schedulePump();
    return snapshot;
  }

  async get(id: string): Promise<InstanceSnapshot | undefined> {
    return this.#entries.get(id)?.snapshot;
  }

  async list(query: InstanceQuery): Promise<InstancePage> {
    const limit = listLimit(query);
    let start = 0;
    if (query.cursor !== undefined) {
      const after = this.#entries.get(query.cursor);
      start = after === undefined ? this.#order.length : after.index + 1;
    }
    const statuses = query.status === undefined ? undefined : new Set(query.status);
    const instances: InstanceSnapshot[] = [];
    let i = start;
    for (; i < this.#order.length && instances.length < limit; i++) {
      const snapshot = (this.#order[i] as Entry).snapshot;
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
    const entry = this.#entries.get(id);
    if (entry === undefined) return false;
    const { status } = entry.snapshot;
    if (status === "pending") {
      entry.args = undefined;
      this.#change(entry, { status: "cancelled", finishedAt: Date.now() });
    } else if (status === "running") {
      entry.controller?.requestStop();
    }
    return true;
  }

  watch(id: string, afterRevision: number, listener: Listener): () => void {
    const entry = this.#entries.get(id);
    if (entry === undefined) return () => {};
    if (entry.snapshot.revision > afterRevision) {
      const current = entry.snapshot;
      queueMicrotask(() => listener(current));
      if (isTerminalStatus(current.status)) return () => {};
    }
    (entry.listeners ??= []).push(listener);
    return () => {
      const index = entry.listeners?.indexOf(listener) ?? -1;
      if (index >= 0) entry.listeners?.splice(index, 1);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
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
    while (!this.#closed && this.#running < this.#concurrency && this.#queueHead < this.#queue.length) {
      const entry = this.#queue[this.#queueHead++] as Entry;
      if (entry.snapshot.status !== "pending") continue;
      this.#start(entry);
    }
    if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#queueHead);
      this.#queueHead = 0;
    }
  }

  #start(entry: Entry): void {
    const { id, taskName } = entry.snapshot;
    const args = entry.args as string;
    entry.args = undefined;
    const fn = findTaskFunction(taskName);
    if (fn === undefined) {
      this.#change(entry, {
        status: "failed",
        finishedAt: Date.now(),
        error: failures.taskNotDefinedHere(taskName),
      });
      return;
    }
    this.#running++;
    const controller = new TaskControllerImpl(id, taskName, {
      progress: (progress) => this.#change(entry, { progress }),
      output: (output) => this.#change(entry, { output }),
    });
    entry.controller = controller;
    this.#change(entry, { status: "running", startedAt: Date.now() });
    runTaskFunction(fn, args, controller).then((outcome) => this.#finish(entry, outcome));
  }

  #finish(entry: Entry, outcome: TaskOutcome): void {
    this.#running--;
    entry.controller = undefined;
    this.#change(entry, {
      ...outcome,
      progress: outcome.status === "completed" ? 1 : entry.snapshot.progress,
      finishedAt: Date.now(),
    });
    this.#pump();
  }

  #change(entry: Entry, change: Partial<InstanceSnapshot>): void {
    if (isTerminalStatus(entry.snapshot.status)) return;
    const s = entry.snapshot;
    const snapshot: InstanceSnapshot = {
      id: s.id,
      taskId: s.taskId,
      taskName: s.taskName,
      status: change.status ?? s.status,
      progress: change.progress ?? s.progress,
      output: "output" in change ? change.output : s.output,
      result: "result" in change ? change.result : s.result,
      error: "error" in change ? change.error : s.error,
      createdAt: s.createdAt,
      startedAt: change.startedAt ?? s.startedAt,
      finishedAt: change.finishedAt ?? s.finishedAt,
      revision: s.revision + 1,
    };
    entry.snapshot = snapshot;
    const listeners = entry.listeners;
    if (isTerminalStatus(snapshot.status)) entry.listeners = undefined;
    if (listeners !== undefined) for (const listener of [...listeners]) listener(snapshot);
  }
}
