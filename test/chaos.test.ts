/**
 * A short chaos run (`chaos/run-chaos.ts`): a real daemon under a mixed load, with workloads
 * and the daemon killed, connections cut, stops at random moments and a rogue client, then
 * every invariant of RELIABILITY.md checked. The long run is `npm run chaos -- --seconds 600`.
 *
 * CHAOS_SEED and CHAOS_SECONDS override the defaults; a failure prints the seed to replay with.
 */
import { describe, expect, it } from "vitest";
import { runChaos } from "../chaos/run-chaos.js";

const SEED = Number(process.env.CHAOS_SEED ?? 20_240_611);
const SECONDS = Number(process.env.CHAOS_SECONDS ?? 30);

describe("chaos", () => {
  it(`keeps every promise through ${SECONDS} s of faults (seed ${SEED})`, async () => {
    const result = await runChaos({ seconds: SECONDS, seed: SEED });
    // The report is the evidence either way; on a failure it names the seed and the run directory.
    console.log(result.table);

    expect(result.submitted.total).toBeGreaterThan(20);
    expect(result.faults["daemon SIGKILL + restart"]).toBeGreaterThanOrEqual(1);
    expect(result.faults["stop (running)"]).toBeGreaterThanOrEqual(1);
    expect(result.faults["rogue client actions"]).toBeGreaterThanOrEqual(1);
    expect(result.violations.map((v) => `[${v.invariant}] ${v.detail}`)).toEqual([]);
  }, 300_000);
});
