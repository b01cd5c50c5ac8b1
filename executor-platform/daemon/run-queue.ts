import { failures } from "../../sdk/failures.js";
import type { Logger } from "pino";
import type { TaskErrorInfo } from "../../sdk/errors.js";
import { isTerminalStatus } from "../../sdk/task-status.js";
import type { ActiveInstance } from "./active-instance.js";
import type { DaemonState } from "./daemon-options.js";
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
}

/** How an instance ended, as the daemon records it. */
export interface InstanceEnd {
  readonly result?: string | undefined;
  readonly error?: TaskErrorInfo | undefined;
  readonly output?: string | undefined;
}

/** Compacts the queue's array once this many entries before its head are spent. */
const COMPACT_AFTER = 1024;

/**
 * The instances waiting to run here, first come first served, and the slots they run in: starts
 * them as slots free up, ends them, and carries out stops (a stop ignored past its grace period
 * kills the workload).
 */
export class RunQueue {
  readonly #o: RunQueueOptions;
  #launcher: WorkloadLauncher | undefined;
  readonly #queue: string[] = [];
  #head = 0;
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
    const queued = this.#queue.length - this.#head;
    return Math.min(this.#o.concurrency - this.#running, this.#launcherOf().ready) - queued;
  }

  /** Queues an instance held in the table; it starts when a slot is free, unless it ended first. */
  enqueue(id: string): void {
    this.#queue.push(id);
  }

  /** Starts queued instances while there are free slots. */
  pump(): void {
    const state = this.#o.state;
    if (!state.accepting || !state.listening || state.stopped) return;
    const launcher = this.#launcherOf();
    while (this.#running < this.#o.concurrency && this.#head < this.#queue.length) {
      if (launcher.ready === 0) break;
      const id = this.#queue[this.#head++] as string;
      const active = this.#o.table.get(id);
      if (active === undefined || active.row.status !== "pending") continue;
      this.#running++;
      active.holdsSlot = true;
      launcher.start(active);
    }
    if (this.#head > COMPACT_AFTER && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    if (this.#head >= this.#queue.length) this.#o.onDrained();
  }

  /**
   * A running instance recovered after a restart: it holds its slot while its workload has
   * `windowMs` to reattach, and fails once that passes without it.
   */
  holdOrphan(active: ActiveInstance, windowMs: number): void {
    this.#running++;
    active.holdsSlot = true;
    active.orphanTimer = setTimeout(() => {
      if (active.worker === undefined && !isTerminalStatus(active.row.status)) {
        this.finish(active, "failed", { error: failures.workloadLost(windowMs) });
      }
    }, windowMs);
  }

  finish(active: ActiveInstance, status: "completed" | "failed" | "cancelled", end: InstanceEnd): void {
    if (isTerminalStatus(active.row.status)) return;
    const wasRunning = active.holdsSlot;
    active.holdsSlot = false;
    clearTimeout(active.stopTimer);
    clearTimeout(active.orphanTimer);
    this.#o.table.change(active, {
      status,
      result: end.result,
      error: end.error,
      args: undefined,
      finishedAt: Date.now(),
      progress: status === "completed" ? 1 : active.row.progress,
      ...(end.output === undefined ? {} : { output: end.output }),
    });
    if (wasRunning) {
      this.#running--;
      if (this.#running === 0) {
        const waiters = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const waiter of waiters) waiter();
      }
    }
    queueMicrotask(() => this.pump());
  }

  /** Stops an instance held here: a pending one never runs; a running one is asked, then killed after the grace. */
  stop(active: ActiveInstance): void {
    const workers = this.#o.workers;
    if (active.row.status === "pending") {
      // Its process may be starting: it never gets to run the task.
      const worker = active.worker;
      if (worker !== undefined) {
        workers.detach(worker);
        workers.kill(worker);
      }
      this.finish(active, "cancelled", {});
      return;
    }
    if (active.stopRequested) return;
    workers.send(active.worker, { kind: { $case: "stop", value: { instanceId: active.row.id } } });
    this.stopRequested(active, Date.now());
  }

  /**
   * Records a stop asked for at `at` (ms since the epoch): the workload is killed when its grace
   * period is over. Returns the milliseconds left of it.
   */
  stopRequested(active: ActiveInstance, at: number): number {
    const left = Math.max(0, at + this.#o.stopGraceMs - Date.now());
    active.stopRequested = true;
    active.stopTimer = setTimeout(() => this.#forceStop(active), left);
    return left;
  }

  #forceStop(active: ActiveInstance): void {
    if (isTerminalStatus(active.row.status)) return;
    const worker = active.worker;
    const graceMs = this.#o.stopGraceMs;
    this.#o.log.warn({ instance: active.row.id, graceMs }, "task ignored its stop: killing its workload");
    const error = failures.stopGraceExceeded(graceMs);
    if (worker) this.#o.workers.detach(worker);
    this.finish(active, "cancelled", { error });
    if (worker) {
      this.#o.workers.kill(worker);
      worker.call?.end();
    }
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
    for (const active of instances) {
      clearTimeout(active.stopTimer);
      clearTimeout(active.orphanTimer);
    }
  }

  #launcherOf(): WorkloadLauncher {
    if (this.#launcher === undefined) throw new Error("the run queue has no launcher yet");
    return this.#launcher;
  }
}
