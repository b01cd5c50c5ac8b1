/**
 * The latency part of the `cluster` section: how fast a change crosses from one daemon to
 * another through PostgreSQL. The workload runs on daemon B, the client talks to daemon A
 * (`--concurrency 0`, it runs nothing):
 *
 * - progress: from the task's `setOutput` + `setProgress` to the client's `onChange`, every step
 *   counted (one coalesced with later ones is heard when the first later value arrives);
 * - stop: from the client's `stop()` (sent to A) to the task's signal aborting on B.
 *
 * Beside it, the same on one daemon on the embedded store (the baseline) and on one daemon on
 * PostgreSQL with client and workload on it (the store's share). Setups take turns.
 */
import { LocalExecutor } from "../executor-local/index.js";
import { type PlatformExecutor, setExecutor } from "../index.js";
import type { BenchPostgres } from "./bench-postgres.js";
import { type ClusterDaemon, startClusterDaemon } from "./cluster-daemon.js";
import { platformExecutor, progressRun, stopRun } from "./platform-common.js";

export interface LatencyOptions {
  readonly concurrency: number;
  /** Progress steps per run. */
  readonly steps: number;
  /** Milliseconds between two steps. */
  readonly gapMs: number;
  /** Stops per run. */
  readonly stops: number;
  /** Runs of each setup. */
  readonly repeats: number;
}

export interface LatencySetup {
  readonly name: string;
  /** `cross`, `embedded` or `same-postgres`. */
  readonly key: string;
  /** Every step of every progress run, one list per run. */
  readonly progress: number[][];
  /** Steps that reached the client on their own, over all runs. */
  alone: number;
  /** Every stop, one list per run. */
  readonly stop: number[][];
}

export async function benchLatency(pg: BenchPostgres, o: LatencyOptions): Promise<LatencySetup[]> {
  const setups: Array<LatencySetup & { daemons: ClusterDaemon[]; executor: PlatformExecutor }> = [];
  const add = (name: string, key: string, daemons: ClusterDaemon[]) =>
    setups.push({
      name,
      key,
      daemons,
      executor: platformExecutor((daemons[0] as ClusterDaemon).address),
      progress: [],
      alone: 0,
      stop: [],
    });
  try {
    const crossUrl = await pg.fresh("latency_cross");
    const front = await startClusterDaemon({ concurrency: 0, store: crossUrl });
    try {
      add("cross-daemon: workload on B, client on A, PostgreSQL", "cross", [
        front,
        await startClusterDaemon({ concurrency: o.concurrency, store: crossUrl }),
      ]);
    } catch (error) {
      await front.dispose();
      throw error;
    }
    add("1 daemon, embedded SQLite store", "embedded", [
      await startClusterDaemon({ concurrency: o.concurrency }),
    ]);
    add("1 daemon, PostgreSQL (client and workload on it)", "same-postgres", [
      await startClusterDaemon({ concurrency: o.concurrency, store: await pg.fresh("latency_same") }),
    ]);
    // Warm-up, not reported: every pool process imports the task module and runs both probes.
    for (const setup of setups) {
      setExecutor(setup.executor);
      await Promise.all(Array.from({ length: o.concurrency * 2 }, () => progressRun(20, 2)));
      for (let i = 0; i < o.concurrency; i++) await stopRun(2);
    }
    for (let run = 0; run < o.repeats; run++) {
      for (let i = 0; i < setups.length; i++) {
        const setup = setups[(i + run) % setups.length] as (typeof setups)[number];
        setExecutor(setup.executor);
        const progress = await progressRun(o.steps, o.gapMs);
        setup.progress.push(progress.samples);
        setup.alone += progress.alone;
        setup.stop.push(await stopRun(o.stops));
      }
    }
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    for (const setup of setups) {
      await setup.executor.close();
      for (const daemon of setup.daemons) await daemon.dispose();
    }
  }
  return setups.map(({ name, key, progress, alone, stop }) => ({ name, key, progress, alone, stop }));
}
