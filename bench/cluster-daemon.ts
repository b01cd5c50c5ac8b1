/**
 * The daemons of the `cluster` section: pool-mode `numerous-executor serve` processes from
 * `dist/`, on the embedded store or sharing one PostgreSQL, with what the section needs to
 * place, kill and clean them up.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { CLI, ROOT, descendantsOf, sleep } from "./platform-common.js";

export interface ClusterDaemonOptions {
  readonly concurrency: number;
  /** postgres://… shared with other daemons; default the embedded SQLite store. */
  readonly store?: string | undefined;
  readonly leaseMs?: number;
}

/** A pool-mode daemon process from `dist/` on 127.0.0.1:0. */
export interface ClusterDaemon {
  readonly address: string;
  readonly pid: number;
  readonly dataDir: string;
  /** Its name in the cluster, as its error messages give it ("" on the embedded store). */
  readonly owner: string;
  /** The address its workloads report to: `unix:<data dir>/workloads.sock`. */
  readonly workloadAddress: string;
  /** SIGKILL, and wait for the exit: nothing gets to clean up. */
  kill9(): Promise<void>;
  /** SIGTERM (SIGKILL after 20 s), wait, kill workloads left over, delete the data directory. */
  dispose(): Promise<void>;
}

export async function startClusterDaemon(options: ClusterDaemonOptions): Promise<ClusterDaemon> {
  const dataDir = mkdtempSync(join(tmpdir(), "nt-bench-cluster-"));
  const profileDir = process.env.BENCH_DAEMON_CPU_PROF;
  const nodeArgs = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [];
  nodeArgs.push(...(process.env.BENCH_DAEMON_NODE_ARGS ?? "").split(" ").filter((arg) => arg !== ""));
  const env = { ...process.env };
  // The daemon passes its environment on to workloads; keep the bench's own flags out of it.
  delete env.NODE_OPTIONS;
  const args = [
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
    "pool",
    "--concurrency",
    String(options.concurrency),
  ];
  if (options.store !== undefined) args.push("--store", options.store);
  if (options.leaseMs !== undefined) args.push("--lease-ms", String(options.leaseMs));
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let owner = "";
  let killed = false;
  const started = await new Promise<string>((resolve, reject) => {
    let address = "";
    const ready = () => {
      if (address !== "" && (options.store === undefined || owner !== "")) resolve(address);
    };
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (entry.msg === "joined the cluster") owner = String(entry.owner);
      if (entry.msg === "listening") address = String(entry.address);
      ready();
      if (typeof entry.level === "number" && entry.level >= 50 && !killed)
        process.stderr.write(`daemon: ${line}\n`);
    });
    void exited.then(() => reject(new Error(`the daemon exited before it was ready: ${stderr.join("")}`)));
  }).catch(async (error: unknown) => {
    child.kill("SIGKILL");
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  });
  const pid = child.pid as number;
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    address: started,
    pid,
    dataDir,
    owner,
    workloadAddress: `unix:${join(dataDir, "workloads.sock")}`,
    async kill9() {
      killed = true;
      if (running()) child.kill("SIGKILL");
      await exited;
    },
    async dispose() {
      const workloads = running() ? descendantsOf(pid) : [];
      if (running()) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await exited;
        clearTimeout(timer);
      }
      // Pool workers end with their daemon; give them a moment, then make sure.
      for (let i = 0; i < 20 && workloads.some(alive); i++) await sleep(100);
      killAll(workloads);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Whether `pid` is a live (not zombie) process. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** SIGKILLs those of `pids` still alive that are still workload processes of this build. */
export function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    if (!alive(pid)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (!cmdline.includes(CLI)) continue; // the pid went to someone else meanwhile
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
}
