import type { TaskErrorInfo } from "../../sdk/errors.js";
import type { Store, StoredDefinition, StoredInstance } from "./store.js";

/** What one daemon hears from the others through the store. */
export type ClusterEvent =
  /**
   * Rows up to this sequence are committed: fetch them with `changesSinceAll`. `by`: the daemon
   * that wrote them, when it said (it has them already). `rows`: every row that transaction
   * wrote, with its sequence, when they were few and small (no need to fetch them).
   */
  | {
      readonly kind: "changed";
      readonly sequence: number;
      readonly by?: string;
      readonly rows?: readonly StoredInstance[];
    }
  /**
   * New pending instances wait to be claimed: now, or from `at` (epoch ms) when all of them wait
   * for a later time (a delay, a retry's backoff). `resync`: the listener (re)connected and may
   * have missed events: claim, and ask the store when the next waiting row is due.
   */
  | { readonly kind: "pending"; readonly at?: number; readonly resync?: boolean }
  /** A schedule was created, changed or deleted: every daemon reads the schedules again. */
  | { readonly kind: "schedules" }
  /** Someone asked to stop an instance; its owner delivers the stop to its workload. */
  | { readonly kind: "stop"; readonly instanceId: string; readonly owner: string };

/** A row a claim gave a daemon; `stopRequested` when someone asked to stop it meanwhile (it must not run). */
export type ClaimedInstance = StoredInstance & { readonly stopRequested?: true };

/**
 * A store that several daemons share (PostgreSQL). On top of {@link Store}:
 *
 * - `save` assigns `sequence` (every row) and `position` (rows whose position is 0, i.e. new)
 *   itself, from the database, without serialising writers: all rows of one write share one
 *   sequence, greater than that of every write that ended before it began. The change feed
 *   (`changesSince`, `changesSinceAll`) shows only final rows, those whose writer and every
 *   older writer have ended, so a reader that fetched everything up to sequence S never later
 *   sees a new row with a sequence <= S; a committed change may therefore show a moment later
 *   than its `changed` event, once older writes end (events carry no guarantee of that).
 *   It resolves the rows as stored, and tells the other daemons (`changed`, and `pending` when
 *   a saved row is pending with no owner).
 * - Pending rows are claimed by exactly one daemon (`claim`); each daemon holds a lease it
 *   renews (`heartbeat`); `reap` ends what dead daemons held.
 */
export interface ClusterStore extends Store {
  /** Marks this store as shared: the daemon switches to claims, leases and events. */
  readonly shared: true;
  /** Saves and returns the rows as stored, with database-assigned sequence (and position for new rows). */
  saveAssigned(
    rows: readonly StoredInstance[],
    definitions?: readonly StoredDefinition[],
  ): Promise<StoredInstance[]>;
  /**
   * As {@link saveAssigned}, as daemon `claim.owner`'s write: its `changed` event names it (so
   * that daemon need not read its own rows back), and in the same transaction it claims for that
   * daemon up to `claim.limit` ready pending rows of tasks without a concurrency limit, as
   * {@link claim} would. `limitedWaiting` says whether rows of tasks with a limit wait (then
   * {@link claim} takes them).
   */
  saveAndClaim(
    rows: readonly StoredInstance[],
    definitions: readonly StoredDefinition[],
    claim: { readonly owner: string; readonly limit: number },
  ): Promise<{
    stored: StoredInstance[];
    claimed: ClaimedInstance[];
    limitedWaiting: boolean;
    /** Saved rows, not ended, whose stop was asked for: a stop their owner may have missed. */
    stopsRequested: string[];
    /**
     * Changed rows the store refused, left out of `stored`: `claim.owner`'s lease was reaped (it
     * was presumed dead and its rows failed or given to others), so it changes and claims nothing.
     */
    fenced: string[];
  }>;
  /**
   * Every deployment's final rows with `sequence > afterSequence`, by sequence then id: about
   * `limit` of them, more when the rows of the last sequence go past it (a page never splits a
   * sequence).
   */
  changesSinceAll(afterSequence: number, limit: number): Promise<StoredInstance[]>;
  /** Everything at or below this sequence is final: no write will ever get a sequence this low. */
  currentSequence(): Promise<number>;
  /**
   * Registers (or renews) daemon `owner`'s lease until `now + leaseMs`. Resolves false when the
   * lease had already run out and was reaped: that daemon must stop its work (it is presumed dead).
   */
  heartbeat(owner: string, leaseMs: number): Promise<boolean>;
  /**
   * Claims up to `limit` unowned pending rows in creation order for `owner` (row locks with
   * SKIP LOCKED: two daemons never claim the same row), sets their owner, and returns them.
   */
  claim(owner: string, limit: number): Promise<ClaimedInstance[]>;
  /**
   * Keeps a stop of instance `id` on its row while it is pending or running (a claim then says
   * so, and reaping cancels it rather than run it again) and tells its owner with a `stop`
   * event. Resolves its owner and status; undefined when it has ended or is unknown.
   */
  requestStop(id: string): Promise<{ owner: string; status: string } | undefined>;
  /** The instances `owner` holds whose stop was asked for (see {@link requestStop}). */
  stopsRequested(owner: string): Promise<string[]>;
  /**
   * Of `ids`, the rows `owner` still holds pending, each with whether its stop was asked for. A
   * daemon asks before a workload begins a row it claimed a while ago: a stop kept on the row
   * before this statement began is seen; one after it finds the row running.
   */
  startable(owner: string, ids: readonly string[]): Promise<{ id: string; stopRequested: boolean }[]>;
  /**
   * Cancels a row that is pending and unowned, in one conditional update, and returns it as
   * stored; undefined otherwise (a claimed row is stopped by its owner, through a `stop` event).
   */
  cancelPending(id: string): Promise<StoredInstance | undefined>;
  /**
   * Ends the work of daemons whose lease ran out: their running rows become failed with
   * `reason(owner)`, their claimed pending rows become unowned again; their lease row is removed.
   * Returns the changed rows (already saved, with a new sequence).
   */
  reap(reason: (owner: string) => TaskErrorInfo): Promise<StoredInstance[]>;
  /** The earliest time after now at which an unowned pending row becomes ready; undefined for none. */
  nextReadyAt(): Promise<number | undefined>;
  /** Sends an event to every daemon (including this one). */
  publish(event: ClusterEvent): Promise<void>;
  /** Every daemon holding a lease, with how many instances it runs: the console's cluster view. */
  daemons(): Promise<DaemonLease[]>;
  /** Calls `listener` for every event; reconnects by itself. Returns an unsubscribe function. */
  subscribe(listener: (event: ClusterEvent) => void): () => void;
}

/** Type guard: is this store shared by several daemons? */
export function isClusterStore(store: Store): store is ClusterStore {
  return (store as Partial<ClusterStore>).shared === true;
}

/** A daemon of a cluster as its lease row shows it. */
export interface DaemonLease {
  readonly owner: string;
  /** Epoch milliseconds (database clock). */
  readonly leaseUntil: number;
  /** Instances it runs now. */
  readonly running: number;
}
