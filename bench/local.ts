/**
 * The in-process local executor, measured through the public SDK:
 *
 * - throughput of trivial tasks against a bare p-queue at the same concurrency and the same
 *   number in flight, in two patterns: everything queued at once, and a producer that keeps
 *   1,000 outstanding (goal there: at least half of p-queue's throughput); runs alternated so
 *   drift and GC hit both alike;
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
  await pQueueThroughput(warmTasks, Math.min(WINDOW, warmTasks), env);
  await sdkThroughput(warmTasks, Math.min(WINDOW, warmTasks), env);
  await progressCost(Math.min(progressCalls, 100_000), "none", env);
  await progressCost(Math.min(progressCalls, 100_000), "listener", env);
  await progressCost(Math.min(progressCalls, 100_000), "lookup", env);

  // 1. Throughput, SDK and p-queue alternated (A B, B A, A B, …), in both patterns with the same
  // number in flight on both sides: everything queued at once, then a producer that keeps
  // WINDOW outstanding and submits a new task as each one completes.
  const window = Math.min(WINDOW, tasks);
  const patterns = [
    {
      label: `all ${formatNumber(tasks)} queued at once`,
      inFlight: tasks,
      sdk: [] as number[],
      pq: [] as number[],
    },
    { label: `${formatNumber(window)} in flight`, inFlight: window, sdk: [] as number[], pq: [] as number[] },
  ];
  for (let run = 0; run < repeats; run++) {
    for (const pattern of patterns) {
      if (run % 2 === 0) {
        pattern.sdk.push(await sdkThroughput(tasks, pattern.inFlight, env));
        pattern.pq.push(await pQueueThroughput(tasks, pattern.inFlight, env));
      } else {
        pattern.pq.push(await pQueueThroughput(tasks, pattern.inFlight, env));
        pattern.sdk.push(await sdkThroughput(tasks, pattern.inFlight, env));
      }
    }
  }
  const throughputRows: BenchRow[] = [];
  const perTask: string[] = [];
  for (const pattern of patterns) {
    const sdkMedian = median(pattern.sdk);
    const pqMedian = median(pattern.pq);
    const ratios = pattern.sdk.map((value, run) => value / (pattern.pq[run] as number));
    const ratio = median(ratios);
    const goal = pattern.inFlight === window;
    throughputRows.push(
      {
        name: `SDK + LocalExecutor, ${formatNumber(tasks)} x add(a, b), ${pattern.label}, concurrency ${concurrency}`,
        value: sdkMedian,
        unit: "tasks/s",
        samples: pattern.sdk,
      },
      {
        name: `bare p-queue, ${formatNumber(tasks)} x add(() => a + b), ${pattern.label}, concurrency ${concurrency}`,
        value: pqMedian,
        unit: "tasks/s",
        samples: pattern.pq,
      },
      {
        name: `throughput ratio local / p-queue, ${pattern.label}${goal ? "" : " (info)"}`,
        value: ratio,
        unit: "x",
        baseline: pqMedian,
        ratio,
        ...(goal ? { goal: "ratio >= 0.5", pass: ratio >= 0.5 } : {}),
        samples: ratios,
      },
    );
    perTask.push(
      `per task, ${pattern.label}: SDK ${formatNumber(1e6 / sdkMedian)} us, p-queue ${formatNumber(1e6 / pqMedian)} us`,
    );
  }

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
    ...throughputRows,
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
      ...perTask,
      "ratios are the median of the per-run ratios; each run pairs an SDK run with a p-queue run made next to it",
      "both sides use the same producer (the window refills from each completion) and a synchronous a + b body",
      `p-queue dequeues with Array#shift, O(backlog) per task: with all ${formatNumber(tasks)} queued that, not the task, is its cost; at ${formatNumber(window)} in flight its per-task overhead shows`,
      "what the SDK does per task that p-queue does not: makes an instance id (>= 120 random bits) and a live handle that watches the instance, encodes the arguments and decodes a fresh copy for the function, encodes the result and decodes it for the caller, publishes a snapshot per status change (pending, running, completed), runs the function with a controller in AsyncLocalStorage (which turns on Node's promise hooks for every promise in the process, p-queue's included), and waits through waitForCompletion (an async function around the handle's promise)",
      "and it keeps every instance, readable by id and listable: its final snapshot, id and encoded result stay in the heap (see the heap row) and are copied by the young-generation collector on their way to the old one, where p-queue keeps nothing once a task is done",
      "setProgress figures time only the loop inside the running task; the instance handle's own executor watch is always there, 'no listener' means no onChange listener",
      `heap figures: heapUsed after gc(), before vs after ${formatNumber(tasks)} instances ran to completion, with only the executor (and the task definitions) still referenced`,
    ],
  };
}

/** How many tasks the producer keeps outstanding in the windowed pattern. */
const WINDOW = 1_000;

interface Env {
  readonly concurrency: number;
  readonly gc: () => void;
}

/** Tasks per second for `n` calls of the `add` task, `inFlight` outstanding at a time. */
async function sdkThroughput(n: number, inFlight: number, env: Env): Promise<number> {
  setExecutor(new LocalExecutor({ concurrency: env.concurrency }));
  await collect(env.gc);
  const start = performance.now();
  const sum = await produce(n, inFlight, (i) => waitForCompletion(add(i, 1)));
  const elapsed = performance.now() - start;
  checkSum(sum, n, "SDK");
  return n / (elapsed / 1000);
}

/** The same with a bare p-queue: `queue.add(() => a + b)`. */
async function pQueueThroughput(n: number, inFlight: number, env: Env): Promise<number> {
  await collect(env.gc);
  const start = performance.now();
  const queue = new PQueue({ concurrency: env.concurrency });
  const sum = await produce(n, inFlight, (i) => {
    const a = i;
    const b = 1;
    return queue.add(() => a + b) as Promise<number>;
  });
  const elapsed = performance.now() - start;
  checkSum(sum, n, "p-queue");
  return n / (elapsed / 1000);
}

/**
 * Starts `n` tasks with `start(i)`, keeping `inFlight` outstanding: the first `inFlight` at
 * once, then a new one as each completes. Resolves with the sum of their results.
 */
function produce(n: number, inFlight: number, start: (i: number) => Promise<number>): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let next = 0;
    let done = 0;
    let sum = 0;
    const onDone = (value: number) => {
      sum += value;
      done++;
      if (next < n) launch();
      else if (done === n) resolve(sum);
    };
    const launch = () => {
      const i = next++;
      start(i).then(onDone, reject);
    };
    for (let k = Math.min(inFlight, n); k > 0; k--) launch();
  });
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
