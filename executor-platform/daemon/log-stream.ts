import * as grpc from "@grpc/grpc-js";
import type { StreamIndex } from "../../sdk/log-lines.js";
import { isValidInstanceId } from "../../sdk/ids.js";
import { isTerminalStatus } from "../../sdk/task-status.js";
import type {
  LogLine,
  LogLines,
  StreamLogsRequest,
} from "../protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { logStreamToWire } from "../protocol/wire.js";
import type { Store, StoredLogChunk } from "../store/store.js";
import { serviceError } from "./grpc-status.js";
import type { InstanceTable } from "./instance-table.js";
import { END_OF_LOG, type LogKeeper } from "./log-keeper.js";

export interface LogStreamOptions {
  readonly store: Store;
  readonly table: InstanceTable;
  readonly logs: LogKeeper;
  readonly maxMessageBytes: number;
  /** Several daemons share the store: an instance may print on another one. */
  readonly clustered: boolean;
}

type LogsCall = grpc.ServerWritableStream<StreamLogsRequest, LogLines>;

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
 * Serves one StreamLogs call for `deployment`: what is kept of the instance's output, from its
 * start, its last `tail` lines, or after a cursor; with `follow`, then each write of it, woken
 * by the log keeper (no polling, but for an instance that runs on another daemon of a cluster),
 * until the instance has ended and its last output is written.
 */
export async function streamLogs(o: LogStreamOptions, call: LogsCall, deployment: string): Promise<void> {
  const { id, follow, tail, afterCursor } = call.request;
  const row = isValidInstanceId(id) ? await o.table.latest(id) : undefined;
  if (row === undefined || row.deploymentId !== deployment) {
    throw serviceError(grpc.status.NOT_FOUND, `no task instance with id ${JSON.stringify(id)}`);
  }
  let wake: (() => void) | undefined;
  let woken = false;
  const poke = () => {
    woken = true;
    wake?.();
  };
  let cancelled = false;
  let lastWasEnd = false;
  call.on("cancelled", () => {
    cancelled = true;
    poke();
  });
  const unfollow = o.logs.follow(id, poke);
  const sleep = (ms: number | undefined) =>
    new Promise<void>((resolve) => {
      if (woken || cancelled) return resolve();
      const timer = ms === undefined ? undefined : setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    }).then(() => {
      wake = undefined;
      woken = false;
    });
  const send = async (lines: LogLine[], cursor: number) => {
    if (cancelled) return;
    if (!call.write({ lines, cursor })) {
      await new Promise<void>((resolve) => {
        call.once("drain", resolve);
        call.once("cancelled", resolve);
      });
    }
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
      if (cancelled || (!follow && !ended)) break;
      if (ended) {
        // Written here, or by no workload at all: complete. Else it ran on another daemon of
        // the cluster, which ends its log with a chunk of its own once the last is written.
        if (here || !o.clustered || !started || lastWasEnd) break;
        endBy ??= Date.now() + REMOTE_END_WAIT_MS;
        if (Date.now() >= endBy) break;
      }
      if (o.logs.stopped) {
        // The client's follow resumes from its cursor on the next daemon.
        throw serviceError(grpc.status.UNAVAILABLE, "the daemon is shutting down");
      }
      await sleep(here ? undefined : endBy !== undefined ? REMOTE_END_READ_MS : REMOTE_READ_MS);
    }
  } finally {
    unfollow();
  }
  if (!cancelled) call.end();

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
        if (cancelled) return cursor;
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
  send: (lines: LogLine[], cursor: number) => Promise<void>,
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
  lines: LogLine[],
  before: number,
  chunk: number,
  maxMessageBytes: number,
  send: (lines: LogLine[], cursor: number) => Promise<void>,
): Promise<void> {
  if (lines.length === 0) return;
  const budget = Math.max(1024, Math.floor(maxMessageBytes / 2));
  let piece: LogLine[] = [];
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

function decodeChunk(chunk: StoredLogChunk): LogLine[] {
  const lines = JSON.parse(chunk.lines) as Array<[number, StreamIndex, string]>;
  return lines.map(([atMs, stream, line]) => ({ atMs, stream: logStreamToWire(stream), line }));
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
