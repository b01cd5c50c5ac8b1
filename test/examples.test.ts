/**
 * Every example, run as a user would (its own process, `node --import tsx`), on the local
 * executor and on a daemon: each checks itself with assertions and exits 0, and what it prints
 * is what the README shows a user, so that is checked too.
 */
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { definitionIdFor } from "../sdk/ids.js";
import { type DaemonProcess, removeDataDir, startDaemon } from "./helpers/daemon-process.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const EXAMPLES = readdirSync(join(ROOT, "examples"))
  .filter((name) => /^[0-9].*\.ts$/.test(name))
  .sort();

type Mode = "local" | "platform";

/** Runs one example as a user would, in its own process; resolves its exit code and output. */
function runExample(
  name: string,
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", join("examples", name)], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk));
    child.on("close", (code) => resolve({ code, output }));
  });
}

const ID = "[A-Za-z0-9_-]{21}";

/** The lines matching `pattern`, each line's match. */
function matching(lines: readonly string[], pattern: RegExp): RegExpExecArray[] {
  return lines.map((line) => pattern.exec(line)).filter((match) => match !== null);
}

function expectNonDecreasing(values: readonly number[]): void {
  expect(values).toStrictEqual([...values].sort((a, b) => a - b));
}

/** What each example must print: its lines, in order where order matters. */
const PRINTS: Record<string, (lines: readonly string[], mode: Mode) => void> = {
  "01-define.ts": (lines) => {
    expect(lines).toStrictEqual([
      `addOne.definition: { id: '${definitionIdFor("addOne")}', name: 'addOne' }`,
      `myComputation.definition: { id: '${definitionIdFor("My Computation")}', name: 'My Computation' }`,
      "task(anonymous arrow) throws TypeError: a task needs a name",
      "addOne(1) -> 2, myComputation(41) -> 42",
    ]);
  },
  "02-run.ts": (lines) => {
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(new RegExp(`^id: ${ID}, task: compute, status: pending$`));
    expect(lines.slice(1)).toStrictEqual([
      "status: completed, result: 6",
      "bad argument refused: args[0].callback: a function (callback) cannot be carried; pass data, not code",
    ]);
  },
  "03-poll-progress.ts": (lines) => {
    const percents = matching(lines, /^Progress: (\d+\.\d)%$/).map((match) => Number(match[1]));
    expect(percents.length).toBe(lines.length - 1);
    expectNonDecreasing(percents);
    expect(percents.some((percent) => percent > 0 && percent < 100)).toBe(true);
    expect(percents.at(-1)).toBe(100);
    expect(lines.at(-1)).toBe("status: completed, result: 6");
  },
  "04-wait.ts": (lines) => {
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe("Result: 6");
    expect(lines[1]).toMatch(
      new RegExp(`^timed out: task instance ${ID} did not finish within 100 ms \\(it is still running\\)$`),
    );
    expect(lines[2]).toBe("slow result after all: 11");
  },
  "05-report-progress.ts": (lines) => {
    expect(lines).toHaveLength(3);
    const reported = /^progress reported: ((?:\d\.\d ?)+)$/
      .exec(lines[0] ?? "")?.[1]
      ?.split(" ")
      .map(Number);
    expect(reported, lines[0]).toBeDefined();
    expectNonDecreasing(reported ?? []);
    expect(reported).toContain(0.5);
    expect(reported?.at(-1)).toBe(1);
    expect(lines.slice(1)).toStrictEqual([
      'output: {"result":6}, result: 6',
      "getTaskController() outside a task throws NoTaskContextError",
    ]);
  },
  "06-stop.ts": (lines, mode) => {
    // The task's own console line is the app's on the local executor, the workload's on a daemon.
    const told = lines.filter((line) => line === "  (task) stopped by request");
    expect(told).toHaveLength(mode === "local" ? 2 : 0);
    const said = lines.filter((line) => line !== "  (task) stopped by request");
    expect(said).toHaveLength(5);
    expect(said[0]).toBe("stopTaskInstance: status cancelled, returned 5");
    expect(said[1]).toMatch(/^ {2}output: \{"result":5,"stoppedAtStep":\d+\}$/);
    expect(said[2]).toBe("instance.stop(): status cancelled, returned 7");
    expect(said[3]).toMatch(/^signal: status cancelled after \d+ ms$/);
    expect(said[4]).toBe("stopped while pending: cancelled, started: never");
  },
  "07-list.ts": (lines, mode) => {
    expect(lines[0]).toBe("Task definitions:");
    const heading = lines.findIndex((line) => line.startsWith("Task instances"));
    const definitions = lines.slice(1, heading);
    const ours = [
      `  compute (id: ${definitionIdFor("compute")})`,
      `  slowCompute (id: ${definitionIdFor("slowCompute")})`,
    ];
    // Locally, this process's; on the daemon, the deployment's, which other examples add to.
    if (mode === "local") expect(definitions).toStrictEqual(ours);
    else expect(definitions).toEqual(expect.arrayContaining(ours));
    const count = Number(/^Task instances \((\d+), latest last\):$/.exec(lines[heading] ?? "")?.[1]);
    if (mode === "local") expect(count).toBe(4);
    else expect(count).toBeGreaterThanOrEqual(4);
    const listed = lines.slice(heading + 1, -2);
    expect(listed.length).toBe(Math.min(count, 6));
    const lastFour = listed.slice(-4).map((line) => line.replace(new RegExp(`^ {2}${ID}: `), ""));
    expect(lastFour.slice(0, 3)).toStrictEqual([
      "compute completed (progress: 100%)",
      "compute completed (progress: 100%)",
      "slowCompute completed (progress: 100%)",
    ]);
    // Stopped right after the call: locally still pending, so it never ran; a daemon with a free
    // worker may have started it already, and it returns at its next check.
    if (mode === "local") expect(lastFour[3]).toBe("slowCompute cancelled (progress: 0%)");
    else expect(lastFour[3]).toMatch(/^slowCompute cancelled \(progress: \d+%\)$/);
    const computes = Number(/^compute\.listInstances\(\): (\d+) instances$/.exec(lines.at(-2) ?? "")?.[1]);
    const cancelled = Number(/^cancelled slowCompute instances: (\d+)$/.exec(lines.at(-1) ?? "")?.[1]);
    if (mode === "local") expect([computes, cancelled]).toStrictEqual([2, 1]);
    else {
      expect(computes).toBeGreaterThanOrEqual(2);
      expect(cancelled).toBeGreaterThanOrEqual(1);
    }
  },
  "08-progress-bar.ts": (lines) => {
    // Not on a terminal: a plain line per change instead of the bar.
    const changes = lines
      .slice(0, -1)
      .map((line) => /^slowCompute (pending|running|completed) (\d+)%$/.exec(line));
    expect(
      changes.every((match) => match !== null),
      lines.join("\n"),
    ).toBe(true);
    const percents = changes.map((match) => Number(match?.[2]));
    expectNonDecreasing(percents);
    expect(lines.at(-2)).toBe("slowCompute completed 100%");
    expect(lines.at(-1)).toBe(`result: 42 after ${changes.length} updates`);
  },
  "09-retry.ts": (l) =>
    expect(l).toStrictEqual([
      "flakyFetch: completed on attempt 3: fetched on try 3",
      "  attempt 1: service unavailable (try 1)",
      "  attempt 2: service unavailable (try 2)",
      "  attempt 3: ok",
      "with maxAttempts 1: failed: service unavailable (try 1)",
      "chargeCard: failed after 1 attempt: card declined",
      "alwaysFails: attempt 2 waits until the next attempt time",
      "stopped during the backoff: cancelled, attempts made: 1",
    ]),
  "10-timeout.ts": (l) =>
    expect(l).toStrictEqual([
      "quick: report after 50 ms",
      "slow: failed after 2 attempts, each TaskTimeoutError",
      "wait({ timeoutMs: 10 }) gave up; the task went on: report after 300 ms",
    ]),
  "11-idempotency.ts": (l) =>
    expect(l).toStrictEqual([
      "same id at once: true",
      expect.stringMatching(/^results: invoiced order-[a-z0-9]+: 1999 cents$/),
      "sent 1 time(s) for 4 calls",
    ]),
  "12-delay.ts": (l) =>
    expect(l).toStrictEqual([
      "delayMs 500: pending, scheduled 500 ms after the call",
      "ran at or after its time: true",
      "startAt tomorrow, then stopped: cancelled, started: never",
    ]),
  "13-priority.ts": (l) =>
    expect(l).toStrictEqual(["started in this order: running > urgent > normal > low-1 > low-2"]),
  "14-concurrency.ts": (l) =>
    expect(l).toStrictEqual([
      "exportReport: 4 ran, never more than 2 at once: true",
      "syncCustomer c-1: 2 ran, one at a time: true",
      "syncCustomer c-2: 2 ran, one at a time: true",
    ]),
  "15-run-by-name.ts": (l) =>
    expect(l).toStrictEqual([
      `getTaskDefinition("summarize"): {"id":"${definitionIdFor("summarize")}","name":"summarize"}`,
      'runTask("summarize", [1, 2, 3]): {"count":3,"sum":6}',
      'runTask("noSuchTask"): TaskNotFoundError',
    ]),
  "20-schedule.ts": (l) => {
    expect(l[0]).toMatch(/^heartbeat fires next at \d{4}-\d\d-\d\dT/);
    expect(l[1]).toMatch(/^heartbeat: every 1000 ms, next .*, last instance s[A-Za-z0-9_-]{32}$/);
    expect(l[2]).toMatch(/^nightly-report: 0 3 \* \* \*, next \d{4}-.*, last instance none$/);
    expect(l[3]).toMatch(/^one run said: heartbeat report at /);
    expect(l[4]).toBe("schedules deleted; their instances are kept");
    expect(l).toHaveLength(5);
  },
};

function expectPrinted(name: string, output: string, mode: Mode): void {
  const check = PRINTS[name];
  if (check === undefined)
    throw new Error(`examples.test.ts says nothing of what ${name} prints: add it to PRINTS`);
  check(output.trimEnd().split("\n"), mode);
}

describe("examples on the local executor (no configuration)", () => {
  it.each(EXAMPLES)("%s runs, checks itself, and prints what it shows", async (name) => {
    const { code, output } = await runExample(name, { NUMEROUS_EXECUTOR: "" });
    expect(code, output).toBe(0);
    expectPrinted(name, output, "local");
  });
});

describe("the same examples on the platform executor (two variables)", () => {
  let daemon: DaemonProcess;

  beforeAll(async () => {
    daemon = await startDaemon({ args: ["--workload-mode", "pool"] });
  });

  afterAll(async () => {
    await daemon.stop();
    removeDataDir(daemon.dataDir);
  });

  it.each(EXAMPLES)("%s runs, checks itself, and prints what it shows", async (name) => {
    const { code, output } = await runExample(name, {
      NUMEROUS_EXECUTOR: "platform",
      NUMEROUS_EXECUTOR_ADDRESS: daemon.address,
    });
    expect(code, output).toBe(0);
    expectPrinted(name, output, "platform");
  });
});
