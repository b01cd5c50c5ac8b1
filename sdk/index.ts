export {
  TaskError,
  TaskFailedError,
  TaskCancelledError,
  TaskTimeoutError,
  TaskNotFoundError,
  NoTaskContextError,
  TaskInputError,
  ExecutorConfigError,
  ExecutorUnavailableError,
  isTaskError,
  type TaskErrorInfo,
} from "./errors.js";
export { TaskStatus } from "./task-status.js";
export { encodeValue, decodeValue, type EncodedValue } from "./codec.js";
export { loadConfig, type NumerousConfig } from "./config.js";
export type {
  Executor,
  InstanceSnapshot,
  SubmitRequest,
  InstanceQuery,
  InstancePage,
  TaskDefinition,
} from "./executor.js";
export { getTaskController, type TaskController } from "./task-controller.js";
export { TaskInstanceState, type TaskSnapshot, type WaitOptions } from "./task-instance-state.js";
export { task, type TaskFunction, type TaskOptions } from "./task.js";
export {
  waitForCompletion,
  stopTaskInstance,
  getTaskInstance,
  listTaskDefinitions,
  listTaskInstances,
  type ListTaskInstancesFilter,
} from "./api.js";
export { setExecutor } from "./runtime.js";
