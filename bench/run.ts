/**
 * `npm run bench` entry: runs the benchmark sections, prints a report, and records the figures
 * in `bench/results.json` (sections not run this time keep their last recorded figures).
 *
 *   npm run bench                 every section
 *   npm run bench -- local        only the named sections (see SECTIONS)
 *   npm run bench -- --list       the section names
 *   npm run bench -- cluster --long   bigger counts, for the sections that have a long mode
 *
 * Memory figures need `global.gc`; without it this script runs itself again with --expose-gc.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { type BenchSection, printSection } from "./report.js";

/** One section of the report. Import its module lazily so unselected sections cost nothing. */
interface SectionEntry {
  readonly name: string;
  readonly description: string;
  readonly run: (flags: BenchFlags) => Promise<BenchSection>;
}

/** Command-line flags every section receives. */
interface BenchFlags {
  /** `--long`: bigger counts where a section has them (it says so in its notes). */
  readonly long: boolean;
}

const FLAGS = ["--long"] as const;

/** Every section, in report order. Add new ones here. */
const SECTIONS: readonly SectionEntry[] = [
  {
    name: "local",
    description: "in-process LocalExecutor: throughput vs p-queue, setProgress cost, heap per instance",
    run: async () => (await import("./local.js")).benchLocal({}),
  },
  {
    name: "platform-latency",
    description: "platform daemon (pool): setProgress -> client and stop() -> task, p50/p99 vs LocalExecutor",
    run: async () => (await import("./platform-latency.js")).benchPlatformLatency({}),
  },
  {
    name: "platform-throughput",
    description: "platform daemon (pool): 20,000 trivial instances end to end vs BullMQ 5 + local Redis",
    run: async () => (await import("./platform-throughput.js")).benchPlatformThroughput({}),
  },
  {
    name: "platform-http",
    description:
      "platform daemon (pool): throughput with --http and /metrics scraped every second vs without (goal: cost < 5%)",
    run: async () => (await import("./platform-http.js")).benchPlatformHttp({}),
  },
  {
    name: "console",
    description:
      "platform daemon (pool) with --http: console first page with 100,000 stored instances (goal < 300 ms), progress pushed to its event stream p99 (goal < 50 ms)",
    run: async () => (await import("./console.js")).benchConsole({}),
  },
  {
    name: "platform-process",
    description: "platform daemon (process per instance): instances/s vs bare `node -e 0` starts/s",
    run: async () => (await import("./platform-process.js")).benchPlatformProcess({}),
  },
  {
    name: "platform-store",
    description: "platform daemon: RSS with 100,000 stored instances, listing them all page by page",
    run: async () => (await import("./platform-store.js")).benchPlatformStore({}),
  },
  {
    name: "run-options",
    description:
      "platform daemon (pool): delayed-start lateness p50/p99, throughput under a concurrency limit vs limit / duration",
    run: async () => (await import("./run-options.js")).benchRunOptions(),
  },
  {
    name: "schedules",
    description: "platform daemon (pool): schedule fire lateness p50/p99, idle CPU with 1,000 schedules",
    run: async () => (await import("./schedules.js")).benchSchedules(),
  },
  {
    name: "cluster",
    description:
      "1 and 3 daemons on durable PostgreSQL vs graphile-worker 0.18 and the embedded store: throughput, statements and CPU per instance, cross-daemon progress/stop p50/p99, failover in leases (--long: bigger counts)",
    run: async ({ long }) => (await import("./cluster.js")).benchCluster({ long }),
  },
];

const RESULTS = fileURLToPath(new URL("./results.json", import.meta.url));

interface RecordedSection extends BenchSection {
  readonly ranAt: string;
  readonly environment: Record<string, string | number>;
}

interface Results {
  sections: Record<string, RecordedSection>;
}

if (typeof globalThis.gc !== "function") {
  // Run again with the collector exposed, keeping the loader flags (`--import tsx`) we came with.
  const child = spawnSync(process.execPath, [...process.execArgv, "--expose-gc", ...process.argv.slice(1)], {
    stdio: "inherit",
  });
  if (child.error !== undefined) throw child.error;
  process.exit(child.status ?? 1);
}

await main(process.argv.slice(2));

async function main(argv: readonly string[]): Promise<void> {
  if (argv.includes("--list") || argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write("usage: npm run bench [-- [--long] <section> ...]\n\nsections:\n");
    for (const section of SECTIONS) {
      process.stdout.write(`  ${section.name.padEnd(20)} ${section.description}\n`);
    }
    return;
  }
  const unknownFlags = argv.filter(
    (arg) => arg.startsWith("-") && !(FLAGS as readonly string[]).includes(arg),
  );
  if (unknownFlags.length > 0) {
    process.stderr.write(
      `unknown flag${unknownFlags.length > 1 ? "s" : ""}: ${unknownFlags.join(", ")}; known: ${FLAGS.join(", ")}\n`,
    );
    process.exitCode = 2;
    return;
  }
  const flags: BenchFlags = { long: argv.includes("--long") };
  const names = argv.filter((arg) => !arg.startsWith("-"));
  const unknown = names.filter((name) => !SECTIONS.some((section) => section.name === name));
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown section${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}; ` +
        `known: ${SECTIONS.map((section) => section.name).join(", ")}\n`,
    );
    process.exitCode = 2;
    return;
  }
  const selected = names.length === 0 ? SECTIONS : SECTIONS.filter((section) => names.includes(section.name));

  const results = readResults();
  let failed = 0;
  let missed = 0;
  for (const entry of selected) {
    process.stdout.write(`running ${entry.name} ...\n\n`);
    let section: BenchSection;
    try {
      section = await entry.run(flags);
    } catch (error) {
      failed++;
      process.stderr.write(`section ${entry.name} failed: ${(error as Error)?.stack ?? String(error)}\n\n`);
      continue;
    }
    printSection(section);
    missed += section.rows.filter((row) => row.pass === false).length;
    results.sections[entry.name] = {
      ranAt: new Date().toISOString(),
      environment: environment(),
      ...section,
    };
    writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
  }
  process.stdout.write(
    `${selected.length - failed} of ${selected.length} section(s) ran; ` +
      `${missed} goal(s) missed; figures in ${RESULTS}\n`,
  );
  if (failed > 0) process.exitCode = 1;
}

function readResults(): Results {
  if (!existsSync(RESULTS)) return { sections: {} };
  try {
    const parsed = JSON.parse(readFileSync(RESULTS, "utf8")) as Partial<Results>;
    return { sections: { ...(parsed.sections ?? {}) } };
  } catch {
    return { sections: {} };
  }
}

function environment(): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
    cpu: cpus[0]?.model ?? "unknown",
    cpus: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  };
}
