/**
 * Schedules on the platform daemon (issue 12):
 *
 * - fire lateness: 20 one-second schedules for 10 s on an otherwise idle daemon; lateness is the
 *   instance's creation time (the daemon stamps it when it fires) minus its occurrence time (its
 *   `scheduledFor`);
 * - idle cost: the daemon's CPU over 20 s with 1,000 hourly schedules that do not fire in the
 *   window, against the same daemon with none, as a share of one core.
 */
import { LocalExecutor } from "../executor-local/index.js";
import { deleteSchedule, listTaskInstances, setExecutor, upsertSchedule } from "../index.js";
import {
  cpuSecondsOf,
  loadNote,
  loadNow,
  percentile,
  platformExecutor,
  sleep,
  startBenchDaemon,
} from "./platform-common.js";
import { type BenchRow, type BenchSection, formatNumber } from "./report.js";
import { benchScheduled } from "./tasks.js";

const SCHEDULES = 20;
const FIRE_SECONDS = 10;
const IDLE_SCHEDULES = 1_000;
const IDLE_SECONDS = 20;

export async function benchSchedules(): Promise<BenchSection> {
  const startLoad = loadNow();
  const daemon = await startBenchDaemon({ mode: "pool", concurrency: 4 });
  const platform = platformExecutor(daemon.address);
  const rows: BenchRow[] = [];
  try {
    setExecutor(platform);
    await benchScheduled(0).wait();

    // Idle cost first, with nothing else running.
    const idle = async (): Promise<number> => {
      const before = cpuSecondsOf([daemon.pid]);
      await sleep(IDLE_SECONDS * 1000);
      return (cpuSecondsOf([daemon.pid]) - before) / IDLE_SECONDS;
    };
    const bare = await idle();
    for (let i = 0; i < IDLE_SCHEDULES; i++) {
      await upsertSchedule({ name: `idle-${i}`, task: benchScheduled, args: [i], cron: `${i % 60} * * * *` });
    }
    // Out of the window: none fires while measured (an hourly one could, at its minute).
    const minute = new Date().getUTCMinutes();
    for (let i = 0; i < IDLE_SCHEDULES; i++) {
      if (i % 60 === minute || i % 60 === (minute + 1) % 60) await deleteSchedule(`idle-${i}`);
    }
    const busy = await idle();
    rows.push({
      name: `idle daemon CPU with ${formatNumber(IDLE_SCHEDULES)} hourly schedules (share of one core)`,
      value: busy * 100,
      unit: "%",
      baseline: bare * 100,
      goal: "< 2% of a core",
      pass: busy * 100 < 2,
    });
    for (let i = 0; i < IDLE_SCHEDULES; i++) await deleteSchedule(`idle-${i}`);

    for (let i = 0; i < SCHEDULES; i++) {
      await upsertSchedule({ name: `fire-${i}`, task: benchScheduled, args: [i], every: 1_000 });
    }
    await sleep(FIRE_SECONDS * 1000);
    for (let i = 0; i < SCHEDULES; i++) await deleteSchedule(`fire-${i}`);
    const fired = await listTaskInstances({ task: benchScheduled.definition.name, limit: 1000 });
    const late = fired
      .filter((i) => i.scheduledFor !== undefined)
      .map((i) => i.createdAt.getTime() - (i.scheduledFor as Date).getTime());
    const p99 = percentile(late, 99);
    rows.push(
      { name: `fire lateness p50 (${late.length} occurrences)`, value: percentile(late, 50), unit: "ms" },
      { name: "fire lateness p99", value: p99, unit: "ms", goal: "p99 <= 50 ms", pass: p99 <= 50 },
      { name: "fire lateness, worst", value: Math.max(...late), unit: "ms" },
    );
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await platform.close();
    await daemon.dispose();
  }
  return {
    title: "Schedules on the platform daemon (pool mode)",
    rows,
    notes: [
      `fire: ${SCHEDULES} schedules every second for ${FIRE_SECONDS} s; lateness = the instance's createdAt (stamped by the daemon as it fires) minus its scheduledFor (the occurrence)`,
      `idle: daemon CPU over ${IDLE_SECONDS} s with ${formatNumber(IDLE_SCHEDULES)} hourly cron schedules none of which fires in the window, vs the same daemon with none (baseline column); the daemon reads every schedule again every 30 s`,
      loadNote(startLoad),
    ],
  };
}
