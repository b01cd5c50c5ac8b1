import { isAbsolute, relative } from "node:path";
import type { TaskErrorDetails, TaskErrorInfo } from "../../sdk/errors.js";
import type { ScheduleRecord, ScheduleSnapshot } from "../../sdk/schedules.js";
import type { AttemptRecord, InstanceSnapshot } from "../../sdk/executor.js";
import { type CallOptions, type RunSpec, checkCallOptions } from "../../sdk/run-options.js";
import type { TaskStatus } from "../../sdk/task-status.js";
import {
  type Attempt,
  type ErrorDetails,
  type ErrorInfo,
  type Instance,
  LogStream,
  type RunOptions,
  type Schedule,
  Status,
} from "./generated/messages/numerous/tasks/v1/tasks_pb.js";
import type { StreamIndex } from "../../sdk/log-lines.js";
import type { StoredInstance } from "../store/store.js";

const TO_WIRE: Record<TaskStatus, Status> = {
  pending: Status.STATUS_PENDING,
  running: Status.STATUS_RUNNING,
  completed: Status.STATUS_COMPLETED,
  failed: Status.STATUS_FAILED,
  cancelled: Status.STATUS_CANCELLED,
};

const FROM_WIRE = new Map<Status, TaskStatus>(
  Object.entries(TO_WIRE).map(([status, wire]) => [wire, status as TaskStatus]),
);

/** Whether a task module is TypeScript (loaded through tsx): the daemon and the runner decide alike. */
export function isTypeScriptModule(module: string): boolean {
  return /\.[mc]?tsx?$/.test(module);
}

export function statusToWire(status: TaskStatus): Status {
  return TO_WIRE[status];
}

/** `undefined` for values no SDK status has (unspecified, unrecognized). */
export function statusFromWire(status: Status): TaskStatus | undefined {
  return FROM_WIRE.get(status);
}

export function errorToWire(error: TaskErrorInfo): ErrorInfo {
  return {
    name: error.name,
    message: error.message,
    stack: error.stack ?? "",
    code: error.code ?? "",
    details: error.details === undefined ? undefined : { address: "", variable: "", ...error.details },
  };
}

export function errorFromWire(error: ErrorInfo): TaskErrorInfo {
  return {
    name: error.name || "Error",
    message: error.message,
    ...(error.stack ? { stack: error.stack } : {}),
    ...(error.code ? { code: error.code } : {}),
    ...(error.details === undefined ? {} : { details: detailsFromWire(error.details) }),
  };
}

function detailsFromWire(details: ErrorDetails): TaskErrorDetails {
  return {
    ...(details.address ? { address: details.address } : {}),
    ...(details.variable ? { variable: details.variable } : {}),
    ...(details.value === undefined ? {} : { value: details.value }),
  };
}

export function storedToWire(row: StoredInstance): Instance {
  return {
    id: row.id,
    taskId: row.taskId,
    taskName: row.taskName,
    status: TO_WIRE[row.status],
    progress: row.progress,
    output: row.output,
    result: row.result,
    error: row.error === undefined ? undefined : errorToWire(row.error),
    createdAtMs: row.createdAt,
    startedAtMs: row.startedAt ?? 0,
    finishedAtMs: row.finishedAt ?? 0,
    revision: row.revision,
    sequence: row.sequence,
    options: row.spec === undefined ? undefined : specToWire(row.spec),
    attempt: row.attempt,
    attempts: (row.attempts ?? []).map(attemptToWire),
    nextAttemptAtMs: nextAttemptAt(row) ?? 0,
    exitCode: row.exitCode,
    cpuSeconds: row.cpuSeconds,
    peakMemoryBytes: row.peakMemoryBytes,
  };
}

export function logStreamToWire(stream: StreamIndex): LogStream {
  return stream === 1 ? LogStream.LOG_STREAM_STDERR : LogStream.LOG_STREAM_STDOUT;
}

/** Anything but stderr reads as stdout. */
export function logStreamFromWire(stream: LogStream): StreamIndex {
  return stream === LogStream.LOG_STREAM_STDERR ? 1 : 0;
}

/** While pending between attempts: when the next may start. */
export function nextAttemptAt(row: StoredInstance): number | undefined {
  return row.status === "pending" && row.attempt > 1 && row.readyAt > 0 ? row.readyAt : undefined;
}

function attemptToWire(record: AttemptRecord): Attempt {
  return {
    attempt: record.attempt,
    startedAtMs: record.startedAt,
    finishedAtMs: record.finishedAt ?? 0,
    error: record.error === undefined ? undefined : errorToWire(record.error),
  };
}

function attemptFromWire(record: Attempt): AttemptRecord {
  return {
    attempt: record.attempt,
    startedAt: record.startedAtMs,
    ...(record.finishedAtMs ? { finishedAt: record.finishedAtMs } : {}),
    ...(record.error === undefined ? {} : { error: errorFromWire(record.error) }),
  };
}

export function specToWire(spec: RunSpec): RunOptions {
  return {
    maxAttempts: spec.maxAttempts,
    backoff: spec.backoff,
    initialDelayMs: spec.initialDelayMs,
    maxDelayMs: spec.maxDelayMs,
    jitter: spec.jitter,
    timeoutMs: spec.timeoutMs,
    priority: spec.priority,
    startAtMs: spec.startAt,
    idempotencyKey: spec.idempotencyKey,
    concurrencyLimit: spec.concurrencyLimit,
    concurrencyKey: spec.concurrencyKey,
    perKeyLimit: spec.perKeyLimit,
  };
}

/**
 * The spec a client sent, checked as the SDK checks a call's options (a client may not be our
 * SDK): the spec, or the problem as text naming the option.
 */
export function specFromWire(options: RunOptions): RunSpec | string {
  const spec = wireSpec(options);
  return checkSpec(spec);
}

/** The spec as the wire has it, unchecked (the daemon checked what it sends). */
function wireSpec(options: RunOptions): RunSpec {
  const spec: { -readonly [K in keyof RunSpec]: RunSpec[K] } = {};
  const set = <K extends keyof RunSpec>(key: K, value: RunSpec[K] | undefined) => {
    if (value !== undefined) spec[key] = value;
  };
  set("maxAttempts", options.maxAttempts);
  if (options.backoff !== undefined) set("backoff", options.backoff as RunSpec["backoff"]);
  set("initialDelayMs", options.initialDelayMs);
  set("maxDelayMs", options.maxDelayMs);
  set("jitter", options.jitter);
  set("timeoutMs", options.timeoutMs);
  set("priority", options.priority);
  set("startAt", options.startAtMs);
  set("idempotencyKey", options.idempotencyKey);
  set("concurrencyLimit", options.concurrencyLimit);
  set("concurrencyKey", options.concurrencyKey);
  set("perKeyLimit", options.perKeyLimit);
  return spec;
}

function checkSpec(spec: RunSpec): RunSpec | string {
  const retry = {
    ...(spec.maxAttempts === undefined ? {} : { maxAttempts: spec.maxAttempts }),
    ...(spec.backoff === undefined ? {} : { backoff: spec.backoff }),
    ...(spec.initialDelayMs === undefined ? {} : { initialDelayMs: spec.initialDelayMs }),
    ...(spec.maxDelayMs === undefined ? {} : { maxDelayMs: spec.maxDelayMs }),
    ...(spec.jitter === undefined ? {} : { jitter: spec.jitter }),
  };
  const call: CallOptions = {
    ...(Object.keys(retry).length > 0 ? { retry } : {}),
    ...(spec.timeoutMs === undefined ? {} : { timeoutMs: spec.timeoutMs }),
    ...(spec.priority === undefined ? {} : { priority: spec.priority }),
    ...(spec.idempotencyKey === undefined ? {} : { idempotencyKey: spec.idempotencyKey }),
    ...(spec.startAt === undefined ? {} : { startAt: spec.startAt }),
  };
  try {
    checkCallOptions(call);
  } catch (error) {
    return (error as Error).message;
  }
  if (spec.concurrencyLimit === 0) return "concurrency.limit: must be a whole number of at least 1";
  if (spec.perKeyLimit === 0) return "concurrency.perKeyLimit: must be a whole number of at least 1";
  if ((spec.perKeyLimit === undefined) !== (spec.concurrencyKey === undefined)) {
    return "concurrency.key: a key and a per-key limit go together";
  }
  if (spec.concurrencyKey !== undefined && spec.concurrencyKey.trim() === "") {
    return "concurrency.key: must be a non-empty string";
  }
  return spec;
}

export function snapshotFromWire(instance: Instance): InstanceSnapshot {
  return {
    id: instance.id,
    taskId: instance.taskId,
    taskName: instance.taskName,
    status: statusFromWire(instance.status) ?? "failed",
    progress: instance.progress,
    output: instance.output,
    result: instance.result,
    error: instance.error === undefined ? undefined : errorFromWire(instance.error),
    createdAt: instance.createdAtMs,
    startedAt: instance.startedAtMs || undefined,
    finishedAt: instance.finishedAtMs || undefined,
    revision: instance.revision,
    spec: instance.options === undefined ? undefined : wireSpec(instance.options),
    attempt: instance.attempt || 1,
    attempts: instance.attempts.length === 0 ? undefined : instance.attempts.map(attemptFromWire),
    nextAttemptAt: instance.nextAttemptAtMs || undefined,
    exitCode: instance.exitCode,
    cpuSeconds: instance.cpuSeconds,
    peakMemoryBytes: instance.peakMemoryBytes,
  };
}

/** A schedule as the SDK sends it. */
export function scheduleToWire(record: ScheduleRecord): Schedule {
  return {
    name: record.name,
    taskName: record.taskName,
    module: record.module,
    moduleRelative: relativeModule(record.module),
    args: record.args,
    cron: record.cron,
    timezone: record.timezone,
    everyMs: record.everyMs,
    overlap: record.overlap,
    catchUp: record.catchUp,
    options: record.spec === undefined ? undefined : specToWire(record.spec),
    paused: record.paused,
    nextFireAtMs: 0,
    lastFiredAtMs: 0,
    lastInstanceId: "",
    createdAtMs: 0,
    updatedAtMs: 0,
  };
}

/** A schedule as the daemon answers it. */
export function scheduleFromWire(s: Schedule): ScheduleSnapshot {
  return {
    name: s.name,
    taskName: s.taskName,
    module: s.module,
    args: s.args,
    ...(s.cron === undefined ? {} : { cron: s.cron }),
    ...(s.timezone === undefined ? {} : { timezone: s.timezone }),
    ...(s.everyMs === undefined ? {} : { everyMs: s.everyMs }),
    overlap: s.overlap === "skip" ? "skip" : "allow",
    catchUp: s.catchUp === "none" || s.catchUp === "all" ? s.catchUp : "latest",
    ...(s.options === undefined ? {} : { spec: wireSpec(s.options) }),
    paused: s.paused ?? false,
    ...(s.nextFireAtMs ? { nextFireAt: s.nextFireAtMs } : {}),
    ...(s.lastFiredAtMs ? { lastOccurrenceAt: s.lastFiredAtMs } : {}),
    ...(s.lastInstanceId ? { lastInstanceId: s.lastInstanceId } : {}),
    createdAt: s.createdAtMs,
    updatedAt: s.updatedAtMs,
  };
}

/** The module relative to this process's working directory ("" when outside it or none). */
function relativeModule(module: string): string {
  if (module === "" || !isAbsolute(module)) return "";
  const rel = relative(process.cwd(), module);
  return rel.startsWith("..") ? "" : rel;
}
