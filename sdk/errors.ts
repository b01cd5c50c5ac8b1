import { failures } from "./failures.js";

/** Marks the SDK's errors, whichever copy of the package made them. */
const BRAND = Symbol.for("numerous-tasks.TaskError");

/**
 * The SDK's error family. Every error a user can catch is a {@link TaskError} with a
 * stable `code`; `instanceof` works and `name` is set, so logs and type guards agree.
 */
export class TaskError extends Error {
  /** A stable, machine-readable code, e.g. `TASK_FAILED`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /**
   * `instanceof` holds too for an error made by another copy of this package in the process: a
   * workload runs the runner's copy beside the one the app's module imports (bundled, or
   * resolved elsewhere), and a task catches what its controller throws by the app's classes.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: the class instanceof asks about, a subclass too
    return isInstanceOf(this, value);
  }
}

/** `value instanceof asked`, by the prototype chain or, across copies, by brand and class name. */
function isInstanceOf(asked: abstract new (...args: never[]) => unknown, value: unknown): boolean {
  if (Function.prototype[Symbol.hasInstance].call(asked, value)) return true;
  if (typeof value !== "object" || value === null || !(BRAND in value)) return false;
  for (
    let proto: unknown = Object.getPrototypeOf(value);
    proto !== null;
    proto = Object.getPrototypeOf(proto)
  ) {
    if ((proto as { constructor?: { name?: unknown } }).constructor?.name === asked.name) return true;
  }
  return false;
}

/** The error a task function threw (or its workload's death), as it crossed the executor. */
export interface TaskErrorInfo {
  readonly name: string;
  readonly message: string;
  readonly stack?: string;
  /** Set when the failure is one of the SDK's own errors, e.g. `EXECUTOR_UNAVAILABLE`. */
  readonly code?: string;
  /** Set when the failure is one of the SDK's own errors that carries more than a message. */
  readonly details?: TaskErrorDetails;
}

/** An SDK error's own fields, so it is rebuilt as it was thrown without reading its message. */
export interface TaskErrorDetails {
  /** {@link ExecutorUnavailableError}: the daemon's address. */
  readonly address?: string;
  /** {@link ExecutorConfigError}: the variable, and its value when it had one. */
  readonly variable?: string;
  readonly value?: string;
}

/**
 * The task function threw, or its workload died, on its last attempt. `cause` rebuilds the last
 * attempt's error; `attempts` says how many were made.
 */
export class TaskFailedError extends TaskError {
  readonly instanceId: string;
  readonly error: TaskErrorInfo;
  readonly attempts: number;

  constructor(instanceId: string, error: TaskErrorInfo, attempts = 1) {
    super(
      "TASK_FAILED",
      `task instance ${instanceId} failed${attempts > 1 ? ` after ${attempts} attempts` : ""}: ${error.name}: ${error.message}`,
      { cause: rebuildError(error, instanceId) },
    );
    this.instanceId = instanceId;
    this.error = error;
    this.attempts = attempts;
  }
}

/**
 * Thrown by a task to fail at once, whatever attempts remain: a retry could not help (bad input,
 * a refused payment). `code` is `NON_RETRYABLE`, which is how executors recognise it.
 */
export class NonRetryableError extends TaskError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("NON_RETRYABLE", message, options);
  }
}

/** The instance was stopped before its function returned a value. */
export class TaskCancelledError extends TaskError {
  readonly instanceId: string;

  constructor(instanceId: string, reason?: TaskErrorInfo) {
    super(
      "TASK_CANCELLED",
      `task instance ${instanceId} was cancelled before it returned a value`,
      reason ? { cause: rebuildError(reason) } : undefined,
    );
    this.instanceId = instanceId;
  }
}

/**
 * `waitForCompletion` gave up after `timeoutMs` (the task itself goes on running); or, as the
 * reason of a task's `signal` and the cause of its failed attempt, the attempt ran past the
 * task's own `timeoutMs` and was stopped.
 */
export class TaskTimeoutError extends TaskError {
  readonly instanceId: string;
  readonly timeoutMs: number;

  constructor(instanceId: string, timeoutMs: number, of: "wait" | "attempt" = "wait") {
    super(
      "TASK_TIMEOUT",
      of === "wait"
        ? `task instance ${instanceId} did not finish within ${timeoutMs} ms (it is still running)`
        : `task instance ${instanceId}: the attempt ran past its ${timeoutMs} ms timeout and was stopped`,
    );
    this.instanceId = instanceId;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * No instance with this id exists for this executor (and deployment); or, for an instance that
 * `runTask` started by name, no task of that name is known.
 */
export class TaskNotFoundError extends TaskError {
  readonly instanceId: string;

  constructor(instanceId: string, message?: string) {
    super("TASK_NOT_FOUND", message ?? `no task instance with id ${JSON.stringify(instanceId)}`);
    this.instanceId = instanceId;
  }
}

/** `getTaskController()` or `getTaskInputs()` was called outside a running task. */
export class NoTaskContextError extends TaskError {
  constructor(what = "getTaskController") {
    super(
      "NO_TASK_CONTEXT",
      `${what}() was called outside a task; call it inside a function wrapped with task()`,
    );
  }
}

/** A value cannot cross the wire: arguments, outputs and results must survive the codec. */
export class TaskInputError extends TaskError {
  /** Where the bad value sits, e.g. `args[0].when`. */
  readonly path: string;

  constructor(path: string, problem: string) {
    super("TASK_INPUT", `${path}: ${problem}`);
    this.path = path;
  }
}

/** The environment names an executor or setting that does not exist. */
export class ExecutorConfigError extends TaskError {
  readonly variable: string;
  readonly value: string | undefined;

  constructor(variable: string, value: string | undefined, problem: string) {
    super(
      "EXECUTOR_CONFIG",
      value === undefined ? `${variable}: ${problem}` : `${variable}=${JSON.stringify(value)}: ${problem}`,
    );
    this.variable = variable;
    this.value = value;
  }
}

/** The platform executor could not reach its daemon. */
export class ExecutorUnavailableError extends TaskError {
  readonly address: string;

  constructor(address: string, detail: string, options?: { cause?: unknown }) {
    super("EXECUTOR_UNAVAILABLE", `task executor at ${address} is unavailable: ${detail}`, options);
    this.address = address;
  }
}

/** Type guard that accepts anything. */
export function isTaskError(value: unknown): value is TaskError {
  return value instanceof TaskError;
}

/** Turns whatever a task threw into the plain record that crosses the executor. */
export function toErrorInfo(thrown: unknown): TaskErrorInfo {
  if (thrown instanceof Error) {
    const code = (thrown as { code?: unknown }).code;
    const details = detailsOf(thrown);
    return {
      name: thrown.name || "Error",
      message: thrown.message,
      ...(thrown.stack === undefined ? {} : { stack: thrown.stack }),
      ...(typeof code === "string" ? { code } : {}),
      ...(details === undefined ? {} : { details }),
    };
  }
  let shown: string;
  try {
    shown = typeof thrown === "string" ? JSON.stringify(thrown) : String(thrown);
  } catch {
    shown = Object.prototype.toString.call(thrown);
  }
  return failures.nonErrorThrown(shown);
}

function detailsOf(error: Error): TaskErrorDetails | undefined {
  if (error instanceof ExecutorUnavailableError) return { address: error.address };
  if (error instanceof ExecutorConfigError) {
    return error.value === undefined
      ? { variable: error.variable }
      : { variable: error.variable, value: error.value };
  }
  return undefined;
}

/**
 * The error `waitForCompletion` rejects with for a failed instance: the SDK's own error when the
 * failure was one (the daemon unreachable, a refused token), else {@link TaskFailedError}.
 */
export function errorForFailure(instanceId: string, info: TaskErrorInfo, attempts = 1): TaskError {
  let error: TaskError;
  if (info.code === "EXECUTOR_UNAVAILABLE") {
    error = new ExecutorUnavailableError(info.details?.address ?? "unknown", "");
  } else if (info.code === "TASK_NOT_DEFINED") {
    return new TaskNotFoundError(instanceId, info.message);
  } else if (info.code === "EXECUTOR_CONFIG") {
    error = new ExecutorConfigError(info.details?.variable ?? "NUMEROUS_EXECUTOR", info.details?.value, "");
  } else {
    return new TaskFailedError(instanceId, info, attempts);
  }
  // The record's message is the one the error was made with: keep it word for word.
  error.message = info.message;
  return error;
}

function rebuildError(info: TaskErrorInfo, instanceId = ""): Error {
  if (info.code === "TASK_TIMEOUT") {
    // An attempt's timeout: the cause is a TaskTimeoutError, as SPEC §4 says, not a look-alike.
    const ms = Number(/(\d+) ms timeout/.exec(info.message)?.[1] ?? 0);
    const timeout = new TaskTimeoutError(instanceId, ms, "attempt");
    timeout.message = info.message;
    timeout.stack = info.stack ?? `${info.name}: ${info.message}`;
    return timeout;
  }
  const error = new Error(info.message);
  error.name = info.name;
  error.stack = info.stack ?? `${info.name}: ${info.message}`;
  return error;
}
