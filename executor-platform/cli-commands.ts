import { resolve } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { pino } from "pino";
import { addClientCommands } from "./cli-tasks.js";
import { createDaemon } from "./daemon.js";
import { openSqliteStore } from "./store/sqlite-store.js";

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1)(:\d+)?$/;

function whole(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a whole number");
  return n;
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
    .description("The numerous-tasks platform executor: a gRPC daemon that runs each task instance as a workload.")
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });

  program
    .command("serve")
    .description("run the daemon")
    .addOption(new Option("--listen <address>", "host:port or unix:/path to listen on").env("NUMEROUS_EXECUTOR_LISTEN").default("127.0.0.1:7777"))
    .addOption(new Option("--data-dir <dir>", "where the durable store lives").env("NUMEROUS_EXECUTOR_DATA_DIR").default(".numerous-tasks"))
    .addOption(new Option("--app-root <dir>", "task modules are imported only from inside it").env("NUMEROUS_EXECUTOR_APP_ROOT").default("."))
    .addOption(new Option("--concurrency <n>", "instances that run at once").env("NUMEROUS_EXECUTOR_CONCURRENCY").argParser(positive).default(4))
    .addOption(new Option("--stop-grace-ms <ms>", "how long a stopped task may run on before its workload is killed").env("NUMEROUS_EXECUTOR_STOP_GRACE_MS").argParser(whole).default(10_000))
    .addOption(new Option("--max-message-bytes <n>", "largest message either service accepts").env("NUMEROUS_EXECUTOR_MAX_MESSAGE_BYTES").argParser(positive).default(4 * 1024 * 1024))
    .addOption(new Option("--workload-mode <mode>", "process: one OS process per instance; pool: warm processes reused").env("NUMEROUS_EXECUTOR_WORKLOAD_MODE").choices(["process", "pool"]).default("process"))
    .addOption(new Option("--reconnect-window-ms <ms>", "after a restart, how long running workloads have to reattach").env("NUMEROUS_EXECUTOR_RECONNECT_WINDOW_MS").argParser(whole).default(10_000))
    .addOption(new Option("--shutdown-grace-ms <ms>", "on SIGTERM, how long running instances may take to finish").env("NUMEROUS_EXECUTOR_SHUTDOWN_GRACE_MS").argParser(whole).default(10_000))
    .addOption(new Option("--token <token>", "access token every call must carry").env("NUMEROUS_EXECUTOR_TOKEN"))
    .addOption(new Option("--insecure", "allow a non-loopback address without a token").env("NUMEROUS_EXECUTOR_INSECURE"))
    .addOption(new Option("--log-level <level>", "pino log level").env("NUMEROUS_EXECUTOR_LOG_LEVEL").choices(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"))
    .action(async (options) => {
      exitCode = await serve(options);
    });

  addClientCommands(program, (code) => {
    exitCode = code;
  });

  try {
    await program.parseAsync(argv as string[], { from: "user" });
  } catch (error) {
    const code = (error as { exitCode?: number }).exitCode;
    return typeof code === "number" ? code : 2;
  }
  return exitCode;
}

interface ServeOptions {
  listen: string;
  dataDir: string;
  appRoot: string;
  concurrency: number;
  stopGraceMs: number;
  maxMessageBytes: number;
  workloadMode: "process" | "pool";
  reconnectWindowMs: number;
  shutdownGraceMs: number;
  token?: string;
  insecure?: boolean;
  logLevel: string;
}

async function serve(options: ServeOptions): Promise<number> {
  const logger = pino({ level: options.logLevel, base: { service: "numerous-executor" } });
  if (!isLoopbackAddress(options.listen) && options.token === undefined && !options.insecure) {
    logger.fatal({ address: options.listen }, "refusing to listen beyond loopback without a token: set --token (or NUMEROUS_EXECUTOR_TOKEN), or pass --insecure");
    process.stderr.write(`numerous-executor: refusing to listen on ${options.listen} without a token; set --token or pass --insecure\n`);
    return 2;
  }
  const dataDir = resolve(options.dataDir);
  const store = await openSqliteStore(dataDir);
  const daemon = await createDaemon({
    store,
    dataDir,
    appRoot: resolve(options.appRoot),
    concurrency: options.concurrency,
    stopGraceMs: options.stopGraceMs,
    maxMessageBytes: options.maxMessageBytes,
    workloadMode: options.workloadMode,
    reconnectWindowMs: options.reconnectWindowMs,
    shutdownGraceMs: options.shutdownGraceMs,
    ...(options.token === undefined ? {} : { accessToken: options.token }),
    logger,
  });
  await daemon.listen(options.listen);
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      logger.info({ signal }, "signal received");
      daemon.shutdown().then(done, (error) => {
        logger.error({ err: error }, "shutdown failed");
        done();
      });
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return 0;
}
