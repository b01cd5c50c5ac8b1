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
    // Every invariant must have looked at something: one that checked nothing passes on no
    // evidence. (The run also counts that as a violation; this says which, by name.)
    expect(result.invariants.filter((i) => i.checked === 0).map((i) => i.name)).toEqual([]);
    // Every daemon generation was measured at rest at both ends, the last one after the load.
    expect(result.memory.generations.length).toBeGreaterThanOrEqual(2);
    for (const g of result.memory.generations) {
      expect(g.start?.rssBytes, `generation ${g.generation}'s RSS at its start`).toBeGreaterThan(0);
      expect(g.end?.rssBytes, `generation ${g.generation}'s RSS at its end`).toBeGreaterThan(0);
      expect(g.start?.fds, `generation ${g.generation}'s descriptors at its start`).toBeGreaterThan(0);
      expect(g.end?.fds, `generation ${g.generation}'s descriptors at its end`).toBeGreaterThan(0);
    }
    expect(result.violations.map((v) => `[${v.invariant}] ${v.detail}`)).toEqual([]);
  }, 300_000);
});
