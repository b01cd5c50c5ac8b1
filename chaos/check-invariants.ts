/**
 * The invariants of a chaos run, checked against its record. Each check counts the cases it
 * really checked (ones it could have failed on), the cases it could not check and why, and
 * every violation, with the ids and the facts that make it one. An invariant that checked
 * nothing is itself a violation: a check that passes on no evidence would be believed.
 */
import { decodeValue } from "numerous-tasks";
import {
  bigText,
  type ChaosKind,
  expectedResult,
  isLongEarlyAnswer,
  sameValue,
  sha256,
  throwsError,
} from "./answers.js";
import { outagesDuring, stopDeadline, unexplainedDaemonLoss } from "./cluster-checks.js";
import { fingerprint } from "./observer-log.js";
import { fdDifference } from "./procfs.js";
import type { Downtime, FinalRow, RunRecord, StopRecord, Tracked, Violation } from "./run-record.js";

/** The error of an instance the daemon ended by killing its workload when the grace period ran out. */
export const FORCED_STOP_ERROR = "TaskStoppedError";
/** A task may keep running this long after its grace period: timers, a busy machine, the kill itself. */
export const GRACE_SLACK_MS = 2_000;
/** An SDK that gave up with ExecutorUnavailableError is excused by an outage within this long before. */
export const GIVE_UP_WINDOW_MS = 5_000;
/** After a daemon restart, beyond its reconnect window, how long the end may take to land. */
export const REATTACH_SLACK_MS = 2_000;

export interface InvariantResult {
  readonly name: string;
  /** Cases the check looked at and could have failed on. */
  readonly checked: number;
  readonly violations: number;
  /** Cases it could not check, by reason (each is a violation elsewhere, or harmless and said why). */
  readonly notChecked: Readonly<Record<string, number>>;
}

export interface CheckResult {
  readonly invariants: InvariantResult[];
  readonly violations: Violation[];
  /** Observations that break no promise but that a reader of the figures should know. */
  readonly findings: string[];
}

export const INVARIANTS = {
  once: "every submitted id exists exactly once",
  settles: "every instance reaches a final status within the bound after the faults end",
  answers: "every completed result equals the known answer for its input",
  finishOnce: "no instance finishes twice or changes after it finished",
  grace: "a cancelled instance never runs past its grace period",
  watchers: "every watcher that resumed saw the final state",
  leaks: "daemon memory and open files return to a bound; no workload process is left behind",
  alive: "the daemon never dies unless the harness kills it; it restarts and shuts down cleanly",
  explained: "every failed or cancelled instance has a cause the harness knows",
  stops: "an acknowledged stop holds: a pending instance never runs, a running one ends within grace",
  rogue: "the rogue client reaches nothing and is told nothing internal",
} as const;

const COMPLETES: ReadonlySet<ChaosKind> = new Set(["short", "long", "stubborn", "cpu", "big", "chatty"]);

export function checkInvariants(record: RunRecord): CheckResult {
  const violations: Violation[] = [];
  const findings: string[] = [];
  const counts = new Map<string, number>();
  const checked = (name: string, n = 1) => counts.set(name, (counts.get(name) ?? 0) + n);
  const skipped = new Map<string, Record<string, number>>();
  const notChecked = (name: string, why: string) => {
    const bag = skipped.get(name) ?? {};
    bag[why] = (bag[why] ?? 0) + 1;
    skipped.set(name, bag);
  };
  const violate = (invariant: string, ids: readonly string[], detail: string) =>
    violations.push({
      invariant,
      ids,
      detail,
      story: ids.map((id) => storyOf(id, record)).filter((s) => s !== ""),
      logLines: [],
    });
  const { tracked, final } = record;
  const overlapsDowntime = (from: number, to: number) =>
    record.downtimes.some((d) => d.from <= to && (d.to ?? Number.POSITIVE_INFINITY) >= from);
  const restartsBetween = (from: number, to: number) =>
    record.downtimes.filter((d) => d.from >= from && d.from <= to);
  // The SDK gives up after 3 s without the daemon (SPEC: nothing hangs forever); only an
  // outage just before it gave up excuses that. In a cluster, only one of the daemon it talked
  // to, or of that daemon's database: the SDK retries a call the daemon answers UNAVAILABLE for
  // 30 s, and gives up if the database is still out of reach then.
  const mine = (daemon: number | undefined, of: number | undefined) =>
    daemon === undefined || of === undefined || of === daemon;
  const during = (at: number, from: number, to: number | undefined) =>
    from <= at && (to ?? Number.POSITIVE_INFINITY) >= at - GIVE_UP_WINDOW_MS;
  const outageBefore = (at: number, daemon?: number) =>
    record.downtimes.some((d) => mine(daemon, d.daemon) && during(at, d.from, d.to)) ||
    (record.cluster?.storeOutages ?? []).some((o) => mine(daemon, o.daemon) && during(at, o.from, o.to));

  // 1. Exactly once.
  for (const id of record.duplicates)
    violate(INVARIANTS.once, [id], `the daemon lists instance ${id} more than once`);
  for (const t of tracked.values()) {
    checked(INVARIANTS.once);
    if (final.has(t.id)) continue;
    if (isLocalUnavailable(t) && outageBefore(t.doneAt ?? t.submittedAt, t.daemon)) continue;
    violate(
      INVARIANTS.once,
      [t.id],
      `${t.kind} instance ${t.id} (called at ${iso(t.submittedAt)}) is not on the daemon, but the caller's handle says ${t.handle.status}` +
        (t.handle.error ? ` (${t.handle.error.name}: ${t.handle.error.message})` : ""),
    );
  }
  for (const row of final.values()) {
    if (!tracked.has(row.id))
      violate(
        INVARIANTS.once,
        [row.id],
        `the daemon lists instance ${row.id} (${row.taskName}) that nobody submitted`,
      );
  }

  // 2. Settles.
  checked(INVARIANTS.settles, final.size);
  for (const row of record.unfinished) {
    violate(
      INVARIANTS.settles,
      [row.id],
      `${row.taskName} ${row.id} was still ${row.status} ${record.settleBoundMs} ms after the faults ended (started ${iso(row.startedAt)})`,
    );
  }

  // 3. Answers.
  for (const row of final.values()) {
    const t = tracked.get(row.id);
    if (t === undefined) continue;
    if (row.status !== "completed" && row.status !== "cancelled") continue;
    // A cancelled instance may end without a result; a completed one never does.
    if (row.status === "cancelled" && row.result === undefined) continue;
    checked(INVARIANTS.answers);
    if (row.result === undefined) {
      violate(
        INVARIANTS.answers,
        [row.id],
        `${t.kind}(${describeArgs(t.args)}) completed with no result (expected ${short(expectedResult(t.kind, t.args))})`,
      );
      continue;
    }
    const problem = wrongAnswer(t, row);
    if (problem !== undefined)
      violate(
        INVARIANTS.answers,
        [row.id],
        `${t.kind}(${describeArgs(t.args)}) ended ${row.status}: ${problem}`,
      );
  }

  // 4. Finishes once; 6. watchers see the end.
  for (const observer of record.observers) {
    for (const event of observer.log.afterEnd) {
      violate(
        INVARIANTS.finishOnce,
        [event.id],
        `${event.observer} saw ${event.id} end at revision ${event.terminal.revision} (${event.terminal.fingerprint}), then revision ${event.later.revision} (${event.later.fingerprint}) at ${iso(event.at)}`,
      );
    }
    const ids = observer.wide ? [...final.keys()] : [...observer.log.ids()];
    for (const id of ids) {
      const row = final.get(id);
      if (row === undefined || !isFinal(row.status)) continue;
      const state = observer.log.state(id);
      const terminal = state?.terminal;
      checked(INVARIANTS.watchers);
      if (terminal === undefined) {
        violate(
          INVARIANTS.watchers,
          [id],
          `${observer.log.name} never saw ${id} end (daemon: ${row.status} at revision ${row.revision}; last revision seen ${state?.lastRevision ?? "none"}; it lived through ${observer.breaks(id)} break(s)${observer.notes ? `; ${observer.notes()}` : ""})`,
        );
        continue;
      }
      if (terminal.clientMade) {
        const t = tracked.get(id);
        // The caller's own failed submits are judged once, below.
        const callersSubmit = observer.kind === "caller" && t !== undefined && isLocalUnavailable(t);
        if (!callersSubmit && !outageBefore(terminal.at, observer.daemon)) {
          violate(
            INVARIANTS.watchers,
            [id],
            `${observer.log.name} was told at ${iso(terminal.at)} that ${id} ended ${terminal.fingerprint} by its SDK, with no daemon outage in the ${GIVE_UP_WINDOW_MS} ms before (daemon: ${row.status} at revision ${row.revision})`,
          );
        }
        continue;
      }
      checked(INVARIANTS.finishOnce);
      const expected = fingerprint({
        status: row.status,
        result: row.result,
        errorName: row.errorName,
        errorMessage: row.errorMessage,
      });
      if (terminal.revision !== row.revision || terminal.fingerprint !== expected) {
        violate(
          INVARIANTS.finishOnce,
          [id],
          `${observer.log.name} saw ${id} end at revision ${terminal.revision} (${terminal.fingerprint}) at ${iso(terminal.at)}, but the daemon's final state is revision ${row.revision} (${expected})`,
        );
      }
    }
  }
  const gaveUp = new Map<string, number>();
  for (const observer of record.observers) {
    for (const id of observer.log.ids()) {
      const terminal = observer.log.state(id)?.terminal;
      if (terminal?.clientMade && outageBefore(terminal.at, observer.daemon))
        gaveUp.set(observer.kind, (gaveUp.get(observer.kind) ?? 0) + 1);
    }
  }
  for (const [kind, n] of gaveUp) {
    findings.push(
      `${n} ${kind} watch(es) ended with the SDK's own ExecutorUnavailableError while the daemon was restarting (it gives up after 3 s), not with the daemon's final state`,
    );
  }
  let splitAfterOutage = 0;
  for (const t of tracked.values()) {
    const row = final.get(t.id);
    if (row === undefined || !isLocalUnavailable(t)) continue;
    const failedAt = t.doneAt ?? t.submittedAt;
    if (outageBefore(failedAt, t.daemon)) {
      splitAfterOutage++;
      continue;
    }
    violate(
      INVARIANTS.finishOnce,
      [t.id],
      `the caller's handle of ${t.kind} ${t.id} failed at ${iso(failedAt)} with the SDK's own ${t.handle.error?.name}: ${t.handle.error?.message}, with no daemon outage in the ${GIVE_UP_WINDOW_MS} ms before, yet the daemon has the instance and it ended ${row.status}`,
    );
  }
  if (splitAfterOutage > 0) {
    findings.push(
      `${splitAfterOutage} call(s) failed on the caller's side with ExecutorUnavailableError while the daemon was restarting, yet reached it and ran (the SDK gives up after 3 s; the daemon had the call)`,
    );
  }

  // 5. Cancelled never runs past its grace period. The heartbeats are the evidence: a
  // completed instance's task ran, so it must have left one, or the evidence is broken.
  let beatsShown = 0;
  let forcedStops = 0;
  for (const row of final.values()) {
    if (row.status !== "completed" || !tracked.has(row.id)) continue;
    if (record.heartbeats.has(row.id)) beatsShown++;
    else
      violate(
        INVARIANTS.grace,
        [row.id],
        `${row.taskName} ${row.id} completed, yet its task left no heartbeat: the evidence the grace check reads is missing`,
      );
  }
  for (const row of final.values()) {
    if (row.status !== "cancelled") continue;
    const t = tracked.get(row.id);
    if (t === undefined) continue;
    const beat = record.heartbeats.get(row.id);
    if (row.startedAt === undefined) {
      // No heartbeat is evidence only where heartbeats are shown to be written at all.
      if (beat !== undefined || beatsShown > 0) checked(INVARIANTS.grace);
      else notChecked(INVARIANTS.grace, "never started, and no completed instance shows heartbeats work");
      if (beat !== undefined) {
        violate(
          INVARIANTS.grace,
          [row.id],
          `${t.kind} ${row.id} was cancelled before it started, yet its task ran from ${iso(beat.startedAt)} to ${iso(beat.lastAt)} (pid ${beat.pid})`,
        );
      }
      continue;
    }
    const reference = stopReference(t);
    if (reference === undefined) {
      notChecked(INVARIANTS.grace, "cancelled with no stop known to reach the daemon (see 'explained')");
      continue;
    }
    if (beat === undefined) {
      // Its workload was stopped or killed before the task began: nothing ran to overrun.
      // That is evidence only where heartbeats are shown to be written at all.
      if (beatsShown > 0) checked(INVARIANTS.grace);
      else
        notChecked(
          INVARIANTS.grace,
          "started, no heartbeat, and no completed instance shows heartbeats work",
        );
      continue;
    }
    checked(INVARIANTS.grace);
    if (row.errorName === FORCED_STOP_ERROR) forcedStops++;
    // In a cluster, a daemon cut off the database learns of the stop once it is back.
    const deadline = stopDeadline(record, reference, record.stopGraceMs, GRACE_SLACK_MS, false);
    if (beat.lastAt > deadline) {
      const restarts = restartsBetween(reference, beat.lastAt);
      const outages = outagesDuring(record, reference, beat.lastAt);
      violate(
        INVARIANTS.grace,
        [row.id],
        `${t.kind}(${describeArgs(t.args)}) ${row.id}: stop at ${iso(reference)}, grace ${record.stopGraceMs} ms, but its task was alive at ${iso(beat.lastAt)} (${beat.lastAt - reference} ms after the stop, pid ${beat.pid}; allowed until ${iso(deadline)})` +
          (restarts.length > 0
            ? `; the daemon was killed in between at ${restarts.map((d) => iso(d.from)).join(", ")}`
            : "") +
          (outages.length > 0 ? `; the database was out of reach: ${outages.join(", ")}` : ""),
      );
    }
  }

  if (forcedStops > 0)
    findings.push(
      `${forcedStops} stopped task(s) ignored their stop until the daemon killed their workload at the end of the grace period (${FORCED_STOP_ERROR}); their heartbeats say when they died`,
    );
  if (forcedStops === 0) {
    violate(
      INVARIANTS.grace,
      [],
      `no stopped task was still running when its grace period ran out (none ended ${FORCED_STOP_ERROR}), so the grace kill was never put to the test`,
    );
  }

  // 7. Leaks: every daemon generation against itself, at rest at its start and at its end.
  const m = record.memory;
  for (const g of m.generations) {
    const who = `${g.daemon === undefined ? "daemon" : `daemon ${g.daemon}`} generation ${g.generation} (pid ${g.pid})`;
    const { start, end } = g;
    if ((start === undefined || end === undefined) && g.cutShort !== undefined) {
      notChecked(INVARIANTS.leaks, g.cutShort);
      continue;
    }
    if (start === undefined || end === undefined) {
      violate(
        INVARIANTS.leaks,
        [],
        `${who} was never measured at its ${start === undefined ? "start" : "end"}, so what it leaked is unknown`,
      );
      continue;
    }
    const restless = [start, end].filter((s) => s.notAtRest !== undefined);
    if (restless.length > 0) {
      violate(
        INVARIANTS.leaks,
        [],
        `${who} could not be measured at rest: ${restless.map((s) => s.notAtRest).join("; ")}`,
      );
      continue;
    }
    const over = `over ${g.instances} instance(s) between ${iso(start.at)} and ${iso(end.at)}`;
    // Measured over no load, a generation says nothing about a leak per instance: it is still
    // compared, but not counted as checked.
    const measured = () => {
      if (g.instances > 0) checked(INVARIANTS.leaks);
      else
        notChecked(
          INVARIANTS.leaks,
          "a measurement of a daemon generation that ended no instance in between",
        );
    };
    if (start.rssBytes === undefined || end.rssBytes === undefined) {
      violate(
        INVARIANTS.leaks,
        [],
        `${who}: /proc/${g.pid}/status could not be read at its ${start.rssBytes === undefined ? "start" : "end"}, so its memory was not checked`,
      );
    } else {
      measured();
      if (end.rssBytes > start.rssBytes + m.rssHeadroomBytes) {
        violate(
          INVARIANTS.leaks,
          [],
          `${who}: RSS at rest ${mib(end.rssBytes)} MiB at its end, ${mib(start.rssBytes)} MiB at its start, ${over}: more than the ${mib(m.rssHeadroomBytes)} MiB allowed`,
        );
      }
    }
    if (start.fds === undefined || end.fds === undefined) {
      violate(
        INVARIANTS.leaks,
        [],
        `${who}: /proc/${g.pid}/fd could not be read at its ${start.fds === undefined ? "start" : "end"}, so its descriptors were not checked`,
      );
    } else {
      measured();
      if (end.fds > start.fds + m.fdsHeadroom) {
        violate(
          INVARIANTS.leaks,
          [],
          `${who}: ${end.fds} descriptors of its own at rest at its end, ${start.fds} at its start, ${over}: more than ${m.fdsHeadroom} added; added: ${fdDifference(start.fdList, end.fdList).join(", ")}`,
        );
      }
    }
  }
  checked(INVARIANTS.leaks);
  if (record.leftoverWorkloads.length > 0) {
    violate(
      INVARIANTS.leaks,
      [],
      `workload processes were still alive 70 s after the daemon's last exit: pids ${record.leftoverWorkloads.join(", ")}`,
    );
  }

  // 8. The daemon stays up.
  checked(INVARIANTS.alive, record.shutdownExitCodes.length + record.downtimes.length);
  for (const crash of record.daemonCrashes) violate(INVARIANTS.alive, [], crash);
  record.shutdownExitCodes.forEach((code, index) => {
    if (code === 0) return;
    const who = record.shutdownExitCodes.length === 1 ? "the daemon" : `daemon ${index}`;
    violate(
      INVARIANTS.alive,
      [],
      `on SIGTERM after the run ${who} ${code === null ? "did not exit in time and was killed" : `exited with code ${code}`}`,
    );
  });

  // 9. Causes; 10. stops hold.
  for (const row of final.values()) {
    const t = tracked.get(row.id);
    if (t === undefined) continue;
    checked(INVARIANTS.explained);
    const cause = unexplained(t, row, record, overlapsDowntime);
    if (cause !== undefined) violate(INVARIANTS.explained, [row.id], cause);
    const firstAck = t.stops
      .filter((s) => s.ackAt !== undefined)
      .sort((a, b) => (a.ackAt as number) - (b.ackAt as number))[0];
    if (firstAck === undefined) continue;
    if (!isFinal(row.status)) {
      notChecked(INVARIANTS.stops, "never final (see 'settles')");
      continue;
    }
    checked(INVARIANTS.stops);
    const ackAt = firstAck.ackAt as number;
    const restarts = restartsBetween(ackAt, row.finishedAt ?? Date.now());
    const during =
      restarts.length > 0
        ? `; the daemon was killed in between at ${restarts.map((d) => iso(d.from)).join(", ")}`
        : "";
    // While the daemon is down nothing can end, and after a restart it waits up to its
    // reconnect window for the workload before it gives the instance up.
    const outage = record.downtimes
      .filter((d) => (d.to ?? Date.now()) > ackAt && d.from < (row.finishedAt ?? Date.now()))
      .reduce(
        (sum, d) =>
          sum +
          ((d.to ?? Date.now()) - Math.max(d.from, ackAt)) +
          record.reconnectWindowMs +
          REATTACH_SLACK_MS,
        0,
      );
    if (row.finishedAt === undefined) {
      violate(
        INVARIANTS.stops,
        [row.id],
        `${t.kind} ${row.id} ended ${row.status} with no finish time, so whether its acknowledged stop held is unknown`,
      );
    } else if (row.startedAt !== undefined && row.startedAt > ackAt) {
      violate(
        INVARIANTS.stops,
        [row.id],
        `${t.kind} ${row.id}: a stop was acknowledged at ${iso(ackAt)} (aimed ${firstAck.when}), yet the instance started at ${iso(row.startedAt)} and ended ${row.status}${during}`,
      );
    } else if (record.cluster !== undefined) {
      // A kill fails the instance once another daemon reaps it; a database out of reach delays the stop.
      const deadline = stopDeadline(record, ackAt, record.stopGraceMs, GRACE_SLACK_MS, true);
      if (row.finishedAt > deadline) {
        const outages = outagesDuring(record, ackAt, row.finishedAt);
        violate(
          INVARIANTS.stops,
          [row.id],
          `${t.kind}(${describeArgs(t.args)}) ${row.id}: a stop was acknowledged at ${iso(ackAt)} (aimed ${firstAck.when}), grace ${record.stopGraceMs} ms, but it ended ${row.status} only at ${iso(row.finishedAt)} (${row.finishedAt - ackAt} ms later; allowed until ${iso(deadline)})${during}` +
            (outages.length > 0 ? `; the database was out of reach: ${outages.join(", ")}` : ""),
        );
      }
    } else if (row.finishedAt > ackAt + record.stopGraceMs + GRACE_SLACK_MS + outage) {
      violate(
        INVARIANTS.stops,
        [row.id],
        `${t.kind}(${describeArgs(t.args)}) ${row.id}: a stop was acknowledged at ${iso(ackAt)} (aimed ${firstAck.when}), grace ${record.stopGraceMs} ms, but it ended ${row.status} only at ${iso(row.finishedAt)} (${row.finishedAt - ackAt} ms later, ${outage} ms of it allowed for daemon outages)${during}`,
      );
    }
  }

  // 11. The rogue: only calls the daemon answered could have reached or told it anything.
  checked(INVARIANTS.rogue, record.rogueAnswered);
  for (const breach of record.rogueBreaches) violate(INVARIANTS.rogue, [], breach);
  for (const leak of record.rogueLeaks)
    violate(INVARIANTS.rogue, [], `an answer to the rogue leaked internals: ${leak}`);

  for (const name of Object.values(INVARIANTS)) {
    if ((counts.get(name) ?? 0) > 0) continue;
    const why = Object.entries(skipped.get(name) ?? {})
      .map(([reason, n]) => `${n} not checkable: ${reason}`)
      .join("; ");
    violate(name, [], `checked nothing: the run never exercised it${why ? ` (${why})` : ""}`);
  }
  const invariants = Object.values(INVARIANTS).map((name) => ({
    name,
    checked: counts.get(name) ?? 0,
    violations: violations.filter((v) => v.invariant === name).length,
    notChecked: skipped.get(name) ?? {},
  }));
  return { invariants, violations, findings };
}

/** Everything the run knows about one instance, in one line. */
export function storyOf(id: string, record: RunRecord): string {
  const t = record.tracked.get(id);
  if (t === undefined) return "";
  const row = record.final.get(id);
  const parts = [
    `${id}: ${t.kind}(${describeArgs(t.args)}) called ${iso(t.submittedAt)}${t.daemon === undefined ? "" : ` through daemon ${t.daemon}`}`,
  ];
  if (row !== undefined) {
    parts.push(
      `daemon: ${row.status} rev ${row.revision}, started ${iso(row.startedAt)}, finished ${iso(row.finishedAt)}` +
        (row.errorName
          ? `, ${row.errorName}: ${(row.errorMessage ?? "").slice(0, 160).replace(/\n/g, " | ")}`
          : ""),
    );
  } else parts.push("daemon: not listed");
  parts.push(`caller's handle: ${t.handle.status}${t.doneAt ? ` at ${iso(t.doneAt)}` : ""}`);
  for (const s of t.stops)
    parts.push(
      `stop (${s.when})${s.through === undefined ? "" : ` through daemon ${s.through}`} sent ${iso(s.sentAt)}, ${s.ackAt ? `acknowledged ${iso(s.ackAt)}` : `refused (${s.refused}) ${iso(s.refusedAt)}`}`,
    );
  for (const at of t.workloadKills) parts.push(`harness SIGKILLed its workload at ${iso(at)}`);
  for (const w of record.workloadsSeen.get(id) ?? [])
    parts.push(`workload pid ${w.pid} seen ${iso(w.firstSeen)} .. ${iso(w.lastSeen)}`);
  const beat = record.heartbeats.get(id);
  parts.push(
    beat
      ? `task ran ${iso(beat.startedAt)} .. ${iso(beat.lastAt)} in pid ${beat.pid}`
      : "task never ran (no heartbeat)",
  );
  const end = row?.finishedAt ?? Date.now();
  for (const d of record.downtimes) {
    if (d.from >= t.submittedAt && d.from <= end)
      parts.push(
        `${record.cluster === undefined ? "daemon" : `daemon ${d.daemon}`} killed ${iso(d.from)}, back ${iso(d.to)}`,
      );
  }
  parts.push(...outagesDuring(record, t.submittedAt, end));
  return parts.join("; ");
}

/** The caller's handle failed on its own: the SDK could not reach the daemon to submit. */
export function isLocalUnavailable(t: Tracked): boolean {
  return t.handle.status === "failed" && t.handle.error?.code === "EXECUTOR_UNAVAILABLE";
}

function isFinal(status: string): boolean {
  return status === "completed" || status === "failed" || status === "cancelled";
}

/**
 * A stop the caller cannot know the fate of: the SDK gave up on reaching the daemon
 * (ExecutorUnavailableError), yet the request may have got there.
 */
function mayHaveLanded(s: StopRecord): boolean {
  return s.ackAt === undefined && s.refusedCode === "EXECUTOR_UNAVAILABLE";
}

/**
 * By when the daemon had the stop: the first acknowledged one, else the last moment one of
 * unknown fate could have landed (when the SDK gave up on it); undefined when no stop is known
 * to have reached the daemon.
 */
function stopReference(t: Tracked): number | undefined {
  const acked = t.stops.map((s) => s.ackAt).filter((at): at is number => at !== undefined);
  if (acked.length > 0) return Math.min(...acked);
  const unknown = t.stops.filter(mayHaveLanded).map((s) => s.refusedAt ?? s.sentAt);
  return unknown.length > 0 ? Math.max(...unknown) : undefined;
}

function wrongAnswer(t: Tracked, row: FinalRow): string | undefined {
  let result: unknown;
  try {
    result = decodeValue(row.result as string);
  } catch (error) {
    return `its result does not decode: ${(error as Error).message}`;
  }
  const expected = expectedResult(t.kind, t.args);
  if (row.status === "cancelled" && t.kind === "long") {
    const [n, steps] = t.args as [number, number];
    if (isLongEarlyAnswer(result, n, steps) || sameValue(result, expected)) return undefined;
    return `result ${short(result)} is neither an early stop nor the full answer ${short(expected)}`;
  }
  if (!sameValue(result, expected)) return `result ${short(result)}, expected ${short(expected)}`;
  if (row.status !== "completed") return undefined;
  if (t.kind === "big") {
    const [n, bytes] = t.args as [number, number];
    let output: unknown;
    try {
      output = row.output === undefined ? undefined : decodeValue(row.output);
    } catch {
      return "its output does not decode";
    }
    const text = (output as { text?: unknown } | undefined)?.text;
    if (typeof text !== "string" || sha256(text) !== sha256(bigText(n, bytes))) {
      return `its output is not the ${bytes} characters drawn from ${n} (got ${typeof text === "string" ? `${text.length} characters` : short(output)})`;
    }
  }
  if (row.progress !== 1) return `completed with progress ${row.progress}, not 1`;
  return undefined;
}

function unexplained(
  t: Tracked,
  row: FinalRow,
  record: RunRecord,
  overlapsDowntime: (from: number, to: number) => boolean,
): string | undefined {
  const from = row.startedAt ?? t.submittedAt;
  const to = row.finishedAt ?? Date.now();
  const restartDuring = overlapsDowntime(from - 500, to + 500);
  const harnessKilled =
    t.workloadKills.length > 0 ||
    (record.mode === "pool" && record.poolKills.some((at) => at >= from - 200 && at <= to + 200));
  const what = `${t.kind}(${describeArgs(t.args)}) ${row.id}`;
  switch (row.status) {
    case "completed":
      return COMPLETES.has(t.kind) ? undefined : `${what} completed, but a ${t.kind} task never returns`;
    case "cancelled": {
      // Only a stop the daemon accepted explains it, or one whose answer was lost on the way.
      if (t.stops.some((s) => s.ackAt !== undefined || mayHaveLanded(s))) return undefined;
      const ended = `${what} ended cancelled (${row.errorName}: ${row.errorMessage})`;
      if (t.stops.length === 0) return `${ended}, but nobody stopped it`;
      return `${ended}, but every stop it got was refused: ${t.stops.map((s) => `${s.refused} at ${iso(s.refusedAt)}`).join(", ")}`;
    }
    case "failed": {
      if (t.kind === "throws") {
        const expected = throwsError((t.args as [number, string])[1]);
        if (row.errorName === expected.name && row.errorMessage === expected.message) return undefined;
      }
      if (t.kind === "crash" && row.errorName === "WorkloadExitedError") {
        const [, how, code] = t.args as [number, string, number];
        const says =
          how === "kill"
            ? "killed by SIGKILL"
            : how === "exit"
              ? `exited with code ${code}`
              : "exited with code 1";
        if (row.errorMessage?.includes(says)) return undefined;
      }
      if (row.errorName === "WorkloadExitedError" && (harnessKilled || restartDuring)) return undefined;
      if (row.errorName === "DaemonLostError") {
        const why = unexplainedDaemonLoss(row, record);
        if (why === undefined) return undefined;
        return `${what} failed with DaemonLostError (${row.errorMessage}), but ${why}`;
      }
      if (row.errorName === "WorkloadLostError" && restartDuring) return undefined;
      return `${what} failed with ${row.errorName}: ${(row.errorMessage ?? "").slice(0, 300)}, and the harness did nothing that explains it`;
    }
    default:
      return undefined;
  }
}

function describeArgs(args: readonly unknown[]): string {
  return args
    .map((a) => (typeof a === "string" && a.length > 40 ? `"${a.slice(0, 40)}…"` : JSON.stringify(a)))
    .join(", ");
}

function short(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 200 ? `${text.slice(0, 200)}…(${text.length} chars)` : text;
}

function iso(ms: number | undefined): string {
  return ms === undefined ? "never" : new Date(ms).toISOString();
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

export type { Downtime };
