import { type ChildProcess, spawn } from "node:child_process";
import { CLI } from "./daemon-process.js";

/** How a `numerous-executor` command ended. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@link runCli}. */
export interface RunCliOptions {
  /** Added to the test process's environment; `undefined` removes a variable. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd?: string;
}

/** The environment of a CLI run: this process's, less the SDK's variables, plus `env`. */
export function cliEnv(env: RunCliOptions["env"] = {}): NodeJS.ProcessEnv {
  const merged: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(merged)) {
    if (name.startsWith("NUMEROUS_")) delete merged[name];
  }
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) delete merged[name];
    else merged[name] = value;
  }
  return merged;
}

/** A `numerous-executor` command still running: its output so far, and its end. */
export interface CliProcess {
  readonly child: ChildProcess;
  stdout(): string;
  /** Resolves once stdout holds `text`. */
  waitForOutput(text: string): Promise<void>;
  readonly exited: Promise<CliResult>;
}

/** Starts `numerous-executor ...args` from the build, as a user would. */
export function startCli(args: readonly string[], options: RunCliOptions = {}): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? process.cwd(),
    env: cliEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  const waiters = new Set<() => void>();
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    for (const waiter of [...waiters]) waiter();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => {
      resolve({ code, stdout, stderr });
      for (const waiter of [...waiters]) waiter();
    });
  });
  return {
    child,
    stdout: () => stdout,
    waitForOutput(text) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (stdout.includes(text)) {
            waiters.delete(check);
            resolve();
          } else if (child.exitCode !== null || child.signalCode !== null) {
            waiters.delete(check);
            reject(
              new Error(`the command ended before printing ${JSON.stringify(text)}: ${stdout}${stderr}`),
            );
          }
        };
        waiters.add(check);
        check();
      });
    },
    exited,
  };
}

/** Runs `numerous-executor ...args` from the build, as a user would, and waits for it to exit. */
export function runCli(args: readonly string[], options: RunCliOptions = {}): Promise<CliResult> {
  return startCli(args, options).exited;
}
