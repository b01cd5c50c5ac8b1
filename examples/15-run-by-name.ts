/** Starting a task by name (runTask), looking one up (getTaskDefinition), and getTaskInputs(). */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { TaskNotFoundError, getTaskDefinition, getTaskInputs, runTask, task } from "numerous-tasks";

/** Reads its arguments without naming them: getTaskInputs() is the decoded argument list. */
export const summarize = task(function summarize(..._numbers: number[]) {
  const inputs = getTaskInputs() as number[];
  return { count: inputs.length, sum: inputs.reduce((a, b) => a + b, 0) };
});

async function main(): Promise<void> {
  // Locally: the tasks this process defined; on the platform: the deployment's, once called.
  await summarize(0).wait();
  const definition = await getTaskDefinition("summarize");
  console.log(`getTaskDefinition("summarize"): ${JSON.stringify(definition)}`);
  assert.deepEqual(definition, summarize.definition);
  assert.equal(await getTaskDefinition("noSuchTask"), undefined);

  // By name, as another service (or `numerous-executor tasks run`) would, with call options.
  const instance = runTask<{ count: number; sum: number }>("summarize", [1, 2, 3], { priority: 1 });
  const summary = await instance.wait();
  console.log(`runTask("summarize", [1, 2, 3]): ${JSON.stringify(summary)}`);
  assert.deepEqual(summary, { count: 3, sum: 6 });

  // A name nobody defined fails the handle, which the call still returns at once.
  const unknown = runTask("noSuchTask", []);
  try {
    await unknown.wait();
    assert.fail("expected TaskNotFoundError");
  } catch (error) {
    assert.ok(error instanceof TaskNotFoundError);
    console.log(`runTask("noSuchTask"): ${error.name}`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
