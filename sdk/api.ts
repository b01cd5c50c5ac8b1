import type { TaskDefinition } from "./executor.js";
import { TaskInputError, TaskNotFoundError } from "./errors.js";
import { definitionIdFor } from "./ids.js";
import { type CallOptions, checkCallOptions } from "./run-options.js";
import { currentExecutor } from "./runtime.js";
import { findRegistration, submitCall } from "./task.js";
import { TaskInstanceState, type WaitOptions } from "./task-instance-state.js";
import type { TaskStatus } from "./task-status.js";

/** Which instances `listTaskInstances` returns. */
export interface ListTaskInstancesFilter {
  /** A task's name or definition id, or the task function itself. */
  readonly task?: string | { readonly definition: TaskDefinition };
  readonly status?: TaskStatus | readonly TaskStatus[];
  /** At most this many (default and cap: the executor's, 1,000 for both built-in ones). */
  readonly limit?: number;
  /** The id of the last instance of the previous page: returns the ones created after it. */
  readonly cursor?: string;
}

/**
 * Waits for an instance to end.
 * @returns the task function's return value, whenever it returned one (also after a stop).
 * @throws {TaskFailedError} when it threw or its workload died.
 * @throws {TaskCancelledError} when it was stopped before returning a value.
 * @throws {TaskTimeoutError} when `timeoutMs` passed first (the task goes on).
 * @throws {TaskNotFoundError} for an unknown id.
 * @throws {ExecutorUnavailableError} when the platform daemon could not be reached.
 * @throws {ExecutorConfigError} when the daemon refused the access token.
 * @throws the signal's reason when `signal` aborts first.
 */
export async function waitForCompletion<R>(
  instance: TaskInstanceState<R> | string,
  options: WaitOptions = {},
): Promise<R> {
  if (typeof instance !== "string") return instance.wait(options);
  const found = await getTaskInstance(instance);
  if (found === undefined) throw new TaskNotFoundError(instance);
  return (found as TaskInstanceState<R>).wait(options);
}

/**
 * Requests a stop. Pending (also between attempts): cancelled at once, never runs. Running:
 * `shouldStop()` turns true and the controller's signal aborts. A stopped instance is never
 * retried. Finished: nothing happens.
 * @returns a live handle on the instance, or `undefined` for an unknown id.
 */
export async function stopTaskInstance<R = unknown>(id: string): Promise<TaskInstanceState<R> | undefined> {
  const executor = currentExecutor();
  if (!(await executor.stop(id))) return undefined;
  const snapshot = await executor.get(id);
  return snapshot === undefined ? undefined : new TaskInstanceState<R>(executor, snapshot);
}

/** The definition of a task by its name or definition id, or `undefined` when the executor knows none. */
export async function getTaskDefinition(idOrName: string): Promise<TaskDefinition | undefined> {
  const definitions = await currentExecutor().listDefinitions();
  return definitions.find((definition) => definition.name === idOrName || definition.id === idOrName);
}

/**
 * Starts a task by name (or definition) without importing the module that defines it: on the
 * platform, any task the daemon knows for the deployment. Returns the handle synchronously, as a
 * call does; an unknown name fails the instance with `TaskNotFoundError`. The task's own
 * defaults (retry, timeout, concurrency) apply when this process defined it; otherwise only
 * `options` do.
 * @throws {TaskInputError} when `args` is not an array, an argument does not survive the codec,
 *   or an option is unknown or bad.
 */
export function runTask<R = unknown>(
  nameOrDefinition: string | { readonly name: string },
  args: readonly unknown[] = [],
  options?: CallOptions,
): TaskInstanceState<R> {
  const name = typeof nameOrDefinition === "string" ? nameOrDefinition : nameOrDefinition?.name;
  if (typeof name !== "string" || name.trim() === "") {
    throw new TaskInputError("name", "runTask needs a task name or definition");
  }
  if (!Array.isArray(args)) throw new TaskInputError("args", "runTask takes the arguments as an array");
  const checked = options === undefined ? undefined : checkCallOptions(options);
  const known = findRegistration(name);
  if (known !== undefined) {
    return submitCall(known.definition, known.site, known.defaults, checked, args) as TaskInstanceState<R>;
  }
  // Not defined here: the executor finds the module by name (an empty module says so).
  return submitCall(
    { id: definitionIdFor(name), name },
    "",
    undefined,
    checked,
    args,
  ) as TaskInstanceState<R>;
}

/** A live handle on an instance by id (also one made by another process), or `undefined`. */
export async function getTaskInstance<R = unknown>(id: string): Promise<TaskInstanceState<R> | undefined> {
  const executor = currentExecutor();
  const snapshot = await executor.get(id);
  return snapshot === undefined ? undefined : new TaskInstanceState<R>(executor, snapshot);
}

/** The task definitions the executor knows: this process's locally, the deployment's on the platform. */
export async function listTaskDefinitions(): Promise<TaskDefinition[]> {
  return [...(await currentExecutor().listDefinitions())];
}

/** Instances in creation order, across all tasks unless filtered. */
export async function listTaskInstances(filter: ListTaskInstancesFilter = {}): Promise<TaskInstanceState[]> {
  const executor = currentExecutor();
  const { task, status } = filter;
  const page = await executor.list({
    task: task === undefined || typeof task === "string" ? task : task.definition.name,
    status: status === undefined ? undefined : typeof status === "string" ? [status] : status,
    limit: filter.limit,
    cursor: filter.cursor,
  });
  return page.instances.map((snapshot) => new TaskInstanceState(executor, snapshot));
}
