import type { ActiveInstance } from "./active-instance.js";
import type { DaemonState } from "./daemon-options.js";
import type { InstanceTable } from "./instance-table.js";
import { sendStart } from "./process-launcher.js";
import type { WorkerSpawner } from "./worker-spawner.js";
import type { Worker, Workers } from "./workers.js";
import type { WorkloadLauncher } from "./workload-launcher.js";
import type { WorkloadTokens } from "./workload-token.js";

export interface PoolLauncherOptions {
  readonly table: InstanceTable;
  readonly workers: Workers;
  readonly spawner: WorkerSpawner;
  readonly tokens: WorkloadTokens;
  readonly state: DaemonState;
  /** How many warm processes to keep. */
  readonly size: number;
  /** A worker became idle: queued instances can start. */
  readonly onIdle: () => void;
  /** An attempt begins: recorded, then `send` tells its workload (see `Coordinator.begin`). */
  readonly begin: (active: ActiveInstance, send: () => void) => void;
}

/** Warm processes, each running one instance after another. */
export class PoolLauncher implements WorkloadLauncher {
  readonly #o: PoolLauncherOptions;

  constructor(options: PoolLauncherOptions) {
    this.#o = options;
  }

  get ready(): number {
    return this.#o.workers.idle.length;
  }

  open(): void {
    for (let i = 0; i < this.#o.size; i++) this.#spawn();
  }

  start(active: ActiveInstance): void {
    const { workers } = this.#o;
    const worker = workers.idle.pop() as Worker;
    worker.instanceId = active.row.id;
    active.worker = worker;
    this.#o.begin(active, () => sendStart(workers, worker, active));
  }

  helloFrom(worker: Worker): void {
    this.#o.workers.idle.push(worker);
    this.#o.onIdle();
  }

  /** While the pool is short of its size (a worker of its own died, or is still starting). */
  adopts(): boolean {
    let pool = 0;
    for (const worker of this.#o.workers.all()) if (worker.pool && !worker.retiring) pool++;
    return pool < this.#o.size;
  }

  gone(worker: Worker): void {
    if (worker.pool && this.#o.state.accepting) this.#spawn();
  }

  #spawn(): void {
    this.#o.spawner.spawn({ kind: "pool", token: this.#o.tokens.forPool() });
  }
}
