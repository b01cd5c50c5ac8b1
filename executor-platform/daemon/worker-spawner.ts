import { constants } from "node:os";
import type { Logger } from "pino";
import type { DaemonMetrics } from "./daemon-metrics.js";
import { type WorkloadEnvironment, type WorkloadPurpose, spawnWorkload } from "./spawn-workload.js";
import type { Worker, Workers } from "./workers.js";

/** How long a workload's pipes may stay open after it exited before it is judged without its last words. */
const DRAIN_AFTER_EXIT_MS = 1000;

/** Starts workload processes and reports each one's end, with why, exactly once. */
export class WorkerSpawner {
  readonly #workers: Workers;
  readonly #log: Logger;
  readonly #environment: () => WorkloadEnvironment;
  readonly #onGone: (worker: Worker, reason: string) => void;
  readonly #metrics: DaemonMetrics | undefined;
  readonly #onOutput: ((instanceId: string, stream: 0 | 1, chunk: Buffer) => void) | undefined;

  /** `onOutput` gets what a process-mode workload writes to its stdout (0) and stderr (1). */
  constructor(
    workers: Workers,
    log: Logger,
    environment: () => WorkloadEnvironment,
    onGone: (worker: Worker, reason: string) => void,
    metrics?: DaemonMetrics,
    onOutput?: (instanceId: string, stream: 0 | 1, chunk: Buffer) => void,
  ) {
    this.#workers = workers;
    this.#log = log;
    this.#environment = environment;
    this.#onGone = onGone;
    this.#metrics = metrics;
    this.#onOutput = onOutput;
  }

  spawn(purpose: WorkloadPurpose): Worker {
    const child = spawnWorkload(this.#environment(), purpose);
    this.#metrics?.workloadStarted();
    const worker = this.#workers.add({
      pool: purpose.kind === "pool",
      warm: purpose.kind === "warm",
      child,
      startFor: purpose.kind === "instance" ? purpose.instanceId : undefined,
    });
    // A process-mode workload's output is its instance's (a warm one's, once it has one); a
    // pool worker's own is not any one's.
    const output = worker.pool ? undefined : this.#onOutput;
    child.stdout?.on("data", (chunk: Buffer) => {
      worker.tail.push(chunk);
      if (worker.startFor !== undefined) output?.(worker.startFor, 0, chunk);
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      worker.tail.push(chunk);
      if (worker.startFor !== undefined) output?.(worker.startFor, 1, chunk);
    });
    child.on("error", (error) => {
      this.#log.error({ err: error }, "workload failed to start");
      this.#onGone(worker, `the workload process could not start: ${error.message}`);
    });
    child.on("exit", (code, signal) => {
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      worker.exitCode = signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? undefined);
      const gone = () => this.#onGone(worker, `the workload process ${how} before reporting a result`);
      // The pipes may still hold the last words: "close" comes once they are read to the end,
      // unless a process the task started keeps them open.
      const drained = setTimeout(gone, DRAIN_AFTER_EXIT_MS);
      child.once("close", () => {
        clearTimeout(drained);
        gone();
      });
    });
    return worker;
  }
}
