import type { TaskErrorDetails, TaskErrorInfo } from "../../sdk/errors.js";
import type { InstanceSnapshot } from "../../sdk/executor.js";
import type { TaskStatus } from "../../sdk/task-status.js";
import {
  type ErrorDetails,
  type ErrorInfo,
  type Instance,
  Status,
} from "./generated/messages/numerous/tasks/v1/tasks_pb.js";
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
  };
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
  };
}
