import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { PlatformExecutor, getTaskInstance, setExecutor, waitForCompletion } from "numerous-tasks";
import { waitsForFlag } from "./fixtures/fault-tasks.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";

const cleanups: Array<() => void | Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function connect(daemon: DaemonProcess): PlatformExecutor {
  const executor = new PlatformExecutor({
    address: daemon.address,
    accessToken: undefined,
    deploymentId: undefined,
    tlsCaFile: undefined,
  });
  setExecutor(executor);
  cleanups.push(() => executor.close());
  return executor;
}

describe("numerous-executor serve and signals", () => {
  it("finishes its graceful shutdown when SIGTERM comes twice, as npx and a second Ctrl-C send it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nt-signals-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const flag = join(dir, "flag");
    const daemon = await startDaemon({ args: ["--shutdown-grace-ms", "120000"] });
    cleanups.push(() => {
      if (daemon.child.exitCode === null && daemon.child.signalCode === null) daemon.child.kill("SIGKILL");
      removeDataDir(daemon.dataDir);
    });
    connect(daemon);
    const instance = waitsForFlag(flag, "finished in the shutdown");
    for await (const snapshot of instance) if (snapshot.progress >= 0.5) break;

    daemon.child.kill("SIGTERM");
    await daemon.waitForLog((entry) => String(entry.msg).startsWith("shutting down"));
    daemon.child.kill("SIGTERM");
    await daemon.waitForLog((entry) => entry.msg === "signal received" && entry.again === true);
    // Still shutting down gracefully: the running task may finish, and its end is recorded.
    writeFileSync(flag, "");
    await daemon.waitForLog((entry) => entry.msg === "stopped");
    expect(await daemon.exited).toBe(0);

    const next = await startDaemon({ dataDir: daemon.dataDir, args: ["--shutdown-grace-ms", "1000"] });
    cleanups.push(async () => {
      await next.stop();
    });
    connect(next);
    const after = await getTaskInstance(instance.id);
    expect(after?.status).toBe("completed");
    expect(await waitForCompletion(instance.id)).toBe("finished in the shutdown");
  });
});
