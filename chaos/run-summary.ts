/** The figures of a chaos run's report, from its record: outcomes, latencies, watches. */
import { CHAOS_KINDS } from "./answers.js";
import type { FinalRow, Observer, Tracked } from "./run-record.js";
import { type Percentiles, bump, percentiles } from "./stats.js";

export interface RunSummary {
  readonly submittedByKind: Record<string, number>;
  readonly outcomes: Record<string, number>;
  readonly outcomesByKind: Record<string, Record<string, number>>;
  readonly latency: { readonly shortCompletedMs: Percentiles; readonly stopToEndMs: Percentiles };
  readonly watchers: Record<string, { watches: number; breaks: number }>;
}

export function summarize(
  tracked: ReadonlyMap<string, Tracked>,
  final: ReadonlyMap<string, FinalRow>,
  observers: readonly Observer[],
): RunSummary {
  const submittedByKind: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  const outcomesByKind: Record<string, Record<string, number>> = {};
  for (const kind of CHAOS_KINDS) outcomesByKind[kind] = {};
  for (const t of tracked.values()) {
    bump(submittedByKind, t.kind);
    const row = final.get(t.id);
    const status =
      row?.status ??
      (t.handle.error?.code === "EXECUTOR_UNAVAILABLE"
        ? "never reached the daemon"
        : `missing (${t.handle.status})`);
    bump(outcomes, status);
    bump(outcomesByKind[t.kind] as Record<string, number>, status);
  }
  const shortCompleted = [...tracked.values()]
    .filter(
      (t) =>
        t.phase === "load" && t.kind === "short" && t.handle.status === "completed" && t.doneAt !== undefined,
    )
    .map((t) => (t.doneAt as number) - t.submittedAt);
  const stopToEnd = [...tracked.values()].flatMap((t) => {
    const ackAt = t.stops.find((s) => s.ackAt !== undefined)?.ackAt;
    const startedAt = final.get(t.id)?.startedAt;
    // Only stops that reached a running instance: a pending one ends at once.
    if (
      ackAt === undefined ||
      startedAt === undefined ||
      startedAt > ackAt ||
      t.doneAt === undefined ||
      t.doneAt < ackAt
    )
      return [];
    return [t.doneAt - ackAt];
  });
  const watchers: Record<string, { watches: number; breaks: number }> = {};
  for (const o of observers) {
    const entry = (watchers[o.kind] ??= { watches: 0, breaks: 0 });
    entry.watches += o.wide ? final.size : o.log.size;
    // A deployment-wide stream breaks once for all its instances.
    if (o.wide) entry.breaks += o.breaks("");
    else for (const id of o.log.ids()) entry.breaks += o.breaks(id);
  }
  return {
    submittedByKind,
    outcomes,
    outcomesByKind,
    latency: { shortCompletedMs: percentiles(shortCompleted), stopToEndMs: percentiles(stopToEnd) },
    watchers,
  };
}
