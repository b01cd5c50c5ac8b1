/** Defining a task: task(fn) names it after the function, task({ name }, fn) names it yourself. */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { task } from "numerous-tasks";

// task(fn): the name is the function's name, "addOne".
export const addOne = task(function addOne(x: number): number {
  return x + 1;
});

// task({ name }, fn): a custom name.
export const myComputation = task({ name: "My Computation" }, (x: number): number => x + 1);

async function main(): Promise<void> {
  console.log("addOne.definition:", addOne.definition);
  console.log("myComputation.definition:", myComputation.definition);

  assert.equal(addOne.definition.name, "addOne");
  assert.equal(myComputation.definition.name, "My Computation");
  // The id depends only on the name, so it is the same in every process.
  assert.match(addOne.definition.id, /^td_[\w-]+$/);
  assert.notEqual(addOne.definition.id, myComputation.definition.id);

  // A task needs a name: an anonymous arrow function without { name } is refused.
  assert.throws(() => task((x: number) => x), TypeError);
  console.log("task(anonymous arrow) throws TypeError: a task needs a name");

  // Defined tasks are called like functions (see 02-run.ts).
  assert.equal(await addOne(1).wait(), 2);
  assert.equal(await myComputation(41).wait(), 42);
  console.log("addOne(1) -> 2, myComputation(41) -> 42");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
