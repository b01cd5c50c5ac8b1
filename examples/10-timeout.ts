/** Timeouts per attempt: the attempt is stopped, fails with TaskTimeoutError, and is retried. */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { TaskFailedError, TaskTimeoutError, getTaskController, task } from "numerous-tasks";

/**
 * Takes `ms`, and listens to its signal, as a task should: at the timeout the signal aborts
 * (its reason a TaskTimeoutError) and the sleep throws. On the platform a task that ignored it
 * would be killed after the grace period; the local executor can only ask.
 */
export const buildReport = task(
  { name: "buildReport", timeoutMs: 5_000, retry: { maxAttempts: 2, initialDelayMs: 0 } },
  async function buildReport(ms: number) {
    const { signal } = getTaskController();
    await sleep(ms, undefined, { signal });
    return `report after ${ms} ms`;
  },
);

async function main(): Promise<void> {
  // 1. Done within the task's timeout (5 s per attempt).
  const quick = buildReport(50);
  console.log(`quick: ${await quick.wait()}`);

  // 2. A call may set its own: each of the two attempts is stopped at 300 ms, and it fails.
  const slow = buildReport.with({ timeoutMs: 300 })(60_000);
  try {
    await slow.wait();
    assert.fail("expected TaskFailedError");
  } catch (error) {
    assert.ok(error instanceof TaskFailedError);
    // `cause` rebuilds the last attempt's error from what crossed the executor: name and message.
    assert.equal((error.cause as Error).name, "TaskTimeoutError");
    console.log(`slow: ${slow.status} after ${error.attempts} attempts, each ${error.error.name}`);
    assert.equal(error.attempts, 2);
    assert.deepEqual(
      slow.attempts.map((attempt) => attempt.error?.name),
      ["TaskTimeoutError", "TaskTimeoutError"],
    );
  }

  // Not to be confused with wait({ timeoutMs }), which only stops waiting: the task goes on.
  const waited = buildReport(300);
  await assert.rejects(waited.wait({ timeoutMs: 10 }), TaskTimeoutError);
  console.log(`wait({ timeoutMs: 10 }) gave up; the task went on: ${await waited.wait()}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
