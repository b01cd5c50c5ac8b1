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
  /** The moment it aimed at; "quiet moment": every unfinished instance, to bring the daemon to rest. */
  readonly when: "before-start" | "running" | "after-end" | "quiet moment";
  readonly sentAt: number;
  /** In a cluster, the daemon it was sent through. */
  readonly through?: number;
  /** When `stop()` resolved for an instance the daemon knew; undefined when it rejected or did not know it. */
  ackAt: number | undefined;
  /**
   * The name of the error `stop()` rejected with, or "unknown id" when the daemon did not know
   * the instance (yet: in a cluster, a stop through one daemon can overtake the call through another).
   */
  refused: string | undefined;
  /** Its `code`: EXECUTOR_UNAVAILABLE means the caller cannot know whether the stop landed. */
  refusedCode: string | undefined;
  refusedAt: number | undefined;
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
  /** In a cluster, the daemon it was submitted through. */
  readonly daemon?: number;
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
  /** In a cluster, the daemon it watches through. */
  readonly daemon?: number;
}

/** A time a daemon was down: killed by the harness (or, in a cluster, exited on its own), until it listened again. */
export interface Downtime {
  readonly from: number;
  readonly to: number | undefined;
  /** Which daemon (0 when alone). */
  readonly daemon?: number;
}

/** A time the database was out of reach of one daemon of a cluster, or of all. */
export interface StoreOutage {
  readonly kind: "postgres restart" | "connection cut";
  readonly from: number;
  /** When it was back; undefined when it never came back. */
  to: number | undefined;
  /** The daemon cut off; undefined: every daemon (the server itself was down). */
  readonly daemon: number | undefined;
}

/** What a cluster run adds to the record (see `chaos/cluster-checks.ts`). */
export interface ClusterFacts {
  readonly leaseMs: number;
  readonly storeOutages: readonly StoreOutage[];
  /** Every name a daemon joined the cluster under: which daemon, which generation, since when. */
  readonly members: ReadonlyMap<string, { daemon: number; generation: number; joinedAt: number }>;
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
  /** Each daemon's exit code on SIGTERM after the run (null: it had to be killed). */
  readonly shutdownExitCodes: ReadonlyArray<number | null>;
  readonly memory: MemoryFigures;
  readonly leftoverWorkloads: readonly number[];
  readonly rogueBreaches: readonly string[];
  readonly rogueLeaks: readonly string[];
  /** Rogue calls the daemon answered: the only ones that could breach or leak anything. */
  readonly rogueAnswered: number;
  /** Process mode: the workload processes seen for each instance. */
  readonly workloadsSeen: ReadonlyMap<string, readonly WorkloadSighting[]>;
  /** Set in a cluster run: what differs from a daemon alone. */
  readonly cluster?: ClusterFacts;
}

/**
 * One reading of a daemon at rest: no instance pending or running, no workload busy, the
 * harness's load, faults and rogue paused.
 */
export interface DaemonSample {
  readonly at: number;
  /** The lowest VmRSS over the sample's window; undefined when `/proc/<pid>/status` could not be read. */
  readonly rssBytes: number | undefined;
  /**
   * Open descriptors less the TCP connections a live client holds open (those are the
   * client's to close); undefined when `/proc/<pid>/fd` could not be read.
   */
  readonly fds: number | undefined;
  /** What those descriptors are (see `describeFds`). */
  readonly fdList: readonly string[];
  /** Set when the daemon did not come to rest in time: what was still going on. */
  readonly notAtRest: string | undefined;
}

/**
 * One daemon process (a generation: the harness kills and restarts it), measured at rest
 * near its start and near its end, so a leak shows whatever the restarts.
 */
export interface GenerationFigures {
  /** In a cluster, which daemon. */
  readonly daemon?: number;
  readonly generation: number;
  readonly pid: number;
  /** After its warm-up: the first generation's calls, or what a restart left to finish. */
  start: DaemonSample | undefined;
  /** Before the harness kills it, or after the load for the last one. */
  end: DaemonSample | undefined;
  /** Instances that ended between the two samples: the load this generation's growth is over. */
  instances: number;
  /** Why it could not be measured at both ends, when it could not through no fault of the harness's. */
  cutShort?: string;
  rssPeakBytes: number;
  fdsPeak: number;
}

export interface MemoryFigures {
  readonly generations: readonly GenerationFigures[];
  /** How much more RSS a generation may keep at its end than at its start. */
  readonly rssHeadroomBytes: number;
  /** How many more descriptors. */
  readonly fdsHeadroom: number;
}
