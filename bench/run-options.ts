/**
 * Run options on the platform daemon (pool mode, durable store), issue 10:
 *
 * - delayed start: instances with `delayMs` from 200 to 1,000 ms on an idle daemon; lateness is
 *   the task's own start time (epoch ms, read in the workload) minus its `scheduledFor`;
 * - concurrency-limited throughput: instances of a task with `concurrency.limit` N that each hold
 *   their slot for D ms, on a daemon with room for more; the goal is N / D x 0.9 per second.
 */
import { LocalExecutor } from "../executor-local/index.js";
import { setExecutor } from "../index.js";
import { loadNote, loadNow, percentile, platformExecutor, startBenchDaemon } from "./platform-common.js";
import { type BenchRow, type BenchSection, formatNumber } from "./report.js";
import { benchLimitedFour, benchLimitedTwo, benchStartedAt } from "./tasks.js";

const DELAYED = 200;
const LATE_GOAL_MS = 50;
const HOLD_MS = 50;
const LIMITED = 100;

export async function benchRunOptions(): Promise<BenchSection> {
  const startLoad = loadNow();
  const daemon = await startBenchDaemon({ mode: "pool", concurrency: 8 });
  const platform = platformExecutor(daemon.address);
  const rows: BenchRow[] = [];
  try {
    setExecutor(platform);
    // Warm-up: every pool process imports the task module.
    await Promise.all(Array.from({ length: 16 }, () => benchStartedAt().wait()));

    const delayed = Array.from({ length: DELAYED }, (_, i) =>
      benchStartedAt.with({ delayMs: 200 + ((i * 37) % 800) })(),
    );
    const late: number[] = [];
    for (const handle of delayed) {
      const ranAt = (await handle.wait()) as number;
      late.push(ranAt - (handle.scheduledFor?.getTime() ?? Number.NaN));
    }
    const p99 = percentile(late, 99);
    rows.push(
      { name: `delayed start, lateness p50 (${DELAYED} instances)`, value: percentile(late, 50), unit: "ms" },
      {
        name: "delayed start, lateness p99",
        value: p99,
        unit: "ms",
        goal: `p99 <= ${LATE_GOAL_MS} ms`,
        pass: p99 <= LATE_GOAL_MS,
      },
      { name: "delayed start, earliest (never before its time: >= 0)", value: Math.min(...late), unit: "ms" },
    );

    for (const [limit, limited] of [
      [2, benchLimitedTwo],
      [4, benchLimitedFour],
    ] as const) {
      const started = performance.now();
      await Promise.all(Array.from({ length: LIMITED }, () => limited(HOLD_MS).wait()));
      const perSecond = LIMITED / ((performance.now() - started) / 1000);
      const ceiling = limit / (HOLD_MS / 1000);
      rows.push({
        name: `concurrency limit ${limit}, ${LIMITED} instances of ${HOLD_MS} ms`,
        value: perSecond,
        unit: "instances/s",
        baseline: ceiling,
        ratio: perSecond / ceiling,
        goal: "ratio >= 0.9 (of limit / duration)",
        pass: perSecond / ceiling >= 0.9,
      });
    }
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await platform.close();
    await daemon.dispose();
  }
  return {
    title: "Run options on the platform daemon (pool mode)",
    rows,
    notes: [
      `daemon: pool mode, 8 warm workload processes, durable embedded store; delayed starts ${formatNumber(DELAYED)} instances with delays of 200-1,000 ms on an otherwise idle daemon; lateness = the task's own Date.now() at its start minus scheduledFor`,
      `limited: ${formatNumber(LIMITED)} instances submitted at once to a task limited to N running, each holding its slot ${HOLD_MS} ms; the daemon has room for 8, so the limit is what holds them back; the ceiling is N / ${HOLD_MS} ms`,
      loadNote(startLoad),
    ],
  };
}
