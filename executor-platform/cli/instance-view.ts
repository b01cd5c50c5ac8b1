import type { Executor, InstanceSnapshot } from "../../sdk/executor.js";
import { formatBytes } from "../../sdk/log-lines.js";
import { maxAttemptsOf } from "../../sdk/run-options.js";
import { TaskInstanceState, type TaskSnapshot } from "../../sdk/task-instance-state.js";

/**
 * An instance as the command line shows it: the SDK's snapshot, plus how many attempts it may
 * make in all, which the snapshot leaves in the instance's run options.
 */
export interface InstanceView extends TaskSnapshot {
  readonly maxAttempts: number;
}

/** A live handle on what the daemon sent, and the run options it carried. */
export interface ShownInstance {
  readonly instance: TaskInstanceState;
  readonly maxAttempts: number;
}

export function shown(executor: Executor, snapshot: InstanceSnapshot): ShownInstance {
  return {
    instance: new TaskInstanceState(executor, snapshot),
    maxAttempts: maxAttemptsOf(snapshot.spec),
  };
}

export function viewOf(snapshot: TaskSnapshot, maxAttempts: number): InstanceView {
  return { ...snapshot, maxAttempts };
}

const HEADER = ["ID", "TASK", "STATUS", "PROGRESS", "CREATED", "FINISHED"];

/**
 * The instances as a table; a NOTES column only when some instance has run options to show,
 * and `notes` is not false (`tasks get` spells them out below).
 */
export function instanceTable(views: readonly InstanceView[], options: { notes?: boolean } = {}): string {
  const notes = views.map((view) => (options.notes === false ? "" : notesOf(view).join(", ")));
  const withNotes = notes.some((note) => note !== "");
  const rows = views.map((view, i) => {
    const cells = [
      view.id,
      view.taskName,
      view.status,
      percent(view.progress),
      view.createdAt.toISOString(),
      view.finishedAt?.toISOString() ?? "",
    ];
    return withNotes ? [...cells, notes[i] ?? ""] : cells;
  });
  return table(withNotes ? [...HEADER, "NOTES"] : HEADER, rows);
}

/**
 * What the run options make of an instance, briefly: its attempt when it may make more than
 * one, the next attempt's time while it waits to retry, its start time when delayed, a priority
 * other than 0, and its idempotency key.
 */
export function notesOf(view: InstanceView): string[] {
  const notes: string[] = [];
  if (view.maxAttempts > 1 || view.attempt > 1) notes.push(`attempt ${view.attempt}/${view.maxAttempts}`);
  if (view.status === "pending" && view.nextAttemptAt !== undefined)
    notes.push(`next attempt at ${view.nextAttemptAt.toISOString()}`);
  if (view.scheduledFor !== undefined) notes.push(`scheduled for ${view.scheduledFor.toISOString()}`);
  if (view.priority !== 0) notes.push(`priority ${view.priority}`);
  if (view.idempotencyKey !== undefined) notes.push(`key ${JSON.stringify(view.idempotencyKey)}`);
  return notes;
}

/** `tasks get`'s lines below the table: the same facts spelled out, and each ended attempt. */
export function detailLines(view: InstanceView, now: number): string[] {
  const lines: string[] = [];
  if (view.maxAttempts > 1 || view.attempt > 1) lines.push(`attempt: ${view.attempt}/${view.maxAttempts}`);
  if (view.status === "pending" && view.nextAttemptAt !== undefined)
    lines.push(`next attempt: ${when(view.nextAttemptAt, now)}`);
  if (view.scheduledFor !== undefined) lines.push(`scheduled for: ${when(view.scheduledFor, now)}`);
  if (view.priority !== 0) lines.push(`priority: ${view.priority}`);
  if (view.idempotencyKey !== undefined)
    lines.push(`idempotency key: ${JSON.stringify(view.idempotencyKey)}`);
  // The last attempt's end is the instance's, told by the closing line: list the earlier ones.
  for (const attempt of view.attempts) {
    if (attempt.error === undefined || attempt.finishedAt === undefined) continue;
    if (attempt.attempt === view.attempt && view.status === "failed") continue;
    lines.push(
      `attempt ${attempt.attempt} failed at ${attempt.finishedAt.toISOString()}: ${attempt.error.name}: ${attempt.error.message}`,
    );
  }
  if (view.output !== undefined) lines.push(`output: ${JSON.stringify(view.output)}`);
  const usage = usageOf(view);
  if (usage !== "") lines.push(usage);
  return lines;
}

/** What its workload used, as far as known: `exit code: 0  cpu: 0.12 s  peak memory: 48 MiB`. */
function usageOf(view: InstanceView): string {
  const parts: string[] = [];
  if (view.exitCode !== undefined) parts.push(`exit code: ${view.exitCode}`);
  if (view.cpuSeconds !== undefined) parts.push(`cpu: ${view.cpuSeconds.toFixed(2)} s`);
  if (view.peakMemoryBytes !== undefined) parts.push(`peak memory: ${formatBytes(view.peakMemoryBytes)}`);
  return parts.join("  ");
}

/** `tasks watch`'s line for a snapshot, when not on a terminal. */
export function watchLine(view: InstanceView): string {
  const notes = notesOf(view);
  const line = `${view.status} ${percent(view.progress)}`;
  return notes.length === 0 ? line : `${line} (${notes.join(", ")})`;
}

/** How an instance ended: its result, or its error. */
export function describeEnd(instance: TaskInstanceState): string {
  if (instance.status === "completed" || (instance.status === "cancelled" && instance.result !== undefined)) {
    return `${instance.status}: ${JSON.stringify(instance.result)}`;
  }
  const error = instance.error;
  return error ? `${instance.status}: ${error.name}: ${error.message}` : instance.status;
}

export function table(header: readonly string[], rows: readonly string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

function percent(progress: number): string {
  return `${Math.round(progress * 100)}%`;
}

/** A time, and for one still to come how far off it is, as a person reads it. */
function when(time: Date, now: number): string {
  const ms = time.getTime() - now;
  return ms > 0 ? `${time.toISOString()} (in ${span(ms)})` : time.toISOString();
}

function span(ms: number): string {
  if (ms < 1_000) return `${Math.ceil(ms)}ms`;
  const seconds = Math.ceil(ms / 1_000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${seconds % 60 === 0 ? "" : ` ${seconds % 60}s`}`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h${minutes % 60 === 0 ? "" : ` ${minutes % 60}m`}`;
  return `${Math.floor(hours / 24)}d`;
}
