/**
 * Schedules (SPEC §5, issue 12): occurrence times at daylight-saving changes on a fixed clock,
 * bad input, and firing through the local executor, a daemon that is down across occurrences,
 * and three daemons on one PostgreSQL.
 */
import {
  LocalExecutor,
  PlatformExecutor,
  TaskInputError,
  deleteSchedule,
  listSchedules,
  pauseSchedule,
  resumeSchedule,
  setExecutor,
  triggerSchedule,
  upsertSchedule,
  type Executor,
} from "numerous-tasks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { nextOccurrence, planOccurrences } from "../sdk/schedule-times.js";
import { scheduledHold, scheduledTick } from "./fixtures/schedule-tasks.js";
import { type Cluster, startCluster } from "./helpers/cluster.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";
import { type TestPostgres, startPostgres } from "./helpers/embedded-postgres.js";

const HOUR = 3_600_000;

/** Every occurrence in [from, to), by the schedule's own rule. */
function occurrences(cron: string, timezone: string, from: string, to: string): string[] {
  const found: string[] = [];
  const end = Date.parse(to);
  for (
    let at = nextOccurrence({ cron, timezone, anchorAt: 0 }, Date.parse(from) - 1);
    at !== undefined && at < end;
  ) {
    found.push(new Date(at).toISOString());
    at = nextOccurrence({ cron, timezone, anchorAt: 0 }, at);
  }
  return found;
}

/** Polls `check` until it holds, failing with `what` after `ms`. */
async function eventually(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("occurrences at daylight-saving changes (fixed clock)", () => {
  it("fires a daily 02:30 once on the night the clocks go forward, when 02:30 does not exist", () => {
    expect(
      occurrences("30 2 * * *", "Europe/Copenhagen", "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z"),
    ).toEqual([
      "2026-03-28T01:30:00.000Z", // 02:30 CET
      "2026-03-29T01:00:00.000Z", // 02:30 does not exist: 03:00 CEST, once
      "2026-03-30T00:30:00.000Z", // 02:30 CEST
    ]);
  });

  it("fires a daily 02:30 once on the night the clocks go back, when 02:30 happens twice", () => {
    expect(
      occurrences("30 2 * * *", "Europe/Copenhagen", "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
    ).toEqual([
      "2026-10-24T00:30:00.000Z", // 02:30 CEST
      "2026-10-25T00:30:00.000Z", // the first 02:30, once
      "2026-10-26T01:30:00.000Z", // 02:30 CET
    ]);
  });

  it("keeps an hourly schedule hourly through both changes: no hour doubled or skipped in elapsed time", () => {
    for (const [from, to] of [
      ["2026-03-28T22:00:00Z", "2026-03-29T04:00:00Z"],
      ["2026-10-24T22:00:00Z", "2026-10-25T04:00:00Z"],
    ] as const) {
      const hourly = occurrences("0 * * * *", "Europe/Copenhagen", from, to).map(Date.parse);
      expect(hourly).toHaveLength(6);
      for (let i = 1; i < hourly.length; i++)
        expect((hourly[i] as number) - (hourly[i - 1] as number)).toBe(HOUR);
    }
  });

  it("plans what a downtime missed by catchUp, and fires what is simply due", () => {
    const every = { everyMs: 1_000, anchorAt: 0 };
    // Handled through 10 s, down until 14.5 s: 11, 12, 13 and 14 s were missed.
    expect(planOccurrences(every, 10_000, 14_500, "none", 14_500)).toMatchObject({ fire: [], skipped: 4 });
    expect(planOccurrences(every, 10_000, 14_500, "latest", 14_500)).toMatchObject({
      fire: [14_000],
      skipped: 3,
    });
    expect(planOccurrences(every, 10_000, 14_500, "all", 14_500)).toMatchObject({
      fire: [11_000, 12_000, 13_000, 14_000],
      skipped: 0,
      handledThrough: 14_000,
    });
    // Running since 5 s: a late timer fires every occurrence it passed, whatever catchUp says.
    expect(planOccurrences(every, 10_000, 12_200, "none", 5_000)).toMatchObject({ fire: [11_000, 12_000] });
    // At most 100 caught up.
    expect(planOccurrences(every, 0, 1_000_000, "all", 2_000_000).fire).toHaveLength(100);
  });
});

/** The schedule tests that every executor passes. */
function describeScheduling(
  name: string,
  make: () => Promise<{ executor: Executor; close(): Promise<void> }>,
) {
  describe(`schedules: ${name}`, () => {
    let handle: { executor: Executor; close(): Promise<void> } | undefined;
    afterEach(async () => {
      for (const schedule of await listSchedules().catch(() => [])) await deleteSchedule(schedule.name);
      await handle?.close();
      handle = undefined;
    });
    const use = async () => {
      handle = await make();
      setExecutor(handle.executor);
    };

    it("refuses a bad cron, an unknown time zone, a short interval and an unknown task, naming each", async () => {
      await use();
      const refusal = (options: Parameters<typeof upsertSchedule>[0]) =>
        upsertSchedule(options).then(
          () => undefined,
          (error: unknown) => error as TaskInputError,
        );
      const badCron = await refusal({ name: "x", task: scheduledTick, cron: "61 * * * *" });
      expect(badCron).toBeInstanceOf(TaskInputError);
      expect(badCron?.path).toBe("cron");
      const badZone = await refusal({
        name: "x",
        task: scheduledTick,
        cron: "0 3 * * *",
        timezone: "Mars/Olympus",
      });
      expect(badZone?.path).toBe("timezone");
      expect(badZone?.message).toContain("Mars/Olympus");
      const short = await refusal({ name: "x", task: scheduledTick, every: 500 });
      expect(short?.path).toBe("every");
      const unknown = await refusal({ name: "x", task: "noSuchTask", every: 1_000 });
      expect(unknown).toBeInstanceOf(TaskInputError);
      expect(unknown?.message).toContain("noSuchTask");
      expect(await listSchedules()).toEqual([]);
    });

    it("fires every second, pauses, resumes, changes on upsert without a second schedule, and triggers", async () => {
      await use();
      const first = await upsertSchedule({ name: "ticker", task: scheduledTick, args: ["a"], every: 1_000 });
      expect(first.nextFireAt?.getTime()).toBeGreaterThan(Date.now() - 1_000);
      await eventually("two instances", async () => (await scheduledTick.listInstances()).length >= 2);
      await pauseSchedule("ticker");
      const paused = (await scheduledTick.listInstances()).length;
      const [view] = await listSchedules();
      expect(view?.paused).toBe(true);
      expect(view?.nextFireAt).toBeUndefined();
      // Paused across two would-be occurrences: nothing fires.
      await new Promise((resolve) => setTimeout(resolve, 2_200));
      expect((await scheduledTick.listInstances()).length).toBe(paused);

      // Upsert by name changes it (args) and keeps it one schedule; it is still paused.
      const changed = await upsertSchedule({
        name: "ticker",
        task: scheduledTick,
        args: ["b"],
        every: 1_000,
      });
      expect(changed.paused).toBe(true);
      expect(changed.createdAt.getTime()).toBe(first.createdAt.getTime());
      expect((await listSchedules()).map((s) => s.name)).toEqual(["ticker"]);
      await resumeSchedule("ticker");
      await eventually("an instance with the new args", async () =>
        (await scheduledTick.listInstances()).some(
          (i) => (i.result as { label?: string } | undefined)?.label === "b",
        ),
      );
      const instances = await scheduledTick.listInstances();
      // One instance per occurrence: their occurrence times are distinct.
      const times = instances
        .filter((i) => i.scheduledFor !== undefined)
        .map((i) => i.scheduledFor?.getTime());
      expect(new Set(times).size).toBe(times.length);

      const triggered = await triggerSchedule("ticker");
      expect(triggered).toBeDefined();
      expect(await triggered?.wait()).toMatchObject({ label: "b" });
      expect(await deleteSchedule("ticker")).toBe(true);
      expect(await deleteSchedule("ticker")).toBe(false);
      expect(await pauseSchedule("ticker")).toBeUndefined();
    });

    it("skips an occurrence while the last instance still runs, with overlap: skip", async () => {
      await use();
      await upsertSchedule({
        name: "holder",
        task: scheduledHold,
        args: [2_500],
        every: 1_000,
        overlap: "skip",
      });
      await eventually("an instance that ended", async () =>
        (await scheduledHold.listInstances()).some((i) => i.isDone()),
      );
      await deleteSchedule("holder");
      const instances = await scheduledHold.listInstances();
      const spans = await Promise.all(
        instances.map(async (i) => ({ start: i.startedAt?.getTime() ?? 0, end: (await i.wait()) as number })),
      );
      spans.sort((a, b) => a.start - b.start);
      // Never two at once: each started after the one before it ended.
      for (let i = 1; i < spans.length; i++)
        expect(spans[i]?.start).toBeGreaterThanOrEqual(spans[i - 1]?.end ?? 0);
    });
  });
}

describeScheduling("local", async () => ({
  executor: new LocalExecutor({ concurrency: 4 }),
  close: async () => {},
}));

describeScheduling("platform daemon", async () => {
  const daemon = await startDaemon({ args: ["--concurrency", "4", "--workload-mode", "pool"] });
  const executor = new PlatformExecutor({
    address: daemon.address,
    accessToken: undefined,
    deploymentId: undefined,
    tlsCaFile: undefined,
  });
  return {
    executor,
    async close() {
      await executor.close();
      await daemon.stop();
      removeDataDir(daemon.dataDir);
    },
  };
});

describe("a daemon down across three occurrences", () => {
  let daemon: DaemonProcess | undefined;
  let executor: PlatformExecutor | undefined;
  afterEach(async () => {
    await executor?.close();
    if (daemon !== undefined) {
      if (daemon.child.exitCode === null) await daemon.stop();
      removeDataDir(daemon.dataDir);
    }
    daemon = undefined;
    executor = undefined;
  });

  for (const catchUp of ["none", "latest", "all"] as const) {
    it(`catchUp: ${catchUp}`, async () => {
      const connect = (address: string) =>
        new PlatformExecutor({
          address,
          accessToken: undefined,
          deploymentId: undefined,
          tlsCaFile: undefined,
        });
      daemon = await startDaemon({ args: ["--concurrency", "4", "--workload-mode", "pool"] });
      executor = connect(daemon.address);
      setExecutor(executor);
      await upsertSchedule({
        name: `down-${catchUp}`,
        task: scheduledTick,
        args: [catchUp],
        every: 1_000,
        catchUp,
      });
      await eventually("a first instance", async () => (await scheduledTick.listInstances()).length >= 1);
      const { dataDir, address } = daemon;
      await daemon.stop();
      await executor.close();
      // The downtime itself: three and a half intervals.
      await new Promise((resolve) => setTimeout(resolve, 3_500));
      daemon = await startDaemon({
        args: ["--concurrency", "4", "--workload-mode", "pool"],
        dataDir,
        listen: address,
      });
      executor = connect(daemon.address);
      setExecutor(executor);
      const caughtUp = await daemon.waitForLog(
        (entry) => entry.msg === "schedule missed occurrences while the daemon was down",
        "the catch-up log line",
      );
      const missed = caughtUp.missed as number;
      expect(missed).toBeGreaterThanOrEqual(3);
      const expected = catchUp === "none" ? 0 : catchUp === "latest" ? 1 : missed;
      expect(caughtUp.fired).toBe(expected);
      const first = caughtUp.firstMissed as number;
      const last = caughtUp.lastMissed as number;
      await eventually("the caught-up instances", async () => {
        const inWindow = (await scheduledTick.listInstances()).filter((i) => {
          const at = i.scheduledFor?.getTime() ?? 0;
          return at >= first && at <= last;
        });
        return inWindow.length === expected && inWindow.every((i) => i.isDone());
      });
      await deleteSchedule(`down-${catchUp}`);
    });
  }
});

describe("one schedule on three daemons", () => {
  let postgres: TestPostgres;
  let cluster: Cluster | undefined;
  beforeAll(async () => {
    postgres = await startPostgres();
  });
  afterAll(async () => {
    await cluster?.close();
    await postgres?.stop();
  });

  it("fires a one-second schedule for 30 s exactly once per second", async () => {
    cluster = await startCluster(postgres, [2, 2, 2], ["--workload-mode", "pool"]);
    setExecutor(cluster.client(1));
    await upsertSchedule({ name: "every-second", task: scheduledTick, args: ["cluster"], every: 1_000 });
    await new Promise((resolve) => setTimeout(resolve, 30_000));
    await deleteSchedule("every-second");
    const instances = await scheduledTick.listInstances();
    const times = instances.map((i) => i.scheduledFor?.getTime() ?? Number.NaN).sort((a, b) => a - b);
    expect(times.length).toBeGreaterThanOrEqual(28);
    expect(new Set(times).size).toBe(times.length);
    // Consecutive seconds, none skipped, none doubled.
    for (let i = 1; i < times.length; i++)
      expect((times[i] as number) - (times[i - 1] as number)).toBe(1_000);
    await Promise.all(instances.map((i) => i.wait()));
  }, 90_000);
});
