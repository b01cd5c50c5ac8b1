/**
 * The platform daemon with a large history: its memory (VmRSS of the daemon process) once
 * `instances` finished instances are stored, against the same daemon before them, and the time a
 * client takes to list them all page by page (`listTaskInstances` with `limit` and `cursor`),
 * against reading the same pages straight from the daemon's SQLite file in the bench process.
 *
 * The instances are real: trivial tasks submitted through the SDK in batches to a pool-mode
 * daemon, each run to completion. After the listing runs the daemon is restarted over the same
 * data directory and its RSS read again (what the history costs when nothing has touched it).
 */
import { join } from "node:path";
import Database from "better-sqlite3";
import { LocalExecutor } from "../executor-local/index.js";
import { DATABASE_FILE } from "../executor-platform/store/sqlite/sqlite-store.js";
import { type TaskInstanceState, listTaskInstances, setExecutor } from "../index.js";
import { loadNote, loadNow, mib, platformExecutor, sleep, startBenchDaemon } from "./platform-common.js";
import { type BenchRow, type BenchSection, formatNumber, median } from "./report.js";
import { benchTick } from "./tasks.js";

/** Options of {@link benchPlatformStore}. */
export interface BenchPlatformStoreOptions {
  /** Instances to store. Default 100,000. */
  instances?: number;
  /** Instances submitted at a time. Default 10,000. */
  batch?: number;
  /** Page size of the listing. Default 1,000 (the cap). */
  pageSize?: number;
  /** Runs of the listing, SDK and raw SQLite alternated. Default 3. */
  repeats?: number;
  /** Daemon pool size. Default 4. */
  concurrency?: number;
}

const WARMUP = 1_000;

export async function benchPlatformStore(options: BenchPlatformStoreOptions = {}): Promise<BenchSection> {
  const startLoad = loadNow();
  const instances = options.instances ?? 100_000;
  const batch = options.batch ?? 10_000;
  const pageSize = options.pageSize ?? 1_000;
  const repeats = options.repeats ?? 3;
  const concurrency = options.concurrency ?? 4;

  let daemon = await startBenchDaemon({ mode: "pool", concurrency });
  let executor = platformExecutor(daemon.address);
  const dataDir = daemon.dataDir;
  const sdkList: number[] = [];
  const rawList: number[] = [];
  let idleRss: number;
  let fullRss: number;
  let listedRss: number;
  let restartedRss: number;
  let restartedListedRss: number;
  let createSeconds: number;
  let total: number;
  try {
    setExecutor(executor);
    await submitAll(WARMUP, WARMUP);
    idleRss = await settledRss(daemon.rss);

    const start = performance.now();
    await submitAll(instances, batch);
    createSeconds = (performance.now() - start) / 1000;
    fullRss = await settledRss(daemon.rss);
    total = WARMUP + instances;

    const database = new Database(join(dataDir, DATABASE_FILE), { readonly: true, fileMustExist: true });
    try {
      // Warm-up of both, not reported.
      await listWithSdk(pageSize, total);
      listRaw(database, pageSize, total);
      for (let run = 0; run < repeats; run++) {
        if (run % 2 === 0) {
          sdkList.push(await listWithSdk(pageSize, total));
          rawList.push(listRaw(database, pageSize, total));
        } else {
          rawList.push(listRaw(database, pageSize, total));
          sdkList.push(await listWithSdk(pageSize, total));
        }
      }
    } finally {
      database.close();
    }
    listedRss = await settledRss(daemon.rss);

    await executor.close();
    await daemon.stop();
    daemon = await startBenchDaemon({ mode: "pool", concurrency, dataDir });
    executor = platformExecutor(daemon.address);
    setExecutor(executor);
    await sleep(1_000);
    restartedRss = await settledRss(daemon.rss);
    await listWithSdk(pageSize, total);
    restartedListedRss = await settledRss(daemon.rss);
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await executor.close();
    await daemon.dispose();
  }

  const perInstance = (fullRss - idleRss) / instances;
  const sdk = median(sdkList);
  const raw = median(rawList);
  const rows: BenchRow[] = [
    {
      name: `daemon RSS, idle after a ${formatNumber(WARMUP)}-instance warm-up`,
      value: mib(idleRss),
      unit: "MiB",
    },
    {
      name: `daemon RSS with ${formatNumber(total)} stored (finished) instances`,
      value: mib(fullRss),
      unit: "MiB",
      baseline: mib(idleRss),
      ratio: fullRss / idleRss,
    },
    { name: "daemon RSS growth per stored instance", value: perInstance, unit: "B/instance" },
    {
      name: `daemon RSS after ${repeats + 1} full listings`,
      value: mib(listedRss),
      unit: "MiB",
      baseline: mib(idleRss),
      ratio: listedRss / idleRss,
    },
    {
      name: "daemon RSS after a restart over the same store",
      value: mib(restartedRss),
      unit: "MiB",
      baseline: mib(idleRss),
      ratio: restartedRss / idleRss,
    },
    {
      name: "  ... and after one full listing",
      value: mib(restartedListedRss),
      unit: "MiB",
      baseline: mib(idleRss),
      ratio: restartedListedRss / idleRss,
    },
    {
      name: `list all ${formatNumber(total)} via listTaskInstances, ${formatNumber(pageSize)} a page`,
      value: sdk,
      unit: "ms",
      baseline: raw,
      ratio: sdk / raw,
      samples: sdkList,
    },
    {
      name: "  same pages read straight from the SQLite file (baseline)",
      value: raw,
      unit: "ms",
      samples: rawList,
    },
    {
      name: "listing rate via the SDK",
      value: total / (sdk / 1000),
      unit: "instances/s",
      samples: sdkList.map((ms) => total / (ms / 1000)),
    },
    {
      name: `creating the ${formatNumber(instances)} (submit to result, pool of ${concurrency})`,
      value: instances / createSeconds,
      unit: "instances/s",
    },
  ];
  return {
    title: `Platform daemon with ${formatNumber(total)} stored instances: memory and listing`,
    rows,
    notes: [
      `instances: benchTick (one progress report, returns i + 1) through the SDK, ${formatNumber(batch)} submitted at a time, each batch awaited; pool mode, concurrency ${concurrency}, durable store on`,
      "RSS: VmRSS from /proc/<daemon pid>/status, read after the daemon was quiet for a second (the lowest of several reads); V8 may hold on to freed heap, so RSS is an upper bound on what instances keep",
      `listing: page after page with the last id as the cursor until a short page, through a PlatformExecutor client (gRPC, daemon reads SQLite, protobuf, SDK handles); baseline: the same query (deployment, position > cursor, ORDER BY position, LIMIT ${formatNumber(pageSize)}) on the daemon's database file with better-sqlite3 in the bench process; median of ${repeats} runs, alternated, after one warm-up each`,
      "no goal was set for this section: the figures are for tracking",
      loadNote(startLoad),
    ],
  };
}

/** Submits `n` benchTick instances, `batch` at a time, each batch awaited to the last result. */
async function submitAll(n: number, batch: number): Promise<void> {
  for (let done = 0; done < n; done += batch) {
    const size = Math.min(batch, n - done);
    const handles = new Array<TaskInstanceState<number>>(size);
    for (let i = 0; i < size; i++) handles[i] = benchTick(done + i);
    await Promise.all(handles.map((handle) => handle.wait({ timeoutMs: 600_000 })));
  }
}

/** Milliseconds to list every instance through the SDK, one page at a time. */
async function listWithSdk(pageSize: number, expected: number): Promise<number> {
  const start = performance.now();
  let seen = 0;
  let cursor: string | undefined;
  for (;;) {
    const page = await listTaskInstances({ limit: pageSize, ...(cursor === undefined ? {} : { cursor }) });
    seen += page.length;
    if (page.length < pageSize) break;
    cursor = (page.at(-1) as TaskInstanceState).id;
  }
  const elapsed = performance.now() - start;
  if (seen !== expected) throw new Error(`the SDK listed ${seen} instances, not ${expected}`);
  return elapsed;
}

/** Milliseconds to read the same pages from the SQLite file directly. */
function listRaw(database: Database.Database, pageSize: number, expected: number): number {
  const statement = database.prepare(
    "SELECT * FROM instances WHERE deployment_id = ? AND position > ? ORDER BY position LIMIT ?",
  );
  const start = performance.now();
  let seen = 0;
  let after = 0;
  for (;;) {
    const page = statement.all("default", after, pageSize) as Array<{ position: number }>;
    seen += page.length;
    if (page.length < pageSize) break;
    after = (page.at(-1) as { position: number }).position;
  }
  const elapsed = performance.now() - start;
  if (seen !== expected) throw new Error(`SQLite holds ${seen} instances, not ${expected}`);
  return elapsed;
}

/** The lowest of five RSS reads 200 ms apart, after a second of quiet. */
async function settledRss(read: () => number): Promise<number> {
  await sleep(1_000);
  let lowest = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 5; i++) {
    lowest = Math.min(lowest, read());
    await sleep(200);
  }
  return lowest;
}
