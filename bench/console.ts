/**
 * The web console's speed (SPEC §6), against a pool-mode daemon with `--http`:
 *
 * - first page: with 100,000 finished instances stored (all finished in the last 17 minutes: the
 *   throughput view's worst case), the time from asking for the page to having what its first
 *   view needs: the page, then its style, its scripts and its data, as a browser fetches them.
 *   For the instances list (the first 50) and for the overview (counts by status over every
 *   stored instance, finished per minute). Goal: under 300 ms.
 * - push: from a workload's `setProgress` to the change arriving on the console's event stream
 *   (read with fetch, as the page reads it), steps spaced apart so each travels alone. Goal:
 *   p99 under 50 ms.
 *
 * The history is written straight into the daemon's SQLite file before it starts (running
 * 100,000 real instances would take minutes and measure nothing more here).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalExecutor } from "../executor-local/index.js";
import { openSqliteStore } from "../executor-platform/store/sqlite/sqlite-store.js";
import { type StoredInstance, runFields } from "../executor-platform/store/store.js";
import { setExecutor, waitForCompletion } from "../index.js";
import { loadNote, loadNow, percentile, platformExecutor, startBenchDaemon } from "./platform-common.js";
import { type BenchRow, type BenchSection, formatNumber, median } from "./report.js";
import { benchLatencyProbe, nowMicros } from "./tasks.js";

export interface BenchConsoleOptions {
  /** Stored instances. Default 100,000. */
  instances?: number;
  /** Timed first-page loads. Default 20. */
  loads?: number;
  /** Progress steps timed. Default 300, 20 ms apart. */
  steps?: number;
}

const BATCH = 10_000;

export async function benchConsole(options: BenchConsoleOptions = {}): Promise<BenchSection> {
  const startLoad = loadNow();
  const instances = options.instances ?? 100_000;
  const loads = options.loads ?? 20;
  const steps = options.steps ?? 300;
  const dataDir = mkdtempSync(join(tmpdir(), "nt-bench-console-"));
  await seed(dataDir, instances);
  const daemon = await startBenchDaemon({
    mode: "pool",
    concurrency: 2,
    dataDir,
    args: ["--http", "127.0.0.1:0"],
  });
  const executor = platformExecutor(daemon.address);
  const firstPage: number[] = [];
  const overviewPage: number[] = [];
  const pushed: number[] = [];
  try {
    setExecutor(executor);
    const base = `http://${daemon.http}`;
    const get = async (path: string) => {
      const response = await fetch(base + path);
      if (!response.ok) throw new Error(`${path}: ${response.status}`);
      return response.text();
    };
    // The two first views: the overview (counts over every stored instance) and the instances list.
    // The page, then its style, its script (then the modules it imports) and its data at once.
    const load = async (api: string) => {
      const start = performance.now();
      await get("/");
      await Promise.all([
        get("/console/app.css"),
        get("/console/app/console-app.js").then(() =>
          Promise.all([get("/console/app/console-kit.js"), get("/console/app/console-logs.js")]),
        ),
        get(api),
      ]);
      return performance.now() - start;
    };
    // Warm-up, not reported: the first of each reads its statements and pages in.
    await load("/console/api/overview");
    await load("/console/api/instances?limit=50");
    for (let i = 0; i < loads; i++) {
      firstPage.push(await load("/console/api/instances?limit=50"));
      overviewPage.push(await load("/console/api/overview"));
    }
    const counted = JSON.parse(await get("/console/api/overview")).counts.completed;
    if (counted !== instances) throw new Error(`the overview counted ${counted} of ${instances} instances`);

    // Push latency: the event stream's arrival time of each step's progress.
    const abort = new AbortController();
    const events = await fetch(`${base}/console/api/events`, { signal: abort.signal });
    const arrived = new Map<number, number>();
    const reading = (async () => {
      const reader = (events.body as ReadableStream<Uint8Array>)
        .pipeThrough(new TextDecoderStream())
        .getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const now = nowMicros();
        buffer += value;
        for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!event.startsWith("data: ")) continue;
          for (const row of JSON.parse(event.slice(6)) as Array<{ progress: number; status: string }>) {
            if (row.status !== "running") continue;
            const step = Math.round(row.progress * steps);
            if (step > 0 && !arrived.has(step)) arrived.set(step, now);
          }
        }
      }
    })().catch(() => {});
    const probe = benchLatencyProbe(steps, 20);
    const sent = await waitForCompletion(probe);
    abort.abort();
    await reading;
    for (let step = 1; step <= steps; step++) {
      const at = arrived.get(step);
      if (at !== undefined) pushed.push((at - (sent[step - 1] as number)) / 1000);
    }
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await executor.close();
    await daemon.dispose();
  }
  const p99 = percentile(firstPage, 99);
  const overviewP99 = percentile(overviewPage, 99);
  const pushP99 = percentile(pushed, 99);
  const rows: BenchRow[] = [
    {
      name: `console instances page (page, script, first 50) with ${formatNumber(instances)} stored, p50`,
      value: median(firstPage),
      unit: "ms",
      samples: firstPage,
    },
    { name: "console instances page, p99", value: p99, unit: "ms", goal: "p99 < 300 ms", pass: p99 < 300 },
    {
      name: `console overview page (page, script, counts and throughput over ${formatNumber(instances)}), p50`,
      value: median(overviewPage),
      unit: "ms",
      samples: overviewPage,
    },
    {
      name: "console overview page, p99",
      value: overviewP99,
      unit: "ms",
      goal: "p99 < 300 ms",
      pass: overviewP99 < 300,
    },
    { name: "progress pushed to the console's event stream, p50", value: median(pushed), unit: "ms" },
    {
      name: `progress pushed to the console's event stream, p99 (${pushed.length} of ${steps} steps seen)`,
      value: pushP99,
      unit: "ms",
      goal: "p99 < 50 ms",
      pass: pushP99 < 50,
    },
  ];
  return {
    title: "Console: first page with a large history, progress pushed to the browser's stream",
    rows,
    notes: [
      "HTTP from the bench process with fetch, as the page fetches; a browser adds its own parse and paint.",
      "Steps the daemon coalesced into one save arrive once; a step whose change was merged into a later one is not counted.",
      loadNote(startLoad),
    ],
  };
}

/** Writes `count` finished instances of one task into a new store in `dataDir`. */
async function seed(dataDir: string, count: number): Promise<void> {
  const store = await openSqliteStore(dataDir);
  const now = Date.now();
  try {
    for (let done = 0; done < count; done += BATCH) {
      const rows: StoredInstance[] = [];
      for (let i = done; i < Math.min(count, done + BATCH); i++) {
        rows.push({
          id: `seed-${i}`,
          deploymentId: "default",
          taskId: "seeded",
          taskName: "seeded",
          module: join(dataDir, "seeded.js"),
          args: undefined,
          status: "completed",
          progress: 1,
          output: undefined,
          result: `J${i}`,
          error: undefined,
          createdAt: now - (count - i) * 10,
          startedAt: now - (count - i) * 10,
          finishedAt: now - (count - i) * 10 + 5,
          revision: 3,
          sequence: i + 1,
          position: i + 1,
          owner: "",
          ...runFields(undefined),
          traceContext: undefined,
        });
      }
      await store.save(rows);
    }
  } finally {
    await store.close();
  }
}
