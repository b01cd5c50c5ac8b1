/** Reporting progress and output from inside a task with getTaskController. */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { NoTaskContextError, getTaskController, task } from "numerous-tasks";

export const computeWithProgress = task(async function computeWithProgress(x: number) {
  const controller = getTaskController();

  const numSteps = 10;
  for (let i = 0; i < numSteps; i++) {
    await sleep(50);
    controller.setProgress(i / numSteps); // a number from 0 to 1
  }

  const result = x + 1;
  controller.setOutput({ result }); // a plain object, stored on the instance
  return result;
});

async function main(): Promise<void> {
  const instance = computeWithProgress(5);
  const reported: number[] = [];
  instance.onChange((i) => reported.push(i.progress));

  const result = await instance.wait();
  console.log(`progress reported: ${reported.map((p) => p.toFixed(1)).join(" ")}`);
  console.log(`output: ${JSON.stringify(instance.output)}, result: ${result}`);

  assert.deepEqual(instance.output, { result: 6 });
  assert.equal(result, 6);
  assert.ok(reported.includes(0.5), "saw the progress the task reported");
  assert.deepEqual(
    reported,
    [...reported].sort((a, b) => a - b),
    "progress only grows",
  );
  assert.equal(instance.progress, 1); // a completed instance is at 100%

  // Outside a task there is no controller.
  assert.throws(() => getTaskController(), NoTaskContextError);
  console.log("getTaskController() outside a task throws NoTaskContextError");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
