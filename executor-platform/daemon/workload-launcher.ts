import type { ActiveInstance } from "./active-instance.js";
import type { Worker } from "./workers.js";

/**
 * How instances get a workload process. `process` starts one process per instance; `pool` keeps
 * warm processes and hands each the next instance. Chosen once, at start.
 */
export interface WorkloadLauncher {
  /** How many instances could be given a workload right now. */
  readonly ready: number;
  /** Starts what must run before the first instance (the pool's processes). */
  open(): void;
  /** Gives a queued instance, which already holds a slot, its workload. */
  start(active: ActiveInstance): void;
  /** A worker this launcher started said hello on its stream. */
  helloFrom(worker: Worker): void;
  /**
   * Whether a pool worker of an earlier daemon, with nothing running, joins the workers (else it
   * only says the ends it kept, and is let go).
   */
  adopts(): boolean;
  /** A worker is gone (exited or disconnected); its instance, if any, is already ended. */
  gone(worker: Worker): void;
}
