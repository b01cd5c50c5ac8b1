/**
 * A short chaos run (`chaos/run-chaos.ts`): a real daemon under a mixed load, with workloads
 * and the daemon killed, connections cut, stops at random moments and a rogue client, then
 * every invariant of RELIABILITY.md checked. The long run is `npm run chaos -- --seconds 600`.
 *
 * CHAOS_SEED and CHAOS_SECONDS override the defaults; a failure prints the seed to replay with.
 */
import { describe, expect, it } from "vitest";
import { shortAnswer } from "../chaos/answers.js";
import { INVARIANTS, checkInvariants } from "../chaos/check-invariants.js";
import { runChaos } from "../chaos/run-chaos.js";
import type { StopRecord } from "../chaos/run-record.js";
import { AT, generation, runRecord, sample, shortInstance, violated } from "./helpers/chaos-records.js";

const SEED = Number(process.env.CHAOS_SEED ?? 20_240_611);
const SECONDS = Number(process.env.CHAOS_SECONDS ?? 30);

describe("chaos", () => {
  // The timeout guards against a hang, not a speed: quiet moments and settling take longer on
  // a loaded machine (about 80 s on an idle 2-core one, up to 4 minutes at a load of 20).
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
  }, 600_000);
});

/**
 * The checker on made-up records: each check must fail on the evidence of a broken daemon,
 * and must not pass on no evidence at all. (The run above is the same checker on real runs; a
 * clean one can only show that it passes.)
 */
describe("chaos checker", () => {
  const at = AT;
  const short = shortInstance;
  const record = runRecord;

  it("flags a completed instance that has no result", () => {
    const good = short("good", "completed", shortAnswer(3));
    const lost = short("lost", "completed", undefined);
    expect(violated(record([good]), INVARIANTS.answers)).toEqual([]);
    expect(violated(record([good, lost]), INVARIANTS.answers)).toEqual([
      expect.stringContaining("completed with no result"),
    ]);
  });

  it("flags a leak in a generation that a restart ended, and /proc that could not be read", () => {
    const leaky = record([short("a", "completed", shortAnswer(3))], {
      memory: {
        generations: [generation(1, sample(25), sample(45)), generation(2, sample(25), sample(25))],
        rssHeadroomBytes: 96 * 2 ** 20,
        fdsHeadroom: 4,
      },
    });
    expect(violated(leaky, INVARIANTS.leaks)).toEqual([expect.stringContaining("generation 1")]);
    const unreadable = record([short("a", "completed", shortAnswer(3))], {
      memory: {
        generations: [generation(1, sample(25), sample(25, null))],
        rssHeadroomBytes: 96 * 2 ** 20,
        fdsHeadroom: 4,
      },
    });
    expect(violated(unreadable, INVARIANTS.leaks)).toEqual([expect.stringContaining("could not be read")]);
  });

  it("fails an invariant that checked nothing: a rogue that never reached the daemon", () => {
    const result = checkInvariants(record([short("a", "completed", shortAnswer(3))], { rogueAnswered: 0 }));
    expect(result.invariants.find((i) => i.name === INVARIANTS.rogue)?.checked).toBe(0);
    expect(result.violations.filter((v) => v.invariant === INVARIANTS.rogue).map((v) => v.detail)).toEqual([
      expect.stringContaining("checked nothing"),
    ]);
  });

  it("explains a cancellation only by a stop the daemon accepted, or one whose answer was lost", () => {
    const stop = (fields: Partial<StopRecord>): StopRecord => ({
      when: "running",
      sentAt: at + 20,
      ackAt: undefined,
      refused: undefined,
      refusedCode: undefined,
      refusedAt: undefined,
      ...fields,
    });
    const accepted = short("accepted", "cancelled", undefined, [stop({ ackAt: at + 30 })]);
    const lost = short("lost", "cancelled", undefined, [
      stop({ refused: "ExecutorUnavailableError", refusedCode: "EXECUTOR_UNAVAILABLE", refusedAt: at + 40 }),
    ]);
    const refused = short("refused", "cancelled", undefined, [
      stop({ refused: "TaskError", refusedCode: "INTERNAL", refusedAt: at + 40 }),
    ]);
    expect(violated(record([accepted, lost]), INVARIANTS.explained)).toEqual([]);
    expect(violated(record([accepted, refused]), INVARIANTS.explained)).toEqual([
      expect.stringContaining("every stop it got was refused"),
    ]);
  });

  it("flags a task that ran past its grace period, and heartbeats that are missing", () => {
    const done = short("done", "completed", shortAnswer(3));
    const overran = short("overran", "cancelled", undefined, [
      {
        when: "running",
        sentAt: at + 20,
        ackAt: at + 30,
        refused: undefined,
        refusedCode: undefined,
        refusedAt: undefined,
      },
    ]);
    // The daemon says it killed the workload at the end of the grace period; the heartbeat disagrees.
    const forced = { ...overran, row: { ...overran.row, errorName: "TaskStoppedError" } };
    const beats = new Map([
      ["done", { startedAt: at + 20, lastAt: at + 90, pid: 7 }],
      ["overran", { startedAt: at + 20, lastAt: at + 30 + 2_000 + 5_000, pid: 8 }],
    ]);
    expect(violated(record([done, forced], { heartbeats: beats }), INVARIANTS.grace)).toEqual([
      expect.stringContaining("its task was alive"),
    ]);
    expect(violated(record([done], { heartbeats: new Map() }), INVARIANTS.grace)).toEqual(
      expect.arrayContaining([expect.stringContaining("left no heartbeat")]),
    );
  });
});
