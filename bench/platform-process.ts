/**
 * The platform executor in process-per-instance mode (its default): instances per second of
 * trivial tasks, against bare `node -e 0` process starts per second at the same parallelism,
 * measured in the same run, runs alternated.
 *
 * Two task modules: `bench/tasks.ts` (TypeScript: the daemon starts each workload with tsx) and
 * `bench/tasks-plain.mjs` (plain JavaScript, as a compiled app ships: no tsx). Two more process
 * starts are timed for context, not goals: `node --import tsx -e 0`, and `node cli.js run`
 * without the daemon's environment, which loads the workload runner (gRPC included) and exits.
 */
import { spawn } from "node:child_process";
import { LocalExecutor } from "../executor-local/index.js";
import { type TaskFunction, type TaskInstanceState, setExecutor } from "../index.js";
import {
  CLI,
  ROOT,
  loadNote,
  loadNow,
  percentile,
  platformExecutor,
  startBenchDaemon,
} from "./platform-common.js";
import { type BenchRow, type BenchSection, formatNumber, median } from "./report.js";
import { benchBeganPlain, benchTickPlain } from "./tasks-plain.mjs";
import { benchBegan, benchTick } from "./tasks.js";

/** Options of {@link benchPlatformProcess}. */
export interface BenchPlatformProcessOptions {
  /** Instances (and process starts) per run. Default 200. */
  instances?: number;
  /** Daemon concurrency, and processes started at a time. Default 4. */
  concurrency?: number;
  /** Runs of each measurement. Default 3. */
  repeats?: number;
  /** Slices per run; the measurements take turns slice by slice. Default 5. */
  slices?: number;
  /** Submit-to-running samples per setup (one instance at a time). Default 30. */
  latencySamples?: number;
}

/** Between two latency samples: an app that starts a task now and then, not a flood. */
const LATENCY_PACE_MS = 300;
const LATENCY_GOAL = 1.2;

const MEASURES = ["bare", "ts", "plain", "tsx", "runner"] as const;
type Measure = (typeof MEASURES)[number];

/** Instances per second against bare node starts (issue 14): plain modules, and TypeScript through tsx. */
const GOAL_PLAIN = 0.8;
const GOAL_TYPESCRIPT = 0.5;

export async function benchPlatformProcess(options: BenchPlatformProcessOptions = {}): Promise<BenchSection> {
  const startLoad = loadNow();
  const n = options.instances ?? 200;
  const concurrency = options.concurrency ?? 4;
  const repeats = options.repeats ?? 3;
  const slices = options.slices ?? 5;

  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.NUMEROUS_EXECUTOR_ADDRESS;
  delete env.NUMEROUS_WORKLOAD_TOKEN;
  const bare = (count: number) => startsSeconds(count, concurrency, ["-e", "0"], env);
  const withTsx = (count: number) => startsSeconds(count, concurrency, ["--import", "tsx", "-e", "0"], env);
  const runner = (count: number) => startsSeconds(count, concurrency, [CLI, "run"], env, 2);

  const latencySamples = options.latencySamples ?? 30;
  const daemon = await startBenchDaemon({ mode: "process", concurrency });
  // The same daemon with no runner started ahead of demand: what warm runners save.
  const cold = await startBenchDaemon({ mode: "process", concurrency, args: ["--warm-workloads", "0"] });
  const coldExecutor = platformExecutor(cold.address);
  const executor = platformExecutor(daemon.address);
  const results = {
    bare: [] as number[],
    ts: [] as number[],
    plain: [] as number[],
    tsx: [] as number[],
    runner: [] as number[],
  };
  const latency = {
    bare: [] as number[],
    ts: [] as number[],
    plain: [] as number[],
    coldTs: [] as number[],
    coldPlain: [] as number[],
  };
  try {
    setExecutor(executor);
    // Warm-up, not reported: the OS file cache, tsx's compile cache, the daemon's JIT.
    const warmup = Math.min(n, 40);
    await bare(warmup);
    await instancesSeconds(benchTick, warmup);
    await instancesSeconds(benchTickPlain, warmup);
    await withTsx(warmup);
    await runner(warmup);
    // Each run is cut into slices, every measurement taking its turn in each slice (the order
    // reversed every other slice), so load from elsewhere on the machine hits all of them alike.
    const perSlice = Math.ceil(n / slices);
    for (let run = 0; run < repeats; run++) {
      const seconds: Record<Measure, number> = { bare: 0, ts: 0, plain: 0, tsx: 0, runner: 0 };
      for (let slice = 0; slice < slices; slice++) {
        const steps: Array<[Measure, () => Promise<number>]> = [
          ["bare", () => bare(perSlice)],
          ["ts", () => instancesSeconds(benchTick, perSlice)],
          ["plain", () => instancesSeconds(benchTickPlain, perSlice)],
          ["tsx", () => withTsx(perSlice)],
          ["runner", () => runner(perSlice)],
        ];
        if ((run * slices + slice) % 2 === 1) steps.reverse();
        for (const [measure, step] of steps) seconds[measure] += await step();
      }
      for (const measure of MEASURES) results[measure].push((perSlice * slices) / seconds[measure]);
    }
    // Submit-to-running, one instance at a time, paced; the setups take turns sample by sample.
    const pace = () => new Promise((resolve) => setTimeout(resolve, LATENCY_PACE_MS));
    for (let i = 0; i < latencySamples + 2; i++) {
      const keep = i >= 2; // the first two warm up each setup
      const bareMs = await oneStartMs(env);
      setExecutor(executor);
      const ts = await beganMs(benchBegan);
      await pace();
      const plain = await beganMs(benchBeganPlain);
      await pace();
      setExecutor(coldExecutor);
      const coldTs = await beganMs(benchBegan);
      const coldPlain = await beganMs(benchBeganPlain);
      await pace();
      if (!keep) continue;
      latency.bare.push(bareMs);
      latency.ts.push(ts);
      latency.plain.push(plain);
      latency.coldTs.push(coldTs);
      latency.coldPlain.push(coldPlain);
    }
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await executor.close();
    await coldExecutor.close();
    await daemon.dispose();
    await cold.dispose();
  }

  const bareMedian = median(results.bare);
  const ratioRow = (name: string, values: number[], goal: number): BenchRow => {
    const ratio = median(values) / bareMedian;
    return {
      name,
      value: ratio,
      unit: "x",
      baseline: bareMedian,
      ratio,
      goal: `ratio >= ${goal}`,
      pass: ratio >= goal,
      samples: values.map((value, run) => value / (results.bare[run] as number)),
    };
  };
  const rows: BenchRow[] = [
    {
      name: `bare \`node -e 0\`, ${concurrency} at a time`,
      value: bareMedian,
      unit: "starts/s",
      samples: results.bare,
    },
    {
      name: `platform, process mode, TypeScript task module (tsx), concurrency ${concurrency}`,
      value: median(results.ts),
      unit: "instances/s",
      samples: results.ts,
    },
    ratioRow("ratio platform (.ts module) / bare node starts", results.ts, GOAL_TYPESCRIPT),
    {
      name: `platform, process mode, plain .mjs task module, concurrency ${concurrency}`,
      value: median(results.plain),
      unit: "instances/s",
      samples: results.plain,
    },
    ratioRow("ratio platform (.mjs module) / bare node starts", results.plain, GOAL_PLAIN),
    {
      name: `\`node --import tsx -e 0\`, ${concurrency} at a time (context)`,
      value: median(results.tsx),
      unit: "starts/s",
      samples: results.tsx,
    },
    {
      name: `\`node cli.js run\` loading the workload runner, no daemon (context)`,
      value: median(results.runner),
      unit: "starts/s",
      samples: results.runner,
    },
  ];
  const bareStart = median(latency.bare);
  const latencyRow = (name: string, values: number[], goal: boolean): BenchRow => {
    const p50 = median(values);
    return {
      name,
      value: p50,
      unit: "ms",
      baseline: bareStart,
      ratio: p50 / bareStart,
      ...(goal ? { goal: `ratio <= ${LATENCY_GOAL}`, pass: p50 / bareStart <= LATENCY_GOAL } : {}),
      samples: [percentile(values, 90), Math.max(...values)],
    };
  };
  rows.push(
    {
      name: "one bare `node -e 0` start, spawn to exit, p50",
      value: bareStart,
      unit: "ms",
      samples: [percentile(latency.bare, 90), Math.max(...latency.bare)],
    },
    latencyRow(
      "submit-to-running p50, process mode, .mjs module, warm runners (default)",
      latency.plain,
      true,
    ),
    latencyRow("submit-to-running p50, process mode, .ts module, warm runners (default)", latency.ts, true),
    latencyRow(
      "submit-to-running p50, process mode, .mjs module, --warm-workloads 0",
      latency.coldPlain,
      false,
    ),
    latencyRow("submit-to-running p50, process mode, .ts module, --warm-workloads 0", latency.coldTs, false),
  );
  const perProcess = (perSecond: number) => formatNumber((concurrency / perSecond) * 1000);
  return {
    title: "Platform executor, process per instance, vs bare node process starts",
    rows,
    notes: [
      `${formatNumber(n)} instances per run, each a trivial task (one progress report, returns i + 1), all submitted at once, timed until the client holds every result; the baseline starts ${formatNumber(n)} \`node -e 0\` processes, ${concurrency} at a time; each run in ${slices} slices of ${formatNumber(Math.ceil(n / slices))} where every measurement takes its turn (order reversed every other slice), so outside load hits all alike; median of ${repeats} runs, after a warm-up of each`,
      `daemon: dist/, --workload-mode process --concurrency ${concurrency}, durable store on; each workload is \`node [--import tsx] dist/executor-platform/cli/cli.js run\`: start, connect, hello, import the task module, run, report, wait for the ack, exit`,
      `wall time per process slot (concurrency / rate): bare node ${perProcess(bareMedian)} ms, node + tsx ${perProcess(median(results.tsx))} ms, node + workload runner import ${perProcess(median(results.runner))} ms, platform instance ${perProcess(median(results.ts))} ms (.ts) / ${perProcess(median(results.plain))} ms (.mjs)`,
      `submit-to-running: ${latencySamples} samples per setup after 2 of warm-up, one instance at a time, ${LATENCY_PACE_MS} ms apart (an app starting a task now and then), the setups taking turns; from the client's call to the task function's first line (performance.timeOrigin + now() in both processes); the baseline is one \`node -e 0\` spawned to its exit; samples column: p90 / worst`,
      loadNote(startLoad),
    ],
  };
}

/** Milliseconds from submitting one instance of `fn` to its function's first line. */
async function beganMs(fn: TaskFunction<[], number>): Promise<number> {
  const submitted = performance.timeOrigin + performance.now();
  const began = await fn().wait({ timeoutMs: 60_000 });
  return began - submitted;
}

/** Milliseconds from spawning one `node -e 0` to its exit. */
async function oneStartMs(env: NodeJS.ProcessEnv): Promise<number> {
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", "0"], { cwd: ROOT, env, stdio: "ignore" });
    child.once("error", reject);
    child.once("exit", () => resolve());
  });
  return performance.now() - start;
}

/** `n` instances of `fn` through the current executor; seconds until all results are in. */
async function instancesSeconds(fn: TaskFunction<[i: number], number>, n: number): Promise<number> {
  const start = performance.now();
  const handles = new Array<TaskInstanceState<number>>(n);
  for (let i = 0; i < n; i++) handles[i] = fn(i);
  const results = await Promise.all(handles.map((handle) => handle.wait({ timeoutMs: 300_000 })));
  const seconds = (performance.now() - start) / 1000;
  const sum = results.reduce((total, value) => total + value, 0);
  if (sum !== (n * (n - 1)) / 2 + n) throw new Error(`${fn.definition.name}: wrong results (sum ${sum})`);
  return seconds;
}

/** Starts `n` `node <args>` processes, `parallel` at a time; seconds until the last exited. */
async function startsSeconds(
  n: number,
  parallel: number,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  expectedCode = 0,
): Promise<number> {
  let next = 0;
  const start = performance.now();
  const lane = async () => {
    while (next < n) {
      next++;
      const code = await new Promise<number | null>((resolve, reject) => {
        const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
        child.stdout?.resume();
        child.stderr?.resume();
        child.once("error", reject);
        child.once("exit", (exitCode) => resolve(exitCode));
      });
      if (code !== expectedCode)
        throw new Error(`node ${args.join(" ")} exited with ${code}, not ${expectedCode}`);
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  return (performance.now() - start) / 1000;
}
