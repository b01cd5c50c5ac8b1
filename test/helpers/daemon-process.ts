import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { DEFAULT_DEADLINE_MS, withDeadline } from "./deadline.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = join(ROOT, "dist/executor-platform/cli/cli.js");

/** Options of {@link startDaemon}. */
export interface DaemonProcessOptions {
  /** Extra `serve` flags. */
  readonly args?: readonly string[];
  readonly dataDir?: string;
  readonly appRoot?: string;
  /**
   * Default `127.0.0.1:0`; a `unix:` path stays the same across restarts. `null` passes no
   * `--listen`, so the daemon listens where it does by default.
   */
  readonly listen?: string | null;
  readonly env?: Readonly<Record<string, string>>;
}

/** A real daemon process (on 127.0.0.1:0 unless told otherwise), its JSON log kept for assertions. */
export interface DaemonProcess {
  readonly address: string;
  readonly dataDir: string;
  readonly child: ChildProcess;
  readonly logs: Array<Record<string, unknown>>;
  /**
   * Resolves with the first log entry, logged so far or later, that `match` accepts. Rejects
   * when the daemon exits first, or after `timeoutMs` (default 20 s), naming `what`.
   */
  waitForLog(
    match: (entry: Record<string, unknown>) => boolean,
    what?: string,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** Resolves with the exit code once the process is gone. */
  readonly exited: Promise<number | null>;
  /** SIGTERM and wait. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait: nothing gets to clean up. */
  kill9(): Promise<void>;
}

/** Starts `numerous-executor serve` from the build and waits for its "listening" line. */
export async function startDaemon(options: DaemonProcessOptions = {}): Promise<DaemonProcess> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "nt-daemon-"));
  const child = spawn(
    process.execPath,
    [
      CLI,
      "serve",
      ...(options.listen === null ? [] : ["--listen", options.listen ?? "127.0.0.1:0"]),
      "--data-dir",
      dataDir,
      "--app-root",
      options.appRoot ?? ROOT,
      ...(options.args ?? []),
    ],
    { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const logs: Array<Record<string, unknown>> = [];
  const logWaiters = new Set<(entry: Record<string, unknown>) => void>();
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const logEnded = new Promise<void>((resolve) => lines.once("close", resolve));
  const address = await new Promise<string>((resolve, reject) => {
    lines.on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(entry);
      for (const waiter of [...logWaiters]) waiter(entry);
      if (entry.msg === "listening") resolve(entry.address as string);
    });
    void exited.then((code) =>
      reject(new Error(`daemon exited with ${code} before listening: ${stderr.join("")}`)),
    );
  });
  return {
    address,
    dataDir,
    child,
    logs,
    waitForLog(match, what = "a log line", timeoutMs = DEFAULT_DEADLINE_MS) {
      const found = logs.find(match);
      if (found !== undefined) return Promise.resolve(found);
      let waiter: ((entry: Record<string, unknown>) => void) | undefined;
      const logged = new Promise<Record<string, unknown>>((resolve, reject) => {
        const mine = (entry: Record<string, unknown>) => {
          if (!match(entry)) return;
          logWaiters.delete(mine);
          resolve(entry);
        };
        waiter = mine;
        logWaiters.add(mine);
        void logEnded.then(() => {
          if (logWaiters.delete(mine)) reject(new Error(`the daemon exited before logging ${what}`));
        });
      });
      return withDeadline(logged, `the daemon to log ${what}`, timeoutMs).finally(() => {
        if (waiter !== undefined) logWaiters.delete(waiter);
      });
    },
    exited,
    async stop() {
      child.kill("SIGTERM");
      return exited;
    },
    async kill9() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Removes a data directory made by {@link startDaemon}. */
export function removeDataDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
