/** Where an instance is in its life. The values are the Python original's. */
export const TaskStatus = {
  Pending: "pending",
  Running: "running",
  Completed: "completed",
  Failed: "failed",
  Cancelled: "cancelled",
} as const;

export type TaskStatus = (typeof TaskStatus)[keyof typeof TaskStatus];

const ALL: ReadonlySet<string> = new Set(Object.values(TaskStatus));

/** Type guard that accepts anything. */
export function isTaskStatus(value: unknown): value is TaskStatus {
  return typeof value === "string" && ALL.has(value);
}

/** Completed, failed and cancelled are final: an instance never changes after reaching one. */
export function isTerminalStatus(status: TaskStatus): boolean {
  return status === "completed" || status === "failed" || status === "cancelled";
}
