import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { TaskStatus } from "../../sdk/task-status.js";
import type { StoredInstance } from "../store/store.js";

/** Options of {@link DaemonMetrics}. */
export interface DaemonMetricsOptions {
  /**
   * Distinct task names given a series of their own; later names share the label `other`, so a
   * daemon with ten thousand task names keeps a bounded number of series. Default 500.
   */
  readonly maxTaskNames?: number;
  /** Also Node's process metrics (CPU, memory, event loop lag) under the same prefix. Default true. */
  readonly processMetrics?: boolean;
}

/** What the gauges read when scraped; nothing is kept up to date for them between scrapes. */
export interface MetricSources {
  /** Instances held here, running and pending. */
  instances(): Iterable<{ readonly row: StoredInstance }>;
  /** WatchInstances streams open. */
  watchers(): number;
}

/** The label a task name beyond {@link DaemonMetricsOptions.maxTaskNames} is counted under. */
export const OTHER_TASKS = "other";
const DEFAULT_MAX_TASK_NAMES = 500;
const PREFIX = "numerous_tasks_";

/** From 5 ms to an hour: tasks range from quick calls to long jobs. */
const DURATION_BUCKETS = [0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60, 300, 900, 3600];
const COMMIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

/** One task's label sets, made once: counting is then a lookup and an add. */
interface TaskSeries {
  readonly task: { readonly task: string };
  readonly ended: Readonly<Record<"completed" | "failed" | "cancelled", { task: string; status: string }>>;
}

/**
 * A daemon's Prometheus metrics (SPEC §6), in a registry of its own. The daemon's parts call it
 * where instances change status and workloads start or die; the gauges are read at scrape time.
 * Every family is named `numerous_tasks_…`, and the only per-instance label is the task's name,
 * capped (see {@link DaemonMetricsOptions.maxTaskNames}).
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly #maxTaskNames: number;
  readonly #tasks = new Map<string, TaskSeries>();
  readonly #ended: Counter<"task" | "status">;
  readonly #retries: Counter<"task">;
  readonly #run: Histogram<"task">;
  readonly #wait: Histogram<"task">;
  readonly #workloadStarts: Counter;
  readonly #workloadCrashes: Counter<"task">;
  readonly #commit: Histogram;
  readonly #commitFailures: Counter;
  #leaseRenewals: Counter<"outcome"> | undefined;
  #other: TaskSeries | undefined;
  #sources: MetricSources | undefined;

  constructor(options: DaemonMetricsOptions = {}) {
    this.#maxTaskNames = options.maxTaskNames ?? DEFAULT_MAX_TASK_NAMES;
    const registers = [this.registry];
    this.#ended = new Counter({
      name: `${PREFIX}instances_ended_total`,
      help: "Instances that ended here, by task and final status (completed, failed, cancelled)",
      labelNames: ["task", "status"],
      registers,
    });
    this.#retries = new Counter({
      name: `${PREFIX}retries_total`,
      help: "Failed attempts that will be tried again, by task",
      labelNames: ["task"],
      registers,
    });
    this.#run = new Histogram({
      name: `${PREFIX}run_duration_seconds`,
      help: "How long each attempt ran, from its start to its end, by task",
      labelNames: ["task"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#wait = new Histogram({
      name: `${PREFIX}queue_wait_duration_seconds`,
      help: "How long each attempt waited to start once it could (after its delay or backoff), by task",
      labelNames: ["task"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#workloadStarts = new Counter({
      name: `${PREFIX}workload_starts_total`,
      help: "Workload processes started",
      registers,
    });
    this.#workloadCrashes = new Counter({
      name: `${PREFIX}workload_crashes_total`,
      help: "Workloads that exited or disconnected before reporting how their instance ended, by task",
      labelNames: ["task"],
      registers,
    });
    this.#commit = new Histogram({
      name: `${PREFIX}store_commit_duration_seconds`,
      help: "How long each write of a batch of changes to the store took",
      buckets: COMMIT_BUCKETS,
      registers,
    });
    this.#commitFailures = new Counter({
      name: `${PREFIX}store_commit_failures_total`,
      help: "Writes to the store that failed (they are retried)",
      registers,
    });
    const sources = () => this.#sources;
    new Gauge({
      name: `${PREFIX}instances_running`,
      help: "Instances running here now",
      registers,
      collect() {
        this.set(count(sources()?.instances(), "running"));
      },
    });
    new Gauge({
      name: `${PREFIX}instances_pending`,
      help: "Instances waiting to run here now (in a cluster: those this daemon claimed)",
      registers,
      collect() {
        this.set(count(sources()?.instances(), "pending"));
      },
    });
    new Gauge({
      name: `${PREFIX}watchers`,
      help: "Open WatchInstances streams",
      registers,
      collect() {
        this.set(sources()?.watchers() ?? 0);
      },
    });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
  }

  /** Where the gauges read from; set once the daemon's parts exist. */
  observe(sources: MetricSources): void {
    this.#sources = sources;
  }

  /** The text exposition format, and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** A held instance goes from `before` to `status` at `now` (epoch ms). */
  statusChanged(before: StoredInstance, status: TaskStatus, now: number): void {
    const series = this.#series(before.taskName);
    if (status === "running") {
      const readySince = Math.max(before.createdAt, before.readyAt);
      this.#wait.observe(series.task, Math.max(0, now - readySince) / 1000);
      return;
    }
    if (before.status === "running" && before.startedAt !== undefined) {
      this.#run.observe(series.task, Math.max(0, now - before.startedAt) / 1000);
    }
    if (status === "pending") {
      if (before.status === "running") this.#retries.inc(series.task);
      return;
    }
    this.#ended.inc(series.ended[status]);
  }

  /** Instances the store ended without passing through this daemon's table (a cluster's reaping or cancelling). */
  endedInStore(rows: Iterable<StoredInstance>): void {
    for (const row of rows) {
      const status = row.status;
      if (status === "completed" || status === "failed" || status === "cancelled") {
        this.#ended.inc(this.#series(row.taskName).ended[status]);
      }
    }
  }

  workloadStarted(): void {
    this.#workloadStarts.inc();
  }

  /** A workload died with `taskName`'s instance unfinished. */
  workloadCrashed(taskName: string): void {
    this.#workloadCrashes.inc(this.#series(taskName).task);
  }

  storeCommitted(seconds: number): void {
    this.#commit.observe(seconds);
  }

  storeCommitFailed(): void {
    this.#commitFailures.inc();
  }

  /** A cluster daemon's lease renewal: renewed, failed (the store was not reached), or lost (reaped). */
  leaseRenewal(outcome: "renewed" | "failed" | "lost"): void {
    this.#leaseRenewals ??= new Counter({
      name: `${PREFIX}lease_renewals_total`,
      help: "This cluster daemon's lease renewals, by outcome: renewed, failed (store not reached), lost (reaped)",
      labelNames: ["outcome"],
      registers: [this.registry],
    });
    this.#leaseRenewals.inc({ outcome });
  }

  #series(taskName: string): TaskSeries {
    const known = this.#tasks.get(taskName);
    if (known !== undefined) return known;
    // Past the cap, names are not remembered one by one: they share one series.
    if (this.#tasks.size >= this.#maxTaskNames) return (this.#other ??= taskSeries(OTHER_TASKS));
    const series = taskSeries(taskName);
    this.#tasks.set(taskName, series);
    return series;
  }
}

function taskSeries(task: string): TaskSeries {
  return {
    task: { task },
    ended: {
      completed: { task, status: "completed" },
      failed: { task, status: "failed" },
      cancelled: { task, status: "cancelled" },
    },
  };
}

function count(
  instances: Iterable<{ readonly row: StoredInstance }> | undefined,
  status: TaskStatus,
): number {
  let n = 0;
  if (instances !== undefined) for (const active of instances) if (active.row.status === status) n++;
  return n;
}
