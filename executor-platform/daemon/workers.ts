import type { ChildProcess } from "node:child_process";
import type { Socket } from "node:net";
import type { Logger } from "pino";
import type { DaemonMessage } from "../protocol/generated/numerous/tasks/v1/tasks_pb.js";
import type { InstanceTable } from "./instance-table.js";
import { TailBuffer } from "./tail-buffer.js";
import type { WorkloadCall } from "./workload-socket.js";

/** A workload process, started by this daemon or reattached after a restart. */
export interface Worker {
  readonly serial: number;
  /** A pool worker runs one instance after another; a process worker runs one and exits. */
  readonly pool: boolean;
  readonly child: ChildProcess | undefined;
  /** The process, also of a workload that reattached after a restart (it has no child handle). */
  readonly pid: number | undefined;
  readonly tail: TailBuffer;
  call: WorkloadCall | undefined;
  /** The instance it runs now. */
  instanceId: string | undefined;
  /**
   * A process-mode worker's only instance: to start once it says hello, or, for a warm one, the
   * one it was given (its output is that instance's to the end).
   */
  startFor: string | undefined;
  /** A process-mode runner started ahead of demand: it waits, said hello, for one instance. */
  readonly warm: boolean;
  /** A pool worker of an earlier daemon the pool has no room for: let go once its ends are acknowledged. */
  retiring: boolean;
  gone: boolean;
  /** How its process ended, once it has (128 + the signal's number when a signal ended it). */
  exitCode: number | undefined;
}

export interface NewWorker {
  readonly pool: boolean;
  readonly warm?: boolean;
  readonly child?: ChildProcess | undefined;
  readonly pid?: number | undefined;
  readonly call?: WorkloadCall | undefined;
  readonly instanceId?: string | undefined;
  readonly startFor?: string | undefined;
}

/** The workloads of this daemon: which are alive, which idle, and how to talk to and end them. */
export class Workers {
  readonly #table: InstanceTable;
  readonly #log: Logger;
  readonly #all = new Set<Worker>();
  /** Pool workers waiting for an instance, the most recently freed last. */
  readonly idle: Worker[] = [];
  #serial = 0;

  constructor(table: InstanceTable, log: Logger) {
    this.#table = table;
    this.#log = log;
  }

  add(fields: NewWorker): Worker {
    const worker: Worker = {
      serial: ++this.#serial,
      pool: fields.pool,
      child: fields.child,
      pid: fields.pid ?? fields.child?.pid,
      tail: new TailBuffer(),
      call: fields.call,
      instanceId: fields.instanceId,
      startFor: fields.startFor,
      warm: fields.warm ?? false,
      retiring: false,
      gone: false,
      exitCode: undefined,
    };
    this.#all.add(worker);
    return worker;
  }

  all(): IterableIterator<Worker> {
    return this.#all.values();
  }

  /** Forgets a worker that exited or disconnected; false if it was gone already. */
  remove(worker: Worker): boolean {
    if (worker.gone) return false;
    worker.gone = true;
    this.#all.delete(worker);
    const idleIndex = this.idle.indexOf(worker);
    if (idleIndex >= 0) this.idle.splice(idleIndex, 1);
    worker.call?.end();
    return true;
  }

  /** Unties a worker from its instance: what it says of that instance no longer counts. */
  detach(worker: Worker): void {
    const active = worker.instanceId === undefined ? undefined : this.#table.get(worker.instanceId);
    if (active && active.worker === worker) active.worker = undefined;
    worker.instanceId = undefined;
  }

  send(worker: Worker | undefined, message: DaemonMessage): void {
    if (worker?.call === undefined || worker.gone) return;
    try {
      worker.call.write(message);
    } catch (error) {
      this.#log.warn({ err: error }, "could not write to a workload");
    }
  }

  /** Kills the worker's process, whether this daemon started it or it reattached. */
  kill(worker: Worker): void {
    if (worker.child) worker.child.kill("SIGKILL");
    else if (worker.pid !== undefined) killQuietly(worker.pid);
  }

  /** On shutdown: idle pool and warm workers end; running ones are handed back to the next daemon. */
  release(): void {
    for (const worker of this.#all) {
      const waiting = worker.pool
        ? worker.instanceId === undefined
        : worker.warm && worker.startFor === undefined;
      if (waiting) worker.child?.kill("SIGTERM");
      worker.call?.end();
      worker.child?.unref();
      for (const pipe of [worker.child?.stdout, worker.child?.stderr])
        (pipe as Socket | null | undefined)?.unref();
    }
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}
