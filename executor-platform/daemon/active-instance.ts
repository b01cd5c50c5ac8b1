import type { StoredInstance } from "../store/store.js";
import type { Worker } from "./workers.js";

/** An instance this daemon runs or is about to run, with what it takes to run and stop it. */
export interface ActiveInstance {
  row: StoredInstance;
  /** It counts against the concurrency: from the moment its workload is started or claimed. */
  holdsSlot: boolean;
  worker: Worker | undefined;
  stopTimer: NodeJS.Timeout | undefined;
  stopRequested: boolean;
  /** After a restart: fails it if its workload does not reattach in time. */
  orphanTimer: NodeJS.Timeout | undefined;
  /** It waits in the run queue (so it is never queued twice). */
  queued: boolean;
  /** A user asked to stop it: final, never retried. */
  userStopped: boolean;
  /** Its attempt ran past its timeout and was asked to stop: the attempt fails. */
  timedOut: boolean;
  timeoutTimer: NodeJS.Timeout | undefined;
  /**
   * In a cluster: when the last statement that showed its row had no stop asked for was sent
   * (its claim, or the start gate's check), ms since the epoch.
   */
  checkedAt?: number;
  /** Given back to the shared store to wait for its next attempt: forgotten once saved. */
  released: boolean;
}

export function activeInstance(row: StoredInstance): ActiveInstance {
  return {
    row,
    holdsSlot: false,
    worker: undefined,
    stopTimer: undefined,
    stopRequested: false,
    orphanTimer: undefined,
    queued: false,
    userStopped: false,
    timedOut: false,
    timeoutTimer: undefined,
    released: false,
  };
}
