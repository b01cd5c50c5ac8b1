import { type EncodedValue, decodeValue, encodeValue } from "./codec.js";
import { TaskInputError } from "./errors.js";
import type { InstanceSnapshot, TaskDefinition } from "./executor.js";
import { type RunOptions, type RunSpec, checkCallOptions, resolveRunSpec } from "./run-options.js";
import { currentExecutor } from "./runtime.js";
import { type ScheduleTiming, timingProblem } from "./schedule-times.js";
import { findRegistration } from "./task.js";
import { TaskInstanceState } from "./task-instance-state.js";

/** What `upsertSchedule` takes (SPEC §5). */
export interface ScheduleOptions {
  /** Unique in the deployment; `upsertSchedule` with the same name changes that schedule. */
  readonly name: string;
  /** The task: its function (or definition), or its name. */
  readonly task: string | { readonly definition: TaskDefinition } | TaskDefinition;
  /** The arguments of every instance it starts. Default none. */
  readonly args?: readonly unknown[];
  /** A cron expression: five fields, or six with seconds first. Give `cron` or `every`. */
  readonly cron?: string;
  /** The cron expression's IANA time zone. Default UTC. */
  readonly timezone?: string;
  /** A fixed interval in milliseconds, at least 1,000. */
  readonly every?: number;
  /** `"skip"`: no instance while the last one still runs. Default `"allow"`. */
  readonly overlap?: "allow" | "skip";
  /** After downtime: `"none"`, `"latest"` (default: the most recent missed, once) or `"all"` (at most 100). */
  readonly catchUp?: "none" | "latest" | "all";
  /** Run options of the instances it starts (the task's own defaults apply under them). */
  readonly options?: RunOptions;
  /** Create it paused. Default false; an upsert keeps a schedule's paused state unless given. */
  readonly paused?: boolean;
}

/** A schedule as an executor keeps it: plain data, values encoded. */
export interface ScheduleRecord extends Omit<ScheduleTiming, "anchorAt"> {
  readonly name: string;
  readonly taskName: string;
  /** The module that defines the task ("" when given by name only: the executor finds it). */
  readonly module: string;
  readonly args: EncodedValue;
  readonly overlap: "allow" | "skip";
  readonly catchUp: "none" | "latest" | "all";
  readonly spec?: RunSpec | undefined;
  /** Absent on an upsert: keep the schedule's state (false for a new one). */
  readonly paused?: boolean | undefined;
}

/** A schedule and where it stands. Epoch milliseconds. */
export interface ScheduleSnapshot extends ScheduleRecord {
  readonly paused: boolean;
  /** The next time it fires; absent while paused or when it never fires again. */
  readonly nextFireAt?: number | undefined;
  /** The occurrence it last fired (or skipped, by its overlap or catch-up rules). */
  readonly lastOccurrenceAt?: number | undefined;
  readonly lastInstanceId?: string | undefined;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** What an executor that keeps schedules offers (both built-in ones do). */
export interface ScheduleExecutor {
  upsertSchedule(record: ScheduleRecord): Promise<ScheduleSnapshot>;
  listSchedules(): Promise<readonly ScheduleSnapshot[]>;
  /** Resolves undefined for an unknown name. */
  setSchedulePaused(name: string, paused: boolean): Promise<ScheduleSnapshot | undefined>;
  /** Resolves false for an unknown name. */
  deleteSchedule(name: string): Promise<boolean>;
  /** Starts one instance now, outside the timing; undefined for an unknown name. */
  triggerSchedule(name: string): Promise<InstanceSnapshot | undefined>;
}

/** A schedule, decoded. */
export interface Schedule {
  readonly name: string;
  readonly taskName: string;
  readonly args: unknown[];
  readonly cron: string | undefined;
  readonly timezone: string | undefined;
  readonly every: number | undefined;
  readonly overlap: "allow" | "skip";
  readonly catchUp: "none" | "latest" | "all";
  readonly paused: boolean;
  readonly nextFireAt: Date | undefined;
  readonly lastOccurrenceAt: Date | undefined;
  readonly lastInstanceId: string | undefined;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

const KEYS = new Set([
  "name",
  "task",
  "args",
  "cron",
  "timezone",
  "every",
  "overlap",
  "catchUp",
  "options",
  "paused",
]);

/**
 * Creates or changes the schedule `options.name` (idempotent by name: call it at app start).
 * Each occurrence starts one instance, exactly once across restarts and every daemon.
 * @throws {TaskInputError} naming what is wrong: an unknown option, a bad cron expression, an
 *   unknown time zone, an interval under one second, arguments that do not survive the codec. A
 *   task the daemon does not know rejects with the daemon's error.
 */
export async function upsertSchedule(options: ScheduleOptions): Promise<Schedule> {
  const record = checkSchedule(options);
  return toSchedule(await scheduler().upsertSchedule(record));
}

/** Every schedule of the deployment (locally: of this process), by name. */
export async function listSchedules(): Promise<Schedule[]> {
  return (await scheduler().listSchedules()).map(toSchedule);
}

/** Stops it firing until resumed; resolves it, or undefined for an unknown name. */
export async function pauseSchedule(name: string): Promise<Schedule | undefined> {
  const found = await scheduler().setSchedulePaused(checkName(name), true);
  return found === undefined ? undefined : toSchedule(found);
}

/** Fires again from the next occurrence on (what it missed while paused is not caught up). */
export async function resumeSchedule(name: string): Promise<Schedule | undefined> {
  const found = await scheduler().setSchedulePaused(checkName(name), false);
  return found === undefined ? undefined : toSchedule(found);
}

/** Deletes it; instances it started are kept. Resolves false for an unknown name. */
export async function deleteSchedule(name: string): Promise<boolean> {
  return scheduler().deleteSchedule(checkName(name));
}

/** Starts one instance of it now, outside its timing; undefined for an unknown name. */
export async function triggerSchedule<R = unknown>(name: string): Promise<TaskInstanceState<R> | undefined> {
  const executor = currentExecutor();
  const snapshot = await scheduler().triggerSchedule(checkName(name));
  return snapshot === undefined ? undefined : new TaskInstanceState<R>(executor, snapshot);
}

function scheduler(): ScheduleExecutor {
  const executor = currentExecutor() as Partial<ScheduleExecutor>;
  if (typeof executor.upsertSchedule !== "function") {
    throw new TypeError("this executor keeps no schedules (the local and platform executors do)");
  }
  return executor as ScheduleExecutor;
}

function checkName(name: unknown): string {
  if (typeof name !== "string" || name.trim() === "")
    throw new TaskInputError("name", "a schedule needs a non-empty name");
  return name;
}

/** @internal The record of `options`, checked. */
export function checkSchedule(options: ScheduleOptions): ScheduleRecord {
  if (typeof options !== "object" || options === null) {
    throw new TaskInputError("schedule", "upsertSchedule takes an object such as { name, task, cron }");
  }
  for (const key of Object.keys(options)) {
    if (!KEYS.has(key))
      throw new TaskInputError(
        key,
        `is not an option of a schedule; the options are ${[...KEYS].join(", ")}`,
      );
  }
  const name = checkName(options.name);
  const task = options.task as unknown;
  const taskName =
    typeof task === "string"
      ? task
      : typeof task === "function" || (typeof task === "object" && task !== null)
        ? ((task as { definition?: TaskDefinition }).definition?.name ?? (task as TaskDefinition).name)
        : undefined;
  if (typeof taskName !== "string" || taskName.trim() === "") {
    throw new TaskInputError("task", "give the task function, its definition or its name");
  }
  const problem = timingProblem({ cron: options.cron, timezone: options.timezone, everyMs: options.every });
  if (problem !== undefined) {
    const [option, ...rest] = problem.split(": ");
    throw new TaskInputError(option as string, rest.join(": "));
  }
  if (options.overlap !== undefined && options.overlap !== "allow" && options.overlap !== "skip") {
    throw new TaskInputError("overlap", `must be "allow" or "skip", got ${JSON.stringify(options.overlap)}`);
  }
  if (options.catchUp !== undefined && !["none", "latest", "all"].includes(options.catchUp)) {
    throw new TaskInputError(
      "catchUp",
      `must be "none", "latest" or "all", got ${JSON.stringify(options.catchUp)}`,
    );
  }
  if (options.paused !== undefined && typeof options.paused !== "boolean") {
    throw new TaskInputError("paused", "must be true or false");
  }
  const args = options.args ?? [];
  if (!Array.isArray(args)) throw new TaskInputError("args", "must be an array of the task's arguments");
  const encoded = encodeValue(args, "args");
  const known = findRegistration(taskName);
  const run = options.options === undefined ? undefined : checkCallOptions(options.options);
  for (const key of ["idempotencyKey", "delayMs", "startAt"] as const) {
    if (run?.[key] !== undefined)
      throw new TaskInputError(`options.${key}`, "is set by each occurrence, not by the schedule");
  }
  // The task's defaults under the schedule's options; a concurrency key computed from the args.
  const spec = resolveRunSpec(known?.defaults, run, args, Date.now());
  return {
    name,
    taskName,
    module: known?.site ?? "",
    args: encoded,
    ...(options.cron === undefined ? {} : { cron: options.cron.trim() }),
    ...(options.timezone === undefined ? {} : { timezone: options.timezone }),
    ...(options.every === undefined ? {} : { everyMs: options.every }),
    overlap: options.overlap ?? "allow",
    catchUp: options.catchUp ?? "latest",
    ...(spec === undefined ? {} : { spec }),
    ...(options.paused === undefined ? {} : { paused: options.paused }),
  };
}

function toSchedule(s: ScheduleSnapshot): Schedule {
  return {
    name: s.name,
    taskName: s.taskName,
    args: decodeValue(s.args) as unknown[],
    cron: s.cron,
    timezone: s.timezone,
    every: s.everyMs,
    overlap: s.overlap,
    catchUp: s.catchUp,
    paused: s.paused,
    nextFireAt: s.nextFireAt === undefined ? undefined : new Date(s.nextFireAt),
    lastOccurrenceAt: s.lastOccurrenceAt === undefined ? undefined : new Date(s.lastOccurrenceAt),
    lastInstanceId: s.lastInstanceId,
    createdAt: new Date(s.createdAt),
    updatedAt: new Date(s.updatedAt),
  };
}

/** The instance id of a schedule's occurrence: the same in every process, so it is made once. */
export { occurrenceInstanceId } from "./schedule-ids.js";
