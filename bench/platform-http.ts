/**
 * What the HTTP port costs the daemon (issue 11: under 5% of `platform-throughput`): the same
 * run as that section's platform side (pool mode, trivial instances all submitted at once, timed
 * until the client holds every result) against two daemons started alike, one plain and one with
 * `--http` whose `/metrics` is scraped once a second through every run, as Prometheus would.
 * Runs alternate between the two, after a warm-up of each, so a change in the machine's load
 * falls on both.
 *
 * The last scrape must count every instance the served daemon ran: the figures are only worth
 * something if the metrics were right under load.
 */
import { PlatformExecutor } from "../executor-platform/client/platform-executor.js";
import { LocalExecutor } from "../executor-local/index.js";
import { setExecutor } from "../index.js";
import { cpuSecondsOf, loadNote, loadNow, platformExecutor, startBenchDaemon } from "./platform-common.js";
import { platformRun } from "./platform-throughput.js";
import { type BenchRow, type BenchSection, formatNumber, median } from "./report.js";

/** One run against one daemon. */
interface Run {
  readonly jobsPerSecond: number;
  /** CPU milliseconds the daemon process (not its workloads) spent per 1,000 jobs. */
  readonly daemonCpuMs: number;
}

/** Options of {@link benchPlatformHttp}. */
export interface BenchPlatformHttpOptions {
  /** Instances per run. Default 20,000. */
  instances?: number;
  /** Pool size of both daemons. Default 4. */
  concurrency?: number;
  /** Runs of each daemon. Default 5. */
  repeats?: number;
  /** Instances of the warm-up run of each (not reported). Default 1,000. */
  warmup?: number;
  /** How often /metrics is scraped during the served daemon's runs. Default 1 s. */
  scrapeEveryMs?: number;
}

export async function benchPlatformHttp(options: BenchPlatformHttpOptions = {}): Promise<BenchSection> {
  const startLoad = loadNow();
  const instances = options.instances ?? 20_000;
  const concurrency = options.concurrency ?? 4;
  const repeats = options.repeats ?? 5;
  const warmup = options.warmup ?? 1_000;
  const scrapeEveryMs = options.scrapeEveryMs ?? 1_000;

  const plain = await startBenchDaemon({ mode: "pool", concurrency });
  const served = await startBenchDaemon({ mode: "pool", concurrency, args: ["--http", "127.0.0.1:0"] });
  const plainClient = platformExecutor(plain.address);
  const servedClient = platformExecutor(served.address);
  const metricsUrl = `http://${served.http}/metrics`;
  const without: Run[] = [];
  const withHttp: Run[] = [];
  let scrapes = 0;
  let ranOnServed = 0;
  let counted = 0;
  try {
    const run = async (client: PlatformExecutor, n: number, scraped: boolean): Promise<Run> => {
      setExecutor(client);
      const pid = scraped ? served.pid : plain.pid;
      const cpu0 = cpuSecondsOf([pid]);
      const measured = (seconds: number): Run => ({
        jobsPerSecond: n / seconds,
        daemonCpuMs: ((cpuSecondsOf([pid]) - cpu0) / n) * 1e6,
      });
      if (!scraped) return measured(await platformRun(n));
      let failure: Error | undefined;
      const scrape = async () => {
        const response = await fetch(metricsUrl);
        const body = await response.text();
        if (response.status !== 200) throw new Error(`/metrics answered ${response.status}: ${body}`);
        scrapes++;
        return body;
      };
      const timer = setInterval(() => {
        scrape().catch((error: Error) => {
          failure ??= error;
        });
      }, scrapeEveryMs);
      let seconds: number;
      try {
        seconds = await platformRun(n);
      } finally {
        clearInterval(timer);
      }
      if (failure !== undefined) throw failure;
      const result = measured(seconds);
      ranOnServed += n;
      counted = endedCount(await scrape());
      return result;
    };
    await run(plainClient, warmup, false);
    await run(servedClient, warmup, true);
    for (let i = 0; i < repeats; i++) {
      if (i % 2 === 0) {
        without.push(await run(plainClient, instances, false));
        withHttp.push(await run(servedClient, instances, true));
      } else {
        withHttp.push(await run(servedClient, instances, true));
        without.push(await run(plainClient, instances, false));
      }
    }
  } finally {
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await plainClient.close();
    await servedClient.close();
    await plain.dispose();
    await served.dispose();
  }
  if (counted !== ranOnServed) {
    throw new Error(`/metrics counted ${counted} ended instances; the served daemon ran ${ranOnServed}`);
  }

  const a = median(without.map((r) => r.jobsPerSecond));
  const b = median(withHttp.map((r) => r.jobsPerSecond));
  const ca = median(without.map((r) => r.daemonCpuMs));
  const cb = median(withHttp.map((r) => r.daemonCpuMs));
  const label = `--http, /metrics scraped every ${scrapeEveryMs / 1000} s`;
  const rows: BenchRow[] = [
    {
      name: `platform (pool), concurrency ${concurrency}, no HTTP`,
      value: a,
      unit: "jobs/s",
      samples: without.map((r) => r.jobsPerSecond),
    },
    {
      name: `platform (pool), concurrency ${concurrency}, ${label}`,
      value: b,
      unit: "jobs/s",
      samples: withHttp.map((r) => r.jobsPerSecond),
    },
    {
      name: "throughput ratio with HTTP / without",
      value: b / a,
      unit: "x",
      baseline: a,
      ratio: b / a,
      goal: "ratio >= 0.95 (HTTP and metrics cost under 5%)",
      pass: b / a >= 0.95,
      samples: withHttp.map((r, i) => r.jobsPerSecond / (without[i] as Run).jobsPerSecond),
    },
    {
      name: "daemon CPU per 1,000 jobs, no HTTP",
      value: ca,
      unit: "ms",
      samples: without.map((r) => r.daemonCpuMs),
    },
    {
      name: `daemon CPU per 1,000 jobs, ${label}`,
      value: cb,
      unit: "ms",
      samples: withHttp.map((r) => r.daemonCpuMs),
    },
    {
      name: "daemon CPU ratio with HTTP / without",
      value: cb / ca,
      unit: "x",
      baseline: ca,
      ratio: cb / ca,
      goal: "ratio <= 1.05",
      pass: cb / ca <= 1.05,
      samples: withHttp.map((r, i) => r.daemonCpuMs / (without[i] as Run).daemonCpuMs),
    },
  ];
  const notes = [
    `${formatNumber(instances)} instances per run (benchTick: progress once, returns i + 1), all submitted at once, timed until the client holds every result; median of ${repeats} runs per daemon, alternated, after a ${formatNumber(warmup)}-instance warm-up of each`,
    "daemon CPU: the daemon process alone (its HTTP server and metrics live there, not in the workloads), from /proc; less sensitive than throughput to other load on the machine",
    `two daemons from dist/, pool mode, durable SQLite store, started alike but for --http; ${formatNumber(scrapes)} scrapes of /metrics in all, and the last one counted every one of the ${formatNumber(ranOnServed)} instances the served daemon ran`,
    loadNote(startLoad),
  ];
  return { title: "Platform executor: the cost of --http and /metrics (pool mode)", rows, notes };
}

/** The sum of `numerous_tasks_instances_ended_total` in a scrape. */
function endedCount(body: string): number {
  let sum = 0;
  for (const line of body.split("\n")) {
    if (line.startsWith("numerous_tasks_instances_ended_total{"))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}
