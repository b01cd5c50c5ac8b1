/**
 * `npm run chaos -- --seconds N --seed S`: one chaos run against a real daemon, or with
 * `--cluster 3` against three daemons on a PostgreSQL the run starts (see `chaos/run-chaos.ts`
 * and `RELIABILITY.md`). Prints the report; exits 1 when an invariant was violated, 2 on bad usage.
 *
 *   --seconds N     load and faults for N seconds (default 30)
 *   --seed S        the PRNG seed (default: random, printed)
 *   --mode M        process (default) or pool
 *   --concurrency N the daemon's --concurrency (default 4; each daemon's in a cluster)
 *   --cluster N     N daemons on one PostgreSQL (durable, started by the run) instead of one
 *                   daemon on its embedded store
 *   --lease-ms MS   the cluster's --lease-ms (default 10000, the daemon's default)
 *   --transport T   tcp (default) or unix
 *   --json FILE     also write the result as JSON
 *   --keep          keep the run directory even when nothing was violated
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { runChaos } from "./run-chaos.js";

function usage(message: string): never {
  process.stderr.write(
    `chaos: ${message}\nusage: npm run chaos -- [--seconds N] [--seed S] [--mode process|pool] [--concurrency N] [--cluster N [--lease-ms MS]] [--transport tcp|unix] [--json FILE] [--keep]\n`,
  );
  process.exit(2);
}

let values: ReturnType<typeof parse>["values"];
function parse() {
  return parseArgs({
    options: {
      seconds: { type: "string", default: "30" },
      seed: { type: "string" },
      mode: { type: "string", default: "process" },
      concurrency: { type: "string", default: "4" },
      transport: { type: "string", default: "tcp" },
      cluster: { type: "string" },
      "lease-ms": { type: "string" },
      json: { type: "string" },
      keep: { type: "boolean", default: false },
    },
    strict: true,
  });
}
try {
  values = parse().values;
} catch (error) {
  usage((error as Error).message);
}

const seconds = Number(values.seconds);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const concurrency = Number(values.concurrency);
if (!(seconds > 0)) usage("--seconds must be a positive number");
if (!Number.isInteger(seed) || seed < 0) usage("--seed must be a whole number");
if (!Number.isInteger(concurrency) || concurrency < 1)
  usage("--concurrency must be a whole number of at least 1");
if (values.mode !== "process" && values.mode !== "pool") usage("--mode must be process or pool");
if (values.transport !== "tcp" && values.transport !== "unix") usage("--transport must be tcp or unix");
const cluster = values.cluster === undefined ? undefined : Number(values.cluster);
if (cluster !== undefined && (!Number.isInteger(cluster) || cluster < 2 || cluster > 8))
  usage("--cluster must be a whole number of daemons from 2 to 8");
const leaseMs = values["lease-ms"] === undefined ? undefined : Number(values["lease-ms"]);
if (leaseMs !== undefined && (cluster === undefined || !Number.isInteger(leaseMs) || leaseMs < 3_000))
  usage("--lease-ms goes with --cluster, and must be a whole number of at least 3000");

const result = await runChaos({
  seconds,
  seed,
  mode: values.mode,
  concurrency,
  transport: values.transport,
  keep: values.keep,
  ...(cluster === undefined ? {} : { cluster }),
  ...(leaseMs === undefined ? {} : { leaseMs }),
  log: (line) => process.stderr.write(`${line}\n`),
});
process.stdout.write(`${result.table}\n`);
if (values.json !== undefined) {
  const { table: _table, ...rest } = result;
  writeFileSync(values.json, `${JSON.stringify(rest, null, 2)}\n`);
}
// Handles of a run (gRPC channels, timers of watches that ended) must not keep the process up.
process.exit(result.violations.length === 0 ? 0 : 1);
