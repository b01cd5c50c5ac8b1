/**
 * The executor contract: what SPEC section 1 promises a user, whichever executor runs the
 * tasks. Every executor's test file calls {@link describeExecutorContract} once.
 *
 * The suite asserts behaviour only, never timing: it follows instances through `wait()`,
 * `onChange` and `for await`, and talks to running tasks only by stopping them.
 */
import {
  type Executor,
  type TaskInstanceState,
  type TaskSnapshot,
  TaskCancelledError,
  TaskError,
  TaskFailedError,
  TaskNotFoundError,
  TaskStatus,
  TaskTimeoutError,
  getTaskInstance,
  listTaskDefinitions,
  listTaskInstances,
  setExecutor,
  stopTaskInstance,
  waitForCompletion,
} from "numerous-tasks";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  add,
  controllerIdsUntilStopped,
  describeArgs,
  echo,
  ignoresStopThenThrowsAbort,
  mutateArgument,
  nestedController,
  returnsBadResult,
  setOutputTwice,
  slowCount,
  syncDouble,
  throwsAfterStop,
  throwsError,
  throwsString,
  throwsUndefined,
  waitForStop,
} from "./fixtures/contract-tasks.js";
import { describeRunningContract } from "./executor-contract-running.js";
import { describeRunOptionsContract } from "./executor-contract-options.js";
import { describeLogsContract } from "./executor-contract-logs.js";
import { rejectionOf, untilSnapshot } from "./helpers/handles.js";

/**
 * How many instances the executors under test run at once. The suite fills every slot to
 * prove that a stopped pending instance never runs, so the factory must honour it exactly.
 */
export const CONTRACT_CONCURRENCY = 2;

/** What the factory hands the suite: an executor, and how to tear it (and its backend) down. */
export interface ContractExecutorHandle {
  readonly executor: Executor;
  close(): Promise<void>;
}

/**
 * What an executor promises beyond the common contract. The suite declares the tests of a
 * promise only for the executors that make it: the local executor can only ask a task to stop,
 * and has no workload processes.
 */
export interface ContractCapabilities {
  /** Tasks run in workload processes that a daemon starts. */
  readonly workloads?: {
    /** The daemon's stop grace period: a task that ignores a stop that long is killed. */
    readonly stopGraceMs: number;
  };
}

/**
 * Declares the contract suite for one executor.
 * @param name shown in the suite's title.
 * @param makeExecutor called once per test: a fresh executor that runs at most
 *   {@link CONTRACT_CONCURRENCY} (2) instances at once, the rest waiting `pending` in creation
 *   order, and that can run the tasks of `test/fixtures/contract-tasks.ts`. `close()` is called
 *   after the test, once the suite has stopped whatever the test left running.
 * @param capabilities what this executor promises beyond the common contract.
 */
export function describeExecutorContract(
  name: string,
  makeExecutor: () => Promise<ContractExecutorHandle>,
  capabilities: ContractCapabilities = {},
): void {
  describe(`executor contract: ${name}`, () => {
    let handle: ContractExecutorHandle | undefined;

    beforeEach(async () => {
      handle = await makeExecutor();
      setExecutor(handle.executor);
    });

    afterEach(async () => {
      const current = handle;
      handle = undefined;
      if (current === undefined) return;
      try {
        const active = await listTaskInstances({ status: ["pending", "running"] });
        await Promise.all(active.map((instance) => instance.stop()));
        await Promise.allSettled(active.map((instance) => instance.wait({ timeoutMs: 10_000 })));
      } finally {
        await current.close();
      }
    });

    describe("calling a task", () => {
      it("returns a pending instance synchronously, with a URL-safe id already set", async () => {
        const before = Date.now();
        const first = add(1, 2);
        const second = add(3, 4);

        expect(first.status).toBe(TaskStatus.Pending);
        expect(first.isDone()).toBe(false);
        expect(first.id).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(encodeURIComponent(first.id)).toBe(first.id);
        expect(second.id).not.toBe(first.id);
        expect(first.taskId).toBe(add.definition.id);
        expect(first.taskName).toBe(add.definition.name);
        expect(first.progress).toBe(0);
        expect(first.output).toBeUndefined();
        expect(first.result).toBeUndefined();
        expect(first.error).toBeUndefined();
        expect(first.createdAt).toBeInstanceOf(Date);
        expect(first.createdAt.getTime()).toBeGreaterThanOrEqual(before - 1);
        expect(first.startedAt).toBeUndefined();
        expect(first.finishedAt).toBeUndefined();

        await expect(first.wait()).resolves.toBe(3);
        await expect(second.wait()).resolves.toBe(7);
        expect(first.isDone()).toBe(true);
        expect(first.status).toBe(TaskStatus.Completed);
        expect(first.startedAt).toBeInstanceOf(Date);
        expect(first.finishedAt).toBeInstanceOf(Date);
        expect(first.finishedAt?.getTime()).toBeGreaterThanOrEqual(first.startedAt?.getTime() ?? Number.NaN);
      });

      it("round-trips nested objects, Dates and undefined through arguments and result", async () => {
        const value = {
          text: "héllo ✓",
          count: 42,
          ratio: -0.25,
          flag: false,
          nothing: null,
          missing: undefined,
          when: new Date("2024-02-29T12:34:56.789Z"),
          list: [1, "two", { three: [3, undefined, new Date(0)] }],
          nested: { deeper: { deepest: { $nt: "looks like a tag", v: 1 } } },
        };
        const instance = echo(value);
        const result = await instance.wait();
        expect(result).toStrictEqual(value);
        expect(result).not.toBe(value);
        expect(instance.result).toStrictEqual(value);

        await expect(echo(new Date(86_400_000)).wait()).resolves.toStrictEqual(new Date(86_400_000));
        const undefinedResult = echo(undefined);
        await expect(undefinedResult.wait()).resolves.toBeUndefined();
        expect(undefinedResult.status).toBe(TaskStatus.Completed);
        await expect(add(2, 3).wait()).resolves.toBe(5);
      });

      it("gives the function decoded values of the wire types", async () => {
        const when = new Date("2030-01-01T00:00:00.000Z");
        await expect(
          describeArgs(when, undefined, [1], null, "s", 1, true, {}).wait(),
        ).resolves.toStrictEqual({
          count: 8,
          kinds: [
            `date:${when.toISOString()}`,
            "undefined",
            "array",
            "null",
            "string",
            "number",
            "boolean",
            "object",
          ],
        });
        await expect(describeArgs().wait()).resolves.toStrictEqual({ count: 0, kinds: [] });
      });

      it("gives the function a copy: neither side sees the other's mutations", async () => {
        const argument = { items: [1, 2] };
        const echoed = echo(argument);
        argument.items.push(3);
        await expect(echoed.wait()).resolves.toStrictEqual({ items: [1, 2] });

        const original = { items: [7] };
        const mutated = mutateArgument(original);
        await expect(mutated.wait()).resolves.toStrictEqual({ items: [7, 99], mutated: true });
        expect(original).toStrictEqual({ items: [7] });
      });

      it("runs synchronous task functions with their controller", async () => {
        const instance = syncDouble(21);
        await expect(instance.wait()).resolves.toBe(42);
        expect(instance.status).toBe(TaskStatus.Completed);
        expect(instance.output).toStrictEqual({ half: "way" });
      });

      it("replaces the output on each setOutput", async () => {
        const instance = setOutputTwice();
        await expect(instance.wait()).resolves.toBe("done");
        expect(instance.output).toStrictEqual({ second: 2 });
      });
    });

    describe("following an instance", () => {
      it("shows progress and output live through onChange and the async iterator, ending with the final snapshot", async () => {
        const instance = waitForStop("finished");
        const events = recordChanges(instance);
        const iterated: TaskSnapshot[] = [];
        let stopRequested = false;
        for await (const snapshot of instance) {
          iterated.push(snapshot);
          if (!stopRequested && snapshot.progress === 0.5 && snapshot.output?.phase === "waiting") {
            // The task cannot get past progress 0.5 before this stop: seeing 0.5 proves liveness.
            expect(snapshot.status).toBe(TaskStatus.Running);
            expect(instance.isDone()).toBe(false);
            stopRequested = true;
            await instance.stop();
          }
        }
        expect(stopRequested).toBe(true);
        const last = iterated.at(-1);
        expect(last?.status).toBe(TaskStatus.Cancelled);
        expect(last?.result).toBe("finished");
        expect(last?.progress).toBe(0.9);
        expect(last?.output).toStrictEqual({ phase: "stopping" });
        expect(instance.snapshot()).toStrictEqual(last);

        const live = events.findIndex((s) => s.status === TaskStatus.Running && s.progress === 0.5);
        expect(live).toBeGreaterThanOrEqual(0);
        expect(events.findIndex((s) => s.output?.phase === "waiting")).toBeGreaterThanOrEqual(0);
        expect(events.at(-1)).toStrictEqual(last);
        expectOneTerminalAtTheEnd(events);
        expectOneTerminalAtTheEnd(iterated);
      });

      it("reports progress from 0 to 1 with output as a task counts", async () => {
        const instance = slowCount(5, 5);
        const events = recordChanges(instance);
        const iterating = collect(instance);
        await expect(instance.wait()).resolves.toStrictEqual({ counted: 5, stopped: false });
        const iterated = await iterating;

        for (const seen of [events, iterated]) {
          const progress = seen.map((s) => s.progress);
          expect(progress.every((p) => p >= 0 && p <= 1)).toBe(true);
          expect(progress).toStrictEqual([...progress].sort((a, b) => a - b));
          expect(seen.at(-1)).toMatchObject({
            status: TaskStatus.Completed,
            progress: 1,
            output: { step: 5 },
          });
          expectOneTerminalAtTheEnd(seen);
        }
        expect(instance.progress).toBe(1);
        expect(instance.output).toStrictEqual({ step: 5 });
      });

      it("never changes an instance after it finished, whichever way it ended", async () => {
        const completed = slowCount(2, 1);
        const failed = throwsError("final");
        const cancelled = waitForStop("kept");
        const records = [completed, failed, cancelled].map((instance) => recordChanges(instance));
        await untilSnapshot(cancelled, (s) => s.output?.phase === "waiting", "it waits for a stop");
        await cancelled.stop();
        const settled = await Promise.allSettled([completed.wait(), failed.wait(), cancelled.wait()]);
        expect(settled.map((s) => s.status)).toStrictEqual(["fulfilled", "rejected", "fulfilled"]);

        for (const [index, instance] of [completed, failed, cancelled].entries()) {
          const final = instance.snapshot();
          await instance.stop();
          await stopTaskInstance(instance.id);
          const reread = await getTaskInstance(instance.id);
          expect(reread?.snapshot()).toStrictEqual(final);
          expect(instance.snapshot()).toStrictEqual(final);
          const seen = records[index] ?? [];
          expect(seen.at(-1)).toStrictEqual(final);
          expectOneTerminalAtTheEnd(seen);
        }
        expect([completed.status, failed.status, cancelled.status]).toStrictEqual([
          TaskStatus.Completed,
          TaskStatus.Failed,
          TaskStatus.Cancelled,
        ]);
      });

      it("isDone() is false while pending or running and true once finished", async () => {
        const instance = waitForStop();
        expect(instance.isDone()).toBe(false);
        await untilSnapshot(instance, (s) => s.status === TaskStatus.Running, "it runs");
        expect(instance.isDone()).toBe(false);
        await instance.stop();
        await instance.wait();
        expect(instance.isDone()).toBe(true);

        const failed = throwsError("done");
        await expect(failed.wait()).rejects.toBeInstanceOf(TaskFailedError);
        expect(failed.isDone()).toBe(true);
      });
    });

    describe("waitForCompletion", () => {
      it("resolves by handle and by id", async () => {
        const instance = add(20, 22);
        await expect(waitForCompletion(instance)).resolves.toBe(42);
        await expect(waitForCompletion(instance.id)).resolves.toBe(42);
        const other = echo({ by: "id" });
        await expect(waitForCompletion(other.id)).resolves.toStrictEqual({ by: "id" });
      });

      it("rejects with TaskFailedError whose cause carries the thrown error's name, message and stack", async () => {
        const instance = throwsError("the disk is full");
        const error = await rejectionOf(waitForCompletion(instance));
        expect(error).toBeInstanceOf(TaskFailedError);
        expect(error).toBeInstanceOf(TaskError);
        const failure = error as TaskFailedError;
        expect(failure.code).toBe("TASK_FAILED");
        expect(failure.name).toBe("TaskFailedError");
        expect(failure.instanceId).toBe(instance.id);
        expect(failure.message).toContain("the disk is full");
        const cause = failure.cause as Error;
        expect(cause).toBeInstanceOf(Error);
        expect(cause.name).toBe("ContractError");
        expect(cause.message).toBe("the disk is full");
        // The original stack, taken where the task threw, not one made on the caller's side.
        expect(cause.stack).toContain("contract-tasks");
        expect(failure.error).toMatchObject({ name: "ContractError", message: "the disk is full" });

        expect(instance.status).toBe(TaskStatus.Failed);
        expect(instance.error).toMatchObject({ name: "ContractError", message: "the disk is full" });
        expect(instance.result).toBeUndefined();
        expect(instance.finishedAt).toBeInstanceOf(Date);
        await expect(waitForCompletion(instance.id)).rejects.toBeInstanceOf(TaskFailedError);
      });

      it("fails with a clear message when a task throws a string or undefined", async () => {
        const string = throwsString("plain string thrown");
        const stringError = await rejectionOf(string.wait());
        expect(stringError).toBeInstanceOf(TaskFailedError);
        expect((stringError as Error).message).toContain("plain string thrown");
        expect(string.status).toBe(TaskStatus.Failed);
        expect(string.error?.message).toContain("plain string thrown");

        const nothing = throwsUndefined();
        const nothingError = await rejectionOf(nothing.wait());
        expect(nothingError).toBeInstanceOf(TaskFailedError);
        expect((nothingError as Error).message).toContain("undefined");
        expect(nothing.status).toBe(TaskStatus.Failed);
        expect(nothing.error?.message).toContain("undefined");
      });

      it("fails an instance whose result cannot cross the wire, with TaskInputError info", async () => {
        const instance = returnsBadResult();
        const error = await rejectionOf(instance.wait());
        expect(error).toBeInstanceOf(TaskFailedError);
        expect(instance.status).toBe(TaskStatus.Failed);
        expect(instance.error).toMatchObject({ name: "TaskInputError", code: "TASK_INPUT" });
        expect(instance.error?.message).toMatch(/result/);
        expect(((error as TaskFailedError).cause as Error).name).toBe("TaskInputError");
      });

      it("rejects with TaskTimeoutError after timeoutMs while the task goes on", async () => {
        const instance = waitForStop("went on");
        await untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it waits for a stop");

        const error = await rejectionOf(waitForCompletion(instance, { timeoutMs: 1 }));
        expect(error).toBeInstanceOf(TaskTimeoutError);
        expect(error).toMatchObject({ code: "TASK_TIMEOUT", instanceId: instance.id, timeoutMs: 1 });
        await expect(waitForCompletion(instance.id, { timeoutMs: 1 })).rejects.toBeInstanceOf(
          TaskTimeoutError,
        );
        expect(instance.status).toBe(TaskStatus.Running);
        expect(instance.isDone()).toBe(false);

        await instance.stop();
        await expect(waitForCompletion(instance, { timeoutMs: 20_000 })).resolves.toBe("went on");
      });

      it("rejects with the signal's reason when the signal aborts", async () => {
        const instance = waitForStop();
        await untilSnapshot(instance, (s) => s.status === TaskStatus.Running, "it runs");
        const reason = new Error("the caller gave up");
        const controller = new AbortController();
        const waiting = waitForCompletion(instance, { signal: controller.signal });
        controller.abort(reason);
        expect(await rejectionOf(waiting)).toBe(reason);
        expect(await rejectionOf(waitForCompletion(instance.id, { signal: AbortSignal.abort(reason) }))).toBe(
          reason,
        );
        expect(instance.status).toBe(TaskStatus.Running);
      });

      it("rejects with TaskNotFoundError for an unknown id", async () => {
        const id = unknownId();
        const error = await rejectionOf(waitForCompletion(id));
        expect(error).toBeInstanceOf(TaskNotFoundError);
        expect(error).toMatchObject({ code: "TASK_NOT_FOUND", instanceId: id });
      });
    });

    describe("stopping", () => {
      it("cancels a pending instance at once, and it never runs", async () => {
        const blockers = Array.from({ length: CONTRACT_CONCURRENCY }, (_, i) => waitForStop(`blocker ${i}`));
        await Promise.all(
          blockers.map((blocker) =>
            untilSnapshot(blocker, (s) => s.status === TaskStatus.Running, "it runs"),
          ),
        );
        const queued = add(1, 1);
        const history = recordChanges(queued);
        expect(queued.status).toBe(TaskStatus.Pending);

        const stopped = await stopTaskInstance(queued.id);
        // "At once": cancelled when the stop resolves, without waiting for a free slot; the
        // stop resolves the instance, as the original returns its state.
        expect(stopped?.id).toBe(queued.id);
        expect(stopped?.status).toBe(TaskStatus.Cancelled);
        expect((await getTaskInstance(queued.id))?.status).toBe(TaskStatus.Cancelled);
        const error = await rejectionOf(waitForCompletion(queued));
        expect(error).toBeInstanceOf(TaskCancelledError);
        expect(error).toMatchObject({ code: "TASK_CANCELLED", instanceId: queued.id });
        await expect(waitForCompletion(queued.id)).rejects.toBeInstanceOf(TaskCancelledError);
        expect(queued.status).toBe(TaskStatus.Cancelled);
        expect(queued.startedAt).toBeUndefined();
        expect(queued.result).toBeUndefined();
        expect(queued.finishedAt).toBeInstanceOf(Date);

        // Free the slots and let the executor run what is queued after the cancelled one.
        for (const blocker of blockers) await blocker.stop();
        await Promise.all(blockers.map((blocker) => blocker.wait()));
        await expect(add(2, 2).wait()).resolves.toBe(4);

        const reread = await getTaskInstance(queued.id);
        expect(reread?.status).toBe(TaskStatus.Cancelled);
        expect(reread?.startedAt).toBeUndefined();
        expect(history.map((s) => s.status)).not.toContain(TaskStatus.Running);
        expect(history.every((s) => s.startedAt === undefined)).toBe(true);
        expectOneTerminalAtTheEnd(history);
      });

      it("cancels a running instance that returns early, keeping its value", async () => {
        const instance = waitForStop({ kept: true });
        await untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it waits for a stop");
        await expect(instance.stop()).resolves.toBeUndefined();
        await expect(waitForCompletion(instance)).resolves.toStrictEqual({ kept: true });
        await expect(waitForCompletion(instance.id)).resolves.toStrictEqual({ kept: true });
        expect(instance.status).toBe(TaskStatus.Cancelled);
        expect(instance.result).toStrictEqual({ kept: true });
        expect(instance.output).toStrictEqual({ phase: "stopping" });
        expect(instance.startedAt).toBeInstanceOf(Date);
      });

      it("lets a task see shouldStop() and return early", async () => {
        const instance = slowCount(2_000, 5);
        await untilSnapshot(
          instance,
          (s) => (s.output?.step as number | undefined) !== undefined,
          "it counts",
        );
        await stopTaskInstance(instance.id);
        const result = (await instance.wait()) as { counted: number; stopped: boolean };
        expect(result.stopped).toBe(true);
        expect(result.counted).toBeLessThan(2_000);
        expect(instance.status).toBe(TaskStatus.Cancelled);
      });

      it("cancels a running instance that throws an abort error, with TaskCancelledError", async () => {
        const instance = ignoresStopThenThrowsAbort();
        await untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it waits for a stop");
        await stopTaskInstance(instance.id);
        const error = await rejectionOf(instance.wait());
        expect(error).toBeInstanceOf(TaskCancelledError);
        expect(error).toMatchObject({ instanceId: instance.id });
        expect(instance.status).toBe(TaskStatus.Cancelled);
        expect(instance.result).toBeUndefined();
        expect(instance.output).toStrictEqual({ phase: "ignoring" });
      });

      it("fails a running instance that throws another error after a stop", async () => {
        const instance = throwsAfterStop("broke while stopping");
        await untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it waits for a stop");
        await instance.stop();
        const error = await rejectionOf(instance.wait());
        expect(error).toBeInstanceOf(TaskFailedError);
        expect(instance.status).toBe(TaskStatus.Failed);
        expect(instance.error).toMatchObject({ name: "ContractError", message: "broke while stopping" });
      });

      it("changes nothing once finished", async () => {
        const instance = add(5, 5);
        await instance.wait();
        const final = instance.snapshot();
        await expect(instance.stop()).resolves.toBeUndefined();
        expect((await stopTaskInstance(instance.id))?.snapshot()).toStrictEqual(final);
        expect(instance.snapshot()).toStrictEqual(final);
        expect((await getTaskInstance(instance.id))?.snapshot()).toStrictEqual(final);
        await expect(instance.wait()).resolves.toBe(10);
      });

      it("resolves undefined for an unknown id", async () => {
        await expect(stopTaskInstance(unknownId())).resolves.toBeUndefined();
      });
    });

    describe("getTaskInstance", () => {
      it("returns undefined for an unknown id", async () => {
        await expect(getTaskInstance(unknownId())).resolves.toBeUndefined();
      });

      it("returns a live handle on a running instance", async () => {
        const instance = waitForStop("seen live");
        await untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it waits for a stop");
        const handle = await getTaskInstance<string>(instance.id);
        if (handle === undefined) throw new Error("getTaskInstance lost a running instance");
        expect(handle.id).toBe(instance.id);
        expect(handle.taskId).toBe(waitForStop.definition.id);
        expect(handle.taskName).toBe(waitForStop.definition.name);
        expect(handle.status).toBe(TaskStatus.Running);
        expect(handle.progress).toBe(0.5);
        expect(handle.createdAt).toStrictEqual(instance.createdAt);
        const seen = recordChanges(handle);

        await stopTaskInstance(instance.id);
        await expect(handle.wait()).resolves.toBe("seen live");
        expect(handle.status).toBe(TaskStatus.Cancelled);
        expect(handle.progress).toBe(0.9);
        expect(handle.output).toStrictEqual({ phase: "stopping" });
        expect(seen.some((s) => s.progress === 0.9)).toBe(true);
        expectOneTerminalAtTheEnd(seen);
      });

      it("returns finished instances with their result", async () => {
        const instance = echo({ kept: ["result"] });
        await instance.wait();
        const handle = await getTaskInstance(instance.id);
        expect(handle?.isDone()).toBe(true);
        expect(handle?.result).toStrictEqual({ kept: ["result"] });
        expect(handle?.snapshot()).toStrictEqual(instance.snapshot());
      });
    });

    describe("getTaskController", () => {
      it("works deep in the task's async call tree", async () => {
        const instance = nestedController(7);
        await expect(instance.wait()).resolves.toStrictEqual({
          instanceId: instance.id,
          taskName: nestedController.definition.name,
        });
        expect(instance.output).toStrictEqual({ reachedDepth: true });
      });

      it("never lets two concurrent instances see each other's controller", async () => {
        const first = controllerIdsUntilStopped(2);
        const second = controllerIdsUntilStopped(2);
        await Promise.all(
          [first, second].map((instance) =>
            untilSnapshot(instance, (s) => s.status === TaskStatus.Running, "it runs"),
          ),
        );
        // Both are running now and neither ends before its stop: more rounds means interleaved rounds.
        await Promise.all(
          [first, second].map((instance) => {
            const from = roundsOf(instance.snapshot());
            return untilSnapshot(instance, (s) => roundsOf(s) >= from + 3, "it goes three more rounds");
          }),
        );
        await Promise.all([first.stop(), second.stop()]);
        for (const instance of [first, second]) {
          const result = (await instance.wait()) as { own: string; seen: string[]; rounds: number };
          expect(result.own).toBe(instance.id);
          expect(result.seen).toStrictEqual([instance.id]);
          expect(result.rounds).toBeGreaterThanOrEqual(3);
        }
      });
    });

    describe("listing", () => {
      it("lists instances in creation order, filtered by task, status, limit and cursor", async () => {
        const add1 = add(1, 1);
        const echo1 = echo("a");
        const add2 = add(2, 2);
        const failed = throwsError("listed");
        const echo2 = echo("b");
        const double = syncDouble(3);
        const made: TaskInstanceState<unknown>[] = [add1, echo1, add2, failed, echo2, double];
        await Promise.allSettled(made.map((instance) => instance.wait()));
        const ids = made.map((instance) => instance.id);
        const ours = (listed: TaskInstanceState[]) =>
          listed.map((instance) => instance.id).filter((id) => ids.includes(id));

        const all = await listTaskInstances();
        expect(ours(all)).toStrictEqual(ids);
        const listedFailed = all.find((instance) => instance.id === failed.id);
        expect(listedFailed?.status).toBe(TaskStatus.Failed);
        expect(listedFailed?.error).toMatchObject({ name: "ContractError", message: "listed" });
        expect(all.find((instance) => instance.id === echo2.id)?.result).toBe("b");

        const addIds = [add1.id, add2.id];
        for (const [label, filter] of [
          ["the task's name", add.definition.name],
          ["the definition id", add.definition.id],
        ] as const) {
          const listed = await listTaskInstances({ task: filter });
          expect(ours(listed), `filtered by ${label}`).toStrictEqual(addIds);
          expect(listed.every((instance) => instance.taskId === add.definition.id)).toBe(true);
        }
        expect(ours(await add.listInstances())).toStrictEqual(addIds);
        expect(ours(await echo.listInstances())).toStrictEqual([echo1.id, echo2.id]);
        expect(ours(await echo.listInstances({ limit: 1 }))).toHaveLength(1);

        expect(ours(await listTaskInstances({ status: TaskStatus.Failed }))).toStrictEqual([failed.id]);
        expect(ours(await listTaskInstances({ status: [TaskStatus.Completed] }))).toStrictEqual(
          [add1, echo1, add2, echo2, double].map((instance) => instance.id),
        );
        expect(
          ours(await listTaskInstances({ status: [TaskStatus.Failed, TaskStatus.Cancelled] })),
        ).toStrictEqual([failed.id]);
        expect(
          ours(await listTaskInstances({ status: [TaskStatus.Pending, TaskStatus.Running] })),
        ).toStrictEqual([]);
        expect(ours(await echo.listInstances({ status: TaskStatus.Completed }))).toStrictEqual([
          echo1.id,
          echo2.id,
        ]);
        expect(
          ours(await listTaskInstances({ task: throwsError.definition.id, status: TaskStatus.Completed })),
        ).toStrictEqual([]);

        const paged: string[] = [];
        let cursor: string | undefined;
        for (let pages = 0; ; pages++) {
          expect(pages).toBeLessThan(10_000);
          const page = await listTaskInstances({ limit: 2, cursor });
          expect(page.length).toBeLessThanOrEqual(2);
          paged.push(...page.map((instance) => instance.id));
          if (page.length < 2) break;
          cursor = page.at(-1)?.id;
        }
        expect(new Set(paged).size).toBe(paged.length);
        expect(paged.filter((id) => ids.includes(id))).toStrictEqual(ids);

        const addPaged: string[] = [];
        const firstPage = await add.listInstances({ limit: 1 });
        addPaged.push(...firstPage.map((instance) => instance.id));
        addPaged.push(
          ...(await add.listInstances({ limit: 1000, cursor: firstPage.at(-1)?.id })).map((i) => i.id),
        );
        expect(addPaged.filter((id) => ids.includes(id))).toStrictEqual(addIds);
      });

      it("filters by the task function itself", async () => {
        const made = [add(1, 2), echo("not add"), add(3, 4)];
        await Promise.all(made.map((instance) => instance.wait()));
        const ids = made.map((instance) => instance.id);
        const listed = await listTaskInstances({ task: add });
        expect(listed.map((instance) => instance.id).filter((id) => ids.includes(id))).toStrictEqual([
          made[0]?.id,
          made[2]?.id,
        ]);
        expect(listed.every((instance) => instance.taskId === add.definition.id)).toBe(true);
      });

      it("lists running instances as live handles", async () => {
        const instance = waitForStop("listed live");
        await untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it waits for a stop");
        const listed = (await waitForStop.listInstances({ status: TaskStatus.Running })).find(
          (candidate) => candidate.id === instance.id,
        );
        if (listed === undefined) throw new Error("the running instance is not listed as running");
        await instance.stop();
        await expect(listed.wait()).resolves.toBe("listed live");
        expect(listed.status).toBe(TaskStatus.Cancelled);
      });

      it("lists the task definitions in use, with the ids the task functions carry", async () => {
        await Promise.all([add(1, 2).wait(), echo("x").wait()]);
        const definitions = await listTaskDefinitions();
        for (const fn of [add, echo]) {
          expect(fn.definition.id).toMatch(/\S/);
          const found = definitions.find((definition) => definition.name === fn.definition.name);
          expect(found).toBeDefined();
          expect(found?.id).toBe(fn.definition.id);
        }
        expect(add.definition.id).not.toBe(echo.definition.id);
      });
    });

    describeRunningContract(() => {
      if (handle === undefined) throw new Error("no executor: the contract's beforeEach did not run");
      return handle.executor;
    }, capabilities);
    describeRunOptionsContract(() => (handle as ContractExecutorHandle).executor, capabilities);
    describeLogsContract(() => (handle as ContractExecutorHandle).executor);
  });
}

/** Every snapshot an instance goes through from now on, the current one first. */
function recordChanges<R>(instance: TaskInstanceState<R>): TaskSnapshot<R>[] {
  const seen = [instance.snapshot()];
  instance.onChange((changed) => {
    seen.push(changed.snapshot());
  });
  return seen;
}

/** Every snapshot the async iterator yields, until it ends by itself. */
async function collect<R>(instance: TaskInstanceState<R>): Promise<TaskSnapshot<R>[]> {
  const seen: TaskSnapshot<R>[] = [];
  for await (const snapshot of instance) seen.push(snapshot);
  return seen;
}

const ORDER: Record<string, number> = { pending: 0, running: 1, completed: 2, failed: 2, cancelled: 2 };

/** Statuses never go back, exactly one snapshot is terminal, and it is the last. */
function expectOneTerminalAtTheEnd(seen: readonly TaskSnapshot<unknown>[]): void {
  const ranks = seen.map((snapshot) => ORDER[snapshot.status] ?? -1);
  expect(ranks).toStrictEqual([...ranks].sort((a, b) => a - b));
  const terminal = seen.filter((snapshot) => ORDER[snapshot.status] === 2);
  expect(terminal).toHaveLength(1);
  expect(ORDER[seen.at(-1)?.status ?? "pending"]).toBe(2);
}

function roundsOf(snapshot: TaskSnapshot<unknown>): number {
  const rounds = snapshot.output?.rounds;
  return typeof rounds === "number" ? rounds : 0;
}

function unknownId(): string {
  return `unknown-${Math.random().toString(36).slice(2)}`;
}
