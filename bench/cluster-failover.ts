/**
 * The failover part of the `cluster` section: three daemons with a short lease, a task running
 * on daemon B, B SIGKILLed; from the kill to the client (on daemon A) seeing the instance
 * `failed`, in seconds and in leases.
 */
import { LocalExecutor } from "../executor-local/index.js";
import { type PlatformExecutor, type TaskInstanceState, setExecutor } from "../index.js";
import type { BenchPostgres } from "./bench-postgres.js";
import { type ClusterDaemon, killAll, startClusterDaemon } from "./cluster-daemon.js";
import { type ClusterHoldOutput, benchClusterHold } from "./cluster-tasks.js";
import { descendantsOf, platformExecutor, sleep } from "./platform-common.js";

export interface Failover {
  /** From the SIGKILL to the client's onChange with status failed. */
  readonly ms: number;
  /** The failed instance's error message. */
  readonly error: string;
}

/**
 * `o.kills` kills on one cluster: daemon A (`--concurrency 0`, the client's) and C
 * (`--concurrency 1`, kept busy by a holding task for the whole part, so new work lands on B)
 * stay up; each kill starts a new B, waits until a holding task runs on it, pauses at random
 * within the lease's renewal cycle, and SIGKILLs B.
 */
export async function benchFailover(
  pg: BenchPostgres,
  o: { leaseMs: number; kills: number },
): Promise<Failover[]> {
  const store = await pg.fresh("failover");
  const leaseMs = o.leaseMs;
  const daemons: ClusterDaemon[] = [];
  let executor: PlatformExecutor | undefined;
  const orphans: number[] = [];
  const kills: Failover[] = [];
  try {
    for (const concurrency of [0, 1]) daemons.push(await startClusterDaemon({ concurrency, store, leaseMs }));
    const [front, survivor] = daemons as [ClusterDaemon, ClusterDaemon];
    executor = platformExecutor(front.address);
    setExecutor(executor);
    const onSurvivor = benchClusterHold();
    const survivorAt = await daemonOf(onSurvivor);
    if (survivorAt !== survivor.workloadAddress) {
      throw new Error(`the first holding task ran on ${survivorAt}, not on C (${survivor.workloadAddress})`);
    }
    for (let i = 0; i < o.kills; i++) {
      const doomed = await startClusterDaemon({ concurrency: 1, store, leaseMs });
      daemons.push(doomed);
      const onDoomed = benchClusterHold();
      const doomedAt = await daemonOf(onDoomed);
      if (doomedAt !== doomed.workloadAddress) {
        throw new Error(`the holding task ran on ${doomedAt}, not on the new B (${doomed.workloadAddress})`);
      }
      await sleep(Math.random() * (leaseMs / 2));
      const failed = failedAt(onDoomed, leaseMs);
      const workloads = descendantsOf(doomed.pid);
      orphans.push(...workloads);
      const killedAt = performance.now();
      await doomed.kill9();
      const seenAt = await failed;
      // The killed daemon's workloads outlive it (they try to reconnect for a while).
      killAll(workloads);
      const error = onDoomed.error?.message ?? "";
      if (!error.includes(doomed.owner))
        throw new Error(`the failed instance's error does not name ${doomed.owner}: ${error}`);
      kills.push({ ms: seenAt - killedAt, error });
    }
    await onSurvivor.stop();
    await onSurvivor.wait({ timeoutMs: 30_000 });
    return kills;
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await executor?.close();
    for (const daemon of daemons) await daemon.dispose();
    killAll(orphans);
  }
}

/** When the client's handle first shows `instance` failed (rejects if it ends otherwise). */
function failedAt(instance: TaskInstanceState<string>, leaseMs: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(`the instance on the killed daemon was still ${instance.status} after ${5 * leaseMs} ms`),
        ),
      5 * leaseMs + 10_000,
    );
    const off = instance.onChange((snapshot) => {
      if (!snapshot.isDone()) return;
      const seenAt = performance.now();
      clearTimeout(timer);
      off();
      if (snapshot.status === "failed") resolve(seenAt);
      else reject(new Error(`the instance on the killed daemon ended ${snapshot.status}, not failed`));
    });
  });
}

/** The workload address a holding instance reports once it runs. */
async function daemonOf(instance: TaskInstanceState<string>): Promise<string> {
  const deadline = AbortSignal.timeout(60_000);
  for await (const snapshot of instance.changes({ signal: deadline })) {
    const output = snapshot.output as ClusterHoldOutput | undefined;
    if (output?.daemon) return output.daemon;
    if (snapshot.status !== "pending" && snapshot.status !== "running") break;
  }
  throw new Error(`the holding task ended ${instance.status} before it said where it runs`);
}
