import { hostname } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { HealthService } from "../protocol/generated/grpc/health/v1/health_pb.js";
import {
  type DaemonMessage,
  TaskServiceService,
  type WorkloadMessage,
  WorkloadServiceService,
} from "../protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { isClusterStore } from "../store/cluster-store.js";
import type { Store } from "../store/store.js";
import { createHttpServer, type HttpServer } from "../http/http-server.js";
import { addMetricsRoute } from "../http/metrics-route.js";
import { addConsoleRoutes } from "../console/console-routes.js";
import { AccessControl } from "./access-control.js";
import {
  type ClientServiceOptions,
  createClientService,
  stop as stopInstance,
  submit as submitInstances,
} from "./client-service.js";
import { ClusterCoordinator } from "./cluster-coordinator.js";
import type { Coordinator } from "./coordinator.js";
import {
  type DaemonOptions,
  type DaemonState,
  type ResolvedDaemonOptions,
  resolveDaemonOptions,
} from "./daemon-options.js";
import { createHealthService } from "./health-service.js";
import { InstanceTable } from "./instance-table.js";
import { LogKeeper } from "./log-keeper.js";
import { type LogStreamOptions, streamLogs } from "./log-stream.js";
import { ModuleResolver } from "./module-resolver.js";
import { PoolLauncher } from "./pool-launcher.js";
import { ProcessLauncher } from "./process-launcher.js";
import { startRetention } from "./retention.js";
import { RunQueue } from "./run-queue.js";
import { Scheduler } from "./scheduler.js";
import { SingleCoordinator } from "./single-coordinator.js";
import { removeStaleSocket } from "./socket-file.js";
import { WatchHub } from "./watch-hub.js";
import { WorkerSpawner } from "./worker-spawner.js";
import { Workers } from "./workers.js";
import type { WorkloadLauncher } from "./workload-launcher.js";
import { WorkloadService } from "./workload-service.js";
import { type WorkloadSocketServer, createWorkloadSocketServer } from "./workload-socket.js";
import { WorkloadTokens } from "./workload-token.js";

/** How long a ping of a client connection may go unanswered before the connection is closed. */
const KEEPALIVE_TIMEOUT_MS = 10_000;

export type { DaemonOptions } from "./daemon-options.js";

/** A running daemon. */
export interface Daemon {
  /** Binds (`127.0.0.1:0` picks a free port) and starts; resolves the bound address. */
  listen(address: string): Promise<string>;
  /** Stops taking work, lets running instances finish within the grace, then closes. */
  shutdown(): Promise<void>;
  /** Where the HTTP port is bound, once listening with `http` set. */
  readonly httpAddress: string | undefined;
}

/** Unix socket paths longer than this do not fit in `sockaddr_un` on every platform. */
const MAX_SOCKET_PATH = 100;
/** At shutdown, how long what was written may take to reach its peer before connections are cut. */
const CLOSE_CONNECTIONS_MS = 1000;

/**
 * Builds the platform executor's daemon over a store, and takes up what an earlier run left.
 * A store that several daemons share makes it a daemon of a cluster.
 */
export async function createDaemon(options: DaemonOptions): Promise<Daemon> {
  // prom-client is loaded only by a daemon that serves metrics.
  const metrics =
    options.metrics ??
    (options.http === undefined ? undefined : new (await import("./daemon-metrics.js")).DaemonMetrics());
  const daemon = new DaemonImpl(resolveDaemonOptions({ ...options, ...(metrics && { metrics }) }));
  await daemon.recover();
  return daemon;
}

/** Wires the parts together, and starts and stops them in order. */
class DaemonImpl implements Daemon {
  readonly #o: ResolvedDaemonOptions;
  readonly #log: Logger;
  readonly #store: Store;
  readonly #state: DaemonState = { accepting: true, listening: false, stopped: false };
  readonly #server: grpc.Server;
  readonly #coordinator: Coordinator;
  readonly #table: InstanceTable;
  readonly #hub: WatchHub;
  readonly #queue: RunQueue;
  readonly #workers: Workers;
  readonly #launcher: WorkloadLauncher;
  readonly #workloads: WorkloadService;
  readonly #modules: ModuleResolver;
  readonly #logs: LogKeeper;
  readonly #healthListeners = new Set<() => void>();
  #address = "";
  /** Where workloads reach this daemon over gRPC: a private unix socket in the data directory. */
  #workloadAddress = "";
  /** The framed workload socket's path, "" when workloads use gRPC. */
  #framesSocket = "";
  #framesServer: WorkloadSocketServer | undefined;
  #stopRetention: (() => void) | undefined;
  readonly #scheduler: Scheduler;
  readonly #http: HttpServer | undefined;
  #httpAddress: string | undefined;

  constructor(o: ResolvedDaemonOptions) {
    this.#o = o;
    const log = o.logger;
    const state = this.#state;
    const metrics = o.metrics;
    this.#log = log;
    this.#store = o.store;
    const access = o.accessControl ?? new AccessControl([]);
    const tokens = WorkloadTokens.fromDataDir(o.dataDir);
    this.#modules = new ModuleResolver(o.appRoot);

    const owner = o.owner ?? `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    const coordinator: Coordinator = isClusterStore(o.store)
      ? new ClusterCoordinator({
          store: o.store,
          owner,
          leaseMs: o.leaseMs,
          state,
          log,
          onLostLease: (reason) => this.#lostLease(reason),
          metrics,
        })
      : new SingleCoordinator(o.store, log, o.reconnectWindowMs);
    const hub = new WatchHub({
      store: o.store,
      log,
      maxMessageBytes: o.maxMessageBytes,
      resumeBound: () => coordinator.resumeBound(),
    });
    const logs = new LogKeeper({
      store: o.store,
      log,
      limitBytes: o.logBytes,
      markEnds: isClusterStore(o.store),
    });
    this.#logs = logs;
    const table = new InstanceTable({
      store: o.store,
      writer: coordinator,
      state,
      log,
      onSaved: (rows) => {
        hub.broadcast(rows);
        logs.saved(rows);
      },
      metrics,
    });
    const workers = new Workers(table, log);
    const queue = new RunQueue({
      table,
      workers,
      state,
      log,
      concurrency: o.concurrency,
      stopGraceMs: o.stopGraceMs,
      onDrained: () => coordinator.drained(),
      holdsRetries: !isClusterStore(o.store),
    });
    const workloads = new WorkloadService({
      table,
      queue,
      workers,
      launcher: () => this.#launcher,
      tokens,
      state,
      log,
      metrics,
      logs,
    });
    const spawner = new WorkerSpawner(
      workers,
      log,
      () => ({
        appRoot: this.#modules.appRoot,
        daemonAddress: this.#workloadAddress,
        framesSocket: this.#framesSocket,
        extraEnv: o.workloadEnv,
        logBytes: o.logBytes,
      }),
      (worker, reason) => workloads.gone(worker, reason),
      metrics,
      (instanceId, stream, chunk) => logs.pipe(instanceId, stream, chunk),
    );
    this.#launcher =
      o.workloadMode === "pool"
        ? new PoolLauncher({
            table,
            workers,
            spawner,
            tokens,
            state,
            size: o.concurrency,
            onIdle: () => queue.pump(),
            begin: (active, send) => coordinator.begin(active, send),
          })
        : new ProcessLauncher({
            table,
            workers,
            spawner,
            tokens,
            state,
            tokensRequired: access.enabled,
            warm: Math.min(o.warmWorkloads, o.concurrency),
            begin: (active, send) => coordinator.begin(active, send),
          });
    queue.useLauncher(this.#launcher);
    coordinator.attach({ table, queue, hub, workers });
    this.#coordinator = coordinator;
    this.#hub = hub;
    this.#table = table;
    this.#workers = workers;
    this.#queue = queue;
    this.#workloads = workloads;

    metrics?.observe({ instances: () => table.actives(), watchers: () => hub.size });
    if (o.http !== undefined) {
      this.#http = createHttpServer({ access, log, tls: o.tls });
      if (metrics !== undefined) addMetricsRoute(this.#http, metrics);
    }

    this.#server = new grpc.Server({
      "grpc.max_receive_message_length": o.maxMessageBytes,
      "grpc.max_send_message_length": o.maxMessageBytes,
      "grpc.max_connection_idle_ms": o.connectionIdleMs,
      // A connection whose client vanished without a word (a cut line, a half-closed socket) is
      // pinged as often as an idle one is closed, and closed when the ping goes unanswered: its
      // open calls end and its descriptor is freed, instead of staying for good.
      "grpc.keepalive_time_ms": o.connectionIdleMs,
      "grpc.keepalive_timeout_ms": Math.min(KEEPALIVE_TIMEOUT_MS, o.connectionIdleMs),
    });
    const serviceOptions: ClientServiceOptions = {
      store: o.store,
      table,
      queue,
      hub,
      coordinator,
      modules: this.#modules,
      access,
      tokens,
      state,
      log,
      maxMessageBytes: o.maxMessageBytes,
      scheduler: () => this.#scheduler,
      logs,
    };
    this.#scheduler = new Scheduler({
      store: o.store,
      modules: this.#modules,
      state,
      log,
      startInstances: async (deployment, instances) =>
        (await submitInstances(serviceOptions, { instances }, deployment)).results,
      latest: (id) => table.latest(id),
    });
    if (this.#http !== undefined) {
      const logStream: LogStreamOptions = {
        store: o.store,
        table,
        logs,
        maxMessageBytes: o.maxMessageBytes,
        clustered: isClusterStore(o.store),
      };
      addConsoleRoutes(this.#http, {
        store: o.store,
        table,
        queue,
        hub,
        scheduler: this.#scheduler,
        stop: (id, deployment) => stopInstance(serviceOptions, id, deployment),
        streamLogs: (request, deployment, sink) => streamLogs(logStream, request, deployment, sink),
        owner,
        concurrency: o.concurrency,
      });
    }
    this.#server.addService(TaskServiceService, createClientService(serviceOptions));
    this.#server.addService(
      HealthService,
      createHealthService({
        serving: () => state.accepting && state.listening,
        onChange: (listener) => {
          this.#healthListeners.add(listener);
          return () => this.#healthListeners.delete(listener);
        },
      }),
    );
    this.#server.addService(WorkloadServiceService, {
      connect: (call: grpc.ServerDuplexStream<WorkloadMessage, DaemonMessage>) => workloads.connect(call),
    });
  }

  recover(): Promise<void> {
    return this.#coordinator.recover();
  }

  get httpAddress(): string | undefined {
    return this.#httpAddress;
  }

  async listen(address: string): Promise<string> {
    // First, so a port already taken fails the start before anything else is bound.
    if (this.#http !== undefined) this.#httpAddress = await this.#http.listen(this.#o.http as string);
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
    if (framesSocket.length < MAX_SOCKET_PATH) {
      await removeStaleSocket(socket);
      await this.#bind(`unix:${socket}`, grpc.ServerCredentials.createInsecure());
      this.#workloadAddress = `unix:${socket}`;
      await removeStaleSocket(framesSocket);
      this.#framesServer = createWorkloadSocketServer(this.#o.maxMessageBytes, (call) =>
        this.#workloads.connect(call),
      );
      await this.#framesServer.listen(framesSocket);
      this.#framesSocket = framesSocket;
    } else {
      // A data directory too deep for a unix socket path: workloads use gRPC on the public address.
      this.#workloadAddress = this.#address;
    }
    this.#state.listening = true;
    this.#coordinator.start();
    this.#log.info(
      {
        address: this.#address,
        mode: this.#o.workloadMode,
        concurrency: this.#o.concurrency,
        appRoot: this.#modules.appRoot,
        ...(this.#httpAddress === undefined ? {} : { http: this.#httpAddress }),
      },
      "listening",
    );
    this.#launcher.open();
    this.#queue.pump();
    await this.#scheduler.start();
    if (this.#o.retentionMs !== undefined) {
      this.#stopRetention = startRetention(this.#store, this.#o.retentionMs, this.#log);
    }
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
    if (!this.#state.accepting) return;
    this.#state.accepting = false;
    this.#coordinator.close();
    this.#scheduler.close();
    this.#stopRetention?.();
    for (const listener of this.#healthListeners) listener();
    this.#log.info(
      { running: this.#queue.running },
      "shutting down: no new work, waiting for running instances",
    );
    const grace = new Promise<void>((done) => setTimeout(done, this.#o.shutdownGraceMs).unref());
    await Promise.race([this.#queue.whenIdle(), grace]);
    if (this.#queue.running > 0) {
      this.#log.warn(
        { running: this.#queue.running },
        "handing running instances back: their workloads reattach to the next daemon",
      );
    }
    await this.#table.flush();
    await this.#logs.flush();
    this.#logs.stop();
    // What still runs is handed back: the next daemon learns how it ends. This one neither
    // records it in a closing store nor waits for it.
    this.#state.stopped = true;
    this.#queue.clearTimers(this.#table.actives());
    this.#hub.closeAll();
    this.#workers.release();
    await new Promise<void>((done) => {
      // Lets what was written reach its peer (a workload's last FinishedAck); cuts what stays open.
      const cut = setTimeout(() => {
        this.#server.forceShutdown();
        done();
      }, CLOSE_CONNECTIONS_MS);
      this.#server.tryShutdown(() => {
        clearTimeout(cut);
        done();
      });
    });
    await this.#framesServer?.close();
    await this.#http?.close();
    await this.#store.close();
    this.#log.info("stopped");
  }

  /** The cluster gave this daemon's work to others: it must not record or run anything more. */
  #lostLease(reason: string): void {
    this.#state.stopped = true;
    this.#state.accepting = false;
    for (const worker of this.#workers.all()) worker.child?.kill("SIGKILL");
    this.#o.onFatal?.(reason);
  }
}
