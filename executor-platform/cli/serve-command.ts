import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { resolve } from "node:path";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { pino } from "pino";
import { addClientCommands } from "./client-commands.js";
import { addScheduleCommands } from "./schedule-commands.js";
import { parseDuration } from "./duration.js";
import { DEFAULT_LOG_BYTES } from "../../sdk/log-lines.js";
import { type LogDestination, openStdoutDestination } from "./log-destination.js";
import { AccessControl, loadTokenGrants } from "../daemon/access-control.js";
import { createDaemon } from "../daemon/daemon.js";
import type { Store } from "../store/store.js";
import { openSqliteStore } from "../store/sqlite/sqlite-store.js";

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1)(:\d+)?$/;

function whole(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a whole number");
  return n;
}

function duration(value: string): number {
  let ms: number;
  try {
    ms = parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  if (!(ms >= 1000)) throw new InvalidArgumentError("expected a duration of at least 1s");
  return ms;
}

function positive(value: string): number {
  const n = whole(value);
  if (n < 1) throw new InvalidArgumentError("expected a whole number of at least 1");
  return n;
}

/** True for addresses only this machine can reach. */
export function isLoopbackAddress(address: string): boolean {
  return address.startsWith("unix:") || LOOPBACK.test(address);
}

/** The daemon's command line for people. */
export async function runCli(argv: readonly string[]): Promise<number> {
  let exitCode = 0;
  const program = new Command("numerous-executor")
    .description(
      "The numerous-tasks platform executor: a gRPC daemon that runs each task instance as a workload.",
    )
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });

  program
    .command("serve")
    .description("run the daemon")
    .addOption(
      new Option("--listen <address>", "host:port or unix:/path to listen on")
        .env("NUMEROUS_EXECUTOR_LISTEN")
        .default("127.0.0.1:7777"),
    )
    .addOption(
      new Option(
        "--http <address>",
        "also serve HTTP on host:port (GET /metrics; the same tokens as gRPC, HTTPS with --tls-cert); default: off",
      ).env("NUMEROUS_EXECUTOR_HTTP"),
    )
    .addOption(
      new Option("--data-dir <dir>", "where the durable store lives")
        .env("NUMEROUS_EXECUTOR_DATA_DIR")
        .default(".numerous-tasks"),
    )
    .addOption(
      new Option("--app-root <dir>", "task modules are imported only from inside it")
        .env("NUMEROUS_EXECUTOR_APP_ROOT")
        .default("."),
    )
    .addOption(
      new Option(
        "--store <url>",
        "postgres://… to share one store among several daemons (default: embedded, in the data directory)",
      ).env("NUMEROUS_EXECUTOR_STORE"),
    )
    .addOption(
      new Option("--lease-ms <ms>", "shared store: how long a daemon's lease lasts without renewal")
        .env("NUMEROUS_EXECUTOR_LEASE_MS")
        .argParser(positive)
        .default(10_000),
    )
    .addOption(
      new Option("--concurrency <n>", "instances that run at once (0: serve clients only, in a cluster)")
        .env("NUMEROUS_EXECUTOR_CONCURRENCY")
        .argParser(whole)
        .default(4),
    )
    .addOption(
      new Option("--stop-grace-ms <ms>", "how long a stopped task may run on before its workload is killed")
        .env("NUMEROUS_EXECUTOR_STOP_GRACE_MS")
        .argParser(whole)
        .default(10_000),
    )
    .addOption(
      new Option(
        "--retention <duration>",
        "delete finished instances older than this, e.g. 7d, 12h, 30m (default: keep them)",
      )
        .env("NUMEROUS_EXECUTOR_RETENTION")
        .argParser(duration),
    )
    .addOption(
      new Option("--max-message-bytes <n>", "largest message either service accepts")
        .env("NUMEROUS_EXECUTOR_MAX_MESSAGE_BYTES")
        .argParser(positive)
        .default(4 * 1024 * 1024),
    )
    .addOption(
      new Option("--connection-idle-ms <ms>", "close a client connection with no open call after this long")
        .env("NUMEROUS_EXECUTOR_CONNECTION_IDLE_MS")
        .argParser(positive)
        .default(60_000),
    )
    .addOption(
      new Option(
        "--workload-mode <mode>",
        "process: one OS process per instance; pool: warm processes reused",
      )
        .env("NUMEROUS_EXECUTOR_WORKLOAD_MODE")
        .choices(["process", "pool"])
        .default("process"),
    )
    .addOption(
      new Option(
        "--warm-workloads <n>",
        "process mode: runner processes started ahead of demand, each for one instance (at most the concurrency; 0: none)",
      )
        .env("NUMEROUS_EXECUTOR_WARM_WORKLOADS")
        .argParser(whole)
        .default(2),
    )
    .addOption(
      new Option("--reconnect-window-ms <ms>", "after a restart, how long running workloads have to reattach")
        .env("NUMEROUS_EXECUTOR_RECONNECT_WINDOW_MS")
        .argParser(whole)
        .default(10_000),
    )
    .addOption(
      new Option("--shutdown-grace-ms <ms>", "on SIGTERM, how long running instances may take to finish")
        .env("NUMEROUS_EXECUTOR_SHUTDOWN_GRACE_MS")
        .argParser(whole)
        .default(10_000),
    )
    .addOption(
      new Option("--token <token>", "access token every call must carry (all deployments)").env(
        "NUMEROUS_EXECUTOR_TOKEN",
      ),
    )
    .addOption(
      new Option(
        "--tokens-file <file>",
        "tokens bound to deployments, one a line: <token> <deployment>[,<deployment>…] (* for all)",
      ).env("NUMEROUS_EXECUTOR_TOKENS_FILE"),
    )
    .addOption(
      new Option("--tokens <grants>", "the same lines, separated by ;").env("NUMEROUS_EXECUTOR_TOKENS"),
    )
    .addOption(
      new Option("--tls-cert <file>", "serve TLS with this certificate chain (PEM)").env(
        "NUMEROUS_EXECUTOR_TLS_CERT",
      ),
    )
    .addOption(
      new Option("--tls-key <file>", "the certificate's private key (PEM)").env("NUMEROUS_EXECUTOR_TLS_KEY"),
    )
    // Not commander's .env(): it would take NUMEROUS_EXECUTOR_INSECURE=false for true.
    .addOption(
      new Option(
        "--insecure",
        "allow a non-loopback address without a token (env: NUMEROUS_EXECUTOR_INSECURE=true)",
      ),
    )
    .addOption(
      new Option(
        "--log-bytes <n>",
        "stdout and stderr kept per task instance: its first quarter and the most recent rest (0: none)",
      )
        .env("NUMEROUS_EXECUTOR_LOG_BYTES")
        .argParser(whole)
        .default(DEFAULT_LOG_BYTES),
    )
    .addOption(
      new Option("--log-level <level>", "pino log level")
        .env("NUMEROUS_EXECUTOR_LOG_LEVEL")
        .choices(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
        .default("info"),
    )
    .addOption(
      new Option(
        "--log-buffer-bytes <n>",
        "log bytes that may wait for a slow log reader; past it lines are dropped and counted, never the daemon stalled",
      )
        .env("NUMEROUS_EXECUTOR_LOG_BUFFER_BYTES")
        .argParser(positive)
        .default(4 * 1024 * 1024),
    )
    .action(async (options) => {
      exitCode = await serve(options);
    });

  addClientCommands(program, (code) => {
    exitCode = code;
  });
  addScheduleCommands(program, (code) => {
    exitCode = code;
  });

  try {
    await program.parseAsync(argv as string[], { from: "user" });
  } catch (error) {
    // Commander has printed its own errors; anything else would otherwise end in silence.
    // Its usage errors exit 1, which here means "the task failed": bad usage is 2.
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    process.stderr.write(`numerous-executor: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  return exitCode;
}

interface ServeOptions {
  listen: string;
  http?: string;
  dataDir: string;
  appRoot: string;
  concurrency: number;
  stopGraceMs: number;
  maxMessageBytes: number;
  connectionIdleMs: number;
  workloadMode: "process" | "pool";
  warmWorkloads: number;
  reconnectWindowMs: number;
  shutdownGraceMs: number;
  token?: string;
  tokensFile?: string;
  tokens?: string;
  tlsCert?: string;
  tlsKey?: string;
  store?: string;
  leaseMs: number;
  retention?: number;
  insecure?: boolean;
  logLevel: string;
  logBufferBytes: number;
  logBytes: number;
}

/** At exit, how long log lines still waiting may take to reach a reader. */
const LOG_FLUSH_MS = 1000;

async function serve(options: ServeOptions): Promise<number> {
  const destination = openStdoutDestination(options.logBufferBytes);
  try {
    return await serveWith(options, destination);
  } finally {
    await destination.flush(LOG_FLUSH_MS);
  }
}

async function serveWith(options: ServeOptions, destination: LogDestination): Promise<number> {
  const logger = pino({ level: options.logLevel, base: { service: "numerous-executor" } }, destination);
  const refuse = (message: string) => {
    logger.fatal(message);
    process.stderr.write(`numerous-executor: ${message}\n`);
    return 2;
  };
  let grants: ReturnType<typeof loadTokenGrants>;
  try {
    grants = loadTokenGrants(options);
  } catch (error) {
    return refuse(`bad access tokens: ${(error as Error).message}`);
  }
  const insecureVariable = process.env.NUMEROUS_EXECUTOR_INSECURE?.trim().toLowerCase() ?? "";
  if (!["", "0", "false", "no", "1", "true", "yes"].includes(insecureVariable)) {
    return refuse(
      `NUMEROUS_EXECUTOR_INSECURE=${JSON.stringify(process.env.NUMEROUS_EXECUTOR_INSECURE)}: expected true or false`,
    );
  }
  const insecure = options.insecure === true || ["1", "true", "yes"].includes(insecureVariable);
  if (!isLoopbackAddress(options.listen) && grants.length === 0 && !insecure) {
    return refuse(
      `refusing to listen on ${options.listen} without a token: set --token, --tokens-file or --tokens (or their NUMEROUS_EXECUTOR_ variables), or pass --insecure`,
    );
  }
  const http = options.http === "" ? undefined : options.http;
  if (http !== undefined && !isLoopbackAddress(http) && grants.length === 0 && !insecure) {
    return refuse(
      `refusing to serve HTTP on ${http} without a token: set --token, --tokens-file or --tokens (or their NUMEROUS_EXECUTOR_ variables), or pass --insecure`,
    );
  }
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    return refuse("--tls-cert and --tls-key go together");
  }
  let tls: { cert: Buffer; key: Buffer } | undefined;
  try {
    tls =
      options.tlsCert && options.tlsKey
        ? { cert: readFileSync(options.tlsCert), key: readFileSync(options.tlsKey) }
        : undefined;
  } catch (error) {
    return refuse(`cannot read the TLS files: ${(error as Error).message}`);
  }
  if (tls !== undefined) {
    // gRPC would only say so on the first handshake, to the client.
    try {
      createSecureContext(tls);
    } catch (error) {
      return refuse(`--tls-cert and --tls-key do not make a TLS identity: ${(error as Error).message}`);
    }
    const expires = new X509Certificate(tls.cert).validTo;
    if (Date.parse(expires) < Date.now())
      logger.warn({ expires }, "the TLS certificate has expired: clients will refuse it");
  }
  const dataDir = resolve(options.dataDir);
  let store: Store;
  if (options.store === undefined || options.store === "") {
    store = await openSqliteStore(dataDir);
  } else if (/^postgres(ql)?:\/\//.test(options.store)) {
    const { openPostgresStore } = await import("../store/postgres/postgres-store.js");
    store = await openPostgresStore(options.store, { logger });
  } else {
    return refuse("--store takes a postgres:// URL; leave it unset for the embedded store");
  }
  let fatal: ((reason: string) => void) | undefined;
  const died = new Promise<number>((done) => {
    fatal = () => done(1);
  });
  const daemon = await createDaemon({
    store,
    dataDir,
    appRoot: resolve(options.appRoot),
    concurrency: options.concurrency,
    stopGraceMs: options.stopGraceMs,
    maxMessageBytes: options.maxMessageBytes,
    connectionIdleMs: options.connectionIdleMs,
    workloadMode: options.workloadMode,
    warmWorkloads: options.warmWorkloads,
    reconnectWindowMs: options.reconnectWindowMs,
    shutdownGraceMs: options.shutdownGraceMs,
    accessControl: new AccessControl(grants),
    ...(tls === undefined ? {} : { tls }),
    leaseMs: options.leaseMs,
    ...(options.retention === undefined ? {} : { retentionMs: options.retention }),
    onFatal: (reason) => fatal?.(reason),
    ...(http === undefined ? {} : { http }),
    logger,
    logBytes: options.logBytes,
  });
  await daemon.listen(options.listen);
  if (!isLoopbackAddress(options.listen) && grants.length === 0) {
    logger.warn(
      { address: options.listen },
      "--insecure: anyone who can reach this address may submit, see and stop every instance",
    );
  }
  if (http !== undefined && !isLoopbackAddress(http) && grants.length === 0) {
    logger.warn({ http: daemon.httpAddress }, "--insecure: anyone who can reach the HTTP port may read it");
  }
  const stopped = new Promise<void>((done) => {
    let stopping = false;
    // Listening with on(), not once(): a signal that comes twice (npx forwarding it, a second
    // Ctrl-C) would otherwise kill the daemon in the middle of its graceful shutdown.
    const stop = (signal: string) => {
      logger.info({ signal, again: stopping }, "signal received");
      if (stopping) return;
      stopping = true;
      daemon.shutdown().then(done, (error) => {
        logger.error({ err: error }, "shutdown failed");
        done();
      });
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
  return Promise.race([stopped.then(() => 0), died]);
}
