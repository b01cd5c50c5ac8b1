import type { TaskDefinition } from "./executor.js";
import { TaskNotFoundError } from "./errors.js";
import { currentExecutor } from "./runtime.js";
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
 * Requests a stop. Pending: cancelled at once, never runs. Running: `shouldStop()` turns true
 * and the controller's signal aborts. Finished or unknown: nothing happens.
 */
export async function stopTaskInstance(id: string): Promise<void> {
  await currentExecutor().stop(id);
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
