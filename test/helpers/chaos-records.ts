/**
 * Made-up records of chaos runs (`chaos/run-record.ts`), for tests of the checker: each test
 * builds the evidence of one broken promise and sees the checker fail on it.
 */
import { encodeValue, type TaskInstanceState } from "numerous-tasks";
import { checkInvariants } from "../../chaos/check-invariants.js";
import type {
  DaemonSample,
  FinalRow,
  GenerationFigures,
  RunRecord,
  StopRecord,
  Tracked,
} from "../../chaos/run-record.js";

/** The moment every made-up run starts. */
export const AT = Date.parse("2026-01-01T00:00:00Z");

/** A daemon at rest; `rssMiB` null: /proc/<pid>/status could not be read. */
export function sample(fds: number, rssMiB: number | null = 70): DaemonSample {
  return {
    at: AT,
    rssBytes: rssMiB === null ? undefined : rssMiB * 2 ** 20,
    fds,
    fdList: Array.from({ length: fds }, () => "/dev/null"),
    notAtRest: undefined,
  };
}

export function generation(n: number, start: DaemonSample, end: DaemonSample): GenerationFigures {
  return {
    generation: n,
    pid: 1000 + n,
    start,
    end: { ...end, at: AT + 10_000 },
    instances: 10,
    rssPeakBytes: 0,
    fdsPeak: 0,
  };
}

/** A short task's instance: called at AT, started 10 ms and ended 100 ms later. */
export function shortInstance(
  id: string,
  status: string,
  result: unknown,
  stops: StopRecord[] = [],
): { tracked: Tracked; row: FinalRow } {
  const tracked: Tracked = {
    id,
    kind: "short",
    args: [3],
    phase: "load",
    submittedAt: AT,
    handle: { status, error: undefined } as unknown as TaskInstanceState,
    doneAt: AT + 100,
    stops,
    workloadKills: [],
    crowd: false,
  };
  const row: FinalRow = {
    id,
    taskName: "chaosShort",
    status,
    progress: status === "completed" ? 1 : 0,
    output: undefined,
    result: result === undefined ? undefined : encodeValue(result, "result"),
    errorName: undefined,
    errorMessage: undefined,
    createdAt: AT,
    startedAt: AT + 10,
    finishedAt: AT + 100,
    revision: 3,
  };
  return { tracked, row };
}

/** A stop aimed at a running instance, sent 20 ms after AT; `fields` say how it went. */
export function stopRecord(fields: Partial<StopRecord>): StopRecord {
  return {
    when: "running",
    sentAt: AT + 20,
    ackAt: undefined,
    refused: undefined,
    refusedCode: undefined,
    refusedAt: undefined,
    ...fields,
  };
}

/** A run of these instances where nothing else went wrong; `more` replaces any part. */
export function runRecord(
  instances: Array<{ tracked: Tracked; row: FinalRow }>,
  more: Partial<RunRecord> = {},
): RunRecord {
  return {
    mode: "process",
    stopGraceMs: 2_000,
    reconnectWindowMs: 5_000,
    settleBoundMs: 60_000,
    tracked: new Map(instances.map((i) => [i.tracked.id, i.tracked])),
    final: new Map(instances.map((i) => [i.row.id, i.row])),
    duplicates: [],
    unfinished: [],
    heartbeats: new Map(instances.map((i) => [i.row.id, { startedAt: AT + 20, lastAt: AT + 90, pid: 7 }])),
    observers: [],
    downtimes: [],
    poolKills: [],
    daemonCrashes: [],
    shutdownExitCodes: [0],
    memory: {
      generations: [generation(1, sample(25), sample(25))],
      rssHeadroomBytes: 96 * 2 ** 20,
      fdsHeadroom: 4,
    },
    leftoverWorkloads: [],
    rogueBreaches: [],
    rogueLeaks: [],
    rogueAnswered: 5,
    workloadsSeen: new Map(),
    ...more,
  };
}

/** The details of the violations of `invariant` the checker finds in `record`. */
export function violated(record: RunRecord, invariant: string): string[] {
  return checkInvariants(record)
    .violations.filter((v) => v.invariant === invariant)
    .map((v) => v.detail);
}
