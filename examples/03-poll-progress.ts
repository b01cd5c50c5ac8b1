/** Monitoring progress by polling isDone() and progress. */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { slowCompute } from "./tasks.js";

async function main(): Promise<void> {
  const instance = slowCompute(5); // ten steps of 100 ms
  const seen: number[] = [];

  while (!instance.isDone()) {
    // JavaScript must yield here: the fields change between turns of the event loop,
    // never inside a synchronous spin (a busy `while` would hang forever).
    await sleep(100);
    console.log(`Progress: ${(instance.progress * 100).toFixed(1)}%`);
    seen.push(instance.progress);
  }

  console.log(`status: ${instance.status}, result: ${instance.result}`);
  assert.equal(instance.status, "completed");
  assert.equal(instance.result, 6);
  assert.equal(instance.progress, 1);
  assert.ok(
    seen.some((p) => p > 0 && p < 1),
    "saw progress between 0 and 1",
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
