import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type {
  InstanceChanges,
  WatchInstancesRequest,
} from "../protocol/generated/numerous/tasks/v1/tasks_pb.js";
import { isValidInstanceId } from "../../sdk/ids.js";
import { storedToWire } from "../protocol/wire.js";
import type { Store, StoredInstance } from "../store/store.js";
import { serviceError } from "./grpc-status.js";
import { PAGE_FIRST_ROWS, chunkRows, nextPageSize, sizeOfRows } from "./row-size.js";

type WatchCall = grpc.ServerWritableStream<WatchInstancesRequest, InstanceChanges>;

/**
 * A WatchInstances stream. It is live while it keeps up: each saved change is written to it as
 * it is broadcast. A stream whose client stops reading lags instead: the daemon keeps nothing
 * for it but where it got to, and once the stream drains it catches up from the store, a page at
 * a time, as a client resuming after a cut would. So a watcher that never reads costs the daemon
 * about one message in flight, never a copy of every change.
 */
interface Watcher {
  readonly deploymentId: string;
  readonly ids: ReadonlySet<string> | undefined;
  readonly call: WatchCall;
  /** The last resume point written: every matching change up to it has been sent. */
  sent: number;
  /** Where a catch-up reads on from. */
  cursor: number;
  /** Bytes written that the connection has not taken yet. */
  inFlight: number;
  /** Catching up from the store (or waiting to drain before it can). */
  lagging: boolean;
  /** A matching change was broadcast while lagging: the catch-up must look again. */
  missed: boolean;
  closed: boolean;
  /** Wakes the catch-up when everything in flight is taken, or the stream closed. */
  wake: (() => void) | undefined;
}

/** A live watcher with more than this written and not yet taken by its connection lags instead. */
const WATCHER_IN_FLIGHT_BYTES = 1024 * 1024;

export interface WatchHubOptions {
  readonly store: Store;
  readonly log: Logger;
  readonly maxMessageBytes: number;
  /**
   * The highest sequence a watcher may be told it has everything up to. A daemon of a cluster
   * sends its own rows as soon as they are written, before it has fetched the other daemons'
   * rows with lower sequences, so it never promises more than it fetched.
   */
  readonly resumeBound: () => number;
}

/** Every WatchInstances stream of this daemon, and the changes each is sent. */
export class WatchHub {
  readonly #o: WatchHubOptions;
  readonly #watchers = new Set<Watcher>();
  /** In-daemon listeners (the web console's event streams), by deployment. */
  readonly #listeners = new Map<string, Set<(rows: readonly StoredInstance[]) => void>>();
  /** The highest sequence passed to watchers. */
  #shown = 0;

  constructor(options: WatchHubOptions) {
    this.#o = options;
  }

  /** Open WatchInstances streams. */
  get size(): number {
    return this.#watchers.size;
  }

  /** No stream and no in-daemon listener: a broadcast now would reach nobody. */
  get idle(): boolean {
    return this.#watchers.size === 0 && this.#listeners.size === 0;
  }

  /** Changes up to this sequence have been passed to watchers. */
  get shownSequence(): number {
    return this.#shown;
  }

  /** Where watching starts from after a restart: everything stored was shown by the daemon before. */
  startAt(sequence: number): void {
    this.#shown = sequence;
  }

  watch(call: WatchCall, deployment: string): void {
    const request = call.request;
    // Every instance's id is one (submits are checked): anything else names none, and a byte a
    // store cannot even compare (NUL in PostgreSQL) would break the reads of every watcher.
    const bad = request.ids.find((id) => !isValidInstanceId(id));
    if (bad !== undefined) {
      throw serviceError(
        grpc.status.INVALID_ARGUMENT,
        `not an instance id: ${JSON.stringify(String(bad).slice(0, 80))} (1 to 64 of A-Z a-z 0-9 _ -)`,
      );
    }
    const ids = request.ids.length > 0 ? new Set(request.ids) : undefined;
    // The first message says where this stream may be resumed from: "now" is the last change
    // already sent to watchers (never one still being written); a replay starts where asked.
    const sequence = this.#resumePoint(request.fromNow ? this.#shown : request.afterSequence);
    const watcher: Watcher = {
      deploymentId: deployment,
      ids,
      call,
      sent: sequence,
      cursor: sequence,
      inFlight: 0,
      lagging: !request.fromNow,
      missed: false,
      closed: false,
      wake: undefined,
    };
    this.#watchers.add(watcher);
    const forget = () => {
      watcher.closed = true;
      this.#watchers.delete(watcher);
      watcher.wake?.();
    };
    call.on("cancelled", forget);
    call.on("close", forget);
    call.on("error", forget);
    call.write({ instances: [], sequence });
    if (watcher.lagging) void this.#catchUp(watcher);
  }

  /**
   * Calls `listener` with each broadcast's saved rows of `deployment`, as they are sent to
   * watchers. Returns the unsubscribe function. A listener must not throw and keeps no backlog:
   * one that cannot keep up drops its stream and reads the store again.
   */
  listen(deployment: string, listener: (rows: readonly StoredInstance[]) => void): () => void {
    let set = this.#listeners.get(deployment);
    if (set === undefined) this.#listeners.set(deployment, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.#listeners.get(deployment) === set) this.#listeners.delete(deployment);
    };
  }

  /** Sends saved rows to the watchers they match. */
  broadcast(rows: readonly StoredInstance[]): void {
    if (this.#listeners.size > 0) this.#tellListeners(rows);
    let sorted: StoredInstance[] | undefined;
    for (const watcher of this.#watchers) {
      let matched: StoredInstance[] | undefined;
      for (const row of (sorted ??= [...rows].sort((a, b) => a.sequence - b.sequence))) {
        if (row.deploymentId !== watcher.deploymentId) continue;
        if (watcher.ids !== undefined && !watcher.ids.has(row.id)) continue;
        (matched ??= []).push(row);
      }
      if (matched === undefined) continue;
      if (watcher.lagging) {
        watcher.missed = true;
        continue;
      }
      const chunks = chunkRows(matched, this.#o.maxMessageBytes);
      for (let c = 0; c < chunks.length; c++) {
        const chunk = chunks[c] as StoredInstance[];
        const upTo = resumeAfter(
          (chunk.at(-1) as StoredInstance).sequence,
          (chunks[c + 1]?.[0] as StoredInstance | undefined)?.sequence,
        );
        if (!this.#writeChanges(watcher, chunk, upTo)) {
          // What this message did not carry is saved: the catch-up sends it once the client
          // takes what it has, reading on from the last resume point it was sent.
          watcher.lagging = true;
          watcher.cursor = watcher.sent;
          void this.#catchUp(watcher);
          break;
        }
      }
    }
    for (const row of rows) if (row.sequence > this.#shown) this.#shown = row.sequence;
  }

  #tellListeners(rows: readonly StoredInstance[]): void {
    const byDeployment = new Map<string, StoredInstance[]>();
    for (const row of rows) {
      if (!this.#listeners.has(row.deploymentId)) continue;
      let list = byDeployment.get(row.deploymentId);
      if (list === undefined) byDeployment.set(row.deploymentId, (list = []));
      list.push(row);
    }
    for (const [deployment, matched] of byDeployment) {
      for (const listener of this.#listeners.get(deployment) ?? []) {
        try {
          listener(matched);
        } catch (error) {
          this.#o.log.warn({ err: error }, "a watch listener failed");
        }
      }
    }
  }

  /** Ends every stream: the clients resume with the next daemon. */
  closeAll(): void {
    for (const watcher of this.#watchers) {
      watcher.closed = true;
      watcher.call.end();
    }
  }

  #resumePoint(lastSent: number): number {
    return Math.min(lastSent, this.#o.resumeBound());
  }

  /**
   * Writes one message; false when the client is not taking what was written (the message is
   * still sent). Counts bytes rather than trusting `write()`: grpc-js queues 16 messages before
   * it says no, and 16 messages of large outputs per stalled watcher add up.
   */
  #writeChanges(watcher: Watcher, rows: readonly StoredInstance[], upTo: number): boolean {
    const sequence = this.#resumePoint(upTo);
    const bytes = sizeOfRows(rows);
    watcher.inFlight += bytes;
    const ok = watcher.call.write({ instances: rows.map(storedToWire), sequence }, () => {
      watcher.inFlight -= bytes;
      if (watcher.inFlight === 0) watcher.wake?.();
    });
    if (sequence > watcher.sent) watcher.sent = sequence;
    return ok && watcher.inFlight <= WATCHER_IN_FLIGHT_BYTES;
  }

  /**
   * Brings a lagging watcher up to date from the store, then makes it live again. It writes
   * only while the connection takes what it is given, and keeps no rows while it waits: the
   * store holds them. A broadcast meanwhile only marks it `missed` (whatever is broadcast is
   * saved already), so the next pass reads it.
   */
  async #catchUp(watcher: Watcher): Promise<void> {
    try {
      for (;;) {
        watcher.missed = false;
        if (watcher.inFlight > 0) {
          await new Promise<void>((resolveWake) => {
            watcher.wake = resolveWake;
          });
          watcher.wake = undefined;
        }
        if (watcher.closed) return;
        const complete = await this.#sendChangesSince(watcher);
        if (watcher.closed) return;
        if (complete && !watcher.missed) {
          watcher.lagging = false;
          return;
        }
      }
    } catch (error) {
      if (watcher.closed) return;
      this.#o.log.warn({ err: error }, "could not catch a watcher up; ending its stream so that it resumes");
      watcher.call.emit(
        "error",
        serviceError(grpc.status.UNAVAILABLE, "the daemon could not read its store; resume the watch"),
      );
    }
  }

  /** Writes saved changes after the watcher's cursor; false if it had to stop before the end. */
  async #sendChangesSince(watcher: Watcher): Promise<boolean> {
    for await (const { rows, sequences } of this.#changesAfter(watcher, watcher.cursor)) {
      let start = 0;
      for (const chunk of chunkRows(rows, this.#o.maxMessageBytes)) {
        if (watcher.closed) return false;
        start += chunk.length;
        // The store has every row up to here in sequence order, so reading on from the last
        // row written misses nothing, even where the resume point sent is lower (a cluster).
        const upTo = resumeAfter(sequences[start - 1] as number, sequences[start]);
        const taken = this.#writeChanges(watcher, chunk, upTo);
        watcher.cursor = upTo;
        if (!taken) return false;
      }
    }
    return true;
  }

  /**
   * Pages of saved changes of the watcher's instances after `after`, in sequence order, each
   * row with the sequence it is sent under (see below).
   */
  async *#changesAfter(
    watcher: Watcher,
    after: number,
  ): AsyncGenerator<{ rows: StoredInstance[]; sequences: number[] }> {
    const store = this.#o.store;
    if (watcher.ids === undefined) {
      let cursor = after;
      let pageSize = PAGE_FIRST_ROWS;
      for (;;) {
        const rows = await store.changesSince(watcher.deploymentId, cursor, pageSize);
        if (rows.length > 0) yield { rows, sequences: rows.map((row) => row.sequence) };
        if (rows.length < pageSize) return;
        cursor = (rows.at(-1) as StoredInstance).sequence;
        pageSize = nextPageSize(rows.length, sizeOfRows(rows));
      }
    }
    // Named instances: which changed is read first, then their rows a page at a time. A row may
    // change in between; it is sent as it is now, under the sequence it had when the pass began,
    // so resume points keep their promise (anything changed later has a higher sequence).
    const ids = [...watcher.ids];
    const changed: Array<{ id: string; sequence: number }> = [];
    let pageSize = PAGE_FIRST_ROWS;
    for (let i = 0; i < ids.length; ) {
      const page = ids.slice(i, i + pageSize);
      i += page.length;
      const rows = await store.getMany(page);
      for (const row of rows) {
        if (row.deploymentId === watcher.deploymentId && row.sequence > after) {
          changed.push({ id: row.id, sequence: row.sequence });
        }
      }
      pageSize = nextPageSize(rows.length, sizeOfRows(rows));
    }
    changed.sort((x, y) => x.sequence - y.sequence);
    pageSize = PAGE_FIRST_ROWS;
    for (let i = 0; i < changed.length; ) {
      let end = Math.min(changed.length, i + pageSize);
      // A page ends where the sequence changes: rows written together are sent together.
      while (end < changed.length && changed[end]?.sequence === changed[end - 1]?.sequence) end++;
      const page = changed.slice(i, end);
      i = end;
      const byId = new Map((await store.getMany(page.map((c) => c.id))).map((row) => [row.id, row]));
      const rows: StoredInstance[] = [];
      const sequences: number[] = [];
      for (const { id, sequence } of page) {
        const row = byId.get(id);
        if (row === undefined) continue;
        rows.push(row);
        sequences.push(sequence);
      }
      if (rows.length > 0) yield { rows, sequences };
      pageSize = nextPageSize(rows.length, sizeOfRows(rows));
    }
  }
}

/**
 * The resume point after a message whose last row has sequence `last`, when the next row to send
 * has sequence `next`. Rows written together may share a sequence (one per transaction in a
 * shared store): a message that ends among them promises only what came before them.
 */
function resumeAfter(last: number, next: number | undefined): number {
  return next === last ? last - 1 : last;
}
