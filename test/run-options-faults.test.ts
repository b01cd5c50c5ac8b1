/**
 * Run options where they are hardest to keep: through three daemons on one PostgreSQL, and across
 * a daemon's restart (SPEC §4, issue 10). The contract suite covers each option on every executor
 * setup; this file adds the races and the restarts.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  PlatformExecutor,
  TaskStatus,
  getTaskInstance,
  listTaskInstances,
  setExecutor,
  type TaskInstanceState,
} from "numerous-tasks";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { keyedRun, limitedTwo, perCustomer, startedAt } from "./fixtures/option-tasks.js";
import { type Cluster, startCluster } from "./helpers/cluster.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";
import { type TestPostgres, startPostgres } from "./helpers/embedded-postgres.js";
import { untilSnapshot } from "./helpers/handles.js";

interface Span {
  readonly start: number;
  readonly end: number;
}

/** The most spans that overlap at any moment. */
function mostAtOnce(spans: readonly Span[]): number {
  const events = spans.flatMap((s) => [
    { at: s.start, delta: 1 },
    { at: s.end, delta: -1 },
  ]);
  // An end and a start at the same millisecond do not overlap: ends first.
  events.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let now = 0;
  let most = 0;
  for (const event of events) {
    now += event.delta;
    most = Math.max(most, now);
  }
  return most;
}

describe("run options through three daemons", () => {
  let postgres: TestPostgres;
  let cluster: Cluster | undefined;

  beforeAll(async () => {
    postgres = await startPostgres();
  });
  afterAll(async () => {
    await postgres?.stop();
  });
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it("makes exactly one instance of 50 concurrent calls with one idempotency key", async () => {
    cluster = await startCluster(postgres, [2, 2, 2], ["--workload-mode", "pool"]);
    const clients = [cluster.client(0), cluster.client(1), cluster.client(2)];
    const dir = mkdtempSync(join(tmpdir(), "nt-key-"));
    const ledger = join(dir, "runs.txt");
    try {
      const handles: TaskInstanceState[] = [];
      for (let i = 0; i < 50; i++) {
        setExecutor(clients[i % 3] as PlatformExecutor);
        handles.push(keyedRun.with({ idempotencyKey: "order-981" })(ledger, i));
      }
      const ids = new Set(handles.map((handle) => handle.id));
      expect(ids.size).toBe(1);
      const results = await Promise.all(handles.map((handle) => handle.wait()));
      // Every call got the first instance's result, whichever daemon it went through.
      expect(new Set(results).size).toBe(1);
      const runs = readFileSync(ledger, "utf8").trim().split("\n");
      expect(runs).toEqual([...ids]);
      setExecutor(clients[1] as PlatformExecutor);
      expect(await listTaskInstances({ task: keyedRun })).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("never runs more than a task's limit of 2 at once across three daemons", async () => {
    cluster = await startCluster(postgres, [3, 3, 3], ["--workload-mode", "pool"]);
    const clients = [cluster.client(0), cluster.client(1), cluster.client(2)];
    const handles: TaskInstanceState[] = [];
    for (let i = 0; i < 20; i++) {
      setExecutor(clients[i % 3] as PlatformExecutor);
      handles.push(limitedTwo(150));
    }
    const spans = (await Promise.all(handles.map((handle) => handle.wait()))) as Span[];
    expect(mostAtOnce(spans)).toBeLessThanOrEqual(2);
    // The limit is a limit, not a queue of one: two did run together at some point.
    expect(mostAtOnce(spans)).toBe(2);
  });

  it("never runs more than one per key at once, while different keys run together", async () => {
    cluster = await startCluster(postgres, [3, 3, 3], ["--workload-mode", "pool"]);
    const clients = [cluster.client(0), cluster.client(1), cluster.client(2)];
    const handles: Array<{ customer: string; handle: TaskInstanceState }> = [];
    for (let i = 0; i < 20; i++) {
      setExecutor(clients[i % 3] as PlatformExecutor);
      const customer = `c-${i % 4}`;
      handles.push({ customer, handle: perCustomer(customer, 100) });
    }
    const spans = await Promise.all(
      handles.map(async ({ customer, handle }) => ({ customer, ...((await handle.wait()) as Span) })),
    );
    for (const customer of ["c-0", "c-1", "c-2", "c-3"]) {
      expect(mostAtOnce(spans.filter((span) => span.customer === customer))).toBe(1);
    }
    expect(mostAtOnce(spans)).toBeGreaterThan(1);
  });
});

describe("a delayed instance across a daemon restart", () => {
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

  it("survives the restart, starts on time, and can be cancelled while it waits", async () => {
    daemon = await startDaemon({ args: ["--concurrency", "2"] });
    const connect = (address: string) =>
      new PlatformExecutor({
        address,
        accessToken: undefined,
        deploymentId: undefined,
        tlsCaFile: undefined,
      });
    executor = connect(daemon.address);
    setExecutor(executor);
    const delayed = startedAt.with({ delayMs: 2_500 })();
    const cancelled = startedAt.with({ delayMs: 2_500 })();
    const scheduledFor = delayed.scheduledFor?.getTime() ?? Number.NaN;
    await untilSnapshot(
      delayed,
      (s) => s.status === TaskStatus.Pending && s.scheduledFor !== undefined && s.createdAt.getTime() > 0,
      "the daemon's answer to the submit",
    );
    expect((await getTaskInstance(delayed.id))?.scheduledFor?.getTime()).toBe(scheduledFor);

    // Restart the daemon on the same data directory and address while both wait.
    const { dataDir, address } = daemon;
    await daemon.stop();
    await executor.close();
    daemon = await startDaemon({ args: ["--concurrency", "2"], dataDir, listen: address });
    executor = connect(daemon.address);
    setExecutor(executor);

    const again = await getTaskInstance<number>(delayed.id);
    expect(again?.status).toBe(TaskStatus.Pending);
    expect(again?.scheduledFor?.getTime()).toBe(scheduledFor);
    const stopped = await (await getTaskInstance(cancelled.id))
      ?.stop()
      .then(() => getTaskInstance(cancelled.id));
    expect(stopped?.status).toBe(TaskStatus.Cancelled);

    const ranAt = await again?.wait();
    expect(ranAt).toBeGreaterThanOrEqual(scheduledFor);
    const never = await getTaskInstance(cancelled.id);
    expect(never?.status).toBe(TaskStatus.Cancelled);
    expect(never?.startedAt).toBeUndefined();
  });

  it("deletes finished instances past --retention, and never one that still runs", async () => {
    daemon = await startDaemon({ args: ["--concurrency", "2", "--retention", "1s"] });
    executor = new PlatformExecutor({
      address: daemon.address,
      accessToken: undefined,
      deploymentId: undefined,
      tlsCaFile: undefined,
    });
    setExecutor(executor);
    const waiting = startedAt.with({ delayMs: 60_000 })();
    const done = startedAt();
    await done.wait();
    const deadline = Date.now() + 20_000;
    while ((await getTaskInstance(done.id)) !== undefined) {
      if (Date.now() > deadline) throw new Error("the finished instance was not deleted within 20 s");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect((await getTaskInstance(waiting.id))?.status).toBe(TaskStatus.Pending);
  });
});
