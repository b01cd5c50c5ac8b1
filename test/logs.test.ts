/**
 * Logs (SPEC §6): each instance's stdout and stderr, kept within a budget, read and followed
 * through the SDK (`instance.logs()`) and the command line (`tasks logs`), against real daemon
 * processes in both workload modes; what each workload used, shown by `get`; a flood kept to
 * its budget; and the local executor's budget. (Attribution of console output when instances
 * print at once is in the executor contract, test/executor-contract-logs.ts.)
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  LocalExecutor,
  PlatformExecutor,
  type TaskInstanceState,
  TaskNotFoundError,
  getTaskInstance,
  setExecutor,
} from "numerous-tasks";
import { afterEach, describe, expect, it } from "vitest";
import { floods, prints, printsAroundFlag } from "./fixtures/log-tasks.js";
import { climbs } from "./fixtures/security-tasks.js";
import { runCli, startCli } from "./helpers/cli-process.js";
import {
  type DaemonProcess,
  type DaemonProcessOptions,
  removeDataDir,
  startDaemon,
} from "./helpers/daemon-process.js";
import { withDeadline } from "./helpers/deadline.js";
import { collect, linesOf, printed } from "./executor-contract-logs.js";
import { until } from "./helpers/handles.js";

const daemons: DaemonProcess[] = [];
const executors: Array<{ close(): Promise<void> }> = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const executor of executors.splice(0)) await executor.close();
  for (const daemon of daemons.splice(0)) {
    await daemon.stop();
    // Pool workers of a daemon killed with -9 reattach to the next one, which does not end them
    // at its shutdown (it never started them): they would give up on their own a minute later.
    killWorkloadsOf(daemon.dataDir);
    removeDataDir(daemon.dataDir);
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A daemon, and the SDK connected to it. */
async function start(options: DaemonProcessOptions = {}): Promise<DaemonProcess> {
  const daemon = await startDaemon(options);
  daemons.push(daemon);
  connect(daemon);
  return daemon;
}

function connect(daemon: DaemonProcess): void {
  const executor = new PlatformExecutor({
    address: daemon.address,
    accessToken: undefined,
    deploymentId: undefined,
    tlsCaFile: undefined,
  });
  executors.push(executor);
  setExecutor(executor);
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "nt-logs-"));
  dirs.push(dir);
  return dir;
}

/** SIGKILLs the workload processes whose daemon's data directory is `dataDir` (Linux: /proc). */
function killWorkloadsOf(dataDir: string): void {
  const mark = `NUMEROUS_WORKLOAD_SOCKET=${join(dataDir, "workload-frames.sock")}\0`;
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      if (`${readFileSync(`/proc/${pid}/environ`, "utf8")}\0`.includes(mark))
        process.kill(Number(pid), "SIGKILL");
    } catch {
      // Gone, or not ours to read.
    }
  }
}

function sizeOf(dir: string): number {
  let bytes = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    bytes += entry.isDirectory() ? sizeOf(path) : entry.isFile() ? statSync(path).size : 0;
  }
  return bytes;
}

describe.each(["process", "pool"] as const)("logs in %s mode", (mode) => {
  // One worker unless a test needs more: pool workers start at once, and each takes a while.
  const serve = (args: string[] = []) => ["--workload-mode", mode, "--concurrency", "1", ...args];

  it("keeps a task's stdout and stderr, read through the SDK and the command line, and `get` shows what its workload used", async () => {
    const daemon = await start({ args: serve() });
    const instance = prints("p", 30);
    await instance.wait();

    const lines = await collect(instance.logs(), "the logs");
    const want = printed("p", 30);
    expect(linesOf(lines, "stdout")).toEqual(want.stdout);
    expect(linesOf(lines, "stderr")).toEqual(want.stderr);
    const times = lines.map((line) => line.at.getTime());
    expect(times.every((at) => at >= (instance.startedAt?.getTime() ?? 0) - 1000)).toBe(true);
    expect(linesOf(await collect(instance.logs({ tail: 2 }), "the last two lines"))).toEqual(
      linesOf(lines).slice(-2),
    );

    const env = { NUMEROUS_EXECUTOR_ADDRESS: daemon.address };
    const cli = await runCli(["tasks", "logs", instance.id], { env });
    expect(cli.code).toBe(0);
    expect(cli.stdout).toBe(`${want.stdout.join("\n")}\n`);
    expect(cli.stderr).toBe(`${want.stderr.join("\n")}\n`);
    const tail = await runCli(["tasks", "logs", instance.id, "--tail", "3", "--json"], { env });
    expect(tail.code).toBe(0);
    expect(
      tail.stdout
        .trimEnd()
        .split("\n")
        .map((line) => (JSON.parse(line) as { line: string }).line),
    ).toEqual(linesOf(lines).slice(-3));
    const unknown = await runCli(["tasks", "logs", "no-such-instance"], { env });
    expect(unknown.code).toBe(4);

    expect(instance.cpuSeconds).toBeGreaterThan(0);
    expect(instance.peakMemoryBytes).toBeGreaterThan(1024 * 1024);
    // A process-mode workload exits once its end is recorded; a pool worker goes on.
    expect(instance.exitCode).toBe(mode === "process" ? 0 : undefined);
    const get = await runCli(["tasks", "get", instance.id], { env });
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(/cpu: \d+\.\d\d s\s+peak memory: [\d.]+ MiB/);
    if (mode === "process") expect(get.stdout).toContain("exit code: 0");
  }, 60_000);

  it("follows a running instance until it ends, through the SDK and `tasks logs --follow`", async () => {
    const daemon = await start({ args: serve() });
    const flag = join(tempDir(), "go");
    const instance = printsAroundFlag("f", flag);
    await until(instance, (i) => i.progress === 0.5, "progress 0.5");

    const followed = collect(instance.logs({ follow: true }), "the followed logs to end");
    const cli = startCli(["tasks", "logs", instance.id, "--follow"], {
      env: { NUMEROUS_EXECUTOR_ADDRESS: daemon.address },
    });
    await withDeadline(cli.waitForOutput("f before\n"), "the command to print the first line");
    writeFileSync(flag, "");

    expect(linesOf(await followed)).toEqual(["f before", "f after"]);
    const result = await withDeadline(cli.exited, "the following command to exit");
    expect(result).toMatchObject({ code: 0, stdout: "f before\nf after\n", stderr: "" });
    expect(instance.status).toBe("completed");
    // Following an instance that has ended gives what is kept, and ends.
    expect(
      linesOf(await collect(instance.logs({ follow: true, tail: 1 }), "the follow of an ended instance")),
    ).toEqual(["f after"]);
  });

  it("keeps logs across a daemon restart, even a kill", async () => {
    const first = await start({ args: serve() });
    const instance = prints("r", 20);
    await instance.wait();
    const before = linesOf(await collect(instance.logs(), "the logs before the restart"));
    expect(before).toHaveLength(printed("r", 20).stdout.length + printed("r", 20).stderr.length);

    await first.kill9();
    daemons.splice(daemons.indexOf(first), 1);
    const second = await start({ dataDir: first.dataDir, args: serve() });
    const again = await getTaskInstance(instance.id);
    expect(again?.status).toBe("completed");
    expect(again).toBeDefined();
    expect(linesOf(await collect((again as TaskInstanceState).logs(), "the logs after the restart"))).toEqual(
      before,
    );
    const cli = await runCli(["tasks", "logs", instance.id], {
      env: { NUMEROUS_EXECUTOR_ADDRESS: second.address },
    });
    expect(cli.stdout).toBe(`${printed("r", 20).stdout.join("\n")}\n`);
  }, 60_000);

  it("bounds a task that prints 100 MB, and the daemon carries on serving meanwhile", async () => {
    const logBytes = 256 * 1024;
    const daemon = await start({ args: serve(["--log-bytes", String(logBytes), "--concurrency", "2"]) });
    const flag = join(tempDir(), "enough");
    const total = 100 * 1024 * 1024;
    const flood = floods(total, flag);
    await until(flood, (i) => i.progress >= 0.05, "the flood to be under way");

    // While it floods: another instance's progress and end arrive, and a get is answered.
    const climber = climbs(4, 250);
    const seen: number[] = [];
    climber.onChange((i) => seen.push(i.progress));
    expect(await withDeadline(climber.wait(), "the other instance to complete")).toEqual({ steps: 4 });
    expect(seen.filter((p) => p > 0 && p < 1).length).toBeGreaterThan(0);
    const got = await withDeadline(getTaskInstance(flood.id), "a get while the flood goes on", 10_000);
    expect(got?.status).toBe("running");
    expect(existsSync(flag)).toBe(false);

    writeFileSync(flag, "");
    const printed = (await withDeadline(flood.wait(), "the flood to end", 25_000)) as number;
    expect(printed).toBeGreaterThanOrEqual(total);

    const lines = await collect(flood.logs(), "the flood's logs");
    const kept = lines.reduce((sum, line) => sum + Buffer.byteLength(line.line) + 1, 0);
    expect(kept).toBeLessThanOrEqual(logBytes + 1024);
    expect(kept).toBeGreaterThan(logBytes / 2);
    expect(lines[0]?.line).toBe("flood begins");
    expect(lines.at(-1)?.line).toBe("flood ends");
    const markers = lines.filter((line) => line.line.includes("of output not kept here"));
    expect(markers).toHaveLength(1);
    const dropped = Number(/… (\d+) lines/.exec(markers[0]?.line ?? "")?.[1]);
    expect(dropped).toBeGreaterThan((total / 100) * 0.9);
    // The store holds the budget, not the flood.
    expect(sizeOf(daemon.dataDir)).toBeLessThan(25 * 1024 * 1024);
  }, 90_000);
});

describe("logs in pool mode", () => {
  it("goes on following an instance across a daemon restart: its worker reattaches and sends the rest", async () => {
    const first = await start({ args: ["--workload-mode", "pool", "--concurrency", "1"] });
    const flag = join(tempDir(), "go");
    const instance = printsAroundFlag("x", flag);
    await until(instance, (i) => i.progress === 0.5, "progress 0.5");
    const seen: string[] = [];
    let sawBefore: () => void = () => {};
    const before = new Promise<void>((resolve) => {
      sawBefore = resolve;
    });
    const followed = withDeadline(
      (async () => {
        for await (const line of instance.logs({ follow: true })) {
          seen.push(line.line);
          if (line.line === "x before") sawBefore();
        }
      })(),
      "the follow to end after the restart",
      40_000,
    );
    await withDeadline(before, "the follow to see the first line");

    await first.kill9();
    daemons.splice(daemons.indexOf(first), 1);
    const second = await startDaemon({
      dataDir: first.dataDir,
      listen: first.address,
      args: ["--workload-mode", "pool", "--concurrency", "1"],
    });
    daemons.push(second);
    await second.waitForLog((entry) => entry.msg === "workload reattached", "the worker to reattach");
    writeFileSync(flag, "");
    await followed;
    expect(seen).toEqual(["x before", "x after"]);
    expect(await instance.wait()).toBe("x");
  }, 60_000);
});

describe("logs and access", () => {
  it("shows an instance's logs only to a token of its deployment", async () => {
    const daemon = await startDaemon({ args: ["--tokens", "token-aaaa dep-a;token-bbbb dep-b"] });
    daemons.push(daemon);
    const as = (accessToken: string | undefined, deploymentId: string | undefined) => {
      const executor = new PlatformExecutor({
        address: daemon.address,
        accessToken,
        deploymentId,
        tlsCaFile: undefined,
      });
      executors.push(executor);
      return executor;
    };
    const a = as("token-aaaa", "dep-a");
    setExecutor(a);
    const instance = prints("secret", 3);
    await instance.wait();
    expect(linesOf(await collect(a.logs(instance.id, {}), "the owner's read"))).toContain("secret out 2");

    const other = collect(as("token-bbbb", "dep-b").logs(instance.id, {}), "another deployment's read");
    await expect(other).rejects.toBeInstanceOf(TaskNotFoundError);
    const anonymous = collect(
      as(undefined, undefined).logs(instance.id, { follow: true }),
      "a read without a token",
    );
    await expect(anonymous).rejects.toMatchObject({ code: "EXECUTOR_CONFIG" });
    const cli = await runCli(["tasks", "logs", instance.id], {
      env: {
        NUMEROUS_EXECUTOR_ADDRESS: daemon.address,
        NUMEROUS_API_ACCESS_TOKEN: "token-bbbb",
        NUMEROUS_DEPLOYMENT_ID: "dep-b",
      },
    });
    expect(cli).toMatchObject({ code: 4, stdout: "" });
  });
});

describe("logs in the local executor", () => {
  it("keeps the first part and the most recent part of a long output, and says what it dropped", async () => {
    const executor = new LocalExecutor({ logBytes: 2048 });
    executors.push(executor);
    setExecutor(executor);
    const instance = prints("big", 500);
    await instance.wait();
    const lines = linesOf(await collect(instance.logs(), "the logs"));
    expect(lines[0]).toBe("big out 0");
    expect(lines.at(-1)).toBe("big last");
    const marker = lines.findIndex((line) => line.includes("of output not kept here"));
    expect(marker).toBeGreaterThan(0);
    const kept = lines.filter((_, i) => i !== marker);
    expect(kept.reduce((sum, line) => sum + line.length + 1, 0)).toBeLessThanOrEqual(2048);
    const dropped = Number(/… (\d+) lines/.exec(lines[marker] ?? "")?.[1]);
    expect(dropped + kept.length).toBe(printed("big", 500).stdout.length + printed("big", 500).stderr.length);
  });
});
