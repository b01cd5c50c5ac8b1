import { format } from "node:util";
import type { StreamIndex } from "./log-lines.js";
import { currentTaskController } from "./task-controller.js";

/** Where a task's console output goes: an executor that keeps logs (set on its controller). */
export interface OutputSink {
  /**
   * Text a task wrote to stdout (0) or stderr (1) from its async context. Returns whether the
   * text also goes to the process's own stream.
   */
  write(instanceId: string, stream: StreamIndex, text: string): boolean;
}

const INSTALLED = Symbol.for("numerous-tasks.output-capture");

/** The console methods that write a formatted line, and their stream. */
const CONSOLE_METHODS = { log: 0, info: 0, debug: 0, warn: 1, error: 1 } as const;

/** Set while a captured write is passed on, so the layer below does not take it a second time. */
let passing = false;

/**
 * Attributes console output to the task that wrote it, once per process (every copy of the SDK
 * shares it): `process.stdout.write`, `process.stderr.write` and the console's line methods
 * (for runtimes that replace the console, such as test runners) look up the task controller of
 * the async context that writes; when it has an output sink, the text goes there, tagged with the
 * instance. Output outside a task, or of a task whose executor keeps no logs, is untouched.
 */
export function installOutputCapture(): void {
  const global = globalThis as Record<symbol, unknown>;
  if (global[INSTALLED] === true) return;
  global[INSTALLED] = true;
  wrapStream(process.stdout, 0);
  wrapStream(process.stderr, 1);
  const console = globalThis.console as unknown as Record<string, (...args: unknown[]) => void>;
  for (const [name, stream] of Object.entries(CONSOLE_METHODS)) {
    const original = console[name];
    if (typeof original !== "function") continue;
    console[name] = function (this: unknown, ...args: unknown[]): void {
      const target = sinkOf();
      if (passing || target === undefined) {
        original.apply(this, args);
        return;
      }
      if (!target.sink.write(target.instanceId, stream, `${format(...args)}\n`)) return;
      passing = true;
      try {
        original.apply(this, args);
      } finally {
        passing = false;
      }
    };
  }
}

function sinkOf(): { sink: OutputSink; instanceId: string } | undefined {
  // Duck-typed: a controller of another copy of the SDK has the same field.
  const controller = currentTaskController() as { instanceId: string; outputSink?: OutputSink } | undefined;
  const sink = controller?.outputSink;
  return sink === undefined
    ? undefined
    : { sink, instanceId: (controller as { instanceId: string }).instanceId };
}

function wrapStream(stream: NodeJS.WriteStream, index: StreamIndex): void {
  const original = stream.write;
  stream.write = function (this: NodeJS.WriteStream, ...args: unknown[]): boolean {
    const target = passing ? undefined : sinkOf();
    if (target === undefined) return (original as (...a: unknown[]) => boolean).apply(this, args);
    const [chunk, encoding] = args;
    const text = textOf(chunk, encoding);
    let pass: boolean;
    passing = true;
    try {
      pass = target.sink.write(target.instanceId, index, text);
      if (pass) return (original as (...a: unknown[]) => boolean).apply(this, args);
    } finally {
      passing = false;
    }
    // Taken, not written: the caller's callback still runs, as after a write.
    const callback = args.find((arg) => typeof arg === "function") as (() => void) | undefined;
    if (callback !== undefined) process.nextTick(callback);
    return true;
  } as typeof stream.write;
}

function textOf(chunk: unknown, encoding: unknown): string {
  if (typeof chunk === "string") {
    if (typeof encoding !== "string" || /^utf-?8$/i.test(encoding)) return chunk;
    return Buffer.from(chunk, encoding as BufferEncoding).toString("utf8");
  }
  const bytes = chunk as Uint8Array;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
}
