/** Listing task definitions and instances. */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import {
  type ListTaskInstancesFilter,
  type TaskInstanceState,
  TaskStatus,
  listTaskDefinitions,
  listTaskInstances,
} from "numerous-tasks";
import { compute, slowCompute } from "./tasks.js";

/** Every instance matching `filter`, page by page: a page's last id is the next cursor. */
async function everyInstance(filter: ListTaskInstancesFilter = {}): Promise<TaskInstanceState[]> {
  const all: TaskInstanceState[] = [];
  for (let cursor: string | undefined; ; ) {
    const page = await listTaskInstances({ ...filter, limit: 100, cursor });
    all.push(...page);
    if (page.length < 100) return all;
    cursor = page.at(-1)?.id;
  }
}

async function main(): Promise<void> {
  const done = [compute(1), compute(2), slowCompute(3, 2, 50)];
  const stopped = slowCompute(4);
  await stopped.stop(); // still pending: cancelled at once
  await Promise.all(done.map((instance) => instance.wait()));

  console.log("Task definitions:");
  const definitions = await listTaskDefinitions();
  for (const def of definitions) console.log(`  ${def.name} (id: ${def.id})`);
  const names = definitions.map((def) => def.name);
  assert.ok(names.includes("compute") && names.includes("slowCompute"));

  // All instances, in creation order (locally: this process's; on the platform: the deployment's).
  const instances = await everyInstance();
  console.log(`Task instances (${instances.length}, latest last):`);
  for (const inst of instances.slice(-6)) {
    const progress = (inst.progress * 100).toFixed(0);
    console.log(`  ${inst.id}: ${inst.taskName} ${inst.status} (progress: ${progress}%)`);
  }
  const ids = instances.map((inst) => inst.id);
  const mine = [...done, stopped].map((inst) => ids.indexOf(inst.id));
  assert.ok(mine[0] !== undefined && mine[0] >= 0, "lists this run's instances");
  assert.deepEqual(
    mine,
    [...mine].sort((a, b) => a - b),
    "in creation order",
  );

  // One task's instances only.
  const computes = await compute.listInstances();
  console.log(`compute.listInstances(): ${computes.length} instances`);
  assert.ok(computes.length >= 2 && computes.every((inst) => inst.taskName === "compute"));

  // Filter by status (one or several), and by task name or id.
  const cancelled = await everyInstance({ task: "slowCompute", status: TaskStatus.Cancelled });
  console.log(`cancelled slowCompute instances: ${cancelled.length}`);
  for (const inst of cancelled) {
    assert.ok(inst.status === "cancelled" && inst.taskName === "slowCompute");
  }
  assert.ok(cancelled.some((inst) => inst.id === stopped.id));
  assert.ok(!cancelled.some((inst) => inst.id === done[2]?.id));
  const ended = await everyInstance({
    task: compute.definition.id,
    status: ["completed", "failed"],
  });
  assert.ok(ended.some((inst) => inst.id === done[0]?.id));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
