/**
 * Task functions of the `cluster` bench section (the others come from `bench/tasks.ts`).
 * Workload processes import this module (through tsx), so it only defines tasks.
 */
import { getTaskController, task } from "numerous-tasks";

/** What {@link benchClusterHold} puts in its output once it runs. */
export interface ClusterHoldOutput {
  /**
   * The address its workload reports to: the daemon's private socket,
   * `unix:<the daemon's data dir>/workloads.sock`, so it names the daemon that runs it.
   */
  readonly daemon: string;
  readonly pid: number;
}

/** Says which daemon runs it, then waits for a stop (or for its daemon to be declared dead). */
export const benchClusterHold = task(async function benchClusterHold() {
  const controller = getTaskController();
  const output: ClusterHoldOutput = { daemon: process.env.NUMEROUS_EXECUTOR_ADDRESS ?? "", pid: process.pid };
  controller.setOutput({ ...output });
  await new Promise<void>((resolve) => {
    if (controller.signal.aborted) resolve();
    else controller.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  return "stopped";
});
