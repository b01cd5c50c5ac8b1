import { failures } from "../../sdk/failures.js";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { isEncodedValue } from "../../sdk/codec.js";
import type { TaskErrorInfo } from "../../sdk/errors.js";
import { definitionIdFor, isValidInstanceId } from "../../sdk/ids.js";
import { type TaskStatus, isTerminalStatus } from "../../sdk/task-status.js";
import type {
  InstanceChanges,
  ListDefinitionsResponse,
  LogLines,
  StreamLogsRequest,
  ListInstancesRequest,
  ListInstancesResponse,
  NewInstance,
  ScheduleNameRequest,
  SetSchedulePausedRequest,
  SubmitRequest,
  SubmitResponse,
  SubmitResult,
  UpsertScheduleRequest,
  WatchInstancesRequest,
} from "../protocol/generated/numerous/tasks/v1/tasks_pb.js";
import type { RunSpec } from "../../sdk/run-options.js";
import { checkTraceContext } from "../../sdk/tracing.js";
import {
  errorToWire,
  logStreamToWire,
  specFromWire,
  statusFromWire,
  storedToWire,
} from "../protocol/wire.js";
import { isClusterStore } from "../store/cluster-store.js";
import { runFields, type Store, type StoredInstance } from "../store/store.js";
import type { AccessControl } from "./access-control.js";
import type { Coordinator } from "./coordinator.js";
import type { DaemonState } from "./daemon-options.js";
import { serviceError, toStatus } from "./grpc-status.js";
import type { InstanceTable } from "./instance-table.js";
import type { LogKeeper } from "./log-keeper.js";
import { drained, streamLogs } from "./log-stream.js";
import type { ModuleResolver } from "./module-resolver.js";
import { chunkRows, nextPageSize, sizeOfRows } from "./row-size.js";
import type { RunQueue } from "./run-queue.js";
import type { Scheduler } from "./scheduler.js";
import type { WatchHub } from "./watch-hub.js";
import type { WorkloadTokens } from "./workload-token.js";

export interface ClientServiceOptions {
  readonly store: Store;
  readonly table: InstanceTable;
  readonly queue: RunQueue;
  readonly hub: WatchHub;
  readonly coordinator: Coordinator;
  readonly modules: ModuleResolver;
  readonly access: AccessControl;
  readonly tokens: WorkloadTokens;
  readonly state: DaemonState;
  readonly log: Logger;
  readonly maxMessageBytes: number;
  /** Schedules of the deployments; made after this service's options (it starts instances through them). */
  readonly scheduler: () => Scheduler;
  readonly logs: LogKeeper;
}

/** Rows a listing reads first; later reads are sized by what the first ones weighed. */
const LIST_FIRST_PAGE = 64;
const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;

/** The TaskService that clients call: submit, read, list, stop and watch instances. */
export function createClientService(o: ClientServiceOptions): grpc.UntypedServiceImplementation {
  /** The caller's deployment, or the status to refuse it with. */
  const authorize = (metadata: grpc.Metadata): string | grpc.ServiceError => {
    const header = metadata.get("authorization")[0];
    const deployment = metadata.get("x-numerous-deployment")[0];
    const access = o.access.check(
      typeof header === "string" ? header : undefined,
      typeof deployment === "string" ? deployment : undefined,
      // A workload of this daemon, calling as a client of its own deployment (a task running tasks).
      (token, wanted) => o.tokens.allowsDeployment(token, wanted),
    );
    if (access.ok) return access.deployment;
    return serviceError(
      access.reason === "unauthenticated" ? grpc.status.UNAUTHENTICATED : grpc.status.PERMISSION_DENIED,
      access.message,
    );
  };

  const unary =
    <Req, Res>(handler: (request: Req, deployment: string) => Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      const deployment = authorize(call.metadata);
      if (typeof deployment !== "string") {
        callback(deployment);
        return;
      }
      handler(call.request, deployment).then(
        (response) => callback(null, response),
        (error) => callback(toStatus(error)),
      );
    };

  return {
    submit: unary((request: SubmitRequest, deployment) => submit(o, request, deployment)),
    getInstance: unary(async (request: { id: string }, deployment) => {
      // An id no instance can have is not looked up (a NUL byte would make PostgreSQL fail).
      if (!isValidInstanceId(request.id)) return { instance: undefined };
      const row = await o.table.latest(request.id);
      return { instance: row && row.deploymentId === deployment ? storedToWire(row) : undefined };
    }),
    listInstances: unary((request: ListInstancesRequest, deployment) => list(o, request, deployment)),
    listDefinitions: unary(async (_request: unknown, deployment): Promise<ListDefinitionsResponse> => {
      const definitions = await o.store.listDefinitions(deployment);
      return { definitions: definitions.map(({ id, name }) => ({ id, name })) };
    }),
    stopInstance: unary(async (request: { id: string }, deployment) => ({
      found: isValidInstanceId(request.id) && (await stop(o, request.id, deployment)),
    })),
    upsertSchedule: unary(async (request: UpsertScheduleRequest, deployment) => ({
      schedule: await o.scheduler().upsert(deployment, request.schedule),
    })),
    listSchedules: unary(async (_request: unknown, deployment) => ({
      schedules: await o.scheduler().list(deployment),
    })),
    setSchedulePaused: unary(async (request: SetSchedulePausedRequest, deployment) => ({
      schedule: await o.scheduler().setPaused(deployment, request.name, request.paused),
    })),
    deleteSchedule: unary(async (request: ScheduleNameRequest, deployment) => ({
      found: await o.scheduler().delete(deployment, request.name),
    })),
    triggerSchedule: unary(async (request: ScheduleNameRequest, deployment) => ({
      instance: await o.scheduler().trigger(deployment, request.name),
    })),
    watchInstances: (call: grpc.ServerWritableStream<WatchInstancesRequest, InstanceChanges>) => {
      const deployment = authorize(call.metadata);
      if (typeof deployment !== "string") {
        call.emit("error", deployment);
        return;
      }
      try {
        o.hub.watch(call, deployment);
      } catch (error) {
        o.log.warn({ err: error }, "watch failed");
        call.emit("error", toStatus(error));
      }
    },
    streamLogs: (call: grpc.ServerWritableStream<StreamLogsRequest, LogLines>) => {
      const deployment = authorize(call.metadata);
      if (typeof deployment !== "string") {
        call.emit("error", deployment);
        return;
      }
      serveLogs(o, call, deployment).catch((error: unknown) => call.emit("error", toStatus(error)));
    },
  };
}

/** One StreamLogs call: the log stream's messages as LogLines, its end as the call's. */
async function serveLogs(
  o: ClientServiceOptions,
  call: grpc.ServerWritableStream<StreamLogsRequest, LogLines>,
  deployment: string,
): Promise<void> {
  const { store, table, logs, maxMessageBytes } = o;
  const abort = new AbortController();
  call.on("cancelled", () => abort.abort());
  const { id, follow, tail, afterCursor } = call.request;
  const end = await streamLogs(
    { store, table, logs, maxMessageBytes, clustered: isClusterStore(store) },
    { id, follow, tail, afterCursor },
    deployment,
    {
      signal: abort.signal,
      send: async (lines, cursor) => {
        const message = {
          lines: lines.map(({ atMs, stream, line }) => ({ atMs, stream: logStreamToWire(stream), line })),
          cursor,
        };
        if (!call.write(message)) await drained(call, abort.signal);
      },
    },
  );
  if (end === "not-found") {
    throw serviceError(grpc.status.NOT_FOUND, `no task instance with id ${JSON.stringify(id)}`);
  }
  if (end === "shutting-down") throw serviceError(grpc.status.UNAVAILABLE, "the daemon is shutting down");
  if (end === "ended") call.end();
}

/** Creates instances (idempotent on their ids); one result per instance, in order. */
export async function submit(
  o: ClientServiceOptions,
  request: SubmitRequest,
  deployment: string,
): Promise<SubmitResponse> {
  if (!o.state.accepting) throw serviceError(grpc.status.UNAVAILABLE, "the daemon is shutting down");
  if (request.instances.length === 0) return { results: [] };
  const ids = request.instances.map((instance) => instance.id).filter(isValidInstanceId);
  const existing = new Map<string, StoredInstance>();
  const missing: string[] = [];
  // A row this daemon has but may not have stored yet (a retried submit whose first answer was
  // lost while the store was down) is answered only once it is durable, like a new one.
  let unsaved = false;
  for (const id of ids) {
    const known = o.table.known(id);
    if (known) {
      existing.set(id, known);
      unsaved = true;
    } else missing.push(id);
  }
  for (const row of await o.store.getMany(missing)) existing.set(row.id, row);
  // Instances started by task name only (runTask in a process that did not define the task):
  // the module of the deployment's task of that name.
  let byName: Map<string, string> | undefined;
  if (request.instances.some(isByName)) {
    byName = new Map((await o.store.listDefinitions(deployment)).map((d) => [d.name, d.module]));
  }

  const results: SubmitResult[] = [];
  const created: string[] = [];
  for (const requested of request.instances) {
    let instance = requested;
    if (isByName(instance)) {
      const module = byName?.get(instance.taskName);
      if (module === undefined) {
        const error = failures.taskNotDefined(instance.taskName, "for this deployment");
        results.push({ outcome: { $case: "error", value: errorToWire(error) } });
        continue;
      }
      instance = { ...instance, module };
    }
    const spec = instance.options === undefined ? undefined : specFromWire(instance.options);
    const problem = typeof spec === "string" ? failures.taskInput(spec) : checkNewInstance(o, instance);
    if (problem !== undefined) {
      results.push({ outcome: { $case: "error", value: errorToWire(problem) } });
      continue;
    }
    const found = existing.get(instance.id);
    if (found !== undefined) {
      if (found.deploymentId !== deployment) {
        results.push({
          outcome: {
            $case: "error",
            value: errorToWire(failures.instanceIdTaken(instance.id)),
          },
        });
      } else {
        results.push({ outcome: { $case: "instance", value: storedToWire(found) } });
      }
      continue;
    }
    const row: StoredInstance = {
      id: instance.id,
      deploymentId: deployment,
      taskId: definitionIdFor(instance.taskName),
      taskName: instance.taskName,
      module: o.modules.resolve(instance) as string,
      args: instance.args,
      status: "pending",
      progress: 0,
      output: undefined,
      result: undefined,
      error: undefined,
      createdAt: instance.createdAtMs || Date.now(),
      startedAt: undefined,
      finishedAt: undefined,
      revision: 1,
      ...o.coordinator.numberNew(),
      owner: "",
      ...runFields(spec as RunSpec | undefined),
      traceContext: instance.traceContext,
    };
    existing.set(row.id, row);
    o.coordinator.created(row);
    o.table.insert(row);
    created.push(row.id);
    results.push({ outcome: { $case: "instance", value: storedToWire(row) } });
  }
  if (created.length === 0) {
    if (unsaved) await o.table.durable();
    return { results };
  }
  const stored = await o.table.durable();
  o.coordinator.saved(created);
  return {
    results: results.map((result) => {
      if (result.outcome?.$case !== "instance") return result;
      const row = stored.get(result.outcome.value.id);
      return row === undefined ? result : { outcome: { $case: "instance", value: storedToWire(row) } };
    }),
  };
}

function isByName(instance: NewInstance): boolean {
  return instance.module === "" && instance.moduleRelative === "";
}

function checkNewInstance(o: ClientServiceOptions, instance: NewInstance): TaskErrorInfo | undefined {
  if (!isValidInstanceId(instance.id)) {
    return failures.taskInput(
      `instance id ${JSON.stringify(instance.id)} is not 1 to 64 URL-safe characters`,
    );
  }
  if (instance.taskName.trim() === "") return failures.taskInput("the task name is empty");
  if (!isEncodedValue(instance.args))
    return failures.taskInput("the arguments are not encoded by the numerous-tasks codec");
  const badTrace = instance.traceContext === undefined ? undefined : checkTraceContext(instance.traceContext);
  if (badTrace !== undefined) return failures.taskInput(badTrace);
  const checked = o.modules.resolve(instance);
  if (checked instanceof Error) {
    return failures.taskNotFound(instance.taskName, checked.message);
  }
  return undefined;
}

async function list(
  o: ClientServiceOptions,
  request: ListInstancesRequest,
  deployment: string,
): Promise<ListInstancesResponse> {
  const limit = request.limit > 0 ? Math.min(request.limit, MAX_PAGE) : DEFAULT_PAGE;
  let afterPosition: number | undefined;
  if (request.cursor !== "") {
    const after = await o.table.latest(request.cursor);
    if (after === undefined || after.deploymentId !== deployment) {
      throw serviceError(
        grpc.status.INVALID_ARGUMENT,
        `cursor ${JSON.stringify(request.cursor)} is not an instance id of this deployment`,
      );
    }
    afterPosition = after.position;
  }
  const statuses: TaskStatus[] = [];
  for (const status of request.statuses) {
    const known = statusFromWire(status);
    if (known === undefined) throw serviceError(grpc.status.INVALID_ARGUMENT, `unknown status ${status}`);
    statuses.push(known);
  }
  // Read in pages sized by bytes: a page of large outputs stops at what one answer can carry,
  // rather than holding `limit` of them only to send a few.
  const budget = Math.floor(o.maxMessageBytes / 2);
  const rows: StoredInstance[] = [];
  let bytes = 0;
  let exhausted = false;
  let pageSize = Math.min(limit + 1, LIST_FIRST_PAGE);
  for (;;) {
    const want = Math.min(pageSize, limit + 1 - rows.length);
    const got = await o.store.list({
      deploymentId: deployment,
      task: request.task || undefined,
      statuses: statuses.length > 0 ? statuses : undefined,
      afterPosition: rows.at(-1)?.position ?? afterPosition,
      limit: want,
    });
    rows.push(...got);
    const gotBytes = sizeOfRows(got);
    bytes += gotBytes;
    if (got.length < want) exhausted = true;
    if (exhausted || rows.length > limit || bytes > budget) break;
    pageSize = nextPageSize(got.length, gotBytes, limit + 1);
  }
  let page = rows.slice(0, limit).map((row) => o.table.known(row.id) ?? row);
  let more = rows.length > limit || !exhausted;
  // A page of large outputs is cut short, not refused: the cursor picks up where it ends.
  const first = chunkRows(page, o.maxMessageBytes)[0] ?? [];
  if (first.length < page.length) {
    page = first;
    more = true;
  }
  return {
    instances: page.map(storedToWire),
    nextCursor: more ? (page.at(-1)?.id ?? "") : "",
  };
}

/** Stops an instance of `deployment`; false when it has none of that id. The console calls it too. */
export async function stop(o: ClientServiceOptions, id: string, deployment: string): Promise<boolean> {
  const active = o.table.get(id);
  if (active === undefined) {
    const row = await o.table.latest(id);
    if (row === undefined || row.deploymentId !== deployment) return false;
    if (!isTerminalStatus(row.status)) await o.coordinator.stopElsewhere(row);
    return true;
  }
  if (active.row.deploymentId !== deployment) return false;
  o.queue.stop(active);
  o.coordinator.stoppedHere(active);
  return true;
}
