/**
 * The failover part of the `cluster` section: three daemons with a short lease, a task running
 * on daemon B, B SIGKILLed; from the kill to the client (on daemon A) seeing the instance
 * `failed`, in seconds and in leases. Each kill on a fresh cluster and database.
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

export async function benchFailover(
  pg: BenchPostgres,
  o: { leaseMs: number; kills: number },
): Promise<Failover[]> {
  const kills: Failover[] = [];
  for (let i = 0; i < o.kills; i++) kills.push(await failoverOnce(pg, `failover_${i}`, o.leaseMs));
  return kills;
}

async function failoverOnce(pg: BenchPostgres, database: string, leaseMs: number): Promise<Failover> {
  const store = await pg.fresh(database);
  const daemons: ClusterDaemon[] = [];
  let executor: PlatformExecutor | undefined;
  const orphans: number[] = [];
  try {
    for (const concurrency of [0, 1, 1])
      daemons.push(await startClusterDaemon({ concurrency, store, leaseMs }));
    const [front, doomed, survivor] = daemons as [ClusterDaemon, ClusterDaemon, ClusterDaemon];
    executor = platformExecutor(front.address);
    setExecutor(executor);
    const held = [benchClusterHold(), benchClusterHold()];
    const where = await Promise.all(held.map((instance) => daemonOf(instance)));
    const onDoomed = held[where.indexOf(doomed.workloadAddress)];
    const onSurvivor = held[where.indexOf(survivor.workloadAddress)];
    if (onDoomed === undefined || onSurvivor === undefined) {
      throw new Error(`the holding tasks did not land one on B and one on C: ${where.join(", ")}`);
    }
    // Kill at a random point of the lease's renewal cycle.
    await sleep(Math.random() * (leaseMs / 2));
    const failed = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `the instance on the killed daemon was still ${onDoomed.status} after ${5 * leaseMs} ms`,
            ),
          ),
        5 * leaseMs + 10_000,
      );
      const off = onDoomed.onChange((instance) => {
        if (!instance.isDone()) return;
        const seenAt = performance.now();
        clearTimeout(timer);
        off();
        if (instance.status === "failed") resolve(seenAt);
        else reject(new Error(`the instance on the killed daemon ended ${instance.status}, not failed`));
      });
    });
    orphans.push(...descendantsOf(doomed.pid));
    const killedAt = performance.now();
    await doomed.kill9();
    const seenAt = await failed;
    const error = onDoomed.error?.message ?? "";
    if (!error.includes(doomed.owner))
      throw new Error(`the failed instance's error does not name ${doomed.owner}: ${error}`);
    await onSurvivor.stop();
    await onSurvivor.wait({ timeoutMs: 30_000 });
    return { ms: seenAt - killedAt, error };
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await executor?.close();
    for (const daemon of daemons) await daemon.dispose();
    // The killed daemon's workloads outlive it (they try to reconnect for a while).
    killAll(orphans);
  }
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
