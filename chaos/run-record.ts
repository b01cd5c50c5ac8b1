/**
 * What a chaos run records, for the checker: the instances the harness called and what it did
 * to them, the daemon's final word on each, what every observer saw, and the task-side
 * heartbeats.
 */
import type { TaskInstanceState } from "numerous-tasks";
import type { Instance } from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { Status } from "../executor-platform/protocol/generated/numerous/tasks/v1/tasks_pb.js";
import type { ChaosKind } from "./answers.js";
import type { ObserverLog, Seen } from "./observer-log.js";

/** One stop the harness requested. */
export interface StopRecord {
  /** The moment it aimed at. */
  readonly when: "before-start" | "running" | "after-end";
  readonly sentAt: number;
  /** When `stop()` resolved; undefined when it rejected. */
  ackAt: number | undefined;
  refused: string | undefined;
}

/** One instance the harness called. */
export interface Tracked {
  readonly id: string;
  readonly kind: ChaosKind;
  readonly args: readonly unknown[];
  readonly phase: "warm-up" | "load";
  readonly submittedAt: number;
  readonly handle: TaskInstanceState;
  /** When the caller's handle first showed a final status. */
  doneAt: number | undefined;
  readonly stops: StopRecord[];
  /** When the harness SIGKILLed this instance's workload (process mode). */
  readonly workloadKills: number[];
  crowd: boolean;
}

/** The daemon's state of an instance, as the checker reads it. */
export interface FinalRow {
  readonly id: string;
  readonly taskName: string;
  readonly status: string;
  readonly progress: number;
  readonly output: string | undefined;
  readonly result: string | undefined;
  readonly errorName: string | undefined;
  readonly errorMessage: string | undefined;
  readonly createdAt: number;
  readonly startedAt: number | undefined;
  readonly finishedAt: number | undefined;
  readonly revision: number;
}

const STATUS_NAMES: Readonly<Record<number, string>> = {
  [Status.STATUS_PENDING]: "pending",
  [Status.STATUS_RUNNING]: "running",
  [Status.STATUS_COMPLETED]: "completed",
  [Status.STATUS_FAILED]: "failed",
  [Status.STATUS_CANCELLED]: "cancelled",
};

export function statusName(status: Status): string {
  return STATUS_NAMES[status] ?? `unknown(${status})`;
}

export function finalFromWire(instance: Instance): FinalRow {
  return {
    id: instance.id,
    taskName: instance.taskName,
    status: statusName(instance.status),
    progress: instance.progress,
    output: instance.output,
    result: instance.result,
    errorName: instance.error === undefined ? undefined : instance.error.name || "Error",
    errorMessage: instance.error?.message,
    createdAt: instance.createdAtMs,
    startedAt: instance.startedAtMs || undefined,
    finishedAt: instance.finishedAtMs || undefined,
    revision: instance.revision,
  };
}

export function seenFromWire(instance: Instance): Seen {
  return {
    revision: instance.revision,
    status: statusName(instance.status),
    result: instance.result,
    errorName: instance.error === undefined ? undefined : instance.error.name || "Error",
    errorMessage: instance.error?.message,
  };
}

/** Heartbeats a task wrote (see `chaos/tasks.ts`). */
export interface Heartbeat {
  readonly startedAt: number;
  readonly lastAt: number;
  readonly pid: number;
}

/** A workload process the harness saw, for the story of an instance. */
export interface WorkloadSighting {
  readonly pid: number;
  readonly instanceId: string | undefined;
  readonly firstSeen: number;
  lastSeen: number;
}

/** How an observer watched. */
export type ObserverKind = "caller" | "watcher" | "crowd" | "slow" | "auditor";

export interface Observer {
  readonly kind: ObserverKind;
  readonly log: ObserverLog;
  /** Deployment-wide observers must see every instance. */
  readonly wide: boolean;
  /** How many breaks its watch of `id` lived through: streams reopened, or connections cut under it. */
  breaks: (id: string) => number;
  /** What else is known about its stream, for reports. */
  notes?: () => string;
}

export interface Downtime {
  readonly from: number;
  readonly to: number | undefined;
}

/** A violation of an invariant, with what is needed to look into it. */
export interface Violation {
  readonly invariant: string;
  readonly ids: readonly string[];
  readonly detail: string;
  /** What the run knows about each instance involved. */
  readonly story: readonly string[];
  /** Daemon log lines that mention the ids: "daemon-<generation>.log:<line> <text>". */
  logLines: string[];
}

/** Everything the checker needs. */
export interface RunRecord {
  readonly mode: "process" | "pool";
  readonly stopGraceMs: number;
  readonly reconnectWindowMs: number;
  readonly settleBoundMs: number;
  readonly tracked: ReadonlyMap<string, Tracked>;
  readonly final: ReadonlyMap<string, FinalRow>;
  /** Ids the daemon listed more than once. */
  readonly duplicates: readonly string[];
  /** Instances still pending or running when the settle bound ran out. */
  readonly unfinished: readonly FinalRow[];
  readonly heartbeats: ReadonlyMap<string, Heartbeat>;
  readonly observers: readonly Observer[];
  readonly downtimes: readonly Downtime[];
  /** Pool mode: when the harness SIGKILLed a worker, whatever it ran. */
  readonly poolKills: readonly number[];
  readonly daemonCrashes: readonly string[];
  readonly shutdownExitCode: number | null;
  readonly memory: MemoryFigures;
  readonly leftoverWorkloads: readonly number[];
  readonly rogueBreaches: readonly string[];
  readonly rogueLeaks: readonly string[];
  /** Process mode: the workload processes seen for each instance. */
  readonly workloadsSeen: ReadonlyMap<string, readonly WorkloadSighting[]>;
}

export interface MemoryFigures {
  readonly rssBeforeBytes: number;
  readonly rssAfterBytes: number;
  readonly rssPeakBytes: number;
  readonly fdsBefore: number;
  readonly fdsAfter: number;
  readonly fdsPeak: number;
  readonly rssBoundBytes: number;
  readonly fdsBound: number;
  /** What the daemon had open after the load that it did not before. */
  readonly fdsAdded: readonly string[];
}
