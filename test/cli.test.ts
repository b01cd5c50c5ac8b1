/**
 * `numerous-executor tasks …` and `health`, driven as a person or a script would: the built
 * command in its own process, configured by the SDK's environment variables, against a real
 * daemon. The test makes instances through the SDK and reads what the command prints and how
 * it exits.
 */
import { spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { PlatformExecutor, type TaskInstanceState, setExecutor } from "numerous-tasks";
import { afterEach, describe, expect, it } from "vitest";
import {
  breaks,
  holdsThenAborts,
  holdsUntilStopped,
  reply,
  waitsForFile,
} from "./fixtures/security-tasks.js";
import { cliEnv, runCli, startCli } from "./helpers/cli-process.js";
import {
  CLI,
  type DaemonProcess,
  type DaemonProcessOptions,
  removeDataDir,
  startDaemon,
} from "./helpers/daemon-process.js";
import { until } from "./helpers/handles.js";

const daemons: DaemonProcess[] = [];
const executors: PlatformExecutor[] = [];
const cleanups: Array<() => void | Promise<void>> = [];

afterEach(async () => {
  for (const executor of executors.splice(0)) await executor.close();
  for (const daemon of daemons.splice(0)) {
    await daemon.stop();
    removeDataDir(daemon.dataDir);
  }
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A daemon, and the SDK connected to it. */
async function start(options: DaemonProcessOptions & { accessToken?: string } = {}): Promise<DaemonProcess> {
  const daemon = await startDaemon(options);
  daemons.push(daemon);
  const executor = new PlatformExecutor({
    address: daemon.address,
    accessToken: options.accessToken,
    deploymentId: undefined,
    tlsCaFile: undefined,
  });
  executors.push(executor);
  setExecutor(executor);
  return daemon;
}

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function settled(instance: TaskInstanceState): Promise<void> {
  await instance.wait().catch(() => undefined);
}

/** `script` (util-linux), which gives a command a pseudo-terminal: found on PATH, as a shell finds it. */
const SCRIPT = onPath("script");
if (SCRIPT === undefined) console.warn("test/cli.test.ts: the terminal test is skipped: no `script` on PATH");

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** A port nothing listens on: bound, then let go. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

describe("tasks list", () => {
  it("prints a table of the deployment's instances in creation order, and the same as JSON with --json", async () => {
    const daemon = await start();
    const done = reply("one");
    const failed = breaks("it broke");
    const running = holdsUntilStopped("held");
    await Promise.all([
      settled(done),
      settled(failed),
      until(running, (i) => i.progress === 0.5, "progress 0.5"),
    ]);
    const env = { NUMEROUS_EXECUTOR_ADDRESS: daemon.address };

    const table = await runCli(["tasks", "list"], { env });
    expect(table.code).toBe(0);
    expect(table.stderr).toBe("");
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+TASK\s+STATUS\s+PROGRESS\s+CREATED\s+FINISHED$/);
    expect(lines.slice(1).map((line) => line.split(/\s+/).slice(0, 4))).toEqual([
      [done.id, "reply", "completed", "100%"],
      [failed.id, "breaks", "failed", "25%"],
      [running.id, "holdsUntilStopped", "running", "50%"],
    ]);
    // Columns line up: each row's task and status start under their headers.
    for (const [line, instance] of [lines[1], lines[2], lines[3]].map(
      (line, i) => [line ?? "", [done, failed, running][i]] as const,
    )) {
      expect(line.indexOf(instance?.taskName ?? "?", instance?.id.length)).toBe(lines[0]?.indexOf("TASK"));
      expect(line.indexOf(instance?.status ?? "?", instance?.id.length)).toBe(lines[0]?.indexOf("STATUS"));
    }

    const json = await runCli(["tasks", "list", "--json"], { env });
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as Array<{
      id: string;
      status: string;
      result?: unknown;
      error?: { message: string };
    }>;
    expect(parsed.map((instance) => [instance.id, instance.status])).toEqual([
      [done.id, "completed"],
      [failed.id, "failed"],
      [running.id, "running"],
    ]);
    expect(parsed[0]?.result).toBe("one");
    expect(parsed[1]?.error?.message).toBe("it broke");

    const onlyFailed = await runCli(["tasks", "list", "--status", "failed", "--json"], { env });
    expect((JSON.parse(onlyFailed.stdout) as Array<{ id: string }>).map((instance) => instance.id)).toEqual([
      failed.id,
    ]);
    const paged = await runCli(["tasks", "list", "--cursor", done.id, "--limit", "1", "--json"], { env });
    expect((JSON.parse(paged.stdout) as Array<{ id: string }>).map((instance) => instance.id)).toEqual([
      failed.id,
    ]);

    const badStatus = await runCli(["tasks", "list", "--status", "finished"], { env });
    expect(badStatus).toMatchObject({ code: 2, stdout: "" });
    expect(badStatus.stderr).toContain('unknown status "finished"');
    const badLimit = await runCli(["tasks", "list", "--limit", "0"], { env });
    expect(badLimit.code).toBe(2);
    await running.stop();
  });

  it("exits 5 with a clear message when the daemon cannot be reached", async () => {
    const address = `127.0.0.1:${await closedPort()}`;
    const result = await runCli(["tasks", "list"], { env: { NUMEROUS_EXECUTOR_ADDRESS: address } });
    expect(result.code).toBe(5);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(
      new RegExp(`^numerous-executor: task executor at ${address} is unavailable: connect ECONNREFUSED`),
    );
  });

  it("exits 2 naming the variable when the daemon refuses the token", async () => {
    const daemon = await start({ args: ["--token", "the-right-token"], accessToken: "the-right-token" });
    const missing = await runCli(["tasks", "list"], { env: { NUMEROUS_EXECUTOR_ADDRESS: daemon.address } });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("NUMEROUS_API_ACCESS_TOKEN: the daemon at");
    expect(missing.stderr).toContain("missing access token (set NUMEROUS_API_ACCESS_TOKEN)");
    const right = await runCli(["tasks", "list"], {
      env: { NUMEROUS_EXECUTOR_ADDRESS: daemon.address, NUMEROUS_API_ACCESS_TOKEN: "the-right-token" },
    });
    expect(right.code).toBe(0);
  });
});

describe("tasks get", () => {
  // Five command-line processes and four tasks: on a loaded machine this outgrows the default 30 s.
  it("prints the instance and exits 0 completed or running, 1 failed, 3 cancelled, 4 unknown", async () => {
    const daemon = await start();
    const env = { NUMEROUS_EXECUTOR_ADDRESS: daemon.address };
    const done = reply({ answer: 42 });
    const failed = breaks("it broke");
    const cancelled = holdsThenAborts();
    const running = holdsUntilStopped("held");
    await Promise.all([
      settled(done),
      settled(failed),
      until(cancelled, (i) => i.progress === 0.5, "progress 0.5"),
      until(running, (i) => i.progress === 0.5, "progress 0.5"),
    ]);
    await cancelled.stop();
    await settled(cancelled);

    const completed = await runCli(["tasks", "get", done.id], { env });
    expect(completed.code).toBe(0);
    expect(completed.stdout).toContain(done.id);
    expect(completed.stdout.trimEnd().split("\n").at(-1)).toBe('completed: {"answer":42}');

    const failure = await runCli(["tasks", "get", failed.id], { env });
    expect(failure.code).toBe(1);
    expect(failure.stdout.trimEnd().split("\n").at(-1)).toBe("failed: Error: it broke");

    const stopped = await runCli(["tasks", "get", cancelled.id], { env });
    expect(stopped.code).toBe(3);
    expect(stopped.stdout.trimEnd().split("\n").at(-1)).toMatch(/^cancelled/);

    const live = await runCli(["tasks", "get", running.id, "--json"], { env });
    expect(live.code).toBe(0);
    expect(JSON.parse(live.stdout)).toMatchObject({
      id: running.id,
      status: "running",
      progress: 0.5,
      taskName: "holdsUntilStopped",
    });

    const unknown = await runCli(["tasks", "get", "no-such-instance"], { env });
    expect(unknown).toEqual({
      code: 4,
      stdout: "",
      stderr: 'numerous-executor: no task instance with id "no-such-instance"\n',
    });
    await running.stop();
  }, 90_000);
});

describe("tasks watch", () => {
  it("follows a running instance line by line when not on a terminal, and ends with the result, exit 0", async () => {
    const daemon = await start();
    const flag = join(tempDir("nt-flag-"), "go");
    const instance = waitsForFile(flag, { done: true });
    await until(instance, (i) => i.progress === 0.5, "progress 0.5");

    const watch = startCli(["tasks", "watch", instance.id], {
      env: { NUMEROUS_EXECUTOR_ADDRESS: daemon.address },
    });
    await watch.waitForOutput("running 50%\n");
    writeFileSync(flag, "");
    const result = await watch.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).toBe("");
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("running 50%");
    expect(lines.at(-2)).toBe("completed 100%");
    expect(lines.at(-1)).toBe('completed: {"done":true}');
    // One line per visible change, none repeated.
    expect(new Set(lines).size).toBe(lines.length);
  });

  it("with --json prints each snapshot as a line of JSON", async () => {
    const daemon = await start();
    const flag = join(tempDir("nt-flag-"), "go");
    const instance = waitsForFile(flag, "json");
    await until(instance, (i) => i.progress === 0.5, "progress 0.5");
    const watch = startCli(["tasks", "watch", instance.id, "--json"], {
      env: { NUMEROUS_EXECUTOR_ADDRESS: daemon.address },
    });
    await watch.waitForOutput("\n");
    writeFileSync(flag, "");
    const result = await watch.exited;
    expect(result.code).toBe(0);
    const snapshots = result.stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line) as { status: string; progress: number; result?: unknown });
    expect(snapshots[0]).toMatchObject({ status: "running", progress: 0.5 });
    expect(snapshots.at(-1)).toMatchObject({ status: "completed", progress: 1, result: "json" });
  });

  it("ends with the error and exit 1 for a failing instance", async () => {
    const daemon = await start();
    const failing = breaks("broke while watched");
    await until(failing, (i) => i.status !== "pending", "its start");
    const result = await runCli(["tasks", "watch", failing.id], {
      env: { NUMEROUS_EXECUTOR_ADDRESS: daemon.address },
    });
    expect(result.code).toBe(1);
    expect(result.stdout.trimEnd().split("\n").at(-1)).toBe("failed: Error: broke while watched");
  });

  it("exits 4 with a clear message for an unknown id", async () => {
    const daemon = await start();
    const result = await runCli(["tasks", "watch", "no-such-instance"], {
      env: { NUMEROUS_EXECUTOR_ADDRESS: daemon.address },
    });
    expect(result).toEqual({
      code: 4,
      stdout: "",
      stderr: 'numerous-executor: no task instance with id "no-such-instance"\n',
    });
  });

  it.skipIf(SCRIPT === undefined)(
    "draws a live progress bar on a terminal, then prints the result",
    async () => {
      const daemon = await start();
      const flag = join(tempDir("nt-flag-"), "go");
      const instance = waitsForFile(flag, "on a terminal");
      await until(instance, (i) => i.progress === 0.5, "progress 0.5");
      // `script` gives the command a pseudo-terminal, as a person's shell would.
      const child = spawn(
        SCRIPT as string,
        [
          "-qec",
          `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} tasks watch ${instance.id}`,
          "/dev/null",
        ],
        {
          env: cliEnv({ NUMEROUS_EXECUTOR_ADDRESS: daemon.address, COLUMNS: "100" }),
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let screen = "";
      const drawn = new Promise<void>((resolve) => {
        child.stdout.on("data", (chunk: Buffer) => {
          screen += chunk.toString();
          if (screen.includes("50% | running")) resolve();
        });
      });
      const exited = new Promise<number | null>((resolve) => child.once("close", resolve));
      await drawn;
      writeFileSync(flag, "");
      expect(await exited).toBe(0);
      expect(screen).toMatch(/waitsForFile [█░]+ 50% \| running/);
      expect(screen).toMatch(/waitsForFile █+ 100% \| completed/);
      expect(screen).toContain('completed: "on a terminal"');
      // No line-by-line fallback on a terminal.
      expect(screen).not.toContain("running 50%");
    },
  );
});

describe("tasks stop", () => {
  it("requests a stop, and with --wait exits by how the instance ended: 3 cancelled; 4 for an unknown id", async () => {
    const daemon = await start();
    const env = { NUMEROUS_EXECUTOR_ADDRESS: daemon.address };
    const aborts = holdsThenAborts();
    const returns = holdsUntilStopped("kept");
    await Promise.all(
      [aborts, returns].map((instance) => until(instance, (i) => i.progress === 0.5, "progress 0.5")),
    );

    const waited = await runCli(["tasks", "stop", aborts.id, "--wait"], { env });
    expect(waited.code).toBe(3);
    expect(waited.stdout.trimEnd().split("\n").at(-1)).toMatch(/^cancelled: AbortError: /);
    await settled(aborts);
    expect(aborts.status).toBe("cancelled");

    const asked = await runCli(["tasks", "stop", returns.id], { env });
    expect(asked).toEqual({ code: 0, stdout: `stop requested for ${returns.id}\n`, stderr: "" });
    await expect(returns.wait()).resolves.toBe("kept");
    expect(returns.status).toBe("cancelled");

    const unknown = await runCli(["tasks", "stop", "no-such-instance", "--wait"], { env });
    expect(unknown).toEqual({
      code: 4,
      stdout: "",
      stderr: 'numerous-executor: no task instance with id "no-such-instance"\n',
    });
  });
});

describe("tasks definitions", () => {
  it("lists the deployment's task definitions as a table, or JSON", async () => {
    const daemon = await start();
    const env = { NUMEROUS_EXECUTOR_ADDRESS: daemon.address };
    await Promise.all([
      reply(1).wait(),
      breaks("x")
        .wait()
        .catch(() => undefined),
    ]);
    const table = await runCli(["tasks", "definitions"], { env });
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+ID$/);
    expect(
      lines
        .slice(1)
        .map((line) => line.split(/\s+/)[0])
        .sort(),
    ).toEqual(["breaks", "reply"]);
    const json = await runCli(["tasks", "definitions", "--json"], { env });
    expect(
      (JSON.parse(json.stdout) as Array<{ id: string; name: string }>).sort((a, b) =>
        a.name.localeCompare(b.name),
      ),
    ).toEqual([breaks.definition, reply.definition]);
  });
});

describe("health", () => {
  it("prints SERVING and exits 0 for a daemon that serves; UNREACHABLE and 1 for a closed port", async () => {
    const daemon = await start();
    await expect(runCli(["health"], { env: { NUMEROUS_EXECUTOR_ADDRESS: daemon.address } })).resolves.toEqual(
      { code: 0, stdout: "SERVING\n", stderr: "" },
    );
    await expect(runCli(["health", "--address", daemon.address])).resolves.toMatchObject({
      code: 0,
      stdout: "SERVING\n",
    });
    // No token needed: probes carry none.
    const secured = await start({ args: ["--token", "a-token-for-probes"] });
    await expect(runCli(["health", "--address", secured.address])).resolves.toMatchObject({
      code: 0,
      stdout: "SERVING\n",
    });

    const address = `127.0.0.1:${await closedPort()}`;
    const closed = await runCli(["health", "--address", address, "--timeout-ms", "2000"]);
    expect(closed.code).toBe(1);
    expect(closed.stdout).toMatch(new RegExp(`^UNREACHABLE: ${address}: connect ECONNREFUSED`));
  });
});
