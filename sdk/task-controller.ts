import { AsyncLocalStorage } from "node:async_hooks";
import { type EncodedValue, decodeValue, encodeValue } from "./codec.js";
import { NoTaskContextError, TaskInputError } from "./errors.js";
import type { OutputSink } from "./output-capture.js";

/** What a running task uses to report and to learn that it should stop. */
export interface TaskController {
  readonly instanceId: string;
  readonly taskName: string;
  /** Aborted when a stop is requested. Pass it to `fetch`, timers and child work. */
  readonly signal: AbortSignal;
  /**
   * Reports progress.
   * @param progress a finite number from 0 to 1.
   * @throws {RangeError} for anything else.
   */
  setProgress(progress: number): void;
  /**
   * Replaces the instance's output with a plain object.
   * @throws {TaskInputError} when it is not a plain object that survives the codec.
   */
  setOutput(output: Record<string, unknown>): void;
  /** True once a stop was requested. */
  shouldStop(): boolean;
}

/** Where a controller sends what the task reports: the executor behind it. */
export interface ControllerSink {
  progress(progress: number): void;
  output(output: EncodedValue): void;
}

/** The controller both executors hand to task functions. */
export class TaskControllerImpl implements TaskController {
  readonly instanceId: string;
  readonly taskName: string;
  /** The instance's encoded arguments, for `getTaskInputs()`; set when the function is called. */
  inputs: EncodedValue | undefined;
  /** Where console output written in the task's async context goes; set by executors that keep logs. */
  outputSink: OutputSink | undefined = undefined;
  #abort: AbortController | undefined;
  #stopReason: Error | undefined;
  readonly #sink: ControllerSink;

  constructor(instanceId: string, taskName: string, sink: ControllerSink) {
    this.instanceId = instanceId;
    this.taskName = taskName;
    this.#sink = sink;
  }

  get signal(): AbortSignal {
    if (this.#abort === undefined) {
      this.#abort = new AbortController();
      if (this.#stopReason !== undefined) this.#abort.abort(this.#stopReason);
    }
    return this.#abort.signal;
  }

  setProgress(progress: number): void {
    if (typeof progress !== "number" || !(progress >= 0 && progress <= 1)) {
      throw new RangeError(`setProgress expects a finite number from 0 to 1, got ${describe(progress)}`);
    }
    this.#sink.progress(progress);
  }

  setOutput(output: Record<string, unknown>): void {
    if (typeof output !== "object" || output === null || Array.isArray(output) || !isPlainPrototype(output)) {
      throw new TaskInputError("output", `setOutput expects a plain object, got ${describe(output)}`);
    }
    this.#sink.output(encodeValue(output, "output"));
  }

  shouldStop(): boolean {
    return this.#stopReason !== undefined;
  }

  /**
   * Executors call this when a stop arrives; later calls do nothing. `reason` becomes the
   * signal's reason (an attempt's timeout passes a `TaskTimeoutError`); by default an `AbortError`.
   */
  requestStop(reason?: Error): void {
    if (this.#stopReason === undefined) {
      if (reason === undefined) {
        reason = new Error(`task instance ${this.instanceId} was asked to stop`);
        reason.name = "AbortError";
      }
      this.#stopReason = reason;
      this.#abort?.abort(reason);
    }
  }
}

function isPlainPrototype(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  if (typeof value === "number") return String(value);
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value;
}

// Shared through globalThis, like the task registry, so every copy of the SDK sees one context.
const context: AsyncLocalStorage<TaskController> = ((globalThis as Record<symbol, unknown>)[
  Symbol.for("numerous-tasks.context")
] ??= new AsyncLocalStorage<TaskController>()) as AsyncLocalStorage<TaskController>;

/**
 * Calls `fn(...args)` with `controller` ambient, for the whole async call tree it starts. The
 * arguments go through `run` rather than a closure: one object less per task.
 */
export function runWithController<T>(
  controller: TaskController,
  fn: (...args: never[]) => T,
  args: readonly unknown[],
): T {
  return context.run(controller, callWith, fn, args) as T;
}

/** Calls `fn` as a plain function (`this` undefined, as a direct call would). */
function callWith(fn: (...args: never[]) => unknown, args: readonly unknown[]): unknown {
  return fn(...(args as never[]));
}

/**
 * Inside a task: the decoded argument list of the current instance (a fresh copy: what the
 * function was called with, before it changed anything). In a workload these are what the
 * daemon passed in `TASK_DATA_INPUT`.
 * @throws {NoTaskContextError} outside a task.
 */
export function getTaskInputs(): unknown[] {
  const controller = context.getStore();
  if (controller === undefined) throw new NoTaskContextError("getTaskInputs");
  const inputs = (controller as TaskControllerImpl).inputs ?? process.env.TASK_DATA_INPUT;
  return inputs === undefined || inputs === "" ? [] : (decodeValue(inputs) as unknown[]);
}

/** The controller of the task this code runs in, or undefined outside a task. */
export function currentTaskController(): TaskController | undefined {
  return context.getStore();
}

/**
 * The controller of the task this code runs in, anywhere in its async call tree.
 * @throws {NoTaskContextError} outside a task.
 */
export function getTaskController(): TaskController {
  const controller = context.getStore();
  if (controller === undefined) throw new NoTaskContextError();
  return controller;
}
