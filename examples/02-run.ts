/** Running a task: the call returns a live TaskInstanceState at once, before the task runs. */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { TaskInputError, TaskStatus } from "numerous-tasks";
import { compute } from "./tasks.js";

async function main(): Promise<void> {
  const instance = compute(5); // synchronous: no await
  console.log(`id: ${instance.id}, task: ${instance.taskName}, status: ${instance.status}`);
  assert.match(instance.id, /^[\w-]+$/); // client-made and URL-safe
  assert.equal(instance.status, TaskStatus.Pending);
  assert.equal(instance.taskId, compute.definition.id);

  // The handle follows the instance by itself; here we just wait for the end (see 04-wait.ts).
  const result = await instance.wait();
  console.log(`status: ${instance.status}, result: ${instance.result}`);
  assert.equal(result, 6);
  assert.equal(instance.status, TaskStatus.Completed);
  assert.equal(instance.result, 6);

  // Arguments cross the wire, as in platform mode: what cannot is refused at once, by path.
  const call = compute as unknown as (arg: unknown) => unknown;
  try {
    call({ when: new Date(), callback: () => 0 });
    assert.fail("expected TaskInputError");
  } catch (error) {
    assert.ok(error instanceof TaskInputError);
    assert.equal(error.path, "args[0].callback");
    console.log(`bad argument refused: ${error.message}`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
