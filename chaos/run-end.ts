/**
 * The end of a chaos run: waiting for every instance to be final, the daemons' final word on
 * each, and the workload processes that must be gone once the daemons are.
 */
import {
  type Instance,
  Status,
  type TaskServiceClient,
} from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { workloadProcesses } from "./procfs.js";
import { listAll, sleep, waitFor } from "./run-helpers.js";
import { type FinalRow, finalFromWire } from "./run-record.js";

export interface FinalListing {
  /** Instances still pending or running when the settle bound ran out. */
  readonly unfinished: FinalRow[];
  /** From the end of the faults until no instance was pending or running (or the bound ran out). */
  readonly settleMs: number;
  readonly final: Map<string, FinalRow>;
  /** Ids listed more than once. */
  readonly duplicates: string[];
}

/**
 * Asks every 250 ms for what is pending or running until nothing is or `settleBoundMs` passed
 * since `faultsEnded`; then lists every instance. `beforeListing` runs in between (the slow
 * watchers read again).
 */
export async function settleAndList(
  client: TaskServiceClient,
  faultsEnded: number,
  settleBoundMs: number,
  findings: string[],
  log: (line: string) => void,
  beforeListing: () => void,
): Promise<FinalListing> {
  let unfinished: FinalRow[] = [];
  let listed = true;
  for (;;) {
    try {
      unfinished = (await listAll(client, [Status.STATUS_PENDING, Status.STATUS_RUNNING], findings)).map(
        finalFromWire,
      );
    } catch (error) {
      // The daemon is gone: what it did not finish shows as missing from the final listing.
      findings.push(`settling: the daemon could not be listed: ${(error as Error).message}`);
      listed = false;
      break;
    }
    if (unfinished.length === 0 || Date.now() - faultsEnded > settleBoundMs) break;
    await sleep(250);
  }
  const settleMs = Date.now() - faultsEnded;
  log(
    `chaos: ${!listed ? "the daemon could not be listed" : unfinished.length === 0 ? `every instance final ${settleMs} ms after the faults` : `${unfinished.length} instance(s) still unfinished after ${settleMs} ms`}`,
  );
  beforeListing();
  let finalList: Instance[] = [];
  try {
    finalList = await listAll(client, [], findings);
  } catch (error) {
    findings.push(`the daemon's final listing failed, so it lists nothing: ${(error as Error).message}`);
  }
  const final = new Map<string, FinalRow>();
  const duplicates: string[] = [];
  for (const instance of finalList) {
    if (final.has(instance.id)) duplicates.push(instance.id);
    final.set(instance.id, finalFromWire(instance));
  }
  return { unfinished, settleMs, final, duplicates };
}

/**
 * After the daemons exited on SIGTERM: workloads may outlive a daemon on purpose (to reattach to
 * the next) and give up after 60 s without one, so every one must be gone by then. Those left
 * are killed and returned.
 */
export async function sweepWorkloads(
  ours: (address: string) => boolean,
  findings: string[],
): Promise<number[]> {
  await waitFor(() => workloadProcesses(ours).length === 0, 5_000);
  const lingering = workloadProcesses(ours);
  if (lingering.length > 0) {
    findings.push(
      `${lingering.length} workload process(es) were still alive 5 s after the daemon exited on SIGTERM with nothing running: ` +
        lingering
          .map(
            (p) => `pid ${p.pid} (parent ${p.ppid}${p.instanceId ? `, instance ${p.instanceId}` : ", pool"})`,
          )
          .join(", "),
    );
    await waitFor(() => workloadProcesses(ours).length === 0, 65_000);
  }
  const leftover = workloadProcesses(ours).map((p) => p.pid);
  for (const pid of leftover) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  return leftover;
}
