/**
 * The part of the executor contract about run options (SPEC §4) and the by-name API of SPEC §1
 * (`runTask`, `getTaskDefinition`, `getTaskInputs`, `stopTaskInstance`'s handle).
 * `test/executor-contract.ts` declares it inside every executor's suite.
 *
 * What is asserted is what a user sees: statuses, attempts, results and errors, and the tasks'
 * own record of when they ran (their results, or a file they append to). Never durations: a
 * backoff shows as a gap at least as long as the delay, never as a gap shorter than some bound.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Executor,
  type TaskInstanceState,
  NoTaskContextError,
  TaskCancelledError,
  TaskFailedError,
  TaskInstanceState as TaskInstanceStateClass,
  TaskNotFoundError,
  TaskStatus,
  getTaskDefinition,
  getTaskInputs,
  getTaskInstance,
  listTaskInstances,
  runTask,
  stopTaskInstance,
} from "numerous-tasks";
import { afterEach, describe, expect, it } from "vitest";
import type { ContractCapabilities } from "./executor-contract.js";
import {
  add,
  crashesOnFirstRun,
  failsUntil,
  limitedPerAccount,
  limitedToOne,
  recordsRun,
  reportsStartTime,
  retriedByDefault,
  returnsInputs,
  throwsAfterStop,
  throwsNonRetryable,
  timesOutOnce,
  waitForStop,
} from "./fixtures/contract-tasks.js";
import { DEFAULT_DEADLINE_MS, pollUntil, withDeadline } from "./helpers/deadline.js";
import { rejectionOf, untilSnapshot } from "./helpers/handles.js";

/**
 * Declares the tests; `executor()` is the executor of the running test, made (and set) by the
 * contract's beforeEach.
 */
/**
 * Each of these tests starts several workloads one after another (a retry, a limit's next
 * instance): on a loaded machine a process start takes seconds, so they get more than the
 * default 30 s. A deadline, not a duration: none of them asserts how long anything took.
 */
const OPTION_TEST_TIMEOUT_MS = 90_000;

export function describeRunOptionsContract(
  executor: () => Executor,
  capabilities: ContractCapabilities,
): void {
  let dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    dirs = [];
  });
  /** A fresh directory for a test's tasks to write to. */
  const tempDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), "nt-contract-options-"));
    dirs.push(dir);
    return dir;
  };
  /** The lines of a file the tasks appended to; none when they never wrote it. */
  const lines = (file: string): string[] =>
    existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : [];
  /** The start time of each run of a run-counting task, as the task's own clock said. */
  const runStarts = (dir: string): number[] => lines(join(dir, "runs")).map(Number);
  const attemptStarts = (instance: TaskInstanceState<unknown>): number[] =>
    instance.attempts.map((attempt) => attempt.startedAt.getTime());
  /** Start gaps at least the delays: the task's own record, and the executor's. */
  const expectGapsAtLeast = (starts: number[], delays: number[], what: string): void => {
    expect(starts, what).toHaveLength(delays.length + 1);
    delays.forEach((delayMs, i) => {
      const gap = (starts[i + 1] as number) - (starts[i] as number);
      expect(gap, `${what}: gap before attempt ${i + 2}`).toBeGreaterThanOrEqual(delayMs);
    });
  };
  /** An instance that retries once after `delayMs`: it ends after the delay, whatever else runs. */
  const barrier = async (delayMs: number): Promise<void> => {
    const instance = failsUntil.with({
      retry: { maxAttempts: 2, backoff: "fixed", initialDelayMs: delayMs },
    })(tempDir(), 1);
    await expect(instance.wait()).resolves.toBe(2);
  };
  const workloads = capabilities.workloads;

  describe("the options of an instance", { timeout: OPTION_TEST_TIMEOUT_MS }, () => {
    it("are kept with the instance and shown by its handle, get and lists", async () => {
      const key = `kept-${Math.random().toString(36).slice(2)}`;
      const instance = waitForStop.with({
        retry: { maxAttempts: 3, backoff: "fixed", initialDelayMs: 250 },
        timeoutMs: 60_000,
        priority: 4,
        idempotencyKey: key,
      })("kept");
      expect([instance.priority, instance.idempotencyKey, instance.attempt]).toStrictEqual([4, key, 1]);
      await untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it runs");
      const spec = {
        maxAttempts: 3,
        backoff: "fixed",
        initialDelayMs: 250,
        timeoutMs: 60_000,
        priority: 4,
        idempotencyKey: key,
      };
      expect((await executor().get(instance.id))?.spec).toMatchObject(spec);
      const listed = (await waitForStop.listInstances()).find((other) => other.id === instance.id);
      expect([listed?.priority, listed?.idempotencyKey, listed?.attempt]).toStrictEqual([4, key, 1]);
      const page = await executor().list({ task: waitForStop.definition.name });
      expect(page.instances.find((snapshot) => snapshot.id === instance.id)?.spec).toMatchObject(spec);
      expect(instance.scheduledFor).toBeUndefined();
      // Without options: the defaults.
      const plain = add(1, 2);
      expect([plain.priority, plain.idempotencyKey, plain.attempt, plain.scheduledFor]).toStrictEqual([
        0,
        undefined,
        1,
        undefined,
      ]);
      await instance.stop();
      await expect(instance.wait()).resolves.toBe("kept");
      await plain.wait();
    });
  });

  describe("retry", { timeout: OPTION_TEST_TIMEOUT_MS }, () => {
    it("retries a failing attempt after its exponential backoff, capped, and records each attempt", async () => {
      const dir = tempDir();
      const instance = failsUntil.with({
        retry: { maxAttempts: 4, backoff: "exponential", initialDelayMs: 100, maxDelayMs: 300 },
      })(dir, 3);
      await expect(instance.wait()).resolves.toBe(4);
      expect(instance.status).toBe(TaskStatus.Completed);
      expect(instance.attempt).toBe(4);
      expect(instance.attempts.map((attempt) => attempt.attempt)).toStrictEqual([1, 2, 3, 4]);
      instance.attempts.slice(0, 3).forEach((attempt, i) => {
        expect(attempt.error).toMatchObject({
          name: "ContractError",
          message: `run ${i + 1} of 3 failing runs`,
        });
      });
      expect(instance.attempts[3]?.error).toBeUndefined();
      for (const attempt of instance.attempts) {
        expect(attempt.finishedAt?.getTime()).toBeGreaterThanOrEqual(attempt.startedAt.getTime());
      }
      // 100, 200, then 400 capped at 300.
      expectGapsAtLeast(runStarts(dir), [100, 200, 300], "the task's own start times");
      expectGapsAtLeast(attemptStarts(instance), [100, 200, 300], "the attempts' start times");
      // Progress and output were reset when the last attempt started; it reported none.
      expect(instance.progress).toBe(1);
      expect(instance.output).toBeUndefined();
    });

    it("fails with the last error once every attempt failed, saying how many were made", async () => {
      const dir = tempDir();
      const instance = failsUntil.with({ retry: { maxAttempts: 3, backoff: "fixed", initialDelayMs: 100 } })(
        dir,
        10,
      );
      const error = await rejectionOf(instance.wait());
      expect(error).toBeInstanceOf(TaskFailedError);
      expect(error).toMatchObject({ attempts: 3, instanceId: instance.id });
      expect((error as Error).message).toContain("after 3 attempts");
      expect(((error as TaskFailedError).cause as Error).message).toBe("run 3 of 10 failing runs");
      expect(instance.status).toBe(TaskStatus.Failed);
      expect(instance.attempt).toBe(3);
      expect(instance.error).toMatchObject({ name: "ContractError", message: "run 3 of 10 failing runs" });
      expect(instance.attempts.map((attempt) => attempt.error?.message)).toStrictEqual([
        "run 1 of 10 failing runs",
        "run 2 of 10 failing runs",
        "run 3 of 10 failing runs",
      ]);
      expectGapsAtLeast(runStarts(dir), [100, 100], "the task's own start times");
    });

    it("uses the task's own retry defaults, and a call's options override them", async () => {
      const dir = tempDir();
      await expect(retriedByDefault(dir, 2).wait()).resolves.toBe(3);
      const once = retriedByDefault.with({ retry: { maxAttempts: 1 } })(tempDir(), 2);
      expect(await rejectionOf(once.wait())).toBeInstanceOf(TaskFailedError);
      expect(once.attempt).toBe(1);
    });

    it("waits pending between attempts with the next attempt and its time, and resets progress and output when it starts", async () => {
      const dir = tempDir();
      const instance = failsUntil.with({ retry: { maxAttempts: 3, backoff: "fixed", initialDelayMs: 300 } })(
        dir,
        1,
        "waitForStop",
      );
      const waiting = await untilSnapshot(
        instance,
        (s) => s.status === TaskStatus.Pending && s.attempt === 2,
        "it waits for its second attempt",
      );
      expect(waiting.attempts).toHaveLength(1);
      expect(waiting.attempts[0]?.error).toMatchObject({ name: "ContractError" });
      const failedAt = waiting.attempts[0]?.finishedAt?.getTime() ?? Number.NaN;
      expect(waiting.nextAttemptAt?.getTime()).toBeGreaterThanOrEqual(failedAt + 300);
      expect(waiting.result).toBeUndefined();

      const running = await untilSnapshot(
        instance,
        (s) => s.status === TaskStatus.Running && s.attempt === 2,
        "its second attempt runs",
      );
      expect(running.progress).toBe(0);
      expect(running.output).toBeUndefined();
      expect(running.nextAttemptAt).toBeUndefined();
      expect(running.attempts.map((attempt) => attempt.attempt)).toStrictEqual([1, 2]);
      expect(running.attempts[1]?.startedAt.getTime()).toBeGreaterThanOrEqual(
        waiting.nextAttemptAt?.getTime() ?? 0,
      );

      // A user's stop of a running attempt is final: it returned its value, so cancelled with it.
      await instance.stop();
      await expect(instance.wait()).resolves.toBe(2);
      expect(instance.status).toBe(TaskStatus.Cancelled);
      expect(instance.attempt).toBe(2);
      const final = instance.snapshot();
      // Had it been retried, its third attempt would have begun before this ends.
      await barrier(300);
      expect(runStarts(dir)).toHaveLength(2);
      expect((await getTaskInstance(instance.id))?.snapshot()).toStrictEqual(final);
    });

    it("never retries an attempt a user stopped, even when the task then throws", async () => {
      const instance = throwsAfterStop.with({
        retry: { maxAttempts: 3, backoff: "fixed", initialDelayMs: 100 },
      })("broke while stopping");
      await untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it waits for a stop");
      await instance.stop();
      const error = await rejectionOf(instance.wait());
      expect(error).toBeInstanceOf(TaskFailedError);
      expect(error).toMatchObject({ attempts: 1 });
      expect(instance.status).toBe(TaskStatus.Failed);
      expect(instance.attempt).toBe(1);
      expect(instance.error).toMatchObject({ name: "ContractError", message: "broke while stopping" });
      const final = instance.snapshot();
      await barrier(100);
      expect((await getTaskInstance(instance.id))?.snapshot()).toStrictEqual(final);
    });

    it("never retries an instance stopped while it waits for its next attempt: cancelled at once", async () => {
      const dir = tempDir();
      const instance = failsUntil.with({ retry: { maxAttempts: 3, backoff: "fixed", initialDelayMs: 300 } })(
        dir,
        10,
      );
      await untilSnapshot(
        instance,
        (s) => s.status === TaskStatus.Pending && s.attempt === 2,
        "it waits for its second attempt",
      );
      const stopped = await stopTaskInstance(instance.id);
      expect(stopped?.status).toBe(TaskStatus.Cancelled);
      expect(await rejectionOf(instance.wait())).toBeInstanceOf(TaskCancelledError);
      expect(instance.status).toBe(TaskStatus.Cancelled);
      expect(instance.nextAttemptAt).toBeUndefined();
      expect(instance.attempts).toHaveLength(1);
      const final = instance.snapshot();
      await barrier(300);
      expect(runStarts(dir)).toHaveLength(1);
      expect((await getTaskInstance(instance.id))?.snapshot()).toStrictEqual(final);
    });

    it("fails at once, with one attempt, when the task throws NonRetryableError", async () => {
      const dir = tempDir();
      const instance = throwsNonRetryable.with({ retry: { maxAttempts: 5, initialDelayMs: 50 } })(dir);
      const error = await rejectionOf(instance.wait());
      expect(error).toBeInstanceOf(TaskFailedError);
      expect(error).toMatchObject({ attempts: 1 });
      expect((error as Error).message).not.toContain("attempts");
      expect(((error as TaskFailedError).cause as Error).name).toBe("NonRetryableError");
      expect(instance.status).toBe(TaskStatus.Failed);
      expect(instance.error).toMatchObject({
        name: "NonRetryableError",
        code: "NON_RETRYABLE",
        message: "the card was declined",
      });
      expect(instance.attempt).toBe(1);
      expect(instance.attempts).toHaveLength(1);
      expect(runStarts(dir)).toHaveLength(1);
    });

    if (workloads !== undefined) {
      it("retries an attempt whose workload crashed", async () => {
        const dir = tempDir();
        const instance = crashesOnFirstRun.with({ retry: { maxAttempts: 2, initialDelayMs: 50 } })(dir);
        await expect(instance.wait()).resolves.toBe(2);
        expect(instance.attempt).toBe(2);
        expect(instance.attempts[0]?.error).toMatchObject({ name: "WorkloadExitedError" });
        expect(runStarts(dir)).toHaveLength(2);
      });
    } else {
      it.skip("retries an attempt whose workload crashed: this executor has no workload processes (a crash would end the test process)", () => {});
    }
  });

  describe("timeoutMs", { timeout: OPTION_TEST_TIMEOUT_MS }, () => {
    it("stops an attempt that runs past its timeout with a TaskTimeoutError reason, fails it, and retries it", async () => {
      const dir = tempDir();
      const instance = timesOutOnce.with({ timeoutMs: 200, retry: { maxAttempts: 2, initialDelayMs: 50 } })(
        dir,
        "return",
      );
      await expect(instance.wait()).resolves.toBe("done on run 2");
      expect(lines(join(dir, "reasons"))).toStrictEqual(["TaskTimeoutError TASK_TIMEOUT"]);
      expect(instance.attempt).toBe(2);
      expect(instance.attempts[0]?.error).toMatchObject({ name: "TaskTimeoutError", code: "TASK_TIMEOUT" });
      expect(instance.attempts[0]?.error?.message).toContain("200 ms");
      expect(instance.attempts[1]?.error).toBeUndefined();
    });

    it("fails a timed-out attempt even when the task returned a value after the stop", async () => {
      const instance = waitForStop.with({ timeoutMs: 100 })("returned anyway");
      const error = await rejectionOf(instance.wait());
      expect(error).toBeInstanceOf(TaskFailedError);
      expect(((error as TaskFailedError).cause as Error).name).toBe("TaskTimeoutError");
      expect(instance.status).toBe(TaskStatus.Failed);
      expect(instance.result).toBeUndefined();
      expect(instance.error).toMatchObject({ name: "TaskTimeoutError", code: "TASK_TIMEOUT" });
    });

    if (workloads !== undefined) {
      it(`kills an attempt that ignores its timeout after the grace period (${workloads.stopGraceMs} ms), then retries it`, async () => {
        const dir = tempDir();
        const instance = timesOutOnce.with({ timeoutMs: 200, retry: { maxAttempts: 2, initialDelayMs: 50 } })(
          dir,
          "ignore",
        );
        const ignoring = await untilSnapshot(
          instance,
          (s) => s.output?.phase === "ignoring",
          "it ignores its timeout's stop",
        );
        const pid = ignoring.output?.pid as number;
        await expect(
          withDeadline(
            instance.wait(),
            "the kill and the retry",
            workloads.stopGraceMs + DEFAULT_DEADLINE_MS,
          ),
        ).resolves.toBe("done on run 2");
        expect(instance.attempt).toBe(2);
        expect(instance.attempts[0]?.error).toMatchObject({ name: "TaskTimeoutError", code: "TASK_TIMEOUT" });
        expect(lines(join(dir, "reasons"))).toStrictEqual(["TaskTimeoutError TASK_TIMEOUT"]);
        await pollUntil(() => !processExists(pid), `the killed workload ${pid} to be gone`);
      });
    } else {
      it.skip("kills an attempt that ignores its timeout: the local executor can only ask a function to stop (SPEC §4)", () => {});
    }
  });

  describe("idempotencyKey", { timeout: OPTION_TEST_TIMEOUT_MS }, () => {
    it("makes one instance of 50 calls with one key: one id, one run, every handle the first call's result", async () => {
      const file = join(tempDir(), "ledger.txt");
      const key = `order-${Math.random().toString(36).slice(2)}`;
      const calls = Array.from({ length: 50 }, (_, i) =>
        recordsRun.with({ idempotencyKey: key })(file, `call ${i}`),
      );
      const id = calls[0]?.id as string;
      expect(new Set(calls.map((call) => call.id))).toStrictEqual(new Set([id]));
      expect(calls.every((call) => call.idempotencyKey === key)).toBe(true);
      const results = await Promise.all(calls.map((call) => call.wait()));
      expect(results).toStrictEqual(Array.from({ length: 50 }, () => "call 0"));

      // Once it ended: still that instance, as it ended, by a call or by name.
      const later = recordsRun.with({ idempotencyKey: key })(file, "later");
      const byName = runTask("recordsRun", [file, "by name"], { idempotencyKey: key });
      expect([later.id, byName.id]).toStrictEqual([id, id]);
      await expect(later.wait()).resolves.toBe("call 0");
      await expect(byName.wait()).resolves.toBe("call 0");
      const other = recordsRun.with({ idempotencyKey: `${key}-other` })(file, "other key");
      expect(other.id).not.toBe(id);
      await expect(other.wait()).resolves.toBe("other key");

      expect(lines(file).sort()).toStrictEqual([`${id} call 0`, `${other.id} other key`].sort());
      const listed = (await listTaskInstances({ task: recordsRun })).filter((instance) => instance.id === id);
      expect(listed).toHaveLength(1);
    });
  });

  describe("delayMs and startAt", { timeout: OPTION_TEST_TIMEOUT_MS }, () => {
    it("keeps a delayed instance pending with scheduledFor, and starts it no earlier", async () => {
      const before = Date.now();
      const delayed = reportsStartTime.with({ delayMs: 300 })();
      expect(delayed.status).toBe(TaskStatus.Pending);
      const scheduledFor = delayed.scheduledFor?.getTime() ?? Number.NaN;
      expect(scheduledFor).toBeGreaterThanOrEqual(before + 300);
      expect(scheduledFor).toBeLessThanOrEqual(Date.now() + 300);

      const at = new Date(Date.now() + 300);
      const startingAt = reportsStartTime.with({ startAt: at })();
      expect(startingAt.scheduledFor).toStrictEqual(at);

      const [ranAt, ranAtToo] = await Promise.all([delayed.wait(), startingAt.wait()]);
      expect(ranAt).toBeGreaterThanOrEqual(scheduledFor);
      expect(delayed.startedAt?.getTime()).toBeGreaterThanOrEqual(scheduledFor);
      expect(ranAtToo).toBeGreaterThanOrEqual(at.getTime());
      expect(startingAt.startedAt?.getTime()).toBeGreaterThanOrEqual(at.getTime());
    });

    it("lets others use a free slot while it waits, and a stop cancels it at once: it never runs", async () => {
      const file = join(tempDir(), "ledger.txt");
      const delayed = recordsRun.with({ delayMs: 60_000 })(file, "never");
      await expect(add(1, 1).wait()).resolves.toBe(2);
      expect(delayed.status).toBe(TaskStatus.Pending);
      const stopped = await stopTaskInstance(delayed.id);
      expect(stopped?.status).toBe(TaskStatus.Cancelled);
      expect(await rejectionOf(delayed.wait())).toBeInstanceOf(TaskCancelledError);
      expect(delayed.startedAt).toBeUndefined();
      await expect(recordsRun(file, "after").wait()).resolves.toBe("after");
      expect(lines(file).map((line) => line.split(" ")[1])).toStrictEqual(["after"]);
    });
  });

  describe("priority", { timeout: OPTION_TEST_TIMEOUT_MS }, () => {
    it("starts ready instances higher priority first, first come first served within one", async () => {
      const fillers = [waitForStop("filler 0"), waitForStop("filler 1")];
      await Promise.all(
        fillers.map((filler) =>
          untilSnapshot(filler, (s) => s.output?.phase === "waiting", "it holds a slot"),
        ),
      );
      const file = join(tempDir(), "ledger.txt");
      const priorities = [0, 5, -1, 5, 10];
      const queued = priorities.map((priority, i) => recordsRun.with({ priority })(file, `p${i}`));
      // No options: priority 0, after the earlier ones of priority 0.
      queued.push(recordsRun(file, "plain"));
      expect(queued.map((instance) => instance.status)).toStrictEqual(queued.map(() => TaskStatus.Pending));
      expect(queued.map((instance) => instance.priority)).toStrictEqual([...priorities, 0]);
      for (const instance of queued) await untilKnown(instance.id);

      // One slot frees: they run one by one through it, in priority order.
      await fillers[0]?.stop();
      await Promise.all(queued.map((instance) => instance.wait()));
      expect(lines(file).map((line) => line.split(" ")[1])).toStrictEqual([
        "p4",
        "p1",
        "p3",
        "p0",
        "plain",
        "p2",
      ]);
    });
  });

  describe("concurrency", { timeout: OPTION_TEST_TIMEOUT_MS }, () => {
    it("runs at most `limit` (1) instances of a task at once, without holding back other tasks", async () => {
      const instances = Array.from({ length: 6 }, (_, i) => limitedToOne(`${i}`));
      await untilSnapshot(
        instances[0] as TaskInstanceState<unknown>,
        (s) => s.output?.phase === "waiting",
        "it runs",
      );
      // A slot is free, and another task's instance takes it.
      await expect(add(2, 3).wait()).resolves.toBe(5);
      expect(instances.slice(1).map((instance) => instance.status)).toStrictEqual(
        instances.slice(1).map(() => TaskStatus.Pending),
      );
      for (const [i, instance] of instances.entries()) {
        await untilSnapshot(
          instance,
          (s) => s.output?.phase === "waiting",
          `instance ${i} to take the task's slot`,
        );
        const running = await limitedToOne.listInstances({ status: TaskStatus.Running });
        expect(running.map((other) => other.id)).toStrictEqual([instance.id]);
        await instance.stop();
        await instance.wait();
      }
      const held = await Promise.all(instances.map((instance) => instance.wait()));
      expect(held.map((slot) => slot.label)).toStrictEqual(["0", "1", "2", "3", "4", "5"]);
      expectNeverOverlapping(held);
    });

    it("runs at most `perKeyLimit` (1) instances per key at once, without holding back other keys", async () => {
      const a1 = limitedPerAccount("A", "1");
      const a2 = limitedPerAccount("A", "2");
      const b1 = limitedPerAccount("B", "1");
      const a3 = limitedPerAccount("A", "3");
      const b2 = limitedPerAccount("B", "2");
      const holds = (instance: TaskInstanceState<unknown>, what: string) =>
        untilSnapshot(instance, (s) => s.output?.phase === "waiting", what);
      const expectPending = (...instances: TaskInstanceState<unknown>[]) =>
        expect(instances.map((instance) => instance.status)).toStrictEqual(
          instances.map(() => TaskStatus.Pending),
        );

      // B1 runs beside A1; A2, held back by A's limit, does not hold it back.
      await Promise.all([holds(a1, "A1 runs"), holds(b1, "B1 runs beside A1")]);
      expect([a1.status, b1.status]).toStrictEqual([TaskStatus.Running, TaskStatus.Running]);
      expectPending(a2, a3, b2);
      await a1.stop();
      await holds(a2, "A2 takes A's slot");
      expectPending(a3, b2);
      await b1.stop();
      // The free slot goes to B2: A3, first in line but held back by A's limit, does not block it.
      await holds(b2, "B2 takes B's slot");
      expectPending(a3);
      await a2.stop();
      await holds(a3, "A3 takes A's slot");
      await Promise.all([a3.stop(), b2.stop()]);

      const held = await Promise.all([a1, a2, a3, b1, b2].map((instance) => instance.wait()));
      expectNeverOverlapping(held.slice(0, 3));
      expectNeverOverlapping(held.slice(3));
      // Different keys did run at once (to the millisecond the tasks' clock tells).
      const [heldA1, , , heldB1] = held;
      expect(heldB1?.start).toBeLessThanOrEqual(heldA1?.end ?? Number.NaN);
    });
  });

  describe("by name", { timeout: OPTION_TEST_TIMEOUT_MS }, () => {
    it("runTask starts a task by name or definition; an unknown name fails the handle with TaskNotFoundError", async () => {
      const byName = runTask<number>("add", [2, 3]);
      expect(byName.status).toBe(TaskStatus.Pending);
      await expect(byName.wait()).resolves.toBe(5);
      expect([byName.taskName, byName.taskId]).toStrictEqual([add.definition.name, add.definition.id]);
      await expect(runTask(add.definition, [4, 5]).wait()).resolves.toBe(9);

      const name = `noSuchTask${Math.random().toString(36).slice(2)}`;
      const unknown = runTask(name, [1]);
      const error = await rejectionOf(unknown.wait());
      expect(error).toBeInstanceOf(TaskNotFoundError);
      expect(error).toMatchObject({ code: "TASK_NOT_FOUND", instanceId: unknown.id });
      expect((error as Error).message).toContain(name);
      expect(unknown.status).toBe(TaskStatus.Failed);
      expect(unknown.taskName).toBe(name);
    });

    it("getTaskDefinition finds a task by name or id, and undefined for an unknown one", async () => {
      await add(1, 1).wait();
      for (const idOrName of [add.definition.name, add.definition.id]) {
        const found = await getTaskDefinition(idOrName);
        expect([found?.id, found?.name], `found by ${idOrName}`).toStrictEqual([add.definition.id, "add"]);
      }
      await expect(
        getTaskDefinition(`noSuchTask${Math.random().toString(36).slice(2)}`),
      ).resolves.toBeUndefined();
    });

    it("getTaskInputs returns the instance's decoded arguments inside a task, and throws outside one", async () => {
      const args = [{ when: new Date(86_400_000), list: [1, undefined, "two"] }, null, "text"] as const;
      await expect(returnsInputs(...args).wait()).resolves.toStrictEqual([...args]);
      await expect(returnsInputs().wait()).resolves.toStrictEqual([]);
      expect(() => getTaskInputs()).toThrow(NoTaskContextError);
    });

    it("stopTaskInstance resolves a live handle on the instance, and undefined for an unknown id", async () => {
      const instance = waitForStop("stopped by id");
      await untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it waits for a stop");
      const handle = await stopTaskInstance<string>(instance.id);
      expect(handle).toBeInstanceOf(TaskInstanceStateClass);
      expect(handle?.id).toBe(instance.id);
      await expect(handle?.wait()).resolves.toBe("stopped by id");
      expect(handle?.status).toBe(TaskStatus.Cancelled);
      await expect(
        stopTaskInstance(`unknown-${Math.random().toString(36).slice(2)}`),
      ).resolves.toBeUndefined();
    });
  });
}

/** Sorted by start, each ended before the next began. */
function expectNeverOverlapping(held: readonly { label: string; start: number; end: number }[]): void {
  const sorted = [...held].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    const before = sorted[i - 1] as (typeof sorted)[number];
    const after = sorted[i] as (typeof sorted)[number];
    expect(after.start, `${after.label} started before ${before.label} ended`).toBeGreaterThanOrEqual(
      before.end,
    );
  }
}

/** Resolves once the executor knows the instance (a platform client submits in the background). */
async function untilKnown(id: string): Promise<void> {
  const deadline = Date.now() + DEFAULT_DEADLINE_MS;
  while ((await getTaskInstance(id)) === undefined) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for the executor to know instance ${id}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
