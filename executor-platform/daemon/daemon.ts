import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, lstatSync, realpathSync, unlinkSync } from "node:fs";
import { hostname } from "node:os";
import { type Socket, connect } from "node:net";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { definitionIdFor, isValidInstanceId } from "../../sdk/ids.js";
import type { TaskErrorInfo } from "../../sdk/errors.js";
import { isEncodedValue } from "../../sdk/codec.js";
import { type TaskStatus, isTerminalStatus } from "../../sdk/task-status.js";
import {
  type DaemonMessage,
  type Finished,
  type Hello,
  type Instance,
  type InstanceChanges,
  type ListDefinitionsResponse,
  type ListInstancesRequest,
  type ListInstancesResponse,
  type NewInstance,
  type SubmitRequest,
  type SubmitResponse,
  type SubmitResult,
  TaskServiceService,
  type WatchInstancesRequest,
  type WorkloadMessage,
  WorkloadServiceService,
} from "../protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { AccessControl, DEFAULT_DEPLOYMENT } from "./access-control.js";
import { type ClusterEvent, type ClusterStore, isClusterStore } from "../store/cluster-store.js";
import type { Store, StoredDefinition, StoredInstance } from "../store/store.js";
import { HealthService } from "../protocol/generated/grpc/health/v1/health_pb.js";
import { createHealthService } from "./health-service.js";
import { TailBuffer } from "./tail-buffer.js";
import { errorFromWire, errorToWire, statusFromWire, storedToWire } from "../protocol/wire.js";
import {
  type WorkloadCall,
  type WorkloadSocketServer,
  createWorkloadSocketServer,
} from "./workload-socket.js";
import { WorkloadTokens } from "./workload-token.js";

/** Options of {@link createDaemon}. */
export interface DaemonOptions {
  readonly store: Store;
  /** Where the daemon keeps its workload secret. */
  readonly dataDir: string;
  /** Modules outside it are never imported. */
  readonly appRoot: string;
  /** How many instances run at once. Default 4. */
  readonly concurrency?: number;
  /** How long a stopped task may ignore the stop before its workload is killed. Default 10 s. */
  readonly stopGraceMs?: number;
  /** Largest message either service accepts. Default 4 MiB. */
  readonly maxMessageBytes?: number;
  /**
   * A connection with no call open for this long is closed (the client reconnects when it next
   * calls). It also frees a connection that broke in a way that left it open: grpc-js stops
   * reading one whose request headers were too large, and would keep it forever. Default 60 s.
   */
  readonly connectionIdleMs?: number;
  /** `process`: one OS process per instance (default). `pool`: warm processes, reused. */
  readonly workloadMode?: "process" | "pool";
  /** After a restart, how long a running instance's workload has to reconnect. Default 10 s. */
  readonly reconnectWindowMs?: number;
  /** On SIGTERM, how long running instances may take to finish before the daemon exits. */
  readonly shutdownGraceMs?: number;
  /** Which tokens may call, for which deployments. Default: anyone (loopback only). */
  readonly accessControl?: AccessControl;
  /** Serve TLS with this certificate chain and key (PEM). */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
  /** This daemon's name in a cluster (a shared store). Default: host, pid and a random part. */
  readonly owner?: string;
  /** Shared store: how long a daemon's lease lasts without renewal. Default 10 s. */
  readonly leaseMs?: number;
  /** Called when the daemon must stop at once (it lost its lease to the cluster). */
  readonly onFatal?: (reason: string) => void;
  readonly logger: Logger;
  /** Extra environment for workloads. */
  readonly workloadEnv?: Readonly<Record<string, string>>;
}

/** A running daemon. */
export interface Daemon {
  /** Binds (`127.0.0.1:0` picks a free port) and starts; resolves the bound address. */
  listen(address: string): Promise<string>;
  /** Stops taking work, lets running instances finish within the grace, then closes. */
  shutdown(): Promise<void>;
}

interface Active {
  row: StoredInstance;
  /** It counts against the concurrency: from the moment its workload is started or claimed. */
  holdsSlot: boolean;
  worker: Worker | undefined;
  stopTimer: NodeJS.Timeout | undefined;
  stopRequested: boolean;
  orphanTimer: NodeJS.Timeout | undefined;
}

interface Worker {
  readonly serial: number;
  readonly pool: boolean;
  readonly child: ChildProcess | undefined;
  /** The process, also of a workload that reattached after a restart (it has no child handle). */
  readonly pid: number | undefined;
  readonly tail: TailBuffer;
  call: WorkloadCall | undefined;
  /** The instance it runs now. */
  instanceId: string | undefined;
  /** A process-mode worker's only instance, to start once it says hello. */
  readonly startFor: string | undefined;
  gone: boolean;
}

/**
 * A WatchInstances stream. It is live while it keeps up: each saved change is written to it as
 * it is broadcast. A stream whose client stops reading lags instead: the daemon keeps nothing
 * for it but where it got to, and once the stream drains it catches up from the store, a page at
 * a time, as a client resuming after a cut would. So a watcher that never reads costs the daemon
 * about one message in flight, never a copy of every change.
 */
interface Watcher {
  readonly deploymentId: string;
  readonly ids: ReadonlySet<string> | undefined;
  readonly call: grpc.ServerWritableStream<WatchInstancesRequest, InstanceChanges>;
  /** The last resume point written: every matching change up to it has been sent. */
  sent: number;
  /** Where a catch-up reads on from. */
  cursor: number;
  /** Bytes written that the connection has not taken yet. */
  inFlight: number;
  /** Catching up from the store (or waiting to drain before it can). */
  lagging: boolean;
  /** A matching change was broadcast while lagging: the catch-up must look again. */
  missed: boolean;
  closed: boolean;
  /** Wakes the catch-up when everything in flight is taken, or the stream closed. */
  wake: (() => void) | undefined;
}

/** Rows read per store page while a lagging watcher catches up: at most, and to begin with. */
const CATCH_UP_PAGE = 200;
const CATCH_UP_FIRST_PAGE = 16;
/** The page size adapts so that a page holds about this much: rows with large outputs come fewer at a time. */
const CATCH_UP_PAGE_BYTES = 1024 * 1024;
/** A live watcher with more than this written and not yet taken by its connection lags instead. */
const WATCHER_IN_FLIGHT_BYTES = 1024 * 1024;

/** The next page size after a page of `rows` rows that came to `bytes`. */
function nextPageSize(rows: number, bytes: number, max = CATCH_UP_PAGE): number {
  const perRow = Math.max(1, bytes / Math.max(1, rows));
  return Math.max(1, Math.min(max, Math.floor(CATCH_UP_PAGE_BYTES / perRow)));
}

/** Rows a listing reads first; later reads are sized by what the first ones weighed. */
const LIST_FIRST_PAGE = 64;

type ResolvedOptions = Required<
  Omit<DaemonOptions, "accessControl" | "workloadEnv" | "tls" | "owner" | "onFatal">
> &
  DaemonOptions;

/** Daemon settings a workload must not inherit. */
const DAEMON_SECRETS = [
  "NUMEROUS_EXECUTOR_TOKEN",
  "NUMEROUS_EXECUTOR_TOKENS",
  "NUMEROUS_EXECUTOR_TOKENS_FILE",
  "NUMEROUS_EXECUTOR_TLS_KEY",
  "NUMEROUS_EXECUTOR_STORE",
];
const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;

/** Builds the platform executor's daemon over a store. */
export async function createDaemon(options: DaemonOptions): Promise<Daemon> {
  const daemon = new DaemonImpl(options);
  await daemon.recover();
  return daemon;
}

class DaemonImpl implements Daemon {
  readonly #o: ResolvedOptions;
  readonly #log: Logger;
  readonly #store: Store;
  readonly #tokens: WorkloadTokens;
  readonly #appRoot: string;
  readonly #server: grpc.Server;
  readonly #active = new Map<string, Active>();
  readonly #queue: string[] = [];
  #queueHead = 0;
  #running = 0;
  #sequence = 0;
  #position = 0;
  readonly #dirty = new Map<string, StoredInstance>();
  readonly #dirtyDefinitions = new Map<string, StoredDefinition>();
  #flushScheduled = false;
  #flushing: Promise<void> | undefined;
  #flushWaiters: Array<{
    resolve: (stored: ReadonlyMap<string, StoredInstance>) => void;
    reject: (error: unknown) => void;
  }> = [];
  readonly #watchers = new Set<Watcher>();
  readonly #workers = new Set<Worker>();
  readonly #idleWorkers: Worker[] = [];
  #workerSerial = 0;
  #address = "";
  #accepting = true;
  /** Set once shutdown has written its last: nothing after it is recorded. */
  #stopped = false;
  readonly #moduleChecks = new Map<string, string>();
  readonly #knownDefinitions = new Set<string>();
  #idleWaiters: Array<() => void> = [];
  readonly #healthListeners = new Set<() => void>();
  readonly #access: AccessControl;
  /** Set when several daemons share the store. */
  readonly #cluster: ClusterStore | undefined;
  readonly #owner: string;
  /** Where workloads reach this daemon: a private unix socket in the data directory. */
  #workloadAddress = "";
  /** The framed workload socket's path, "" when workloads use gRPC. */
  #framesSocket = "";
  #framesServer: WorkloadSocketServer | undefined;
  #claiming = false;
  #claimAgain = false;
  #fetching: Promise<void> | undefined;
  #fetchAgain = false;
  /** Cluster: the highest sequence fetched from the store and passed to watchers. */
  #fetched = 0;
  /** Cluster: sequences this daemon saved and already broadcast, so a fetch skips them. */
  readonly #ownSequences = new Set<number>();
  readonly #timers: NodeJS.Timeout[] = [];
  /** The highest sequence passed to watchers. */
  #shownSequence = 0;
  #unsubscribe: (() => void) | undefined;

  constructor(options: DaemonOptions) {
    this.#o = {
      concurrency: 4,
      stopGraceMs: 10_000,
      maxMessageBytes: 4 * 1024 * 1024,
      connectionIdleMs: 60_000,
      workloadMode: "process",
      reconnectWindowMs: 10_000,
      shutdownGraceMs: 10_000,
      leaseMs: 10_000,
      ...options,
    };
    this.#log = options.logger;
    this.#store = options.store;
    this.#cluster = isClusterStore(options.store) ? options.store : undefined;
    this.#owner = options.owner ?? `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    this.#access = options.accessControl ?? new AccessControl([]);
    this.#tokens = WorkloadTokens.fromDataDir(options.dataDir);
    this.#appRoot = realpathSync(resolve(options.appRoot));
    this.#server = new grpc.Server({
      "grpc.max_receive_message_length": this.#o.maxMessageBytes,
      "grpc.max_send_message_length": this.#o.maxMessageBytes,
      "grpc.max_connection_idle_ms": this.#o.connectionIdleMs,
    });
    this.#server.addService(TaskServiceService, this.#taskService());
    this.#server.addService(
      HealthService,
      createHealthService({
        serving: () => this.#accepting && this.#address !== "",
        onChange: (listener) => {
          this.#healthListeners.add(listener);
          return () => this.#healthListeners.delete(listener);
        },
      }),
    );
    this.#server.addService(WorkloadServiceService, {
      connect: (call: grpc.ServerDuplexStream<WorkloadMessage, DaemonMessage>) => this.#onWorkload(call),
    });
  }

  /** Takes up what a previous run left: pending instances run, running ones wait for their workload. */
  async recover(): Promise<void> {
    if (this.#cluster !== undefined) {
      // A daemon of a cluster starts afresh under a new name; what an earlier run held is
      // reaped by the others once its lease runs out.
      this.#sequence = this.#fetched = this.#shownSequence = await this.#cluster.currentSequence();
      await this.#cluster.heartbeat(this.#owner, this.#o.leaseMs);
      return;
    }
    const counters = await this.#store.counters();
    this.#sequence = this.#shownSequence = counters.sequence;
    this.#position = counters.position;
    const unfinished = await this.#store.unfinished();
    let orphans = 0;
    for (const row of unfinished) {
      const active: Active = {
        row,
        worker: undefined,
        stopTimer: undefined,
        stopRequested: false,
        orphanTimer: undefined,
        holdsSlot: false,
      };
      this.#active.set(row.id, active);
      if (row.status === "pending") {
        this.#queue.push(row.id);
      } else {
        orphans++;
        this.#running++;
        active.holdsSlot = true;
        active.orphanTimer = setTimeout(() => {
          if (active.worker === undefined && !isTerminalStatus(active.row.status)) {
            this.#finish(active, "failed", {
              error: {
                name: "WorkloadLostError",
                message: `the workload was lost: the daemon restarted and the workload did not reconnect within ${this.#o.reconnectWindowMs} ms`,
              },
            });
          }
        }, this.#o.reconnectWindowMs);
      }
    }
    if (unfinished.length > 0) {
      this.#log.info(
        { pending: unfinished.length - orphans, running: orphans },
        "recovered unfinished instances",
      );
    }
  }

  async listen(address: string): Promise<string> {
    if (address.startsWith("unix:"))
      await removeStaleSocket(address.slice("unix:".length).replace(/^\/\//, ""));
    const credentials = this.#o.tls
      ? grpc.ServerCredentials.createSsl(
          null,
          [{ cert_chain: this.#o.tls.cert, private_key: this.#o.tls.key }],
          false,
        )
      : grpc.ServerCredentials.createInsecure();
    const port = await this.#bind(address, credentials);
    this.#address = address.startsWith("unix:") ? address : address.replace(/:\d+$/, `:${port}`);
    // Workloads talk to this daemon over a socket only this machine sees, with no TLS to set up;
    // it stays at one path across restarts, so running workloads find the next daemon.
    // Two sockets: gRPC for the SDK inside a task (a task may run tasks), and the framed workload
    // protocol, which spares each workload process loading gRPC.
    const socket = join(this.#o.dataDir, "workloads.sock");
    const framesSocket = join(this.#o.dataDir, "workload-frames.sock");
    if (framesSocket.length < 100) {
      await removeStaleSocket(socket);
      await this.#bind(`unix:${socket}`, grpc.ServerCredentials.createInsecure());
      this.#workloadAddress = `unix:${socket}`;
      await removeStaleSocket(framesSocket);
      this.#framesServer = createWorkloadSocketServer(this.#o.maxMessageBytes, (call) =>
        this.#onWorkload(call),
      );
      await this.#framesServer.listen(framesSocket);
      this.#framesSocket = framesSocket;
    } else {
      // A data directory too deep for a unix socket path: workloads use gRPC on the public address.
      this.#workloadAddress = this.#address;
    }
    if (this.#cluster !== undefined) this.#joinCluster(this.#cluster);
    this.#log.info(
      {
        address: this.#address,
        mode: this.#o.workloadMode,
        concurrency: this.#o.concurrency,
        appRoot: this.#appRoot,
      },
      "listening",
    );
    if (this.#o.workloadMode === "pool") {
      for (let i = 0; i < this.#o.concurrency; i++) this.#spawnWorker(undefined);
    }
    this.#pump();
    return this.#address;
  }

  #bind(address: string, credentials: grpc.ServerCredentials): Promise<number> {
    return new Promise<number>((resolvePort, reject) => {
      this.#server.bindAsync(address, credentials, (error, bound) =>
        error ? reject(error) : resolvePort(bound),
      );
    });
  }

  async shutdown(): Promise<void> {
    if (!this.#accepting) return;
    this.#accepting = false;
    for (const timer of this.#timers) clearInterval(timer);
    this.#unsubscribe?.();
    for (const listener of this.#healthListeners) listener();
    this.#log.info({ running: this.#running }, "shutting down: no new work, waiting for running instances");
    const idle = new Promise<void>((done) => {
      if (this.#running === 0) done();
      else this.#idleWaiters.push(done);
    });
    const grace = new Promise<void>((done) => setTimeout(done, this.#o.shutdownGraceMs).unref());
    await Promise.race([idle, grace]);
    if (this.#running > 0) {
      this.#log.warn(
        { running: this.#running },
        "handing running instances back: their workloads reattach to the next daemon",
      );
    }
    await this.#flush();
    // What still runs is handed back: the next daemon learns how it ends. This one neither
    // records it in a closing store nor waits for it.
    this.#stopped = true;
    for (const active of this.#active.values()) {
      clearTimeout(active.stopTimer);
      clearTimeout(active.orphanTimer);
    }
    for (const watcher of this.#watchers) {
      watcher.closed = true;
      watcher.call.end();
    }
    for (const worker of this.#workers) {
      if (worker.pool && worker.instanceId === undefined) worker.child?.kill("SIGTERM");
      worker.call?.end();
      worker.child?.unref();
      for (const pipe of [worker.child?.stdout, worker.child?.stderr])
        (pipe as Socket | null | undefined)?.unref();
    }
    await new Promise<void>((done) => {
      // Lets what was written reach its peer (a workload's last FinishedAck); cuts what stays open.
      const cut = setTimeout(() => {
        this.#server.forceShutdown();
        done();
      }, 1000);
      this.#server.tryShutdown(() => {
        clearTimeout(cut);
        done();
      });
    });
    await this.#framesServer?.close();
    await this.#store.close();
    this.#log.info("stopped");
  }

  // ---- client service ----------------------------------------------------------------

  #taskService(): grpc.UntypedServiceImplementation {
    return {
      submit: this.#unary(async (request: SubmitRequest, deployment) => this.#submit(request, deployment)),
      getInstance: this.#unary(async (request: { id: string }, deployment) => {
        const row = await this.#latest(request.id);
        return { instance: row && row.deploymentId === deployment ? storedToWire(row) : undefined };
      }),
      listInstances: this.#unary(async (request: ListInstancesRequest, deployment) =>
        this.#list(request, deployment),
      ),
      listDefinitions: this.#unary(
        async (_request: unknown, deployment): Promise<ListDefinitionsResponse> => {
          const definitions = await this.#store.listDefinitions(deployment);
          return { definitions: definitions.map(({ id, name }) => ({ id, name })) };
        },
      ),
      stopInstance: this.#unary(async (request: { id: string }, deployment) => ({
        found: await this.#stop(request.id, deployment),
      })),
      watchInstances: (call: grpc.ServerWritableStream<WatchInstancesRequest, InstanceChanges>) => {
        const deployment = this.#authorize(call.metadata);
        if (typeof deployment !== "string") {
          call.emit("error", deployment);
          return;
        }
        this.#watch(call, deployment).catch((error) => {
          this.#log.warn({ err: error }, "watch failed");
          call.emit("error", toStatus(error));
        });
      },
    };
  }

  #unary<Req, Res>(
    handler: (request: Req, deployment: string) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const deployment = this.#authorize(call.metadata);
      if (typeof deployment !== "string") {
        callback(deployment);
        return;
      }
      handler(call.request, deployment).then(
        (response) => callback(null, response),
        (error) => callback(toStatus(error)),
      );
    };
  }

  /** The caller's deployment, or the status to refuse it with. */
  #authorize(metadata: grpc.Metadata): string | grpc.ServiceError {
    const header = metadata.get("authorization")[0];
    const deployment = metadata.get("x-numerous-deployment")[0];
    const access = this.#access.check(
      typeof header === "string" ? header : undefined,
      typeof deployment === "string" ? deployment : undefined,
      // A workload of this daemon, calling as a client of its own deployment (a task running tasks).
      (token, wanted) => this.#tokens.allowsDeployment(token, wanted),
    );
    if (access.ok) return access.deployment;
    return serviceError(
      access.reason === "unauthenticated" ? grpc.status.UNAUTHENTICATED : grpc.status.PERMISSION_DENIED,
      access.message,
    );
  }

  async #submit(request: SubmitRequest, deployment: string): Promise<SubmitResponse> {
    if (!this.#accepting) throw serviceError(grpc.status.UNAVAILABLE, "the daemon is shutting down");
    if (request.instances.length === 0) return { results: [] };
    const ids = request.instances.map((instance) => instance.id).filter(isValidInstanceId);
    const existing = new Map<string, StoredInstance>();
    const missing: string[] = [];
    for (const id of ids) {
      const known = this.#active.get(id)?.row ?? this.#dirty.get(id);
      if (known) existing.set(id, known);
      else missing.push(id);
    }
    for (const row of await this.#store.getMany(missing)) existing.set(row.id, row);

    const results: SubmitResult[] = [];
    const created: Active[] = [];
    for (const instance of request.instances) {
      const problem = this.#checkNewInstance(instance);
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
              value: {
                name: "TaskInputError",
                message: `instance id ${instance.id} is taken`,
                stack: "",
                code: "TASK_INPUT",
              },
            },
          });
        } else {
          results.push({ outcome: { $case: "instance", value: storedToWire(found) } });
        }
        continue;
      }
      const module = this.#resolvedModule(instance) as string;
      const row: StoredInstance = {
        id: instance.id,
        deploymentId: deployment,
        taskId: definitionIdFor(instance.taskName),
        taskName: instance.taskName,
        module,
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
        // A shared store numbers rows itself.
        sequence: this.#cluster ? 0 : ++this.#sequence,
        position: this.#cluster ? 0 : ++this.#position,
        owner: "",
      };
      const active: Active = {
        row,
        worker: undefined,
        stopTimer: undefined,
        stopRequested: false,
        orphanTimer: undefined,
        holdsSlot: false,
      };
      existing.set(row.id, row);
      if (this.#cluster === undefined) this.#active.set(row.id, active);
      this.#dirty.set(row.id, row);
      const definitionKey = `${deployment}\u0000${row.taskName}\u0000${module}`;
      if (!this.#knownDefinitions.has(definitionKey)) {
        this.#knownDefinitions.add(definitionKey);
        this.#dirtyDefinitions.set(definitionKey, {
          deploymentId: deployment,
          id: row.taskId,
          name: row.taskName,
          module,
        });
      }
      created.push(active);
      results.push({ outcome: { $case: "instance", value: storedToWire(row) } });
    }
    if (created.length > 0) {
      const stored = await this.#durable();
      if (this.#cluster === undefined) {
        for (const active of created) this.#queue.push(active.row.id);
        this.#pump();
      } else {
        this.#claimSoon();
      }
      return {
        results: results.map((result) => {
          if (result.outcome?.$case !== "instance") return result;
          const row = stored.get(result.outcome.value.id);
          return row === undefined ? result : { outcome: { $case: "instance", value: storedToWire(row) } };
        }),
      };
    }
    return { results };
  }

  #checkNewInstance(instance: NewInstance): TaskErrorInfo | undefined {
    const input = (message: string): TaskErrorInfo => ({
      name: "TaskInputError",
      message,
      code: "TASK_INPUT",
    });
    if (!isValidInstanceId(instance.id))
      return input(`instance id ${JSON.stringify(instance.id)} is not 1 to 64 URL-safe characters`);
    if (instance.taskName.trim() === "") return input("the task name is empty");
    if (!isEncodedValue(instance.args))
      return input("the arguments are not encoded by the numerous-tasks codec");
    const checked = this.#resolvedModule(instance);
    if (checked instanceof Error) {
      return {
        name: "TaskNotFoundError",
        message: `task ${JSON.stringify(instance.taskName)}: ${checked.message}`,
        code: "TASK_NOT_FOUND",
      };
    }
    return undefined;
  }

  /** The module to import for this instance: its own path, or the same path under the app root. */
  #resolvedModule(instance: NewInstance): string | Error {
    const key = `${instance.module}\u0000${instance.moduleRelative}`;
    let checked: string | Error | undefined = this.#moduleChecks.get(key);
    if (checked === undefined) {
      checked = this.#checkModule(instance.module);
      if (
        checked instanceof Error &&
        instance.moduleRelative !== "" &&
        !isAbsolute(instance.moduleRelative)
      ) {
        const underRoot = resolve(this.#appRoot, instance.moduleRelative);
        if (existsSync(underRoot)) checked = this.#checkModule(underRoot);
      }
      // Only what resolved is remembered: a module may appear later, and the paths a confused or
      // hostile client makes up must not grow the cache.
      if (typeof checked === "string") {
        if (this.#moduleChecks.size >= 1024) this.#moduleChecks.clear();
        this.#moduleChecks.set(key, checked);
      }
    }
    return checked;
  }

  #checkModule(module: string): string | Error {
    if (module === "" || !isAbsolute(module)) {
      return new Error(`the daemon cannot tell which module defines it (got ${JSON.stringify(module)})`);
    }
    let real: string;
    try {
      real = realpathSync(module);
    } catch {
      return new Error(`its module ${module} does not exist on the daemon's machine`);
    }
    const rel = relative(this.#appRoot, real);
    if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel)) {
      return new Error(
        `its module ${real} is outside the daemon's app root ${this.#appRoot}; the daemon imports modules only from inside it`,
      );
    }
    return real;
  }

  async #list(request: ListInstancesRequest, deployment: string): Promise<ListInstancesResponse> {
    const limit = request.limit > 0 ? Math.min(request.limit, MAX_PAGE) : DEFAULT_PAGE;
    let afterPosition: number | undefined;
    if (request.cursor !== "") {
      const after = await this.#latest(request.cursor);
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
    const budget = Math.floor(this.#o.maxMessageBytes / 2);
    const rows: StoredInstance[] = [];
    let bytes = 0;
    let exhausted = false;
    let pageSize = Math.min(limit + 1, LIST_FIRST_PAGE);
    for (;;) {
      const want = Math.min(pageSize, limit + 1 - rows.length);
      const got = await this.#store.list({
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
    let page = rows
      .slice(0, limit)
      .map((row) => this.#active.get(row.id)?.row ?? this.#dirty.get(row.id) ?? row);
    let more = rows.length > limit || !exhausted;
    // A page of large outputs is cut short, not refused: the cursor picks up where it ends.
    const first = this.#chunks(page)[0] ?? [];
    if (first.length < page.length) {
      page = first;
      more = true;
    }
    return {
      instances: page.map(storedToWire),
      nextCursor: more ? (page.at(-1)?.id ?? "") : "",
    };
  }

  async #latest(id: string): Promise<StoredInstance | undefined> {
    return this.#active.get(id)?.row ?? this.#dirty.get(id) ?? (await this.#store.getMany([id]))[0];
  }

  async #stop(id: string, deployment: string): Promise<boolean> {
    const active = this.#active.get(id);
    if (active === undefined) {
      const row = this.#dirty.get(id) ?? (await this.#store.getMany([id]))[0];
      if (row === undefined || row.deploymentId !== deployment) return false;
      if (this.#cluster !== undefined && !isTerminalStatus(row.status))
        await this.#stopElsewhere(this.#cluster, row);
      return true;
    }
    if (active.row.deploymentId !== deployment) return false;
    if (active.row.status === "pending") {
      // Its process may be starting: it never gets to run the task.
      const worker = active.worker;
      if (worker !== undefined) {
        this.#detach(worker);
        worker.child?.kill("SIGKILL");
      }
      this.#finish(active, "cancelled", {});
      return true;
    }
    if (active.stopRequested) return true;
    this.#send(active.worker, { kind: { $case: "stop", value: { instanceId: id } } });
    this.#stopRequested(active, Date.now());
    return true;
  }

  /** Cluster: cancel an unclaimed pending row here, or ask the daemon that holds it. */
  async #stopElsewhere(cluster: ClusterStore, row: StoredInstance): Promise<void> {
    if (row.status === "pending" && row.owner === "") {
      await this.#durable();
      const cancelled = await cluster.cancelPending(row.id);
      if (cancelled !== undefined) return;
    }
    const current = (await cluster.getMany([row.id]))[0];
    if (current === undefined || isTerminalStatus(current.status)) return;
    if (current.owner === this.#owner) {
      const active = this.#active.get(row.id);
      if (active) await this.#stop(row.id, row.deploymentId);
      return;
    }
    await cluster.publish({ kind: "stop", instanceId: row.id, owner: current.owner });
  }

  /**
   * Records a stop asked for at `at` (ms since the epoch): the workload is killed when its grace
   * period is over. Returns the milliseconds left of it.
   */
  #stopRequested(active: Active, at: number): number {
    const left = Math.max(0, at + this.#o.stopGraceMs - Date.now());
    active.stopRequested = true;
    active.stopTimer = setTimeout(() => this.#forceStop(active), left);
    return left;
  }

  #forceStop(active: Active): void {
    if (isTerminalStatus(active.row.status)) return;
    const worker = active.worker;
    this.#log.warn(
      { instance: active.row.id, graceMs: this.#o.stopGraceMs },
      "task ignored its stop: killing its workload",
    );
    const error: TaskErrorInfo = {
      name: "TaskStoppedError",
      message: `the task did not end within the ${this.#o.stopGraceMs} ms stop grace period, so its workload was killed`,
    };
    if (worker) this.#detach(worker);
    this.#finish(active, "cancelled", { error });
    if (worker?.child) worker.child.kill("SIGKILL");
    else if (worker?.pid !== undefined) killQuietly(worker.pid);
    worker?.call?.end();
  }

  async #watch(
    call: grpc.ServerWritableStream<WatchInstancesRequest, InstanceChanges>,
    deployment: string,
  ): Promise<void> {
    const request = call.request;
    const ids = request.ids.length > 0 ? new Set(request.ids) : undefined;
    // The first message says where this stream may be resumed from: "now" is the last change
    // already sent to watchers (never one still being written); a replay starts where asked.
    const sequence = this.#resumePoint(request.fromNow ? this.#shownSequence : request.afterSequence);
    const watcher: Watcher = {
      deploymentId: deployment,
      ids,
      call,
      sent: sequence,
      cursor: sequence,
      inFlight: 0,
      lagging: !request.fromNow,
      missed: false,
      closed: false,
      wake: undefined,
    };
    this.#watchers.add(watcher);
    const forget = () => {
      watcher.closed = true;
      this.#watchers.delete(watcher);
      watcher.wake?.();
    };
    call.on("cancelled", forget);
    call.on("close", forget);
    call.on("error", forget);
    call.write({ instances: [], sequence });
    if (watcher.lagging) void this.#catchUp(watcher);
  }

  /**
   * Writes one message; false when the client is not taking what was written (the message is
   * still sent). Counts bytes rather than trusting `write()`: grpc-js queues 16 messages before
   * it says no, and 16 messages of large outputs per stalled watcher add up.
   */
  #writeChanges(
    watcher: Watcher,
    rows: readonly StoredInstance[],
    upTo = (rows.at(-1) as StoredInstance).sequence,
  ): boolean {
    const sequence = this.#resumePoint(upTo);
    const bytes = sizeOfRows(rows);
    watcher.inFlight += bytes;
    const ok = watcher.call.write({ instances: rows.map(storedToWire), sequence }, () => {
      watcher.inFlight -= bytes;
      if (watcher.inFlight === 0) watcher.wake?.();
    });
    if (sequence > watcher.sent) watcher.sent = sequence;
    return ok && watcher.inFlight <= WATCHER_IN_FLIGHT_BYTES;
  }

  /**
   * Brings a lagging watcher up to date from the store, then makes it live again. It writes
   * only while the connection takes what it is given, and keeps no rows while it waits: the
   * store holds them. A broadcast meanwhile only marks it `missed` (whatever is broadcast is
   * saved already), so the next pass reads it.
   */
  async #catchUp(watcher: Watcher): Promise<void> {
    try {
      for (;;) {
        watcher.missed = false;
        if (watcher.inFlight > 0) {
          await new Promise<void>((resolveWake) => {
            watcher.wake = resolveWake;
          });
          watcher.wake = undefined;
        }
        if (watcher.closed) return;
        const complete = await this.#sendChangesSince(watcher);
        if (watcher.closed) return;
        if (complete && !watcher.missed) {
          watcher.lagging = false;
          return;
        }
      }
    } catch (error) {
      if (watcher.closed) return;
      this.#log.warn({ err: error }, "could not catch a watcher up; ending its stream so that it resumes");
      watcher.call.emit(
        "error",
        serviceError(grpc.status.UNAVAILABLE, "the daemon could not read its store; resume the watch"),
      );
    }
  }

  /** Writes saved changes after the watcher's cursor; false if it had to stop before the end. */
  async #sendChangesSince(watcher: Watcher): Promise<boolean> {
    for await (const { rows, sequences } of this.#changesAfter(watcher, watcher.cursor)) {
      let start = 0;
      for (const chunk of this.#chunks(rows)) {
        if (watcher.closed) return false;
        start += chunk.length;
        // The store has every row up to here in sequence order, so reading on from the last
        // row written misses nothing, even where the resume point sent is lower (a cluster).
        const upTo = sequences[start - 1] as number;
        const taken = this.#writeChanges(watcher, chunk, upTo);
        watcher.cursor = upTo;
        if (!taken) return false;
      }
    }
    return true;
  }

  /**
   * Pages of saved changes of the watcher's instances after `after`, in sequence order, each
   * row with the sequence it is sent under (see below).
   */
  async *#changesAfter(
    watcher: Watcher,
    after: number,
  ): AsyncGenerator<{ rows: StoredInstance[]; sequences: number[] }> {
    if (watcher.ids === undefined) {
      let cursor = after;
      let pageSize = CATCH_UP_FIRST_PAGE;
      for (;;) {
        const rows = await this.#store.changesSince(watcher.deploymentId, cursor, pageSize);
        if (rows.length > 0) yield { rows, sequences: rows.map((row) => row.sequence) };
        if (rows.length < pageSize) return;
        cursor = (rows.at(-1) as StoredInstance).sequence;
        pageSize = nextPageSize(rows.length, sizeOfRows(rows));
      }
    }
    // Named instances: which changed is read first, then their rows a page at a time. A row may
    // change in between; it is sent as it is now, under the sequence it had when the pass began,
    // so resume points keep their promise (anything changed later has a higher sequence).
    const ids = [...watcher.ids];
    const changed: Array<{ id: string; sequence: number }> = [];
    let pageSize = CATCH_UP_FIRST_PAGE;
    for (let i = 0; i < ids.length; ) {
      const page = ids.slice(i, i + pageSize);
      i += page.length;
      const rows = await this.#store.getMany(page);
      for (const row of rows) {
        if (row.deploymentId === watcher.deploymentId && row.sequence > after)
          changed.push({ id: row.id, sequence: row.sequence });
      }
      pageSize = nextPageSize(rows.length, sizeOfRows(rows));
    }
    changed.sort((x, y) => x.sequence - y.sequence);
    pageSize = CATCH_UP_FIRST_PAGE;
    for (let i = 0; i < changed.length; ) {
      const page = changed.slice(i, i + pageSize);
      i += page.length;
      const byId = new Map((await this.#store.getMany(page.map((c) => c.id))).map((row) => [row.id, row]));
      const rows: StoredInstance[] = [];
      const sequences: number[] = [];
      for (const { id, sequence } of page) {
        const row = byId.get(id);
        if (row === undefined) continue;
        rows.push(row);
        sequences.push(sequence);
      }
      if (rows.length > 0) yield { rows, sequences };
      pageSize = nextPageSize(rows.length, sizeOfRows(rows));
    }
  }

  /** Splits rows into messages well under the message size limit, at most 500 rows each. */
  #chunks(rows: readonly StoredInstance[]): StoredInstance[][] {
    const budget = Math.floor(this.#o.maxMessageBytes / 2);
    const chunks: StoredInstance[][] = [];
    let chunk: StoredInstance[] = [];
    let bytes = 0;
    for (const row of rows) {
      const size = approximateSize(row);
      if (chunk.length > 0 && (chunk.length >= 500 || bytes + size > budget)) {
        chunks.push(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(row);
      bytes += size;
    }
    if (chunk.length > 0) chunks.push(chunk);
    return chunks;
  }

  /**
   * The sequence a watcher may resume after: every change up to it has been sent. In a cluster,
   * this daemon's own rows go out as soon as they are written, before it has fetched the other
   * daemons' rows with lower sequences, so it never claims more than it fetched.
   */
  #resumePoint(lastSent: number): number {
    return this.#cluster === undefined ? lastSent : Math.min(lastSent, this.#fetched);
  }

  #broadcast(rows: readonly StoredInstance[]): void {
    let sorted: StoredInstance[] | undefined;
    for (const watcher of this.#watchers) {
      let matched: StoredInstance[] | undefined;
      for (const row of (sorted ??= [...rows].sort((a, b) => a.sequence - b.sequence))) {
        if (row.deploymentId !== watcher.deploymentId) continue;
        if (watcher.ids !== undefined && !watcher.ids.has(row.id)) continue;
        (matched ??= []).push(row);
      }
      if (matched === undefined) continue;
      if (watcher.lagging) {
        watcher.missed = true;
        continue;
      }
      for (const chunk of this.#chunks(matched)) {
        if (!this.#writeChanges(watcher, chunk)) {
          // What this message did not carry is saved: the catch-up sends it once the client
          // takes what it has, reading on from the last resume point it was sent.
          watcher.lagging = true;
          watcher.cursor = watcher.sent;
          void this.#catchUp(watcher);
          break;
        }
      }
    }
    for (const row of rows) if (row.sequence > this.#shownSequence) this.#shownSequence = row.sequence;
  }

  // ---- durability -----------------------------------------------------------------------

  #change(active: Active, change: Partial<StoredInstance>): void {
    if (this.#stopped || isTerminalStatus(active.row.status)) return;
    const row: StoredInstance = {
      ...active.row,
      ...change,
      revision: active.row.revision + 1,
      sequence: this.#cluster ? active.row.sequence : ++this.#sequence,
    };
    active.row = row;
    this.#dirty.set(row.id, row);
    this.#scheduleFlush();
  }

  /** Resolves once everything changed so far is in the store, with the rows as stored. */
  #durable(): Promise<ReadonlyMap<string, StoredInstance>> {
    return new Promise((resolveWait, reject) => {
      this.#flushWaiters.push({ resolve: resolveWait, reject });
      this.#scheduleFlush();
    });
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#dirty.size === 0 && this.#dirtyDefinitions.size === 0) {
      const waiters = this.#flushWaiters;
      this.#flushWaiters = [];
      for (const waiter of waiters) waiter.resolve(new Map());
      return;
    }
    const rows = [...this.#dirty.values()];
    const definitions = [...this.#dirtyDefinitions.values()];
    const waiters = this.#flushWaiters;
    this.#dirty.clear();
    this.#dirtyDefinitions.clear();
    this.#flushWaiters = [];
    this.#flushing = (async () => {
      let stored: readonly StoredInstance[] = rows;
      try {
        if (this.#cluster === undefined) await this.#store.save(rows, definitions);
        else stored = await this.#cluster.saveAssigned(rows, definitions);
      } catch (error) {
        this.#log.error({ err: error }, "store write failed; retrying");
        for (const row of rows) if (!this.#dirty.has(row.id)) this.#dirty.set(row.id, row);
        for (const definition of definitions)
          this.#dirtyDefinitions.set(
            `${definition.deploymentId}\u0000${definition.name}\u0000${definition.module}`,
            definition,
          );
        this.#flushWaiters.push(...waiters);
        setTimeout(() => this.#scheduleFlush(), 100).unref();
        return;
      }
      const byId = new Map<string, StoredInstance>();
      for (const row of stored) {
        byId.set(row.id, row);
        const active = this.#active.get(row.id);
        if (active && active.row.revision === row.revision) {
          if (isTerminalStatus(row.status)) this.#active.delete(row.id);
          else if (active.row.sequence !== row.sequence)
            active.row = { ...active.row, sequence: row.sequence };
        }
        if (this.#cluster !== undefined) {
          this.#ownSequences.add(row.sequence);
          if (row.sequence > this.#sequence) this.#sequence = row.sequence;
        }
      }
      this.#broadcast(stored);
      for (const waiter of waiters) waiter.resolve(byId);
    })();
    try {
      await this.#flushing;
    } finally {
      this.#flushing = undefined;
    }
    if (this.#dirty.size > 0 || this.#flushWaiters.length > 0) this.#scheduleFlush();
  }

  // ---- scheduling and workloads -----------------------------------------------------------

  #pump(): void {
    if (!this.#accepting || this.#address === "" || this.#stopped) return;
    while (this.#running < this.#o.concurrency && this.#queueHead < this.#queue.length) {
      if (this.#o.workloadMode === "pool" && this.#idleWorkers.length === 0) break;
      const id = this.#queue[this.#queueHead++] as string;
      const active = this.#active.get(id);
      if (active === undefined || active.row.status !== "pending") continue;
      this.#start(active);
    }
    if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#queueHead);
      this.#queueHead = 0;
    }
    if (this.#cluster !== undefined && this.#queueHead >= this.#queue.length) this.#claimSoon();
  }

  // ---- cluster ------------------------------------------------------------------------------

  #joinCluster(cluster: ClusterStore): void {
    const lease = this.#o.leaseMs;
    this.#unsubscribe = cluster.subscribe((event) => this.#onClusterEvent(event));
    const beat = setInterval(
      () => {
        cluster.heartbeat(this.#owner, lease).then(
          (alive) => {
            if (!alive) this.#lostLease();
            else this.#claimSoon();
          },
          (error) => this.#log.warn({ err: error }, "lease renewal failed; retrying"),
        );
      },
      Math.max(50, Math.floor(lease / 3)),
    );
    const reap = setInterval(
      () => {
        cluster
          .reap((owner) => ({
            name: "DaemonLostError",
            message: `the daemon ${owner} that ran this instance stopped renewing its ${lease} ms lease and is presumed dead`,
          }))
          .then(
            (rows) => {
              if (rows.length > 0)
                this.#log.warn({ instances: rows.length }, "reaped the work of lost daemons");
            },
            (error) => this.#log.warn({ err: error }, "reaping failed; retrying"),
          );
      },
      Math.max(50, Math.floor(lease / 2)),
    );
    beat.unref();
    reap.unref();
    this.#timers.push(beat, reap);
    this.#log.info({ owner: this.#owner, leaseMs: lease }, "joined the cluster");
  }

  #lostLease(): void {
    const reason = `daemon ${this.#owner} lost its lease: the cluster presumed it dead and gave its work to others`;
    this.#log.fatal({ owner: this.#owner }, reason);
    this.#stopped = true;
    this.#accepting = false;
    for (const worker of this.#workers) worker.child?.kill("SIGKILL");
    this.#o.onFatal?.(reason);
  }

  #onClusterEvent(event: ClusterEvent): void {
    if (this.#stopped) return;
    if (event.kind === "pending") this.#claimSoon();
    else if (event.kind === "changed") this.#fetchChanges();
    else if (event.kind === "stop" && event.owner === this.#owner) {
      const active = this.#active.get(event.instanceId);
      if (active !== undefined) void this.#stop(event.instanceId, active.row.deploymentId);
    }
  }

  /** Passes what other daemons saved on to this daemon's watchers, in sequence order. */
  #fetchChanges(): void {
    const cluster = this.#cluster;
    if (cluster === undefined) return;
    if (this.#fetching !== undefined) {
      this.#fetchAgain = true;
      return;
    }
    this.#fetching = (async () => {
      do {
        this.#fetchAgain = false;
        for (;;) {
          const rows = await cluster.changesSinceAll(this.#fetched, 1000);
          const theirs: StoredInstance[] = [];
          for (const row of rows) {
            if (this.#ownSequences.delete(row.sequence)) continue;
            theirs.push(this.#active.get(row.id)?.row ?? row);
          }
          const last = rows.at(-1);
          if (last !== undefined) {
            this.#fetched = last.sequence;
            if (last.sequence > this.#sequence) this.#sequence = last.sequence;
          }
          for (const sequence of this.#ownSequences)
            if (sequence <= this.#fetched) this.#ownSequences.delete(sequence);
          if (theirs.length > 0) this.#broadcast(theirs);
          if (rows.length < 1000) break;
        }
      } while (this.#fetchAgain);
    })()
      .catch((error) => this.#log.warn({ err: error }, "could not fetch changes from the store"))
      .finally(() => {
        this.#fetching = undefined;
      });
  }

  /** Claims unowned pending instances while this daemon has room. */
  #claimSoon(): void {
    const cluster = this.#cluster;
    if (cluster === undefined || !this.#accepting || this.#address === "" || this.#stopped) return;
    if (this.#claiming) {
      this.#claimAgain = true;
      return;
    }
    const queued = this.#queue.length - this.#queueHead;
    let room = this.#o.concurrency - this.#running - queued;
    if (this.#o.workloadMode === "pool") room = Math.min(room, this.#idleWorkers.length - queued);
    if (room <= 0) return;
    this.#claiming = true;
    this.#claimAgain = false;
    cluster
      .claim(this.#owner, room)
      .then((rows) => {
        for (const row of rows) {
          if (row.sequence > this.#sequence) this.#sequence = row.sequence;
          this.#active.set(row.id, {
            row,
            worker: undefined,
            stopTimer: undefined,
            stopRequested: false,
            orphanTimer: undefined,
            holdsSlot: false,
          });
          this.#queue.push(row.id);
        }
        if (rows.length === room) this.#claimAgain = true;
      })
      .catch((error) => this.#log.warn({ err: error }, "could not claim pending instances"))
      .finally(() => {
        this.#claiming = false;
        this.#pump();
        if (this.#claimAgain) this.#claimSoon();
      });
  }

  #start(active: Active): void {
    this.#running++;
    active.holdsSlot = true;
    if (this.#o.workloadMode === "pool") {
      this.#change(active, { status: "running", startedAt: Date.now() });
      const worker = this.#idleWorkers.pop() as Worker;
      this.#assign(worker, active);
      this.#sendStart(worker, active);
    } else {
      // It stays pending until its process says hello: a stop before then cancels it, and it
      // never runs.
      const worker = this.#spawnWorker(active.row.id);
      this.#assign(worker, active);
    }
  }

  #assign(worker: Worker, active: Active): void {
    worker.instanceId = active.row.id;
    active.worker = worker;
  }

  #sendStart(worker: Worker, active: Active): void {
    const { id, taskName, module, args } = active.row;
    this.#send(worker, {
      kind: { $case: "start", value: { instanceId: id, taskName, module, args: args ?? "J[]" } },
    });
  }

  #spawnWorker(instanceId: string | undefined): Worker {
    const cli = fileURLToPath(
      new URL(import.meta.url.endsWith(".ts") ? "../cli/cli.ts" : "../cli/cli.js", import.meta.url),
    );
    const active = instanceId === undefined ? undefined : this.#active.get(instanceId);
    const needsTsx =
      instanceId === undefined || cli.endsWith(".ts") || /\.[mc]?tsx?$/.test(active?.row.module ?? "");
    const nodeArgs = needsTsx && TSX !== undefined ? ["--import", TSX] : [];
    const token = instanceId === undefined ? this.#tokens.forPool() : this.#tokens.forInstance(instanceId);
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      ...this.#o.workloadEnv,
      NUMEROUS_EXECUTOR: "platform",
      NUMEROUS_EXECUTOR_ADDRESS: this.#workloadAddress,
      NUMEROUS_WORKLOAD_SOCKET: this.#framesSocket,
      NUMEROUS_WORKLOAD_TOKEN: token,
      NUMEROUS_DEPLOYMENT_ID: active?.row.deploymentId ?? DEFAULT_DEPLOYMENT,
    };
    // The daemon's own secrets would let one deployment's task act for every other.
    for (const secret of DAEMON_SECRETS) delete env[secret];
    if (instanceId !== undefined) {
      env.NUMEROUS_TASK_INSTANCE_ID = instanceId;
      // A task may run other tasks of its deployment, and only of its deployment. (A pool
      // worker serves every deployment, so it gets no such token.)
      if (this.#access.enabled)
        env.NUMEROUS_API_ACCESS_TOKEN = this.#tokens.forDeployment(env.NUMEROUS_DEPLOYMENT_ID as string);
      const args = active?.row.args ?? "";
      if (args.length < 64 * 1024) env.TASK_DATA_INPUT = args;
    } else {
      delete env.NUMEROUS_TASK_INSTANCE_ID;
      delete env.TASK_DATA_INPUT;
      delete env.NUMEROUS_API_ACCESS_TOKEN;
    }
    const child = spawn(process.execPath, [...nodeArgs, cli, "run"], {
      cwd: this.#appRoot,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const worker: Worker = {
      serial: ++this.#workerSerial,
      pool: instanceId === undefined,
      child,
      pid: child.pid,
      tail: new TailBuffer(),
      call: undefined,
      instanceId: undefined,
      startFor: instanceId,
      gone: false,
    };
    this.#workers.add(worker);
    child.stdout?.on("data", (chunk: Buffer) => worker.tail.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => worker.tail.push(chunk));
    child.on("error", (error) => {
      this.#log.error({ err: error }, "workload failed to start");
      this.#workerGone(worker, `the workload process could not start: ${error.message}`);
    });
    child.on("exit", (code, signal) => {
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const gone = () => this.#workerGone(worker, `the workload process ${how} before reporting a result`);
      // The pipes may still hold the last words: "close" comes once they are read to the end,
      // unless a process the task started keeps them open.
      const drained = setTimeout(gone, 1000);
      child.once("close", () => {
        clearTimeout(drained);
        gone();
      });
    });
    return worker;
  }

  #workerGone(worker: Worker, reason: string): void {
    if (worker.gone) return;
    worker.gone = true;
    this.#workers.delete(worker);
    const idleIndex = this.#idleWorkers.indexOf(worker);
    if (idleIndex >= 0) this.#idleWorkers.splice(idleIndex, 1);
    worker.call?.end();
    const active = worker.instanceId === undefined ? undefined : this.#active.get(worker.instanceId);
    if (active !== undefined && active.worker === worker && !isTerminalStatus(active.row.status)) {
      const tail = worker.tail.toString();
      const error: TaskErrorInfo = {
        name: "WorkloadExitedError",
        message: tail ? `${reason}; last output:\n${tail}` : reason,
      };
      this.#detach(worker);
      if (active.stopRequested) this.#finish(active, "cancelled", { error });
      else this.#finish(active, "failed", { error });
    }
    if (worker.pool && this.#accepting) this.#spawnWorker(undefined);
  }

  #detach(worker: Worker): void {
    const active = worker.instanceId === undefined ? undefined : this.#active.get(worker.instanceId);
    if (active && active.worker === worker) active.worker = undefined;
    worker.instanceId = undefined;
  }

  #finish(
    active: Active,
    status: "completed" | "failed" | "cancelled",
    end: { result?: string | undefined; error?: TaskErrorInfo | undefined; output?: string | undefined },
  ): void {
    if (isTerminalStatus(active.row.status)) return;
    const wasRunning = active.holdsSlot;
    active.holdsSlot = false;
    clearTimeout(active.stopTimer);
    clearTimeout(active.orphanTimer);
    this.#change(active, {
      status,
      result: end.result,
      error: end.error,
      args: undefined,
      finishedAt: Date.now(),
      progress: status === "completed" ? 1 : active.row.progress,
      ...(end.output === undefined ? {} : { output: end.output }),
    });
    if (wasRunning) {
      this.#running--;
      if (this.#running === 0) {
        const waiters = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const waiter of waiters) waiter();
      }
    }
    queueMicrotask(() => this.#pump());
  }

  #send(worker: Worker | undefined, message: DaemonMessage): void {
    if (worker?.call === undefined || worker.gone) return;
    try {
      worker.call.write(message);
    } catch (error) {
      this.#log.warn({ err: error }, "could not write to a workload");
    }
  }

  #onWorkload(call: WorkloadCall): void {
    let worker: Worker | undefined;
    let refused = false;
    const refuse = (code: grpc.status, message: string) => {
      refused = true;
      this.#log.warn({ code, message }, "refused a workload message");
      call.emit("error", serviceError(code, message));
    };
    call.on("data", (message: WorkloadMessage) => {
      // Once refused, the stream is over: nothing more it says counts. After a shutdown, the
      // workload tells the next daemon.
      if (refused || this.#stopped) return;
      try {
        const kind = message.kind;
        if (kind === undefined) return refuse(grpc.status.INVALID_ARGUMENT, "empty workload message");
        if (kind.$case === "hello") {
          if (worker !== undefined) return refuse(grpc.status.INVALID_ARGUMENT, "hello sent twice");
          worker = this.#hello(call, kind.value);
          if (worker === undefined)
            return refuse(grpc.status.PERMISSION_DENIED, "the workload token does not allow this instance");
          return;
        }
        if (worker === undefined)
          return refuse(grpc.status.FAILED_PRECONDITION, "a workload must say hello first");
        const instanceId = kind.value.instanceId;
        if (instanceId !== worker.instanceId) {
          // The end of an earlier instance, said again after a reconnect.
          if (kind.$case === "finished" && this.#lateFinished(worker, instanceId, kind.value)) return;
          return refuse(
            grpc.status.PERMISSION_DENIED,
            `this workload runs ${worker.instanceId ?? "nothing"}, not ${instanceId}`,
          );
        }
        const active = this.#active.get(instanceId);
        if (active === undefined || isTerminalStatus(active.row.status)) return;
        if (kind.$case === "progress") {
          const value = kind.value.value;
          if (!(value >= 0 && value <= 1)) {
            this.#log.warn({ instance: instanceId, value }, "ignored progress out of range from a workload");
            return;
          }
          this.#change(active, { progress: value });
        } else if (kind.$case === "output") {
          if (!isEncodedValue(kind.value.output))
            return refuse(grpc.status.INVALID_ARGUMENT, "output not encoded by the codec");
          this.#change(active, { output: kind.value.output });
        } else if (kind.$case === "finished") {
          this.#onFinished(worker, active, kind.value);
        }
      } catch (error) {
        this.#log.error({ err: error }, "workload message failed");
        refuse(grpc.status.INTERNAL, "the daemon could not handle that message");
      }
    });
    const closed = () => {
      if (worker === undefined) return;
      const current = worker;
      if (current.call === call) current.call = undefined;
      // A process we started is judged at its exit; one that reattached after a restart, now.
      if (current.child === undefined)
        this.#workerGone(current, "the workload disconnected before reporting a result");
    };
    call.on("end", () => {
      // Also what a truncated first message looks like: gRPC drops the partial frame.
      if (worker === undefined && !refused)
        return refuse(grpc.status.FAILED_PRECONDITION, "the workload stream ended before it said hello");
      closed();
      call.end();
    });
    call.on("error", closed);
    call.on("cancelled", closed);
  }

  #hello(call: WorkloadCall, hello: Hello): Worker | undefined {
    const { workloadToken: token, instanceId, pid } = hello;
    const allowed = this.#tokens.check(token, instanceId);
    if (allowed === undefined) return undefined;
    // A worker we started.
    for (const worker of this.#workers) {
      if (worker.call !== undefined || worker.gone) continue;
      if (allowed === "instance" && worker.startFor === instanceId && worker.child?.pid === pid) {
        worker.call = call;
        const active = this.#active.get(instanceId);
        if (active && active.worker === worker && !isTerminalStatus(active.row.status)) {
          if (active.row.status === "pending")
            this.#change(active, { status: "running", startedAt: Date.now() });
          this.#sendStart(worker, active);
          if (active.stopRequested) this.#send(worker, { kind: { $case: "stop", value: { instanceId } } });
        } else {
          // Cancelled while its process was starting.
          worker.child?.kill("SIGKILL");
        }
        return worker;
      }
      if (allowed === "pool" && worker.pool && worker.child?.pid === pid && instanceId === "") {
        worker.call = call;
        this.#idleWorkers.push(worker);
        this.#pump();
        return worker;
      }
    }
    // A pool worker from before a restart with nothing running: adopted, it serves like the rest.
    if (instanceId === "" && allowed === "pool") {
      const worker: Worker = {
        serial: ++this.#workerSerial,
        pool: true,
        child: undefined,
        pid: pid > 0 ? pid : undefined,
        tail: new TailBuffer(),
        call,
        instanceId: undefined,
        startFor: undefined,
        gone: false,
      };
      this.#workers.add(worker);
      this.#idleWorkers.push(worker);
      this.#log.info({ pid }, "pool workload reattached");
      this.#pump();
      return worker;
    }
    // A workload from before a restart, reattaching to its running instance.
    if (instanceId !== "") {
      const active = this.#active.get(instanceId);
      if (active && active.row.status === "running" && active.worker === undefined) {
        const worker: Worker = {
          serial: ++this.#workerSerial,
          pool: allowed === "pool",
          child: undefined,
          pid: pid > 0 ? pid : undefined,
          tail: new TailBuffer(),
          call,
          instanceId,
          startFor: instanceId,
          gone: false,
        };
        this.#workers.add(worker);
        active.worker = worker;
        clearTimeout(active.orphanTimer);
        this.#log.info({ instance: instanceId }, "workload reattached");
        if (active.stopRequested) this.#send(worker, { kind: { $case: "stop", value: { instanceId } } });
        else if (hello.stopRequestedAtMs > 0) {
          // A stop the daemon before this one acknowledged: its grace period runs on from then.
          const graceLeftMs = this.#stopRequested(active, hello.stopRequestedAtMs);
          this.#log.info(
            { instance: instanceId, graceLeftMs },
            "reattached workload was stopped before the restart",
          );
        }
        return worker;
      }
    }
    return undefined;
  }

  /** A worker may repeat the end of an instance it ran before (it was not acknowledged yet). */
  #lateFinished(worker: Worker, instanceId: string, finished: Finished): boolean {
    if (!worker.pool && worker.startFor !== instanceId) return false;
    const active = this.#active.get(instanceId);
    if (active === undefined) {
      // Already recorded: the acknowledgement was what got lost.
      void this.#latest(instanceId).then((row) => {
        if (row !== undefined && isTerminalStatus(row.status)) {
          this.#send(worker, { kind: { $case: "finishedAck", value: { instanceId } } });
        }
      });
      return true;
    }
    if (active.row.status !== "running" || active.worker !== undefined) return false;
    this.#onFinished(worker, active, finished);
    return true;
  }

  #onFinished(worker: Worker, active: Active, finished: Finished): void {
    const status = statusFromWire(finished.status);
    if (status !== "completed" && status !== "failed" && status !== "cancelled") {
      this.#finish(active, "failed", {
        error: {
          name: "WorkloadProtocolError",
          message: "the workload reported an end without a final status",
        },
      });
    } else {
      this.#finish(active, status, {
        result: finished.result,
        error: finished.error === undefined ? undefined : errorFromWire(finished.error),
        // The last output, said again with the end in case its own message was lost.
        output:
          finished.output !== undefined && isEncodedValue(finished.output) ? finished.output : undefined,
      });
    }
    const instanceId = active.row.id;
    if (active.worker === worker) active.worker = undefined;
    if (worker.instanceId === instanceId) {
      worker.instanceId = undefined;
      // A pool worker takes its next instance while this end is being written: it keeps the
      // end until the acknowledgement, and says it again to whoever listens after a crash.
      if (worker.pool && !worker.gone) {
        this.#idleWorkers.push(worker);
        this.#pump();
      }
    }
    void this.#durable().then(() =>
      this.#send(worker, { kind: { $case: "finishedAck", value: { instanceId } } }),
    );
  }
}

/**
 * A daemon killed with SIGKILL leaves its socket file behind, and binding it again fails. The
 * file goes only when nothing accepts on it, so a daemon that still runs keeps its address.
 */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    if (!lstatSync(path).isSocket()) return;
  } catch {
    return;
  }
  const stale = await new Promise<boolean>((done) => {
    const probe = connect(path);
    probe.once("connect", () => {
      probe.destroy();
      done(false);
    });
    probe.once("error", (error: NodeJS.ErrnoException) => done(error.code === "ECONNREFUSED"));
  });
  if (stale) unlinkSync(path);
}

/** About how many bytes a row takes on the wire. */
function sizeOfRows(rows: readonly StoredInstance[]): number {
  let bytes = 0;
  for (const row of rows) bytes += approximateSize(row);
  return bytes;
}

function approximateSize(row: StoredInstance): number {
  return (
    256 +
    (row.output?.length ?? 0) +
    (row.result?.length ?? 0) +
    (row.error === undefined ? 0 : row.error.message.length + (row.error.stack?.length ?? 0))
  );
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** tsx, for task modules written in TypeScript; absent in a production install of compiled apps. */
const TSX: string | undefined = (() => {
  try {
    return import.meta.resolve("tsx");
  } catch {
    return undefined;
  }
})();

function serviceError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** The one place where anything a handler threw becomes a status; internals never leak. */
function toStatus(error: unknown): grpc.ServiceError {
  if (error instanceof Error && typeof (error as Partial<grpc.ServiceError>).code === "number") {
    return error as grpc.ServiceError;
  }
  return serviceError(grpc.status.INTERNAL, "internal daemon error; see the daemon's log");
}

export type { Instance };
