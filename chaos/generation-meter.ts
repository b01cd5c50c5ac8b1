/**
 * Measures each daemon generation (one daemon process, between two kills) at rest near its
 * start and near its end, so its growth is measured against itself: a restart must not wipe
 * out what a generation leaked. At rest: nothing pending or running, no workload busy.
 */
import { sampleAtRest } from "./daemon-sample.js";
import type { GenerationFigures } from "./run-record.js";

export interface GenerationMeterOptions {
  /** In a cluster, which daemon this meter measures. */
  readonly index?: number;
  /** The daemon's current process id and generation; pid undefined while it is down. */
  readonly daemon: () => { pid: number | undefined; generation: number };
  /** Ids the daemon has pending or running; rejects when it cannot be asked. */
  readonly busy: () => Promise<string[]>;
  /** Stops an instance (the harness's own stop, recorded as any other). */
  readonly stop: (id: string) => void;
  /** Workload processes of the daemon still doing something. */
  readonly workloads: () => number;
  /** How long the daemon has to come to rest. */
  readonly restWithinMs: number;
  /** Processes whose live connections with the daemon are not its own (see `sampleAtRest`). */
  readonly peers?: () => readonly number[];
  /** How many more descriptors an end may have than its start before the check fails. */
  readonly fdsHeadroom: number;
  readonly log: (line: string) => void;
}

export interface MeasureOptions {
  readonly rssWindowMs: number;
  readonly waitMs: number;
  /** Stop whatever is pending or running first: waiting for a dozen queued calls takes a minute on a busy machine. */
  readonly stopAll: boolean;
}

export interface GenerationMeter {
  readonly generations: GenerationFigures[];
  /** The figures of the generation `pid` belongs to, begun when first asked. */
  of(pid: number): GenerationFigures;
  /** Brings the daemon to rest and measures its current generation's start or end. */
  measure(which: "start" | "end", options: MeasureOptions): Promise<void>;
}

export function createGenerationMeter(o: GenerationMeterOptions): GenerationMeter {
  const generations: GenerationFigures[] = [];
  const of = (pid: number): GenerationFigures => {
    let g = generations.at(-1);
    if (g === undefined || g.pid !== pid) {
      g = {
        ...(o.index === undefined ? {} : { daemon: o.index }),
        generation: o.daemon().generation,
        pid,
        start: undefined,
        end: undefined,
        instances: 0,
        rssPeakBytes: 0,
        fdsPeak: 0,
      };
      generations.push(g);
    }
    return g;
  };

  /** Undefined once at rest, else what was still going on. */
  const atRest = async (stopAll: boolean): Promise<string | undefined> => {
    const deadline = Date.now() + o.restWithinMs;
    try {
      if (stopAll) for (const id of await o.busy()) o.stop(id);
      for (;;) {
        const busy = await o.busy();
        const workloads = o.workloads();
        if (busy.length === 0 && workloads === 0) return undefined;
        if (Date.now() > deadline)
          return `${o.restWithinMs} ms into a quiet moment it still had ${busy.length} instance(s) pending or running and ${workloads} workload process(es) busy`;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    } catch (error) {
      return `the daemon could not be asked what it runs: ${(error as Error).message}`;
    }
  };

  const measure = async (which: "start" | "end", options: MeasureOptions): Promise<void> => {
    const began = Date.now();
    const notAtRest = await atRest(options.stopAll);
    const rested = Date.now();
    const { pid } = o.daemon();
    if (pid === undefined) {
      o.log(`chaos: no daemon to measure at a generation's ${which}: it is not running`);
      return;
    }
    const g = of(pid);
    const startFds = g.start?.fds;
    const sample = await sampleAtRest(pid, {
      rssWindowMs: options.rssWindowMs,
      waitMs: options.waitMs,
      notAtRest,
      ...(o.peers ? { peers: o.peers() } : {}),
      ...(which === "end" && startFds !== undefined
        ? { settled: (fds: number) => fds <= startFds + o.fdsHeadroom }
        : {}),
    });
    g[which] = sample;
    g.rssPeakBytes = Math.max(g.rssPeakBytes, sample.rssBytes ?? 0);
    g.fdsPeak = Math.max(g.fdsPeak, sample.fds ?? 0);
    const rss =
      sample.rssBytes === undefined ? "unreadable" : `${(sample.rssBytes / 2 ** 20).toFixed(1)} MiB`;
    o.log(
      `chaos: ${new Date().toISOString()} daemon ${o.index === undefined ? "" : `${o.index} `}generation ${g.generation} (pid ${pid}) at its ${which} (at rest after ${rested - began} ms, measured in ${Date.now() - rested} ms): RSS ${rss}, ${sample.fds ?? "unreadable"} descriptors of its own${notAtRest ? `; not at rest: ${notAtRest}` : ""}`,
    );
  };

  return { generations, of, measure };
}
