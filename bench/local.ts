/**
 * The in-process local executor, measured through the public SDK:
 *
 * - throughput of trivial tasks against a bare p-queue at the same concurrency (goal: at least
 *   half of p-queue's throughput), runs alternated so drift and GC hit both alike;
 * - the cost of one `setProgress` call in a running task, with and without a listener;
 * - the heap held per finished instance while the executor lives.
 *
 * Every figure is the median of `repeats` runs; all runs are reported as samples.
 * Needs `global.gc` (`node --expose-gc`); `bench/run.ts` arranges that.
 */
import PQueue from "p-queue";
import { LocalExecutor } from "../executor-local/index.js";
import { type TaskInstanceState, getTaskController, setExecutor, task, waitForCompletion } from "../index.js";
import { type BenchRow, type BenchSection, formatNumber, median } from "./report.js";

/** Options of {@link benchLocal}. */
export interface BenchLocalOptions {
  /** Tasks per throughput run and instances per memory run. Default 100,000. */
  tasks?: number;
  /** Local executor and p-queue concurrency. Default 4. */
  concurrency?: number;
  /** `setProgress` calls per progress run. Default 1,000,000. */
  progressCalls?: number;
  /** Runs of each measurement; the median is reported. Default 3. */
  repeats?: number;
}

const add = task(function add(a: number, b: number) {
  return a + b;
});

/** Calls `setProgress` `n` times on a controller looked up once; returns the loop's nanoseconds. */
const progressLoop = task(function benchProgressLoop(n: number) {
  const controller = getTaskController();
  const start = process.hrtime.bigint();
  for (let i = 1; i <= n; i++) controller.setProgress(i / n);
  return Number(process.hrtime.bigint() - start);
});

/** The same, looking the controller up on every call: `getTaskController().setProgress(i / n)`. */
const progressLookupLoop = task(function benchProgressLookupLoop(n: number) {
  const start = process.hrtime.bigint();
  for (let i = 1; i <= n; i++) getTaskController().setProgress(i / n);
  return Number(process.hrtime.bigint() - start);
});

export async function benchLocal(options: BenchLocalOptions = {}): Promise<BenchSection> {
  const tasks = options.tasks ?? 100_000;
  const concurrency = options.concurrency ?? 4;
  const progressCalls = options.progressCalls ?? 1_000_000;
  const repeats = options.repeats ?? 3;
  const gc = requireGc();
  const env = { concurrency, gc };

  // Warm-up: let the JIT see every path once before anything is timed (not reported).
  const warmTasks = Math.min(tasks, 20_000);
  await pQueueThroughput(warmTasks, warmTasks, env);
  await sdkThroughput(warmTasks, warmTasks, env);
  await progressCost(Math.min(progressCalls, 100_000), "none", env);
  await progressCost(Math.min(progressCalls, 100_000), "listener", env);
  await progressCost(Math.min(progressCalls, 100_000), "lookup", env);

  // 1. Throughput, SDK and p-queue alternated (A B, B A, A B, …): all calls up front (the goal),
  // then with at most BATCH in flight, where p-queue's O(backlog) dequeue does not dominate.
  const sdk: number[] = [];
  const pq: number[] = [];
  const sdkBatched: number[] = [];
  const pqBatched: number[] = [];
  const batch = Math.min(BATCH, tasks);
  for (let run = 0; run < repeats; run++) {
    if (run % 2 === 0) {
      sdk.push(await sdkThroughput(tasks, tasks, env));
      pq.push(await pQueueThroughput(tasks, tasks, env));
      sdkBatched.push(await sdkThroughput(tasks, batch, env));
      pqBatched.push(await pQueueThroughput(tasks, batch, env));
    } else {
      pq.push(await pQueueThroughput(tasks, tasks, env));
      sdk.push(await sdkThroughput(tasks, tasks, env));
      pqBatched.push(await pQueueThroughput(tasks, batch, env));
      sdkBatched.push(await sdkThroughput(tasks, batch, env));
    }
  }
  const sdkMedian = median(sdk);
  const pqMedian = median(pq);
  const ratio = sdkMedian / pqMedian;
  const sdkBatchedMedian = median(sdkBatched);
  const pqBatchedMedian = median(pqBatched);

  // 2. setProgress cost, the three variants interleaved.
  const quiet: number[] = [];
  const heard: number[] = [];
  const lookedUp: number[] = [];
  for (let run = 0; run < repeats; run++) {
    quiet.push(await progressCost(progressCalls, "none", env));
    heard.push(await progressCost(progressCalls, "listener", env));
    lookedUp.push(await progressCost(progressCalls, "lookup", env));
  }

  // 3. Heap held per finished instance.
  const held: number[] = [];
  const leftover: number[] = [];
  for (let run = 0; run < repeats; run++) {
    const memory = await heldPerInstance(tasks, env);
    held.push(memory.held);
    leftover.push(memory.afterExecutorDropped);
  }

  setExecutor(new LocalExecutor({ concurrency }));
  await collect(gc);

  const rows: BenchRow[] = [
    {
      name: `SDK + LocalExecutor, ${formatNumber(tasks)} x add(a, b), concurrency ${concurrency}`,
      value: sdkMedian,
      unit: "tasks/s",
      samples: sdk,
    },
    {
      name: `bare p-queue, ${formatNumber(tasks)} x add(() => a + b), concurrency ${concurrency}`,
      value: pqMedian,
      unit: "tasks/s",
      samples: pq,
    },
    {
      name: "throughput ratio local / p-queue",
      value: ratio,
      unit: "x",
      baseline: pqMedian,
      ratio,
      goal: "ratio >= 0.5",
      pass: ratio >= 0.5,
      samples: sdk.map((value, run) => value / (pq[run] as number)),
    },
    {
      name: `SDK + LocalExecutor, same, ${formatNumber(batch)} in flight at a time`,
      value: sdkBatchedMedian,
      unit: "tasks/s",
      samples: sdkBatched,
    },
    {
      name: `bare p-queue, same, ${formatNumber(batch)} in flight at a time`,
      value: pqBatchedMedian,
      unit: "tasks/s",
      samples: pqBatched,
    },
    {
      name: `throughput ratio local / p-queue, ${formatNumber(batch)} in flight (info)`,
      value: sdkBatchedMedian / pqBatchedMedian,
      unit: "x",
      baseline: pqBatchedMedian,
      ratio: sdkBatchedMedian / pqBatchedMedian,
      samples: sdkBatched.map((value, run) => value / (pqBatched[run] as number)),
    },
    {
      name: `setProgress, no listener (${formatNumber(progressCalls)} calls)`,
      value: median(quiet),
      unit: "ns/call",
      samples: quiet,
    },
    {
      name: "setProgress, one instance.onChange listener",
      value: median(heard),
      unit: "ns/call",
      baseline: median(quiet),
      ratio: median(heard) / median(quiet),
      samples: heard,
    },
    {
      name: "getTaskController().setProgress, no listener",
      value: median(lookedUp),
      unit: "ns/call",
      baseline: median(quiet),
      ratio: median(lookedUp) / median(quiet),
      samples: lookedUp,
    },
    {
      name: `heap held per finished instance (${formatNumber(tasks)}, executor kept)`,
      value: median(held),
      unit: "B/instance",
      samples: held,
    },
    {
      name: "heap left per instance once the executor is dropped",
      value: median(leftover),
      unit: "B/instance",
      samples: leftover,
    },
  ];
  return {
    title: `Local executor (node ${process.version}, ${process.platform}/${process.arch})`,
    rows,
    notes: [
      `median of ${repeats} runs, samples in run order; throughput runs alternate SDK / p-queue, after a ${formatNumber(warmTasks)}-task warm-up of each`,
      `per task, all ${formatNumber(tasks)} calls made up front then all awaited: SDK ${formatNumber(1e6 / sdkMedian)} us, p-queue ${formatNumber(1e6 / pqMedian)} us`,
      `per task, ${formatNumber(batch)} in flight at a time: SDK ${formatNumber(1e6 / sdkBatchedMedian)} us, p-queue ${formatNumber(1e6 / pqBatchedMedian)} us`,
      `p-queue 8 dequeues with Array#shift, O(backlog) per task on a large array: with ${formatNumber(tasks)} queued that, not the task, is its cost; the batched rows show the per-task overhead without it`,
      "setProgress figures time only the loop inside the running task; the instance handle's own executor watch is always there, 'no listener' means no onChange listener",
      `heap figures: heapUsed after gc(), before vs after ${formatNumber(tasks)} instances ran to completion, with only the executor (and the task definitions) still referenced`,
    ],
  };
}

/** In-flight bound of the batched throughput comparison. */
const BATCH = 1_000;

interface Env {
  readonly concurrency: number;
  readonly gc: () => void;
}

/**
 * Tasks per second for `n` calls of the `add` task: `batch` calls made at once, then all
 * awaited, until `n` ran (`batch = n`: everything up front).
 */
async function sdkThroughput(n: number, batch: number, env: Env): Promise<number> {
  setExecutor(new LocalExecutor({ concurrency: env.concurrency }));
  await collect(env.gc);
  const start = performance.now();
  let sum = 0;
  for (let done = 0; done < n; done += batch) {
    const size = Math.min(batch, n - done);
    const pending = new Array<Promise<number>>(size);
    for (let i = 0; i < size; i++) pending[i] = waitForCompletion(add(done + i, 1));
    sum += total(await Promise.all(pending));
  }
  const elapsed = performance.now() - start;
  checkSum(sum, n, "SDK");
  return n / (elapsed / 1000);
}

/** The same with a bare p-queue: `queue.add(() => a + b)`. */
async function pQueueThroughput(n: number, batch: number, env: Env): Promise<number> {
  await collect(env.gc);
  const start = performance.now();
  const queue = new PQueue({ concurrency: env.concurrency });
  let sum = 0;
  for (let done = 0; done < n; done += batch) {
    const size = Math.min(batch, n - done);
    const pending = new Array<Promise<unknown>>(size);
    for (let i = 0; i < size; i++) {
      const a = done + i;
      const b = 1;
      pending[i] = queue.add(() => a + b);
    }
    sum += total(await Promise.all(pending));
  }
  const elapsed = performance.now() - start;
  checkSum(sum, n, "p-queue");
  return n / (elapsed / 1000);
}

function total(values: readonly unknown[]): number {
  let sum = 0;
  for (const value of values) sum += value as number;
  return sum;
}

function checkSum(sum: number, n: number, who: string): void {
  const expected = (n * (n - 1)) / 2 + n;
  if (sum !== expected) throw new Error(`${who}: wrong results (sum ${sum}, expected ${expected})`);
}

/** Nanoseconds per `setProgress` call over `n` calls inside one running task. */
async function progressCost(n: number, mode: "none" | "listener" | "lookup", env: Env): Promise<number> {
  setExecutor(new LocalExecutor({ concurrency: env.concurrency }));
  await collect(env.gc);
  let heard = 0;
  const instance: TaskInstanceState<number> = mode === "lookup" ? progressLookupLoop(n) : progressLoop(n);
  if (mode === "listener") {
    instance.onChange(() => {
      heard++;
    });
  }
  const elapsedNs = await waitForCompletion(instance);
  if (mode === "listener" && heard < n) {
    throw new Error(`the onChange listener heard ${heard} of ${n} progress changes`);
  }
  if (instance.progress !== 1) throw new Error(`progress ended at ${instance.progress}, not 1`);
  return elapsedNs / n;
}

/**
 * Heap bytes per instance held by a live executor after `n` instances finished, and what is
 * left once that executor is replaced (should be about nothing).
 */
async function heldPerInstance(n: number, env: Env): Promise<{ held: number; afterExecutorDropped: number }> {
  setExecutor(new LocalExecutor({ concurrency: env.concurrency }));
  await collect(env.gc);
  const before = process.memoryUsage().heapUsed;
  await runAndForget(n);
  await collect(env.gc);
  const after = process.memoryUsage().heapUsed;
  setExecutor(new LocalExecutor({ concurrency: env.concurrency }));
  await collect(env.gc);
  const dropped = process.memoryUsage().heapUsed;
  return { held: (after - before) / n, afterExecutorDropped: (dropped - before) / n };
}

/** Runs `n` instances to completion, keeping no handle and no result. */
async function runAndForget(n: number): Promise<void> {
  const pending = new Array<Promise<number>>(n);
  for (let i = 0; i < n; i++) pending[i] = waitForCompletion(add(i, 1));
  await Promise.all(pending);
}

/** Lets pending callbacks run, then collects garbage until the heap stops shrinking. */
async function collect(gc: () => void): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  let previous = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 5; round++) {
    gc();
    const used = process.memoryUsage().heapUsed;
    if (used >= previous - 1024) break;
    previous = used;
  }
}

function requireGc(): () => void {
  const gc = globalThis.gc;
  if (typeof gc !== "function") {
    throw new Error("benchLocal needs global.gc: run node with --expose-gc (npm run bench does)");
  }
  return () => {
    gc();
  };
}
