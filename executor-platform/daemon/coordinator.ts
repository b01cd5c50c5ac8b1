import type { StoredInstance } from "../store/store.js";
import type { ActiveInstance } from "./active-instance.js";
import type { InstanceTable, RowWriter } from "./instance-table.js";
import type { RunQueue } from "./run-queue.js";
import type { WatchHub } from "./watch-hub.js";
import type { Workers } from "./workers.js";

/** The parts a coordinator works through, made after it (the table writes through it). */
export interface CoordinatedParts {
  readonly table: InstanceTable;
  readonly queue: RunQueue;
  readonly hub: WatchHub;
  readonly workers: Workers;
}

/**
 * What differs between a daemon alone and a daemon of a cluster: how rows are numbered and
 * written, where the work to run comes from, and how a stop reaches an instance another daemon
 * runs. The services and the queue never ask which one they run on.
 */
export interface Coordinator extends RowWriter {
  attach(parts: CoordinatedParts): void;
  /** Takes up what an earlier run left, before the daemon listens. */
  recover(): Promise<void>;
  /** Begins the work that needs the daemon listening (a cluster's lease, claims and events). */
  start(): void;
  /** Ends it, at shutdown. */
  close(): void;
  /** The highest sequence a watcher may be told it has everything up to. */
  resumeBound(): number;
  /** A new instance was accepted; it is written with the next batch. */
  created(row: StoredInstance): void;
  /** New instances are in the store. */
  saved(ids: readonly string[]): void;
  /** The run queue ran dry and may have room. */
  drained(): void;
  /** Stops an unfinished instance that this daemon does not hold. */
  stopElsewhere(row: StoredInstance): Promise<void>;
  /**
   * A user stopped an instance this daemon holds (the queue stops it): a cluster keeps the stop
   * on its row too, so that if this daemon dies first, the instance is cancelled, not run again.
   */
  stoppedHere(active: ActiveInstance): void;
  /**
   * An attempt of a held instance is to begin: records it, then `send` tells its workload. A
   * daemon alone does both at once; a cluster first makes sure no stop was kept on its row.
   */
  begin(active: ActiveInstance, send: () => void): void;
}
