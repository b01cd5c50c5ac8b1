/**
 * Waiting with a deadline that fails with a message. A test waits for an event; when the event
 * never comes (a broken build), the test fails here, naming what it waited for, well before
 * vitest's own timeout would end it with no word of why.
 */

/** The default wait: well inside vitest's 30 s test timeout (vitest.config.ts). */
export const DEFAULT_DEADLINE_MS = 20_000;

/**
 * Resolves or rejects as `promise` does; rejects with "timed out after N ms waiting for `what`"
 * when it has not settled by then. `detail`, when given, adds the state worth knowing then.
 */
export function withDeadline<T>(
  promise: Promise<T>,
  what: string,
  timeoutMs: number = DEFAULT_DEADLINE_MS,
  detail?: () => string,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      const extra = detail === undefined ? "" : ` (${detail()})`;
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}${extra}`));
    }, timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/**
 * Resolves once `condition()` holds, checked now and every `everyMs`, for conditions that no
 * event announces (a process of someone else's exiting); rejects at the deadline.
 */
export function pollUntil(
  condition: () => boolean,
  what: string,
  timeoutMs: number = DEFAULT_DEADLINE_MS,
  everyMs = 20,
): Promise<void> {
  if (condition()) return Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const met = new Promise<void>((resolve) => {
    timer = setInterval(() => {
      if (!condition()) return;
      clearInterval(timer);
      resolve();
    }, everyMs);
  });
  return withDeadline(met, what, timeoutMs).finally(() => clearInterval(timer));
}
