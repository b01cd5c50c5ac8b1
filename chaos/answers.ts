/**
 * What each chaos task must return for its input: the checker's side of the bargain. The task
 * functions (`chaos/tasks.ts`) compute their results their own way; the checker compares them
 * with these.
 */
import { createHash } from "node:crypto";

/** The kinds of load the harness drives, one task function each. */
export const CHAOS_KINDS = ["short", "long", "stubborn", "cpu", "throws", "crash", "big", "chatty"] as const;
export type ChaosKind = (typeof CHAOS_KINDS)[number];

/** How a crash task ends its workload. */
export type CrashHow = "exit" | "kill" | "uncaught";

/** The arguments each kind's task is called with. */
export interface ChaosInputs {
  short: [n: number];
  long: [n: number, steps: number, stepMs: number];
  stubborn: [n: number, runMs: number];
  cpu: [n: number, limit: number];
  throws: [n: number, message: string];
  crash: [n: number, how: CrashHow, code: number];
  big: [n: number, bytes: number, bigResult: boolean];
  chatty: [n: number, updates: number];
}

export function shortAnswer(n: number) {
  return { kind: "short", n, value: 2 * n + 1 };
}

export function longAnswer(n: number, steps: number) {
  return { kind: "long", n, done: steps, stopped: false, value: n * steps };
}

/** What a long task may return when it saw the stop after `done` steps. */
export function isLongEarlyAnswer(result: unknown, n: number, steps: number): boolean {
  if (typeof result !== "object" || result === null) return false;
  const r = result as Record<string, unknown>;
  return (
    r.kind === "long" &&
    r.n === n &&
    r.stopped === true &&
    typeof r.done === "number" &&
    Number.isInteger(r.done) &&
    r.done >= 0 &&
    r.done <= steps &&
    r.value === n * r.done &&
    Object.keys(r).length === 5
  );
}

export function stubbornAnswer(n: number, runMs: number) {
  return { kind: "stubborn", n, ranMs: runMs };
}

/** The number of primes below `limit`, by a sieve (the task counts them by trial division). */
export function primesBelow(limit: number): number {
  if (limit < 3) return 0;
  const composite = new Uint8Array(limit);
  let count = 0;
  for (let i = 2; i < limit; i++) {
    if (composite[i] === 1) continue;
    count++;
    for (let j = i * i; j < limit; j += i) composite[j] = 1;
  }
  return count;
}

export function cpuAnswer(n: number, limit: number) {
  return { kind: "cpu", n, limit, primes: primesBelow(limit) };
}

/** The name and message a throwing task's error must carry. */
export function throwsError(message: string) {
  return { name: "ChaosError", message };
}

/** `bytes` characters drawn from `seed`: a large output whose every byte the checker knows. */
export function bigText(seed: number, bytes: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
  const out = Buffer.allocUnsafe(bytes);
  let state = seed >>> 0;
  for (let i = 0; i < bytes; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = alphabet.charCodeAt(state >>> 26);
  }
  return out.toString("latin1");
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** A big task's output: the text itself. */
export function bigOutput(n: number, bytes: number) {
  return { kind: "big", n, text: bigText(n, bytes) };
}

/** A big task's result: the text again when `bigResult`, else its digest. */
export function bigAnswer(n: number, bytes: number, bigResult: boolean) {
  const text = bigText(n, bytes);
  return bigResult ? { kind: "big", n, bytes, text } : { kind: "big", n, bytes, sha256: sha256(text) };
}

export function chattyAnswer(n: number, updates: number) {
  return { kind: "chatty", n, updates };
}

/** The value a kind's task returns when it runs to its end. Undefined: it never returns. */
export function expectedResult(kind: ChaosKind, args: readonly unknown[]): unknown {
  switch (kind) {
    case "short":
      return shortAnswer(...(args as ChaosInputs["short"]));
    case "long": {
      const [n, steps] = args as ChaosInputs["long"];
      return longAnswer(n, steps);
    }
    case "stubborn":
      return stubbornAnswer(...(args as ChaosInputs["stubborn"]));
    case "cpu":
      return cpuAnswer(...(args as ChaosInputs["cpu"]));
    case "big":
      return bigAnswer(...(args as ChaosInputs["big"]));
    case "chatty":
      return chattyAnswer(...(args as ChaosInputs["chatty"]));
    case "throws":
    case "crash":
      return undefined;
  }
}

/** Structural equality of decoded values (JSON data plus `undefined`). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((key) =>
    sameValue((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]),
  );
}
