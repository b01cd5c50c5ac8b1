import {
  type TaskInstanceState,
  LocalExecutor,
  TaskStatus,
  createExecutor,
  listTaskInstances,
  loadConfig,
  setExecutor,
} from "numerous-tasks";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createInstanceId, isValidInstanceId } from "../sdk/ids.js";
import { CONTRACT_CONCURRENCY, describeExecutorContract } from "./executor-contract.js";
import { waitForStop } from "./fixtures/contract-tasks.js";

describeExecutorContract("local", async () => {
  const executor = new LocalExecutor({ concurrency: CONTRACT_CONCURRENCY });
  return { executor, close: () => executor.close() };
});

/** Follows instances' status changes: the start order, and how many ran at once. */
function trackStarts(instances: readonly TaskInstanceState<unknown>[]) {
  const started: string[] = [];
  const running = new Set<string>();
  let mostAtOnce = 0;
  for (const instance of instances) {
    instance.onChange((changed) => {
      if (changed.status === TaskStatus.Running && !started.includes(changed.id)) {
        started.push(changed.id);
        running.add(changed.id);
        mostAtOnce = Math.max(mostAtOnce, running.size);
      } else if (changed.isDone()) {
        running.delete(changed.id);
      }
    });
  }
  return {
    started,
    get mostAtOnce() {
      return mostAtOnce;
    },
  };
}

function untilRunning(instance: TaskInstanceState<unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (instance.status === TaskStatus.Running) {
        off();
        resolve();
      } else if (instance.isDone()) {
        off();
        reject(new Error(`instance ${instance.id} ended ${instance.status} without running`));
      }
    };
    const off = instance.onChange(check);
    check();
  });
}

describe("local executor", () => {
  let executor: LocalExecutor | undefined;

  function use(next: LocalExecutor): LocalExecutor {
    executor = next;
    setExecutor(next);
    return next;
  }

  afterEach(async () => {
    const active = await listTaskInstances({ status: ["pending", "running"] });
    await Promise.all(active.map((instance) => instance.stop()));
    await executor?.close();
    executor = undefined;
  });

  describe("concurrency", () => {
    beforeEach(() => {
      use(new LocalExecutor({ concurrency: 2 }));
    });

    it("runs at most `concurrency` instances at once and starts the rest in creation order", async () => {
      const instances = Array.from({ length: 6 }, (_, i) => waitForStop(i));
      const tracked = trackStarts(instances);
      await Promise.all(instances.slice(0, 2).map(untilRunning));
      expect(instances.map((instance) => instance.status)).toStrictEqual([
        "running",
        "running",
        "pending",
        "pending",
        "pending",
        "pending",
      ]);
      expect((await listTaskInstances({ status: TaskStatus.Running })).length).toBe(2);

      for (const [index, instance] of instances.entries()) {
        await untilRunning(instance);
        expect((await listTaskInstances({ status: TaskStatus.Running })).length).toBeLessThanOrEqual(2);
        await instance.stop();
        await expect(instance.wait()).resolves.toBe(index);
      }

      expect(tracked.started).toStrictEqual(instances.map((instance) => instance.id));
      expect(tracked.mostAtOnce).toBe(2);
      const starts = instances.map((instance) => instance.startedAt?.getTime() ?? Number.NaN);
      expect(starts).toStrictEqual([...starts].sort((a, b) => a - b));
    });

    it("starts a queued instance as soon as a slot frees up", async () => {
      const first = waitForStop("first");
      const second = waitForStop("second");
      const third = waitForStop("third");
      await Promise.all([first, second].map(untilRunning));
      expect(third.status).toBe(TaskStatus.Pending);
      await first.stop();
      await untilRunning(third);
      expect(second.status).toBe(TaskStatus.Running);
    });
  });

  describe("configuration", () => {
    it("reads NUMEROUS_TASK_CONCURRENCY, defaulting to 4", () => {
      expect(loadConfig({}).concurrency).toBe(4);
      expect(loadConfig({}).executor).toBe("local");
      expect(loadConfig({ NUMEROUS_TASK_CONCURRENCY: "3" }).concurrency).toBe(3);
      expect(loadConfig({ NUMEROUS_TASK_CONCURRENCY: " 7 " }).concurrency).toBe(7);
      expect(loadConfig({ NUMEROUS_EXECUTOR: "local" }).executor).toBe("local");
      expect(loadConfig({ NUMEROUS_EXECUTOR: "NUMEROUS_LOCAL_EXECUTOR" }).executor).toBe("local");
    });

    it("builds a local executor that runs NUMEROUS_TASK_CONCURRENCY instances at once", async () => {
      const built = createExecutor(loadConfig({ NUMEROUS_TASK_CONCURRENCY: "3" }));
      expect(built).toBeInstanceOf(LocalExecutor);
      use(built as LocalExecutor);
      const instances = Array.from({ length: 4 }, (_, i) => waitForStop(i));
      await Promise.all(instances.slice(0, 3).map(untilRunning));
      expect(instances.map((instance) => instance.status)).toStrictEqual([
        "running",
        "running",
        "running",
        "pending",
      ]);
      await instances[0]?.stop();
      await untilRunning(instances[3] as TaskInstanceState<unknown>);
    });

    it("refuses a concurrency below 1", () => {
      expect(() => new LocalExecutor({ concurrency: 0 })).toThrow(RangeError);
      expect(() => new LocalExecutor({ concurrency: 1.5 })).toThrow(RangeError);
    });
  });
});

describe("instance ids", () => {
  it("are 21 URL-safe characters the daemon accepts, all different, never starting with - or _", () => {
    // In 100,000 ids, a first '-' or '_' would turn up thousands of times if it were allowed,
    // and every letter and digit would turn up first if the first character is uniform.
    const ids = Array.from({ length: 100_000 }, () => createInstanceId());
    expect(ids.filter((id) => !/^[A-Za-z0-9][A-Za-z0-9_-]{20}$/.test(id) || !isValidInstanceId(id))).toEqual(
      [],
    );
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids.map((id) => id[0])).size).toBe(62);
  });
});

describe("local executor's instance lookup", () => {
  it("finds each of many instances by id, lists them in order, and keeps the first of a repeated id", async () => {
    const executor = new LocalExecutor({ concurrency: 1 });
    // Ids a client chose, not made by the SDK, past several growths of the executor's index.
    const ids = Array.from({ length: 5_000 }, (_, i) => `client-${i}`);
    const submit = (id: string, createdAt: number) =>
      executor.submit({
        id,
        taskId: "td_nowhere",
        taskName: "a task this process never defined",
        args: "J[]",
        createdAt,
        module: "nowhere.ts",
      });
    for (const id of ids) submit(id, 1);
    await new Promise((resolve) => setImmediate(resolve));

    const found = await Promise.all(ids.map((id) => executor.get(id)));
    expect(found.filter((snapshot, i) => snapshot?.id !== ids[i])).toEqual([]);
    expect(found.every((snapshot) => snapshot?.status === "failed")).toBe(true);
    expect(await executor.get("client-5000")).toBeUndefined();
    expect(await executor.get("")).toBeUndefined();

    const again = submit("client-1234", 2);
    expect(again).toBe(found[1234]);
    expect(again.createdAt).toBe(1);
    const page = await executor.list({ cursor: "client-4990" });
    expect(page.instances.map((snapshot) => snapshot.id)).toStrictEqual(ids.slice(4991));
    await executor.close();
  });
});
