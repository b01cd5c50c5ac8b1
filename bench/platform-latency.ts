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
 * Both workload modes, each on its own daemon, warmed up before anything is timed; 5 runs each,
 * with each run's worst sample reported beside the percentiles.
 * Times come from the machine-wide monotonic clock (see `bench/tasks.ts`), in microseconds.
 */
import { LocalExecutor } from "../executor-local/index.js";
import { setExecutor } from "../index.js";
import { type BenchRow, type BenchSection, formatNumber } from "./report.js";
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
  /** Progress steps per run. Default 600. */
  steps?: number;
  /** Milliseconds between two steps inside the task. Default 5. */
  gapMs?: number;
  /** Stops per run. Default 60. */
  stops?: number;
  /** Runs of each measurement, the executors taking turns. Default 5. */
  repeats?: number;
  /** Concurrency of each daemon. Default 2. */
  concurrency?: number;
}

const GOAL_MS = 2;
const WORST_GOAL_MS = 20;
const PYTHON_POLL_MS = 5_000;

type Mode = "pool" | "process";
const MODES: readonly Mode[] = ["pool", "process"];

interface Runs {
  platform: number[][];
  local: number[][];
}

export async function benchPlatformLatency(options: BenchPlatformLatencyOptions = {}): Promise<BenchSection> {
  const startLoad = loadNow();
  const steps = options.steps ?? 600;
  const gapMs = options.gapMs ?? 5;
  const stops = options.stops ?? 60;
  const repeats = options.repeats ?? 5;
  const concurrency = options.concurrency ?? 2;

  const local = new LocalExecutor({ concurrency: 4 });
  const progress = new Map<Mode, Runs>(MODES.map((mode) => [mode, { platform: [], local: [] }]));
  const stop = new Map<Mode, Runs>(MODES.map((mode) => [mode, { platform: [], local: [] }]));
  setExecutor(local);
  await progressRun(20, 2);
  await stopRun(3);
  // One daemon at a time: a process-mode daemon replacing its warm runners would take the CPU
  // from the other's measurement on a small machine.
  for (const mode of MODES) {
    const daemon = await startBenchDaemon({ mode, concurrency });
    const platform = platformExecutor(daemon.address);
    try {
      // Warm-up, not reported: every workload process imports the task module and runs both probes.
      setExecutor(platform);
      await Promise.all(Array.from({ length: concurrency * 2 }, () => progressRun(20, 2)));
      for (let i = 0; i < concurrency * 2; i++) await stopRun(3);
      // Each platform run is paired with a local run right after it (the same moment's load).
      for (let run = 0; run < repeats; run++) {
        for (const [which, executor] of [
          ["platform", platform],
          ["local", local],
        ] as const) {
          setExecutor(executor);
          progress.get(mode)?.[which].push((await progressRun(steps, gapMs)).samples);
          stop.get(mode)?.[which].push(await stopRun(stops));
        }
      }
    } finally {
      setExecutor(new LocalExecutor({ concurrency: 4 }));
      await platform.close();
      await daemon.dispose();
    }
  }

  const rows: BenchRow[] = [];
  for (const mode of MODES) {
    rows.push(
      ...latencyRows(mode, "progress", "setProgress -> client onChange", progress.get(mode) as Runs),
      ...latencyRows(mode, "stop", "stop() -> signal aborted in the task", stop.get(mode) as Runs),
    );
  }
  const all = (runs: number[][]) => runs.flat();
  const pool = progress.get("pool") as Runs;
  return {
    title: "Platform executor latency (pool and process mode) vs LocalExecutor",
    rows,
    notes: [
      `daemons: one in pool mode (${concurrency} warm workload processes), then one in process mode (a process per instance, its default warm runners), one at a time; durable store on; one instance at a time; LocalExecutor in the bench process as the baseline, run right after each platform run`,
      `progress: ${repeats} runs x ${steps} steps ${gapMs} ms apart per executor and mode; every step counts: one the daemon coalesced with later ones as heard when the first later value arrived; samples column: each run's percentile, or each run's worst`,
      `stop: ${repeats} runs x ${stops} stops per executor and mode, each on a fresh instance that said it was listening (in process mode, a fresh process)`,
      "times: machine-wide monotonic clock (process.hrtime) read in both processes, so no clock offset; the progress figure includes encoding the output (a few us)",
      `the Python original has no push at all: its clients poll every ${formatNumber(PYTHON_POLL_MS)} ms, so a change shows up after 0 to ${formatNumber(PYTHON_POLL_MS)} ms (mean ${formatNumber(PYTHON_POLL_MS / 2)} ms); platform progress p99 (pool) is ${formatNumber(percentile(all(pool.platform), 99))} ms`,
      loadNote(startLoad),
    ],
  };
}

function latencyRows(mode: Mode, what: string, description: string, runs: Runs): BenchRow[] {
  const platform = runs.platform.flat();
  const local = runs.local.flat();
  const rows: BenchRow[] = [];
  for (const p of [50, 99] as const) {
    const value = percentile(platform, p);
    const baseline = percentile(local, p);
    rows.push({
      name: `${mode} mode: ${what} p${p}, ${description} (${platform.length} samples)`,
      value,
      unit: "ms",
      baseline,
      ratio: value / baseline,
      ...(p === 99 ? { goal: `p99 <= ${GOAL_MS} ms`, pass: value <= GOAL_MS } : {}),
      samples: runs.platform.map((run) => percentile(run, p)),
    });
  }
  const worst = runs.platform.map((run) => Math.max(...run));
  rows.push({
    name: `${mode} mode: ${what}, worst sample of each run (the worst run's)`,
    value: Math.max(...worst),
    unit: "ms",
    goal: `every run <= ${WORST_GOAL_MS} ms`,
    pass: worst.every((value) => value <= WORST_GOAL_MS),
    samples: worst,
  });
  rows.push({
    name: `local ${what} p99, right after the ${mode}-mode runs (${local.length} samples)`,
    value: percentile(local, 99),
    unit: "ms",
    samples: runs.local.map((run) => percentile(run, 99)),
  });
  return rows;
}
