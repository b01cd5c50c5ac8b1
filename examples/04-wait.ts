/** Waiting for the result with waitForCompletion, with and without a timeout. */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { TaskTimeoutError, waitForCompletion } from "numerous-tasks";
import { compute, slowCompute } from "./tasks.js";

async function main(): Promise<void> {
  const result = await waitForCompletion(compute(5));
  console.log(`Result: ${result}`);
  assert.equal(result, 6);

  // By id works too, and instance.wait() is the same thing.
  const instance = compute(1);
  assert.equal(await waitForCompletion(instance.id), 2);
  assert.equal(await instance.wait(), 2);

  // timeoutMs gives up waiting; the task itself goes on running.
  const slow = slowCompute(10, 5, 100); // about 500 ms
  try {
    await waitForCompletion(slow, { timeoutMs: 100 });
    assert.fail("expected TaskTimeoutError");
  } catch (error) {
    assert.ok(error instanceof TaskTimeoutError);
    console.log(`timed out: ${error.message}`);
  }
  assert.ok(!slow.isDone(), "still running after the timeout");
  assert.equal(await waitForCompletion(slow, { timeoutMs: 5_000 }), 11);
  console.log(`slow result after all: ${slow.result}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
