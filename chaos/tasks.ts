/**
 * The task functions of the chaos harness (`chaos/run.ts`). Workload processes import this
 * module, so it only defines tasks. Each task learns what to do from its arguments, and its
 * answer follows from them (`chaos/answers.ts` says what it must be).
 *
 * When `CHAOS_HEARTBEAT_DIR` is set (the harness sets it in the daemon's environment, which
 * workloads inherit), tasks record in `<dir>/<instance id>` when they started and when they
 * were last alive: the checker's evidence of whether a task ran at all, and for how long after
 * it was stopped. The file is written by the task's own process, so it tells the truth even
 * when the daemon does not.
 */
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { getTaskController, task } from "numerous-tasks";
import { type CrashHow, bigText, sha256 } from "./answers.js";

const HEARTBEAT_DIR = process.env.CHAOS_HEARTBEAT_DIR;
const BEAT_MS = 50;

class ChaosError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ChaosError";
  }
}

/** Heartbeats of one instance: "<started ms> <last alive ms> <pid>". */
class Heart {
  readonly #file: string | undefined;
  readonly #started = Date.now();
  #last = 0;

  constructor() {
    this.#file =
      HEARTBEAT_DIR === undefined ? undefined : join(HEARTBEAT_DIR, getTaskController().instanceId);
    this.beat(true);
  }

  /** Writes now if `force` or if the last write is older than {@link BEAT_MS}. */
  beat(force = false): void {
    const now = Date.now();
    if (this.#file === undefined || (!force && now - this.#last < BEAT_MS)) return;
    this.#last = now;
    // Written aside and renamed: a workload killed mid-write (the grace kill) must not leave an
    // empty heartbeat, which would read as a task that never beat.
    const aside = `${this.#file}.${process.pid}.tmp`;
    writeFileSync(aside, `${this.#started} ${now} ${process.pid}`);
    renameSync(aside, this.#file);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Returns at once. */
export const chaosShort = task(function chaosShort(n: number) {
  const heart = new Heart();
  heart.beat(true);
  return { kind: "short", n, value: n + n + 1 };
});

/** Takes `steps` steps of `stepMs`, reporting each; checks `shouldStop()` before every step. */
export const chaosLong = task(async function chaosLong(n: number, steps: number, stepMs: number) {
  const controller = getTaskController();
  const heart = new Heart();
  let value = 0;
  for (let done = 0; done < steps; done++) {
    if (controller.shouldStop()) {
      heart.beat(true);
      return { kind: "long", n, done, stopped: true, value };
    }
    const until = Date.now() + stepMs;
    while (Date.now() < until) {
      await delay(Math.min(BEAT_MS, until - Date.now()));
      heart.beat();
    }
    value += n;
    controller.setProgress((done + 1) / steps);
    controller.setOutput({ step: done + 1 });
  }
  heart.beat(true);
  return { kind: "long", n, done: steps, stopped: false, value };
});

/** Runs for `runMs` whatever happens: it never looks at its controller's stop. */
export const chaosStubborn = task(async function chaosStubborn(n: number, runMs: number) {
  const heart = new Heart();
  const until = Date.now() + runMs;
  while (Date.now() < until) {
    await delay(Math.min(BEAT_MS, until - Date.now()));
    heart.beat();
  }
  heart.beat(true);
  return { kind: "stubborn", n, ranMs: runMs };
});

/** Counts primes below `limit` by trial division, without ever yielding to the event loop. */
export const chaosCpu = task(function chaosCpu(n: number, limit: number) {
  const heart = new Heart();
  let primes = 0;
  for (let candidate = 2; candidate < limit; candidate++) {
    let prime = true;
    for (let d = 2; d * d <= candidate; d++) {
      if (candidate % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) primes++;
    if ((candidate & 0x3ff) === 0) heart.beat();
  }
  heart.beat(true);
  return { kind: "cpu", n, limit, primes };
});

/** Throws a `ChaosError` with `message`. */
export const chaosThrows = task(async function chaosThrows(_n: number, message: string): Promise<never> {
  new Heart();
  await delay(10);
  throw new ChaosError(message);
});

/** Ends its own workload: `process.exit(code)`, a SIGKILL, or an uncaught exception. */
export const chaosCrash = task(async function chaosCrash(
  n: number,
  how: CrashHow,
  code: number,
): Promise<never> {
  new Heart();
  await delay(20);
  if (how === "exit") process.exit(code);
  if (how === "kill") process.kill(process.pid, "SIGKILL");
  setImmediate(() => {
    throw new ChaosError(`uncaught in chaosCrash ${n}`);
  });
  return new Promise<never>(() => {});
});

/** Reports `bytes` of text as its output, and returns it again or its digest. */
export const chaosBig = task(async function chaosBig(n: number, bytes: number, bigResult: boolean) {
  new Heart();
  const controller = getTaskController();
  const text = bigText(n, bytes);
  controller.setOutput({ kind: "big", n, text });
  await delay(10);
  return bigResult ? { kind: "big", n, bytes, text } : { kind: "big", n, bytes, sha256: sha256(text) };
});

/** Reports progress `updates` times, yielding now and then, with an output every 500. */
export const chaosChatty = task(async function chaosChatty(n: number, updates: number) {
  const heart = new Heart();
  const controller = getTaskController();
  for (let i = 1; i <= updates; i++) {
    controller.setProgress(i / updates);
    if (i % 500 === 0) {
      controller.setOutput({ updates: i });
      heart.beat();
      await delay(1);
    }
  }
  heart.beat(true);
  return { kind: "chatty", n, updates };
});
