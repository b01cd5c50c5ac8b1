import type { Logger } from "pino";
import { DEFAULT_LOG_BYTES } from "../../sdk/log-lines.js";
import type { Store } from "../store/store.js";
import type { AccessControl } from "./access-control.js";
import type { DaemonMetrics } from "./daemon-metrics.js";

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
  /** Finished instances older than this (by their end) are deleted. Default: kept. */
  readonly retentionMs?: number;
  /** Extra environment for workloads. */
  readonly workloadEnv?: Readonly<Record<string, string>>;
  /**
   * Also serve HTTP here (`host:port`, port 0 picks one, or `unix:/path`): `GET /metrics`, and
   * the console. The same tokens as gRPC; HTTPS with `tls`. Default: no HTTP port.
   */
  readonly http?: string;
  /** The metrics the daemon counts into. Default: a registry of its own when `http` is set, else none. */
  readonly metrics?: DaemonMetrics;
  /**
   * Stdout and stderr kept per instance, in bytes: the first quarter of it and the most recent
   * rest, with a line saying what was dropped between. Default 1 MiB; 0 keeps none.
   */
  readonly logBytes?: number;
  /**
   * Process mode: runner processes started ahead of demand, each waiting for one instance (its
   * TypeScript loader already loaded), so an instance's start does not wait for a process to
   * start. At most the concurrency; 0 starts each process when its instance starts. Default 2.
   */
  readonly warmWorkloads?: number;
}

/** The options with every default filled in. */
export type ResolvedDaemonOptions = Required<
  Omit<
    DaemonOptions,
    "accessControl" | "workloadEnv" | "tls" | "owner" | "onFatal" | "retentionMs" | "http" | "metrics"
  >
> &
  DaemonOptions;

export const DAEMON_DEFAULTS = {
  concurrency: 4,
  stopGraceMs: 10_000,
  maxMessageBytes: 4 * 1024 * 1024,
  connectionIdleMs: 60_000,
  workloadMode: "process",
  reconnectWindowMs: 10_000,
  shutdownGraceMs: 10_000,
  leaseMs: 10_000,
  logBytes: DEFAULT_LOG_BYTES,
  warmWorkloads: 2,
} as const;

export function resolveDaemonOptions(options: DaemonOptions): ResolvedDaemonOptions {
  return { ...DAEMON_DEFAULTS, ...options };
}

/**
 * What every part of a daemon may ask about its life: whether it takes new work, whether it
 * listens yet, and whether it has stopped recording (after shutdown, or a lost lease).
 */
export interface DaemonState {
  /** New work is taken (false from the start of shutdown). */
  accepting: boolean;
  /** The services are bound: workloads can reach the daemon. */
  listening: boolean;
  /** Set once the daemon has written its last: nothing after it is recorded. */
  stopped: boolean;
}
