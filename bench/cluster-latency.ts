/**
 * The latency part of the `cluster` section: how fast a change crosses from one daemon to
 * another through PostgreSQL. The client talks to daemon A (`--concurrency 0`, it runs nothing),
 * the workload runs on another daemon of the cluster:
 *
 * - progress: from the task's `setOutput` + `setProgress` to the client's `onChange`, every step
 *   counted (one coalesced with later ones is heard when the first later value arrives);
 * - stop: from the client's `stop()` (sent to A) to the task's signal aborting on B.
 *
 * Beside it, the same on one daemon on the embedded store (the baseline) and, progress only, on
 * one daemon on PostgreSQL with client and workload on it (the store's share). Setups take turns.
 */
import { LocalExecutor } from "../executor-local/index.js";
import { type PlatformExecutor, setExecutor } from "../index.js";
import { startClusterDaemon } from "./cluster-daemon.js";
import type { Runner } from "./cluster-throughput.js";
import { platformExecutor, progressRun, stopRun } from "./platform-common.js";

export interface LatencyOptions {
  /** Parallel progress probes of the warm-up (twice this), to reach every pool process. */
  readonly concurrency: number;
  /** Progress steps per run. */
  readonly steps: number;
  /** Milliseconds between two steps. */
  readonly gapMs: number;
  /** Stops per cross-daemon run. */
  readonly stops: number;
  /** Stops per run of the embedded-store baseline. */
  readonly baselineStops: number;
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

/**
 * On the throughput part's setups: the cross-daemon figures through a daemon A
 * (`--concurrency 0`) that joins the three-daemon cluster, so the probes run on one of its three
 * other daemons; the baselines on the embedded-store daemon and the one-daemon PostgreSQL setup.
 */
export async function benchLatency(runners: readonly Runner[], o: LatencyOptions): Promise<LatencySetup[]> {
  const by = (key: string) => {
    const runner = runners.find((candidate) => candidate.key === key);
    if (runner?.executor === undefined) throw new Error(`no daemon setup ${key} to measure latency on`);
    return runner;
  };
  const three = by("postgres-3");
  const front = await startClusterDaemon({ concurrency: 0, store: three.url });
  const crossExecutor = platformExecutor(front.address);
  const setups: Array<LatencySetup & { executor: PlatformExecutor }> = [
    ["cross-daemon: client on A, workload on another daemon, PostgreSQL", "cross", crossExecutor],
    ["1 daemon, embedded SQLite store", "embedded", by("embedded").executor],
    ["1 daemon, PostgreSQL (client and workload on it)", "same-postgres", by("postgres-1").executor],
  ].map(([name, key, executor]) => ({
    name: name as string,
    key: key as string,
    executor: executor as PlatformExecutor,
    progress: [],
    alone: 0,
    stop: [],
  }));
  try {
    // Warm-up, not reported: the probes' first runs on every pool process.
    for (const setup of setups) {
      setExecutor(setup.executor);
      await Promise.all(Array.from({ length: o.concurrency * 2 }, () => progressRun(20, 2)));
      await stopRun(4);
    }
    for (let run = 0; run < o.repeats; run++) {
      for (let i = 0; i < setups.length; i++) {
        const setup = setups[(i + run) % setups.length] as (typeof setups)[number];
        setExecutor(setup.executor);
        const progress = await progressRun(o.steps, o.gapMs);
        setup.progress.push(progress.samples);
        setup.alone += progress.alone;
        if (setup.key === "cross") setup.stop.push(await stopRun(o.stops));
        if (setup.key === "embedded") setup.stop.push(await stopRun(o.baselineStops));
      }
    }
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await crossExecutor.close();
    await front.dispose();
  }
  return setups.map(({ name, key, progress, alone, stop }) => ({ name, key, progress, alone, stop }));
}
