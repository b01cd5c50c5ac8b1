import { fileURLToPath } from "node:url";
import { encodeValue } from "./codec.js";
import type { InstanceQuery, InstanceSnapshot, SubmitRequest, TaskDefinition } from "./executor.js";
import { createInstanceId, definitionIdFor } from "./ids.js";
import type { AnyTaskFunction } from "./run-task-function.js";
import { currentExecutor } from "./runtime.js";
import { type ListTaskInstancesFilter, listTaskInstances } from "./api.js";
import {
  type CallOptions,
  type ConcurrencyOptions,
  type RunOptions,
  type TaskRunDefaults,
  checkCallOptions,
  checkTaskOptions,
  idempotentInstanceId,
  resolveRunSpec,
} from "./run-options.js";
import { TaskInstanceState } from "./task-instance-state.js";
import { startSendSpan } from "./tracing.js";

/** A function made into a task: calling it starts an instance and returns its live handle. */
export interface TaskFunction<A extends unknown[] = unknown[], R = unknown> {
  (...args: A): TaskInstanceState<R>;
  /** `{ id, name }`; `id` is the same in every process for this name. */
  readonly definition: TaskDefinition;
  /** This task's instances, in creation order. */
  listInstances(filter?: Omit<ListTaskInstancesFilter, "task">): Promise<TaskInstanceState<R>[]>;
  /**
   * The task with options for the calls made through the result: `charge.with({ idempotencyKey:
   * "order-981" })("c-42", 1999)`. Overrides the task's own defaults.
   * @throws {TaskInputError} naming the option, for an unknown option or a bad value.
   */
  with(options: CallOptions): (...args: A) => TaskInstanceState<R>;
}

/** Options of {@link task}: its name and the defaults of its instances' run options (SPEC §4). */
export interface TaskOptions<A extends unknown[] = unknown[]> extends RunOptions {
  /** The task's name; defaults to the function's name. The platform addresses tasks by it. */
  readonly name?: string;
  /** At most this many of its instances run at once, in all, and per key. */
  readonly concurrency?: ConcurrencyOptions<A>;
}

interface Registration {
  readonly fn: AnyTaskFunction;
  readonly definition: TaskDefinition;
  readonly defaults: TaskRunDefaults;
  /** The defining module's file. */
  readonly site: string;
  /** Where in it: `file:line:column`. */
  readonly statement: string;
  readonly turn: number;
}

// Shared through globalThis: an app may load two copies of this package (a bundled one and
// the workload runner's), and a task defined through either must be found by both.
const registry: Map<string, Registration> = ((globalThis as Record<symbol, unknown>)[
  Symbol.for("numerous-tasks.registry")
] ??= new Map<string, Registration>()) as Map<string, Registration>;
let turn = 0;
let turnEnding = false;

/**
 * Makes `fn` a task.
 * @throws {TypeError} when there is no name, or another function already has this name (two
 *   modules, or twice in one module). Defining the same module again (hot reload) replaces.
 */
export function task<F extends AnyTaskFunction>(fn: F): TaskFunction<Parameters<F>, Awaited<ReturnType<F>>>;
export function task<F extends AnyTaskFunction>(
  options: TaskOptions<Parameters<F>>,
  fn: F,
): TaskFunction<Parameters<F>, Awaited<ReturnType<F>>>;
export function task(
  first: TaskOptions<never> | AnyTaskFunction,
  second?: AnyTaskFunction,
): TaskFunction<unknown[], unknown> {
  const candidate: unknown = typeof first === "function" ? first : second;
  const options = typeof first === "function" ? {} : first;
  if (typeof candidate !== "function") {
    throw new TypeError("task() expects a function: task(fn) or task({ name }, fn)");
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError("task() options must be an object such as { name: 'simulate' }");
  }
  const fn = candidate as AnyTaskFunction;
  const name = options.name ?? fn.name;
  if (typeof name !== "string" || name.trim() === "") {
    throw new TypeError(
      "task() needs a name: pass a named function (function simulate() {}) or task({ name: 'simulate' }, fn)",
    );
  }
  const defaults = checkTaskOptions(options);
  const definition: TaskDefinition = Object.freeze({ id: definitionIdFor(name), name });
  const { site, statement } = callerSite();
  register(name, fn, definition, defaults, site, statement);

  const call = (...args: unknown[]): TaskInstanceState<unknown> =>
    submitCall(definition, site, defaults, undefined, args);
  return Object.assign(call, {
    definition,
    listInstances: (filter: Omit<ListTaskInstancesFilter, "task"> = {}) =>
      listTaskInstances({ ...filter, task: name }),
    with: (callOptions: CallOptions) => {
      const checked = checkCallOptions(callOptions);
      return (...args: unknown[]) => submitCall(definition, site, defaults, checked, args);
    },
  });
}

/**
 * Starts an instance: the spec from the defaults and the call's options, the id from the
 * idempotency key when there is one, and the handle at once.
 * @throws {TaskInputError} for arguments that do not survive the codec, or a key function that throws.
 */
export function submitCall(
  definition: TaskDefinition,
  module: string,
  defaults: TaskRunDefaults | undefined,
  callOptions: CallOptions | undefined,
  args: readonly unknown[],
): TaskInstanceState<unknown> {
  const encoded = encodeValue(args, "args");
  const now = Date.now();
  const spec = resolveRunSpec(defaults, callOptions, args, now);
  const executor = currentExecutor();
  const key = spec?.idempotencyKey;
  const id =
    key === undefined
      ? createInstanceId()
      : idempotentInstanceId(executor.namespace ?? "", definition.name, key);
  const send = startSendSpan(definition.name, id);
  const request: SubmitRequest = {
    id,
    taskId: definition.id,
    taskName: definition.name,
    args: encoded,
    createdAt: now,
    module,
    ...(spec === undefined ? {} : { spec }),
    ...(send?.traceContext === undefined ? {} : { traceContext: send.traceContext }),
  };
  if (send === undefined) return new TaskInstanceState(executor, executor.submit(request));
  let snapshot: InstanceSnapshot;
  try {
    snapshot = executor.submit(request);
  } catch (error) {
    send.end(error);
    throw error;
  }
  send.end();
  return new TaskInstanceState(executor, snapshot);
}

function register(
  name: string,
  fn: AnyTaskFunction,
  definition: TaskDefinition,
  defaults: TaskRunDefaults,
  site: string,
  statement: string,
): void {
  const existing = registry.get(name);
  // A hot reload evaluates the module again: the same statement defines the name anew, in a
  // later synchronous run. Any other statement (another module, or the same module later in one
  // evaluation, after an await) would be a second function under the name.
  if (
    existing !== undefined &&
    existing.fn !== fn &&
    (existing.statement !== statement || existing.turn === turn)
  ) {
    throw new TypeError(
      `a task named ${JSON.stringify(name)} is already defined (${existing.statement}); ` +
        "give one of them another name with task({ name }, fn)",
    );
  }
  registry.set(name, { fn, definition, defaults, site, statement, turn });
  if (!turnEnding) {
    // Definitions made in one synchronous run belong to one module evaluation.
    turnEnding = true;
    queueMicrotask(() => {
      turn++;
      turnEnding = false;
    });
  }
}

/** The file that called {@link task}, and the `file:line:column` of the call. */
function callerSite(): { site: string; statement: string } {
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, task);
  const line = holder.stack?.split("\n")[1] ?? "";
  const location = /\(([^)]*)\)\s*$/.exec(line)?.[1] ?? line.replace(/^\s*at\s+/, "");
  const position = /:\d+:\d+$/.exec(location)?.[0] ?? "";
  const file = location.slice(0, location.length - position.length).replace(/\?.*$/, "");
  const site = file.startsWith("file://") ? fileURLToPath(file) : file || "unknown";
  return { site, statement: `${site}${position}` };
}

/** @internal The function registered under `name`, for executors that run tasks. */
export function findTaskFunction(name: string): AnyTaskFunction | undefined {
  return registry.get(name)?.fn;
}

/** @internal What this process knows of the task `name`: its definition, defaults and module. */
export function findRegistration(
  name: string,
): { definition: TaskDefinition; defaults: TaskRunDefaults; site: string } | undefined {
  return registry.get(name);
}

/** @internal The definitions made in this process. */
export function localDefinitions(): TaskDefinition[] {
  return [...registry.values()].map((registration) => registration.definition);
}

export type { InstanceQuery };
