import { createHash } from "node:crypto";
import { TaskInputError } from "./errors.js";

/** How an instance is retried (SPEC §4 `retry`). */
export interface RetryOptions {
  /** Attempts in all, the first included; default 1 (no retry). */
  readonly maxAttempts?: number;
  /** `"exponential"` (default): `initialDelayMs × 2^(n−1)` capped at `maxDelayMs`; `"fixed"`: `initialDelayMs` each time. */
  readonly backoff?: "exponential" | "fixed";
  /** Default 1,000. */
  readonly initialDelayMs?: number;
  /** Default 60,000. */
  readonly maxDelayMs?: number;
  /** Full jitter: each wait is a uniform draw between 0 and the computed delay. Default false. */
  readonly jitter?: boolean;
}

/** A task's concurrency limit (SPEC §4 `concurrency`), across the whole executor. */
export interface ConcurrencyOptions<A extends unknown[] = unknown[]> {
  /** At most this many instances of the task run at once. */
  readonly limit?: number;
  /** The key of an instance, from its arguments; with `perKeyLimit`. */
  readonly key?: (...args: A) => string;
  /** At most this many instances with one key run at once. */
  readonly perKeyLimit?: number;
}

/** Options a task sets as defaults and a call may override. */
export interface RunOptions {
  readonly retry?: RetryOptions;
  /** Per attempt: at expiry the attempt is stopped, then killed after the grace period, and fails. */
  readonly timeoutMs?: number;
  /** Whole number, default 0: among instances ready to run, higher first. */
  readonly priority?: number;
}

/** Options of one call: `task.with(options)(...args)` or `runTask(name, args, options)`. */
export interface CallOptions extends RunOptions {
  /**
   * Scoped to the deployment and the task: every call with this key gets a handle on one
   * instance (the first), whatever its state, until retention deletes it.
   */
  readonly idempotencyKey?: string;
  /** Waits `pending` this long before it may start. */
  readonly delayMs?: number;
  /** Waits `pending` until then before it may start. */
  readonly startAt?: Date | number;
}

/**
 * The options of one instance, resolved, as they cross to an executor and are stored with the
 * instance. Absent fields mean the default.
 */
export interface RunSpec {
  readonly maxAttempts?: number;
  readonly backoff?: "exponential" | "fixed";
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
  readonly jitter?: boolean;
  readonly timeoutMs?: number;
  readonly priority?: number;
  /** Epoch milliseconds before which it does not start. */
  readonly startAt?: number;
  readonly idempotencyKey?: string;
  readonly concurrencyLimit?: number;
  readonly concurrencyKey?: string;
  readonly perKeyLimit?: number;
}

export const DEFAULT_INITIAL_DELAY_MS = 1_000;
export const DEFAULT_MAX_DELAY_MS = 60_000;
/** The longest key or idempotency key kept. */
const MAX_KEY_LENGTH = 1024;

const RETRY_KEYS = new Set(["maxAttempts", "backoff", "initialDelayMs", "maxDelayMs", "jitter"]);
const TASK_KEYS = new Set(["name", "retry", "timeoutMs", "priority", "concurrency"]);
const CALL_KEYS = new Set(["retry", "timeoutMs", "priority", "idempotencyKey", "delayMs", "startAt"]);
const CONCURRENCY_KEYS = new Set(["limit", "key", "perKeyLimit"]);

/** A task's run options, checked; the concurrency key function kept aside. */
export interface TaskRunDefaults {
  readonly spec: RunSpec;
  readonly concurrency: ConcurrencyOptions | undefined;
}

/**
 * The defaults of a task that sets no run option: one shared object, so that a call of such a
 * task is known at once to have no spec, and costs no more than before run options existed.
 */
const NO_DEFAULTS: TaskRunDefaults = Object.freeze({ spec: Object.freeze({}), concurrency: undefined });

/**
 * Checks the options given to `task()`.
 * @throws {TaskInputError} naming the option, for an unknown one or a bad value.
 */
export function checkTaskOptions(options: object): TaskRunDefaults {
  checkKeys(options, TASK_KEYS, "task options");
  const o = options as RunOptions & { concurrency?: ConcurrencyOptions };
  const spec: RunSpec = { ...checkRunOptions(o, "") };
  let concurrency: ConcurrencyOptions | undefined;
  if (o.concurrency !== undefined) {
    const c = o.concurrency;
    if (typeof c !== "object" || c === null)
      throw bad("concurrency", "must be an object { limit, key, perKeyLimit }");
    checkKeys(c, CONCURRENCY_KEYS, "concurrency");
    if (c.limit !== undefined) wholeAtLeast(c.limit, 1, "concurrency.limit");
    if (c.perKeyLimit !== undefined) wholeAtLeast(c.perKeyLimit, 1, "concurrency.perKeyLimit");
    if (c.key !== undefined && typeof c.key !== "function")
      throw bad("concurrency.key", "must be a function of the task's arguments");
    if ((c.key === undefined) !== (c.perKeyLimit === undefined)) {
      throw bad(
        c.key === undefined ? "concurrency.key" : "concurrency.perKeyLimit",
        "key and perKeyLimit go together",
      );
    }
    if (c.limit === undefined && c.perKeyLimit === undefined)
      throw bad("concurrency", "needs limit, or key with perKeyLimit");
    concurrency = c;
  }
  return concurrency === undefined && Object.keys(spec).length === 0 ? NO_DEFAULTS : { spec, concurrency };
}

/**
 * Checks the options of one call.
 * @throws {TaskInputError} naming the option, for an unknown one or a bad value.
 */
export function checkCallOptions(options: unknown): CallOptions {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw bad("options", "must be an object such as { idempotencyKey: 'order-981' }");
  }
  checkKeys(options, CALL_KEYS, "call options");
  const o = options as CallOptions;
  checkRunOptions(o, "");
  if (o.idempotencyKey !== undefined) checkKey(o.idempotencyKey, "idempotencyKey");
  if (o.delayMs !== undefined) finiteAtLeast(o.delayMs, 0, "delayMs");
  if (o.startAt !== undefined) {
    const at = o.startAt instanceof Date ? o.startAt.getTime() : o.startAt;
    if (typeof at !== "number" || !Number.isFinite(at) || at < 0)
      throw bad("startAt", "must be a valid Date or epoch milliseconds");
  }
  if (o.delayMs !== undefined && o.startAt !== undefined)
    throw bad("delayMs", "give delayMs or startAt, not both");
  return o;
}

function checkRunOptions(o: RunOptions, prefix: string): RunSpec {
  let spec: RunSpec = {};
  if (o.retry !== undefined) {
    const r = o.retry;
    if (typeof r !== "object" || r === null)
      throw bad(`${prefix}retry`, "must be an object such as { maxAttempts: 3 }");
    checkKeys(r, RETRY_KEYS, `${prefix}retry`);
    if (r.maxAttempts !== undefined) wholeAtLeast(r.maxAttempts, 1, `${prefix}retry.maxAttempts`);
    if (r.backoff !== undefined && r.backoff !== "exponential" && r.backoff !== "fixed") {
      throw bad(`${prefix}retry.backoff`, `must be "exponential" or "fixed", got ${show(r.backoff)}`);
    }
    if (r.initialDelayMs !== undefined) finiteAtLeast(r.initialDelayMs, 0, `${prefix}retry.initialDelayMs`);
    if (r.maxDelayMs !== undefined) finiteAtLeast(r.maxDelayMs, 0, `${prefix}retry.maxDelayMs`);
    if (r.jitter !== undefined && typeof r.jitter !== "boolean")
      throw bad(`${prefix}retry.jitter`, "must be true or false");
    spec = { ...spec, ...r };
  }
  if (o.timeoutMs !== undefined) {
    finiteAtLeast(o.timeoutMs, 0, `${prefix}timeoutMs`);
    if (o.timeoutMs === 0) throw bad(`${prefix}timeoutMs`, "must be more than 0");
    spec = { ...spec, timeoutMs: o.timeoutMs };
  }
  if (o.priority !== undefined) {
    if (typeof o.priority !== "number" || !Number.isSafeInteger(o.priority)) {
      throw bad(`${prefix}priority`, `must be a whole number, got ${show(o.priority)}`);
    }
    spec = { ...spec, priority: o.priority };
  }
  return spec;
}

/**
 * The spec of one call: the task's defaults, the call's overrides, the start time, the key and
 * the concurrency key computed from the arguments; `undefined` when all are defaults, as
 * `SubmitRequest.spec` wants them.
 * @throws {TaskInputError} when the concurrency key function throws or returns no string.
 */
export function resolveRunSpec(
  defaults: TaskRunDefaults | undefined,
  call: CallOptions | undefined,
  args: readonly unknown[],
  now: number,
): RunSpec | undefined {
  if (call === undefined && (defaults === undefined || defaults === NO_DEFAULTS)) return undefined;
  const spec: { -readonly [K in keyof RunSpec]: RunSpec[K] } = { ...defaults?.spec };
  if (call !== undefined) {
    if (call.retry !== undefined) Object.assign(spec, call.retry);
    if (call.timeoutMs !== undefined) spec.timeoutMs = call.timeoutMs;
    if (call.priority !== undefined) spec.priority = call.priority;
    if (call.idempotencyKey !== undefined) spec.idempotencyKey = call.idempotencyKey;
    if (call.delayMs !== undefined) spec.startAt = now + call.delayMs;
    else if (call.startAt !== undefined)
      spec.startAt = call.startAt instanceof Date ? call.startAt.getTime() : call.startAt;
  }
  const concurrency = defaults?.concurrency;
  if (concurrency !== undefined) {
    if (concurrency.limit !== undefined) spec.concurrencyLimit = concurrency.limit;
    if (concurrency.key !== undefined && concurrency.perKeyLimit !== undefined) {
      let key: unknown;
      try {
        key = (concurrency.key as (...a: unknown[]) => unknown)(...args);
      } catch (error) {
        throw bad("concurrency.key", `the key function threw: ${(error as Error)?.message ?? String(error)}`);
      }
      if (typeof key === "number" && Number.isFinite(key)) key = String(key);
      checkKey(key, "concurrency.key", "the key function must return a non-empty string");
      spec.concurrencyKey = key as string;
      spec.perKeyLimit = concurrency.perKeyLimit;
    }
  }
  return spec;
}

/**
 * The instance id of an idempotency key: the same for every call with this key of this task in
 * this deployment, and URL-safe. At 33 characters it is never a random id (those have 21).
 */
export function idempotentInstanceId(deploymentId: string, taskName: string, key: string): string {
  const digest = createHash("sha256")
    .update(`${deploymentId}\u0000${taskName}\u0000${key}`)
    .digest("base64url");
  return `k${digest.slice(0, 32)}`;
}

/**
 * The wait before attempt `next` (2 or more) under `spec`, in milliseconds. `random` is a
 * uniform draw in [0, 1), used only with jitter.
 */
export function backoffDelay(spec: RunSpec, next: number, random: () => number = Math.random): number {
  const initial = spec.initialDelayMs ?? DEFAULT_INITIAL_DELAY_MS;
  const cap = spec.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
  const base = spec.backoff === "fixed" ? initial : Math.min(cap, initial * 2 ** Math.max(0, next - 2));
  return spec.jitter === true ? Math.floor(random() * base) : base;
}

/** Attempts in all under `spec`. */
export function maxAttemptsOf(spec: RunSpec | undefined): number {
  return spec?.maxAttempts ?? 1;
}

function checkKeys(options: object, known: ReadonlySet<string>, what: string): void {
  for (const key of Object.keys(options)) {
    if (!known.has(key)) {
      throw bad(key, `is not an option of ${what}; the options are ${[...known].join(", ")}`);
    }
  }
}

function checkKey(value: unknown, option: string, problem = "must be a non-empty string"): void {
  if (typeof value !== "string" || value.trim() === "") throw bad(option, `${problem}, got ${show(value)}`);
  if (value.length > MAX_KEY_LENGTH) throw bad(option, `must be at most ${MAX_KEY_LENGTH} characters`);
}

function wholeAtLeast(value: unknown, min: number, option: string): void {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw bad(option, `must be a whole number of at least ${min}, got ${show(value)}`);
  }
}

function finiteAtLeast(value: unknown, min: number, option: string): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw bad(option, `must be a finite number of at least ${min}, got ${show(value)}`);
  }
}

function bad(option: string, problem: string): TaskInputError {
  return new TaskInputError(option, problem);
}

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  return String(value);
}
