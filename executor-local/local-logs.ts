import type { LogsOptions, TaskLogLine } from "../sdk/executor.js";
import { LineSplitter, STREAM_NAMES, type StreamIndex } from "../sdk/log-lines.js";
import { type KeptLine, LogWindow } from "../sdk/log-window.js";
import type { OutputSink } from "../sdk/output-capture.js";

/** One instance's output in memory. */
class InstanceLog {
  readonly window: LogWindow;
  readonly splitters: readonly [LineSplitter, LineSplitter] = [new LineSplitter(), new LineSplitter()];
  readonly wakers = new Set<() => void>();

  constructor(limitBytes: number) {
    this.window = new LogWindow(limitBytes);
  }

  wake(): void {
    for (const wake of this.wakers) wake();
  }
}

/**
 * The local executor's logs: each instance's console output, attributed by the task controller
 * of the async context that wrote it (two instances running at once each get their own), kept in
 * memory within a budget per instance, and written through to the terminal as well.
 * An instance that prints nothing costs nothing here.
 */
export class LocalLogs implements OutputSink {
  readonly #limitBytes: number;
  readonly #logs = new Map<string, InstanceLog>();

  constructor(limitBytes: number) {
    this.#limitBytes = limitBytes;
  }

  write(instanceId: string, stream: StreamIndex, text: string): boolean {
    const log = this.#log(instanceId);
    const lines: string[] = [];
    log.splitters[stream].push(text, lines);
    if (lines.length > 0) {
      const at = Date.now();
      for (const line of lines) log.window.add(at, stream, line);
      log.wake();
    }
    return true;
  }

  /** The instance ended: a last line without a line break is a line now. */
  end(instanceId: string): void {
    const log = this.#logs.get(instanceId);
    if (log === undefined) return;
    const at = Date.now();
    for (const stream of [0, 1] as const) {
      const lines: string[] = [];
      log.splitters[stream].end(lines);
      for (const line of lines) log.window.add(at, stream, line);
    }
    log.wake();
  }

  /**
   * What is kept of `instanceId`'s output; with `follow`, then each new line until `watchEnd`
   * reports the instance's end (it gets the callback and returns how to stop watching).
   */
  async *read(
    instanceId: string,
    options: LogsOptions,
    watchEnd: (onEnd: () => void) => () => void,
  ): AsyncGenerator<TaskLogLine, void> {
    const { follow = false, tail, signal } = options;
    signal?.throwIfAborted();
    const log = this.#log(instanceId);
    let ended = false;
    let wake: (() => void) | undefined;
    const poke = () => wake?.();
    log.wakers.add(poke);
    signal?.addEventListener("abort", poke);
    const unwatch = follow
      ? watchEnd(() => {
          this.end(instanceId);
          ended = true;
          poke();
        })
      : undefined;
    try {
      let after = log.window.lastSeq;
      let lines = log.window.since(0);
      if (tail !== undefined) lines = lines.slice(Math.max(0, lines.length - tail));
      for (const line of lines) yield toLogLine(line);
      while (follow) {
        signal?.throwIfAborted();
        const next = log.window.since(after);
        if (next.length > 0) {
          after = log.window.lastSeq;
          for (const line of next) yield toLogLine(line);
          continue;
        }
        if (ended) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      log.wakers.delete(poke);
      signal?.removeEventListener("abort", poke);
      unwatch?.();
    }
  }

  #log(instanceId: string): InstanceLog {
    let log = this.#logs.get(instanceId);
    if (log === undefined) {
      log = new InstanceLog(this.#limitBytes);
      this.#logs.set(instanceId, log);
    }
    return log;
  }
}

export function toLogLine(line: KeptLine): TaskLogLine {
  return { at: new Date(line.at), stream: STREAM_NAMES[line.stream], line: line.line };
}
