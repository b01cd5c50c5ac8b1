/**
 * The part of the executor contract about how instances get run: once per client-made id,
 * within the concurrency cap and first come first served, with the controller's checks in the
 * process that runs the task, and, where tasks run in workloads, killed after the stop grace
 * period and told their instance by their environment. `test/executor-contract.ts` declares it
 * inside every executor's suite.
 *
 * The tasks keep their own record (a ledger file) of when they ran, so what is asserted is what
 * happened, not what the executor says happened.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Executor,
  NoTaskContextError,
  TaskCancelledError,
  TaskFailedError,
  TaskStatus,
  encodeValue,
  getTaskInstance,
  listTaskInstances,
  waitForCompletion,
} from "numerous-tasks";
import { afterEach, describe, expect, it } from "vitest";
import type { ContractCapabilities } from "./executor-contract.js";
import {
  add,
  controllerOutsideTask,
  definitionIds,
  echo,
  ignoresStop,
  readsWorkloadEnvironment,
  recordsRun,
  recordsStartAndEnd,
  reportsBadValues,
} from "./fixtures/contract-tasks.js";
import { pollUntil, withDeadline } from "./helpers/deadline.js";
import { rejectionOf, untilSnapshot } from "./helpers/handles.js";

const CONTRACT_TASKS = fileURLToPath(new URL("./fixtures/contract-tasks.ts", import.meta.url));
/** The cap every executor under the contract is made with (CONTRACT_CONCURRENCY). */
const CAP = 2;

/**
 * Declares the tests; `executor()` is the executor of the running test, made by the contract's
 * beforeEach.
 */
export function describeRunningContract(executor: () => Executor, capabilities: ContractCapabilities): void {
  let dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    dirs = [];
  });
  /** A ledger file the test's tasks append to. */
  const ledger = (): string => {
    const dir = mkdtempSync(join(tmpdir(), "nt-contract-ledger-"));
    dirs.push(dir);
    return join(dir, "ledger.txt");
  };
  const lines = (file: string): string[] => readFileSync(file, "utf8").trim().split("\n");

  describe("running instances", () => {
    it("makes one instance of a client-made id, however often it is submitted", async () => {
      const file = ledger();
      const id = `idempotent-${Math.random().toString(36).slice(2)}`;
      const submit = (value: string) =>
        executor().submit({
          id,
          taskId: recordsRun.definition.id,
          taskName: recordsRun.definition.name,
          args: encodeValue([file, value], "args"),
          createdAt: Date.now(),
          module: CONTRACT_TASKS,
        });
      // Twice at once (one batch on the wire), as a retry of a call whose answer was lost does.
      expect(submit("first").id).toBe(id);
      expect(submit("second").id).toBe(id);
      await expect(withDeadline(waitForCompletion(id), "the instance to end")).resolves.toBe("first");
      // Again once it has ended: still the one instance, as it ended.
      expect(submit("third").id).toBe(id);
      await expect(waitForCompletion(id)).resolves.toBe("first");
      const reread = await getTaskInstance(id);
      expect(reread?.status).toBe(TaskStatus.Completed);
      expect(reread?.result).toBe("first");

      // A later instance is a barrier: whatever the submits started has run by the time it ends.
      const barrier = recordsRun(file, "barrier");
      await expect(barrier.wait()).resolves.toBe("barrier");
      expect(lines(file).sort()).toStrictEqual([`${barrier.id} barrier`, `${id} first`].sort());
      const listed = (await listTaskInstances()).filter((instance) => instance.id === id);
      expect(listed.map((instance) => [instance.id, instance.status, instance.result])).toStrictEqual([
        [id, TaskStatus.Completed, "first"],
      ]);
    });

    it(`runs at most ${CAP} instances at once and starts the rest first come, first served`, async () => {
      const file = ledger();
      const count = CAP + 4;
      const instances = Array.from({ length: count }, (_, label) => recordsStartAndEnd(file, label));
      await Promise.all(
        instances
          .slice(0, CAP)
          .map((instance) => untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it runs")),
      );
      expect(instances.slice(CAP).map((instance) => instance.status)).toStrictEqual(
        Array.from({ length: count - CAP }, () => TaskStatus.Pending),
      );
      // Stopping one frees one slot: the oldest pending instance must take it, and runs before
      // the next stop frees another.
      for (const [label, instance] of instances.entries()) {
        await untilSnapshot(instance, (s) => s.output?.phase === "waiting", `instance ${label} runs`);
        await instance.stop();
        await expect(instance.wait()).resolves.toBe(label);
        const next = instances[label + CAP];
        if (next !== undefined) {
          await untilSnapshot(
            next,
            (s) => s.output?.phase === "waiting",
            `instance ${label + CAP}, the oldest pending, to take the freed slot`,
          );
        }
      }

      const record = lines(file);
      let running = 0;
      let mostAtOnce = 0;
      for (const line of record) {
        running += line.startsWith("start ") ? 1 : -1;
        mostAtOnce = Math.max(mostAtOnce, running);
      }
      expect(mostAtOnce, record.join(", ")).toBe(CAP);
      const starts = record.filter((line) => line.startsWith("start ")).map((line) => Number(line.slice(6)));
      // The first CAP start together, in whichever order their processes came up; then one by one.
      expect([...starts.slice(0, CAP)].sort((a, b) => a - b)).toStrictEqual([0, 1]);
      expect(starts.slice(CAP)).toStrictEqual(Array.from({ length: count - CAP }, (_, i) => CAP + i));
      const startedAt = instances.map((instance) => instance.startedAt?.getTime() ?? Number.NaN);
      expect(startedAt.slice(CAP)).toStrictEqual([...startedAt.slice(CAP)].sort((a, b) => a - b));
    });
  });

  describe("the controller, in the process that runs the task", () => {
    it("refuses bad progress with RangeError and bad output with TaskInputError, keeping what was reported", async () => {
      const instance = reportsBadValues();
      const result = await instance.wait();
      const rangeError = "RangeError RangeError -";
      const inputError = "TaskInputError TaskInputError TASK_INPUT";
      expect(result).toStrictEqual({
        progress: [rangeError, rangeError, rangeError, rangeError, rangeError, rangeError],
        output: [inputError, inputError, inputError, inputError, inputError, inputError, inputError],
        outside: "other NoTaskContextError NO_TASK_CONTEXT",
        inside: instance.id,
      });
      expect(instance.status).toBe(TaskStatus.Completed);
      expect(instance.progress).toBe(1);
      expect(instance.output).toStrictEqual({ kept: true });
    });

    it("throws NoTaskContextError outside the task's async context, failing the instance when left uncaught", async () => {
      const instance = controllerOutsideTask();
      const error = await rejectionOf(instance.wait());
      expect(error).toBeInstanceOf(TaskFailedError);
      expect(instance.status).toBe(TaskStatus.Failed);
      expect(instance.error).toMatchObject({
        name: "NoTaskContextError",
        code: "NO_TASK_CONTEXT",
        message: new NoTaskContextError().message,
      });
      expect(((error as TaskFailedError).cause as Error).name).toBe("NoTaskContextError");
    });

    it("computes the same definition ids where the task runs as where it was called", async () => {
      const seen = await definitionIds().wait();
      expect(seen).toStrictEqual({
        pid: expect.any(Number),
        add: add.definition.id,
        echo: echo.definition.id,
      });
      if (capabilities.workloads !== undefined) expect(seen.pid).not.toBe(process.pid);
    });
  });

  const workloads = capabilities.workloads;
  if (workloads === undefined) return;

  describe("workloads", () => {
    it(`kills a task that ignores a stop for the grace period (${workloads.stopGraceMs} ms): cancelled, TaskCancelledError`, async () => {
      const instance = ignoresStop();
      const running = await untilSnapshot(instance, (s) => s.output?.phase === "waiting", "it runs");
      const pid = running.output?.pid as number;
      await instance.stop();
      // It saw the stop and went on: only a kill can end it now.
      await untilSnapshot(
        instance,
        (s) => s.output?.phase === "ignoring" && (s.output.beats as number) >= 2,
        "it ignores the stop",
      );
      const error = await rejectionOf(
        withDeadline(
          waitForCompletion(instance),
          "the daemon to kill the task after its grace period",
          workloads.stopGraceMs + 20_000,
        ),
      );
      expect(error).toBeInstanceOf(TaskCancelledError);
      expect(error).toMatchObject({ code: "TASK_CANCELLED", instanceId: instance.id });
      expect(((error as TaskCancelledError).cause as Error).name).toBe("TaskStoppedError");
      expect(instance.status).toBe(TaskStatus.Cancelled);
      expect(instance.result).toBeUndefined();
      expect(instance.error).toMatchObject({
        name: "TaskStoppedError",
        message: `the task did not end within the ${workloads.stopGraceMs} ms stop grace period, so its workload was killed`,
      });
      await expect(waitForCompletion(instance.id)).rejects.toBeInstanceOf(TaskCancelledError);
      await pollUntil(() => !processExists(pid), `the killed workload ${pid} to be gone`);
      // The slot it held is free again.
      await expect(add(1, 2).wait()).resolves.toBe(3);
    });

    it("names the instance and carries its arguments in the workload's NUMEROUS_TASK_INSTANCE_ID and TASK_DATA_INPUT", async () => {
      const args = [{ when: new Date(86_400_000), list: [1, undefined, "two"] }, null, "text"] as const;
      const instance = readsWorkloadEnvironment(...args);
      await expect(instance.wait()).resolves.toStrictEqual({
        instanceId: instance.id,
        controllerId: instance.id,
        input: [...args],
      });
      const other = readsWorkloadEnvironment();
      await expect(other.wait()).resolves.toStrictEqual({
        instanceId: other.id,
        controllerId: other.id,
        input: [],
      });
    });
  });
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
