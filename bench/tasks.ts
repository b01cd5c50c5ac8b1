/**
 * The task functions of the platform benchmark sections. Workload processes import this module
 * (through tsx), so it only defines tasks: no side effects, nothing shared with the bench process
 * but what crosses the executor.
 *
 * Times are microseconds of the system's monotonic clock (`process.hrtime`, CLOCK_MONOTONIC on
 * Linux), which every process on the machine reads alike, so a time taken in a workload can be
 * subtracted from one taken in the bench process.
 */
import { getTaskController, task } from "numerous-tasks";

/** Microseconds of the machine-wide monotonic clock. */
export function nowMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What {@link benchLatencyProbe} puts in its output before each progress step. */
export interface LatencyProbeOutput {
  readonly step: number;
  /** {@link nowMicros} just before the step's `setOutput` and `setProgress`. */
  readonly sentAt: number;
}

/**
 * Reports `steps` progress steps, `gapMs` apart so each one can travel alone: before step `i` it
 * sets the output `{ step: i, sentAt }`, then the progress `i / steps`. Returns every step's
 * `sentAt` (index `i - 1`), so a step the executor coalesced with later ones is timed too.
 */
export const benchLatencyProbe = task(async function benchLatencyProbe(steps: number, gapMs: number) {
  const controller = getTaskController();
  const sent: number[] = [];
  for (let step = 1; step <= steps; step++) {
    const output: LatencyProbeOutput = { step, sentAt: nowMicros() };
    sent.push(output.sentAt);
    controller.setOutput({ ...output });
    controller.setProgress(step / steps);
    await delay(gapMs);
  }
  return sent;
});

/** Says `{ ready: true }` once it listens for a stop, then returns when its signal aborted. */
export const benchStopProbe = task(async function benchStopProbe() {
  const controller = getTaskController();
  return new Promise<number>((resolve) => {
    controller.signal.addEventListener("abort", () => resolve(nowMicros()), { once: true });
    controller.setOutput({ ready: true });
  });
});

/** The trivial instance: reports progress once and returns `i + 1`. */
export const benchTick = task(function benchTick(i: number) {
  getTaskController().setProgress(0.5);
  return i + 1;
});

/** {@link benchTick} with work that takes `ms` milliseconds (a timer, not CPU) before it returns. */
export const benchNapTick = task(async function benchNapTick(i: number, ms: number) {
  getTaskController().setProgress(0.5);
  await delay(ms);
  return i + 1;
});

/** Returns when it started (epoch ms), for delayed-start lateness. */
export const benchStartedAt = task(function benchStartedAt() {
  return Date.now();
});

/** At most `limit` (2) run at once: holds its slot for `ms`. */
export const benchLimitedTwo = task(
  { name: "benchLimitedTwo", concurrency: { limit: 2 } },
  async function benchLimitedTwo(ms: number) {
    await delay(ms);
    return ms;
  },
);

/** At most 4 run at once: holds its slot for `ms`. */
export const benchLimitedFour = task(
  { name: "benchLimitedFour", concurrency: { limit: 4 } },
  async function benchLimitedFour(ms: number) {
    await delay(ms);
    return ms;
  },
);

/** What a schedule starts in the bench: nothing but a return. */
export const benchScheduled = task(function benchScheduled(i: number) {
  return i;
});

/** Returns when its function began, in epoch milliseconds with a fraction: submit-to-running. */
export const benchBegan = task(function benchBegan() {
  return performance.timeOrigin + performance.now();
});
