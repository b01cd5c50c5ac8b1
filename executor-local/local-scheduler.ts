import type { InstanceSnapshot, SubmitRequest } from "../sdk/executor.js";
import { createInstanceId, definitionIdFor } from "../sdk/ids.js";
import { occurrenceInstanceId } from "../sdk/schedule-ids.js";
import { nextOccurrence, planOccurrences, type ScheduleTiming } from "../sdk/schedule-times.js";
import type { ScheduleExecutor, ScheduleRecord, ScheduleSnapshot } from "../sdk/schedules.js";
import { findRegistration } from "../sdk/task.js";
import { TaskInputError } from "../sdk/errors.js";
import { isTerminalStatus } from "../sdk/task-status.js";

/** What the scheduler needs of its executor. */
export interface LocalScheduleHost {
  submit(request: SubmitRequest): InstanceSnapshot;
  /** The current snapshot of an instance, synchronously. */
  snapshot(id: string): InstanceSnapshot | undefined;
}

interface Entry {
  snapshot: ScheduleSnapshot;
  anchorAt: number;
  handledThrough: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Schedules of the local executor, fired in this process by timers. There is no downtime to
 * catch up in one process: a timer that fires late fires every occurrence it passed. Timers do
 * not keep the process alive by themselves.
 */
export class LocalScheduler implements ScheduleExecutor {
  readonly #host: LocalScheduleHost;
  readonly #schedules = new Map<string, Entry>();
  #closed = false;

  constructor(host: LocalScheduleHost) {
    this.#host = host;
  }

  async upsertSchedule(record: ScheduleRecord): Promise<ScheduleSnapshot> {
    if (record.module === "" && findRegistration(record.taskName) === undefined) {
      throw new TaskInputError(
        "task",
        `no task named ${JSON.stringify(record.taskName)} is defined in this process`,
      );
    }
    const now = Date.now();
    const existing = this.#schedules.get(record.name);
    const old = existing?.snapshot;
    const sameTiming =
      old !== undefined &&
      old.cron === record.cron &&
      old.timezone === record.timezone &&
      old.everyMs === record.everyMs;
    const entry: Entry = {
      snapshot: {
        ...record,
        paused: record.paused ?? old?.paused ?? false,
        lastOccurrenceAt: old?.lastOccurrenceAt,
        lastInstanceId: old?.lastInstanceId,
        createdAt: old?.createdAt ?? now,
        updatedAt: now,
      },
      anchorAt: sameTiming && existing ? existing.anchorAt : now,
      handledThrough: sameTiming && existing ? existing.handledThrough : now,
      timer: undefined,
    };
    if (existing) clearTimeout(existing.timer);
    this.#schedules.set(record.name, entry);
    this.#arm(entry);
    return this.#view(entry);
  }

  async listSchedules(): Promise<readonly ScheduleSnapshot[]> {
    return [...this.#schedules.values()]
      .sort((a, b) => (a.snapshot.name < b.snapshot.name ? -1 : 1))
      .map((e) => this.#view(e));
  }

  async setSchedulePaused(name: string, paused: boolean): Promise<ScheduleSnapshot | undefined> {
    const entry = this.#schedules.get(name);
    if (entry === undefined) return undefined;
    if (entry.snapshot.paused !== paused) {
      const now = Date.now();
      entry.snapshot = { ...entry.snapshot, paused, updatedAt: now };
      if (!paused) entry.handledThrough = Math.max(entry.handledThrough, now);
      clearTimeout(entry.timer);
      this.#arm(entry);
    }
    return this.#view(entry);
  }

  async deleteSchedule(name: string): Promise<boolean> {
    const entry = this.#schedules.get(name);
    if (entry === undefined) return false;
    clearTimeout(entry.timer);
    this.#schedules.delete(name);
    return true;
  }

  async triggerSchedule(name: string): Promise<InstanceSnapshot | undefined> {
    const entry = this.#schedules.get(name);
    return entry === undefined ? undefined : this.#start(entry, createInstanceId(), undefined);
  }

  close(): void {
    this.#closed = true;
    for (const entry of this.#schedules.values()) clearTimeout(entry.timer);
  }

  #arm(entry: Entry): void {
    if (this.#closed || entry.snapshot.paused) return;
    const next = nextOccurrence(timingOf(entry), entry.handledThrough);
    if (next === undefined) return;
    entry.timer = setTimeout(() => this.#fire(entry), Math.max(0, next - Date.now()));
    entry.timer.unref();
  }

  #fire(entry: Entry): void {
    if (this.#schedules.get(entry.snapshot.name) !== entry || entry.snapshot.paused) return;
    const now = Date.now();
    if ((nextOccurrence(timingOf(entry), entry.handledThrough) ?? Number.POSITIVE_INFINITY) > now) {
      // A timer that fired a little early (timers round): wait for the time itself.
      this.#arm(entry);
      return;
    }
    const plan = planOccurrences(timingOf(entry), entry.handledThrough, now, entry.snapshot.catchUp, 0);
    for (const at of plan.fire) {
      const last = entry.snapshot.lastInstanceId;
      if (entry.snapshot.overlap === "skip" && last !== undefined) {
        const running = this.#host.snapshot(last);
        if (running !== undefined && !isTerminalStatus(running.status)) continue;
      }
      const id = occurrenceInstanceId("", entry.snapshot.name, at);
      this.#start(entry, id, at);
      entry.snapshot = { ...entry.snapshot, lastOccurrenceAt: at, lastInstanceId: id };
    }
    entry.handledThrough = plan.handledThrough;
    this.#arm(entry);
  }

  #start(entry: Entry, id: string, at: number | undefined): InstanceSnapshot {
    const s = entry.snapshot;
    const spec = { ...s.spec, ...(at === undefined ? {} : { startAt: at }) };
    return this.#host.submit({
      id,
      taskId: definitionIdFor(s.taskName),
      taskName: s.taskName,
      args: s.args,
      createdAt: Date.now(),
      module: s.module,
      ...(Object.keys(spec).length === 0 ? {} : { spec }),
    });
  }

  #view(entry: Entry): ScheduleSnapshot {
    const next = entry.snapshot.paused ? undefined : nextOccurrence(timingOf(entry), entry.handledThrough);
    return { ...entry.snapshot, ...(next === undefined ? {} : { nextFireAt: next }) };
  }
}

function timingOf(entry: Entry): ScheduleTiming {
  const s = entry.snapshot;
  return { cron: s.cron, timezone: s.timezone, everyMs: s.everyMs, anchorAt: entry.anchorAt };
}
