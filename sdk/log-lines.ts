/**
 * Console output as lines, for every executor that keeps logs: cutting written text into lines,
 * and the line that stands where output was dropped.
 */

/** The budget of kept output per instance when none is given: 1 MiB. */
export const DEFAULT_LOG_BYTES = 1024 * 1024;

/** A longer line is cut into pieces this long: one line never outgrows a message or the budget. */
export const MAX_LINE_CHARS = 16 * 1024;

/** Which stream a line came from, as the wire and the stores number them: 0 stdout, 1 stderr. */
export type StreamIndex = 0 | 1;

export const STREAM_NAMES = ["stdout", "stderr"] as const;

/** How many bytes a line counts against the budget: its UTF-8 bytes and its line break. */
export function lineBytes(line: string): number {
  return Buffer.byteLength(line, "utf8") + 1;
}

/** Cuts one stream's text into lines, holding an unfinished last line until it ends. */
export class LineSplitter {
  #partial = "";

  /** Adds the complete lines `text` finishes to `out` (without line breaks, and `\r\n` as `\n`). */
  push(text: string, out: string[]): void {
    let start = 0;
    for (;;) {
      const end = text.indexOf("\n", start);
      if (end < 0) break;
      let line = text.slice(start, end);
      if (this.#partial !== "") {
        line = this.#partial + line;
        this.#partial = "";
      }
      cut(line.endsWith("\r") ? line.slice(0, -1) : line, out);
      start = end + 1;
    }
    if (start < text.length) {
      this.#partial += start === 0 ? text : text.slice(start);
      if (this.#partial.length > MAX_LINE_CHARS) {
        const whole = this.#partial.length - (this.#partial.length % MAX_LINE_CHARS);
        cut(this.#partial.slice(0, whole), out);
        this.#partial = this.#partial.slice(whole);
      }
    }
  }

  /** Adds the unfinished last line, if any, to `out`: the stream has ended (or its writer has). */
  end(out: string[]): void {
    if (this.#partial === "") return;
    cut(this.#partial, out);
    this.#partial = "";
  }
}

function cut(line: string, out: string[]): void {
  if (line.length <= MAX_LINE_CHARS) {
    out.push(line);
    return;
  }
  for (let i = 0; i < line.length; i += MAX_LINE_CHARS) out.push(line.slice(i, i + MAX_LINE_CHARS));
}

/** The line that stands where `lines` lines (`bytes` bytes, when known) of output were not kept. */
export function droppedLine(lines: number, bytes?: number): string {
  const size = bytes === undefined || bytes <= 0 ? "" : ` (${formatBytes(bytes)})`;
  return `[numerous-tasks] … ${lines} line${lines === 1 ? "" : "s"}${size} of output not kept here: an instance keeps the first and the most recent part of its output …`;
}

/** 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 10 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}
