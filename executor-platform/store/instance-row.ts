import type { TaskErrorInfo } from "../../sdk/errors.js";
import { isTaskStatus, type TaskStatus } from "../../sdk/task-status.js";
import type { StoredInstance } from "./store.js";

/** An instance as both SQL stores keep it: snake_case columns, SQL nulls, the error as JSON text. */
export interface InstanceRow {
  id: string;
  deployment_id: string;
  task_id: string;
  task_name: string;
  module: string;
  args: string | null;
  status: string;
  progress: number;
  output: string | null;
  result: string | null;
  error: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  revision: number;
  sequence: number;
  position: number;
  owner: string;
}

/** The columns of {@link InstanceRow} in the order both stores write them. */
export const INSTANCE_COLUMNS = [
  "id",
  "deployment_id",
  "task_id",
  "task_name",
  "module",
  "args",
  "status",
  "progress",
  "output",
  "result",
  "error",
  "created_at",
  "started_at",
  "finished_at",
  "revision",
  "sequence",
  "position",
  "owner",
] as const;

/** An instance's column values, in the order of {@link INSTANCE_COLUMNS}: the inverse of {@link toInstance}. */
export function instanceValues(row: StoredInstance): unknown[] {
  return [
    row.id,
    row.deploymentId,
    row.taskId,
    row.taskName,
    row.module,
    row.args ?? null,
    row.status,
    row.progress,
    row.output ?? null,
    row.result ?? null,
    row.error === undefined ? null : JSON.stringify(row.error),
    row.createdAt,
    row.startedAt ?? null,
    row.finishedAt ?? null,
    row.revision,
    row.sequence,
    row.position,
    row.owner,
  ];
}

export interface DefinitionRow {
  deployment_id: string;
  id: string;
  name: string;
  module: string;
}

/**
 * A stored row as the daemon sees it.
 * @throws {Error} for a status no SDK version knows.
 */
export function toInstance(row: InstanceRow): StoredInstance {
  if (!isTaskStatus(row.status))
    throw new Error(`instance ${row.id} has an unknown status ${JSON.stringify(row.status)}`);
  const status: TaskStatus = row.status;
  return {
    id: row.id,
    deploymentId: row.deployment_id,
    taskId: row.task_id,
    taskName: row.task_name,
    module: row.module,
    args: row.args ?? undefined,
    status,
    progress: row.progress,
    output: row.output ?? undefined,
    result: row.result ?? undefined,
    error: row.error === null ? undefined : (JSON.parse(row.error) as TaskErrorInfo),
    createdAt: row.created_at,
    startedAt: row.started_at ?? undefined,
    finishedAt: row.finished_at ?? undefined,
    revision: row.revision,
    sequence: row.sequence,
    position: row.position,
    owner: row.owner,
  };
}
