import type { TaskErrorInfo } from "./errors.js";

/**
 * The names of the failures an executor records itself, when no task function threw: they cross
 * the wire and are stored, so logs, tests and the chaos checks can rely on them.
 */
export const FailureName = {
  /** A running instance's workload did not reattach to a restarted daemon in time. */
  WorkloadLost: "WorkloadLostError",
  /** A cluster daemon stopped renewing its lease; another daemon failed its instances. */
  DaemonLost: "DaemonLostError",
  /** A task ignored its stop for the whole grace period, so its workload was killed. */
  TaskStopped: "TaskStoppedError",
  /** The workload process exited or disconnected before reporting an end. */
  WorkloadExited: "WorkloadExitedError",
  /** The workload broke the protocol with its daemon. */
  WorkloadProtocol: "WorkloadProtocolError",
  /** The instance was refused before it ran: its request was not valid. */
  TaskInput: "TaskInputError",
  /** No task of that name could be found to run the instance. */
  TaskNotFound: "TaskNotFoundError",
  /** The executor could not learn how the instance ended. */
  Task: "TaskError",
  /** An attempt ran past the task's `timeoutMs`. */
  AttemptTimeout: "TaskTimeoutError",
  /** A task threw something that is not an `Error`. */
  NonErrorThrown: "NonErrorThrown",
} as const;

/**
 * The records of those failures, made in this one place so every executor words them alike.
 * Their messages are what users and tests read: change them only on purpose.
 */
export const failures = {
  workloadLost(reconnectWindowMs: number): TaskErrorInfo {
    return {
      name: FailureName.WorkloadLost,
      message: `the workload was lost: the daemon restarted and the workload did not reconnect within ${reconnectWindowMs} ms`,
    };
  },

  daemonLost(owner: string, leaseMs: number): TaskErrorInfo {
    return {
      name: FailureName.DaemonLost,
      message: `the daemon ${owner} that ran this instance stopped renewing its ${leaseMs} ms lease and is presumed dead`,
    };
  },

  stopGraceExceeded(graceMs: number): TaskErrorInfo {
    return {
      name: FailureName.TaskStopped,
      message: `the task did not end within the ${graceMs} ms stop grace period, so its workload was killed`,
    };
  },

  /** @param tail the end of the workload's output, if it wrote any. */
  workloadExited(reason: string, tail = ""): TaskErrorInfo {
    return { name: FailureName.WorkloadExited, message: tail ? `${reason}; last output:\n${tail}` : reason };
  },

  finishedWithoutStatus(): TaskErrorInfo {
    return {
      name: FailureName.WorkloadProtocol,
      message: "the workload reported an end without a final status",
    };
  },

  /** A refused request, with the code that {@link TaskInputError} has. */
  taskInput(message: string): TaskErrorInfo {
    return { name: FailureName.TaskInput, message, code: "TASK_INPUT" };
  },

  instanceIdTaken(instanceId: string): TaskErrorInfo {
    return failures.taskInput(`instance id ${instanceId} is taken`);
  },

  /** The daemon cannot resolve the module that defines the task; `why` says what it tried. */
  taskNotFound(taskName: string, why: string): TaskErrorInfo {
    return {
      name: FailureName.TaskNotFound,
      message: `task ${JSON.stringify(taskName)}: ${why}`,
      code: "TASK_NOT_FOUND",
    };
  },

  /** The local executor's process never defined the task. */
  taskNotDefinedHere(taskName: string): TaskErrorInfo {
    return {
      name: FailureName.TaskNotFound,
      message: `no task named ${JSON.stringify(taskName)} is defined in this process`,
    };
  },

  /** `runTask` named a task that nobody defined (in this process, or for the deployment). */
  taskNotDefined(taskName: string, where: string): TaskErrorInfo {
    return {
      name: FailureName.TaskNotFound,
      message: `no task named ${JSON.stringify(taskName)} is defined ${where}`,
      code: "TASK_NOT_DEFINED",
    };
  },

  /** A workload imported the task's module and found no task of that name in it. */
  taskNotInModule(module: string, taskName: string): TaskErrorInfo {
    return {
      name: FailureName.TaskNotFound,
      message: `module ${module} does not define a task named ${JSON.stringify(taskName)}`,
    };
  },

  /** The daemon's answer to a submit had no result for this instance. */
  noSubmitResult(): TaskErrorInfo {
    return { name: FailureName.Task, message: "the daemon did not answer for this instance" };
  },

  /** The daemon's answer to a submit held a result with neither an instance nor an error. */
  emptySubmitResult(): TaskErrorInfo {
    return { name: FailureName.Task, message: "the daemon sent an empty result" };
  },

  /** An attempt ran past its `timeoutMs`; it was stopped (and killed after the grace period). */
  attemptTimedOut(instanceId: string, timeoutMs: number): TaskErrorInfo {
    return {
      name: FailureName.AttemptTimeout,
      message: `task instance ${instanceId}: the attempt ran past its ${timeoutMs} ms timeout and was stopped`,
      code: "TASK_TIMEOUT",
    };
  },

  /** @param shown the thrown value as text. */
  nonErrorThrown(shown: string): TaskErrorInfo {
    return { name: FailureName.NonErrorThrown, message: `the task threw a non-Error value: ${shown}` };
  },

  /** A failed snapshot that carries no error (an executor's bug, or an older record). */
  withoutReason(): TaskErrorInfo {
    return { name: "Error", message: "the instance failed without a reason" };
  },
} as const;
