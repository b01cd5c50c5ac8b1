import type { RunSpec } from "../../sdk/run-options.js";
import type { StoredSchedule } from "./store.js";

/** The `schedules` table's columns, in table order (both stores). */
export const SCHEDULE_COLUMNS = [
  "deployment_id",
  "name",
  "task_name",
  "module",
  "args",
  "cron",
  "timezone",
  "every_ms",
  "overlap",
  "catch_up",
  "options",
  "paused",
  "anchor_at",
  "handled_through",
  "last_fired_at",
  "last_instance_id",
  "created_at",
  "updated_at",
] as const;

/** The row's values in {@link SCHEDULE_COLUMNS} order. */
export function scheduleValues(s: StoredSchedule): Array<string | number | null> {
  return [
    s.deploymentId,
    s.name,
    s.taskName,
    s.module,
    s.args,
    s.cron ?? null,
    s.timezone ?? null,
    s.everyMs ?? null,
    s.overlap,
    s.catchUp,
    s.spec === undefined ? null : JSON.stringify(s.spec),
    s.paused ? 1 : 0,
    s.anchorAt,
    s.handledThrough,
    s.lastFiredAt ?? null,
    s.lastInstanceId ?? null,
    s.createdAt,
    s.updatedAt,
  ];
}

/** A stored row as the daemon sees it. */
export function toSchedule(row: Record<string, unknown>): StoredSchedule {
  const optional = <T>(value: unknown): T | undefined =>
    value === null || value === undefined ? undefined : (value as T);
  return {
    deploymentId: String(row.deployment_id),
    name: String(row.name),
    taskName: String(row.task_name),
    module: String(row.module),
    args: String(row.args),
    cron: optional<string>(row.cron),
    timezone: optional<string>(row.timezone),
    everyMs: optional<number>(row.every_ms === null ? null : Number(row.every_ms)),
    overlap: row.overlap === "skip" ? "skip" : "allow",
    catchUp: row.catch_up === "none" || row.catch_up === "all" ? row.catch_up : "latest",
    spec:
      row.options === null || row.options === undefined
        ? undefined
        : (JSON.parse(String(row.options)) as RunSpec),
    paused: Number(row.paused) === 1,
    anchorAt: Number(row.anchor_at),
    handledThrough: Number(row.handled_through),
    lastFiredAt: optional<number>(row.last_fired_at === null ? null : Number(row.last_fired_at)),
    lastInstanceId: optional<string>(row.last_instance_id),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}
