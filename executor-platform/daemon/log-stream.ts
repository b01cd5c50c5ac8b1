import type { StreamIndex } from "../../sdk/log-lines.js";
import { isValidInstanceId } from "../../sdk/ids.js";
import { isTerminalStatus } from "../../sdk/task-status.js";
import type { Store, StoredLogChunk } from "../store/store.js";
import type { InstanceTable } from "./instance-table.js";
import { END_OF_LOG, type LogKeeper } from "./log-keeper.js";

export interface LogStreamOptions {
  readonly store: Store;
  readonly table: InstanceTable;
  readonly logs: LogKeeper;
  /** A message of lines stays well under this many bytes. */
  readonly maxMessageBytes: number;
  /** Several daemons share the store: an instance may print on another one. */
  readonly clustered: boolean;
}

/** What a reader asks of an instance's log. */
export interface LogStreamRequest {
  readonly id: string;
  /** Go on with each write of it until the instance has ended and its last output is written. */
  readonly follow: boolean;
  /** Only the last `tail` lines kept (when reading from the start). */
  readonly tail?: number | undefined;
  /** Resume after this cursor (one a message carried); 0: from the start. */
  readonly afterCursor: number;
}

/** A kept line as a log stream sends it. */
export interface StreamedLine {
  readonly atMs: number;
  readonly stream: StreamIndex;
  /** Without its line break. */
  readonly line: string;
}

/** Where a log stream's messages go: a gRPC StreamLogs call, or the console's event stream. */
export interface LogSink {
  /**
   * Sends one message of lines, with the cursor a reader resumes after; resolves once the
   * reader may take more (or has gone).
   */
  send(lines: readonly StreamedLine[], cursor: number): Promise<void>;
  /** Aborted when the reader goes away. */
  readonly signal: AbortSignal;
}

/**
 * How a log stream ended. `ended`: everything asked for was sent; `not-found`: the deployment has
 * no such instance (nothing was sent); `gone`: the reader went away; `shutting-down`: this daemon
 * is stopping, and a follower resumes from its cursor on the next one.
 */
export type LogStreamEnd = "ended" | "not-found" | "gone" | "shutting-down";

/** Resolves once `stream` drains (a sink's reader took what was buffered), or `signal` aborts. */
export function drained(stream: NodeJS.EventEmitter, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      stream.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    if (signal.aborted) return resolve();
    stream.once("drain", done);
    signal.addEventListener("abort", done);
  });
}

/** Chunks read from the store at a time. */
const PAGE = 16;
/** How long a read of an instance that has ended waits for the last of its output here. */
const CLOSE_WAIT_MS = 5_000;
/** A follower of an instance that runs on another daemon of a cluster reads the store this often. */
const REMOTE_READ_MS = 1_000;
/**
 * Once such an instance has ended, its log is read this often until that daemon's end-of-log
 * chunk is there (its workload's pipes may still hold the last lines)...
 */
const REMOTE_END_READ_MS = 100;
/** ...for this long at most: a daemon that died never writes it. */
const REMOTE_END_WAIT_MS = 5_000;

/**
 * Streams an instance's log, for `deployment`, to `sink`: what is kept of its output, from its
 * start, its last `tail` lines, or after a cursor; with `follow`, then each write of it, woken by
 * the log keeper (no polling, but for an instance that runs on another daemon of a cluster),
 * until the instance has ended and its last output is written. The one reading of logs behind
 * both the gRPC StreamLogs call and the console's event stream.
 */
export async function streamLogs(
  o: LogStreamOptions,
  request: LogStreamRequest,
  deployment: string,
  sink: LogSink,
): Promise<LogStreamEnd> {
  const { id, follow, tail, afterCursor } = request;
  const { signal } = sink;
  // An id no instance can have is not looked up (a NUL byte would make PostgreSQL fail).
  const row = isValidInstanceId(id) ? await o.table.latest(id) : undefined;
  if (row === undefined || row.deploymentId !== deployment) return "not-found";
  let wake: (() => void) | undefined;
  let woken = false;
  const poke = () => {
    woken = true;
    wake?.();
  };
  let lastWasEnd = false;
  signal.addEventListener("abort", poke);
  const unfollow = o.logs.follow(id, poke);
  const sleep = (ms: number | undefined) =>
    new Promise<void>((resolve) => {
      if (woken || signal.aborted) return resolve();
      const timer = ms === undefined ? undefined : setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    }).then(() => {
      wake = undefined;
      woken = false;
    });
  const send = async (lines: StreamedLine[], cursor: number) => {
    if (!signal.aborted) await sink.send(lines, cursor);
  };
  try {
    // What was printed up to now, its last lines included: an ended instance's output may
    // still be on its way from the pipes of a workload that is exiting.
    if (o.logs.isOpen(id)) {
      if (!follow && isTerminalStatus(row.status)) await within(o.logs.closed(id), CLOSE_WAIT_MS);
      await o.logs.flush();
    }
    let cursor = afterCursor;
    if (tail !== undefined && afterCursor === 0) cursor = await sendTail(o, id, tail, send, saw);
    let here = o.logs.isOpen(id) || o.table.get(id) !== undefined;
    let endBy: number | undefined;
    for (;;) {
      let ended = true;
      let started = row.startedAt !== undefined;
      if (follow || o.clustered) {
        const current = await o.table.latest(id);
        here ||= o.logs.isOpen(id) || o.table.get(id) !== undefined;
        ended = (current === undefined || isTerminalStatus(current.status)) && !o.logs.isOpen(id);
        started ||= current?.startedAt !== undefined;
      }
      cursor = await sendAfter(cursor);
      if (signal.aborted || (!follow && !ended)) break;
      if (ended) {
        // Written here, or by no workload at all: complete. Else it ran on another daemon of
        // the cluster, which ends its log with a chunk of its own once the last is written.
        if (here || !o.clustered || !started || lastWasEnd) break;
        endBy ??= Date.now() + REMOTE_END_WAIT_MS;
        if (Date.now() >= endBy) break;
      }
      // A follower's reader resumes from its cursor on the next daemon.
      if (o.logs.stopped) return "shutting-down";
      await sleep(here ? undefined : endBy !== undefined ? REMOTE_END_READ_MS : REMOTE_READ_MS);
    }
  } finally {
    unfollow();
    signal.removeEventListener("abort", poke);
  }
  return signal.aborted ? "gone" : "ended";

  /** Whether the last chunk read ends a workload's log (a retry's lines come after it). */
  function saw(chunk: StoredLogChunk): void {
    lastWasEnd = chunk.lineCount === END_OF_LOG;
  }

  /** Sends the chunks after `from`; resolves the last one read. */
  async function sendAfter(from: number): Promise<number> {
    let cursor = from;
    for (;;) {
      const chunks = await o.store.readLogs(id, cursor, PAGE);
      for (const chunk of chunks) {
        saw(chunk);
        await sendChunk(decodeChunk(chunk), cursor, chunk.chunk, o.maxMessageBytes, send);
        cursor = chunk.chunk;
        if (signal.aborted) return cursor;
      }
      if (chunks.length < PAGE) return cursor;
    }
  }
}

/** Sends the last `count` lines kept; resolves the cursor after them (the newest chunk). */
async function sendTail(
  o: LogStreamOptions,
  instanceId: string,
  count: number,
  send: (lines: StreamedLine[], cursor: number) => Promise<void>,
  saw: (chunk: StoredLogChunk) => void,
): Promise<number> {
  const chunks: StoredLogChunk[] = [];
  let lines = 0;
  let before = Number.MAX_SAFE_INTEGER;
  for (;;) {
    const page = await o.store.readLogsBackward(instanceId, before, count === 0 ? 1 : PAGE);
    for (const chunk of page) {
      chunks.push(chunk);
      lines += Math.max(0, chunk.lineCount);
      before = chunk.chunk;
    }
    if (count === 0 || lines >= count || page.length < PAGE) break;
  }
  chunks.reverse();
  const newest = chunks.at(-1);
  if (newest !== undefined) saw(newest);
  let skip = Math.max(0, lines - count);
  let cursor = 0;
  for (const chunk of chunks) {
    let decoded = decodeChunk(chunk);
    if (skip > 0) {
      const cut = Math.min(skip, decoded.length);
      decoded = decoded.slice(cut);
      skip -= cut;
    }
    await sendChunk(decoded, cursor, chunk.chunk, o.maxMessageBytes, send);
    cursor = chunk.chunk;
  }
  return newest?.chunk ?? 0;
}

/**
 * Sends one chunk's lines, in messages that fit: pieces before the last carry the cursor before
 * the chunk, so a client that resumes after one of them reads the chunk again rather than lose it.
 */
async function sendChunk(
  lines: StreamedLine[],
  before: number,
  chunk: number,
  maxMessageBytes: number,
  send: (lines: StreamedLine[], cursor: number) => Promise<void>,
): Promise<void> {
  if (lines.length === 0) return;
  const budget = Math.max(1024, Math.floor(maxMessageBytes / 2));
  let piece: StreamedLine[] = [];
  let bytes = 0;
  for (const line of lines) {
    const size = 3 * line.line.length + 24;
    if (piece.length > 0 && bytes + size > budget) {
      await send(piece, before);
      piece = [];
      bytes = 0;
    }
    piece.push(line);
    bytes += size;
  }
  await send(piece, chunk);
}

function decodeChunk(chunk: StoredLogChunk): StreamedLine[] {
  const lines = JSON.parse(chunk.lines) as Array<[number, StreamIndex, string]>;
  return lines.map(([atMs, stream, line]) => ({ atMs, stream, line }));
}

function within(promise: Promise<void>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
