import { droppedLine, lineBytes, type StreamIndex } from "./log-lines.js";

/** A line as a log keeps it. */
export interface KeptLine {
  /**
   * 1 for the first line added, then one more per line, dropped ones included: a reader that
   * saw up to `seq` asks for what came after, and learns how many it missed.
   */
  readonly seq: number;
  /** Epoch milliseconds. */
  readonly at: number;
  readonly stream: StreamIndex;
  readonly line: string;
  /** What it counts against the budget (0 for the line that says what was dropped). */
  readonly bytes: number;
}

/** The share of the budget that keeps the first lines; the rest keeps the most recent ones. */
export const HEAD_SHARE = 0.25;

/**
 * One instance's output, bounded by a budget of bytes: its first lines, up to a quarter of the
 * budget, as they came (they say what the task set out to do, and its first error); then the
 * most recent lines, up to the rest (what it does now, and how it ended). Lines that fall out
 * between are counted, and a reader sees one line in their place saying how many.
 */
export class LogWindow {
  readonly headLimit: number;
  readonly tailLimit: number;
  readonly #head: KeptLine[] = [];
  #headBytes = 0;
  #headOpen = true;
  /** The recent part, as a queue: lines from #tailStart on are kept. */
  #tail: KeptLine[] = [];
  #tailStart = 0;
  #tailBytes = 0;
  #seq = 0;
  /** Lines (and their bytes) that fell out between the first part and the recent part. */
  droppedLines = 0;
  droppedBytes = 0;
  /** When a line last fell out (epoch ms): the time of the line that says so. */
  lastDropAt = 0;

  constructor(limitBytes: number) {
    this.headLimit = Math.floor(limitBytes * HEAD_SHARE);
    this.tailLimit = limitBytes - this.headLimit;
  }

  /** The seq of the last line added (or skipped). */
  get lastSeq(): number {
    return this.#seq;
  }

  /** Adds a line; older recent lines fall out while the recent part is over its share. */
  add(at: number, stream: StreamIndex, line: string, bytes = lineBytes(line)): KeptLine {
    const kept: KeptLine = { seq: ++this.#seq, at, stream, line, bytes };
    if (this.#headOpen && this.#headBytes + bytes <= this.headLimit) {
      this.#head.push(kept);
      this.#headBytes += bytes;
      return kept;
    }
    this.#headOpen = false;
    this.#tail.push(kept);
    this.#tailBytes += bytes;
    while (this.#tailBytes > this.tailLimit && this.#tailStart < this.#tail.length) {
      const old = this.#tail[this.#tailStart++] as KeptLine;
      this.#tailBytes -= old.bytes;
      this.droppedLines++;
      this.droppedBytes += old.bytes;
      this.lastDropAt = at;
    }
    if (this.#tailStart > 1024 && this.#tailStart * 2 > this.#tail.length) {
      this.#tail = this.#tail.slice(this.#tailStart);
      this.#tailStart = 0;
    }
    return kept;
  }

  /** Counts `lines` lines of `bytes` bytes that were dropped before they got here (by a workload). */
  skip(lines: number, bytes: number, at: number): void {
    if (lines <= 0) return;
    this.#seq += lines;
    this.#headOpen = false;
    this.droppedLines += lines;
    this.droppedBytes += bytes;
    this.lastDropAt = at;
  }

  /** The kept lines after `after` in the first part, and in the recent part. */
  newSince(after: number): { readonly head: KeptLine[]; readonly tail: KeptLine[] } {
    const head: KeptLine[] = [];
    for (const line of this.#head) if (line.seq > after) head.push(line);
    const tail: KeptLine[] = [];
    for (let i = this.#tailStart; i < this.#tail.length; i++) {
      const line = this.#tail[i] as KeptLine;
      if (line.seq > after) tail.push(line);
    }
    return { head, tail };
  }

  /**
   * What a reader that saw everything up to `after` (0: nothing) reads next, in order: kept
   * lines, and where lines it never saw fell out, one line (with the seq of the last one missed) saying how many.
   */
  since(after: number): KeptLine[] {
    const { head, tail } = this.newSince(after);
    const lastHeadSeq = this.#head.at(-1)?.seq ?? 0;
    const gapStart = Math.max(after, lastHeadSeq) + 1;
    const gapEnd = (this.#tail[this.#tailStart] as KeptLine | undefined)?.seq ?? this.#seq + 1;
    if (this.droppedLines > 0 && gapEnd > gapStart) {
      const whole = after <= lastHeadSeq;
      head.push({
        seq: gapEnd - 1,
        at: this.lastDropAt,
        stream: 1,
        line: whole ? droppedLine(this.droppedLines, this.droppedBytes) : droppedLine(gapEnd - gapStart),
        bytes: 0,
      });
    }
    for (const line of tail) head.push(line);
    return head;
  }
}
