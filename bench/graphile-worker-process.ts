/**
 * The graphile-worker side of the `cluster` section: one worker process of graphile-worker 0.18
 * on the section's PostgreSQL, with its defaults (no local queue, no completion batching), doing
 * what `benchTick` does as far as graphile-worker can: it has no progress and keeps no result,
 * so the task takes `{ i, ms }`, waits `ms` milliseconds when that is above 0, and computes `i + 1`.
 *
 *   node --import tsx bench/graphile-worker-process.ts <connection string> <concurrency>
 *
 * IPC: sends "ready" once it runs (its schema migrated); on `{ until: n }` answers `{ reached: n, sum }`
 * as soon as n jobs in all have succeeded since it started (`sum`: of their `i + 1`) (the bench then waits for their
 * completions to commit); exits on "close" after a graceful stop.
 */
import { Logger, run } from "graphile-worker";

// Warnings and errors only, as the daemons run (info level, but no line per instance); the bench
// also sets NO_LOG_SUCCESS, which graphile-worker reads as it loads, so it does not even
// format a line per succeeded job.
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning")
    process.stderr.write(`graphile-worker ${level}: ${message}\n`);
});

const [connectionString, concurrencyArg] = process.argv.slice(2);
if (connectionString === undefined || concurrencyArg === undefined) {
  process.stderr.write("usage: graphile-worker-process.ts <connection string> <concurrency>\n");
  process.exit(2);
}

let succeeded = 0;
/** The sum of every job's `i + 1`, which the bench checks as it checks the daemons' results. */
let sum = 0;
const waiting: number[] = [];
const answer = () => {
  for (let i = waiting.length - 1; i >= 0; i--) {
    const until = waiting[i] as number;
    if (succeeded < until) continue;
    waiting.splice(i, 1);
    process.send?.({ reached: until, sum });
  }
};

const runner = await run({
  connectionString,
  concurrency: Number(concurrencyArg),
  noHandleSignals: true,
  logger,
  taskList: {
    benchTick: async (payload) => {
      const { i, ms } = payload as { i: number; ms: number };
      if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
      // graphile-worker keeps no return value (an array would mean a batch job's failures).
      sum += i + 1;
    },
  },
});
runner.events.on("job:success", () => {
  succeeded++;
  if (waiting.length > 0) answer();
});
runner.events.on("job:error", ({ error }) =>
  process.stderr.write(`graphile-worker job failed: ${String(error)}\n`),
);
process.send?.("ready");
process.on("message", (message: unknown) => {
  if (message === "close") {
    void runner.stop().then(() => process.exit(0));
    return;
  }
  const until = (message as { until?: unknown } | null)?.until;
  if (typeof until === "number") {
    waiting.push(until);
    answer();
  }
});
