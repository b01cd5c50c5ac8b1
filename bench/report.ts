/**
 * The shape every benchmark section reports, and a plain-text printer for it. Sections are
 * independent: each one measures what it measures and returns rows; `bench/run.ts` prints them
 * and collects them into `bench/results.json`.
 */

/** One measured figure. */
export interface BenchRow {
  readonly name: string;
  /** The headline figure (usually the median of `samples`). */
  readonly value: number;
  /** `tasks/s`, `ns/call`, `B/instance`, `ms`, `x` (a ratio), … */
  readonly unit: string;
  /** What `value` is compared with, in the same unit, when there is a comparison. */
  readonly baseline?: number;
  /** `value / baseline`, or whatever ratio the goal is about. */
  readonly ratio?: number;
  /** The target, in words: `ratio >= 0.5`, `p99 <= 5 ms`. */
  readonly goal?: string;
  /** Whether the goal was met; absent when the row has no goal. */
  readonly pass?: boolean;
  /** Every repetition, in run order, when `value` summarises several. */
  readonly samples?: readonly number[];
}

/** One section of the report: one subject, measured in one run. */
export interface BenchSection {
  readonly title: string;
  readonly rows: readonly BenchRow[];
  /** Context worth printing under the rows (setup, caveats, findings). */
  readonly notes?: readonly string[];
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** A number for people: thousands separated, a sensible count of decimals. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const magnitude = Math.abs(value);
  const digits = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : magnitude >= 1 ? 2 : 3;
  return value.toLocaleString("en-US", { minimumFractionDigits: 0, maximumFractionDigits: digits });
}

/** The section as an aligned plain-text table. */
export function formatSection(section: BenchSection): string {
  const header = ["", "value", "unit", "baseline", "ratio", "goal", "", "samples"];
  const body = section.rows.map((row) => [
    row.name,
    formatNumber(row.value),
    row.unit,
    row.baseline === undefined ? "" : formatNumber(row.baseline),
    row.ratio === undefined ? "" : formatNumber(row.ratio),
    row.goal ?? "",
    row.pass === undefined ? "" : row.pass ? "PASS" : "MISS",
    row.samples === undefined ? "" : row.samples.map(formatNumber).join(" / "),
  ]);
  const table = [header, ...body];
  const used = header.map((_, column) => table.some((line, index) => index > 0 && line[column] !== ""));
  const widths = header.map((_, column) => Math.max(...table.map((line) => (line[column] ?? "").length)));
  const numeric = new Set([1, 3, 4]);
  const lines = table.map((line) =>
    line
      .map((cell, column) => {
        if (!used[column]) return undefined;
        const width = widths[column] as number;
        return numeric.has(column) ? cell.padStart(width) : cell.padEnd(width);
      })
      .filter((cell) => cell !== undefined)
      .join("  ")
      .trimEnd(),
  );
  const rule = "-".repeat(Math.max(section.title.length, ...lines.map((line) => line.length)));
  const out = [section.title, rule, ...lines];
  if (section.notes !== undefined && section.notes.length > 0) {
    out.push("", ...section.notes.map((note) => `  * ${note}`));
  }
  return out.join("\n");
}

/** Prints the section to stdout, followed by a blank line. */
export function printSection(section: BenchSection): void {
  process.stdout.write(`${formatSection(section)}\n\n`);
}
