/**
 * Process mode keeps runners started ahead of demand (issue 14, `--warm-workloads`): an instance
 * starts on a runner that was already up, each instance still gets a process of its own, the
 * runners are replaced as they are used, and an instance that needs a token of its own gets a
 * process started for it. Real daemon processes; which process ran what, read from the tasks.
 */
import { readFileSync, readdirSync } from "node:fs";
import { PlatformExecutor, setExecutor } from "numerous-tasks";
import { afterEach, describe, expect, it } from "vitest";
import { whereAmI } from "./fixtures/warm-tasks.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";
import { pollUntil } from "./helpers/deadline.js";

const daemons: DaemonProcess[] = [];
const executors: PlatformExecutor[] = [];

afterEach(async () => {
  for (const executor of executors.splice(0)) await executor.close();
  for (const daemon of daemons.splice(0)) {
    await daemon.stop();
    removeDataDir(daemon.dataDir);
  }
});

async function start(args: readonly string[], accessToken?: string): Promise<DaemonProcess> {
  const daemon = await startDaemon({ args: ["--workload-mode", "process", ...args] });
  daemons.push(daemon);
  const executor = new PlatformExecutor({
    address: daemon.address,
    accessToken,
    deploymentId: undefined,
    tlsCaFile: undefined,
  });
  executors.push(executor);
  setExecutor(executor);
  return daemon;
}

/** The daemon's workload processes waiting for an instance (started with NUMEROUS_WORKLOAD_WARM=1). */
function warmRunnersOf(daemon: DaemonProcess): number[] {
  const parent = String(daemon.child.pid);
  const warm: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The parent pid is the fourth field, after the command in parentheses.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1] !== parent) continue;
      const environ = readFileSync(`/proc/${entry}/environ`, "utf8").split("\0");
      if (environ.includes("NUMEROUS_WORKLOAD_WARM=1")) warm.push(Number(entry));
    } catch {
      // It exited while we looked.
    }
  }
  return warm;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("warm workloads (process mode)", () => {
  it("starts an instance on a runner that was up before it was submitted, one process per instance", async () => {
    const daemon = await start(["--concurrency", "2"]);
    let ready: number[] = [];
    await pollUntil(() => (ready = warmRunnersOf(daemon)).length === 2, "two warm runners", 30_000);
    const first = await whereAmI(1).wait();
    expect(ready).toContain(first.pid);
    expect(first.warm).toBe("1");
    // As in any process-mode workload: its instance and its input, in its environment.
    expect(first.instanceId).toMatch(/\S/);
    expect(first.input).not.toBeNull();

    const more = await Promise.all([2, 3, 4, 5, 6].map((arg) => whereAmI(arg).wait()));
    expect(more.map((where) => where.arg)).toEqual([2, 3, 4, 5, 6]);
    const pids = [first.pid, ...more.map((where) => where.pid)];
    expect(new Set(pids).size).toBe(pids.length);
    // Used runners are replaced: two wait again, none of them one that ran an instance.
    let fresh: number[] = [];
    await pollUntil(
      () => {
        fresh = warmRunnersOf(daemon);
        return fresh.length === 2 && fresh.every((pid) => !pids.includes(pid));
      },
      "two fresh warm runners",
      30_000,
    );
    // They end with the daemon.
    await daemon.stop();
    await pollUntil(() => fresh.every((pid) => !alive(pid)), "the warm runners to exit", 30_000);
  });

  it("starts none with --warm-workloads 0", async () => {
    await start(["--concurrency", "2", "--warm-workloads", "0"]);
    const where = await whereAmI(1).wait();
    expect(where.warm).toBeNull();
  });

  it("gives an instance that needs its deployment's token a process started for it", async () => {
    // A warm runner has no deployment's token; with tokens required, a task gets its own.
    await start(["--concurrency", "2", "--token", "secret-token"], "secret-token");
    const where = await whereAmI(1).wait();
    expect(where.warm).toBeNull();
  });
});
