import type { TaskInstanceState } from "numerous-tasks";

/** Resolves once `predicate` holds for the live handle, checked now and after every change. */
export function until<R>(
  instance: TaskInstanceState<R>,
  predicate: (instance: TaskInstanceState<R>) => boolean,
): Promise<void> {
  if (predicate(instance)) return Promise.resolve();
  return new Promise((resolve) => {
    const off = instance.onChange(() => {
      if (!predicate(instance)) return;
      off();
      resolve();
    });
  });
}
