/**
 * The local executor's scheduling of instances with run options under load: limits that are
 * never passed, never an instance left behind, whatever the mix of priorities, keys, stops and
 * instances without options. The tasks count themselves in this process, so what is asserted
 * is what ran at once.
 */
import { LocalExecutor, TaskCancelledError, TaskStatus, setExecutor, task } from "numerous-tasks";
import { afterEach, expect, it } from "vitest";

let executor: LocalExecutor | undefined;

afterEach(async () => {
  await executor?.close();
  executor = undefined;
});

/** How many instances of the gated task run now, in all and per key, and the most ever. */
const seen = { running: 0, most: 0, byKey: new Map<string, number>(), mostPerKey: 0, ran: 0 };

function yieldTurns(turns: number): Promise<void> {
  let chain = Promise.resolve();
  for (let i = 0; i < turns; i++)
    chain = chain.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
  return chain;
}

const gated = task(
  { name: "gatedUnderLoad", concurrency: { limit: 3, key: (key: string) => key, perKeyLimit: 1 } },
  async function gatedUnderLoad(key: string, turns: number) {
    seen.running++;
    seen.ran++;
    seen.most = Math.max(seen.most, seen.running);
    const perKey = (seen.byKey.get(key) ?? 0) + 1;
    seen.byKey.set(key, perKey);
    seen.mostPerKey = Math.max(seen.mostPerKey, perKey);
    await yieldTurns(turns);
    seen.byKey.set(key, perKey - 1);
    seen.running--;
    return key;
  },
);

const plain = task(async function plainBesideGated(value: number) {
  await yieldTurns(1);
  return value;
});

/** A small deterministic generator, so a failure can be run again as it was. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

it("never passes a task's limit nor its per-key limit, and leaves no instance behind, under a mix of keys, priorities and stops", async () => {
  executor = new LocalExecutor({ concurrency: 8 });
  setExecutor(executor);
  const next = random(20_261_202);
  const keys = Array.from({ length: 40 }, (_, i) => `key-${i}`);
  const gatedOnes = Array.from({ length: 3_000 }, () => {
    const key = keys[Math.floor(next() * keys.length)] as string;
    const priority = Math.floor(next() * 5) - 2;
    return gated.with({ priority })(key, 1 + Math.floor(next() * 3));
  });
  const plainOnes = Array.from({ length: 500 }, (_, i) => plain(i));
  // Stop some at once: waiting for their turn, or held back by a full limit once the first run.
  const stopped = gatedOnes.filter(() => next() < 0.1);
  await Promise.all(stopped.slice(0, stopped.length / 2).map((instance) => instance.stop()));
  await yieldTurns(2);
  await Promise.all(stopped.slice(stopped.length / 2).map((instance) => instance.stop()));

  const settled = await Promise.allSettled(gatedOnes.map((instance) => instance.wait()));
  await expect(Promise.all(plainOnes.map((instance) => instance.wait()))).resolves.toStrictEqual(
    plainOnes.map((_, i) => i),
  );
  const stoppedIds = new Set(stopped.map((instance) => instance.id));
  for (const [i, outcome] of settled.entries()) {
    const instance = gatedOnes[i];
    if (instance === undefined) continue;
    if (outcome.status === "rejected") {
      expect(outcome.reason).toBeInstanceOf(TaskCancelledError);
      expect(stoppedIds.has(instance.id)).toBe(true);
    } else if (instance.status !== TaskStatus.Completed) {
      // Stopped while it ran: it returned its value.
      expect(instance.status).toBe(TaskStatus.Cancelled);
      expect(stoppedIds.has(instance.id)).toBe(true);
    }
  }
  // Every instance ran once, but those stopped before they started.
  const neverRan = settled.filter((outcome) => outcome.status === "rejected").length;
  expect(neverRan).toBeGreaterThan(0);
  expect(seen.ran).toBe(gatedOnes.length - neverRan);
  expect(seen.most).toBe(3);
  expect(seen.mostPerKey).toBe(1);
  expect(seen.running).toBe(0);
});
