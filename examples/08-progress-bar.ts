/**
 * A live progress bar with cli-progress, driven by the instance's changes (no polling).
 * When stdout is not a terminal (CI, a pipe), it prints plain lines instead.
 */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import cliProgress from "cli-progress";
import { slowCompute } from "./tasks.js";

async function main(): Promise<void> {
  const instance = slowCompute(41, 20, 50); // twenty steps of 50 ms
  const tty = process.stdout.isTTY === true;
  const bar = new cliProgress.SingleBar(
    { format: "slowCompute [{bar}] {percentage}% | {status}", hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  if (tty) bar.start(100, 0, { status: instance.status });

  let updates = 0;
  let last = instance.snapshot();
  // One snapshot per change, ending after the final one. (instance.onChange(fn) works too.)
  for await (const snapshot of instance) {
    updates++;
    last = snapshot;
    const percent = Math.round(snapshot.progress * 100);
    if (tty) bar.update(percent, { status: snapshot.status });
    else console.log(`slowCompute ${snapshot.status} ${percent}%`);
  }
  if (tty) bar.stop();

  console.log(`result: ${last.result} after ${updates} updates`);
  assert.equal(last.status, "completed");
  assert.equal(last.progress, 1);
  assert.equal(last.result, 42);
  assert.ok(updates >= 3, "saw the bar move");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
