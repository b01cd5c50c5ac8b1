/**
 * The pause before trying again after `failures` failures in a row: `firstMs` after the first,
 * doubling with each, never more than `maxMs`. Every retry loop of the daemon, its stores and
 * the client waits this way, so an outage is met with a growing pause, never a busy loop.
 */
export function doublingDelay(failures: number, firstMs: number, maxMs: number): number {
  return Math.min(maxMs, firstMs * 2 ** Math.min(30, Math.max(0, failures - 1)));
}
