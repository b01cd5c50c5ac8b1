/**
 * A short chaos run against a cluster (`runChaos({ cluster: 3 })`): three daemons on one durable
 * PostgreSQL the run starts, the mixed load spread over them, and besides the faults of a daemon
 * alone, PostgreSQL restarted, a daemon SIGKILLed and restarted, and one daemon's connection to
 * the database cut and restored; then every invariant of RELIABILITY.md checked. The long run is
 * `npm run chaos -- --cluster 3 --seconds 600`.
 *
 * CHAOS_SEED and CHAOS_SECONDS override the defaults; a failure prints the seed to replay with.
 */
import type { TaskInstanceState } from "numerous-tasks";
import { describe, expect, it } from "vitest";
import { shortAnswer } from "../chaos/answers.js";
import { INVARIANTS } from "../chaos/check-invariants.js";
import { runChaos } from "../chaos/run-chaos.js";
import type { ClusterFacts, FinalRow, RunRecord, StoreOutage, Tracked } from "../chaos/run-record.js";
import { AT, runRecord, shortInstance, stopRecord, violated } from "./helpers/chaos-records.js";

const SEED = Number(process.env.CHAOS_SEED ?? 20_240_611);
const SECONDS = Number(process.env.CHAOS_SECONDS ?? 30);

describe("chaos against a cluster", () => {
  // The timeout guards against a hang, not a speed: the database, three daemons and their
  // quiet moments take a few minutes on a busy 2-core machine.
  it(`keeps every promise through ${SECONDS} s of faults on three daemons (seed ${SEED})`, async () => {
    const result = await runChaos({ seconds: SECONDS, seed: SEED, cluster: 3 });
    // The report is the evidence either way; on a failure it names the seed and the run directory.
    console.log(result.table);

    expect(result.submitted.total).toBeGreaterThan(20);
    for (const fault of [
      "daemon SIGKILL + restart",
      "PostgreSQL restart (fast shutdown, 0.5-3 s down, start)",
      "cut probe: stopped through another daemon while its own was cut off the database",
      "stop (running)",
      "rogue client actions",
    ])
      expect(result.faults[fault], fault).toBeGreaterThanOrEqual(1);
    expect(
      Object.keys(result.faults).filter((f) => f.startsWith("one daemon cut off PostgreSQL")),
    ).toHaveLength(1);
    // Every invariant must have looked at something: one that checked nothing passes on no evidence.
    expect(result.invariants.filter((i) => i.checked === 0).map((i) => i.name)).toEqual([]);
    // Every daemon was measured at rest at both ends of each of its generations.
    expect(new Set(result.memory.generations.map((g) => g.daemon))).toEqual(new Set([0, 1, 2]));
    for (const g of result.memory.generations) {
      const who = `daemon ${g.daemon} generation ${g.generation}`;
      expect(g.start?.rssBytes, `${who}'s RSS at its start`).toBeGreaterThan(0);
      expect(g.end?.rssBytes, `${who}'s RSS at its end`).toBeGreaterThan(0);
    }
    expect(result.violations.map((v) => `[${v.invariant}] ${v.detail}`)).toEqual([]);
  }, 900_000);
});

/**
 * The checker's cluster rules on made-up records: what the README's cluster section excuses (a
 * failover after a kill, a stop delayed by the database out of reach) and nothing more.
 */
describe("chaos checker, cluster rules", () => {
  const lost =
    "the daemon host-1-a that ran this instance stopped renewing its 10000 ms lease and is presumed dead";
  const facts = (more: Partial<ClusterFacts> = {}): ClusterFacts => ({
    leaseMs: 10_000,
    storeOutages: [],
    members: new Map([["host-1-a", { daemon: 1, generation: 1, joinedAt: AT - 60_000 }]]),
    ...more,
  });
  const failedLost = (message: string) => {
    const instance = shortInstance("lost", "failed", undefined);
    const row: FinalRow = {
      ...instance.row,
      errorName: "DaemonLostError",
      errorMessage: message,
      finishedAt: AT + 15_000,
    };
    return { tracked: instance.tracked, row };
  };

  it("explains a DaemonLostError only by a kill of the daemon it names", () => {
    const killed = [{ from: AT + 1_000, to: AT + 3_000, daemon: 1 }];
    expect(
      violated(runRecord([failedLost(lost)], { cluster: facts(), downtimes: killed }), INVARIANTS.explained),
    ).toEqual([]);
    expect(violated(runRecord([failedLost(lost)], { cluster: facts() }), INVARIANTS.explained)).toEqual([
      expect.stringContaining("a live daemon was presumed dead"),
    ]);
    const otherKilled = [{ from: AT + 1_000, to: AT + 3_000, daemon: 2 }];
    expect(
      violated(
        runRecord([failedLost(lost)], { cluster: facts(), downtimes: otherKilled }),
        INVARIANTS.explained,
      ),
    ).toEqual([expect.stringContaining("a live daemon was presumed dead")]);
    const stranger = lost.replace("host-1-a", "host-9-z");
    expect(
      violated(
        runRecord([failedLost(stranger)], { cluster: facts(), downtimes: killed }),
        INVARIANTS.explained,
      ),
    ).toEqual([expect.stringContaining("never joined")]);
  });

  it("holds a stop to the end of a database outage, not beyond", () => {
    const endingAt = (finishedAt: number) => {
      const instance = shortInstance("stopped", "cancelled", undefined, [stopRecord({ ackAt: AT + 30 })]);
      return { tracked: instance.tracked, row: { ...instance.row, finishedAt } };
    };
    const cut = facts({
      storeOutages: [{ kind: "connection cut", from: AT, to: AT + 1_500, daemon: 0 }],
    });
    // Back at 1.5 s, its events 3 s later at most, then the grace period and the slack: 8.5 s.
    expect(violated(runRecord([endingAt(AT + 8_000)], { cluster: cut }), INVARIANTS.stops)).toEqual([]);
    expect(violated(runRecord([endingAt(AT + 60_000)], { cluster: cut }), INVARIANTS.stops)).toEqual([
      expect.stringContaining("the database was out of reach"),
    ]);
    // With nothing out of reach, the grace period and the slack are all there is.
    expect(violated(runRecord([endingAt(AT + 8_000)], { cluster: facts() }), INVARIANTS.stops)).toEqual([
      expect.stringContaining("allowed until"),
    ]);
  });

  it("holds a stop of an instance on a killed daemon until its reaping, which each database restart puts off", () => {
    // Killed at AT; the stop is acknowledged 20 s later, past 1.5 leases and the slack (17 s),
    // so on its own it has the grace period and the slack (4 s). A restart of the database 9-11 s
    // after the kill put reaping off to 11 + 17 = 28 s.
    const instance = shortInstance("orphaned", "cancelled", undefined, [stopRecord({ ackAt: AT + 20_000 })]);
    const endingAt = (finishedAt: number) => ({
      tracked: instance.tracked,
      row: { ...instance.row, finishedAt },
    });
    const downtimes = [{ from: AT, to: AT + 3_000, daemon: 1 }];
    const restart: StoreOutage = {
      kind: "postgres restart",
      from: AT + 9_000,
      to: AT + 11_000,
      daemon: undefined,
    };
    const run = (finishedAt: number, outage: StoreOutage) =>
      runRecord([endingAt(finishedAt)], { downtimes, cluster: facts({ storeOutages: [outage] }) });
    const late = [expect.stringContaining("allowed until")];
    expect(violated(run(AT + 27_000, restart), INVARIANTS.stops)).toEqual([]);
    expect(violated(run(AT + 29_000, restart), INVARIANTS.stops)).toEqual(late);
    // A cut of one daemon's line leaves the others to reap.
    const cut: StoreOutage = { ...restart, kind: "connection cut", daemon: 0 };
    expect(violated(run(AT + 23_000, cut), INVARIANTS.stops)).toEqual([]);
    expect(violated(run(AT + 27_000, cut), INVARIANTS.stops)).toEqual(late);
  });

  it("excuses a call the SDK gave up on only by an outage of the daemon it went through, or of its database", () => {
    const { tracked } = shortInstance("gave-up", "failed", undefined);
    const gaveUp: Tracked = {
      ...tracked,
      daemon: 2,
      doneAt: AT + 4_000,
      handle: {
        status: "failed",
        error: { name: "ExecutorUnavailableError", code: "EXECUTOR_UNAVAILABLE" },
      } as unknown as TaskInstanceState,
    };
    const done = shortInstance("done", "completed", shortAnswer(3));
    const record = (more: Partial<RunRecord>) =>
      runRecord([done], {
        cluster: facts(),
        tracked: new Map([
          [gaveUp.id, gaveUp],
          [done.tracked.id, done.tracked],
        ]),
        ...more,
      });
    const killed = (daemon: number) => ({ downtimes: [{ from: AT + 500, to: AT + 5_000, daemon }] });
    const outOfReach = (outage: StoreOutage) => ({ cluster: facts({ storeOutages: [outage] }) });
    const notOnTheDaemon = [expect.stringContaining("is not on the daemon")];
    expect(violated(record(killed(2)), INVARIANTS.once)).toEqual([]);
    expect(violated(record(killed(1)), INVARIANTS.once)).toEqual(notOnTheDaemon);
    const restart: StoreOutage = {
      kind: "postgres restart",
      from: AT + 500,
      to: AT + 5_000,
      daemon: undefined,
    };
    expect(violated(record(outOfReach(restart)), INVARIANTS.once)).toEqual([]);
    const cut = (daemon: number): StoreOutage => ({ ...restart, kind: "connection cut", daemon });
    expect(violated(record(outOfReach(cut(2))), INVARIANTS.once)).toEqual([]);
    expect(violated(record(outOfReach(cut(0))), INVARIANTS.once)).toEqual(notOnTheDaemon);
    expect(violated(record({}), INVARIANTS.once)).toEqual(notOnTheDaemon);
  });
});
