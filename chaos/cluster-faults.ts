/**
 * The faults only a cluster has, for a cluster chaos run: PostgreSQL restarted, and one daemon's
 * connection to it cut and restored; when they strike, and a probe that makes sure a stop sent
 * through one daemon reaches a task on another that was cut off the database meanwhile.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterRig } from "./cluster-rig.js";
import type { Prng } from "./prng.js";
import { workloadProcesses } from "./procfs.js";
import { waitFor } from "./run-helpers.js";
import type { FinalRow, Heartbeat, Tracked } from "./run-record.js";

export type ClusterFaultKind = "postgres-restart" | "store-cut";

/** How long PostgreSQL stays down between its stop and its start. */
export const POSTGRES_DOWN_MS = { min: 500, max: 3_000 } as const;

/**
 * How long a daemon stays cut off the database: it renews its lease every third of a lease, so
 * a cut shorter than a third, less half a second for the reconnect, costs it at most one
 * renewal, and the others never see its lease run out. (A longer cut is a daemon presumed dead,
 * the failover the kills already exercise.)
 */
export function storeCutMs(leaseMs: number): { min: number; max: number } {
  return { min: 500, max: Math.max(500, Math.floor(leaseMs / 3) - 500) };
}

/** When the cluster's own faults strike, load time (ms): a Poisson process each, at least one each. */
export function clusterSchedule(prng: Prng, loadMs: number): Array<{ at: number; kind: ClusterFaultKind }> {
  const events: Array<{ at: number; kind: ClusterFaultKind }> = [];
  const from = loadMs * 0.05;
  const to = Math.max(from + 1_000, loadMs - 2_000);
  for (const [kind, meanMs] of [
    ["postgres-restart", 20_000],
    ["store-cut", 10_000],
  ] as const) {
    const before = events.length;
    for (let at = from + prng.exponential(meanMs); at < to; at += prng.exponential(meanMs))
      events.push({ at: Math.round(at), kind });
    if (events.length === before) events.push({ at: Math.round(from + prng.next() * (to - from)), kind });
  }
  return events;
}

/** The daemon a workload process belongs to, by its pid; undefined when it is gone. */
export function daemonOfWorkload(rig: ClusterRig, pid: number): number | undefined {
  for (const slot of rig.daemons) {
    if (workloadProcesses(slot.ours).some((w) => w.pid === pid)) return slot.index;
  }
  return undefined;
}

export interface CutProbeOptions {
  readonly rig: ClusterRig;
  readonly prng: Prng;
  readonly heartbeatDir: string;
  /** Submits a stubborn task that would run for a minute, through daemon `through`. */
  readonly submit: (through: number) => Tracked;
  readonly stop: (t: Tracked, through: number) => Promise<void>;
  readonly timeoutMs: number;
  readonly log: (line: string) => void;
}

/**
 * A stop that crosses daemons travels as a database event to the daemon that runs the task. A
 * stubborn task that would run a minute is started; once its heartbeat shows where it runs, that
 * daemon is cut off the database, the task is stopped through another daemon during the cut,
 * and the cut is restored. The checker then holds the stop to its deadline (the cut, the
 * reconnect, the grace period): a stop lost on the way shows as a task that ran its minute.
 */
export async function cutProbe(o: CutProbeOptions): Promise<Tracked> {
  const n = o.rig.daemons.length;
  const probe = o.submit(o.prng.int(0, n - 1));
  const beat = join(o.heartbeatDir, probe.id);
  let where: number | undefined;
  await waitFor(() => {
    if (probe.doneAt !== undefined || !existsSync(beat)) return probe.doneAt !== undefined;
    const pid = Number(readFileSync(beat, "utf8").trim().split(" ")[2]);
    where = daemonOfWorkload(o.rig, pid);
    return where !== undefined;
  }, o.timeoutMs);
  if (where === undefined) {
    o.log(`chaos: the cut probe ${probe.id} never showed where it ran; stopped without a cut`);
    await o.stop(probe, o.prng.int(0, n - 1));
    return probe;
  }
  const through = (where + 1 + o.prng.int(0, n - 2)) % n;
  const cut = o.rig.cutStore(where, storeCutMs(o.rig.leaseMs).max);
  // Well inside the cut: the daemon's event connection is down by then.
  await new Promise((resolve) => setTimeout(resolve, 300));
  await o.stop(probe, through);
  await cut;
  o.log(`chaos: cut probe ${probe.id} on daemon ${where}, stopped through daemon ${through} while cut off`);
  return probe;
}

/** What a cluster run saw that breaks no promise. */
export function clusterFindings(
  rig: ClusterRig,
  final: ReadonlyMap<string, FinalRow>,
  heartbeats: ReadonlyMap<string, Heartbeat>,
): string[] {
  const findings: string[] = [];
  const lost = [...final.values()].filter((r) => r.errorName === "DaemonLostError");
  if (lost.length > 0)
    findings.push(
      `${lost.length} instance(s) ended DaemonLostError: they ran on a daemon the harness killed, and another daemon failed them once its lease ran out`,
    );
  // The README: in a cluster a workload does not outlive its daemon. Its task's heartbeats say.
  const outlived = lost.flatMap((row) => {
    const name = /the daemon (\S+) that ran/.exec(row.errorMessage ?? "")?.[1];
    const member = name === undefined ? undefined : rig.members.get(name);
    const beat = heartbeats.get(row.id);
    if (member === undefined || beat === undefined) return [];
    const slot = rig.daemons[member.daemon];
    const kill = slot?.supervisor.downtimes.find((d) => d.from >= member.joinedAt);
    return kill !== undefined && beat.lastAt > kill.from + 1_000 ? [beat.lastAt - kill.from] : [];
  });
  if (outlived.length > 0)
    findings.push(
      `${outlived.length} of them ran on after their daemon was killed, up to ${(Math.max(...outlived) / 1000).toFixed(1)} s (their tasks' heartbeats): their workloads outlived their daemon`,
    );
  const restarts = rig.storeOutages.filter((x) => x.kind === "postgres restart" && x.to !== undefined);
  if (restarts.length > 0) {
    const lengths = restarts.map((x) => (x.to as number) - x.from);
    findings.push(
      `PostgreSQL was out of reach ${(Math.min(...lengths) / 1000).toFixed(1)}-${(Math.max(...lengths) / 1000).toFixed(1)} s per restart (stop, down, start), against a ${rig.leaseMs} ms lease`,
    );
  }
  // What the daemons warned about most (a log flood is worth knowing about).
  const warned = new Map<string, number>();
  for (const slot of rig.daemons)
    for (const w of slot.supervisor.warnings) {
      const key = `${slot.name}: ${String(w.entry.msg)}`;
      warned.set(key, (warned.get(key) ?? 0) + 1);
    }
  const top = [...warned].sort((a, b) => b[1] - a[1]).slice(0, 6);
  if (top.length > 0)
    findings.push(
      `the daemons' most frequent warnings: ${top.map(([what, n]) => `${what} (${n})`).join("; ")}`,
    );
  const tries = rig.daemons.flatMap((slot) => slot.supervisor.failedStarts.filter((f) => f.afterCrash));
  if (tries.length > 0)
    findings.push(
      `${tries.length} try(ies) to start a daemon again after it exited on its own failed before it listened, e.g. "${tries[0]?.stderr.trim().slice(-200)}" (the exit itself is a violation)`,
    );
  const restartMs = rig.daemons.flatMap((slot) => slot.supervisor.startMs.slice(1));
  if (restartMs.length > 0)
    findings.push(
      `a killed daemon, started again, took ${(Math.min(...restartMs) / 1000).toFixed(1)}-${(Math.max(...restartMs) / 1000).toFixed(1)} s from its spawn to listening (${restartMs.length} restart(s))`,
    );
  return findings;
}
