/**
 * The BullMQ side of `platform-throughput`: a Worker in its own process, as each of the daemon's
 * workloads is, doing what `benchTick` does: one progress report, not awaited (the task's
 * `setProgress` returns at once too; awaiting it would hold the slot for a Redis round trip),
 * and return `i + 1`.
 *
 *   node --import tsx bench/bullmq-worker.ts <redis port> <queue name> <concurrency>
 *
 * Sends "ready" over IPC once it listens for jobs; closes and exits on "close".
 */
import { Worker } from "bullmq";

const [port, queueName, concurrency] = process.argv.slice(2);
if (port === undefined || queueName === undefined || concurrency === undefined) {
  process.stderr.write("usage: bullmq-worker.ts <redis port> <queue name> <concurrency>\n");
  process.exit(2);
}

const worker = new Worker(
  queueName,
  async (job) => {
    job
      .updateProgress(50)
      .catch((error: Error) => process.stderr.write(`bullmq progress: ${error.message}\n`));
    return (job.data as { i: number }).i + 1;
  },
  {
    connection: { host: "127.0.0.1", port: Number(port), maxRetriesPerRequest: null },
    concurrency: Number(concurrency),
  },
);
worker.on("error", (error) => process.stderr.write(`bullmq worker: ${error.message}\n`));
await worker.waitUntilReady();
process.send?.("ready");
process.on("message", (message) => {
  if (message !== "close") return;
  void worker.close().then(() => process.exit(0));
});
