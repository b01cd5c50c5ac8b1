/**
 * Runs the real daemon (`numerous-executor serve` from `dist/`) for the chaos harness: starts
 * it, kills it with SIGKILL, restarts it on the same address and data directory, and notices
 * when it dies without being told to. Every log line goes to a file per generation, so a
 * violation can point at the lines around it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, rmSync, type WriteStream } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** Options of {@link createDaemonSupervisor}. */
export interface DaemonSupervisorOptions {
  readonly cli: string;
  readonly root: string;
  /** `127.0.0.1:<port>` or `unix:<path>`; the same for every generation. */
  readonly listen: string;
  readonly dataDir: string;
  /** Where `daemon-<generation>.log` files go. */
  readonly logDir: string;
  readonly args: readonly string[];
  /** Flags for node itself, before the CLI path. */
  readonly nodeArgs?: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Called once per unexpected exit (a crash), with what is known about it. */
  readonly onCrash: (crash: DaemonCrash) => void;
  /**
   * Start a daemon that exited on its own again, as an operator's process supervisor would (a
   * daemon of a cluster exits when it finds its lease taken). The crash is still reported; the
   * time until it listens again counts as a downtime.
   */
  readonly restartOnCrash?: boolean;
  /** Called with every JSON log line, e.g. to learn a cluster daemon's name. */
  readonly onLog?: (generation: number, entry: Record<string, unknown>) => void;
}

/** A start that ended before the daemon listened. */
export interface FailedStart {
  readonly generation: number;
  readonly at: number;
  readonly stderr: string;
  /** One of the tries to start it again after it exited on its own: that exit is the one reported. */
  readonly afterCrash: boolean;
}

export interface DaemonCrash {
  readonly generation: number;
  readonly pid: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly at: number;
  readonly stderr: string;
}

/** A log line at warn level or above, kept in memory for reports. */
export interface DaemonLogLine {
  readonly generation: number;
  readonly line: number;
  readonly entry: Record<string, unknown>;
}

export interface DaemonSupervisor {
  readonly address: string;
  /** The current generation's process id; undefined while down. */
  readonly pid: number | undefined;
  readonly generation: number;
  /**
   * Times the daemon was unreachable because the harness killed it (or, with `restartOnCrash`,
   * it exited on its own): [down, listening again].
   */
  readonly downtimes: ReadonlyArray<{ from: number; to: number | undefined }>;
  readonly warnings: readonly DaemonLogLine[];
  /** Restarts that failed before the daemon listened, with its stderr. */
  readonly failedStarts: ReadonlyArray<FailedStart>;
  /** How long each generation took from its spawn to its "listening" line. */
  readonly startMs: ReadonlyArray<number>;
  /** Generations that exited on their own. */
  readonly crashed: ReadonlySet<number>;
  /** Generations started to replace one that exited on its own (the tries that failed included). */
  readonly replacements: ReadonlySet<number>;
  start(): Promise<void>;
  /** SIGKILL and wait for the exit. */
  kill9(): Promise<void>;
  /** SIGTERM and wait; resolves the exit code (null when it had to be killed after `timeoutMs`). */
  stop(timeoutMs: number): Promise<number | null>;
  logFile(generation: number): string;
  /** The (warn and above) lines of all generations that mention `text`. */
  linesMentioning(text: string): DaemonLogLine[];
}

export function createDaemonSupervisor(options: DaemonSupervisorOptions): DaemonSupervisor {
  let child: ChildProcess | undefined;
  let generation = 0;
  let expectedExit = false;
  let exited: Promise<void> = Promise.resolve();
  const downtimes: Array<{ from: number; to: number | undefined }> = [];
  const warnings: DaemonLogLine[] = [];
  const failedStarts: FailedStart[] = [];
  /** Starting again after an exit of its own: failed tries are not new crashes. */
  let recovering = false;
  const startMs: number[] = [];
  const logFile = (g: number) => join(options.logDir, `daemon-${g}.log`);
  let restarting: Promise<void> | undefined;
  const crashed = new Set<number>();
  const replacements = new Set<number>();

  const startOnce = async (): Promise<boolean> => {
    const afterCrash = recovering;
    generation++;
    if (afterCrash) replacements.add(generation);
    const mine = generation;
    const log: WriteStream = createWriteStream(logFile(mine));
    const spawnedAt = Date.now();
    const proc = spawn(
      process.execPath,
      [
        ...(options.nodeArgs ?? []),
        options.cli,
        "serve",
        "--listen",
        options.listen,
        "--data-dir",
        options.dataDir,
        "--app-root",
        options.root,
        ...options.args,
      ],
      { cwd: options.root, env: options.env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] },
    );
    const stderr: string[] = [];
    let listened = false;
    proc.stderr?.on("data", (chunk: Buffer) => {
      stderr.push(chunk.toString());
      log.write(chunk);
    });
    let lineNo = 0;
    const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
    const listening = new Promise<boolean>((resolve) => {
      lines.on("line", (line) => {
        lineNo++;
        log.write(`${line}\n`);
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        if (typeof entry.level === "number" && entry.level >= 40)
          warnings.push({ generation: mine, line: lineNo, entry });
        options.onLog?.(mine, entry);
        if (entry.msg === "listening") resolve(true);
      });
      proc.once("exit", () => resolve(false));
    });
    exited = new Promise<void>((resolve) => {
      proc.once("exit", (code, signal) => {
        if (child === proc) child = undefined;
        if (!expectedExit && !(afterCrash && !listened)) {
          crashed.add(mine);
          options.onCrash({
            generation: mine,
            pid: proc.pid ?? 0,
            code,
            signal,
            at: Date.now(),
            stderr: stderr.join("").slice(-4000),
          });
          // Only a daemon that was serving: a failed start is start()'s to try again.
          if (options.restartOnCrash && listened) {
            downtimes.push({ from: Date.now(), to: undefined });
            recovering = true;
            // Patiently, as an operator's supervisor would: the database may be out of reach.
            restarting = start(60)
              .catch(() => undefined)
              .finally(() => {
                recovering = false;
                restarting = undefined;
              });
          }
        }
        lines.once("close", () => log.end());
        resolve();
      });
    });
    child = proc;
    expectedExit = false;
    const ok = await listening;
    listened = ok;
    if (ok) startMs.push(Date.now() - spawnedAt);
    else {
      failedStarts.push({
        generation: mine,
        at: Date.now(),
        stderr: stderr.join("").slice(-4000),
        afterCrash,
      });
    }
    return ok;
  };

  const start = async (attempts = 10): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      // A failed start is reported as a crash by onCrash; keep trying so the run completes.
      if (await startOnce()) break;
      if (attempt >= attempts)
        throw new Error(`the daemon did not start after ${attempt} attempts; see ${logFile(generation)}`);
      // What an operator would do about a socket file a killed daemon left behind.
      if (options.listen.startsWith("unix:")) rmSync(options.listen.slice("unix:".length), { force: true });
      await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 200 * attempt)));
    }
    const open = downtimes.at(-1);
    if (open !== undefined && open.to === undefined) open.to = Date.now();
  };

  return {
    address: options.listen,
    get pid() {
      return child?.pid;
    },
    get generation() {
      return generation;
    },
    downtimes,
    warnings,
    failedStarts,
    startMs,
    crashed,
    replacements,
    start,
    async kill9() {
      await restarting;
      if (child === undefined) return;
      expectedExit = true;
      downtimes.push({ from: Date.now(), to: undefined });
      child.kill("SIGKILL");
      await exited;
    },
    async stop(timeoutMs) {
      await restarting;
      const proc = child;
      if (proc === undefined) return null;
      expectedExit = true;
      proc.kill("SIGTERM");
      const code = new Promise<number | null>((resolve) => proc.once("exit", (c) => resolve(c)));
      const timer = new Promise<"timeout">((resolve) =>
        setTimeout(() => resolve("timeout"), timeoutMs).unref(),
      );
      const outcome = await Promise.race([code, timer]);
      if (outcome === "timeout") {
        proc.kill("SIGKILL");
        await exited;
        return null;
      }
      await exited;
      return outcome;
    },
    logFile,
    linesMentioning(text) {
      return warnings.filter((w) => JSON.stringify(w.entry).includes(text));
    },
  };
}
