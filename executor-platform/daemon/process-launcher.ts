import { isTerminalStatus } from "../../sdk/task-status.js";
import type { ActiveInstance } from "./active-instance.js";
import type { InstanceTable } from "./instance-table.js";
import type { WorkerSpawner } from "./worker-spawner.js";
import type { Worker, Workers } from "./workers.js";
import type { WorkloadLauncher } from "./workload-launcher.js";
import type { WorkloadTokens } from "./workload-token.js";

export interface ProcessLauncherOptions {
  readonly table: InstanceTable;
  readonly workers: Workers;
  readonly spawner: WorkerSpawner;
  readonly tokens: WorkloadTokens;
  /** Whether clients need a token: then a task gets one for its own deployment. */
  readonly tokensRequired: boolean;
  /** An attempt begins to run: the queue records it and starts its timeout. */
  readonly began: (active: ActiveInstance) => void;
}

/** One OS process per instance: the platform's own model. */
export class ProcessLauncher implements WorkloadLauncher {
  readonly #o: ProcessLauncherOptions;

  constructor(options: ProcessLauncherOptions) {
    this.#o = options;
  }

  readonly ready = Number.POSITIVE_INFINITY;

  open(): void {}

  /** It stays pending until its process says hello: a stop before then cancels it, and it never runs. */
  start(active: ActiveInstance): void {
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
    const { table, workers } = this.#o;
    const instanceId = worker.startFor as string;
    const active = table.get(instanceId);
    if (active && active.worker === worker && !isTerminalStatus(active.row.status)) {
      if (active.row.status === "pending") this.#o.began(active);
      sendStart(workers, worker, active);
      if (active.stopRequested) {
        workers.send(worker, { kind: { $case: "stop", value: { instanceId, timeoutMs: 0 } } });
      }
    } else {
      // Cancelled while its process was starting.
      worker.child?.kill("SIGKILL");
    }
  }

  gone(): void {}
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
