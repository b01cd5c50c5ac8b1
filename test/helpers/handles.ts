import type { TaskInstanceState, TaskSnapshot } from "numerous-tasks";
import { DEFAULT_DEADLINE_MS, withDeadline } from "./deadline.js";

/**
 * Resolves once `predicate` holds for the live handle, checked now and after every change.
 * Rejects, saying what it waited for and where the instance is, when the instance ends without
 * the predicate ever holding (nothing will change after that), or after `timeoutMs`.
 */
export function until<R>(
  instance: TaskInstanceState<R>,
  predicate: (instance: TaskInstanceState<R>) => boolean,
  what = "the awaited change",
  timeoutMs: number = DEFAULT_DEADLINE_MS,
): Promise<void> {
  const state = () =>
    `instance ${instance.id} of ${instance.taskName} is ${instance.status}, progress ${instance.progress}, output ${JSON.stringify(instance.output)}`;
  let off: (() => void) | undefined;
  const reached = new Promise<void>((resolve, reject) => {
    const check = () => {
      if (predicate(instance)) {
        off?.();
        resolve();
      } else if (instance.isDone()) {
        off?.();
        reject(new Error(`${state()}: it ended before ${what}`));
      }
    };
    off = instance.onChange(check);
    check();
  });
  return withDeadline(reached, `${what} of instance ${instance.id}`, timeoutMs, state).finally(() => off?.());
}

/**
 * Resolves with the first snapshot (now or after a change) that matches; rejects as
 * {@link until} does, so a broken executor fails the test instead of hanging it.
 */
export async function untilSnapshot<R>(
  instance: TaskInstanceState<R>,
  matches: (snapshot: TaskSnapshot<R>) => boolean,
  what: string,
  timeoutMs: number = DEFAULT_DEADLINE_MS,
): Promise<TaskSnapshot<R>> {
  let matched: TaskSnapshot<R> | undefined;
  await until(
    instance,
    (current) => {
      const snapshot = current.snapshot();
      if (!matches(snapshot)) return false;
      matched = snapshot;
      return true;
    },
    what,
    timeoutMs,
  );
  return matched as TaskSnapshot<R>;
}

/** What `promise` rejects with; throws when it resolves. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  let value: unknown;
  try {
    value = await promise;
  } catch (error) {
    return error;
  }
  throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
}
