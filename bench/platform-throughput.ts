/**
 * End-to-end throughput of the platform executor in pool mode against BullMQ 5 on a local
 * Redis, the same work on the same machine in the same run: `instances` trivial jobs that each
 * report progress once and return a value, all submitted at once, timed until the client holds
 * every result.
 *
 * - platform: a daemon process (durable store on, its default) with `concurrency` warm workload
 *   processes; the client calls the task `instances` times in one turn (one batched Submit) and
 *   awaits every handle's `wait()`;
 * - BullMQ: as many Worker processes as the daemon has workload processes, each taking one job at
 *   a time (its concurrency 1), as each pool worker does; `Queue.addBulk` from the client,
 *   completions counted from `QueueEvents` in the client. Each job reports progress without
 *   awaiting it, as the task's `setProgress` does.
 *
 * Runs alternate (platform, BullMQ, then BullMQ, platform, …) after a warm-up of each.
 * Installs `redis-server` from Debian when it is not on PATH; starts it on a free port with no
 * persistence and stops it at the end.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Queue, QueueEvents } from "bullmq";
import { LocalExecutor } from "../executor-local/index.js";
import { type TaskInstanceState, setExecutor } from "../index.js";
import {
  ROOT,
  cpuSecondsOf,
  descendantsOf,
  exitOf,
  freePort,
  ownCpuSeconds,
  platformExecutor,
  startBenchDaemon,
  loadNote,
  loadNow,
  which,
} from "./platform-common.js";
import { type BenchRow, type BenchSection, formatNumber, median } from "./report.js";
import { benchTick } from "./tasks.js";

/** Options of {@link benchPlatformThroughput}. */
export interface BenchPlatformThroughputOptions {
  /** Jobs per run. Default 10,000. */
  instances?: number;
  /** Daemon pool sizes (and BullMQ worker processes) to compare at. Default [4, 50]. */
  concurrencies?: readonly number[];
  /** Runs of each side per concurrency. Default 3. */
  repeats?: number;
  /** Jobs of the warm-up run of each side (not reported). Default 1,000. */
  warmup?: number;
}

const RUN_TIMEOUT_MS = 10 * 60_000;
/** Issue 14: the pool past BullMQ by a fifth, at 4 and at 50. */
const GOAL = 1.2;
/** BullMQ worker processes started at a time. */
const WORKER_START_BATCH = 4;

interface Run {
  readonly jobsPerSecond: number;
  /** CPU seconds per 1,000 jobs of each process group: the client, and the server side's parts. */
  readonly cpu: Readonly<Record<string, number>>;
}

interface Comparison {
  readonly concurrency: number;
  readonly platform: Run[];
  readonly bullmq: Run[];
}

export async function benchPlatformThroughput(
  options: BenchPlatformThroughputOptions = {},
): Promise<BenchSection> {
  const startLoad = loadNow();
  const instances = options.instances ?? 10_000;
  const concurrencies = options.concurrencies ?? [4, 50];
  const repeats = options.repeats ?? 3;
  const warmup = options.warmup ?? 1_000;

  const redis = await startRedis();
  const comparisons: Comparison[] = [];
  try {
    for (const concurrency of concurrencies) {
      comparisons.push(
        await compareAt(concurrency, {
          instances,
          repeats,
          warmup,
          redisPort: redis.port,
          redisPid: redis.pid,
        }),
      );
    }
  } finally {
    await redis.stop();
  }

  const rows: BenchRow[] = [];
  const notes: string[] = [
    `${formatNumber(instances)} jobs per run, each reports progress once and returns i + 1; all submitted at once, timed from the first submit until the client holds every result; median of ${repeats} runs per side, alternated, after a ${formatNumber(warmup)}-job warm-up of each`,
    "platform: daemon from dist/, pool mode, durable SQLite store on (synchronous=FULL); client = PlatformExecutor in the bench process (one batched Submit, every handle's wait())",
    `BullMQ ${bullmqVersion()}: as many Worker processes as the pool has workloads, each with concurrency 1 (one job at a time, as a pool worker runs one instance at a time), the job's updateProgress not awaited (as setProgress returns at once); Queue.addBulk + QueueEvents 'completed' in the bench process; completed jobs kept (BullMQ's default), as the daemon keeps instances`,
    `differences left, all in BullMQ's favour: ${redis.version} runs with --save '' --appendonly no, so it writes nothing to disk, while the daemon's store fsyncs every new instance and every end before it answers; the daemon also keeps each instance's row (arguments, result, attempts) for listing, and its log`,
  ];
  for (const { concurrency, platform, bullmq } of comparisons) {
    const p = median(platform.map((run) => run.jobsPerSecond));
    const b = median(bullmq.map((run) => run.jobsPerSecond));
    rows.push(
      {
        name: `platform (pool), concurrency ${concurrency}`,
        value: p,
        unit: "jobs/s",
        samples: platform.map((run) => run.jobsPerSecond),
      },
      {
        name: `BullMQ + Redis, concurrency ${concurrency}`,
        value: b,
        unit: "jobs/s",
        samples: bullmq.map((run) => run.jobsPerSecond),
      },
      {
        name: `throughput ratio platform / BullMQ, concurrency ${concurrency}`,
        value: p / b,
        unit: "x",
        baseline: b,
        ratio: p / b,
        goal: `ratio >= ${GOAL}`,
        pass: p / b >= GOAL,
        samples: platform.map((run, i) => run.jobsPerSecond / (bullmq[i] as Run).jobsPerSecond),
      },
    );
    const cpu = (runs: Run[]) =>
      Object.keys(runs[0]?.cpu ?? {})
        .map((group) => `${group} ${formatNumber(median(runs.map((run) => run.cpu[group] as number)))}`)
        .join(" + ");
    notes.push(
      `concurrency ${concurrency}, CPU seconds per 1,000 jobs (median of runs): platform: ${cpu(platform)}; BullMQ: ${cpu(bullmq)}`,
    );
  }
  notes.push(loadNote(startLoad));
  return { title: "Platform executor throughput (pool mode) vs BullMQ 5 + Redis", rows, notes };
}

async function compareAt(
  concurrency: number,
  o: { instances: number; repeats: number; warmup: number; redisPort: number; redisPid: number },
): Promise<Comparison> {
  const daemon = await startBenchDaemon({ mode: "pool", concurrency });
  const executor = platformExecutor(daemon.address);
  const connection = { host: "127.0.0.1", port: o.redisPort };
  const queueName = `bench-throughput-${concurrency}-${process.pid}`;
  // Every job emits about five events; keep a whole run's, so a reader that falls behind loses none.
  const queue = new Queue(queueName, { connection, streams: { events: { maxLen: 10 * o.instances } } });
  const events = new QueueEvents(queueName, { connection });
  const workers: ChildProcess[] = [];
  const startWorker = () => {
    const worker = spawn(
      process.execPath,
      ["--import", "tsx", join(ROOT, "bench/bullmq-worker.ts"), String(o.redisPort), queueName, "1"],
      { cwd: ROOT, stdio: ["ignore", "inherit", "inherit", "ipc"] },
    );
    workers.push(worker);
    return workerReady(worker);
  };
  const platform: Run[] = [];
  const bullmq: Run[] = [];
  try {
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    // A few at a time: fifty node processes starting at once on two cores take minutes.
    for (let started = 0; started < concurrency; started += WORKER_START_BATCH) {
      await Promise.all(
        Array.from({ length: Math.min(WORKER_START_BATCH, concurrency - started) }, startWorker),
      );
    }
    setExecutor(executor);
    const platformSide = async (n: number) =>
      measure(n, { daemon: [daemon.pid], workloads: descendantsOf(daemon.pid) }, () => platformRun(n));
    const bullSide = async (n: number) =>
      measure(n, { redis: [o.redisPid], workers: workers.map((worker) => worker.pid as number) }, () =>
        bullmqRun(queue, events, n),
      );
    await platformSide(o.warmup);
    await bullSide(o.warmup);
    for (let run = 0; run < o.repeats; run++) {
      if (run % 2 === 0) {
        platform.push(await platformSide(o.instances));
        bullmq.push(await bullSide(o.instances));
      } else {
        bullmq.push(await bullSide(o.instances));
        platform.push(await platformSide(o.instances));
      }
    }
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await executor.close();
    await daemon.dispose();
    await Promise.all(
      workers.map(async (worker) => {
        worker.send("close");
        const killer = setTimeout(() => worker.kill("SIGKILL"), 10_000);
        await exitOf(worker);
        clearTimeout(killer);
      }),
    );
    await events.close();
    await queue.obliterate({ force: true });
    await queue.close();
  }
  return { concurrency, platform, bullmq };
}

/** Times `run` (which returns seconds taken) and the CPU the client and each group of `server` spent. */
async function measure(
  n: number,
  server: Record<string, readonly number[]>,
  run: () => Promise<number>,
): Promise<Run> {
  const client0 = ownCpuSeconds();
  const server0 = Object.fromEntries(
    Object.entries(server).map(([group, pids]) => [group, cpuSecondsOf(pids)]),
  );
  const seconds = await run();
  const cpu: Record<string, number> = { client: ((ownCpuSeconds() - client0) / n) * 1000 };
  for (const [group, pids] of Object.entries(server)) {
    cpu[group] = ((cpuSecondsOf(pids) - (server0[group] as number)) / n) * 1000;
  }
  return { jobsPerSecond: n / seconds, cpu };
}

/** `n` instances of `benchTick` through the current (platform) executor; seconds taken. */
async function platformRun(n: number): Promise<number> {
  const start = performance.now();
  const handles = new Array<TaskInstanceState<number>>(n);
  for (let i = 0; i < n; i++) handles[i] = benchTick(i);
  const results = await Promise.all(handles.map((handle) => handle.wait({ timeoutMs: RUN_TIMEOUT_MS })));
  const seconds = (performance.now() - start) / 1000;
  checkSum(
    results.reduce((sum, value) => sum + value, 0),
    n,
    "platform",
  );
  return seconds;
}

/** `n` jobs through BullMQ: one addBulk, then every 'completed' event; seconds taken. */
async function bullmqRun(queue: Queue, events: QueueEvents, n: number): Promise<number> {
  let done = 0;
  let sum = 0;
  let finish: () => void = () => {};
  let fail: (error: Error) => void = () => {};
  const finished = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  const onCompleted = ({ returnvalue }: { returnvalue: unknown }) => {
    sum += Number(returnvalue);
    if (++done === n) finish();
  };
  const onFailed = ({ jobId, failedReason }: { jobId: string; failedReason: string }) => {
    fail(new Error(`BullMQ job ${jobId} failed: ${failedReason}`));
  };
  events.on("completed", onCompleted);
  events.on("failed", onFailed);
  const timer = setTimeout(
    () => fail(new Error(`BullMQ: ${done} of ${n} jobs completed in time`)),
    RUN_TIMEOUT_MS,
  );
  try {
    const start = performance.now();
    const jobs = new Array<{ name: string; data: { i: number } }>(n);
    for (let i = 0; i < n; i++) jobs[i] = { name: "tick", data: { i } };
    await queue.addBulk(jobs);
    await finished;
    const seconds = (performance.now() - start) / 1000;
    checkSum(sum, n, "BullMQ");
    return seconds;
  } finally {
    clearTimeout(timer);
    events.off("completed", onCompleted);
    events.off("failed", onFailed);
  }
}

function checkSum(sum: number, n: number, who: string): void {
  const expected = (n * (n - 1)) / 2 + n;
  if (sum !== expected) throw new Error(`${who}: wrong results (sum ${sum}, expected ${expected})`);
}

function workerReady(worker: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error("the BullMQ worker did not get ready in 120 s")),
      120_000,
    );
    worker.once("message", (message) => {
      clearTimeout(timer);
      if (message === "ready") resolve();
      else reject(new Error(`the BullMQ worker said ${String(message)}`));
    });
    worker.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the BullMQ worker exited with ${code} before it was ready`));
    });
  });
}

function bullmqVersion(): string {
  const found = spawnSync(process.execPath, ["-p", "require('bullmq/package.json').version"], {
    cwd: ROOT,
    encoding: "utf8",
  });
  return found.stdout.trim() || "5";
}

interface Redis {
  readonly port: number;
  readonly pid: number;
  readonly version: string;
  stop(): Promise<void>;
}

/** `redis-server` on a free loopback port, no persistence; installed from Debian when missing. */
async function startRedis(): Promise<Redis> {
  let binary = which("redis-server");
  if (binary === undefined) {
    process.stdout.write(
      "redis-server is not on PATH: installing it with apt-get (Debian's redis-server) ...\n",
    );
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const update = spawnSync("apt-get", ["update"], { stdio: "inherit", env });
    const install = spawnSync("apt-get", ["install", "-y", "--no-install-recommends", "redis-server"], {
      stdio: "inherit",
      env,
    });
    binary = which("redis-server");
    if (binary === undefined) {
      throw new Error(
        `could not install redis-server (apt-get update exited ${update.status}, install ${install.status}); install it and run again`,
      );
    }
  }
  const version = spawnSync(binary, ["--version"], { encoding: "utf8" })
    .stdout.trim()
    .split(" ")
    .slice(0, 3)
    .join(" ");
  const port = await freePort();
  const child = spawn(
    binary,
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--protected-mode",
      "yes",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const output: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`redis-server did not start in 10 s: ${output.join("")}`)),
      10_000,
    );
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      output.push(line);
      if (line.includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${output.join("\n")}`));
    });
  });
  child.stdout?.resume();
  return {
    port,
    pid: child.pid as number,
    version: version.startsWith("Redis") ? version : `Redis (${version})`,
    async stop() {
      child.kill("SIGTERM");
      await exitOf(child);
    },
  };
}
