import { type EncodedValue, decodeValue, encodeValue } from "./codec.js";
import { type TaskErrorInfo, toErrorInfo } from "./errors.js";
import { type TaskControllerImpl, runWithController } from "./task-controller.js";

/** How a task function ended, in wire terms. */
export type TaskOutcome =
  | { readonly status: "completed"; readonly result: EncodedValue }
  | { readonly status: "cancelled"; readonly result?: EncodedValue; readonly error?: TaskErrorInfo }
  | { readonly status: "failed"; readonly error: TaskErrorInfo };

// biome-ignore lint/suspicious/noExplicitAny: task functions take any arguments
export type AnyTaskFunction = (...args: any[]) => unknown;

/**
 * Runs a task function the way every executor must: on a decoded copy of its arguments,
 * with its controller ambient, and maps how it ended to a status (SPEC: a function that
 * returns after a stop is `cancelled` with its value kept; an abort error after a stop is
 * `cancelled`; any other throw is `failed`).
 *
 * A function that returns a value that is not a promise has ended: its outcome comes back at
 * once, not a microtask later, so an executor can start the next instance in the same turn.
 * Otherwise the outcome comes back as a promise.
 */
export function runTaskFunction(
  fn: AnyTaskFunction,
  args: EncodedValue,
  controller: TaskControllerImpl,
): TaskOutcome | Promise<TaskOutcome> {
  let value: unknown;
  let thenable: boolean;
  controller.inputs = args;
  try {
    const decoded = decodeValue(args) as unknown[];
    value = runWithController(controller, fn, decoded);
    thenable = isThenable(value); // reads `then`, which may throw like the function
  } catch (thrown) {
    return thrownOutcome(thrown, controller);
  }
  return thenable
    ? awaitOutcome(value as PromiseLike<unknown>, controller)
    : returnedOutcome(value, controller);
}

async function awaitOutcome(
  value: PromiseLike<unknown>,
  controller: TaskControllerImpl,
): Promise<TaskOutcome> {
  let settled: unknown;
  try {
    settled = await value;
  } catch (thrown) {
    return thrownOutcome(thrown, controller);
  }
  return returnedOutcome(settled, controller);
}

function thrownOutcome(thrown: unknown, controller: TaskControllerImpl): TaskOutcome {
  if (controller.shouldStop() && isAbort(thrown, controller.signal)) {
    return { status: "cancelled", error: toErrorInfo(thrown) };
  }
  return { status: "failed", error: toErrorInfo(thrown) };
}

function returnedOutcome(value: unknown, controller: TaskControllerImpl): TaskOutcome {
  let result: EncodedValue;
  try {
    result = encodeValue(value, "result");
  } catch (thrown) {
    return { status: "failed", error: toErrorInfo(thrown) };
  }
  return controller.shouldStop() ? { status: "cancelled", result } : { status: "completed", result };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

function isAbort(thrown: unknown, signal: AbortSignal): boolean {
  return thrown === signal.reason || (thrown instanceof Error && thrown.name === "AbortError");
}
