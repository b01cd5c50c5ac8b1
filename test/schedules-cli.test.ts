/** `numerous-executor schedules list | pause | resume | delete | trigger` against a real daemon. */
import { PlatformExecutor, getTaskInstance, setExecutor, upsertSchedule } from "numerous-tasks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scheduledTick } from "./fixtures/schedule-tasks.js";
import { runCli } from "./helpers/cli-process.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";

describe("schedules on the command line", () => {
  let daemon: DaemonProcess;
  let executor: PlatformExecutor;
  let env: Record<string, string>;

  beforeAll(async () => {
    daemon = await startDaemon({ args: ["--concurrency", "2", "--workload-mode", "pool"] });
    executor = new PlatformExecutor({
      address: daemon.address,
      accessToken: undefined,
      deploymentId: undefined,
      tlsCaFile: undefined,
    });
    setExecutor(executor);
    env = { NUMEROUS_EXECUTOR_ADDRESS: daemon.address };
  });
  afterAll(async () => {
    await executor?.close();
    await daemon?.stop();
    if (daemon) removeDataDir(daemon.dataDir);
  });

  it("lists with the next fire time, pauses, resumes, triggers and deletes", async () => {
    const created = await upsertSchedule({
      name: "nightly-report",
      task: scheduledTick,
      args: ["nightly"],
      cron: "0 3 * * *",
      timezone: "Europe/Copenhagen",
    });
    const listed = await runCli(["schedules", "list"], { env });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain("nightly-report");
    expect(listed.stdout).toContain("0 3 * * * (Europe/Copenhagen)");
    expect(listed.stdout).toContain(created.nextFireAt?.toISOString());

    expect((await runCli(["schedules", "pause", "nightly-report"], { env })).stdout).toContain("paused");
    const json = JSON.parse((await runCli(["schedules", "list", "--json"], { env })).stdout) as Array<
      Record<string, unknown>
    >;
    expect(json).toMatchObject([{ name: "nightly-report", paused: true, task: "scheduledTick" }]);
    expect((await runCli(["schedules", "resume", "nightly-report"], { env })).stdout).toContain("active");

    const triggered = await runCli(["schedules", "trigger", "nightly-report"], { env });
    expect(triggered.code).toBe(0);
    const id = triggered.stdout.trim();
    await expect((await getTaskInstance(id))?.wait()).resolves.toMatchObject({ label: "nightly" });
    const again = await runCli(["schedules", "list"], { env });
    expect(again.stdout).toContain("nightly-report");

    expect((await runCli(["schedules", "delete", "nightly-report"], { env })).code).toBe(0);
    const gone = await runCli(["schedules", "pause", "nightly-report"], { env });
    expect(gone.code).toBe(4);
    expect(gone.stderr).toContain('no schedule named "nightly-report"');
    expect((await runCli(["schedules", "list"], { env })).stdout).toContain("no schedules");
  });
});
