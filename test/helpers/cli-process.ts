import { spawn } from "node:child_process";
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

/** Runs `numerous-executor ...args` from the build, as a user would, and waits for it to exit. */
export function runCli(args: readonly string[], options: RunCliOptions = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? process.cwd(),
    env: cliEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout: stdout.join(""), stderr: stderr.join("") }));
  });
}
