/** Priority: among instances ready to run, higher first; first come, first served within one. */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { type TaskInstanceState, type TaskSnapshot, task } from "numerous-tasks";

/**
 * One at a time (a concurrency limit of 1), so the rest queue up and the order they start in
 * shows. Returns when it started, by its own clock.
 */
export const render = task(
  { name: "render", concurrency: { limit: 1 } },
  async function render(label: string, ms: number) {
    const startedAt = Date.now();
    await sleep(ms);
    return { label, startedAt };
  },
);

/** Follows the instance (no polling) until `test` holds or it ends. */
async function until(instance: TaskInstanceState, test: (s: TaskSnapshot) => boolean) {
  for await (const snapshot of instance) if (test(snapshot)) return;
}

async function main(): Promise<void> {
  // Holds the one slot while the others are called.
  const first = render("running", 1_000);
  await until(first, (s) => s.status === "running");

  const queued = [
    render("low-1", 10), // priority 0, the default
    render("low-2", 10),
    render.with({ priority: 10 })("urgent", 10),
    render.with({ priority: 5 })("normal", 10),
  ];
  const results = await Promise.all([first, ...queued].map((instance) => instance.wait()));
  const order = results.sort((a, b) => a.startedAt - b.startedAt).map((result) => result.label);
  console.log(`started in this order: ${order.join(" > ")}`);
  assert.deepEqual(order, ["running", "urgent", "normal", "low-1", "low-2"]);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
