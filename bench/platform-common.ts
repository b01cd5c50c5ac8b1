/**
 * What the platform sections share: a real daemon process from the build (as users run it), an
 * SDK client for it, the daemon's RSS, percentiles and small process helpers.
 *
 * Set `BENCH_DAEMON_CPU_PROF=<dir>` to have every daemon the sections start write a V8 CPU
 * profile there when it stops (`--cpu-prof` on the daemon process only, not its workloads), and
 * `BENCH_DAEMON_NODE_ARGS` to pass other node flags to the daemon (space-separated).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { PlatformExecutor } from "../index.js";
import { benchLatencyProbe, benchStopProbe, nowMicros } from "./tasks.js";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const CLI = join(ROOT, "dist/executor-platform/cli/cli.js");

/** Options of {@link startBenchDaemon}. */
export interface BenchDaemonOptions {
  readonly mode: "pool" | "process";
  readonly concurrency: number;
  /** An existing data directory (a restart); default a new temporary one. */
  readonly dataDir?: string;
  /** More `serve` flags. */
  readonly args?: readonly string[];
}

/** A daemon process on 127.0.0.1:0. */
export interface BenchDaemon {
  readonly address: string;
  /** The HTTP port's address, when started with `--http`. */
  readonly http: string | undefined;
  readonly pid: number;
  readonly dataDir: string;
  /** VmRSS of the daemon process, in bytes. */
  rss(): number;
  /** SIGTERM, and wait for the exit. */
  stop(): Promise<void>;
  /** {@link stop}, then delete the data directory. */
  dispose(): Promise<void>;
}

/** Starts `numerous-executor serve` from `dist/` and waits for its "listening" line. */
export async function startBenchDaemon(options: BenchDaemonOptions): Promise<BenchDaemon> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "nt-bench-"));
  const profileDir = process.env.BENCH_DAEMON_CPU_PROF;
  const nodeArgs = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [];
  nodeArgs.push(...(process.env.BENCH_DAEMON_NODE_ARGS ?? "").split(" ").filter((arg) => arg !== ""));
  const env = { ...process.env };
  // The daemon passes its environment on to workloads; keep the bench's own flags out of it.
  delete env.NODE_OPTIONS;
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      CLI,
      "serve",
      "--listen",
      "127.0.0.1:0",
      "--data-dir",
      dataDir,
      "--app-root",
      ROOT,
      "--workload-mode",
      options.mode,
      "--concurrency",
      String(options.concurrency),
      ...(options.args ?? []),
    ],
    { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let http: string | undefined;
  const address = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (entry.msg === "listening") {
        http = typeof entry.http === "string" ? entry.http : undefined;
        resolve(entry.address as string);
      } else if (typeof entry.level === "number" && entry.level >= 50)
        process.stderr.write(`daemon: ${line}\n`);
    });
    void exited.then(() => reject(new Error(`the daemon exited before listening: ${stderr.join("")}`)));
  });
  const pid = child.pid as number;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  return {
    address,
    http,
    pid,
    dataDir,
    rss: () => rssOf(pid),
    stop,
    async dispose() {
      await stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** An SDK client of the daemon at `address`, as an app would make it. */
export function platformExecutor(address: string): PlatformExecutor {
  return new PlatformExecutor({
    address,
    accessToken: undefined,
    deploymentId: undefined,
    tlsCaFile: undefined,
  });
}

/** VmRSS of a process, in bytes, from `/proc/<pid>/status`. */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** The `p`-th percentile (0..100) of `values`, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** The path of `command` on PATH, or undefined. */
export function which(command: string): string | undefined {
  const found = spawnSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" });
  const path = found.stdout.trim();
  return found.status === 0 && path !== "" ? path : undefined;
}

/** Resolves when `child` has exited (at once when it already has). */
export function exitOf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Mebibytes, for notes. */
export function mib(bytes: number): number {
  return bytes / 2 ** 20;
}

/** The pids of a process's live descendants, from `/proc/<pid>/task/<tid>/children`. */
export function descendantsOf(pid: number): number[] {
  const found: number[] = [];
  const visit = (parent: number) => {
    let children: string;
    try {
      children = readFileSync(`/proc/${parent}/task/${parent}/children`, "utf8");
    } catch {
      return;
    }
    for (const child of children.trim().split(/\s+/)) {
      if (child === "") continue;
      found.push(Number(child));
      visit(Number(child));
    }
  };
  visit(pid);
  return found;
}

const CLOCK_TICKS = 100;

/** User + system CPU seconds the live processes `pids` used so far (gone ones count 0). */
export function cpuSecondsOf(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue;
    }
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLOCK_TICKS;
}

/** User + system CPU seconds of this process so far. */
export function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/**
 * A note on how busy the machine was: the 1-minute load average when the section started and
 * ended, against the CPU count. Other work on the machine skews every figure of a section.
 */
export function loadNote(startLoad: number): string {
  const end = loadavg()[0] as number;
  return `machine: ${cpus().length} CPUs, 1-min load average ${startLoad.toFixed(2)} at the start, ${end.toFixed(2)} at the end (the bench itself included)`;
}

/** The 1-minute load average now, for {@link loadNote}. */
export function loadNow(): number {
  return loadavg()[0] as number;
}

/** What one {@link progressRun} measured. */
export interface ProgressRun {
  /** Milliseconds from each step's `setOutput` + `setProgress` to the client's seeing it, in step order. */
  readonly samples: number[];
  /** Steps that reached the client on their own (the others were coalesced with a later one). */
  readonly alone: number;
}

/**
 * One probe instance of `steps` steps, every step timed: a step that the executor coalesced
 * with later ones reaches the client when the first later value does, and counts with that
 * latency, so the slow steps that coalescing hides are not left out of the percentiles.
 */
export async function progressRun(steps: number, gapMs: number): Promise<ProgressRun> {
  const instance = benchLatencyProbe(steps, gapMs);
  // The steps as the client saw them: [step, heardAt], steps increasing.
  const heard: Array<readonly [number, number]> = [];
  let last = 0;
  instance.onChange(() => {
    const heardAt = nowMicros();
    const step = instance.isDone() ? steps : Math.round(instance.progress * steps);
    if (step <= last) return;
    last = step;
    heard.push([step, heardAt]);
  });
  const sent = await instance.wait({ timeoutMs: 60_000 + steps * gapMs * 4 });
  if (!Array.isArray(sent) || sent.length !== steps) {
    throw new Error(`the latency probe returned ${sent.length} send times, not ${steps}`);
  }
  const samples: number[] = [];
  let next = 0;
  for (let step = 1; step <= steps; step++) {
    while (next < heard.length && (heard[next] as readonly [number, number])[0] < step) next++;
    const seen = heard[next];
    if (seen === undefined) throw new Error(`progress step ${step} of ${steps} never reached the client`);
    samples.push((seen[1] - (sent[step - 1] as number)) / 1000);
  }
  return { samples, alone: heard.length };
}

/**
 * `n` stops, one instance each, on the current executor; the milliseconds from the client's
 * `stop()` to the task's signal aborting in its workload.
 */
export async function stopRun(n: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const instance = benchStopProbe();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the stop probe never said it was ready")), 30_000);
      const check = () => {
        if (instance.output?.ready === true) {
          clearTimeout(timer);
          off();
          resolve();
        } else if (instance.isDone()) {
          clearTimeout(timer);
          off();
          reject(new Error(`the stop probe ended ${instance.status} before it was ready`));
        }
      };
      const off = instance.onChange(check);
      check();
    });
    const stoppedAt = nowMicros();
    const stopping = instance.stop();
    const abortedAt = await instance.wait({ timeoutMs: 30_000 });
    await stopping;
    samples.push((abortedAt - stoppedAt) / 1000);
  }
  return samples;
}
