import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { isEncodedValue } from "../../sdk/codec.js";
import { createInstanceId } from "../../sdk/ids.js";
import type { RunSpec } from "../../sdk/run-options.js";
import { occurrenceInstanceId } from "../../sdk/schedule-ids.js";
import {
  nextOccurrence,
  planOccurrences,
  type ScheduleTiming,
  timingProblem,
} from "../../sdk/schedule-times.js";
import { isTerminalStatus } from "../../sdk/task-status.js";
import type {
  Instance,
  NewInstance,
  Schedule,
  SubmitResult,
} from "../protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { specFromWire, specToWire } from "../protocol/wire.js";
import { isClusterStore } from "../store/cluster-store.js";
import type { Store, StoredInstance, StoredSchedule } from "../store/store.js";
import type { DaemonState } from "./daemon-options.js";
import { serviceError } from "./grpc-status.js";
import type { ModuleResolver } from "./module-resolver.js";

export interface SchedulerOptions {
  readonly store: Store;
  readonly modules: ModuleResolver;
  readonly state: DaemonState;
  readonly log: Logger;
  /** Creates instances as a submit does (idempotent on their ids); one result per instance. */
  readonly startInstances: (deployment: string, instances: NewInstance[]) => Promise<SubmitResult[]>;
  /** The newest row of an instance, or undefined. */
  readonly latest: (id: string) => Promise<StoredInstance | undefined>;
}

/** How often every schedule is read again from the store, whatever happened (a cluster's safety net). */
const RELOAD_MS = 30_000;

/**
 * Keeps the deployments' schedules and fires them: each occurrence starts one instance whose id
 * is derived from the schedule and the occurrence, so a daemon that fires it again (after a
 * restart, or another daemon of a cluster) makes no second one; the schedule's watermark then
 * moves by compare-and-set, so one daemon wins each occurrence. What fell in this daemon's
 * downtime follows the schedule's `catchUp`.
 */
export class Scheduler {
  readonly #o: SchedulerOptions;
  /** By deployment and name. */
  #schedules = new Map<string, StoredSchedule>();
  readonly #startedAt = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #reload: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  #passing = false;
  #passAgain = false;
  /** A fire of the last pass failed (the store was unreachable): the next try waits a little. */
  #failed = false;

  constructor(options: SchedulerOptions) {
    this.#o = options;
  }

  /** Reads every schedule and fires what is due (what the downtime missed, by `catchUp`). */
  async start(): Promise<void> {
    await this.#loadAll();
    const store = this.#o.store;
    if (isClusterStore(store)) {
      this.#unsubscribe = store.subscribe((event) => {
        if (event.kind === "schedules") void this.#loadAll().catch(() => undefined);
      });
    }
    this.#reload = setInterval(() => void this.#loadAll().catch(() => undefined), RELOAD_MS);
    this.#reload.unref();
    this.#pass();
  }

  close(): void {
    clearTimeout(this.#timer);
    clearInterval(this.#reload);
    this.#unsubscribe?.();
  }

  async list(deployment: string): Promise<Schedule[]> {
    return (await this.#o.store.listSchedules(deployment)).map((s) => this.#toWire(s));
  }

  /**
   * Creates or changes a schedule. Its state (watermark, last fire, paused unless given) is
   * kept when its timing is unchanged; a new timing counts from now.
   */
  async upsert(deployment: string, wire: Schedule | undefined): Promise<Schedule> {
    if (wire === undefined) throw invalid("the schedule is missing");
    const name = wire.name.trim();
    if (name === "") throw invalid("name: a schedule needs a non-empty name");
    const timing = { cron: wire.cron, timezone: wire.timezone, everyMs: wire.everyMs };
    const problem = timingProblem(timing);
    if (problem !== undefined) throw invalid(problem);
    if (wire.overlap !== "allow" && wire.overlap !== "skip")
      throw invalid('overlap: must be "allow" or "skip"');
    if (!["none", "latest", "all"].includes(wire.catchUp))
      throw invalid('catchUp: must be "none", "latest" or "all"');
    if (!isEncodedValue(wire.args)) throw invalid("args: not encoded by the numerous-tasks codec");
    const spec = wire.options === undefined ? undefined : specFromWire(wire.options);
    if (typeof spec === "string") throw invalid(spec);
    const module = await this.#moduleOf(deployment, wire);
    const now = Date.now();
    const existing = await this.#o.store.getSchedule(deployment, name);
    const sameTiming =
      existing !== undefined &&
      existing.cron === wire.cron &&
      (existing.timezone ?? undefined) === (wire.timezone ?? undefined) &&
      existing.everyMs === wire.everyMs;
    const schedule: StoredSchedule = {
      deploymentId: deployment,
      name,
      taskName: wire.taskName,
      module,
      args: wire.args,
      cron: wire.cron,
      timezone: wire.timezone,
      everyMs: wire.everyMs,
      overlap: wire.overlap,
      catchUp: wire.catchUp as StoredSchedule["catchUp"],
      spec: spec as RunSpec | undefined,
      paused: wire.paused ?? existing?.paused ?? false,
      anchorAt: sameTiming ? existing.anchorAt : now,
      handledThrough: sameTiming ? existing.handledThrough : now,
      lastFiredAt: existing?.lastFiredAt,
      lastInstanceId: existing?.lastInstanceId,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
    await this.#o.store.putSchedule(schedule);
    this.#changed(schedule);
    return this.#toWire(schedule);
  }

  /** Pauses or resumes; a resumed schedule fires from the next occurrence on. */
  async setPaused(deployment: string, name: string, paused: boolean): Promise<Schedule | undefined> {
    const existing = await this.#o.store.getSchedule(deployment, name);
    if (existing === undefined) return undefined;
    if (existing.paused === paused) return this.#toWire(existing);
    const now = Date.now();
    const schedule: StoredSchedule = {
      ...existing,
      paused,
      // What it would have fired while paused is not caught up.
      handledThrough: paused ? existing.handledThrough : Math.max(existing.handledThrough, now),
      updatedAt: now,
    };
    await this.#o.store.putSchedule(schedule);
    this.#changed(schedule);
    return this.#toWire(schedule);
  }

  async delete(deployment: string, name: string): Promise<boolean> {
    const found = await this.#o.store.deleteSchedule(deployment, name);
    if (found) {
      this.#schedules.delete(keyOf(deployment, name));
      this.#publish();
    }
    return found;
  }

  /** Starts one instance now, with a fresh id (it is no occurrence). */
  async trigger(deployment: string, name: string): Promise<Instance | undefined> {
    const schedule = await this.#o.store.getSchedule(deployment, name);
    if (schedule === undefined) return undefined;
    const [result] = await this.#o.startInstances(deployment, [
      newInstance(schedule, createInstanceId(), undefined),
    ]);
    if (result?.outcome?.$case === "instance") return result.outcome.value;
    throw serviceError(
      grpc.status.FAILED_PRECONDITION,
      result?.outcome?.$case === "error" ? result.outcome.value.message : "the instance was not started",
    );
  }

  async #moduleOf(deployment: string, wire: Schedule): Promise<string> {
    if (wire.module === "" && wire.moduleRelative === "") {
      const known = (await this.#o.store.listDefinitions(deployment)).find((d) => d.name === wire.taskName);
      if (known === undefined) {
        throw invalid(
          `task: the daemon knows no task named ${JSON.stringify(wire.taskName)} for this deployment; pass the task function (its module is then known) or run it once first`,
        );
      }
      return known.module;
    }
    const resolved = this.#o.modules.resolve(wire);
    if (resolved instanceof Error) throw invalid(`task: ${resolved.message}`);
    return resolved;
  }

  #changed(schedule: StoredSchedule): void {
    this.#schedules.set(keyOf(schedule.deploymentId, schedule.name), schedule);
    this.#publish();
    this.#pass();
  }

  #publish(): void {
    const store = this.#o.store;
    if (isClusterStore(store)) {
      store
        .publish({ kind: "schedules" })
        .catch((error) => this.#o.log.warn({ err: error }, "could not tell the cluster"));
    }
  }

  async #loadAll(): Promise<void> {
    const all = await this.#o.store.listSchedules();
    this.#schedules = new Map(all.map((s) => [keyOf(s.deploymentId, s.name), s]));
    this.#pass();
  }

  /** Fires what is due, then sleeps until the next occurrence. */
  #pass(): void {
    if (this.#passing) {
      this.#passAgain = true;
      return;
    }
    const state = this.#o.state;
    if (state.stopped || !state.accepting) return;
    this.#passing = true;
    void (async () => {
      this.#failed = false;
      do {
        this.#passAgain = false;
        const now = Date.now();
        // Every due schedule at once: their instances go to the store in one batch.
        const due = [...this.#schedules.values()].filter((schedule) => {
          const next = schedule.paused
            ? undefined
            : nextOccurrence(timingOf(schedule), schedule.handledThrough);
          return next !== undefined && next <= now;
        });
        await Promise.all(
          due.map((schedule) =>
            this.#fire(schedule, now).catch((error: unknown) => {
              this.#failed = true;
              this.#o.log.warn(
                { err: error, schedule: schedule.name },
                "could not fire a schedule; retrying",
              );
            }),
          ),
        );
      } while (this.#passAgain);
    })().finally(() => {
      this.#passing = false;
      this.#arm();
    });
  }

  #arm(): void {
    clearTimeout(this.#timer);
    if (this.#o.state.stopped || !this.#o.state.accepting) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const schedule of this.#schedules.values()) {
      if (schedule.paused) continue;
      const next = nextOccurrence(timingOf(schedule), schedule.handledThrough);
      if (next !== undefined && next < earliest) earliest = next;
    }
    if (!Number.isFinite(earliest)) return;
    // A failed fire is tried again soon, not at once; one that came due during the pass, at once.
    const wait = this.#failed ? Math.max(100, earliest - Date.now()) : Math.max(0, earliest - Date.now());
    this.#timer = setTimeout(() => this.#pass(), Math.min(wait, RELOAD_MS));
    this.#timer.unref();
  }

  async #fire(schedule: StoredSchedule, now: number): Promise<void> {
    const plan = planOccurrences(
      timingOf(schedule),
      schedule.handledThrough,
      now,
      schedule.catchUp,
      this.#startedAt,
    );
    let lastFiredAt = schedule.lastFiredAt;
    let lastInstanceId = schedule.lastInstanceId;
    let overlapped = 0;
    for (const at of plan.fire) {
      if (schedule.overlap === "skip" && lastInstanceId !== undefined) {
        const last = await this.#o.latest(lastInstanceId);
        if (last !== undefined && !isTerminalStatus(last.status)) {
          overlapped++;
          continue;
        }
      }
      const id = occurrenceInstanceId(schedule.deploymentId, schedule.name, at);
      const [result] = await this.#o.startInstances(schedule.deploymentId, [newInstance(schedule, id, at)]);
      if (result?.outcome?.$case !== "instance") {
        this.#o.log.warn(
          { schedule: schedule.name, occurrence: at, error: result?.outcome?.value },
          "a schedule's instance was refused",
        );
        continue;
      }
      lastFiredAt = at;
      lastInstanceId = id;
    }
    if (plan.missed.length > 0) {
      this.#o.log.info(
        {
          schedule: schedule.name,
          catchUp: schedule.catchUp,
          missed: plan.missed.length,
          fired: plan.missed.length - plan.skipped,
          firstMissed: plan.missed[0],
          lastMissed: plan.missed.at(-1),
        },
        "schedule missed occurrences while the daemon was down",
      );
    }
    if (overlapped > 0) {
      this.#o.log.info(
        { schedule: schedule.name, overlapped },
        "schedule skipped occurrences: the last instance still runs",
      );
    }
    const next = { handledThrough: plan.handledThrough, lastFiredAt, lastInstanceId };
    const moved = await this.#o.store.advanceSchedule(
      schedule.deploymentId,
      schedule.name,
      schedule.handledThrough,
      next,
    );
    const key = keyOf(schedule.deploymentId, schedule.name);
    if (moved) {
      if (this.#schedules.get(key) === schedule) this.#schedules.set(key, { ...schedule, ...next });
    } else {
      // Another daemon moved it first (or it changed): read it again.
      const fresh = await this.#o.store.getSchedule(schedule.deploymentId, schedule.name);
      if (fresh === undefined) this.#schedules.delete(key);
      else this.#schedules.set(key, fresh);
    }
  }

  #toWire(s: StoredSchedule): Schedule {
    const live = this.#schedules.get(keyOf(s.deploymentId, s.name)) ?? s;
    const current = live.updatedAt >= s.updatedAt && live.handledThrough >= s.handledThrough ? live : s;
    const next = current.paused ? undefined : nextOccurrence(timingOf(current), current.handledThrough);
    return {
      name: current.name,
      taskName: current.taskName,
      module: current.module,
      moduleRelative: "",
      args: current.args,
      cron: current.cron,
      timezone: current.timezone,
      everyMs: current.everyMs,
      overlap: current.overlap,
      catchUp: current.catchUp,
      options: current.spec === undefined ? undefined : specToWire(current.spec),
      paused: current.paused,
      nextFireAtMs: next ?? 0,
      lastFiredAtMs: current.lastFiredAt ?? 0,
      lastInstanceId: current.lastInstanceId ?? "",
      createdAtMs: current.createdAt,
      updatedAtMs: current.updatedAt,
    };
  }
}

function keyOf(deployment: string, name: string): string {
  return `${deployment}\u0000${name}`;
}

function timingOf(s: StoredSchedule): ScheduleTiming {
  return { cron: s.cron, timezone: s.timezone, everyMs: s.everyMs, anchorAt: s.anchorAt };
}

/** The instance of an occurrence at `at` (its `scheduledFor`), or of a trigger (`at` undefined). */
function newInstance(schedule: StoredSchedule, id: string, at: number | undefined): NewInstance {
  const spec: RunSpec = { ...schedule.spec, ...(at === undefined ? {} : { startAt: at }) };
  return {
    id,
    taskName: schedule.taskName,
    args: schedule.args,
    createdAtMs: Date.now(),
    module: schedule.module,
    moduleRelative: "",
    options: Object.keys(spec).length === 0 ? undefined : specToWire(spec),
  };
}

function invalid(message: string): grpc.ServiceError {
  return serviceError(grpc.status.INVALID_ARGUMENT, message);
}
