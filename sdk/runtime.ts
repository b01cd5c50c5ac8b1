import type { Executor } from "./executor.js";

let current: Executor | undefined;
let factory: (() => Executor) | undefined;

/**
 * Replaces the executor chosen from the environment: for tests and custom executors.
 * The previous executor is returned, not closed.
 */
export function setExecutor(executor: Executor): Executor | undefined {
  const previous = current;
  current = executor;
  return previous;
}

/** @internal How the package entry point builds the default executor on first use. */
export function setDefaultExecutorFactory(make: () => Executor): void {
  factory = make;
}

/** The executor in use, built from the environment on first use. */
export function currentExecutor(): Executor {
  if (current === undefined) {
    if (factory === undefined) {
      throw new Error(
        "numerous-tasks: no executor; import from the package entry point or call setExecutor()",
      );
    }
    current = factory();
  }
  return current;
}
