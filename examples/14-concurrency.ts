/** Concurrency limits: at most N of a task at once in the whole executor, and at most M per key. */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { task } from "numerous-tasks";

interface Span {
  readonly label: string;
  readonly start: number;
  readonly end: number;
}

/** Holds its slot for `ms`; returns when it started and ended, by its own clock. */
async function hold(label: string, ms: number): Promise<Span> {
  const start = Date.now();
  await sleep(ms);
  return { label, start, end: Date.now() };
}

/** At most 2 exports at once, however many are called and however many daemons run them. */
export const exportReport = task(
  { name: "exportReport", concurrency: { limit: 2 } },
  (report: string, ms: number) => hold(report, ms),
);

/** At most 1 sync per customer at once; different customers in parallel. */
export const syncCustomer = task(
  { name: "syncCustomer", concurrency: { key: (customerId: string) => customerId, perKeyLimit: 1 } },
  (customerId: string, ms: number) => hold(customerId, ms),
);

/** The most spans that overlap at any moment. */
function mostAtOnce(spans: readonly Span[]): number {
  const edges = spans.flatMap((s) => [
    { at: s.start, step: 1 },
    { at: s.end, step: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || a.step - b.step); // an end before a start at the same ms
  let now = 0;
  let most = 0;
  for (const edge of edges) most = Math.max(most, (now += edge.step));
  return most;
}

async function main(): Promise<void> {
  // Four exports: the rest wait pending while two run.
  const exports = Array.from({ length: 4 }, (_, i) => exportReport(`report-${i + 1}`, 200));
  const spans = await Promise.all(exports.map((instance) => instance.wait()));
  console.log(`exportReport: ${spans.length} ran, never more than 2 at once: ${mostAtOnce(spans) <= 2}`);
  assert.ok(mostAtOnce(spans) <= 2);

  // Two customers, two syncs each: one at a time per customer.
  const syncs = ["c-1", "c-2", "c-1", "c-2"].map((customer) => syncCustomer(customer, 200));
  const synced = await Promise.all(syncs.map((instance) => instance.wait()));
  for (const customer of ["c-1", "c-2"]) {
    const theirs = synced.filter((span) => span.label === customer);
    console.log(`syncCustomer ${customer}: ${theirs.length} ran, one at a time: ${mostAtOnce(theirs) === 1}`);
    assert.equal(mostAtOnce(theirs), 1);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
