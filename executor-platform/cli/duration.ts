const UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * Milliseconds of a duration as people write it: `500ms`, `30s`, `15m`, `12h`, `7d`, `2w`, a
 * sum of those (`1h30m`), or a plain number of milliseconds.
 * @throws {Error} naming the accepted forms, for anything else.
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let end = 0;
  for (let match = part.exec(trimmed); match !== null; match = part.exec(trimmed)) {
    total += Number(match[1]) * (UNITS[match[2] as string] as number);
    end = part.lastIndex;
  }
  if (trimmed === "" || end !== trimmed.length) {
    throw new Error(
      `${JSON.stringify(text)} is not a duration: write e.g. 500ms, 30s, 15m, 12h, 7d, 1h30m, or milliseconds`,
    );
  }
  return total;
}
