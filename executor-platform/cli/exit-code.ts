import type { TaskStatus } from "../../sdk/task-status.js";

/** How `tasks` commands end, so scripts can tell outcomes apart. */
export const ExitCode = {
  Ok: 0,
  Failed: 1,
  Usage: 2,
  Cancelled: 3,
  NotFound: 4,
  Unavailable: 5,
} as const;

/** The exit code of a command that shows or waits for an instance in this status. */
export const STATUS_EXIT: Readonly<Record<TaskStatus, number>> = {
  pending: ExitCode.Ok,
  running: ExitCode.Ok,
  completed: ExitCode.Ok,
  failed: ExitCode.Failed,
  cancelled: ExitCode.Cancelled,
};
