import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { isTypeScriptModule } from "../protocol/wire.js";
import { DEFAULT_DEPLOYMENT } from "./access-control.js";

/** Daemon settings a workload must not inherit. */
const DAEMON_SECRETS = [
  "NUMEROUS_EXECUTOR_TOKEN",
  "NUMEROUS_EXECUTOR_TOKENS",
  "NUMEROUS_EXECUTOR_TOKENS_FILE",
  "NUMEROUS_EXECUTOR_TLS_KEY",
  "NUMEROUS_EXECUTOR_STORE",
];

/** Arguments above this size reach the task through its start message only. */
const MAX_INPUT_ENV_BYTES = 64 * 1024;

/** tsx, for task modules written in TypeScript; absent in a production install of compiled apps. */
const TSX: string | undefined = (() => {
  try {
    return import.meta.resolve("tsx");
  } catch {
    return undefined;
  }
})();

/** The workload entry point: `numerous-executor run`, from source or from the build. */
const CLI = fileURLToPath(
  new URL(import.meta.url.endsWith(".ts") ? "../cli/cli.ts" : "../cli/cli.js", import.meta.url),
);

/** Where a workload finds its daemon, and what it may carry. */
export interface WorkloadEnvironment {
  readonly appRoot: string;
  /** gRPC address for the SDK inside a task. */
  readonly daemonAddress: string;
  /** The framed workload socket, "" when workloads use gRPC. */
  readonly framesSocket: string;
  readonly extraEnv: Readonly<Record<string, string>> | undefined;
  /** Output a pool worker keeps per instance before it drops the middle (the daemon's --log-bytes). */
  readonly logBytes: number;
}

/**
 * What one workload process is for: one instance (process mode), one instance it will be given
 * (warm, process mode), or whatever comes (pool).
 */
export type WorkloadPurpose =
  | { readonly kind: "pool"; readonly token: string }
  /** `typescript`: load tsx ahead (the instances lately were TypeScript); else the runner loads it if its instance needs it. */
  | { readonly kind: "warm"; readonly token: string; readonly typescript: boolean }
  | {
      readonly kind: "instance";
      readonly token: string;
      readonly instanceId: string;
      readonly deploymentId: string;
      readonly module: string;
      readonly args: string | undefined;
      /** A token that lets the task call the daemon for its own deployment, when calls need one. */
      readonly deploymentToken: string | undefined;
    };

/** Starts `numerous-executor run` with the environment its purpose allows. */
export function spawnWorkload(where: WorkloadEnvironment, purpose: WorkloadPurpose): ChildProcess {
  // A pool worker has its loader ready for whatever module comes; a warm runner when TypeScript is likely.
  const needsTsx =
    CLI.endsWith(".ts") ||
    (purpose.kind === "pool"
      ? true
      : purpose.kind === "warm"
        ? purpose.typescript
        : isTypeScriptModule(purpose.module));
  const nodeArgs = needsTsx && TSX !== undefined ? ["--import", TSX] : [];
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    ...where.extraEnv,
    NUMEROUS_EXECUTOR: "platform",
    NUMEROUS_EXECUTOR_ADDRESS: where.daemonAddress,
    NUMEROUS_WORKLOAD_SOCKET: where.framesSocket,
    NUMEROUS_WORKLOAD_TOKEN: purpose.token,
    NUMEROUS_DEPLOYMENT_ID: purpose.kind === "instance" ? purpose.deploymentId : DEFAULT_DEPLOYMENT,
    NUMEROUS_WORKLOAD_LOG_BYTES: String(where.logBytes),
    // Whether TypeScript modules load already; else the runner registers tsx before one.
    NUMEROUS_WORKLOAD_TSX: nodeArgs.length > 0 ? "1" : "",
  };
  // The daemon's own secrets would let one deployment's task act for every other.
  for (const secret of DAEMON_SECRETS) delete env[secret];
  if (purpose.kind === "instance") {
    env.NUMEROUS_TASK_INSTANCE_ID = purpose.instanceId;
    // A task may run other tasks of its deployment, and only of its deployment. (A pool
    // worker serves every deployment, so it gets no such token.)
    if (purpose.deploymentToken !== undefined) env.NUMEROUS_API_ACCESS_TOKEN = purpose.deploymentToken;
    const args = purpose.args ?? "";
    if (args.length < MAX_INPUT_ENV_BYTES) env.TASK_DATA_INPUT = args;
  } else {
    // A warm runner learns its instance (and sets these) with its start.
    if (purpose.kind === "warm") env.NUMEROUS_WORKLOAD_WARM = "1";
    delete env.NUMEROUS_TASK_INSTANCE_ID;
    delete env.TASK_DATA_INPUT;
    delete env.NUMEROUS_API_ACCESS_TOKEN;
  }
  return spawn(process.execPath, [...nodeArgs, CLI, "run"], {
    cwd: where.appRoot,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
}
