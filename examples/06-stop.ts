/** Stopping a task: request it from outside, check shouldStop() or the signal inside. */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import {
  type TaskInstanceState,
  type TaskSnapshot,
  TaskCancelledError,
  getTaskController,
  stopTaskInstance,
  task,
  waitForCompletion,
} from "numerous-tasks";

export const stoppable = task(async function stoppable(x: number) {
  const controller = getTaskController();

  const numSteps = 10;
  for (let i = 0; i < numSteps; i++) {
    controller.setProgress(i / numSteps);

    if (controller.shouldStop()) {
      console.log("  (task) stopped by request");
      controller.setOutput({ result: x, stoppedAtStep: i });
      return x; // returning early keeps the value; the status becomes "cancelled"
    }
    await sleep(100);
  }

  const result = x + 1;
  controller.setOutput({ result });
  return result;
});

// controller.signal aborts on a stop: pass it to anything that accepts an AbortSignal.
export const sleeper = task(async function sleeper(ms: number) {
  const { signal } = getTaskController();
  await sleep(ms, undefined, { signal }); // throws an AbortError when stopped
  return "woke up";
});

/** Follows the instance (no polling) until `test` holds or it ends. */
async function until(instance: TaskInstanceState, test: (s: TaskSnapshot) => boolean) {
  for await (const snapshot of instance) if (test(snapshot)) return;
}

async function main(): Promise<void> {
  // 1. stopTaskInstance(id): the task sees shouldStop() and returns early.
  const first = stoppable(5);
  await until(first, (s) => s.progress >= 0.2);
  await stopTaskInstance(first.id);
  const value = await waitForCompletion(first);
  console.log(`stopTaskInstance: status ${first.status}, returned ${value}`);
  console.log(`  output: ${JSON.stringify(first.output)}`);
  assert.equal(first.status, "cancelled");
  assert.equal(value, 5); // the early return value is kept
  assert.equal(first.output?.result, 5);

  // 2. instance.stop() is the same thing.
  const second = stoppable(7);
  await until(second, (s) => s.progress >= 0.2);
  await second.stop();
  assert.equal(await second.wait(), 7);
  console.log(`instance.stop(): status ${second.status}, returned ${second.result}`);
  assert.equal(second.status, "cancelled");

  // 3. A task that awaits on controller.signal is interrupted at once.
  const third = sleeper(60_000);
  await until(third, (s) => s.status === "running");
  const started = Date.now();
  await third.stop();
  await assert.rejects(third.wait(), TaskCancelledError); // it never returned a value
  console.log(`signal: status ${third.status} after ${Date.now() - started} ms`);
  assert.equal(third.status, "cancelled");

  // 4. A pending instance that is stopped never runs. Four sleepers fill the default
  //    concurrency (4, locally and on the daemon), so the next instance waits pending.
  const blockers = Array.from({ length: 4 }, () => sleeper(60_000));
  await Promise.all(blockers.map((blocker) => until(blocker, (s) => s.status === "running")));
  const fourth = stoppable(9);
  await fourth.stop();
  await Promise.all(blockers.map((blocker) => blocker.stop()));
  await assert.rejects(fourth.wait(), TaskCancelledError);
  console.log(`stopped while pending: ${fourth.status}, started: ${fourth.startedAt ?? "never"}`);
  assert.equal(fourth.status, "cancelled");
  assert.equal(fourth.startedAt, undefined);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
