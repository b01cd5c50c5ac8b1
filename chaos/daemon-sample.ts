/**
 * Reads a daemon at rest for the leak check: its resident memory and the descriptors it holds
 * on its own, from `/proc`. What cannot be read stays undefined, for the checker to fail on:
 * an unreadable `/proc` must never look like a daemon that leaks nothing.
 */
import { fdCensus, rssBytes } from "./procfs.js";
import type { DaemonSample } from "./run-record.js";

export interface SampleOptions {
  /**
   * The lowest RSS over at least this long: V8 gives memory back only some seconds after the
   * allocations stop (its memory reducer), so one reading says little.
   */
  readonly rssWindowMs: number;
  /**
   * How long to wait for connections the clients left to be closed (the daemon closes idle
   * ones after its --connection-idle-ms) and for `settled` to hold.
   */
  readonly waitMs: number;
  /** What else must hold before the descriptors are counted; the wait ends after `waitMs` regardless. */
  readonly settled?: (fds: number) => boolean;
  /** Set when the daemon did not come to rest before the sample: what was still going on. */
  readonly notAtRest?: string | undefined;
  /**
   * Other processes whose live connections with the daemon are not its own to count: in a
   * cluster, the proxy to PostgreSQL (the daemon's pool opens and closes those connections as
   * the load goes, within its size).
   */
  readonly peers?: readonly number[];
}

export async function sampleAtRest(pid: number, options: SampleOptions): Promise<DaemonSample> {
  const began = Date.now();
  let lowest = Number.POSITIVE_INFINITY;
  for (;;) {
    lowest = Math.min(lowest, rssBytes(pid) ?? Number.POSITIVE_INFINITY);
    // The harness is the daemon's only TCP client: its proxy, SDKs, watches and rogue.
    const census = fdCensus(pid, [process.pid, ...(options.peers ?? [])]);
    const fds = census === undefined ? undefined : census.counted.length;
    const waited = Date.now() - began;
    const settled =
      census !== undefined && census.lingering === 0 && (options.settled?.(fds as number) ?? true);
    if (
      (waited >= options.rssWindowMs && settled) ||
      waited >= Math.max(options.waitMs, options.rssWindowMs)
    ) {
      return {
        at: Date.now(),
        rssBytes: Number.isFinite(lowest) ? lowest : undefined,
        fds,
        fdList: census?.counted ?? [],
        notAtRest: options.notAtRest,
      };
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
