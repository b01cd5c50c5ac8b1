import { isAbsolute, relative } from "node:path";
import type { NumerousConfig } from "../../sdk/config.js";
import {
  ExecutorUnavailableError,
  type TaskError,
  type TaskErrorInfo,
  toErrorInfo,
} from "../../sdk/errors.js";
import { failures } from "../../sdk/failures.js";
import {
  type Executor,
  type InstancePage,
  type InstanceQuery,
  type InstanceSnapshot,
  type LogsOptions,
  type SubmitRequest,
  type TaskDefinition,
  type TaskLogLine,
  listLimit,
} from "../../sdk/executor.js";
import { isTerminalStatus } from "../../sdk/task-status.js";
import type { GrpcConnection, WatchStream } from "./grpc-connection.js";
import type { ScheduleExecutor, ScheduleRecord, ScheduleSnapshot } from "../../sdk/schedules.js";
import { doublingDelay } from "../doubling-delay.js";

type Listener = (snapshot: InstanceSnapshot) => void;

/** A snapshot made on this side (the daemon never saw the instance): nothing may replace it. */
const FINAL_REVISION = Number.MAX_SAFE_INTEGER;
/** How long a call rides out an unreachable daemon (one that restarts is back in moments). */
const UNAVAILABLE_RETRY_MS = 3_000;
/**
 * How long a submit is retried, with the same ids, while a daemon that answers says it is
 * unavailable (its store is restarting, say). Safe: submit is idempotent on the client-made id.
 */
const SUBMIT_RETRY_MS = 30_000;
/** How long a broken watch stream tries to resume before its handles fail as unavailable. */
const RECONNECT_WINDOW_MS = 60_000;
const MAX_BATCH = 1000;
const MAX_BATCH_BYTES = 3 * 1024 * 1024;

/** Options of {@link PlatformExecutor}, a subset of the environment's config. */
export type PlatformExecutorOptions = Pick<
  NumerousConfig,
  "address" | "accessToken" | "deploymentId" | "tlsCaFile"
>;

/**
 * The SDK side of the platform daemon. Calls made in one turn of the event loop travel in one
 * Submit; every handle follows one shared watch stream that resumes from the last sequence it
 * saw after a reconnect. gRPC stays behind a lazily loaded connection module.
 */
export class PlatformExecutor implements Executor, ScheduleExecutor {
  readonly #options: PlatformExecutorOptions;
  #connection: Promise<GrpcConnection> | undefined;
  readonly #listeners = new Map<string, Listener[]>();
  /** Ids submitted here whose Submit has not answered yet: their handles need no catch-up. */
  readonly #inflight = new Set<string>();
  #batch: SubmitRequest[] = [];
  #batchScheduled = false;
  readonly #sending = new Set<Promise<void>>();
  #stream: WatchStream | undefined;
  #streamReady: Promise<void> | undefined;
  #sequence = -1;
  #closed = false;

  constructor(options: PlatformExecutorOptions) {
    this.#options = options;
  }

  /** The deployment: idempotency keys are scoped to it. */
  get namespace(): string {
    return this.#options.deploymentId ?? "";
  }

  submit(request: SubmitRequest): InstanceSnapshot {
    this.#inflight.add(request.id);
    this.#batch.push(request);
    if (!this.#batchScheduled) {
      this.#batchScheduled = true;
      setImmediate(() => this.#flushBatch());
    }
    return {
      id: request.id,
      taskId: request.taskId,
      taskName: request.taskName,
      status: "pending",
      progress: 0,
      createdAt: request.createdAt,
      revision: 0,
      spec: request.spec,
    };
  }

  async get(id: string): Promise<InstanceSnapshot | undefined> {
    await this.#submitted();
    return this.#call((connection) => connection.get(id));
  }

  async list(query: InstanceQuery): Promise<InstancePage> {
    await this.#submitted();
    // The daemon cuts a page short where its instances carry large outputs; the caller gets as
    // many as it asked for all the same, so "fewer than the limit" still means the last page.
    const limit = listLimit(query);
    const instances: InstanceSnapshot[] = [];
    let cursor = query.cursor;
    for (;;) {
      const page = await this.#call((connection) =>
        connection.list({ ...query, limit: limit - instances.length, cursor }),
      );
      instances.push(...page.instances);
      if (page.nextCursor === undefined || instances.length >= limit)
        return { instances, nextCursor: page.nextCursor };
      cursor = page.nextCursor;
    }
  }

  async listDefinitions(): Promise<readonly TaskDefinition[]> {
    await this.#submitted();
    return this.#call((connection) => connection.listDefinitions());
  }

  async stop(id: string): Promise<boolean> {
    await this.#submitted();
    return this.#call((connection) => connection.stop(id));
  }

  async upsertSchedule(record: ScheduleRecord): Promise<ScheduleSnapshot> {
    return this.#call((connection) => connection.upsertSchedule(record));
  }

  async listSchedules(): Promise<readonly ScheduleSnapshot[]> {
    return this.#call((connection) => connection.listSchedules());
  }

  async setSchedulePaused(name: string, paused: boolean): Promise<ScheduleSnapshot | undefined> {
    return this.#call((connection) => connection.setSchedulePaused(name, paused));
  }

  async deleteSchedule(name: string): Promise<boolean> {
    return this.#call((connection) => connection.deleteSchedule(name));
  }

  async triggerSchedule(name: string): Promise<InstanceSnapshot | undefined> {
    return this.#call((connection) => connection.triggerSchedule(name));
  }

  logs(id: string, options: LogsOptions = {}): AsyncIterable<TaskLogLine> {
    return this.#logs(id, options);
  }

  /**
   * Reads the StreamLogs stream; a follow that the daemon's restart (or a broken connection)
   * cuts resumes after the last message it got, within the watch stream's reconnect window.
   */
  async *#logs(id: string, options: LogsOptions): AsyncGenerator<TaskLogLine, void> {
    const { follow = false, tail, signal } = options;
    signal?.throwIfAborted();
    await this.#submitted();
    const connection = await this.#connect();
    let cursor = 0;
    let started = false;
    let retryUntil = Date.now() + UNAVAILABLE_RETRY_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        const stream = connection.streamLogs({
          id,
          follow,
          tail: started ? undefined : tail,
          afterCursor: cursor,
          signal,
        });
        for await (const message of stream) {
          started = true;
          retryUntil = Date.now() + RECONNECT_WINDOW_MS;
          cursor = message.cursor;
          for (const line of message.lines) yield line;
        }
        signal?.throwIfAborted();
        return;
      } catch (thrown) {
        signal?.throwIfAborted();
        const error = thrown as TaskError;
        if (error.code !== "EXECUTOR_UNAVAILABLE" || Date.now() >= retryUntil || this.#closed) throw thrown;
        await new Promise((resolve) => setTimeout(resolve, doublingDelay(attempt + 1, 50, 500)));
      }
    }
  }

  /** Retries while the daemon is unavailable, as a submit does, then gives up with the error. */
  async #call<T>(call: (connection: GrpcConnection) => Promise<T>): Promise<T> {
    const connection = await this.#connect();
    const deadline = Date.now() + UNAVAILABLE_RETRY_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        return await call(connection);
      } catch (thrown) {
        if ((thrown as TaskError).code !== "EXECUTOR_UNAVAILABLE" || Date.now() >= deadline || this.#closed)
          throw thrown;
        await new Promise((resolve) => setTimeout(resolve, doublingDelay(attempt + 1, 50, 500)));
      }
    }
  }

  #flushBatch(): void {
    this.#batchScheduled = false;
    const batch = this.#batch;
    if (batch.length === 0) return;
    this.#batch = [];
    const sending = this.#sendBatch(batch);
    this.#sending.add(sending);
    void sending.finally(() => this.#sending.delete(sending));
  }

  /** Calls made here before this one reached the daemon first: a stop right after a call lands. */
  async #submitted(): Promise<void> {
    if (this.#inflight.size === 0) return;
    this.#flushBatch();
    await Promise.all([...this.#sending]);
  }

  watch(id: string, afterRevision: number, listener: Listener): () => void {
    const list = this.#listeners.get(id);
    if (list) list.push(listener);
    else this.#listeners.set(id, [listener]);
    const ready = this.#ensureStream();
    if (!this.#inflight.has(id)) {
      // The handle's snapshot may be older than changes the stream already passed on.
      void ready
        .then(() => this.#connect())
        .then((connection) => connection.get(id))
        .then((snapshot) => {
          if (snapshot !== undefined && snapshot.revision > afterRevision) this.#deliver(snapshot);
        })
        .catch(() => {});
    }
    return () => this.#removeListener(id, listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#stream?.cancel();
    this.#stream = undefined;
    (await this.#connection)?.close();
  }

  #connect(): Promise<GrpcConnection> {
    this.#connection ??= import("./grpc-connection.js").then(
      ({ GrpcConnection }) => new GrpcConnection(this.#options),
    );
    return this.#connection;
  }

  async #sendBatch(batch: SubmitRequest[]): Promise<void> {
    // A daemon the watch stream could not reach in the retry time gets no second wait here.
    const reached = await this.#ensureStream().then(
      () => true,
      () => false,
    );
    const connection = await this.#connect();
    for (let i = 0; i < batch.length; ) {
      let bytes = 0;
      let end = i;
      while (
        end < batch.length &&
        end - i < MAX_BATCH &&
        (end === i || bytes + (batch[end] as SubmitRequest).args.length < MAX_BATCH_BYTES)
      ) {
        bytes += (batch[end] as SubmitRequest).args.length;
        end++;
      }
      await this.#submitChunk(
        connection,
        batch.slice(i, end),
        reached || this.#reachedDaemon ? Date.now() + SUBMIT_RETRY_MS : 0,
      );
      i = end;
    }
  }

  async #submitChunk(connection: GrpcConnection, chunk: SubmitRequest[], deadline: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        const results = await connection.submit(
          chunk.map((r) => ({
            id: r.id,
            taskName: r.taskName,
            args: r.args,
            createdAtMs: r.createdAt,
            module: r.module,
            moduleRelative: relativeToCwd(r.module),
            spec: r.spec,
            traceContext: r.traceContext,
          })),
        );
        chunk.forEach((request, index) => {
          this.#inflight.delete(request.id);
          const result = results[index];
          if (result !== undefined && "snapshot" in result) this.#deliver(result.snapshot);
          else this.#failLocally(request, result?.error ?? failures.noSubmitResult());
        });
        return;
      } catch (thrown) {
        const error = thrown as TaskError;
        if (error.code === "TASK_INPUT" && chunk.length > 1) {
          // Too large together: try the halves, so one oversized instance fails alone.
          const half = Math.ceil(chunk.length / 2);
          await this.#submitChunk(connection, chunk.slice(0, half), deadline);
          await this.#submitChunk(connection, chunk.slice(half), deadline);
          return;
        }
        if (error.code === "EXECUTOR_UNAVAILABLE" && Date.now() < deadline && !this.#closed) {
          await new Promise((resolve) => setTimeout(resolve, doublingDelay(attempt + 1, 50, 500)));
          continue;
        }
        for (const request of chunk) {
          this.#inflight.delete(request.id);
          this.#failLocally(request, toErrorInfo(error));
        }
        return;
      }
    }
  }

  #failLocally(request: SubmitRequest, error: TaskErrorInfo): void {
    this.#deliver({
      id: request.id,
      taskId: request.taskId,
      taskName: request.taskName,
      status: "failed",
      progress: 0,
      error,
      createdAt: request.createdAt,
      finishedAt: Date.now(),
      revision: FINAL_REVISION,
    });
  }

  #deliver(snapshot: InstanceSnapshot): void {
    const listeners = this.#listeners.get(snapshot.id);
    if (listeners === undefined) return;
    if (isTerminalStatus(snapshot.status)) this.#listeners.delete(snapshot.id);
    for (const listener of [...listeners]) listener(snapshot);
    if (this.#listeners.size === 0) this.#closeIdleStream();
  }

  #removeListener(id: string, listener: Listener): void {
    const listeners = this.#listeners.get(id);
    if (listeners === undefined) return;
    const index = listeners.indexOf(listener);
    if (index >= 0) listeners.splice(index, 1);
    if (listeners.length === 0) this.#listeners.delete(id);
    if (this.#listeners.size === 0) this.#closeIdleStream();
  }

  /** With nobody listening the stream would only keep the process alive. */
  #closeIdleStream(): void {
    setImmediate(() => {
      if (this.#listeners.size > 0 || this.#inflight.size > 0 || this.#stream === undefined) return;
      this.#stream.cancel();
      this.#stream = undefined;
      this.#streamReady = undefined;
      this.#sequence = -1;
    });
  }

  /** Opens the watch stream once; resolves when it is live, so no change after that is missed. */
  /**
   * Once a watch stream of this executor went live: a call that cannot get through later is a
   * daemon restarting or a connection broken, and a submit whose answer was lost is retried with
   * its id rather than failed while the daemon may be running it.
   */
  #reachedDaemon = false;

  #ensureStream(): Promise<void> {
    if (this.#streamReady !== undefined) return this.#streamReady;
    this.#streamReady = new Promise<void>((resolve, reject) => {
      let settled = false;
      const open = (retryUntil: number) => {
        void this.#connect().then((connection) => {
          if (this.#closed) return;
          const from = this.#sequence < 0 ? ({ fromNow: true } as const) : { afterSequence: this.#sequence };
          const stream = connection.watch(
            from,
            (sequence, snapshots) => {
              stream.live = true;
              this.#reachedDaemon = true;
              this.#sequence = Math.max(this.#sequence, sequence);
              if (!settled) {
                settled = true;
                resolve();
              }
              for (const snapshot of snapshots) this.#deliver(snapshot);
            },
            (error) => {
              if (this.#stream !== stream || this.#closed || error === undefined) return;
              this.#stream = undefined;
              // A refused token will not get better by waiting; a daemon that stays away for
              // the whole window is given up, so no handle waits forever.
              // A stream that was live starts a new window; one that never got going keeps its own.
              const deadline = stream.live ? Date.now() + RECONNECT_WINDOW_MS : retryUntil;
              if (error.code === "EXECUTOR_CONFIG" || Date.now() > deadline) {
                this.#streamReady = undefined;
                if (!settled) {
                  settled = true;
                  reject(error);
                }
                this.#failWatchers(error);
                return;
              }
              // The daemon restarted or the connection broke: resume where we were.
              setTimeout(() => open(deadline), 100);
            },
          );
          this.#stream = stream;
        });
      };
      // A daemon this executor has reached before is known to exist: it is given the patience of
      // a restart, not the short wait that tells a user quickly that nothing listens there.
      open(Date.now() + (this.#reachedDaemon ? SUBMIT_RETRY_MS : UNAVAILABLE_RETRY_MS));
    });
    return this.#streamReady;
  }

  /** Handles of instances we cannot learn about end with the reason, rather than hang. */
  #failWatchers(error: TaskError): void {
    if (!(error instanceof ExecutorUnavailableError) && error.code !== "EXECUTOR_CONFIG") return;
    for (const id of [...this.#listeners.keys()]) {
      if (this.#inflight.has(id)) continue;
      const listeners = this.#listeners.get(id);
      this.#listeners.delete(id);
      for (const listener of listeners ?? []) {
        listener({
          id,
          taskId: "",
          taskName: "",
          status: "failed",
          progress: 0,
          error: toErrorInfo(error),
          createdAt: Date.now(),
          finishedAt: Date.now(),
          revision: FINAL_REVISION,
        });
      }
    }
  }
}

const relativeCache = new Map<string, string>();

/** The module's path relative to this process's working directory, or "" when outside it. */
function relativeToCwd(module: string): string {
  let rel = relativeCache.get(module);
  if (rel === undefined) {
    rel = isAbsolute(module) ? relative(process.cwd(), module) : "";
    if (rel.startsWith("..") || isAbsolute(rel)) rel = "";
    relativeCache.set(module, rel);
  }
  return rel;
}
