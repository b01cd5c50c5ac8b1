export {
  TaskError,
  TaskFailedError,
  TaskCancelledError,
  TaskTimeoutError,
  TaskNotFoundError,
  NoTaskContextError,
  TaskInputError,
  NonRetryableError,
  ExecutorConfigError,
  ExecutorUnavailableError,
  isTaskError,
  type TaskErrorInfo,
} from "./errors.js";
export { TaskStatus } from "./task-status.js";
export { encodeValue, decodeValue, type EncodedValue } from "./codec.js";
export { loadConfig, type NumerousConfig } from "./config.js";
export type {
  AttemptRecord,
  Executor,
  InstanceSnapshot,
  SubmitRequest,
  InstanceQuery,
  InstancePage,
  TaskDefinition,
  TaskLogLine,
  LogsOptions,
} from "./executor.js";
export { getTaskController, getTaskInputs, type TaskController } from "./task-controller.js";
export {
  TaskInstanceState,
  type TaskAttempt,
  type TaskSnapshot,
  type WaitOptions,
} from "./task-instance-state.js";
export type { CallOptions, ConcurrencyOptions, RetryOptions, RunOptions, RunSpec } from "./run-options.js";
export { task, type TaskFunction, type TaskOptions } from "./task.js";
export {
  waitForCompletion,
  stopTaskInstance,
  getTaskInstance,
  getTaskDefinition,
  runTask,
  listTaskDefinitions,
  listTaskInstances,
  type ListTaskInstancesFilter,
} from "./api.js";
export { setExecutor } from "./runtime.js";
export {
  upsertSchedule,
  listSchedules,
  pauseSchedule,
  resumeSchedule,
  deleteSchedule,
  triggerSchedule,
  type Schedule,
  type ScheduleOptions,
  type ScheduleExecutor,
  type ScheduleRecord,
  type ScheduleSnapshot,
} from "./schedules.js";
