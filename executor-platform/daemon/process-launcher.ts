import { isTerminalStatus } from "../../sdk/task-status.js";
import { isTypeScriptModule } from "../protocol/wire.js";
import { DEFAULT_DEPLOYMENT } from "./access-control.js";
import type { ActiveInstance } from "./active-instance.js";
import type { DaemonState } from "./daemon-options.js";
import type { InstanceTable } from "./instance-table.js";
import type { WorkerSpawner } from "./worker-spawner.js";
import type { Worker, Workers } from "./workers.js";
import type { WorkloadLauncher } from "./workload-launcher.js";
import type { WorkloadTokens } from "./workload-token.js";
import { doublingDelay } from "../doubling-delay.js";

export interface ProcessLauncherOptions {
  readonly table: InstanceTable;
  readonly workers: Workers;
  readonly spawner: WorkerSpawner;
  readonly tokens: WorkloadTokens;
  readonly state: DaemonState;
  /** Whether clients need a token: then a task gets one for its own deployment. */
  readonly tokensRequired: boolean;
  /** Runner processes kept started ahead of demand, each for one instance. */
  readonly warm: number;
  /** An attempt begins: recorded, then `send` tells its workload (see `Coordinator.begin`). */
  readonly begin: (active: ActiveInstance, send: () => void) => void;
}

/** The first wait before starting a warm runner again after one died before it was ready. */
const WARM_RETRY_MS = 250;
const WARM_RETRY_MAX_MS = 30_000;

/**
 * One OS process per instance: the platform's own model. A few runner processes are started
 * ahead of demand and wait, their runner (and TypeScript loader) loaded, each for one instance:
 * a process still serves exactly one instance, but its start is off the instance's path. An
 * instance that finds none waiting gets a process of its own, started for it.
 */
export class ProcessLauncher implements WorkloadLauncher {
  readonly #o: ProcessLauncherOptions;
  /** Warm runners that said hello, waiting for an instance; the newest last. */
  readonly #waiting: Worker[] = [];
  /** Warm runners started that have not said hello yet (some may have been given an instance). */
  readonly #starting = new Set<Worker>();
  /** Warm runners that died before they were ready, in a row: each waits longer to try again. */
  #failures = 0;
  #retry: NodeJS.Timeout | undefined;
  /** Whether the last instance started here was TypeScript: warm runners then load tsx ahead. */
  #typescript = false;

  constructor(options: ProcessLauncherOptions) {
    this.#o = options;
  }

  readonly ready = Number.POSITIVE_INFINITY;

  open(): void {
    this.#fill();
  }

  /**
   * It stays pending until its process says hello (a stop before then cancels it, and it never
   * runs): at once on a waiting warm runner, else on one still starting, else on its own.
   */
  start(active: ActiveInstance): void {
    this.#typescript = isTypeScriptModule(active.row.module);
    const warm = this.#warmFor(active);
    if (warm !== undefined) {
      const { id } = active.row;
      warm.startFor = id;
      warm.instanceId = id;
      active.worker = warm;
      if (!this.#starting.has(warm)) {
        // Said hello already: it runs now, as a pool worker would.
        this.#o.begin(active, () => sendStart(this.#o.workers, warm, active));
      }
      this.#fill();
      return;
    }
    const { id, deploymentId, module, args } = active.row;
    const { tokens } = this.#o;
    const worker = this.#o.spawner.spawn({
      kind: "instance",
      token: tokens.forInstance(id),
      instanceId: id,
      deploymentId,
      module,
      args,
      deploymentToken: this.#o.tokensRequired ? tokens.forDeployment(deploymentId) : undefined,
    });
    worker.instanceId = id;
    active.worker = worker;
  }

  helloFrom(worker: Worker): void {
    if (worker.warm) {
      this.#starting.delete(worker);
      this.#failures = 0;
      if (worker.startFor === undefined) {
        this.#waiting.push(worker);
        return;
      }
    }
    const { table, workers } = this.#o;
    const instanceId = worker.startFor as string;
    const active = table.get(instanceId);
    if (active && active.worker === worker && !isTerminalStatus(active.row.status)) {
      const send = () => {
        sendStart(workers, worker, active);
        if (active.stopRequested) {
          workers.send(worker, { kind: { $case: "stop", value: { instanceId, timeoutMs: 0 } } });
        }
      };
      if (active.row.status === "pending") this.#o.begin(active, send);
      else send();
    } else {
      // Cancelled while its process was starting.
      worker.child?.kill("SIGKILL");
    }
  }

  /** Process mode keeps no pool. */
  adopts(): boolean {
    return false;
  }

  gone(worker: Worker): void {
    if (!worker.warm) return;
    const index = this.#waiting.indexOf(worker);
    if (index >= 0) this.#waiting.splice(index, 1);
    // One that never got ready: the next waits, so a runner that cannot start does not loop.
    if (this.#starting.delete(worker)) this.#failures++;
    if (this.#failures === 0) {
      this.#fill();
      return;
    }
    clearTimeout(this.#retry);
    this.#retry = setTimeout(
      () => this.#fill(),
      doublingDelay(this.#failures, WARM_RETRY_MS, WARM_RETRY_MAX_MS),
    );
    this.#retry.unref();
  }

  /**
   * A waiting runner, if the instance may have one: it was started with no deployment's token and
   * the default deployment's environment, so an instance that needs either gets its own process.
   */
  #warmFor(active: ActiveInstance): Worker | undefined {
    if (this.#o.tokensRequired || active.row.deploymentId !== DEFAULT_DEPLOYMENT) return undefined;
    for (;;) {
      const worker = this.#waiting.pop();
      if (worker === undefined) break;
      if (!worker.gone && worker.call !== undefined) return worker;
    }
    for (const worker of this.#starting) if (worker.startFor === undefined) return worker;
    return undefined;
  }

  /** Starts warm runners up to the number to keep. */
  #fill(): void {
    const { state, spawner, tokens } = this.#o;
    let spare = this.#waiting.length;
    for (const worker of this.#starting) if (worker.startFor === undefined) spare++;
    for (; state.accepting && spare < this.#o.warm; spare++) {
      this.#starting.add(
        spawner.spawn({ kind: "warm", token: tokens.forWarm(), typescript: this.#typescript }),
      );
    }
  }
}

/** Tells a worker to run the instance. */
export function sendStart(workers: Workers, worker: Worker, active: ActiveInstance): void {
  const { id, taskName, module, args, attempt, traceContext } = active.row;
  workers.send(worker, {
    kind: {
      $case: "start",
      value: { instanceId: id, taskName, module, args: args ?? "J[]", attempt, traceContext },
    },
  });
}
