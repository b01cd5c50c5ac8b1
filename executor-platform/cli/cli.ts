#!/usr/bin/env node
/**
 * `numerous-executor`: the platform daemon (`serve`) and its workloads (`run`).
 * `run` is started once per instance, so it loads as little as it can.
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";

export async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === "run") return runCommand();
  const { runCli } = await import("./serve-command.js");
  return runCli(argv);
}

async function runCommand(): Promise<number> {
  const { runWorkload } = await import("../workload/workload-runner.js");
  const address = process.env.NUMEROUS_EXECUTOR_ADDRESS;
  const token = process.env.NUMEROUS_WORKLOAD_TOKEN;
  if (!address || !token) {
    process.stderr.write(
      "numerous-executor run: is started by the daemon, which sets NUMEROUS_EXECUTOR_ADDRESS and NUMEROUS_WORKLOAD_TOKEN\n",
    );
    return 2;
  }
  return runWorkload({
    address,
    socket: process.env.NUMEROUS_WORKLOAD_SOCKET || undefined,
    token,
    instanceId: process.env.NUMEROUS_TASK_INSTANCE_ID || undefined,
    warm: process.env.NUMEROUS_WORKLOAD_WARM === "1",
    typescript: process.env.NUMEROUS_WORKLOAD_TSX === "1",
    logBytes: Number(process.env.NUMEROUS_WORKLOAD_LOG_BYTES) || 0,
  });
}

const invoked = process.argv[1] === undefined ? "" : realpathSync(process.argv[1]);
if (invoked === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      // A task may leave timers or sockets open; the workload's job is done.
      if (process.argv[2] === "run" || process.argv[2] === "serve") process.exit(code);
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`numerous-executor: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
