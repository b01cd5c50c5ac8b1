import { StringDecoder } from "node:string_decoder";
import type { Logger } from "pino";
import { LineSplitter, type StreamIndex, droppedLine, lineBytes } from "../../sdk/log-lines.js";
import { type KeptLine, LogWindow } from "../../sdk/log-window.js";
import { isTerminalStatus } from "../../sdk/task-status.js";
import type { Store, StoredInstance, StoredLogChunk } from "../store/store.js";
import { RetryPause } from "../retry-pause.js";

export interface LogKeeperOptions {
  readonly store: Store;
  readonly log: Logger;
  /** Output kept per instance, in bytes; 0 keeps none. */
  readonly limitBytes: number;
  /**
   * Several daemons share the store: each instance's log ends with an {@link END_OF_LOG} chunk,
   * so a reader on another daemon knows when the last of it is written.
   */
  readonly markEnds?: boolean;
}

/**
 * The line count of the chunk written after an instance's last output, when daemons share the
 * store: a reader elsewhere waits for it rather than guess how long that write takes.
 */
export const END_OF_LOG = -1;

/** A line as a workload sends it. */
export interface SentLine {
  readonly atMs: number;
  readonly stream: StreamIndex;
  readonly line: string;
}

/** How often what was printed is written. */
const FLUSH_MS = 100;
/** How often an instance that prints more than its recent part holds is written: the rest is dropped anyway. */
const FLOOD_FLUSH_MS = 1000;
/** A chunk holds about this much text at most, so one chunk always fits in a message. */
const MAX_CHUNK_CHARS = 256 * 1024;
const RETRY_MS = 500;

/** A stored chunk of the recent part: deleted, oldest first, when the recent part outgrows its share. */
interface TailChunk {
  chunk: number;
  lines: number;
  bytes: number;
}

/** One write of the store's, being put together. */
interface WriteBuffer {
  readonly append: Array<Omit<StoredLogChunk, "chunk">>;
  readonly rewrite: Array<Omit<StoredLogChunk, "instanceId">>;
  readonly remove: number[];
}

/** What one write does for one instance; applied to its log once the write is stored. */
interface Plan {
  readonly instanceId: string;
  readonly log: OpenLog;
  readonly upTo: number;
  readonly headLines: number;
  readonly headBytes: number;
  /** New tail chunks, in order, and where their numbers come in the write's appended list. */
  readonly tail: Array<{ index: number; lines: number; bytes: number }>;
  readonly markerIndex: number | undefined;
  readonly removed: number;
  readonly marker: string | undefined;
  /** This write ends the log with its {@link END_OF_LOG} chunk. */
  ends: boolean;
}

/** An instance's output while this daemon may still add to it. */
class OpenLog {
  readonly window: LogWindow;
  readonly decoders = [new StringDecoder("utf8"), new StringDecoder("utf8")] as const;
  readonly splitters = [new LineSplitter(), new LineSplitter()] as const;
  /** Every line added (and skipped) counts here, kept or not. */
  totalBytes = 0;
  /** Lines up to this seq are written (or were dropped before they could be). */
  writtenSeq = 0;
  headLines = 0;
  headBytes = 0;
  /** The chunk between the first and the recent part that says what was dropped; 0: none yet. */
  markerChunk = 0;
  markerText = "";
  readonly tail: TailChunk[] = [];
  tailBytes = 0;
  tailLines = 0;
  /** Not written again before this time: it printed more than it keeps. */
  holdUntil = 0;
  closing = false;
  /** Its {@link END_OF_LOG} chunk is written. */
  ended = false;
  readonly closed: Promise<void>;
  resolveClosed: () => void = () => {};

  constructor(limitBytes: number) {
    this.window = new LogWindow(limitBytes);
    this.closed = new Promise<void>((resolve) => {
      this.resolveClosed = resolve;
    });
  }
}

/**
 * Every instance's stdout and stderr on their way to the store: lines from a process-mode
 * workload's pipes and from pool workers' Log messages go into a bounded window per instance
 * (the first quarter of the budget, then the most recent rest), and a write every 100 ms appends
 * them as chunks. The first part is written once; the recent part's oldest chunks are deleted as
 * it outgrows its share, and one chunk between them says how much fell out. An instance that
 * prints faster than its recent part holds is written once a second: what the write in between
 * would have kept would be deleted by the next one anyway. Followers are woken after each write.
 */
export class LogKeeper {
  readonly #o: LogKeeperOptions;
  readonly #open = new Map<string, OpenLog>();
  readonly #followers = new Map<string, Set<() => void>>();
  #timer: NodeJS.Timeout | undefined;
  /** After a failed write, nothing is written until its pause is over (the store is likely away). */
  readonly #retry: RetryPause;
  #writing: Promise<void> | undefined;
  #stopped = false;

  constructor(options: LogKeeperOptions) {
    this.#o = options;
    this.#retry = new RetryPause({
      firstMs: RETRY_MS,
      maxMs: RETRY_MS,
      onFirstFailure: (error) => options.log.error({ err: error }, "writing task logs failed; retrying"),
      onRecovered: (failedWrites) => options.log.info({ failedWrites }, "task logs are written again"),
    });
  }

  /** Whether output is kept at all. */
  get enabled(): boolean {
    return this.#o.limitBytes > 0;
  }

  /** Bytes from a process-mode workload's stdout (0) or stderr (1). */
  pipe(instanceId: string, stream: StreamIndex, bytes: Buffer): void {
    const log = this.#log(instanceId);
    if (log === undefined) return;
    const lines: string[] = [];
    log.splitters[stream].push(log.decoders[stream].write(bytes), lines);
    this.#add(log, Date.now(), stream, lines);
  }

  /** Lines a pool worker sent, after `droppedLines` lines of `droppedBytes` it dropped itself. */
  append(instanceId: string, lines: readonly SentLine[], droppedLines: number, droppedBytes: number): void {
    const log = this.#log(instanceId);
    if (log === undefined) return;
    const now = Date.now();
    if (droppedLines > 0) {
      log.window.skip(droppedLines, droppedBytes, now);
      log.totalBytes += droppedBytes;
    }
    for (const { atMs, stream, line } of lines) {
      const kept = log.window.add(atMs || now, stream, line);
      log.totalBytes += kept.bytes;
    }
    this.#schedule();
  }

  /**
   * Nothing more comes for this instance from here (its workload is gone, or a pool worker ended
   * it): an unfinished last line becomes a line, and the log is written and let go.
   */
  close(instanceId: string): void {
    const log = this.#o.markEnds === true ? this.#log(instanceId) : this.#open.get(instanceId);
    if (log === undefined || log.closing) return;
    log.closing = true;
    for (const stream of [0, 1] as const) {
      const lines: string[] = [];
      log.splitters[stream].push(log.decoders[stream].end(), lines);
      log.splitters[stream].end(lines);
      this.#add(log, Date.now(), stream, lines);
    }
    this.#schedule(0);
  }

  /** Whether this daemon may still write output of the instance. */
  isOpen(instanceId: string): boolean {
    return this.#open.has(instanceId);
  }

  /** Resolves once the instance's log here is closed and written (at once when it is not open). */
  closed(instanceId: string): Promise<void> {
    return this.#open.get(instanceId)?.closed ?? Promise.resolve();
  }

  /** Calls `wake` after each write of the instance's output, when it closes, and when it ends. */
  follow(instanceId: string, wake: () => void): () => void {
    let wakes = this.#followers.get(instanceId);
    if (wakes === undefined) {
      wakes = new Set();
      this.#followers.set(instanceId, wakes);
    }
    wakes.add(wake);
    return () => {
      wakes.delete(wake);
      if (wakes.size === 0) this.#followers.delete(instanceId);
    };
  }

  /** Rows as saved: followers of instances that ended learn it. */
  saved(rows: readonly StoredInstance[]): void {
    if (this.#followers.size === 0) return;
    for (const row of rows) if (isTerminalStatus(row.status)) this.#wake(row.id);
  }

  /** Writes everything printed so far (held floods included). */
  async flush(): Promise<void> {
    while (this.#writing !== undefined) await this.#writing;
    await this.#write(true);
  }

  /** At shutdown, after the last flush: nothing more is written, and followers are let go. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#retry.close();
    for (const instanceId of [...this.#followers.keys()]) this.#wake(instanceId);
  }

  /** The daemon is shutting down: followers end, and resume on the next daemon. */
  get stopped(): boolean {
    return this.#stopped;
  }

  #log(instanceId: string): OpenLog | undefined {
    if (!this.enabled || this.#stopped) return undefined;
    let log = this.#open.get(instanceId);
    if (log === undefined) {
      log = new OpenLog(this.#o.limitBytes);
      this.#open.set(instanceId, log);
    }
    return log;
  }

  #add(log: OpenLog, at: number, stream: StreamIndex, lines: readonly string[]): void {
    for (const line of lines) {
      const bytes = lineBytes(line);
      log.window.add(at, stream, line, bytes);
      log.totalBytes += bytes;
    }
    this.#schedule();
  }

  #schedule(delay = FLUSH_MS): void {
    if (this.#stopped || this.#retry.waiting) return;
    if (this.#timer !== undefined) {
      if (delay > 0) return;
      clearTimeout(this.#timer);
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#writing === undefined) void this.#write(false);
      else void this.#writing.then(() => this.#schedule(0));
    }, delay);
  }

  async #write(all: boolean): Promise<void> {
    const now = Date.now();
    const write: WriteBuffer = { append: [], rewrite: [], remove: [] };
    const plans: Plan[] = [];
    let held = false;
    for (const [instanceId, log] of this.#open) {
      if (!all && !log.closing && log.holdUntil > now) {
        held = true;
        continue;
      }
      let plan = planWrite(instanceId, log, write, now);
      if (log.closing && this.#o.markEnds === true && !log.ended) {
        plan ??= unchanged(instanceId, log);
        plan.ends = true;
        write.append.push({ instanceId, lines: "[]", lineCount: END_OF_LOG });
      }
      if (plan !== undefined) plans.push(plan);
      else if (log.closing) this.#let(instanceId, log);
    }
    if (plans.length === 0) {
      if (held) this.#schedule();
      return;
    }
    let written: () => void = () => {};
    this.#writing = new Promise<void>((resolve) => {
      written = resolve;
    });
    try {
      const chunks = await this.#o.store.writeLogs(write);
      for (const plan of plans) {
        apply(plan, chunks);
        if (plan.ends) plan.log.ended = true;
        const { instanceId, log } = plan;
        this.#wake(instanceId);
        if (log.closing && log.writtenSeq >= log.window.lastSeq) this.#let(instanceId, log);
      }
      this.#retry.succeeded();
    } catch (error) {
      this.#retry.failed(error, () => this.#schedule(0));
    } finally {
      this.#writing = undefined;
      written();
    }
    for (const log of this.#open.values()) {
      if (log.writtenSeq < log.window.lastSeq) {
        this.#schedule(log.closing ? 0 : Math.max(FLUSH_MS, log.holdUntil - Date.now()));
      }
    }
  }

  #let(instanceId: string, log: OpenLog): void {
    this.#open.delete(instanceId);
    log.resolveClosed();
    this.#wake(instanceId);
  }

  #wake(instanceId: string): void {
    const wakes = this.#followers.get(instanceId);
    if (wakes !== undefined) for (const wake of [...wakes]) wake();
  }
}

/** Adds what `log` has that is not written yet to `write`; undefined when it has nothing new. */
function planWrite(instanceId: string, log: OpenLog, write: WriteBuffer, now: number): Plan | undefined {
  const upTo = log.window.lastSeq;
  if (upTo <= log.writtenSeq) return undefined;
  const { head, tail } = log.window.newSince(log.writtenSeq);
  const { append } = write;
  for (const piece of pieces(head))
    append.push({ instanceId, lines: encodeLines(piece), lineCount: piece.length });
  const headLines = log.headLines + head.length;
  let headBytes = log.headBytes;
  for (const line of head) headBytes += line.bytes;
  // The first part is over once a line went past it: the chunk saying what falls out goes here,
  // after the first part and before any of the recent part.
  let markerIndex: number | undefined;
  if (log.markerChunk === 0 && upTo > headLines) {
    markerIndex = append.length;
    append.push({ instanceId, lines: "[]", lineCount: 0 });
  }
  const tailPlan: Plan["tail"] = [];
  let newTailBytes = 0;
  let newTailLines = 0;
  for (const piece of pieces(tail)) {
    let bytes = 0;
    for (const line of piece) bytes += line.bytes;
    tailPlan.push({ index: append.length, lines: piece.length, bytes });
    append.push({ instanceId, lines: encodeLines(piece), lineCount: piece.length });
    newTailBytes += bytes;
    newTailLines += piece.length;
  }
  // The recent part keeps its share: the oldest stored chunks go.
  let keptBytes = log.tailBytes + newTailBytes;
  let keptLines = log.tailLines + newTailLines;
  let removed = 0;
  while (keptBytes > log.window.tailLimit && removed < log.tail.length) {
    const old = log.tail[removed] as TailChunk;
    write.remove.push(old.chunk);
    keptBytes -= old.bytes;
    keptLines -= old.lines;
    removed++;
  }
  // What is in neither part fell out; the marker says so.
  const droppedLines = upTo - headLines - keptLines;
  const droppedBytes = log.totalBytes - headBytes - keptBytes;
  const marker =
    droppedLines > 0
      ? encodeLines([{ seq: 0, at: now, stream: 1, line: droppedLine(droppedLines, droppedBytes), bytes: 0 }])
      : "[]";
  if (markerIndex !== undefined) {
    append[markerIndex] = { instanceId, lines: marker, lineCount: droppedLines > 0 ? 1 : 0 };
  } else if (log.markerChunk !== 0 && marker !== log.markerText) {
    write.rewrite.push({ chunk: log.markerChunk, lines: marker, lineCount: droppedLines > 0 ? 1 : 0 });
  }
  // Lines fell out before they were ever written: it prints more than it keeps, so writing it
  // more often than once a second would only write what the next write deletes.
  const flooding =
    tail.length > 0 && (tail[0] as KeptLine).seq > Math.max(log.writtenSeq, head.at(-1)?.seq ?? 0) + 1;
  if (flooding) log.holdUntil = now + FLOOD_FLUSH_MS;
  return {
    instanceId,
    log,
    upTo,
    headLines,
    headBytes,
    tail: tailPlan,
    markerIndex,
    removed,
    marker,
    ends: false,
  };
}

/** A plan that writes nothing new of `log` (but may end it). */
function unchanged(instanceId: string, log: OpenLog): Plan {
  return {
    instanceId,
    log,
    upTo: log.writtenSeq,
    headLines: log.headLines,
    headBytes: log.headBytes,
    tail: [],
    markerIndex: undefined,
    removed: 0,
    marker: undefined,
    ends: false,
  };
}

/** Records a stored plan in its log. */
function apply(plan: Plan, chunks: readonly number[]): void {
  const { log } = plan;
  log.writtenSeq = Math.max(log.writtenSeq, plan.upTo);
  log.headLines = plan.headLines;
  log.headBytes = plan.headBytes;
  for (const old of log.tail.splice(0, plan.removed)) {
    log.tailBytes -= old.bytes;
    log.tailLines -= old.lines;
  }
  for (const piece of plan.tail) {
    log.tail.push({ chunk: chunks[piece.index] as number, lines: piece.lines, bytes: piece.bytes });
    log.tailBytes += piece.bytes;
    log.tailLines += piece.lines;
  }
  if (plan.markerIndex !== undefined) log.markerChunk = chunks[plan.markerIndex] as number;
  if (plan.marker !== undefined) log.markerText = plan.marker;
}

/** Lines cut into chunks of about {@link MAX_CHUNK_CHARS} at most. */
function pieces(lines: readonly KeptLine[]): KeptLine[][] {
  const out: KeptLine[][] = [];
  let piece: KeptLine[] = [];
  let chars = 0;
  for (const line of lines) {
    if (piece.length > 0 && chars + line.line.length > MAX_CHUNK_CHARS) {
      out.push(piece);
      piece = [];
      chars = 0;
    }
    piece.push(line);
    chars += line.line.length + 20;
  }
  if (piece.length > 0) out.push(piece);
  return out;
}

/** A chunk's text: `[[atMs, stream, line], ...]`. */
export function encodeLines(lines: readonly KeptLine[]): string {
  return JSON.stringify(lines.map((line) => [line.at, line.stream, line.line]));
}
