import { LineSplitter, type StreamIndex, lineBytes } from "../../sdk/log-lines.js";
import { HEAD_SHARE } from "../../sdk/log-window.js";
import type { OutputSink } from "../../sdk/output-capture.js";
import type { LogLine, WorkloadMessage } from "../protocol/generated/messages/numerous/tasks/v1/tasks_pb.js";
import { logStreamToWire } from "../protocol/wire.js";

/** How often output is sent. */
const SEND_MS = 50;
/** How often output of a task that prints more than is kept is sent: the rest would be dropped anyway. */
const FLOOD_SEND_MS = 1000;
/** Lines per Log message at most, by size. */
const MESSAGE_CHARS = 256 * 1024;

interface Pending {
  readonly line: LogLine;
  readonly bytes: number;
}

/** One instance's output not sent yet. */
class InstanceOutput {
  readonly splitters = [new LineSplitter(), new LineSplitter()] as const;
  headLeft: number;
  /** Lines of the first part not sent yet. */
  head: LogLine[] = [];
  /** Lines of the recent part not sent yet: those from `first` on. */
  tail: Pending[] = [];
  first = 0;
  tailBytes = 0;
  /** Lines dropped before the first pending line of the recent part. */
  droppedLines = 0;
  droppedBytes = 0;
  holdUntil = 0;
  ended = false;

  constructor(headBytes: number) {
    this.headLeft = headBytes;
  }

  get waiting(): boolean {
    return this.head.length > 0 || this.first < this.tail.length || this.droppedLines > 0;
  }
}

/**
 * A pool worker's task output on its way to the daemon: each write in a task's async context
 * (see installOutputCapture) is cut into lines for its instance, kept as the daemon keeps them
 * (the first quarter of the budget, then the most recent rest, counting what falls out between),
 * and sent in Log messages every 50 ms, so a chatty task does not flood the daemon; a task that
 * prints more than is kept is sent once a second. An instance's last lines go before its end.
 */
export class WorkloadOutput implements OutputSink {
  readonly #headBytes: number;
  readonly #tailBytes: number;
  readonly #send: (message: WorkloadMessage) => void;
  readonly #connected: () => boolean;
  readonly #outputs = new Map<string, InstanceOutput>();
  #timer: NodeJS.Timeout | undefined;

  /** `send` writes a message to the daemon, which it can while `connected()`. */
  constructor(limitBytes: number, send: (message: WorkloadMessage) => void, connected: () => boolean) {
    this.#headBytes = Math.floor(limitBytes * HEAD_SHARE);
    this.#tailBytes = limitBytes - this.#headBytes;
    this.#send = send;
    this.#connected = connected;
  }

  /** An instance starts here. */
  begin(instanceId: string): void {
    this.#outputs.set(instanceId, new InstanceOutput(this.#headBytes));
  }

  write(instanceId: string, stream: StreamIndex, text: string): boolean {
    const output = this.#outputs.get(instanceId);
    // After its end, output of a task's leftover timers is no instance's: the pipe takes it.
    if (output === undefined || output.ended) return true;
    const lines: string[] = [];
    output.splitters[stream].push(text, lines);
    this.#add(output, stream, lines);
    return false;
  }

  /** The instance ended: its last lines (an unfinished one too) are sent now, before its end. */
  end(instanceId: string): void {
    const output = this.#outputs.get(instanceId);
    if (output === undefined) return;
    for (const stream of [0, 1] as const) {
      const lines: string[] = [];
      output.splitters[stream].end(lines);
      this.#add(output, stream, lines);
    }
    output.ended = true;
    output.holdUntil = 0;
    this.#flushOne(instanceId, output);
  }

  /** Sends what waits, unless held (and all of it when `all`): after a reconnect, before the ends. */
  flush(all = false): void {
    const now = Date.now();
    for (const [instanceId, output] of this.#outputs) {
      if (all || output.holdUntil <= now) this.#flushOne(instanceId, output);
    }
    if ([...this.#outputs.values()].some((output) => output.waiting)) this.#schedule();
  }

  #add(output: InstanceOutput, stream: StreamIndex, lines: readonly string[]): void {
    if (lines.length === 0) return;
    const atMs = Date.now();
    const wire = logStreamToWire(stream);
    for (const text of lines) {
      const bytes = lineBytes(text);
      const line: LogLine = { atMs, stream: wire, line: text };
      if (output.tail.length === 0 && output.droppedLines === 0 && bytes <= output.headLeft) {
        output.headLeft -= bytes;
        output.head.push(line);
        continue;
      }
      output.headLeft = 0;
      output.tail.push({ line, bytes });
      output.tailBytes += bytes;
      while (output.tailBytes > this.#tailBytes && output.first < output.tail.length) {
        const old = output.tail[output.first++] as Pending;
        output.tailBytes -= old.bytes;
        output.droppedLines++;
        output.droppedBytes += old.bytes;
        output.holdUntil = atMs + FLOOD_SEND_MS;
      }
      if (output.first > 1024 && output.first * 2 > output.tail.length) {
        output.tail = output.tail.slice(output.first);
        output.first = 0;
      }
    }
    this.#schedule();
  }

  #flushOne(instanceId: string, output: InstanceOutput): void {
    if (!this.#connected()) return;
    for (const lines of messages(output.head)) this.#log(instanceId, lines, 0, 0);
    output.head = [];
    const recent = output.tail.slice(output.first).map((pending) => pending.line);
    let first = true;
    for (const lines of messages(recent)) {
      this.#log(instanceId, lines, first ? output.droppedLines : 0, first ? output.droppedBytes : 0);
      first = false;
    }
    if (first && output.droppedLines > 0) this.#log(instanceId, [], output.droppedLines, output.droppedBytes);
    output.tail = [];
    output.first = 0;
    output.tailBytes = 0;
    output.droppedLines = 0;
    output.droppedBytes = 0;
    if (output.ended) this.#outputs.delete(instanceId);
  }

  #log(instanceId: string, lines: LogLine[], droppedLines: number, droppedBytes: number): void {
    this.#send({ kind: { $case: "log", value: { instanceId, lines, droppedLines, droppedBytes } } });
  }

  #schedule(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, SEND_MS);
    // A worker with nothing else to do must not be kept alive by output waiting for a daemon.
    this.#timer.unref();
  }
}

/** Lines in groups that each make one message of a sensible size. */
function messages(lines: readonly LogLine[]): LogLine[][] {
  const out: LogLine[][] = [];
  let group: LogLine[] = [];
  let chars = 0;
  for (const line of lines) {
    if (group.length > 0 && chars + line.line.length > MESSAGE_CHARS) {
      out.push(group);
      group = [];
      chars = 0;
    }
    group.push(line);
    chars += line.line.length + 16;
  }
  if (group.length > 0) out.push(group);
  return out;
}
