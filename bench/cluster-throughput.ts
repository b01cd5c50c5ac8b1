/**
 * The throughput part of the `cluster` section: the same jobs through graphile-worker, one and
 * three daemons on one PostgreSQL, and one daemon on the embedded store, all up for the whole
 * part and taking turns round by round; per run, the rate, the CPU each process group spent,
 * and (on PostgreSQL) what `pg_stat_statements` counted in the setup's database.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { type WorkerUtils, makeWorkerUtils } from "graphile-worker";
import { LocalExecutor } from "../executor-local/index.js";
import { type PlatformExecutor, type TaskInstanceState, setExecutor } from "../index.js";
import { BENCH_QUERY_MARK, type BenchPostgres, type StatementStats } from "./bench-postgres.js";
import { type ClusterDaemon, startClusterDaemon } from "./cluster-daemon.js";
import {
  ROOT,
  cpuSecondsOf,
  descendantsOf,
  exitOf,
  ownCpuSeconds,
  platformExecutor,
  sleep,
} from "./platform-common.js";
import { benchNapTick, benchTick } from "./tasks.js";

/** What the throughput part runs. */
export interface ThroughputOptions {
  /** The most jobs per run. */
  readonly instances: number;
  /**
   * About how long the measured rounds of one part may take, all setups together: the jobs per
   * run (the same for every setup) are as many as fit, from the warm-up runs' rates, at least
   * {@link MIN_INSTANCES} and at most `instances`.
   */
  readonly budgetSeconds: number;
  readonly repeats: number;
  readonly warmup: number;
  /** Of every daemon (workload processes) and of the graphile-worker process (jobs at once). */
  readonly concurrency: number;
  /** Milliseconds each job waits (0: the trivial job); one part per entry, on the same setups. */
  readonly taskMs: readonly number[];
}

/** What `pg_stat_statements` counted in a setup's database during one run. */
export interface RunStatements {
  /** The jobs of the run. */
  readonly instances: number;
  readonly perInstance: number;
  /** Milliseconds of execution per instance. */
  readonly execMsPerInstance: number;
  /** The statements that took most execution time, most first. */
  readonly top: readonly StatementStats[];
}

export interface ThroughputRun {
  readonly perSecond: number;
  /** CPU seconds per 1,000 instances of each process group. */
  readonly cpu: Readonly<Record<string, number>>;
  readonly statements?: RunStatements;
}

/** One part: every setup's runs with jobs of `taskMs`. */
export interface ThroughputPart {
  readonly taskMs: number;
  /** Jobs per measured run. */
  readonly instances: number;
  readonly setups: ThroughputSetup[];
}

/** One setup's runs with jobs of `taskMs`. */
export interface ThroughputSetup {
  readonly name: string;
  /** `graphile-worker`, `postgres-1`, `postgres-3` or `embedded`. */
  readonly key: string;
  readonly runs: ThroughputRun[];
}

/** A setup that can run `n` jobs of `ms` milliseconds and wait for all of them. */
export interface Runner {
  readonly name: string;
  /** `graphile-worker`, `postgres-1`, `postgres-3` or `embedded`. */
  readonly key: string;
  /** The setup's PostgreSQL database, when it has one. */
  readonly url?: string;
  /** A client of its (first) daemon; none for graphile-worker. */
  readonly executor?: PlatformExecutor;
  /** Its processes now, by group, for the CPU figures. */
  groups(): Record<string, number[]>;
  execute(n: number, ms: number): Promise<void>;
  close(): Promise<void>;
}

const RUN_TIMEOUT_MS = 10 * 60_000;
const TOP_STATEMENTS = 10;
/** The fewest jobs per run, however slow the setups: enough to dwarf the start and the tail. */
export const MIN_INSTANCES = 1_000;

/**
 * Starts the setups: graphile-worker, one and three daemons on PostgreSQL, one daemon on the
 * embedded store, each with `concurrency`. Close them with {@link closeRunners}.
 */
export async function openRunners(pg: BenchPostgres, concurrency: number): Promise<Runner[]> {
  // Started side by side: dozens of processes load at once, which on a busy 2-core machine takes
  // a good part of a minute one after another. (The three daemons of one cluster start in turn.)
  const [one, three, graphileUrl] = await Promise.all([
    pg.fresh("one"),
    pg.fresh("three"),
    pg.fresh("graphile"),
  ]);
  const started = await Promise.allSettled([
    graphileRunner(graphileUrl, concurrency),
    daemonRunner("PostgreSQL, 1 daemon", "postgres-1", 1, concurrency, one),
    daemonRunner("PostgreSQL, 3 daemons", "postgres-3", 3, concurrency, three),
    daemonRunner("embedded SQLite store, 1 daemon", "embedded", 1, concurrency, undefined),
  ]);
  const runners = started.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
  const failed = started.find((result) => result.status === "rejected");
  if (failed !== undefined) {
    await closeRunners(runners);
    throw failed.reason;
  }
  return runners;
}

export async function closeRunners(runners: readonly Runner[]): Promise<void> {
  setExecutor(new LocalExecutor({ concurrency: 4 }));
  for (const runner of runners) await runner.close();
}

/** One part per entry of `o.taskMs`, on the setups of {@link openRunners}, taking turns. */
export async function benchThroughput(
  pg: BenchPostgres,
  runners: readonly Runner[],
  o: ThroughputOptions,
): Promise<ThroughputPart[]> {
  try {
    const parts: ThroughputPart[] = [];
    for (const ms of o.taskMs) {
      const setups = runners.map((runner) => ({
        name: runner.name,
        key: runner.key,
        runs: [] as ThroughputRun[],
      }));
      let secondsPerJob = 0;
      for (const runner of runners)
        secondsPerJob += 1 / (await measuredRun(pg, runner, o.warmup, ms)).perSecond;
      const fit = Math.floor(o.budgetSeconds / o.repeats / secondsPerJob / 100) * 100;
      const instances = Math.min(o.instances, Math.max(MIN_INSTANCES, fit));
      for (let round = 0; round < o.repeats; round++) {
        for (let i = 0; i < runners.length; i++) {
          const at = (i + round) % runners.length;
          (setups[at] as ThroughputSetup).runs.push(
            await measuredRun(pg, runners[at] as Runner, instances, ms),
          );
        }
      }
      parts.push({ taskMs: ms, instances, setups });
    }
    return parts;
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
  }
}

/** `n` jobs on `runner`, with the CPU every process group spent and the statements it ran. */
async function measuredRun(pg: BenchPostgres, runner: Runner, n: number, ms: number): Promise<ThroughputRun> {
  const groups = () => ({ ...runner.groups(), ...(runner.url !== undefined ? { postgres: pg.pids() } : {}) });
  if (runner.url !== undefined) await pg.resetStatements();
  const before = cpuByPid(groups());
  const client0 = ownCpuSeconds();
  const start = performance.now();
  await runner.execute(n, ms);
  const seconds = (performance.now() - start) / 1000;
  const cpu: Record<string, number> = { client: ((ownCpuSeconds() - client0) / n) * 1000 };
  for (const [group, pids] of Object.entries(cpuByPid(groups()))) {
    let spent = 0;
    for (const [pid, used] of pids) spent += used - (before[group]?.get(pid) ?? 0);
    cpu[group] = (spent / n) * 1000;
  }
  if (runner.url === undefined) return { perSecond: n / seconds, cpu };
  const statements = await pg.statements(runner.url);
  const calls = statements.reduce((total, statement) => total + statement.calls, 0);
  const execMs = statements.reduce((total, statement) => total + statement.totalMs, 0);
  return {
    perSecond: n / seconds,
    cpu,
    statements: {
      instances: n,
      perInstance: calls / n,
      execMsPerInstance: execMs / n,
      top: statements.slice(0, TOP_STATEMENTS),
    },
  };
}

/** CPU seconds so far of every pid of every group (a process new since `before` counts whole). */
function cpuByPid(groups: Record<string, number[]>): Record<string, Map<number, number>> {
  return Object.fromEntries(
    Object.entries(groups).map(([group, pids]) => [
      group,
      new Map(pids.map((pid) => [pid, cpuSecondsOf([pid])])),
    ]),
  );
}

async function daemonRunner(
  name: string,
  key: string,
  count: number,
  concurrency: number,
  store: string | undefined,
): Promise<Runner> {
  const daemons: ClusterDaemon[] = [];
  let executor: PlatformExecutor | undefined;
  try {
    for (let i = 0; i < count; i++) daemons.push(await startClusterDaemon({ concurrency, store }));
    executor = platformExecutor((daemons[0] as ClusterDaemon).address);
  } catch (error) {
    for (const daemon of daemons) await daemon.dispose();
    throw error;
  }
  const client = executor;
  return {
    name,
    key,
    executor: client,
    ...(store !== undefined ? { url: store } : {}),
    groups: () => ({
      daemons: daemons.map((daemon) => daemon.pid),
      workloads: daemons.flatMap((daemon) => descendantsOf(daemon.pid)),
    }),
    async execute(n, ms) {
      setExecutor(client);
      const handles = new Array<TaskInstanceState<number>>(n);
      for (let i = 0; i < n; i++) handles[i] = ms > 0 ? benchNapTick(i, ms) : benchTick(i);
      const results = await Promise.all(handles.map((handle) => handle.wait({ timeoutMs: RUN_TIMEOUT_MS })));
      const sum = results.reduce((total, value) => total + value, 0);
      const expected = (n * (n - 1)) / 2 + n;
      if (sum !== expected) throw new Error(`${name}: wrong results (sum ${sum}, expected ${expected})`);
    },
    async close() {
      setExecutor(new LocalExecutor({ concurrency: 4 }));
      await client.close();
      for (const daemon of daemons) await daemon.dispose();
    },
  };
}

/**
 * graphile-worker in a process of its own (as the daemons' workloads are), jobs added by the
 * bench in one `addJobs` call (as the SDK submits in one batched call). It keeps no results, so
 * a run ends when the worker has seen every job succeed and the last completion has committed
 * (its jobs table is empty).
 */
async function graphileRunner(url: string, concurrency: number): Promise<Runner> {
  const worker = spawn(
    process.execPath,
    ["--import", "tsx", join(ROOT, "bench/graphile-worker-process.ts"), url, String(concurrency)],
    {
      cwd: ROOT,
      env: { ...process.env, NO_LOG_SUCCESS: "1" },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    },
  );
  let utils: WorkerUtils | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once("message", (message) =>
        message === "ready" ? resolve() : reject(new Error(`graphile-worker said ${String(message)}`)),
      );
      worker.once("exit", (code) =>
        reject(new Error(`graphile-worker exited (${code}) before it was ready`)),
      );
    });
    utils = await makeWorkerUtils({ connectionString: url });
  } catch (error) {
    await closeWorker(worker);
    throw error;
  }
  const jobs = utils;
  let added = 0;
  let expectedSum = 0;
  return {
    name: `graphile-worker 0.18, 1 process`,
    key: "graphile-worker",
    url,
    groups: () => ({ worker: [worker.pid as number] }),
    async execute(n, ms) {
      added += n;
      expectedSum += (n * (n - 1)) / 2 + n;
      const reached = untilReached(worker, added);
      await jobs.addJobs(
        Array.from({ length: n }, (_, i) => ({ identifier: "benchTick", payload: { i, ms } })),
      );
      const sum = await reached;
      if (sum !== expectedSum)
        throw new Error(`graphile-worker: wrong results (sum ${sum}, expected ${expectedSum})`);
      // The worker says a job succeeded before its completion (a DELETE) commits.
      const deadline = performance.now() + 30_000;
      for (;;) {
        const left = await jobs.withPgClient((client) =>
          client.query<{ n: string }>(
            `SELECT ${BENCH_QUERY_MARK} count(*) AS n FROM graphile_worker._private_jobs`,
          ),
        );
        if (Number(left.rows[0]?.n) === 0) break;
        if (performance.now() > deadline)
          throw new Error(`graphile-worker: ${left.rows[0]?.n} jobs still stored`);
        await sleep(2);
      }
    },
    async close() {
      await jobs.release();
      await closeWorker(worker);
    },
  };
}

/** Resolves when the worker says `until` jobs in all have succeeded; the sum of their results. */
function untilReached(worker: ChildProcess, until: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      worker.off("message", onMessage);
      reject(new Error(`graphile-worker did not reach ${until} jobs in ${RUN_TIMEOUT_MS} ms`));
    }, RUN_TIMEOUT_MS);
    const onMessage = (message: unknown) => {
      const answer = message as { reached?: unknown; sum?: unknown } | null;
      if (answer?.reached !== until) return;
      clearTimeout(timer);
      worker.off("message", onMessage);
      resolve(Number(answer.sum));
    };
    worker.on("message", onMessage);
    worker.send({ until });
  });
}

async function closeWorker(worker: ChildProcess): Promise<void> {
  if (worker.exitCode !== null || worker.signalCode !== null) return;
  const timer = setTimeout(() => worker.kill("SIGKILL"), 20_000);
  if (worker.connected) worker.send("close");
  else worker.kill("SIGTERM");
  await exitOf(worker);
  clearTimeout(timer);
}
