/** Idempotency keys: every call with one key gets the one instance, its id known at once. */
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { getTaskController, runTask, task } from "numerous-tasks";

/** Sends an invoice, and notes each send in `ledger`: how the example counts the sends. */
export const sendInvoice = task(function sendInvoice(ledger: string, orderId: string, cents: number) {
  appendFileSync(ledger, `${getTaskController().instanceId}\n`);
  return `invoiced ${orderId}: ${cents} cents`;
});

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "idempotency-example-"));
  const ledger = join(dir, "sent");
  writeFileSync(ledger, "");
  // A key lives as long as its instance (until the daemon's --retention deletes it), so a real
  // key names the work: here an order id, new on every run of the example.
  const orderId = `order-${Date.now().toString(36)}`;
  const key = `invoice-${orderId}`;
  try {
    const first = sendInvoice.with({ idempotencyKey: key })(ledger, orderId, 1999);
    // A retry of the request, say after a timeout on the caller's side: same key, same instance.
    const again = sendInvoice.with({ idempotencyKey: key })(ledger, orderId, 1999);
    // Known at once, before any executor answered: the id derives from the key.
    console.log(`same id at once: ${first.id === again.id}`);
    assert.equal(first.id, again.id);

    // Different arguments change nothing: the first call's instance is the one.
    const changed = runTask<string>("sendInvoice", [ledger, orderId, 5], { idempotencyKey: key });
    assert.equal(changed.id, first.id);
    const results = await Promise.all([first.wait(), again.wait(), changed.wait()]);
    console.log(`results: ${[...new Set(results)].join(" | ")}`);
    assert.deepEqual(results, Array(3).fill(`invoiced ${orderId}: 1999 cents`));

    // After it finished, too.
    const later = sendInvoice.with({ idempotencyKey: key })(ledger, orderId, 1999);
    assert.equal(later.id, first.id);
    assert.equal(await later.wait(), results[0]);
    const sends = readFileSync(ledger, "utf8").trim().split("\n");
    console.log(`sent ${sends.length} time(s) for 4 calls`);
    assert.deepEqual(sends, [first.id]);

    // Another key, another instance.
    const other = sendInvoice.with({ idempotencyKey: `${key}-2` })(ledger, orderId, 1999);
    assert.notEqual(other.id, first.id);
    await other.wait();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
