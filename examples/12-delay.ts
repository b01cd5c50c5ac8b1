/** Delayed starts: delayMs or startAt keep an instance pending until its time; a stop cancels it. */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { TaskCancelledError, task } from "numerous-tasks";

/** Returns when it ran, by its own clock. */
export const sendReminder = task(function sendReminder(text: string) {
  return { text, ranAt: Date.now() };
});

async function main(): Promise<void> {
  // 1. In 500 ms: pending, with the time it may start.
  const soon = sendReminder.with({ delayMs: 500 })("stand-up in 5 minutes");
  assert.equal(soon.status, "pending");
  const scheduledFor = soon.scheduledFor;
  assert.ok(scheduledFor !== undefined);
  console.log(
    `delayMs 500: ${soon.status}, scheduled ${scheduledFor.getTime() - soon.createdAt.getTime()} ms after the call`,
  );
  const { ranAt } = await soon.wait();
  console.log(`ran at or after its time: ${ranAt >= scheduledFor.getTime()}`);
  assert.ok(ranAt >= scheduledFor.getTime());

  // 2. At a time: a Date (or epoch milliseconds). A stop cancels it while it waits.
  const tomorrow = sendReminder.with({ startAt: new Date(Date.now() + 86_400_000) })("renew the domain");
  assert.equal(tomorrow.status, "pending");
  await tomorrow.stop();
  await assert.rejects(tomorrow.wait(), TaskCancelledError);
  console.log(
    `startAt tomorrow, then stopped: ${tomorrow.status}, started: ${tomorrow.startedAt ?? "never"}`,
  );
  assert.equal(tomorrow.startedAt, undefined);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
