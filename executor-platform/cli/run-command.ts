import { runTask } from "../../sdk/api.js";
import { TaskInputError, errorForFailure } from "../../sdk/errors.js";
import type { Executor } from "../../sdk/executor.js";
import { type CallOptions, checkCallOptions, maxAttemptsOf } from "../../sdk/run-options.js";
import { parseDuration } from "./duration.js";
import { ExitCode, STATUS_EXIT } from "./exit-code.js";
import { describeEnd, viewOf } from "./instance-view.js";

/** `tasks run`'s flags as commander hands them over: text, checked by {@link parseRunRequest}. */
export interface RunFlags {
  readonly args: string;
  readonly idempotencyKey?: string;
  readonly delay?: string;
  readonly priority?: string;
  readonly maxAttempts?: string;
  readonly timeout?: string;
  readonly wait?: boolean;
  readonly json?: boolean;
}

/** What `tasks run` submits. */
export interface RunRequest {
  readonly args: unknown[];
  readonly options: CallOptions;
}

/** Bad flags of `tasks run`: the command exits 2 and submits nothing. */
export class RunUsageError extends Error {}

/**
 * The arguments and call options the flags ask for, checked as a task call checks them, before
 * anything reaches a daemon.
 * @throws {RunUsageError} naming the flag.
 */
export function parseRunRequest(flags: RunFlags): RunRequest {
  const example = `e.g. --args '[1, "two"]'`;
  let args: unknown;
  try {
    args = JSON.parse(flags.args);
  } catch (error) {
    throw new RunUsageError(
      `--args expects the task's arguments as a JSON array (${example}): ${(error as Error).message}`,
    );
  }
  if (!Array.isArray(args)) {
    throw new RunUsageError(
      `--args expects the task's arguments as a JSON array (${example}), got ${args === null ? "null" : typeof args}`,
    );
  }
  const options: { -readonly [K in keyof CallOptions]: CallOptions[K] } = {};
  if (flags.idempotencyKey !== undefined) {
    if (flags.idempotencyKey.trim() === "") throw new RunUsageError("--idempotency-key must not be empty");
    options.idempotencyKey = flags.idempotencyKey;
  }
  if (flags.delay !== undefined) options.delayMs = duration("--delay", flags.delay);
  if (flags.priority !== undefined) {
    const priority = Number(flags.priority);
    if (flags.priority.trim() === "" || !Number.isSafeInteger(priority))
      throw new RunUsageError(`--priority expects a whole number, got ${JSON.stringify(flags.priority)}`);
    options.priority = priority;
  }
  if (flags.maxAttempts !== undefined) {
    const maxAttempts = Number(flags.maxAttempts);
    if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1)
      throw new RunUsageError(
        `--max-attempts expects a whole number of at least 1, got ${JSON.stringify(flags.maxAttempts)}`,
      );
    options.retry = { maxAttempts };
  }
  if (flags.timeout !== undefined) {
    const timeoutMs = duration("--timeout", flags.timeout);
    if (timeoutMs <= 0) throw new RunUsageError("--timeout must be longer than 0");
    options.timeoutMs = timeoutMs;
  }
  try {
    // The SDK's own check has the last word (a key's greatest length, say).
    return { args, options: checkCallOptions(options) };
  } catch (error) {
    if (error instanceof TaskInputError) throw new RunUsageError(error.message);
    throw error;
  }
}

function duration(flag: string, text: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new RunUsageError(`${flag}: ${(error as Error).message}`);
  }
}

/**
 * Starts `name` through the daemon as `runTask` does, and prints the instance id once the daemon
 * has it; with `wait`, then how it ended. An unknown task name, or a daemon that refuses the
 * instance, throws the SDK's error for it.
 */
export async function startByName(
  executor: Executor,
  name: string,
  request: RunRequest,
  flags: Pick<RunFlags, "wait" | "json">,
  write: (text: string) => void,
  note: (text: string) => void,
): Promise<number> {
  const instance = runTask(name, request.args, request.options);
  const madeAt = instance.createdAt.getTime();
  // Answers once the submit has: the daemon's copy, or nothing when it refused the instance.
  const stored = await executor.get(instance.id);
  if (stored === undefined) {
    const error = instance.error;
    if (error !== undefined) throw errorForFailure(instance.id, error);
    throw new Error(`the daemon did not keep instance ${instance.id}`);
  }
  const key = request.options.idempotencyKey;
  if (key !== undefined && stored.createdAt !== madeAt) {
    note(
      `idempotency key ${JSON.stringify(key)} names an instance made before, at ${new Date(stored.createdAt).toISOString()}: this is that one, and these arguments are not used`,
    );
  }
  const maxAttempts = maxAttemptsOf(stored.spec);
  if (!flags.wait) {
    write(flags.json ? `${JSON.stringify(viewOf(instance.snapshot(), maxAttempts))}\n` : `${instance.id}\n`);
    return ExitCode.Ok;
  }
  if (!flags.json) write(`${instance.id}\n`);
  await instance.wait().catch(() => undefined);
  write(
    flags.json
      ? `${JSON.stringify(viewOf(instance.snapshot(), maxAttempts))}\n`
      : `${describeEnd(instance)}\n`,
  );
  return STATUS_EXIT[instance.status];
}
