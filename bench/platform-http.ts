/**
 * What the HTTP port costs the daemon (issue 11: under 5% of `platform-throughput`): the work of
 * that section's platform side (pool mode, trivial instances all submitted at once, timed until
 * the client holds every result) given to two daemons started alike, one plain and one with
 * `--http` whose `/metrics` is scraped once a second, as Prometheus would.
 *
 * Both daemons get their instances in the same turn and run at the same time, so whatever else
 * the machine does falls on both alike: each run is a pair measured under one set of conditions.
 * Each pair has two fresh daemons, started in turn in alternating order, with the order of the two
 * submits alternating too, so neither side is favoured by being first. Figures: each daemon's
 * throughput, and the CPU its process (where the HTTP server and the metrics live) spent per
 * 1,000 instances.
 *
 * The last scrape must count every instance the served daemon ran: the figures are only worth
 * something if the metrics were right under load.
 */
import type { PlatformExecutor } from "../executor-platform/client/platform-executor.js";
import { LocalExecutor } from "../executor-local/index.js";
import { type TaskInstanceState, setExecutor } from "../index.js";
import { cpuSecondsOf, loadNote, loadNow, platformExecutor, startBenchDaemon } from "./platform-common.js";
import { type BenchRow, type BenchSection, formatNumber, median } from "./report.js";
import { benchTick } from "./tasks.js";

/** Options of {@link benchPlatformHttp}. */
export interface BenchPlatformHttpOptions {
  /** Instances per daemon per run. Default 20,000. */
  instances?: number;
  /** Pool size of both daemons. Default 4. */
  concurrency?: number;
  /** Paired runs (an even number: each daemon starts first in half of them). Default 6. */
  repeats?: number;
  /** Instances per daemon of the warm-up run (not reported). Default 1,000. */
  warmup?: number;
  /** How often /metrics is scraped. Default 1 s. */
  scrapeEveryMs?: number;
}

/** One daemon's side of a paired run. */
interface Side {
  readonly jobsPerSecond: number;
  /** CPU milliseconds the daemon process (not its workloads) spent per 1,000 instances. */
  readonly daemonCpuMs: number;
}

const RUN_TIMEOUT_MS = 10 * 60_000;

export async function benchPlatformHttp(options: BenchPlatformHttpOptions = {}): Promise<BenchSection> {
  const startLoad = loadNow();
  const instances = options.instances ?? 20_000;
  const concurrency = options.concurrency ?? 4;
  const repeats = options.repeats ?? 6;
  const warmup = options.warmup ?? 1_000;
  const scrapeEveryMs = options.scrapeEveryMs ?? 1_000;

  const without: Side[] = [];
  const withHttp: Side[] = [];
  let scrapes = 0;
  let ran = 0;
  for (let i = 0; i < repeats; i++) {
    const pair = await pairedRun({ instances, concurrency, warmup, scrapeEveryMs, servedFirst: i % 2 === 0 });
    without.push(pair.plain);
    withHttp.push(pair.served);
    scrapes += pair.scrapes;
    ran += pair.ran;
  }

  const a = median(without.map((side) => side.jobsPerSecond));
  const b = median(withHttp.map((side) => side.jobsPerSecond));
  const ca = median(without.map((side) => side.daemonCpuMs));
  const cb = median(withHttp.map((side) => side.daemonCpuMs));
  const throughputRatios = withHttp.map((side, i) => side.jobsPerSecond / (without[i] as Side).jobsPerSecond);
  const cpuRatios = withHttp.map((side, i) => side.daemonCpuMs / (without[i] as Side).daemonCpuMs);
  const label = `--http, /metrics scraped every ${scrapeEveryMs / 1000} s`;
  const rows: BenchRow[] = [
    {
      name: `platform (pool), concurrency ${concurrency}, no HTTP`,
      value: a,
      unit: "jobs/s",
      samples: without.map((side) => side.jobsPerSecond),
    },
    {
      name: `platform (pool), concurrency ${concurrency}, ${label}`,
      value: b,
      unit: "jobs/s",
      samples: withHttp.map((side) => side.jobsPerSecond),
    },
    {
      name: "throughput ratio with HTTP / without (median of paired runs)",
      value: median(throughputRatios),
      unit: "x",
      baseline: a,
      ratio: median(throughputRatios),
      goal: "ratio >= 0.95 (HTTP and metrics cost under 5%)",
      pass: median(throughputRatios) >= 0.95,
      samples: throughputRatios,
    },
    {
      name: "daemon CPU per 1,000 jobs, no HTTP",
      value: ca,
      unit: "ms",
      samples: without.map((side) => side.daemonCpuMs),
    },
    {
      name: `daemon CPU per 1,000 jobs, ${label}`,
      value: cb,
      unit: "ms",
      samples: withHttp.map((side) => side.daemonCpuMs),
    },
    {
      name: "daemon CPU ratio with HTTP / without (median of paired runs)",
      value: median(cpuRatios),
      unit: "x",
      baseline: ca,
      ratio: median(cpuRatios),
      samples: cpuRatios,
    },
  ];
  const notes = [
    `${formatNumber(instances)} instances per daemon per run (benchTick: progress once, returns i + 1), both daemons' submitted in one turn and run at the same time, each timed until the client holds all of its results; ${repeats} paired runs, each on two fresh daemons (start and submit order alternating) after a ${formatNumber(warmup)}-instance warm-up of both`,
    "two daemons from dist/, pool mode, durable SQLite store, started alike but for --http; daemon CPU: the daemon process alone (its HTTP server and metrics live there, not in the workloads), from /proc; a scrape also reads Node's process metrics (about 1 ms of CPU each), so scraping once a second, rather than Prometheus' usual 15 s or more, is the costly case",
    `${formatNumber(scrapes)} scrapes of /metrics in all; the last of each pair counted every instance its daemon ran (${formatNumber(ran)} in all)`,
    loadNote(startLoad),
  ];
  return { title: "Platform executor: the cost of --http and /metrics (pool mode)", rows, notes };
}

/**
 * One paired run on two fresh daemons: a warm-up of both, then `instances` on each at once, with
 * the served one's /metrics scraped throughout.
 */
async function pairedRun(o: {
  instances: number;
  concurrency: number;
  warmup: number;
  scrapeEveryMs: number;
  servedFirst: boolean;
}): Promise<{ plain: Side; served: Side; scrapes: number; ran: number }> {
  const start = (http: boolean) =>
    startBenchDaemon({
      mode: "pool",
      concurrency: o.concurrency,
      args: http ? ["--http", "127.0.0.1:0"] : [],
    });
  const first = await start(o.servedFirst);
  const second = await start(!o.servedFirst);
  const [served, plain] = o.servedFirst ? [first, second] : [second, first];
  const plainClient = platformExecutor(plain.address);
  const servedClient = platformExecutor(served.address);
  const metricsUrl = `http://${served.http}/metrics`;
  let scrapes = 0;
  let failure: Error | undefined;
  const scrape = async (): Promise<string> => {
    const response = await fetch(metricsUrl);
    const body = await response.text();
    if (response.status !== 200) throw new Error(`/metrics answered ${response.status}: ${body}`);
    scrapes++;
    return body;
  };
  const scraper = setInterval(() => {
    scrape().catch((error: Error) => {
      failure ??= error;
    });
  }, o.scrapeEveryMs);
  try {
    const both = async (n: number): Promise<{ plain: Side; served: Side }> => {
      const cpu0 = { plain: cpuSecondsOf([plain.pid]), served: cpuSecondsOf([served.pid]) };
      const begin = performance.now();
      const submit = (client: PlatformExecutor) => {
        setExecutor(client);
        const handles = new Array<TaskInstanceState<number>>(n);
        for (let i = 0; i < n; i++) handles[i] = benchTick(i);
        return handles;
      };
      const early = submit(o.servedFirst ? servedClient : plainClient);
      const late = submit(o.servedFirst ? plainClient : servedClient);
      const finish = async (handles: TaskInstanceState<number>[], pid: number, cpuBefore: number) => {
        const results = await Promise.all(
          handles.map((handle) => handle.wait({ timeoutMs: RUN_TIMEOUT_MS })),
        );
        const seconds = (performance.now() - begin) / 1000;
        const cpu = cpuSecondsOf([pid]) - cpuBefore;
        const sum = results.reduce((total, value) => total + value, 0);
        if (sum !== (n * (n - 1)) / 2 + n) throw new Error(`wrong results (sum ${sum})`);
        return { jobsPerSecond: n / seconds, daemonCpuMs: (cpu / n) * 1e6 };
      };
      const [plainSide, servedSide] = await Promise.all([
        finish(o.servedFirst ? late : early, plain.pid, cpu0.plain),
        finish(o.servedFirst ? early : late, served.pid, cpu0.served),
      ]);
      if (failure !== undefined) throw failure;
      return { plain: plainSide, served: servedSide };
    };
    await both(o.warmup);
    const measured = await both(o.instances);
    const ran = o.warmup + o.instances;
    const counted = endedCount(await scrape());
    if (counted !== ran)
      throw new Error(`/metrics counted ${counted} ended instances; the daemon ran ${ran}`);
    return { ...measured, scrapes, ran };
  } finally {
    clearInterval(scraper);
    setExecutor(new LocalExecutor({ concurrency: 4 }));
    await plainClient.close();
    await servedClient.close();
    await plain.dispose();
    await served.dispose();
  }
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
