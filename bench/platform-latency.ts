/**
 * How fast the platform executor carries a change across processes, against the in-process
 * LocalExecutor doing the same in the same run:
 *
 * - progress: from a workload's `setOutput` + `setProgress` to the new value on the client's
 *   instance handle (its `onChange` listener), steps spaced `gapMs` apart so each is measured
 *   alone;
 * - stop: from just before the client calls `stop()` to the moment the task's
 *   `controller.signal` aborts in the workload.
 *
 * The daemon runs in pool mode (warm workload processes), warmed up before anything is timed.
 * Times come from the machine-wide monotonic clock (see `bench/tasks.ts`), in microseconds.
 */
import { LocalExecutor } from "../executor-local/index.js";
import { type Executor, setExecutor } from "../index.js";
import { type BenchRow, type BenchSection, formatNumber, median } from "./report.js";
import {
  loadNote,
  loadNow,
  percentile,
  platformExecutor,
  progressRun,
  startBenchDaemon,
  stopRun,
} from "./platform-common.js";

/** Options of {@link benchPlatformLatency}. */
export interface BenchPlatformLatencyOptions {
  /** Progress steps per run. Default 400. */
  steps?: number;
  /** Milliseconds between two steps inside the task. Default 8. */
  gapMs?: number;
  /** Stops per run. Default 100. */
  stops?: number;
  /** Runs of each measurement, platform and local alternated. Default 3. */
  repeats?: number;
  /** Pool size of the daemon. Default 2. */
  concurrency?: number;
}

const GOAL_MS = 5;
const PYTHON_POLL_MS = 5_000;

export async function benchPlatformLatency(options: BenchPlatformLatencyOptions = {}): Promise<BenchSection> {
  const startLoad = loadNow();
  const steps = options.steps ?? 400;
  const gapMs = options.gapMs ?? 8;
  const stops = options.stops ?? 100;
  const repeats = options.repeats ?? 3;
  const concurrency = options.concurrency ?? 2;

  const daemon = await startBenchDaemon({ mode: "pool", concurrency });
  const platform = platformExecutor(daemon.address);
  const local = new LocalExecutor({ concurrency: 4 });
  const progress = { platform: [] as number[][], local: [] as number[][] };
  const stop = { platform: [] as number[][], local: [] as number[][] };
  try {
    // Warm-up, not reported: every pool process imports the task module and runs both probes.
    setExecutor(platform);
    await Promise.all(Array.from({ length: concurrency * 2 }, () => progressRun(20, 2)));
    for (let i = 0; i < concurrency * 2; i++) await stopRun(3);
    setExecutor(local);
    await progressRun(20, 2);
    await stopRun(3);

    const measure = async (which: "platform" | "local", executor: Executor) => {
      setExecutor(executor);
      progress[which].push((await progressRun(steps, gapMs)).samples);
      stop[which].push(await stopRun(stops));
    };
    for (let run = 0; run < repeats; run++) {
      if (run % 2 === 0) {
        await measure("platform", platform);
        await measure("local", local);
      } else {
        await measure("local", local);
        await measure("platform", platform);
      }
    }
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await platform.close();
    await daemon.dispose();
  }

  const rows: BenchRow[] = [
    ...latencyRows("progress", `setProgress -> client onChange`, progress),
    ...latencyRows("stop", `stop() -> signal aborted in the task`, stop),
  ];
  const all = (runs: number[][]) => runs.flat();
  return {
    title: "Platform executor latency (pool mode) vs LocalExecutor",
    rows,
    notes: [
      `daemon: pool mode, ${concurrency} warm workload processes, durable store on; one instance at a time; LocalExecutor in the bench process as the baseline`,
      `progress: ${repeats} runs x ${steps} steps ${gapMs} ms apart per executor (${all(progress.platform).length} platform / ${all(progress.local).length} local samples; every step counts: one the daemon coalesced with later ones as heard when the first later value arrived); samples column: each run's percentile`,
      `stop: ${repeats} runs x ${stops} stops per executor, each on a fresh instance that said it was listening (${all(stop.platform).length} platform / ${all(stop.local).length} local samples)`,
      "times: machine-wide monotonic clock (process.hrtime) read in both processes, so no clock offset; the progress figure includes encoding the output (a few us)",
      `the Python original has no push at all: its clients poll every ${formatNumber(PYTHON_POLL_MS)} ms, so a change shows up after 0 to ${formatNumber(PYTHON_POLL_MS)} ms (mean ${formatNumber(PYTHON_POLL_MS / 2)} ms)`,
      `platform progress p99 is ${formatNumber(percentile(all(progress.platform), 99))} ms, ${formatNumber(PYTHON_POLL_MS / percentile(all(progress.platform), 99))}x below the original's poll interval`,
      loadNote(startLoad),
    ],
  };
}

function latencyRows(
  what: string,
  description: string,
  runs: { platform: number[][]; local: number[][] },
): BenchRow[] {
  const platform = runs.platform.flat();
  const local = runs.local.flat();
  const rows: BenchRow[] = [];
  for (const p of [50, 99] as const) {
    const value = percentile(platform, p);
    const baseline = percentile(local, p);
    rows.push({
      name: `platform ${what} p${p}, ${description} (${platform.length} samples)`,
      value,
      unit: "ms",
      baseline,
      ratio: value / baseline,
      ...(p === 99 ? { goal: `p99 <= ${GOAL_MS} ms`, pass: value <= GOAL_MS } : {}),
      samples: runs.platform.map((run) => percentile(run, p)),
    });
  }
  for (const p of [50, 99] as const) {
    rows.push({
      name: `local ${what} p${p} (${local.length} samples)`,
      value: percentile(local, p),
      unit: "ms",
      samples: runs.local.map((run) => percentile(run, p)),
    });
  }
  rows.push({
    name: `platform ${what}, slowest of a run (median of runs)`,
    value: median(runs.platform.map((run) => Math.max(...run))),
    unit: "ms",
    samples: runs.platform.map((run) => Math.max(...run)),
  });
  return rows;
}
