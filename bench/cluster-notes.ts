/**
 * The notes printed under the `cluster` section's rows: how each part was run, the CPU split,
 * what the figures say about bigger machines, and the statements that cost PostgreSQL most.
 */
import { cpus } from "node:os";
import type { StatementStats } from "./bench-postgres.js";
import type { ClusterSettings } from "./cluster.js";
import type { Failover } from "./cluster-failover.js";
import type { LatencySetup } from "./cluster-latency.js";
import { MIN_INSTANCES, type ThroughputPart, type ThroughputSetup } from "./cluster-throughput.js";
import { formatNumber, median } from "./report.js";

const QUERY_CHARS = 110;

export function clusterNotes(
  o: ClusterSettings,
  throughput: readonly ThroughputPart[],
  latency: readonly LatencySetup[],
  failover: readonly Failover[],
): string[] {
  const notes = [
    `throughput: ${throughput.map((part) => `${formatNumber(part.instances)} ${part.taskMs > 0 ? `${part.taskMs} ms` : "trivial"} jobs per run`).join(", ")} (the same for every setup: as many as the warm-up rates fit in about ${o.budgetSeconds} s of measured runs, at least ${MIN_INSTANCES}, at most ${formatNumber(o.instances)}), all submitted at once, median of ${o.repeats} runs per setup, the setups taking turns round by round (order rotated each round) after a ${formatNumber(o.warmup)}-job warm-up of each, all up for the whole part; daemons: the task reports progress once and returns i + 1, submitted in one batched Submit by a client of the first daemon, timed until the client holds every result; graphile-worker: the task computes i + 1 (it has no progress and keeps no result), submitted with one addJobs, timed until its worker saw every job succeed and its jobs table is empty (every completion committed)`,
    `every daemon: pool mode, --concurrency ${o.concurrency} (so 3 daemons = ${3 * o.concurrency} workload processes); graphile-worker: one process, concurrency ${o.concurrency}, its defaults (no local queue, no completion batching), its per-job success log off; all on this ${cpus().length}-core machine shared with other work: more daemons add no cores, only coordination`,
    "statements and execution time: pg_stat_statements of the setup's own database, reset before every run (top-level statements, BEGIN/COMMIT included, each statement of a multi-statement query apart; execution time includes waiting for locks; the bench's own queries left out); CPU: /proc/<pid>/stat utime+stime before and after each run of the client (this process), the daemons, their workloads, the graphile-worker process, and PostgreSQL (the postmaster and all its children, shared by the setups but busy only with the one running; a backend that exited during a run is missed)",
  ];
  for (const part of throughput) {
    const job = part.taskMs > 0 ? `${part.taskMs} ms jobs` : "trivial jobs";
    for (const setup of part.setups) {
      const groups = Object.keys(setup.runs[0]?.cpu ?? {});
      const line = groups
        .map(
          (group) =>
            `${group} ${formatNumber(median(setup.runs.map((run) => run.cpu[group] ?? Number.NaN)))}`,
        )
        .join(" + ");
      notes.push(`CPU seconds per 1,000 instances, ${job}, ${setup.name} (median of runs): ${line}`);
    }
  }
  const trivial = throughput.find((part) => part.taskMs === 0);
  if (trivial !== undefined) {
    const ceilings = trivial.setups
      .filter((setup) => setup.key !== "embedded")
      .map((setup) => {
        const pgSeconds = median(setup.runs.map((run) => run.cpu.postgres ?? Number.NaN));
        return `${setup.name} ${formatNumber(1000 / pgSeconds)}/s per core, ${formatNumber((64 * 1000) / pgSeconds)}/s on 64`;
      });
    notes.push(
      `ceiling set by PostgreSQL's CPU alone (1,000 / its CPU seconds per 1,000 trivial instances, per database core, if it scaled linearly): ${ceilings.join("; ")}`,
    );
  }
  const cross = latency.find((setup) => setup.key === "cross");
  if (cross !== undefined) {
    const steps = cross.progress.flat().length;
    notes.push(
      `latency: ${o.latencyRepeats} runs per setup, setups alternated after a warm-up of every pool process; progress: ${o.steps} steps ${o.gapMs} ms apart per run, every step counted: one the daemons coalesced with later ones counts as heard when the first later value arrived (cross-daemon: ${formatNumber(steps - cross.alone)} of ${formatNumber(steps)} steps coalesced); stop: ${o.stops} stops per run (the embedded-store baseline ${o.baselineStops}), each on a fresh instance that said it was listening, from the client's stop() to the task's signal aborting; samples column: each run's percentile`,
      `cross-daemon: daemon A --concurrency 0 (the client's) joins the throughput part's three-daemon cluster, so the probes run on one of its three daemons B (--concurrency ${o.concurrency}); progress goes workload -> B -> PostgreSQL (write, NOTIFY) -> A (LISTEN, read) -> client, a stop client -> A -> PostgreSQL -> B -> workload; the baselines run on the throughput part's embedded-store and one-daemon PostgreSQL setups (client and workload on one daemon; stops on the embedded store only)`,
    );
  }
  const seconds = failover.map((kill) => kill.ms / 1000);
  const leases = failover.map((kill) => kill.ms / o.leaseMs);
  notes.push(
    `failover: ${o.kills} kills on one cluster of three daemons on PostgreSQL with --lease-ms ${o.leaseMs}: A --concurrency 0 (the client's) and C --concurrency 1 (busy with a holding task throughout) stay up; per kill a new B --concurrency 1 joins, a holding task lands on it, a random 0-${Math.floor(o.leaseMs / 2)} ms pause, then SIGKILL of B; timed from the kill to the client's onChange with status failed (min ${formatNumber(Math.min(...seconds))} s, max ${formatNumber(Math.max(...seconds))} s)`,
    `failover window by design: a daemon renews its lease every lease/3 and reaps expired leases every lease/2, so a kill settles 0.67 to 1.5 leases later, plus the store write and the NOTIFY to the client's daemon (${leases.filter((x) => x < 1).length} of ${leases.length} under one lease here); the failed instances' error: ${failover[0]?.error ?? "(none)"}`,
  );
  return notes;
}

/**
 * The statements that took PostgreSQL's time in each PostgreSQL setup, over all its runs: share of
 * the execution time, calls and milliseconds per instance.
 */
export function statementNotes(setups: readonly ThroughputSetup[], taskMs: number): string[] {
  const job = taskMs > 0 ? `${taskMs} ms jobs` : "trivial jobs";
  const notes: string[] = [];
  for (const setup of setups) {
    const measured = setup.runs.flatMap((run) => (run.statements === undefined ? [] : [run.statements]));
    if (measured.length === 0) continue;
    const instances = measured.reduce((sum, run) => sum + run.instances, 0);
    const totalMs = measured.reduce((sum, run) => sum + run.execMsPerInstance * run.instances, 0);
    const merged = new Map<string, StatementStats>();
    for (const statement of measured.flatMap((run) => run.top)) {
      const key = oneLine(statement.query);
      const seen = merged.get(key);
      merged.set(key, {
        query: key,
        calls: (seen?.calls ?? 0) + statement.calls,
        totalMs: (seen?.totalMs ?? 0) + statement.totalMs,
      });
    }
    const top = [...merged.values()].sort((a, b) => b.totalMs - a.totalMs).slice(0, TOP_SHOWN);
    notes.push(
      `top statements by execution time, ${job}, ${setup.name} (all runs): ${top
        .map(
          (statement) =>
            `${formatNumber((100 * statement.totalMs) / totalMs)}% [${formatNumber(statement.calls / instances)} calls, ${formatNumber(statement.totalMs / instances)} ms per instance] ${statement.query}`,
        )
        .join(" | ")}`,
    );
  }
  return notes;
}

const TOP_SHOWN = 5;

/** A statement's text on one line, cut to a readable length. */
function oneLine(query: string): string {
  const flat = query.replace(/\s+/g, " ").trim();
  return flat.length > QUERY_CHARS ? `${flat.slice(0, QUERY_CHARS - 3)}...` : flat;
}
