/** Retries: backoff between attempts, NonRetryableError to fail at once, and a stop that is final. */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  NonRetryableError,
  TaskCancelledError,
  TaskFailedError,
  type TaskInstanceState,
  type TaskSnapshot,
  task,
} from "numerous-tasks";

/**
 * Fails twice, then succeeds. It counts its tries in a file (an attempt may run in a fresh
 * process on the platform, so it keeps nothing in memory between attempts).
 */
export const flakyFetch = task(
  {
    name: "flakyFetch",
    retry: { maxAttempts: 4, backoff: "exponential", initialDelayMs: 100, maxDelayMs: 1_000 },
  },
  function flakyFetch(counterFile: string) {
    const tries = Number(readFileSync(counterFile, "utf8") || "0") + 1;
    writeFileSync(counterFile, String(tries));
    if (tries < 3) throw new Error(`service unavailable (try ${tries})`);
    return `fetched on try ${tries}`;
  },
);

/** A declined card will be declined again: NonRetryableError fails at once, whatever attempts remain. */
export const chargeCard = task(
  { name: "chargeCard", retry: { maxAttempts: 5, initialDelayMs: 100 } },
  function chargeCard(cardNumber: string) {
    if (cardNumber.startsWith("4000")) throw new NonRetryableError("card declined");
    return "charged";
  },
);

/** Always fails; retried a minute later, unless it is stopped first. */
export const alwaysFails = task(
  { name: "alwaysFails", retry: { maxAttempts: 3, initialDelayMs: 60_000 } },
  function alwaysFails() {
    throw new Error("still broken");
  },
);

/** Follows the instance (no polling) until `test` holds or it ends. */
async function until(instance: TaskInstanceState, test: (s: TaskSnapshot) => boolean) {
  for await (const snapshot of instance) if (test(snapshot)) return;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "retry-example-"));
  try {
    // 1. Two failures, then success on the third attempt, 100 ms then 200 ms apart.
    const counter = join(dir, "tries");
    writeFileSync(counter, "");
    const fetch = flakyFetch(counter);
    const value = await fetch.wait();
    console.log(`flakyFetch: ${fetch.status} on attempt ${fetch.attempt}: ${value}`);
    for (const attempt of fetch.attempts) {
      console.log(`  attempt ${attempt.attempt}: ${attempt.error ? attempt.error.message : "ok"}`);
    }
    assert.equal(value, "fetched on try 3");
    assert.equal(fetch.attempt, 3);
    assert.deepEqual(
      fetch.attempts.map((a) => a.error?.message),
      ["service unavailable (try 1)", "service unavailable (try 2)", undefined],
    );

    // A call's options override the task's: one attempt only.
    writeFileSync(counter, "");
    const once = flakyFetch.with({ retry: { maxAttempts: 1 } })(counter);
    await assert.rejects(once.wait(), TaskFailedError);
    console.log(`with maxAttempts 1: ${once.status}: ${once.error?.message}`);
    assert.equal(once.error?.message, "service unavailable (try 1)");

    // 2. NonRetryableError: one attempt of five, and the error says why.
    const declined = chargeCard("4000-0000-0000-0002");
    try {
      await declined.wait();
      assert.fail("expected TaskFailedError");
    } catch (error) {
      assert.ok(error instanceof TaskFailedError);
      console.log(`chargeCard: ${declined.status} after ${error.attempts} attempt: ${error.error.message}`);
      assert.equal(error.attempts, 1);
    }

    // 3. A stop is final: stopped while it waits to retry, it is cancelled and never retried.
    const broken = alwaysFails();
    await until(broken, (s) => s.status === "pending" && s.nextAttemptAt !== undefined);
    console.log(`alwaysFails: attempt ${broken.attempt} waits until the next attempt time`);
    await broken.stop();
    await assert.rejects(broken.wait(), TaskCancelledError);
    console.log(`stopped during the backoff: ${broken.status}, attempts made: ${broken.attempts.length}`);
    assert.equal(broken.status, "cancelled");
    assert.equal(broken.attempts.length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
