/**
 * The mixed load: which kinds of task the harness calls, how often, and with what arguments.
 * Arguments come from the seeded PRNG, so a seed replays the same sequence of calls.
 */
import type { TaskInstanceState } from "numerous-tasks";
import type { ChaosInputs, ChaosKind, CrashHow } from "./answers.js";
import type { Prng } from "./prng.js";
import {
  chaosBig,
  chaosChatty,
  chaosCpu,
  chaosCrash,
  chaosLong,
  chaosShort,
  chaosStubborn,
  chaosThrows,
} from "./tasks.js";

/** How often each kind is called, relative to the others. */
export const KIND_WEIGHTS: Readonly<Record<ChaosKind, number>> = {
  short: 30,
  long: 14,
  stubborn: 6,
  cpu: 6,
  throws: 8,
  crash: 6,
  big: 6,
  chatty: 6,
};

/** The longest a task of the mix runs when nothing stops it, on an idle machine. */
export const LONGEST_TASK_MS = 7_500;

/** Arguments for one call of `kind`. */
export function argsFor<K extends ChaosKind>(kind: K, prng: Prng): ChaosInputs[K] {
  const n = prng.int(0, 1_000_000);
  const args: { [Kind in ChaosKind]: () => ChaosInputs[Kind] } = {
    short: () => [n],
    long: () => [n, prng.int(3, 30), prng.int(40, 250)],
    stubborn: () => [n, prng.int(300, 6_000)],
    cpu: () => [n, prng.int(100_000, 6_000_000)],
    throws: () => [n, `chaos error ${n}`],
    crash: () => [n, prng.pick<CrashHow>(["exit", "kill", "uncaught"]), prng.int(1, 120)],
    big: () => [n, Math.round(2 ** (14 + prng.next() * 6)), prng.chance(0.5)],
    chatty: () => [n, prng.int(1_000, 10_000)],
  };
  return args[kind]() as ChaosInputs[K];
}

/** Calls the task of `kind` with `args`, through the SDK's public API. */
export function callTask(kind: ChaosKind, args: readonly unknown[]): TaskInstanceState {
  switch (kind) {
    case "short":
      return chaosShort(...(args as ChaosInputs["short"]));
    case "long":
      return chaosLong(...(args as ChaosInputs["long"]));
    case "stubborn":
      return chaosStubborn(...(args as ChaosInputs["stubborn"]));
    case "cpu":
      return chaosCpu(...(args as ChaosInputs["cpu"]));
    case "throws":
      return chaosThrows(...(args as ChaosInputs["throws"]));
    case "crash":
      return chaosCrash(...(args as ChaosInputs["crash"]));
    case "big":
      return chaosBig(...(args as ChaosInputs["big"]));
    case "chatty":
      return chaosChatty(...(args as ChaosInputs["chatty"]));
  }
}
