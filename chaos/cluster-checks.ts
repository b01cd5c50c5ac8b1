/**
 * Where a cluster's promises differ from a daemon alone's, for the checker
 * (`chaos/check-invariants.ts`), from the README's cluster section:
 *
 * - A killed daemon's running instances do not wait for it: once its lease runs out another
 *   daemon fails them (`DaemonLostError`, naming it) within one reaping interval (half a lease),
 *   and runs its pending ones. So a stop of an instance on a killed daemon lands when it is
 *   reaped, up to 1.5 leases after the kill; and after a database outage reaping waits a full
 *   lease of reaching the database again.
 * - A daemon that lost the database (restarted, or its connection cut) learns of stops other
 *   daemons accepted once it reaches the database again: its event connection reconnects with a
 *   backoff of at most 2.5 s. A stop that lands meanwhile holds from then.
 *
 * Nothing else is excused: a database outage shorter than the lease loses no call, fails no
 * instance and presumes no daemon dead.
 */
import type { Downtime, FinalRow, RunRecord, StoreOutage } from "./run-record.js";

/** A daemon's event connection is back this long after the database is (its backoff, and a connect). */
export const STORE_RECONNECT_MS = 3_000;
/** Beyond 1.5 leases after a kill, how long a reaper may take to write its failures. */
export const REAP_SLACK_MS = 2_000;

/**
 * By when an instance must be over, for a stop the cluster had at `from`: `graceMs + slackMs`
 * after it, pushed out by each fault that began before that moment (and again by a fault that
 * began before the moment it was pushed out to). `kills`: whether a daemon kill pushes it out
 * (it ends the instance with a failure, so a task's own end, the grace check, does not wait on it).
 */
export function stopDeadline(
  record: RunRecord,
  from: number,
  graceMs: number,
  slackMs: number,
  kills: boolean,
): number {
  const cluster = record.cluster;
  let deadline = from + graceMs + slackMs;
  if (cluster === undefined) return deadline;
  const failover = cluster.leaseMs * 1.5 + REAP_SLACK_MS;
  let killed = false;
  for (let pushed = true; pushed; ) {
    pushed = false;
    const push = (to: number) => {
      if (to <= deadline) return;
      deadline = to;
      pushed = true;
    };
    for (const d of kills ? record.downtimes : []) {
      // It may have run on the killed daemon: it ends when another reaps it.
      if (d.from > deadline) continue;
      const reaped = reapedBy(d.from, cluster.storeOutages, failover);
      if (reaped < from) continue;
      killed = true;
      push(reaped);
    }
    for (const o of cluster.storeOutages) {
      const to = o.to ?? Number.POSITIVE_INFINITY;
      if (o.from > deadline || to + STORE_RECONNECT_MS < from) continue;
      push(to + STORE_RECONNECT_MS + graceMs + slackMs);
      // Reaping waits a full lease of reaching the database again.
      if (killed) push(to + failover);
    }
  }
  return deadline;
}

/**
 * By when the work of a daemon killed at `at` is reaped: `failover` after the kill, or after the
 * end of each restart of the database that began before then (reaping waits a full lease of
 * reaching it again). A cut of one daemon's connection leaves the others to reap.
 */
function reapedBy(at: number, outages: readonly StoreOutage[], failover: number): number {
  let by = at + failover;
  for (let pushed = true; pushed; ) {
    pushed = false;
    for (const o of outages) {
      const to = o.to ?? Number.POSITIVE_INFINITY;
      if (o.daemon !== undefined || o.from > by || to < at || to + failover <= by) continue;
      by = to + failover;
      pushed = true;
    }
  }
  return by;
}

/**
 * Undefined when a failure is the cluster's documented failover: `DaemonLostError` naming a
 * daemon the harness killed, while the instance was not yet over; else why it is not.
 */
export function unexplainedDaemonLoss(row: FinalRow, record: RunRecord): string | undefined {
  const cluster = record.cluster;
  if (cluster === undefined) return "a daemon alone never reports a lost daemon";
  const name = /the daemon (\S+) that ran this instance/.exec(row.errorMessage ?? "")?.[1];
  if (name === undefined) return `its message names no daemon`;
  const member = cluster.members.get(name);
  if (member === undefined) return `it names ${name}, which never joined this run's cluster`;
  const kill = killOf(record.downtimes, member.daemon, member.joinedAt);
  if (kill === undefined)
    return `it names ${name} (daemon ${member.daemon} generation ${member.generation}), which the harness never killed: a live daemon was presumed dead`;
  if (row.finishedAt !== undefined && row.finishedAt < kill.from)
    return `it names ${name} (daemon ${member.daemon} generation ${member.generation}), killed only at ${new Date(kill.from).toISOString()}, after the failure`;
  return undefined;
}

/** The kill that ended the generation of daemon `daemon` that joined at `joinedAt`. */
function killOf(downtimes: readonly Downtime[], daemon: number, joinedAt: number): Downtime | undefined {
  return downtimes
    .filter((d) => d.daemon === daemon && d.from >= joinedAt)
    .sort((a, b) => a.from - b.from)[0];
}

/** Store outages as the report's story of an instance tells them. */
export function outagesDuring(record: RunRecord, from: number, to: number): string[] {
  return (record.cluster?.storeOutages ?? [])
    .filter((o) => o.from <= to && (o.to ?? Number.POSITIVE_INFINITY) >= from)
    .map(
      (o) =>
        `${o.kind}${o.daemon === undefined ? "" : ` of daemon ${o.daemon}`} ${new Date(o.from).toISOString()} .. ${o.to === undefined ? "never back" : new Date(o.to).toISOString()}`,
    );
}
