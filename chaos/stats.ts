/** Percentiles of a sample, in the sample's unit. */
export interface Percentiles {
  readonly count: number;
  readonly p50: number | undefined;
  readonly p99: number | undefined;
  readonly max: number | undefined;
}

/** Nearest-rank percentiles. */
export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { count: 0, p50: undefined, p99: undefined, max: undefined };
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] as number;
  return { count: sorted.length, p50: rank(0.5), p99: rank(0.99), max: sorted.at(-1) };
}

/** Adds one to `bag[key]`. */
export function bump(bag: Record<string, number>, key: string, by = 1): void {
  bag[key] = (bag[key] ?? 0) + by;
}
